"""Grouped-GEMM (MoE) calibration: the aiconfigurator MoE converter reads one row by hand; the
``moe`` fit recovers a known synthetic efficiency through the core's own grouped GEMMs;
roofline reads the moe curve for a GEMM over groups > 1 and the dense curve otherwise (and
exactly today's dense curve without one); the rebuilt reference profiles carry held-out
errors of their MoE tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.calibrate import fit as F
from perfmodel.calibrate.fit.moe import moe_precision
from perfmodel.calibrate.moe_kernels import kernel_labels
from perfmodel.engines import moe_kernels
from perfmodel.paths import data_dir
from perfmodel.profile import MOE_MIXED, Curve, moe_format, moe_key_format
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.registry import default_profile, load_profile

SOURCES = data_dir("calibration") / "sources" / "measured"
H200_MOE = SOURCES / "aiconfigurator/systems/data/h200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet"
H100 = registry.get_device("h100-sxm5-80gb")
OVERHEAD = 3e-6
MOE_DEVICES = ["h100-sxm5-80gb", "h200-sxm-141gb", "b200", "b300", "gb200", "gb300"]


def rec(params: dict, t: float) -> dict:
    return {"bench": "moe", "key": json.dumps(params, sort_keys=True), "params": params,
            "time_s": float(t), "stats": {}, "status": "ok", "error": None}


# ---- converter ------------------------------------------------------------------------------

def test_moe_converter_reads_one_row_by_hand():
    """Mixtral-8x7B's MoE layer on one H200 (hidden 4096, 8 experts of 14336, top-2, no TP or
    EP), 128 tokens, bf16, balanced routing: 0.717979 ms in the table."""
    pytest.importorskip("pyarrow")
    recs = C.aic_moe(H200_MOE)
    assert recs and {r["params"]["dtype"] for r in recs} == {"bf16", "fp8"}
    (r,) = [r for r in recs if r["params"] == {
        "dtype": "bf16", "tokens": 128, "hidden": 4096, "inter": 14336, "experts": 8,
        "topk": 2, "tp": 1, "ep": 1, "gated": True}]
    assert r["bench"] == "moe" and r["time_s"] == pytest.approx(0.717979e-3)
    assert r["stats"]["kernel_source"] == "moe_torch_flow_cutlass"
    # all 8 experts receive a token: 8 x 3 x 4096 x 14336 bf16 weights = 2.82 GB read in
    # 0.72 ms = 3.9 TB/s, 82 % of the H200's 4.8 TB/s
    geo = F.moe_geometry([r])
    assert geo["groups"][0] == pytest.approx(8.0) and geo["m"][0] == pytest.approx(32.0)
    up, down = F.moe_ops([r], "bf16")
    assert up.shape[1] == 2 * 14336 and up.shape[2] == 4096 and down.shape[2] == 14336
    weights = float(up.bytes[0] + down.bytes[0])
    assert weights == pytest.approx(8 * 3 * 4096 * 14336 * 2, rel=0.01)
    assert 0.75 < weights / r["time_s"] / 4.8e12 < 0.9
    # skewed routing is read only when asked for (the core routes uniformly)
    skewed = C.aic_moe(H200_MOE, dtypes=("bfloat16",), distribution="power_law_1.2")
    balanced = {r["key"]: r["time_s"] for r in recs}
    assert skewed and any(balanced.get(r["key"], r["time_s"]) != r["time_s"] for r in skewed)


# ---- fitting recovers a known efficiency ------------------------------------------------------

def true_moe_eff(m, groups):
    return 0.2 + 0.5 * np.log2(m) / 10 + 0.05 * np.log2(groups) / 6


def synthetic_moe_records(base):
    """A MoE layer (hidden 4096, experts of 2048, top-8 of 64) over tokens and EP, timed as
    the core's two grouped GEMMs at a known efficiency plus the kernel overhead."""
    recs = []
    unit = Roofline(H100, F.unit_profile(base))
    for tokens in (64, 96, 128, 192, 256, 384, 512, 768, 1024):
        for ep in (1, 2, 4, 8):
            p = {"dtype": "bf16", "tokens": tokens, "hidden": 4096, "inter": 2048,
                 "experts": 64, "topk": 8, "tp": 1, "ep": ep, "gated": True}
            geo = F.moe_geometry([rec(p, 1.0)])
            bound = float(F.moe_times([rec(p, 1.0)], "bf16", unit)[0])
            t = bound / true_moe_eff(geo["m"][0], geo["groups"][0]) + 2 * OVERHEAD
            recs.append(rec(p, t))
    return recs


