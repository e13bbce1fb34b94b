"""Prefill attention on fp8 tensor cores where the engine quantises Q, K and V for it
(``ops.Shard.fp8_prefill_attention``, ``Op.fp8_attention``, roofline.attention_peak_dtype).

Hand counts: DeepSeek-V3 MLA prefill of one 128,000-token prompt on one GPU (TP 1, 128 heads,
q/k head dim 128 + 64 = 192, v head dim 128), as the NVIDIA / SGLang GB300 long-context blog's
kernel comparison runs it (2026-02-19: fmhaSm103a ``QkvE4m3OBfloat16HQk192HV128`` 205 ms on
GB300, fmhaSm100f 277 ms on GB200, per 128k causal prefill):

    pairs  = 128,000 x 128,001 / 2             = 8.192064e9
    FLOPs  = 2 x (192 + 128) x 128 x pairs     = 6.7109e14
    bytes  = Q + O: 128,000 x 128 x 320 x 1 B  = 5.2429e9
             K + V: the same                   = 5.2429e9   (fp8: 1 B per element)

On GB300 (bf16 2,450, fp8 4,900 dense TFLOP/s, hardware_specs/devices/gb300.yaml) the kernel
is compute-bound (6.7e14 FLOPs / 4.9e15 = 137 ms at the peak vs 1.05e10 B / 8 TB/s = 1.3 ms).
It runs at the fp8 peak only on a profile's measured fp8 prefill curve (``prefill_fp8``);
without one it keeps the bf16 peak and the bf16 prefill curve.
"""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.profile import Curve
from perfmodel.roofline import (
    FP8_PREFILL_CURVE,
    MLA_FP8_PREFILL_CURVE,
    MLA_PREFILL_CURVE,
    Roofline,
    attention_peak_dtype,
    op_times,
)
from perfmodel.specs import registry
from perfmodel.zoo import get_model

S = 128_000
PAIRS = S * (S + 1) / 2
FLOPS = 2 * (192 + 128) * 128 * PAIRS
FP8_BYTES = 2 * S * 128 * 320 * 1.0
GB300_FP8 = 4900e12
GB300_BF16 = 2450e12


def _core(fp8_prefill: bool, kv_dtype: str = "fp8", phase: str = "prefill") -> O.Op:
    model = get_model("deepseek-v3")
    prec = O.Precision.inference("bf16", "bf16", kv_dtype, fp8_gemm=True)
    shard = O.Shard(tp=1, fp8_prefill_attention=fp8_prefill)
    q = S if phase == "prefill" else 1
    pairs = O.attention_pairs(q, S)
    (core,) = O.attention_ops(model, 1.0, q, S, pairs, shard, prec, True, phase)
    return core


def _time(op: O.Op, profile) -> float:
    return float(op_times([op], Roofline(registry.get_device("gb300"), profile)).total())


def _gqa_curves_only():
    """The GB300 reference profile without its MLA prefill curves (``prefill_mla``,
    ``prefill_mla_fp8``; tests/test_attention_mla_prefill_curve.py): the DeepSeek-V3 core of
    these tests then reads the curves every attention kind shares, as any profile without
    them does."""
    base = registry.profile_for("gb300")
    return base.model_copy(update={"attention": {
        k: v for k, v in base.attention.items()
        if k not in (MLA_PREFILL_CURVE, MLA_FP8_PREFILL_CURVE)}})


def test_fp8_prefill_core_counts_by_hand():
    core = _core(True)
    assert core.name == "attn.core" and core.fp8_attention and core.dtype == "fp8"
    assert core.flops == pytest.approx(6.7109e14, rel=1e-4)
    assert core.flops == pytest.approx(FLOPS)
    assert core.bytes == pytest.approx(FP8_BYTES)
    # the same FLOPs whether or not the engine runs it in fp8; only the kernel differs
    assert _core(False).flops == pytest.approx(FLOPS) and not _core(False).fp8_attention


def test_without_an_fp8_prefill_curve_the_fp8_core_keeps_the_bf16_peak():
    """GB300 reference profile, its fp8 prefill curve taken out: no credit for fp8 compute no
    profile measured. The engine's fp8 kernel is timed like the 16-bit one, at 2.45 PFLOP/s
    with the bf16 prefill curve's efficiency (compute-bound: its fp8 bytes, 1.05e10 B / 8 TB/s
    = 1.3 ms, do not show), not at 4.9 PFLOP/s."""
    base = _gqa_curves_only()
    profile = base.model_copy(update={"attention": {
        k: v for k, v in base.attention.items() if k != FP8_PREFILL_CURVE}})
    fp8, bf16 = _core(True), _core(False)
    assert attention_peak_dtype(fp8, profile) == "bf16"
    assert attention_peak_dtype(bf16, profile) == "bf16"
    eff = float(profile.attention_efficiency("prefill", S, S, 0.0, 0.0, "10.3"))
    fixed = profile.attention_overhead_s.get("prefill", 0.0) + profile.kernel_overhead_s
    assert _time(fp8, profile) == pytest.approx(FLOPS / (GB300_BF16 * eff) + fixed, rel=1e-6)
    assert _time(bf16, profile) == pytest.approx(FLOPS / (GB300_BF16 * eff) + fixed, rel=1e-6)


