"""MLA prefill on its own measured curves (``prefill_mla``, fp8 kernels ``prefill_mla_fp8``):
roofline.attention_kind / _attention_curve, fitted by calibrate.fit.attention from
aiconfigurator-core 0.12.0's context-MLA tables (converters.aic_mla_context).

The core charges MLA prefill as the decompressed multi-head attention the engines' context
kernels run (ops.attention_ops; DeepSeek-V2 arXiv 2405.04434 Sec. 2.1): per head Q / K of
qk_nope + qk_rope = 128 + 64 = 192, V of 128, one KV head per query head. The fit times each
measured row as that operator, so efficiency = counted FLOPs / ((t - fixed) x peak).

Rows read by hand (calibration/sources/measured/aiconfigurator/systems/data/<system>/mla/trtllm/
1.3.0rc20/context_mla_perf.parquet; 0-based row index; columns framework, version, device,
op_name, kernel_source, mla_dtype, kv_cache_dtype, num_heads, batch_size, isl, tp_size, step,
latency [ms]):

    gb300 row 1743: TRTLLM 1.3.0rc20 NVIDIA GB300 mla_context default bfloat16 fp8 128 1 32768 1 0 17.040614
    gb300 row 1687: TRTLLM 1.3.0rc20 NVIDIA GB300 mla_context default bfloat16 bfloat16 128 1 16384 1 0 7.223253
    h200_sxm row 1521: TRTLLM 1.3.0rc20 NVIDIA H200 mla_context default bfloat16 bfloat16 16 1 8192 4 0 0.632843

(num_heads: heads per GPU; the 16-head row is DeepSeek-V3's 128 heads at TP 8.) Hand counts of
row 1743 (one 32,768-token sequence, 128 heads, causal):

    pairs = 32,768 x 32,769 / 2                  = 5.36887e8
    FLOPs = 2 x (192 + 128) x 128 x pairs        = 4.39818e13
    bytes = (Q + O) + (K + V) = 2 x 32,768 x 128 x 320 x 1 B (fp8)  = 2.68435e9
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.calibrate.fit.attention import attention_curve, attention_op
from perfmodel.calibrate.reference import REFERENCES, sources_dir
from perfmodel.profile import Curve
from perfmodel.roofline import (
    FP8_PREFILL_CURVE,
    MLA,
    MLA_FP8_PREFILL_CURVE,
    MLA_PREFILL_CURVE,
    Roofline,
    _attention_curve,
    attention_kind,
    op_times,
)
from perfmodel.specs import registry
from perfmodel.zoo import get_model

GB300_BF16, GB300_FP8 = 2450e12, 4900e12  # dense TFLOP/s, hardware_specs/devices/gb300.yaml
TABLE = "aiconfigurator/systems/data/{}/mla/trtllm/1.3.0rc20/context_mla_perf.parquet"
# (system folder, device, kv cache dtype, heads per GPU, isl, measured s), rows above
ROWS = [("gb300", "gb300", "fp8", 128, 32768, 17.040614e-3),
        ("gb300", "gb300", "bf16", 128, 16384, 7.223253e-3),
        ("h200_sxm", "h200-sxm-141gb", "bf16", 16, 8192, 0.632843e-3)]


def _core(s: int, kv_dtype: str = "bf16", fp8_prefill: bool = False, tp: int = 1,
          phase: str = "prefill", model: str = "deepseek-v3") -> O.Op:
    """The layer's attention core as inference builds it (ops.attention_ops)."""
    prec = O.Precision.inference("bf16", "bf16", kv_dtype, fp8_gemm=True)
    shard = O.Shard(tp=tp, fp8_prefill_attention=fp8_prefill)
    q = s if phase != "decode" else 1
    (core,) = O.attention_ops(get_model(model), 1.0, q, s, O.attention_pairs(q, s), shard,
                              prec, True, phase, absorbed_mla=phase == "decode")
    return core


def _time(op: O.Op, profile, device: str = "gb300") -> float:
    return float(op_times([op], Roofline(registry.get_device(device), profile)).total())


def _without_mla(profile):
    return profile.model_copy(update={"attention": {
        k: v for k, v in profile.attention.items()
        if k not in (MLA_PREFILL_CURVE, MLA_FP8_PREFILL_CURVE)}})


