"""Attention efficiency by head dim and sliding window (profile.attention_scale, issue 13).

The reference profiles' attention curves are fitted on head_dim 128 full causal attention;
``attention_scale`` holds the measured efficiency of other head dims and windows over that
curve (perfmodel/calibrate/fit/attention.py ``attention_scale_tables``). Independent numbers:
TensorRT-LLM 1.3.0rc20 context-attention latencies of aiconfigurator-core 0.12.0
(systems/data/b200_sxm/attention/trtllm/1.3.0rc20/context_attention_perf.parquet,
kernel_source torch_flow, bf16 / bf16 KV, batch 4 x isl 4096, 64 query / 8 KV heads):
head_dim 64 full causal 0.999349 ms, window 128 0.424709 ms (gpt-oss's attention shape).
"""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.profile import AttentionScale, Curve
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.model import ModelSpec

B200_MS = {(64, 0): 0.999349, (64, 128): 0.424709}  # measured, table row above


def _model(head_dim: int) -> ModelSpec:
    return ModelSpec(id="gqa-bench", name="gqa", num_layers=1, hidden_size=64 * head_dim,
                     num_heads=64, num_kv_heads=8, head_dim=head_dim, ffn_hidden_size=1,
                     vocab_size=1)


def _time_ms(profile, head_dim: int, window: int, device: str = "b200") -> float:
    prec = O.Precision(compute="bf16", act=2, weight=2, kv=2)
    ops = O.causal_attention_ops(_model(head_dim), 4.0, 4096.0, 4096.0, O.Shard(), prec,
                                 "prefill", window)
    return float(op_times(ops, Roofline(registry.get_device(device), profile)).total()) * 1e3


def test_gpt_oss_shape_against_measured_b200():
    prof = registry.profile_for("b200")
    assert prof.attention_scale, "b200 reference profile has no attention_scale"
    for (hd, w), measured in B200_MS.items():
        predicted = _time_ms(prof, hd, w)
        assert predicted == pytest.approx(measured, rel=0.2), (hd, w, predicted, measured)
    # without the scale (the curve alone: what the profile predicted before)
    bare = prof.model_copy(update={"attention_scale": {}})
    assert _time_ms(bare, 64, 128) < 0.5 * B200_MS[(64, 128)]


def test_head_dim_128_full_causal_unchanged():
    for device in ("b200", "h200-sxm-141gb", "h100-sxm5-80gb"):
        prof = registry.profile_for(device)
        bare = prof.model_copy(update={"attention_scale": {}})
        assert _time_ms(prof, 128, 0, device) == _time_ms(bare, 128, 0, device)


def _const(v: float) -> Curve:
    return Curve(values=(v,))


def test_attention_factor_interpolation_by_hand():
    prof = registry.profile_for("b200").model_copy(update={"attention_scale": {"prefill": [
        AttentionScale(head_dim=64, factor=_const(0.5)),
        AttentionScale(head_dim=128, factor=_const(1.0)),
        AttentionScale(head_dim=256, factor=_const(2.0)),
        AttentionScale(head_dim=64, window=128, factor=_const(0.25))]}})
    f = prof.attention_factor
    q = kv = 4096.0
    assert float(f("prefill", 64, 0, q, kv)) == pytest.approx(0.5)
    assert float(f("prefill", 128, 0, q, kv)) == pytest.approx(1.0)
    # halfway in log2 between 64 and 128: exp((ln 0.5 + ln 1) / 2) = 0.5 ** 0.5
    assert float(f("prefill", 2 ** 6.5, 0, q, kv)) == pytest.approx(0.5 ** 0.5)
    assert float(f("prefill", 32, 0, q, kv)) == pytest.approx(0.5)  # clamped
    assert float(f("prefill", 512, 0, q, kv)) == pytest.approx(2.0)
    assert float(f("prefill", 64, 128, q, kv)) == pytest.approx(0.25)  # measured point
    # window residual 0.25 / 0.5 = 0.5 carried to head_dim 256: 2.0 x 0.5
    assert float(f("prefill", 256, 128, q, kv)) == pytest.approx(1.0)
    assert float(f("prefill", 0, 128, q, kv)) == 1.0  # not a GQA/MHA head (MLA)
    assert float(f("decode", 64, 0, q, kv)) == 1.0  # no scale for that curve
    arr = f("prefill", np.array([64.0, 128.0, 64.0]), np.array([0.0, 0.0, 128.0]), q, kv)
    assert np.allclose(arr, [0.5, 1.0, 0.25])


