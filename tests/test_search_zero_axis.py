"""The plan search evaluates the ZeRO stages as one array axis of a single ``training_step``
call (``training.by_stage``); every cell must hold exactly the numbers of that stage evaluated
alone (bit for bit: step time, its breakdown, memory by kind), dense and MoE."""

import itertools

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.search import AXES, SearchSpace, _first_axis, _mesh_plan, base_plan, sweep
from perfmodel.specs.assemble import resolve_system
from perfmodel.training import training_step


@pytest.mark.parametrize("model,gpus", [("llama-3-8b", (8, 16, 64)), ("mixtral-8x7b", (16, 64))])
def test_zero_axis_equals_each_stage_alone(model, gpus):
    sc = pm.Scenario(kind="training", model=model,
                     system={"device": "h100-sxm5-80gb", "num_gpus": max(gpus)},
                     training={"seq_len": 4096, "global_batch": 64})
    system, profile, base = resolve_system(sc.system), resolve_profile(sc), base_plan(sc)
    space = SearchSpace(tp=(1, 2, 8), pp=(1, 2, 4), cp=(1, 2), vp=(1, 2), micro_batch=(1, 2),
                        ep=(1, 2, 8))
    axes = {**_first_axis(space, np.asarray(gpus, float)),
            "tp": np.asarray(space.tp, float), "pp": np.asarray(space.pp, float),
            "cp": np.asarray(space.cp, float), "ep": np.asarray(space.ep, float),
            "vp": np.asarray(space.vp, float), "micro_batch": np.asarray(space.micro_batch, float)}
    stages = np.asarray(space.zero_stage).reshape(-1, *[1] * len(AXES))
    for recompute, sp in itertools.product(("selective", "full"), (False, True)):
        with np.errstate(all="ignore"):
            both = training_step(sc.model, system, _mesh_plan(base, axes, recompute, sp, stages),
                                 profile)
            for i, zero in enumerate(space.zero_stage):
                alone = training_step(sc.model, system,
                                      _mesh_plan(base, axes, recompute, sp, zero), profile)
                full = np.shape(both.step_time)  # (stages, *mesh)
                assert len(full) == len(AXES) + 1
                for a, b in [(alone.step_time, both.step_time),
                             (alone.memory_total, both.memory_total),
                             *((alone.time[k], both.time[k]) for k in alone.time),
                             *((alone.memory[k], both.memory[k]) for k in alone.memory)]:
                    b = np.broadcast_to(b, full)[i] if np.ndim(b) == len(full) else b
                    np.testing.assert_array_equal(np.broadcast_to(a, full[1:]),
                                                  np.broadcast_to(b, full[1:]))


def test_sweep_makes_one_model_call_per_recompute_and_sp():
    sc = pm.Scenario(kind="training", model="llama-3-8b",
                     system={"device": "h100-sxm5-80gb", "num_gpus": 8},
                     training={"seq_len": 4096, "global_batch": 16})
    space = SearchSpace(tp=(1, 2), pp=(1, 2), cp=(1,), vp=(1,), micro_batch=(1,))
    sw = sweep(sc.model, resolve_system(sc.system), resolve_profile(sc), base_plan(sc), space,
               [8])
    assert sw.model_calls == len(space.recompute) * len(space.sequence_parallel)
    assert [(c.recompute, c.sequence_parallel, c.zero_stage) for c in sw.choices] == \
        space.choices()
