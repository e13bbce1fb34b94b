"""Calibration fitting: synthetic records from a known efficiency surface are recovered; the
held-out split is disjoint and seeded; the shipped reference profiles load, are labelled,
cite sources, carry held-out errors and predict published points they were not fitted on,
and rebuild identically; the fit report is written. Converters: test_calibrate_converters.py."""

from __future__ import annotations

import json
import math
from argparse import Namespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.calibrate import fit as F
from perfmodel.calibrate import reference as R
from perfmodel.calibrate.report import write_report
from perfmodel.comm import bus_factor
from perfmodel.paths import data_dir
from perfmodel.profile import Curve
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.registry import load_profile, measured_moe_curves

SOURCES = data_dir("calibration") / "sources" / "measured"
DEVICES = ["a100-sxm4-80gb", "h100-sxm5-80gb", "h200-sxm-141gb", "b200"]
H100 = registry.get_device("h100-sxm5-80gb")
OVERHEAD = 3e-6


def rec(bench: str, params: dict, t: float) -> dict:
    return {"bench": bench, "key": json.dumps(params, sort_keys=True), "params": params,
            "time_s": float(t), "stats": {}, "status": "ok", "error": None}


def true_gemm_eff(m, n, k):
    """A known smooth surface: small M inefficient, large shapes near 0.85."""
    lm, ln, lk = np.log2(m), np.log2(n), np.log2(k)
    return 0.02 + 0.83 / (1 + np.exp(-(lm - 6) / 1.5)) * (0.8 + 0.2 * np.tanh((ln + lk - 20) / 4))


def true_attn_eff(q, kv):
    return 0.2 + 0.6 * np.log2(kv) / 17 * (0.5 + 0.5 * np.log2(q + 1) / 17)


def _core_time(op: O.Op, eff_curve_profile) -> np.ndarray:
    return op_times([op], Roofline(H100, eff_curve_profile)).time[0]


def synthetic_gemm_records(grid=(1, 4, 16, 64, 256, 1024, 4096), nk=(256, 1024, 4096, 16384)):
    """Times from the core's own formula with a known efficiency and overhead."""
    recs = [rec("launch", {}, OVERHEAD)]
    base = F.unit_profile(load_profile(data_dir("calibration") / "default.json"))
    for m in grid:
        for n in nk:
            for k in nk:
                op = O.gemm("g", m, n, k, F.precision_for("bf16"))
                bound = float(_core_time(op, base))
                t = bound / true_gemm_eff(m, n, k) + OVERHEAD
                recs.append(rec("gemm", {"dtype": "bf16", "m": m, "n": n, "k": k}, t))
    return recs


# ---- fitting recovers a known surface -------------------------------------------------------

def test_fit_recovers_known_gemm_surface():
    recs = synthetic_gemm_records()
    result = F.fit_profile(recs, H100, kind="measured", profile_id="synthetic", sources=[],
                           return_result=True)
    prof = result.profile
    assert prof.kernel_overhead_s == pytest.approx(OVERHEAD, rel=1e-3)
    pts = np.array([[r["params"][x] for x in "mnk"] for r in recs[1:]], float)
    fitted = prof.gemm["bf16"](*pts.T)
    assert np.allclose(fitted, true_gemm_eff(*pts.T), rtol=0.01)
    # held-out points (grid nodes whose data were removed) are interpolated from neighbours
    (fe,) = [f for f in prof.fit_errors if f.table == "gemm.bf16"]
    assert fe.n_fit + fe.n_test == len(recs) - 1
    assert fe.median_ape < 0.05
    # between measured nodes the curve interpolates the surface
    mid = np.array([[32.0, 2048.0, 2048.0], [512.0, 512.0, 8192.0]])
    assert np.allclose(prof.gemm["bf16"](*mid.T), true_gemm_eff(*mid.T), rtol=0.08)


