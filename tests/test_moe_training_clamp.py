"""Megatron-Bridge's gpt-oss clamped GLU: the eager clamp + concat ahead of the fused quick-GEGLU
(frameworks/nemo.yaml ``moe.clamped_glu``; frameworks_costs.moe_dispatch_ops). Hand calculations
from Megatron-LM fused_bias_geglu.weighted_bias_quick_geglu_impl (92c8482e / 44151194) and
PyTorch's clamp_backward (torch/csrc/autograd/FunctionsManual.cpp @002ca671)."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.resolve import resolve, training_plan
from perfmodel.training import training_step

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
QWEN3_30B = "tests/data/hf_configs/aiconfigurator-0.12.0/Qwen--Qwen3-30B-A3B_config.json"


def _scenario(model=GPT_OSS, framework="nemo", recompute="none", modules=None):
    training = {"framework": {"name": framework}, "seq_len": 4096, "global_batch": 1280,
                "micro_batch": 4, "precision": "bf16", "recompute": recompute}
    if modules:
        training["recompute_modules"] = modules
    return pm.Scenario(
        kind="training", model=model,
        system={"device": "gb200", "num_gpus": 64, "node": "gb200-nvl72"},
        parallelism={"tp": 1, "pp": 1, "dp": 64, "ep": 64, "etp": 1, "zero_stage": 1},
        training=training)


def _model(path):
    return resolve(_scenario(model=path)).scenario.model


def _clamp_ops(framework, model):
    fw = resolve_framework(FrameworkConfig(name=framework))
    fwd, bwd = FC.moe_dispatch_ops(fw, model, 16384, 1, False, 64, 1, 2.0)
    return ([op for op in fwd if op.name == FC.MOE_ACT_CLAMP],
            [op for op in bwd if op.name == FC.MOE_ACT_CLAMP + ".bwd"])


def test_gpt_oss_clamp_bytes_by_hand():
    """gpt-oss-120b, 16384 tokens a rank, top-4, EP 64: R = 65536 rows, expert intermediate
    2880, so each half of fc1's output has X = 65536 x 2880 = 188,743,680 bf16 elements.
    Forward: clamp(max) X read + X written, clamp(min, max) the same, cat 2X + 2X:
    8 X x 2 B = 3,019,898,880 B in 3 kernels.
    Backward: linear half ge + le (2 + 1 B each), logical_and_ (1 + 1 read, 1 written),
    where (1 + 2 read, 2 written) = 14 B; gate half le (2 + 1) + where (1 + 2 + 2) = 8 B;
    chunk's backward cat 2 x (2 + 2) = 8 B: 30 B x X = 5,662,310,400 B, 7 kernels + 2
    one-element zero fills."""
    (f,), (b,) = _clamp_ops("nemo", _model(GPT_OSS))
    x = 65536 * 2880
    assert x == 188_743_680
    assert float(f.bytes) == pytest.approx(3_019_898_880)
    assert float(b.bytes) == pytest.approx(5_662_310_400)
    assert float(f.launches) == 3.0 and float(b.launches) == 9.0
    assert f.flops == 0.0 and f.block == "moe"


def test_only_the_families_the_provider_clamps():
    """Qwen3-30B-A3B (plain SwiGLU, no clamp in its Megatron-Bridge provider) gets none;
    megatron-core (perfmodel's baseline, no clamped_glu fact) gets none for gpt-oss."""
    assert _clamp_ops("nemo", _model(QWEN3_30B)) == ([], [])
    assert _clamp_ops("megatron-core", _model(GPT_OSS)) == ([], [])


def _calls(sc):
    rs = resolve(sc)
    plan = training_plan(rs.scenario, rs.system)
    r = training_step(rs.scenario.model, rs.system, plan, rs.profile, keep_ops=True)
    return {op.name: c for op, c in zip(r.op_times.ops, r.op_counts, strict=True)}


def test_step_runs_it_per_layer_and_microbatch_and_recomputes_it_with_moe_act():
    """36 MoE layers x 1280 / (4 x 64) = 5 micro-batches = 180 calls each way; under
    recompute_modules [moe_act] TEGroupedMLP checkpoints bias_act_func, clamp included, so
    the forward clamp runs again (180 more calls)."""
    calls = _calls(_scenario())
    assert calls[FC.MOE_ACT_CLAMP] == pytest.approx(180.0)
    assert calls[FC.MOE_ACT_CLAMP + ".bwd"] == pytest.approx(180.0)
    assert FC.MOE_ACT_CLAMP + ".recompute" not in calls
    rec = _calls(_scenario(recompute="selective", modules=["moe_act"]))
    assert rec[FC.MOE_ACT_CLAMP + ".recompute"] == pytest.approx(180.0)
    assert rec["moe.expert.act.recompute"] == pytest.approx(180.0)

