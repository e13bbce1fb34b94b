"""Megatron-Core MoE training: the token dispatcher's row copies and the eager expert bias
(frameworks_costs.moe_dispatch_ops; frameworks/megatron-core.yaml and nemo.yaml ``moe``).
Hand calculations from Megatron-LM token_dispatcher.py / experts.py (commit 92c8482e)."""

from __future__ import annotations

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.resolve import resolve, training_plan
from perfmodel.training import training_step

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
QWEN3_30B = "tests/data/hf_configs/aiconfigurator-0.12.0/Qwen--Qwen3-30B-A3B_config.json"


def _scenario(model=GPT_OSS, ep=64, framework="nemo", mbs=4):
    return pm.Scenario(
        kind="training", model=model,
        system={"device": "gb200", "num_gpus": 64, "node": "gb200-nvl72"},
        parallelism={"tp": 1, "pp": 1, "dp": 64, "ep": ep, "etp": 1, "zero_stage": 1},
        training={"framework": {"name": framework}, "seq_len": 4096, "global_batch": 1280,
                  "micro_batch": mbs, "precision": "bf16", "recompute": "none"})


def _model(path):
    return resolve(_scenario(model=path)).scenario.model


def _by_name(ops):
    return {op.name: op for op in ops}


def test_gpt_oss_ep64_by_hand():
    """gpt-oss-120b (h 2880, 128 experts top-4, expert biases), MBS 4 x 4096 = 16384 tokens on
    a rank, EP 64: 2 local experts, R = 16384 x 64 x 4 / 64 = 65536 rows.
    Permutation 1: (16384 + 65536) x 2880 x 2 B = 471,859,200 B.
    Sort / unsort: 2 x 65536 x 2880 x 2 B = 754,974,720 B each, two calls.
    Eager bias: 6 x 65536 x 2880 x 2 B = 2,264,924,160 B, 2 x 2 + 1 = 5 kernels forward,
    4 x 2 = 8 backward."""
    fw = resolve_framework(FrameworkConfig(name="nemo"))
    fwd, bwd = FC.moe_dispatch_ops(fw, _model(GPT_OSS), 16384, 1, False, 64, 1, 2.0)
    f, b = _by_name(fwd), _by_name(bwd)
    assert float(f["moe.permute"].bytes) == pytest.approx(471_859_200)
    assert float(b["moe.permute.bwd"].bytes) == pytest.approx(471_859_200)
    assert float(f["moe.sort"].bytes) == pytest.approx(754_974_720)
    assert float(f["moe.sort"].count) == 2.0 and float(b["moe.sort.bwd"].count) == 2.0
    assert float(f["moe.expert.bias"].bytes) == pytest.approx(2_264_924_160)
    assert float(b["moe.expert.bias.bwd"].bytes) == pytest.approx(2_264_924_160)
    assert float(f["moe.expert.bias"].launches) == 5.0
    assert float(b["moe.expert.bias.bwd"].launches) == 8.0
    assert all(op.flops == 0.0 and op.block == "moe" for op in fwd + bwd)


def test_one_local_expert_has_no_sort_and_no_bias_without_biases():
    """EP = experts: one local expert, Permutation 2 is skipped (num_local_experts > 1 only);
    Qwen3-30B-A3B has no MLP biases: no eager bias operator."""
    fw = resolve_framework(FrameworkConfig(name="megatron-core"))
    fwd, _ = FC.moe_dispatch_ops(fw, _model(GPT_OSS), 16384, 1, False, 128, 1, 2.0)
    assert float(_by_name(fwd)["moe.sort"].count) == 0.0
    fwd, bwd = FC.moe_dispatch_ops(fw, _model(QWEN3_30B), 8192, 1, False, 16, 1, 2.0)
    names = {op.name for op in fwd + bwd}
    assert "moe.expert.bias" not in names and "moe.permute" in names
    # Qwen3-30B: h 2048, top-8: permute (8192 + 65536) x 2048 x 2 B
    assert float(_by_name(fwd)["moe.permute"].bytes) == pytest.approx(
        (8192 + 8192 * 8) * 2048 * 2)