def test_fit_recovers_attention_pooled_over_batch_and_heads():
    """Configurations the curve's axes do not separate, with one true efficiency per
    (q_len, kv_len), are recovered exactly (the inverse-efficiency fit)."""
    base = F.unit_profile(load_profile(data_dir("calibration") / "default.json"))
    recs = [rec("launch", {}, OVERHEAD)]
    for kv in (256, 1024, 4096, 16384):
        for batch, heads, kvh in ((1, 8, 8), (4, 32, 8), (16, 64, 8)):
            p = {"phase": "decode", "backend": "x", "dtype": "bf16", "batch": batch,
                 "heads": heads, "kv_heads": kvh, "head_dim": 128, "q_len": 1, "kv_len": kv,
                 "causal": True}
            bound = float(_core_time(F.attention_op([{"params": p}]), base)[0])
            recs.append(rec("attention", p, bound / true_attn_eff(1, kv) + OVERHEAD))
    prof = F.fit_profile(recs, H100, kind="measured", profile_id="a", sources=[])
    kv = np.array([256.0, 1024.0, 4096.0, 16384.0])
    assert np.allclose(prof.attention["decode"](np.ones(4), kv), true_attn_eff(1, kv),
                       rtol=0.01)


def test_fit_recovers_collective_latency_and_bus_efficiency():
    """nccl-tests-like sweep made with the core's alpha-beta form: t = alpha + S f / (bw e)."""
    link = 450e9
    alpha = 20e-6
    sizes = 2.0 ** np.arange(10, 30)
    eff = 0.2 + 0.6 * (np.log2(sizes) - 10) / 19
    n = 8
    recs = [rec("collective", {"collective": "all_reduce", "group_size": n, "scope": "intra",
                               "dtype": "fp16", "bytes": s},
                alpha + s * float(bus_factor("all_reduce", n)) / (link * e))
            for s, e in zip(sizes, eff, strict=True)]
    prof = F.fit_profile(recs, H100, kind="measured", profile_id="c", sources=[])
    (fit,) = prof.collectives
    fixed = F.LATENCY_FLOOR_FRACTION * (alpha + sizes[0] * 1.75 / (link * eff[0]))
    assert fit.latency_s == pytest.approx(fixed, rel=1e-3)
    big = sizes >= 2**24  # where the latency no longer dominates
    assert np.allclose(fit.efficiency(sizes[big]), eff[big], rtol=0.02)
    assert "nvlink4-nvswitch" in fit.link


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1 << 16), st.integers(1, 1 << 16)), min_size=1,
                max_size=40, unique=True),
       st.floats(0.05, 1.2))
def test_constant_efficiency_is_reproduced_everywhere(points, value):
    coords = np.array(points, float)
    curve = F.fit_curve(("q_len", "kv_len"), coords, np.full(len(coords), value))
    probe = np.array([[1.0, 1.0], [3.0, 1e6], [1e5, 7.0]])
    assert np.allclose(curve(*coords.T), value, rtol=1e-3)
    assert np.allclose(curve(*probe.T), value, rtol=1e-3)


def test_measured_cpu_profile_takes_peaks_from_the_records():
    recs = [rec("gemm", {"dtype": "fp32", "m": 512, "n": 512, "k": 512}, 2 * 512**3 / 1e11),
            rec("gemm", {"dtype": "fp32", "m": 64, "n": 512, "k": 512}, 2 * 64 * 512**2 / 5e10),
            rec("memory", {"op": "copy", "bytes": 1 << 26}, (1 << 26) / 20e9),
            rec("memory", {"op": "copy", "bytes": 1 << 28}, (1 << 28) / 25e9)]
    prof = F.fit_profile(recs, None, kind="measured", profile_id="cpu", sources=[])
    assert prof.peak_tflops["fp32"] == pytest.approx(0.1, rel=1e-3)
    assert prof.memory_bandwidth_gbps == pytest.approx(25.0, rel=1e-3)
    assert prof.device is None and prof.kind == "measured"


# ---- held-out split ------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(st.integers(0, 5000), st.floats(0.05, 0.6), st.integers(0, 2**31 - 1))
def test_holdout_split_is_disjoint_covering_and_seeded(n, holdout, seed):
    fit_idx, test_idx = F.holdout_split(n, holdout, seed, "gemm.bf16")
    assert not set(fit_idx) & set(test_idx)
    assert sorted([*fit_idx, *test_idx]) == list(range(n))
    again = F.holdout_split(n, holdout, seed, "gemm.bf16")
    assert np.array_equal(again[1], test_idx)
    if n >= F.MIN_TEST_POINTS:
        assert len(test_idx) >= 1 and len(fit_idx) >= 2
        if n >= 100:
            assert abs(len(test_idx) / n - holdout) < 0.02
    else:
        assert len(test_idx) == 0


