"""Composer's eager optimizer step (frameworks/fsdp.yaml optimizer.adam_bytes_per_param,
frameworks_costs.optimizer_extra_ops): DecoupledAdamW's per-parameter loop (84 B per fp32
parameter at weight decay 0, counted kernel by kernel from composer/optim/decoupled_weight_decay.py
v0.16.4 and v0.13.4) plus FSDP's clip_grad_norm_ (12 B), against perfmodel's fused 30 B."""

import pytest

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig

PARAMS = 1.0e9


def extra(name: str, optimizer: str = "adamw", mixed: bool = True) -> list[O.Op]:
    fw = resolve_framework(FrameworkConfig(name=name))
    step = O.optimizer_op(PARAMS, optimizer, mixed_precision=mixed)
    return FC.optimizer_extra_ops(fw, step, optimizer, PARAMS)


def test_composer_adamw_loop_by_hand():
    # exp_avg mul_ 8 + add_ 12, exp_avg_sq mul_ 8 + addcmul_ 16, sqrt 8, / 8, add_ 8,
    # addcdiv_ 16 = 84; clip: norm 4 + mul_ 8 = 12
    assert 8 + 12 + 8 + 16 + 8 + 8 + 8 + 16 + 4 + 8 == 96
    (op,) = extra("llm-foundry")
    assert op.bytes == pytest.approx(PARAMS * (96 - O.OPTIMIZER_BYTES[("adamw", True)]))
    assert op.cls == O.OPTIMIZER and op.phase == "step"


def test_only_the_adam_family_and_only_composer():
    assert extra("fsdp", optimizer="sgd") == []
    for name in ("megatron-core", "torchtitan", "deepspeed"):
        assert extra(name) == []


def test_the_step_charges_it(monkeypatch):
    from perfmodel.api import predict
    from perfmodel.validate.cases import case_scenario, load_cases

    sc = case_scenario(load_cases(match="llmfoundry_h100_80gb_amp_bf16_mpt7b_seq2048_8gpu")[0])
    charged = predict(sc)
    monkeypatch.setattr(FC, "optimizer_extra_ops", lambda *args: [])
    bare = predict(sc)
    # 6.66e9 / 8 sharded parameters x 66 B = 55 GB: between the 3.35 TB/s HBM peak and 1 TB/s
    delta = charged.step_time_s - bare.step_time_s
    assert 0.016 < delta < 0.055
    assert charged.breakdown["time"]["optimizer"] - bare.breakdown["time"]["optimizer"] == \
        pytest.approx(delta)