def test_sequence_parallel_tokens_and_folded_rows():
    """TP 2 with sequence parallelism: the dispatcher sees 4096 / 2 tokens; with EP 32, ETP 1
    the rank's experts get 4096 x 32 / 2 x 8 / 32 = 16384 rows (ops.routed_rows)."""
    fw = resolve_framework(FrameworkConfig(name="nemo"))
    fwd, _ = FC.moe_dispatch_ops(fw, _model(QWEN3_30B), 4096, 2, True, 32, 1, 2.0)
    f = _by_name(fwd)
    assert float(f["moe.permute"].bytes) == pytest.approx((2048 + 2048 * 8) * 2048 * 2)
    assert float(f["moe.sort"].bytes) == pytest.approx(2 * 16384 * 2048 * 2)


def test_frameworks_without_the_facts_add_nothing():
    """A framework file with no ``moe`` section (torchtitan) and a dense model: no operators."""
    fw = resolve_framework(FrameworkConfig(name="torchtitan"))
    assert FC.moe_dispatch_ops(fw, _model(GPT_OSS), 16384, 1, False, 8, 1, 2.0) == ([], [])
    llama = resolve(pm.Scenario(kind="training", model="llama-3-8b",
                                system={"device": "gb200", "num_gpus": 8},
                                training={"seq_len": 4096, "global_batch": 8})).scenario.model
    fw = resolve_framework(FrameworkConfig(name="nemo"))
    assert FC.moe_dispatch_ops(fw, llama, 4096, 1, False, 1, 1, 2.0) == ([], [])


def test_step_counts_the_copies_per_layer_and_microbatch():
    """In a step the forward copies run once per MoE layer per micro-batch (36 layers x
    1280 / (4 x 64) = 5 micro-batches = 180 calls) and their time is in the step."""
    rs = resolve(_scenario())
    plan = training_plan(rs.scenario, rs.system)
    r = training_step(rs.scenario.model, rs.system, plan, rs.profile, keep_ops=True)
    calls = {op.name: c for op, c in zip(r.op_times.ops, r.op_counts, strict=True)}
    assert calls["moe.permute"] == pytest.approx(180.0)
    assert calls["moe.sort"] == pytest.approx(360.0)
    assert calls["moe.expert.bias.bwd"] == pytest.approx(180.0)
    per_call = {op.name: float(t) for op, t in zip(r.op_times.ops, r.op_times.time, strict=True)}
    added = sum(per_call[n] * calls[n] for n in calls
                if n.startswith(("moe.permute", "moe.sort", "moe.expert.bias")))
    assert added > 0.0
    assert np.isfinite(float(r.step_time))


def test_fp8_experts_pad_and_unpad_their_rows():
    """fp8 experts under the all-to-all dispatcher: Fp8Padding copies the rank's routed rows
    into 16-row-aligned segments and Fp8Unpadding copies the output back: Qwen3-30B-A3B,
    MBS 2 x 4096 = 8192 tokens, EP 8: R = 65536 rows, each copy 2 x 65536 x 2048 x 2 B =
    536,870,912 B, two calls forward and two backward; none in bf16."""
    fw = resolve_framework(FrameworkConfig(name="nemo"))
    fwd, bwd = FC.moe_dispatch_ops(fw, _model(QWEN3_30B), 8192, 1, False, 8, 1, 2.0, fp8=True)
    f, b = _by_name(fwd), _by_name(bwd)
    assert float(f["moe.fp8_pad"].bytes) == pytest.approx(536_870_912)
    assert float(f["moe.fp8_pad"].count) == 2.0 and float(b["moe.fp8_pad.bwd"].count) == 2.0
    fwd, _ = FC.moe_dispatch_ops(fw, _model(QWEN3_30B), 8192, 1, False, 8, 1, 2.0)
    assert "moe.fp8_pad" not in _by_name(fwd)