def test_holdout_split_depends_on_seed_and_table():
    a = F.holdout_split(1000, 0.3, 0, "gemm.bf16")[1]
    assert not np.array_equal(a, F.holdout_split(1000, 0.3, 1, "gemm.bf16")[1])
    assert not np.array_equal(a, F.holdout_split(1000, 0.3, 0, "gemm.fp8")[1])


# ---- shipped reference profiles ------------------------------------------------------------

def _fp8_netted(device: str) -> bool:
    """Whether the device's reference build nets its fp8 GEMM rows of the measured quantise
    (a table of calibration/references.yaml with convert: aic_gemm and kwargs.fp8_net_of)."""
    import yaml

    recipe = yaml.safe_load((data_dir("calibration") / "references.yaml").read_text())
    return any(t.get("convert") == "aic_gemm" and "fp8_net_of" in (t.get("kwargs") or {})
               for t in recipe["devices"][device]["tables"])


@pytest.mark.parametrize("device", DEVICES)
def test_reference_profiles_load_and_are_honest(device):
    path = data_dir("calibration") / f"{device}.reference.json"
    # A size guard, not a precision rule: Blackwell profiles hold one GEMM curve per format and
    # engine kernel (bf16, fp8, nvfp4 FlashInfer, nvfp4 TensorRT-LLM) at 4 significant digits.
    # Each MoE table's measured curves (~2,900 shapes on Hopper, ~3,900 on Blackwell, ~27 token
    # counts each: ~1.3-1.8 MB) live in the file beside it, read only when a MoE model is timed.
    assert path.stat().st_size < 2.0e6
    prof = load_profile(path)
    if prof.moe_curves_file:
        side = path.parent / prof.moe_curves_file
        assert side.stat().st_size < 2.5e6 and not prof.moe_curves
        assert set(measured_moe_curves(prof)) <= set(prof.moe)
    assert prof.kind == "reference" and prof.label == "reference (measured upstream)"
    assert prof.device == device
    assert prof.sources and all(s.url.startswith("https://") for s in prof.sources)
    assert prof.fit_errors and prof.notes
    tables = {fe.table for fe in prof.fit_errors}
    assert {"gemm.bf16", "attention.prefill", "attention.decode"} <= tables
    assert any(t.startswith("collective.all_reduce.intra.") for t in tables)
    for fe in prof.fit_errors:
        assert fe.n_test > 0 and 0 <= fe.median_ape <= fe.p90_ape
        assert fe.table in prof.uncertainty
    netted = _fp8_netted(device)
    for fe in prof.fit_errors:
        if fe.table.split("@")[0] in ("gemm.fp8", "gemm.nvfp4") and netted:
            # rows = an engine's fp8 / nvfp4 GEMM minus a separately measured quantise (10-50 us,
            # jitter ~1 us): a difference of two measurements, noisier than either
            # (docs/calibration.md, "fp8 rows net of the activation quantisation")
            assert fe.median_ape <= 0.08 and fe.p90_ape <= 0.30, fe
        elif fe.table.startswith("gemm."):  # the benchmark targets
            assert fe.median_ape <= 0.05 and fe.p90_ape <= 0.15, fe
    assert prof.attention_overhead_s.get("decode", 0) > 0
    assert registry.get_device(device)  # names a real hardware_specs entry


@pytest.mark.parametrize("point,device", [("C-MAMF-BF16-A100-SXM", "a100-sxm4-80gb"),
                                          ("C-MAMF-BF16-H100-SXM", "h100-sxm5-80gb")])
def test_profile_predicts_unseen_published_gemm_within_its_uncertainty(point, device):
    """Maximum-achievable-matmul points (Bekman's book, eager torch.mm, not in the fitted
    tables; the H100 shape's K = 13312 is not a grid value)."""
    pts = {p["id"]: p for p in json.loads((SOURCES / R.PUBLISHED).read_text())}
    p = pts[point]
    m, n, k = map(int, p["model"]["best_shape_MxNxK"].split("x"))
    measured = 2 * m * n * k / (p["measured"]["mamf_tflops"] * 1e12)
    prof = load_profile(data_dir("calibration") / f"{device}.reference.json")
    op = O.gemm("g", m, n, k, F.precision_for("bf16"))
    predicted = float(op_times([op], Roofline(registry.get_device(device), prof)).time[0])
    assert abs(math.log(predicted / measured)) <= prof.uncertainty["gemm.bf16"]