def test_an_fp8_prefill_curve_in_the_profile_times_the_fp8_kernel():
    """A profile holding ``prefill_fp8`` (efficiency relative to the fp8 peak) times the fp8
    kernel on it: a flat 0.5 gives FLOPs / (4.9e15 x 0.5) = 273.9 ms + the fixed cost, the
    curve's own (``attention_overhead_s[prefill_fp8]``, as the fit installs it: 20 us here)."""
    base = _gqa_curves_only()
    profile = base.model_copy(update={
        "attention": {**base.attention, FP8_PREFILL_CURVE: Curve(values=(0.5,))},
        "attention_overhead_s": {**base.attention_overhead_s, FP8_PREFILL_CURVE: 20e-6}})
    fixed = 20e-6 + base.kernel_overhead_s
    assert _time(_core(True), profile) == pytest.approx(FLOPS / (GB300_FP8 * 0.5) + fixed,
                                                        rel=1e-6)
    assert pytest.approx(0.2739, rel=1e-3) == FLOPS / (GB300_FP8 * 0.5)
    # the 16-bit kernel still reads the prefill curve
    assert _time(_core(False), profile) == pytest.approx(_time(_core(False), base))


def test_the_engine_flag_changes_only_fp8_cache_prefill():
    """A bf16 KV cache and decode steps are untouched by the engine's fp8-prefill fact."""
    profile = registry.profile_for("gb300")
    for kv, phase in (("bf16", "prefill"), ("fp8", "decode")):
        on, off = _core(True, kv, phase), _core(False, kv, phase)
        assert not on.fp8_attention
        assert on.dtype == off.dtype and on.bytes == pytest.approx(off.bytes)
        assert np.isclose(_time(on, profile), _time(off, profile))


def test_the_fit_reads_fp8_context_rows_as_the_fp8_prefill_kernel():
    """aiconfigurator's context rows with attn_dtype fp8 and an fp8 KV cache are fitted into
    ``prefill_fp8`` (calibrate.fit.attention.attention_curve), timed as the engine's fp8
    kernel: 8 heads of 128, one 4096-token sequence, causal:
        FLOPs = 2 x (128 + 128) x 8 x 4096 x 4097 / 2 = 3.4368e10
        bytes = 4 x 4096 x 8 x 128 x 1 B (Q, K, V, O in fp8)   = 1.6777e7."""
    from perfmodel.calibrate.fit.attention import attention_curve, attention_op
    p = {"phase": "prefill", "dtype": "fp8", "kv_dtype": "fp8", "batch": 1, "heads": 8,
         "kv_heads": 8, "head_dim": 128, "q_len": 4096, "kv_len": 4096, "causal": True}
    assert attention_curve(p) == FP8_PREFILL_CURVE
    assert attention_curve({**p, "dtype": "bf16", "kv_dtype": "bf16"}) == "prefill"
    assert attention_curve({**p, "dtype": "bf16"}) == "prefill"  # bf16 Q over an fp8 cache
    op = attention_op([{"params": p}])
    assert op.fp8_attention and op.dtype == "fp8"
    assert np.ravel(op.flops)[0] == pytest.approx(2 * 256 * 8 * 4096 * 4097 / 2)
    assert np.ravel(op.bytes)[0] == pytest.approx(4 * 4096 * 8 * 128)


@pytest.mark.parametrize("engine, version, variant, mla, cap, on", [
    # the fact holds from the release it was read at (engines/<id>.yaml attention.fp8_prefill)
    ("vllm", "0.6.3", None, False, "9.0", False), ("vllm", "0.10.2", None, False, "9.0", True),
    ("vllm", None, None, False, "9.0", True), ("vllm", None, None, True, "10.0", False),
    ("sglang", "0.5.5.post3", None, False, "9.0", False), ("sglang", "0.5.6", None, True, "10.0",
                                                           False),
    ("sglang", "0.5.7", None, True, "10.0", True),
    ("trtllm", "0.6.0", None, True, "9.0", False), ("trtllm", "1.2.0", None, True, "9.0", True),
    ("trtllm", "1.2.0", "tensorrt", True, "9.0", False),
    ("trtllm", "1.2.0", None, True, "8.0", False),  # Ampere: no fp8 context MLA
])
def test_fp8_prefill_only_where_and_since_the_engine_source_was_read(engine, version, variant,
                                                                     mla, cap, on):
    from types import SimpleNamespace

    from perfmodel.engines import fp8_prefill_attention

    model = SimpleNamespace(mla=object() if mla else None)
    assert fp8_prefill_attention(engine, version, variant, model, cap) is on