def test_fit_recovers_known_moe_efficiency():
    base = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    recs = synthetic_moe_records(base)
    (table,) = F.moe_tables(recs, H100, base)
    assert table.name == "moe.bf16" and table.axes == ("m", "groups", "weights")
    assert np.allclose(table.eff, true_moe_eff(table.coords[:, 0], table.coords[:, 1]))
    curve = table.fit()
    assert np.allclose(curve(*table.coords.T), table.eff, rtol=0.02)
    # through the core, with the curve installed, the records come back
    pred = table.predict(base, curve, np.arange(len(table)))
    assert np.allclose(pred, table.measured, rtol=0.02)
    # held out, as fit_profile reports it
    fe, _, _, _ = F.heldout_error(table, base, 0.3, 0)
    assert fe.table == "moe.bf16" and fe.n_test > 0 and fe.median_ape < 0.03


def test_fit_profile_installs_moe_curve_and_keeps_dense_tables():
    base = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    recs = synthetic_moe_records(base)
    prof = F.fit_profile(recs, H100, kind="measured", profile_id="synthetic", sources=[])
    assert set(prof.moe) == {"bf16"} and not prof.gemm
    assert "moe.bf16" in {fe.table for fe in prof.fit_errors}


# ---- roofline reads the moe curve for groups > 1 ---------------------------------------------

def _profile(moe: bool):
    prof = default_profile().model_copy(update={
        "kernel_overhead_s": OVERHEAD, "gemm": {"bf16": Curve(values=(0.8,))}})
    if moe:
        prof = prof.model_copy(update={"moe": {"bf16": Curve(values=(0.5,))},
                                       "moe_overhead_s": {"bf16": 7e-6}})
    return prof


def test_roofline_uses_moe_curve_for_grouped_gemms_only():
    prec = F.precision_for("bf16")
    grouped = O.grouped_gemm("moe.expert.up", 4 * 4096, 4096, 4096, 4, prec)
    single = O.grouped_gemm("moe.expert.up", 4096, 4096, 4096, 1.0, prec)
    dense = O.gemm("mlp.up", 4096, 4096, 4096, prec)
    unit = op_times([grouped, single, dense], Roofline(H100, F.unit_profile(_profile(True))))
    bound = [float(t) for t in unit.time]
    with_moe = op_times([grouped, single, dense], Roofline(H100, _profile(True))).time
    assert float(with_moe[0]) == pytest.approx(bound[0] / 0.5 + OVERHEAD + 7e-6)
    assert float(with_moe[1]) == pytest.approx(bound[1] / 0.8 + OVERHEAD)  # one problem
    assert float(with_moe[2]) == pytest.approx(bound[2] / 0.8 + OVERHEAD)
    # without a moe curve: today's behaviour, the dense curve at one problem's shape
    without = op_times([grouped, single, dense], Roofline(H100, _profile(False))).time
    assert float(without[0]) == pytest.approx(bound[0] / 0.8 + OVERHEAD)
    assert [float(t) for t in without[1:]] == [float(t) for t in with_moe[1:]]


def test_roofline_moe_curve_broadcasts_over_plans():
    """groups as an array over plans (tokens swept): > 1 on the moe curve, <= 1 dense."""
    prec = F.precision_for("bf16")
    groups = np.array([0.5, 1.0, 2.0, 8.0])
    op = O.grouped_gemm("moe.expert.down", 4096 * groups, 4096, 4096, groups, prec)
    t = op_times([op], Roofline(H100, _profile(True))).time[0]
    unit = op_times([op], Roofline(H100, F.unit_profile(_profile(True)))).time[0]
    expect = np.where(groups > 1, unit / 0.5 + OVERHEAD + 7e-6, unit / 0.8 + OVERHEAD)
    assert np.allclose(t, expect)


