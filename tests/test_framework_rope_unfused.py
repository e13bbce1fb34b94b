"""Megatron-Bridge's gpt-oss YaRN RoPE runs unfused (frameworks/nemo.yaml ``rope_unfused``;
frameworks_costs.rope_unfused_ops). Hand calculations from Megatron-LM rope_utils.py
_apply_rotary_pos_emb_bshd (92c8482e / 44151194)."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel.resolve import resolve, training_plan
from perfmodel.training import training_step

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
QWEN3_30B = "tests/data/hf_configs/aiconfigurator-0.12.0/Qwen--Qwen3-30B-A3B_config.json"


def _scenario(model, framework):
    return pm.Scenario(
        kind="training", model=model,
        system={"device": "gb200", "num_gpus": 64, "node": "gb200-nvl72"},
        parallelism={"tp": 1, "pp": 1, "dp": 64, "ep": 64, "etp": 1, "zero_stage": 1},
        training={"framework": {"name": framework}, "seq_len": 4096, "global_batch": 1280,
                  "micro_batch": 4, "precision": "bf16", "recompute": "none"})


def _rope_ops(framework, path):
    rs = resolve(_scenario(path, framework))
    plan = training_plan(rs.scenario, rs.system)
    r = training_step(rs.scenario.model, rs.system, plan, rs.profile, keep_ops=True)
    calls = {op.name: c for op, c in zip(r.op_times.ops, r.op_counts, strict=True)}
    ops = [op for op in r.op_times.ops if op.name.startswith(FC.ROPE_UNFUSED)]
    return ops, calls


def test_gpt_oss_yarn_rope_unfused_by_hand():
    """gpt-oss's YaRN mscale 0.1 ln 32 + 1 = 1.3466 != 1: Megatron-Core runs
    _apply_rotary_pos_emb_bshd. 16384 tokens x (64 q + 8 k heads) x 64 = 75,497,472 elements
    E; the eager chain moves 12 E x 2 B forward and 14 E x 2 B backward (the empty t_pass
    slice's gradient: a full-size zeros, E, and its add into t's gradient, 3 E; a
    torch.profiler run of the backward on CPU, torch 2.13, bf16: mul, neg, cat, mul, add,
    slice_backward -> zero_, add, 7 kernels per q / k tensor), perfmodel's fused kernel
    2 E x 2 B and twice that: extra 20 E = 1,509,949,440 B forward and 20 E =
    1,509,949,440 B backward, per attention layer and micro-batch (36 layers x 5
    micro-batches = 180 calls, the sliding-window and full layers half each); kernels
    2 x 12 - 1 = 23 forward and 2 x 7 - 1 = 13 backward."""
    ops, calls = _rope_ops("nemo", GPT_OSS)
    e = 16384 * 72 * 64
    assert e == 75_497_472
    fwd = [op for op in ops if op.phase == "fwd"]
    bwd = [op for op in ops if op.phase == "bwd"]
    assert fwd and bwd
    assert sum(float(op.bytes) * float(op.count) for op in fwd) == pytest.approx(1_509_949_440)
    assert sum(float(op.bytes) * float(op.count) for op in bwd) == pytest.approx(1_509_949_440)
    assert calls[FC.ROPE_UNFUSED] == pytest.approx(180.0 / len(fwd))
    assert {float(op.launches) for op in fwd} == {23.0}
    assert {float(op.launches) for op in bwd} == {13.0}


def test_rope_stays_fused_elsewhere():
    """Qwen3-30B-A3B (plain RoPE, mscale 1) under nemo and gpt-oss under megatron-core (no
    rope_unfused fact): no extra operators."""
    assert _rope_ops("nemo", QWEN3_30B)[0] == []
    assert _rope_ops("megatron-core", GPT_OSS)[0] == []