def test_the_converter_reads_row_1743_by_hand():
    pytest.importorskip("pyarrow")
    recs = C.aic_mla_context(sources_dir() / TABLE.format("gb300"), kv_cache_dtype="fp8")
    (r,) = [r for r in recs if r["params"]["heads"] == 128 and r["params"]["batch"] == 1
            and r["params"]["q_len"] == 32768]
    p = r["params"]
    assert r["time_s"] == pytest.approx(17.040614e-3)
    assert (p["variant"], p["dtype"], p["kv_dtype"], p["kv_heads"], p["head_dim"],
            p["v_head_dim"], p["kv_len"]) == ("mla", "fp8", "fp8", 128, 192, 128, 32768)
    assert attention_curve(p) == MLA_FP8_PREFILL_CURVE
    assert attention_curve({**p, "dtype": "bf16", "kv_dtype": "bf16"}) == MLA_PREFILL_CURVE


def test_the_fit_counts_a_row_as_the_core_charges_mla_prefill():
    """The fit's operator for row 1743 has the hand-counted FLOPs and bytes, and they are the
    core's own for DeepSeek-V3 at TP 1 (one count: efficiency = those FLOPs / (time x peak))."""
    p = {"phase": "prefill", "variant": "mla", "dtype": "fp8", "kv_dtype": "fp8", "batch": 1,
         "heads": 128, "kv_heads": 128, "head_dim": 192, **C.AIC_MLA_GEOMETRY,
         "q_len": 32768, "kv_len": 32768, "causal": True}
    op = attention_op([{"params": p}])
    pairs = 32768 * 32769 / 2
    assert float(np.ravel(op.flops)[0]) == pytest.approx(2 * 320 * 128 * pairs)
    assert float(np.ravel(op.flops)[0]) == pytest.approx(4.39818e13, rel=1e-5)
    assert float(np.ravel(op.bytes)[0]) == pytest.approx(2 * 32768 * 128 * 320 * 1.0)
    assert op.fp8_attention and op.dtype == "fp8" and attention_kind(op) == MLA
    core = _core(32768, "fp8", fp8_prefill=True)
    assert float(np.ravel(op.flops)[0]) == pytest.approx(float(core.flops))
    assert float(np.ravel(op.bytes)[0]) == pytest.approx(float(core.bytes))


