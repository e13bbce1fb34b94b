"""A training step with its operators kept, and the bytes of one named operator: the
hand-checked framework tests (megatron-lm-2019 / 2021, fms-fsdp) read these."""

from __future__ import annotations

from perfmodel.resolve import resolve, training_plan
from perfmodel.training import training_step


def step_with_ops(scenario):
    """``training_step`` of ``scenario`` with ``keep_ops`` (each operator's bytes and phase)."""
    rs = resolve(scenario)
    plan = training_plan(rs.scenario, rs.system)
    return training_step(rs.scenario.model, rs.system, plan, rs.profile, keep_ops=True)


def op_bytes(step, name: str, phase: str) -> float:
    """Bytes moved by the operators called ``name`` in ``phase`` of a kept step."""
    return sum(float(op.bytes) for op in step.op_times.ops
               if op.name == name and op.phase == phase)