# ---- shipped reference profiles --------------------------------------------------------------

@pytest.mark.parametrize("device", MOE_DEVICES)
def test_reference_profiles_carry_moe_fits_with_heldout_errors(device):
    prof = load_profile(data_dir("calibration") / f"{device}.reference.json")
    assert {"bf16", "fp8"} <= set(prof.moe)  # B200 also fp8_block / nvfp4 (test_formats)
    errors = {fe.table: fe for fe in prof.fit_errors}
    for dtype in prof.moe:
        fe = errors[f"moe.{dtype}"]
        # the W4A16 / W4A8 MXFP4 tables are small (276-1,270 rows of one layer shape family);
        # one engine's kernel tables are smaller than the reference ones (Hopper vLLM block fp8:
        # Triton 1,986 balanced rows at EP 1, 17 model shapes x TP 1-32 x 27 token counts)
        small = (50 if moe_key_format(dtype) in MOE_MIXED
                 else 500 if dtype in ("fp8_block@vllm_triton", "fp8_block@flashinfer_cutlass")
                 else 1000)
        assert fe.n_test > small
        assert 0 <= fe.median_ape <= fe.p90_ape
        assert fe.median_ape < 0.25  # (p90 is reported, not held to a bound)
        assert f"moe.{dtype}" in prof.uncertainty
        assert prof.moe_overhead_s[dtype] > 0
    assert any("moe" in s.read_via and "aiconfigurator-core" in s.title for s in prof.sources)


def test_profiles_without_moe_tables_have_none():
    prof = load_profile(data_dir("calibration") / "a100-sxm4-80gb.reference.json")
    assert not prof.moe and not prof.moe_overhead_s