@pytest.mark.parametrize("system,device,kv,heads,isl,measured", ROWS)
def test_the_shipped_curve_reproduces_a_measured_row(system, device, kv, heads, isl, measured):
    """DeepSeek-V3's prefill core at the row's heads per GPU (TP = 128 / heads), the engine's
    fp8 kernel for an fp8 cache (TensorRT-LLM's fp8 context MLA), timed on the shipped profile,
    is within the curve's held-out band (uncertainty: p90 |log(predicted / measured)| of the
    30 % of rows the fit did not see)."""
    profile = registry.profile_for(device)
    curve = MLA_FP8_PREFILL_CURVE if kv == "fp8" else MLA_PREFILL_CURVE
    assert curve in profile.attention
    core = _core(isl, kv, fp8_prefill=kv == "fp8", tp=128 // heads)
    predicted = _time(core, profile, device)
    assert abs(math.log(predicted / measured)) <= profile.uncertainty[f"attention.{curve}"]
    fe = next(f for f in profile.fit_errors if f.table == f"attention.{curve}")
    assert fe.n_test > 200 and fe.median_ape < 0.15


def test_an_mla_prefill_core_reads_its_curve_and_an_mha_core_does_not():
    """Flat curves: prefill 0.5, prefill_mla 0.25, fixed costs 10 / 30 us. DeepSeek-V3's bf16
    prefill core of 16,384 tokens at TP 1 (2 x 320 x 128 x 16,384 x 16,385 / 2 = 1.09958e13
    FLOPs, compute-bound: 1.34e9 B / 8 TB/s = 0.17 ms vs 4.5 ms at the peak) takes
    FLOPs / (2.45e15 x 0.25) + fixed; Llama-3-70B's GQA core at TP 8 (8 heads of 128, one KV
    head: 2 x 256 x 8 x 16,384 x 16,385 / 2 = 5.4979e11 FLOPs) keeps prefill's 0.5; the same
    MLA core in a training forward pass and an MLA decode step keep their phases' curves."""
    base = registry.profile_for("gb300")
    profile = base.model_copy(update={
        "attention": {**base.attention, "prefill": Curve(values=(0.5,)),
                      MLA_PREFILL_CURVE: Curve(values=(0.25,))},
        "attention_scale": {},
        "attention_overhead_s": {**base.attention_overhead_s, "prefill": 10e-6,
                                 MLA_PREFILL_CURVE: 30e-6}})
    k = base.kernel_overhead_s
    s = 16384
    pairs = s * (s + 1) / 2
    mla = _core(s)
    assert attention_kind(mla) == MLA
    assert _time(mla, profile) == pytest.approx(2 * 320 * 128 * pairs / (GB300_BF16 * 0.25)
                                                + 30e-6 + k, rel=1e-6)
    gqa = _core(s, tp=8, model="llama-3-70b")
    assert attention_kind(gqa) == ""
    assert _time(gqa, profile) == pytest.approx(2 * 256 * 8 * pairs / (GB300_BF16 * 0.5)
                                                + 10e-6 + k, rel=1e-6)
    fwd = _core(s, phase="fwd")
    assert attention_kind(fwd) == "" and _time(fwd, profile) == pytest.approx(
        2 * 320 * 128 * pairs / (GB300_BF16 * 0.5) + 10e-6 + k, rel=1e-6)
    assert attention_kind(_core(s, phase="decode")) == ""


def test_the_fp8_mla_kernel_reads_prefill_mla_fp8_at_the_fp8_peak():
    """prefill_mla_fp8 flat 0.4: the engine's fp8 MLA kernel of 16,384 tokens takes
    1.09958e13 / (4.9e15 x 0.4) + its fixed cost; prefill_fp8 (the GQA / MHA fp8 kernels' curve,
    flat 0.9 here) is not read."""
    base = registry.profile_for("gb300")
    profile = base.model_copy(update={
        "attention": {**base.attention, FP8_PREFILL_CURVE: Curve(values=(0.9,)),
                      MLA_FP8_PREFILL_CURVE: Curve(values=(0.4,))},
        "attention_overhead_s": {**base.attention_overhead_s, MLA_FP8_PREFILL_CURVE: 20e-6}})
    s = 16384
    flops = 2 * 320 * 128 * s * (s + 1) / 2
    assert flops == pytest.approx(1.09958e13, rel=1e-5)
    t = _time(_core(s, "fp8", fp8_prefill=True), profile)
    assert t == pytest.approx(flops / (GB300_FP8 * 0.4) + 20e-6 + base.kernel_overhead_s,
                              rel=1e-6)


def test_a_profile_without_the_curves_keeps_the_old_ones():
    """The GB300 reference profile with its MLA curves taken out: the bf16 MLA core reads
    ``prefill`` at the bf16 peak, the fp8 kernel ``prefill_fp8`` at the fp8 peak (the curves
    and fixed costs it read before MLA had its own), each compute-bound at 16,384 tokens."""
    profile = _without_mla(registry.profile_for("gb300"))
    s, k = 16384, profile.kernel_overhead_s
    flops = 2 * 320 * 128 * s * (s + 1) / 2
    eff = float(profile.attention_efficiency("prefill", s, s, 0.0, 0.0, "10.3"))
    eff8 = float(profile.attention_efficiency(FP8_PREFILL_CURVE, s, s, 0.0, 0.0, "10.3"))
    assert _time(_core(s), profile) == pytest.approx(
        flops / (GB300_BF16 * eff) + profile.attention_overhead_s["prefill"] + k, rel=1e-6)
    assert _time(_core(s, "fp8", fp8_prefill=True), profile) == pytest.approx(
        flops / (GB300_FP8 * eff8) + profile.attention_overhead_s[FP8_PREFILL_CURVE] + k,
        rel=1e-6)
    assert _attention_curve("prefill/mla", profile) == "prefill"
    assert _attention_curve("prefill/mla/fp8", profile) == FP8_PREFILL_CURVE
    assert _attention_curve("prefill/mla/fp8", None) == "prefill"


def test_every_mla_table_in_references_is_a_copied_trtllm_context_table():
    for device, ref in REFERENCES.items():
        mla = [t for t in ref.tables if t.convert is C.aic_mla_context]
        if not mla:
            continue
        assert {t.kwargs["kv_cache_dtype"] for t in mla} == {"bfloat16", "fp8"}, device
        assert all("/mla/trtllm/1.3.0rc20/context_mla_perf" in t.path for t in mla)
        assert (sources_dir() / mla[0].path).is_file()