def test_two_head_dims_at_one_window_keep_their_measured_factors():
    """Each measured (head_dim, window) point is exact, and a head dim between two measured
    at that window interpolates their residuals in log2(head_dim)."""
    prof = registry.profile_for("b200").model_copy(update={"attention_scale": {"prefill": [
        AttentionScale(head_dim=64, factor=_const(0.5)),
        AttentionScale(head_dim=128, factor=_const(1.0)),
        AttentionScale(head_dim=256, factor=_const(2.0)),
        AttentionScale(head_dim=64, window=128, factor=_const(0.1)),
        AttentionScale(head_dim=256, window=128, factor=_const(1.6))]}})
    f = prof.attention_factor
    q = kv = 4096.0
    assert float(f("prefill", 64, 128, q, kv)) == pytest.approx(0.1)
    assert float(f("prefill", 256, 128, q, kv)) == pytest.approx(1.6)
    # head_dim 128: residuals ln(0.1/0.5) and ln(1.6/2.0) halfway in log2, times 1.0
    assert float(f("prefill", 128, 128, q, kv)) == pytest.approx((0.2 * 0.8) ** 0.5)


def test_backward_without_its_scale_takes_the_prefill_scale():
    prof = registry.profile_for("h200-sxm-141gb")
    assert "backward" in prof.attention and "backward" not in prof.attention_scale
    ratio = (prof.attention_efficiency("backward", 4096.0, 4096.0, 64, 128)
             / prof.attention_efficiency("backward", 4096.0, 4096.0, 128, 0))
    ref = (prof.attention_efficiency("prefill", 4096.0, 4096.0, 64, 128)
           / prof.attention_efficiency("prefill", 4096.0, 4096.0, 128, 0))
    assert float(ratio) == pytest.approx(float(ref)) and float(ratio) < 1


def test_profile_without_scale_loads_with_factor_one(tmp_path):
    prof = registry.profile_for("a100-sxm4-80gb")
    assert not prof.attention_scale
    assert float(prof.attention_factor("prefill", 64, 128, 512.0, 512.0)) == 1.0


def test_window_binds_only_beyond_it():
    prec = O.Precision(compute="bf16", act=2, weight=2, kv=2)
    (op,) = O.causal_attention_ops(_model(64), 1.0, 1.0, np.array([64.0, 4096.0]), O.Shard(),
                                   prec, "decode", 128)
    assert np.allclose(op.window, [0.0, 128.0]) and op.head_dim == 64.0


def test_converter_drops_windows_that_do_not_bind(tmp_path):
    path = tmp_path / "ctx.csv"
    path.write_text(
        "batch_size,isl,num_heads,num_key_value_heads,head_dim,window_size,beam_width,"
        "attn_dtype,kv_cache_dtype,step,latency,kernel_source\n"
        "1,128,8,8,64,128,1,bfloat16,bfloat16,0,0.01,torch_flow\n"
        "1,256,8,8,64,128,1,bfloat16,bfloat16,0,0.02,torch_flow\n"
        "1,256,8,8,64,0,1,bfloat16,bfloat16,0,0.03,torch_flow\n")
    recs = C.aic_attention(path, "prefill", head_dim=[64], windows=[0, 128])
    assert [(r["params"].get("window"), r["params"]["q_len"]) for r in recs] == [
        (128, 256), (None, 256)]
    assert C.aic_attention(path, "prefill", head_dim=64) == [recs[1]]  # default: full only