def test_report_draws_moe_tables(tmp_path):
    from perfmodel.calibrate.report import build_tables, write_report

    base = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    recs = synthetic_moe_records(base)
    prof = F.fit_profile(recs, H100, kind="measured", profile_id="synthetic", sources=[])
    assert [t.name for t in build_tables(recs, prof)] == ["moe.bf16"]
    out = tmp_path / "moe.png"
    write_report(recs, prof, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- Hopper fp8_block and the W4A16 / W4A8 MXFP4 tables -------------------------------------

@pytest.mark.parametrize("device", ["h100-sxm5-80gb", "h200-sxm-141gb"])
def test_hopper_profiles_ship_the_fp8_block_moe_table(device):
    """Held-out error comparable to the shipped bf16 / fp8 MoE tables (docs/calibration.md):
    shipped, so fp8_block experts no longer borrow the per-tensor fp8 curve (no worse a median
    than that curve's, no worse a p90 than bf16's; since the fit reads each row at the experts
    its routing touched, H200's fp8_block median is 6.4 % against bf16's 6.4 %, fp8's 7.1 %)."""
    prof = load_profile(data_dir("calibration") / f"{device}.reference.json")
    errors = {fe.table: fe for fe in prof.fit_errors}
    assert "fp8_block" in prof.moe
    assert errors["moe.fp8_block"].median_ape <= errors["moe.fp8"].median_ape
    assert errors["moe.fp8_block"].p90_ape <= errors["moe.bf16"].p90_ape


def test_mixed_moe_formats_run_as_the_core_builds_them():
    """W4A16 MXFP4: bf16 tensor cores, weights of 4.25 bits (OCP MX v1.0: 32 x 4 + 8 bits per
    32 elements) dequantised in the GEMM; W4A8: the same weights on fp8 tensor cores."""
    w4a16 = moe_precision("w4a16_mxfp4")
    assert (w4a16.compute, w4a16.weight, w4a16.act) == ("bf16", (32 * 4 + 8) / 32 / 8, 2.0)
    assert w4a16.weight_dequant
    w4a8 = moe_precision("w4a8_mxfp4_mxfp8")
    assert (w4a8.compute, w4a8.act) == ("fp8", 1.0) and w4a8.weight_dequant
    assert moe_precision("bf16") == F.precision_for("bf16")


def test_fit_recovers_known_efficiency_of_a_mixed_format():
    """Synthetic W4A16 records at a known efficiency: the table is moe.w4a16_mxfp4 and its
    held-out test reads its own curve (where the core would read it by format)."""
    base = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    unit = Roofline(H100, F.unit_profile(base))
    recs = []
    for r in synthetic_moe_records(base):
        p = {**r["params"], "dtype": "w4a16_mxfp4"}
        geo = F.moe_geometry([rec(p, 1.0)])
        bound = float(F.moe_times([rec(p, 1.0)], "w4a16_mxfp4", unit)[0])
        recs.append(rec(p, bound / true_moe_eff(geo["m"][0], geo["groups"][0]) + 2 * OVERHEAD))
    (table,) = F.moe_tables(recs, H100, base)
    assert table.name == "moe.w4a16_mxfp4"
    assert np.allclose(table.eff, true_moe_eff(table.coords[:, 0], table.coords[:, 1]))
    fe, _, _, _ = F.heldout_error(table, base, 0.3, 0)
    assert fe.median_ape < 0.03


def test_w4a16_rows_convert_under_their_own_name():
    pytest.importorskip("pyarrow")
    recs = C.aic_moe(H200_MOE, dtypes=("w4a16_mxfp4",))
    assert recs and {r["params"]["dtype"] for r in recs} == {"w4a16_mxfp4"}
    assert {r["stats"]["kernel_source"] for r in recs} == {"moe_torch_flow"}


# ---- the MoE table by weight format, compute dtype and the engine's kernel -------------------

EFF = {"bf16": 0.5, "fp8": 0.8, "fp8_block": 0.4, "w4a16_mxfp4": 0.1}


def _keyed_profile(fp8_block_kernel="trtllm_cutlass"):
    """Hand-made: constant grouped-GEMM curves per format, the kernel each table measured."""
    prof = default_profile().model_copy(update={
        "kernel_overhead_s": 0.0, "gemm": {"bf16": Curve(values=(0.9,))},
        "moe": {k: Curve(values=(v,)) for k, v in EFF.items()},
        "moe_overhead_s": {k: 0.0 for k in EFF},
        "moe_kernel": {"bf16": "trtllm_cutlass", "fp8": "trtllm_cutlass",
                       "fp8_block": fp8_block_kernel, "w4a16_mxfp4": "trtllm"}})
    return prof


def test_moe_format_names_weight_only_experts_by_their_table():
    assert moe_format("bf16") == "bf16" and moe_format("fp8_block") == "fp8_block"
    assert moe_format("bf16", "mxfp4") == "w4a16_mxfp4"
    assert moe_format("fp8", "mxfp4") == "w4a8_mxfp4_mxfp8"
    assert moe_format("bf16", "int4") == "w_int4_bf16"  # no table name: its own
    # the core's precision carries the weights' format where it is not the compute dtype
    assert O.Precision.inference("mxfp4", "bf16", "bf16").weight_format == "mxfp4"
    assert O.Precision.inference("bf16", "bf16", "bf16").weight_format == ""
    assert O.Precision.inference("fp8_block", "fp8", "fp8").weight_format == ""


def test_moe_table_fallback_order_per_kernel():
    """docs/calibration.md "Grouped GEMMs": the format's table when it measured the engine's
    kernel (or none is stated); another kernel's table: the engine's proxy, else the format's
    own; no table of the format: the compute dtype's fallback, never a weight-only table."""
    prof = _keyed_profile()
    assert prof.moe_table("fp8_block")[0] == "fp8_block"  # generic: as measured
    assert prof.moe_table("fp8_block", "", ("trtllm_cutlass", "deepgemm"))[0] == "fp8_block"
    key, why = prof.moe_table("fp8_block", "", ("deepgemm",), "fp8")
    assert key == "fp8" and "proxy" in why and "trtllm_cutlass" in why
    assert prof.moe_table("fp8_block", "", ("deepgemm",))[0] == "fp8_block"  # no proxy named
    # a DeepGEMM table (Blackwell) serves the DeepGEMM engine directly
    assert _keyed_profile("deepgemm").moe_table("fp8_block", "", ("deepgemm",), "fp8")[0] \
        == "fp8_block"
    # W4A16 experts read their own table; bf16 experts never do
    assert prof.moe_table("bf16", "mxfp4")[0] == "w4a16_mxfp4"
    assert prof.moe_table("bf16")[0] == "bf16"
    assert prof.moe_table("bf16", "int4")[0] == "bf16"  # no int4 table: the compute dtype's
    only_mixed = prof.model_copy(update={"moe": {"w4a16_mxfp4": prof.moe["w4a16_mxfp4"]}})
    assert only_mixed.moe_table("bf16")[0] == ""  # the dense curve, not the W4A16 one
    no_block = prof.model_copy(update={"moe": {k: prof.moe[k] for k in ("bf16", "fp8")}})
    assert no_block.moe_table("fp8_block")[0] == "fp8"  # _BLOCK_FALLBACK, as before


def test_engines_name_their_moe_kernels():
    # SGLang fp8_block: DeepGEMM under a DeepEP all-to-all, else FlashInfer / Triton
    assert moe_kernels("sglang", "fp8_block", a2a="deepep") == (("deepgemm",), "fp8")
    assert moe_kernels("sglang", "fp8_block") == (("flashinfer_trtllm", "sglang_triton"), "fp8")
    assert moe_kernels("vllm", "fp8_block", a2a="deepep") == (("deepgemm",), "fp8")
    assert moe_kernels("vllm", "fp8_block") == (
        ("flashinfer_trtllm", "vllm_triton", "flashinfer_cutlass", "deepgemm"), "fp8")  # EP 1
    assert moe_kernels("trtllm", "fp8_block") == (("trtllm_cutlass", "deepgemm"), None)
    assert moe_kernels("generic", "fp8_block") == ((), None)
    assert moe_kernels("sglang", "bf16") == (("flashinfer_trtllm", "sglang_triton"), None)
    assert moe_kernels("trtllm", "w4a16_mxfp4") == (("trtllm",), None)
    assert moe_kernels("vllm", "fp8") == ((), None)  # not stated: the table as measured
    assert moe_kernels("vllm", "w4a16_mxfp4") == (("triton_ogs", "flashinfer_trtllm", "marlin"),
                                                  None)


@pytest.mark.parametrize("engine, eff", [("generic", EFF["fp8_block"]),
                                         ("trtllm", EFF["fp8_block"]),
                                         ("sglang", EFF["fp8"]), ("vllm", EFF["fp8"])])
def test_roofline_reads_the_engines_table_for_fp8_block_experts(engine, eff):
    """A large fp8_block expert call (compute-bound): time = bound / the efficiency of the
    table the engine's kernel reads, and the op says which table it read."""
    prec = O.Precision.inference("fp8_block", "fp8", "fp8")
    op = O.grouped_gemm("moe.expert.up", 8 * 4096, 4096, 7168, 8, prec)
    prof = _keyed_profile()
    bound = float(op_times([op], Roofline(H100, F.unit_profile(prof))).time[0])
    # under a DeepEP all-to-all (SGLang's DeepGEMM; the others list one kernel for any)
    times = op_times([op], Roofline(H100, prof, engine=engine, moe_a2a=True))
    assert float(times.time[0]) == pytest.approx(bound / eff)
    assert times.moe_tables["moe.expert.up"].startswith(
        "moe.fp8_block" if eff == EFF["fp8_block"] else "moe.fp8 as proxy")


def test_w4a16_expert_reads_the_w4a16_curve_and_bf16_does_not():
    w4a16 = O.Precision.inference("mxfp4", "bf16", "bf16")
    bf16 = O.Precision.inference("bf16", "bf16", "bf16")
    ops = [O.grouped_gemm("moe.expert.up", 8 * 4096, 4096, 7168, 8, w4a16),
           O.grouped_gemm("moe.expert.down", 8 * 4096, 4096, 7168, 8, bf16)]
    prof = _keyed_profile()
    unit = op_times(ops, Roofline(H100, F.unit_profile(prof))).time
    t = op_times(ops, Roofline(H100, prof)).time
    assert float(t[0]) == pytest.approx(float(unit[0]) / EFF["w4a16_mxfp4"])
    assert float(t[1]) == pytest.approx(float(unit[1]) / EFF["bf16"])


@pytest.mark.parametrize("device", MOE_DEVICES)
def test_reference_profiles_label_their_moe_kernels_and_ship_w4a16(device):
    prof = load_profile(data_dir("calibration") / f"{device}.reference.json")
    assert set(prof.moe_kernel) == set(prof.moe)
    assert prof.moe_kernel["bf16"] == prof.moe_kernel["fp8"] == "trtllm_cutlass"
    hopper = device.startswith("h")
    assert prof.moe_kernel["fp8_block"] == ("trtllm_cutlass" if hopper else "deepgemm")
    assert "w4a16_mxfp4" in prof.moe and (hopper or "w4a8_mxfp4_mxfp8" in prof.moe)
    # SGLang's DeepGEMM (DeepEP) reads the per-tensor fp8 table on Hopper, the DeepGEMM one on
    # Blackwell; without an all-to-all its own measured kernel: Triton on Hopper, FlashInfer
    # TRT-LLM-gen on Blackwell
    key = prof.moe_table("fp8_block", "", *moe_kernels("sglang", "fp8_block", a2a="deepep"))[0]
    assert key == ("fp8" if hopper else "fp8_block")
    key = prof.moe_table("fp8_block", "", *moe_kernels("sglang", "fp8_block"))[0]
    assert key == ("fp8_block@sglang_triton" if hopper else "fp8_block@flashinfer_trtllm")


# ---- vLLM / SGLang kernel tables next to TensorRT-LLM's -------------------------------------

AIC = SOURCES / "aiconfigurator/systems/data"
NEMOTRON_NANO = (2688, 1856, 128, 6)  # ReLU^2 experts: one up projection


def test_vllm_moe_table_converts_by_kernel_one_row_by_hand():
    """vLLM 0.24.0 on H100, gpt-oss-120b experts (hidden = inter = 2880, 128 experts, top-4)
    at TP 2, 64 tokens: 0.39235735 ms in moe_perf.parquet (read with pyarrow), kernel_source
    vllm_gptossmxfp4moe_triton_oaitritonmxfp4expertsmonolithic -> table
    w4a16_mxfp4@triton_ogs; the Nemotron-3 shape is non-gated only when listed."""
    pytest.importorskip("pyarrow")
    path = AIC / "h100_sxm/moe/vllm/0.24.0/moe_perf.parquet"
    recs = C.aic_moe(path, dtypes=("w4a16_mxfp4", "bfloat16"), by_kernel=True,
                     nongated=[NEMOTRON_NANO])
    (r,) = [r for r in recs if r["params"]["dtype"] == "w4a16_mxfp4" and
            r["params"]["tokens"] == 64 and r["params"]["experts"] == 128 and
            r["params"]["tp"] == 2 and r["params"]["ep"] == 1 and
            r["params"]["hidden"] == 2880]
    assert r["time_s"] == pytest.approx(0.39235735e-3)
    assert r["params"]["table"] == "w4a16_mxfp4@triton_ogs" and r["params"]["gated"]
    assert r["params"]["topk"] == 4 and r["params"]["inter"] == 2880
    tables = {r["params"]["table"] for r in recs}
    assert tables == {"w4a16_mxfp4@triton_ogs", "w4a16_mxfp4@marlin", "bf16@vllm_triton"}
    nano = [r for r in recs if (r["params"]["hidden"], r["params"]["inter"]) == (2688, 1856)]
    assert nano and not any(r["params"]["gated"] for r in nano)
    plain = C.aic_moe(path, dtypes=("bfloat16",))  # without by_kernel: the format's table
    assert plain and not any("table" in r["params"] for r in plain)
    assert all(r["params"]["gated"] for r in plain)  # nothing listed as non-gated


def test_sglang_moe_table_converts_by_kernel_one_row_by_hand():
    """SGLang 0.5.14 on H100, bf16 fused_moe_triton, 4096 x 1536 experts (128, top-8) at
    EP 8, 256 tokens: 0.32204288 ms."""
    pytest.importorskip("pyarrow")
    path = AIC / "h100_sxm/moe/sglang/0.5.14/moe_perf.parquet"
    recs = C.aic_moe(path, dtypes=("bfloat16",), by_kernel=True,
                     kernel_sources=("sglang_fused_moe_triton",))
    (r,) = [r for r in recs if (r["params"]["hidden"], r["params"]["inter"],
                                r["params"]["ep"], r["params"]["tp"],
                                r["params"]["tokens"]) == (4096, 1536, 8, 1, 256)]
    assert r["time_s"] == pytest.approx(0.32204288e-3)
    assert r["params"]["table"] == "bf16@sglang_triton"
    assert (r["params"]["experts"], r["params"]["topk"]) == (128, 8)
    assert kernel_labels()[r["stats"]["kernel_source"]] == "sglang_triton"


def test_every_vllm_sglang_kernel_source_has_a_label():
    """A kernel_source without a label would stop ``by_kernel`` conversion (a clear error)."""
    pq = pytest.importorskip("pyarrow.parquet")
    for path in AIC.glob("*/moe/*/*/moe_perf.parquet"):
        if "/trtllm/" in str(path):
            continue
        kernels = set(pq.read_table(path, columns=["kernel_source"]).column(0).to_pylist())
        assert kernels <= set(kernel_labels()), (path, kernels - set(kernel_labels()))


def _kernel_profile():
    """Hand-made: TRT-LLM's reference tables plus two engines' kernel tables of W4A16."""
    eff = {**EFF, "w4a16_mxfp4@triton_ogs": 0.3, "w4a16_mxfp4@marlin": 0.2,
           "bf16@vllm_triton": 0.6}
    return _keyed_profile().model_copy(update={
        "moe": {k: Curve(values=(v,)) for k, v in eff.items()},
        "moe_overhead_s": {k: 0.0 for k in eff},
        "moe_kernel": {**_keyed_profile().moe_kernel, "w4a16_mxfp4@triton_ogs": "triton_ogs",
                       "w4a16_mxfp4@marlin": "marlin", "bf16@vllm_triton": "vllm_triton"}})


def test_moe_table_picks_the_engines_kernel_table():
    """docs/calibration.md "Which table a grouped GEMM reads": the first of the engine's
    kernels with a table of the format; the generic engine and a kernel no table measured read
    the format's reference table; another engine's kernel table is never a fallback."""
    prof = _kernel_profile()
    assert prof.moe_table("bf16", "mxfp4", ("triton_ogs", "marlin"))[0] == \
        "w4a16_mxfp4@triton_ogs"
    assert prof.moe_table("bf16", "mxfp4", ("marlin", "triton_ogs"))[0] == "w4a16_mxfp4@marlin"
    assert prof.moe_table("bf16", "mxfp4")[0] == "w4a16_mxfp4"  # generic: the reference
    key, why = prof.moe_table("bf16", "mxfp4", ("flashinfer_trtllm",))
    assert key == "w4a16_mxfp4" and "standing in" in why
    assert prof.moe_table("bf16", "", ("vllm_triton",))[0] == "bf16@vllm_triton"
    assert prof.moe_table("bf16")[0] == "bf16"
    # no reference table of fp16: the compute dtype's fallback, never bf16@vllm_triton
    only_kernel = prof.model_copy(update={"moe": {"bf16@vllm_triton": prof.moe["bf16"]}})
    assert only_kernel.moe_table("bf16")[0] == ""
    assert only_kernel.moe_table("bf16", "", ("vllm_triton",))[0] == "bf16@vllm_triton"


def test_fit_installs_a_kernel_table_under_its_key_and_tests_it_on_its_own_curve():
    """Synthetic records of a ``by_kernel`` table (params ``table``) at a known efficiency
    next to a reference table of the same format at another: each fit recovers its own."""
    base = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    unit = Roofline(H100, F.unit_profile(base))
    recs = list(synthetic_moe_records(base))
    for r in synthetic_moe_records(base):
        p = {**r["params"], "table": "bf16@vllm_triton"}
        geo = F.moe_geometry([rec(p, 1.0)])
        bound = float(F.moe_times([rec(p, 1.0)], "bf16", unit)[0])
        recs.append(rec(p, bound / (0.5 * true_moe_eff(geo["m"][0], geo["groups"][0]))
                        + 2 * OVERHEAD))
    tables = {t.name: t for t in F.moe_tables(recs, H100, base)}
    assert set(tables) == {"moe.bf16", "moe.bf16@vllm_triton"}
    t = tables["moe.bf16@vllm_triton"]
    assert np.allclose(t.eff, 0.5 * true_moe_eff(t.coords[:, 0], t.coords[:, 1]))
    fe, _, _, _ = F.heldout_error(t, base, 0.3, 0)
    assert fe.median_ape < 0.03
    prof = F.fit_profile(recs, H100, kind="measured", profile_id="synthetic", sources=[])
    assert set(prof.moe) == {"bf16", "bf16@vllm_triton"}


@pytest.mark.parametrize("device", ["h100-sxm5-80gb", "h200-sxm-141gb"])
def test_hopper_gpt_oss_experts_read_the_engines_measured_kernel(device):
    """gpt-oss MXFP4 experts on Hopper: vLLM and SGLang (triton_kernel at EP 1) read the
    Triton matmul_ogs table, TensorRT-LLM and the generic engine TRT-LLM's W4A16 table."""
    prof = load_profile(data_dir("calibration") / f"{device}.reference.json")
    pick = {e: prof.moe_table("bf16", "mxfp4", *moe_kernels(e, "w4a16_mxfp4"))[0]
            for e in ("vllm", "sglang", "trtllm", "generic")}
    assert pick == {"vllm": "w4a16_mxfp4@triton_ogs", "sglang": "w4a16_mxfp4@triton_ogs",
                    "trtllm": "w4a16_mxfp4", "generic": "w4a16_mxfp4"}
    assert prof.moe_kernel["w4a16_mxfp4@triton_ogs"] == "triton_ogs"
    assert prof.moe_kernel["w4a16_mxfp4"] == "trtllm"
    assert prof.moe_table("bf16", "", *moe_kernels("vllm", "bf16"))[0] == "bf16@vllm_triton"
    # SGLang's fp8_block DeepGEMM (DeepEP): still the per-tensor fp8 proxy (no DeepGEMM table)
    assert prof.moe_table("fp8_block", "", *moe_kernels("sglang", "fp8_block",
                                                        a2a="deepep"))[0] == "fp8"


@pytest.mark.parametrize("device", ["b200", "b300", "gb200", "gb300"])
def test_blackwell_experts_read_the_engines_measured_kernel(device):
    """On the Blackwells vLLM and SGLang ran FlashInfer's TensorRT-LLM-gen MoE (their tables'
    kernel_source): their bf16 / nvfp4 / gpt-oss MXFP4 experts read that table, TensorRT-LLM
    and the generic engine the reference (TRT-LLM) tables."""
    prof = load_profile(data_dir("calibration") / f"{device}.reference.json")
    for engine in ("vllm", "sglang"):
        for dtype, wfmt, fmt in (("bf16", "", "bf16"), ("nvfp4", "", "nvfp4"),
                                 ("bf16", "mxfp4", "w4a16_mxfp4")):
            key = prof.moe_table(dtype, wfmt, *moe_kernels(engine, fmt))[0]
            assert key == f"{fmt}@flashinfer_trtllm", (engine, fmt)
    for engine in ("trtllm", "generic"):
        assert prof.moe_table("nvfp4", "", *moe_kernels(engine, "nvfp4"))[0] == "nvfp4"
        assert prof.moe_table("bf16", "mxfp4", *moe_kernels(engine, "w4a16_mxfp4"))[0] == \
            "w4a16_mxfp4"