def test_reference_profile_reproduces_the_readme_sanity_point():
    """8192^3 bf16 on H100: 1.405 ms in the table (783 TFLOP/s); the shipped curve gives it
    back through the core."""
    prof = load_profile(data_dir("calibration") / "h100-sxm5-80gb.reference.json")
    op = O.gemm("g", 8192, 8192, 8192, F.precision_for("bf16"))
    t = float(op_times([op], Roofline(H100, prof)).time[0])
    assert 2 * 8192**3 / t / 1e12 == pytest.approx(783, rel=0.02)


@pytest.mark.parametrize("phase,name", [
    ("prefill", "h100_sxm__trtllm_1.3.0rc20__context__hd128_nowindow.csv"),
    ("decode", "h100_sxm__trtllm_1.3.0rc20__generation__hd128_nowindow.csv")])
def test_shipped_attention_curves_match_the_current_core(phase, name):
    """Efficiencies are relative to ops.attention_ops' bound: if that IO model changes, the
    shipped curves go stale (rebuild: benchmarks/calibration_fit.py --write). In-sample error
    through the current core must stay near the held-out error the profile states."""
    prof = load_profile(data_dir("calibration") / "h100-sxm5-80gb.reference.json")
    records = C.aic_attention(SOURCES / "aiconfigurator/csv/attention" / name, phase)
    (table,) = F.attention_tables(records, H100, prof)
    med, p90, _ = F.errors(table.times(prof, np.arange(len(table))), table.measured)
    (fe,) = [f for f in prof.fit_errors if f.table == f"attention.{phase}"]
    assert med <= 1.25 * fe.median_ape and p90 <= 1.5 * fe.p90_ape


def test_reference_build_writes_the_same_profile_fast_path(tmp_path, monkeypatch):
    """build_reference / run_reference_cli end to end on the NCCL table only."""
    ref = R.REFERENCES["h200-sxm-141gb"]
    nccl = [t for t in ref.tables if "nccl" in t.path]
    monkeypatch.setitem(R.REFERENCES, "h200-sxm-141gb",
                        R.Reference(nccl, ref.sources, ref.notes))
    out = tmp_path / "h200.json"
    prof = R.build_reference("h200-sxm-141gb", out)
    again = load_profile(out)
    assert again.kind == "reference" and again.collectives and not again.gemm
    assert again.model_dump(exclude={"path"}) == prof.model_dump(exclude={"path"})
    png = tmp_path / "h200.png"
    assert R.run_reference_cli(Namespace(reference="h200-sxm-141gb", out=str(out),
                                         report=str(png))) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h200.json", "h200.png"]


def test_unrepresentative_inter_node_table_is_reported_not_shipped():
    prof = load_profile(data_dir("calibration") / "a100-sxm4-80gb.reference.json")
    assert not [c for c in prof.collectives if c.scope == "inter"]
    held = [t for t in R.REFERENCES["a100-sxm4-80gb"].tables if not t.ship]
    assert held and all("fabric" in t.why for t in held)


# ---- report --------------------------------------------------------------------------------

def test_report_png_is_written_atomically(tmp_path):
    recs = synthetic_gemm_records(grid=(1, 16, 256, 4096), nk=(1024, 4096))
    recs += [rec("memory", {"op": "copy", "bytes": b}, b / 2.5e12 + OVERHEAD)
             for b in (1 << 20, 1 << 24, 1 << 28, 1 << 30)]
    prof = F.fit_profile(recs, H100, kind="measured", profile_id="r", sources=[])
    out = tmp_path / "sub" / "report.png"
    assert write_report(recs, prof, out) == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["report.png"]


def test_curve_json_round_trip_keeps_close_log2_nodes():
    """m = 4352 and 4353 are 3.3e-4 apart in log2: the stored grid keeps them apart."""
    curve = F.fit_curve(("m",), np.array([4352.0, 4353.0, 8192.0]), np.array([0.8, 0.5, 0.9]))
    again = Curve.model_validate_json(curve.model_dump_json())
    assert np.allclose(again(np.array([4352.0, 4353.0])), [0.8, 0.5], rtol=1e-3)


def test_unknown_reference_device_is_one_clear_error():
    from perfmodel.errors import PerfModelError

    with pytest.raises(PerfModelError, match="reference profiles exist for a100-sxm4-80gb"):
        R.run_reference_cli(Namespace(reference="v100-sxm2-32gb", out=None, report=None))
