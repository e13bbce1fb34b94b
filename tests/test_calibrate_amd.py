"""AMD Instinct reference profiles (MI300X, MI355X): built only from published micro-level
measurements (calibration/sources/measured/README.md, AMD section; docs/calibration.md).

Each number is checked against the copied source file by hand, and one point of each kind of
curve is recomputed from the core's own time formula."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from perfmodel.calibrate import converters_amd as A
from perfmodel.calibrate import reference as R
from perfmodel.errors import PerfModelError
from perfmodel.specs import registry

SOURCES = R.sources_dir()
AITER = SOURCES / "aiter"
POINTS = SOURCES / "published" / "amd_points.json"
HK = SOURCES / "hipkittens" / "f09e9685c4c6" / "analysis" / "attn"


@pytest.mark.parametrize("device", ["mi300x", "mi355x"])
def test_profile_loads_and_is_a_reference(device):
    prof = registry.reference_profile(device)
    assert prof is not None and prof.kind == "reference" and prof.device == device
    assert prof.gemm and prof.moe and prof.memory is not None
    # every shipped table has a held-out error, and every source is cited
    tables = {fe.table for fe in prof.fit_errors}
    assert {f"gemm.{d}" for d in prof.gemm} <= tables
    assert {f"moe.{d}" for d in prof.moe} <= tables
    assert len(prof.sources) == len(R.REFERENCES[device].sources)
    for fe in prof.fit_errors:
        # a release's table (``@aiter_v0.1.7.post1``) holds what that release measured: the
        # MI300X default fused-MoE kernel 4 rows (tests/test_calibrate_aiter_versions.py)
        assert fe.n_test >= (1 if "@" in fe.table else 4)
        assert 0 <= fe.median_ape <= fe.p90_ape


def test_mi300x_tables_and_mi355x_tables():
    mi300x, mi355x = (registry.reference_profile(d) for d in ("mi300x", "mi355x"))
    assert set(mi300x.gemm) == {"bf16", "fp8_block", "int8", "fp8_block@aiter_v0.1.7.post1"}
    assert set(mi300x.moe) == {"bf16", "fp8_block", "fp8_block@aiter_v0.1.7.post1"}
    assert {(c.collective, c.group_size) for c in mi300x.collectives} == {
        ("all_reduce", 2), ("all_reduce", 8)}
    assert not mi300x.attention  # no published MI300X attention table: defaults
    assert set(mi355x.gemm) == {"bf16", "fp8", "fp8_block", "mxfp4"}
    assert set(mi355x.moe) == {"bf16", "fp8", "fp8_block", "mxfp4"}
    assert set(mi355x.attention) == {"prefill", "backward"}


def _row(path: Path, **match) -> dict:
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if all(str(row[k]) == str(v) for k, v in match.items()):
                return row
    raise AssertionError(f"no row {match} in {path.name}")


def test_aiter_gemm_record_is_the_file_row():
    """MI300X, gpt-oss QKV projection at M = 1: 17.0412 us in the copied table (read by hand),
    1.73 TFLOP/s in its own column = 2 x 1 x 5120 x 2880 / 17.0412 us."""
    path = AITER / "e010caf52455/aiter/configs/model_configs/gptoss_bf16_tuned_gemm.csv"
    row = _row(path, cu_num=304, M=1, N=5120, K=2880)
    assert float(row["us"]) == 17.0412
    recs = A.aiter_gemm(path, dtype="bf16", cu_num=304)
    (rec,) = [r for r in recs if (r["params"]["m"], r["params"]["n"], r["params"]["k"])
              == (1, 5120, 2880)]
    assert rec["time_s"] == pytest.approx(17.0412e-6)
    assert 2 * 5120 * 2880 / rec["time_s"] / 1e12 == pytest.approx(float(row["tflops"]), rel=0.01)
    assert len(recs) == 36 and all(r["params"]["dtype"] == "bf16" for r in recs)


def test_hand_check_mi300x_gemm_curve_point():
    """The curve at a measured decode shape is the core's inverse of that measurement:
    memory-bound, bytes = (M K + N K + M N) x 2, eff = bytes / 5.3 TB/s / (t - overhead)."""
    prof = registry.reference_profile("mi300x")
    nbytes = (1 * 2880 + 5120 * 2880 + 1 * 5120) * 2
    hand = nbytes / 5300e9 / (17.0412e-6 - prof.kernel_overhead_s)
    assert float(prof.gemm_efficiency("bf16", 1, 5120, 2880)) == pytest.approx(hand, rel=2e-3)
    # and the maximum-achievable-matmul point: 668.4 / 1307.4 TFLOP/s (compute-bound)
    assert float(prof.gemm_efficiency("bf16", 10240, 15360, 8192)) == pytest.approx(
        668.4 / 1307.4, rel=0.01)


def test_hand_check_collective_and_memory_points():
    """2 x MI300X all_reduce of 4 GiB at 47.671 GB/s busbw (Bekman): one xGMI link of 64 GB/s
    per direction; latency = the default 21.3 us (one size cannot separate it):
    eff = 4 GiB / 64 GB/s / (4 GiB / 47.671 GB/s - 21.3 us) = 0.7450. STREAM triad 4000 GB/s of
    5300: eff = (bytes / 5300 GB/s) / (bytes / 4000 GB/s - kernel overhead)."""
    prof = registry.reference_profile("mi300x")
    fit = prof.collective_fit("all_reduce", "intra", 2)
    assert fit.latency_s == pytest.approx(2.13e-5)
    nb = 4 * 2**30
    hand = nb / 64e9 / (nb / 47.671e9 - 2.13e-5)
    assert float(fit.efficiency(nb)) == pytest.approx(hand, abs=1e-4)
    nb = 3 * (256 * 2**20 + 2) * 8
    hand = (nb / 5300e9) / (nb / 4000e9 - prof.kernel_overhead_s)
    assert prof.stream_efficiency == pytest.approx(hand, abs=1e-4)


def test_published_points_trace_to_their_citations():
    data = json.loads(POINTS.read_text())["points"]
    by = {p["id"]: p for p in data}
    for p in data:
        assert p["source"]["url"].startswith("https://github.com/"), p["id"]
    assert by["AMD-MAMF-BF16-MI300X"]["measured"]["tflops"] == 668.4
    assert by["AMD-MAMF-BF16-MI355X"]["measured"]["tflops"] == 1565.0
    assert by["AMD-STREAM-MI300X"]["measured"]["triad_GBps_max"] == 4000
    (rec,) = A.published_amd(POINTS, ["AMD-MAMF-BF16-MI300X"])
    assert rec["params"] == {"dtype": "bf16", "m": 10240, "n": 15360, "k": 8192}
    assert rec["time_s"] == pytest.approx(2 * 10240 * 15360 * 8192 / 668.4e12)
    with pytest.raises(ValueError, match="no point"):
        A.published_amd(POINTS, ["AMD-NOT-THERE"])


def test_fmoe_drops_rows_copied_between_batch_sizes():
    """tuned_fmoe.csv (aiter 0d38e26f) gives tokens 1-16 of a 256-expert layer the same stage
    times (200.78 us, read by hand; 8 experts of 7168 x 256 hold 88 MB, 11 us at 8 TB/s), and
    32768 tokens the same as 16384 (above the bf16 peak): configs filled into other batch
    sizes. None of a repeated group is kept; unique rows (32 tokens: 302.9 us) are."""
    path = AITER / "0d38e26fab23/aiter/configs/tuned_fmoe.csv"
    row = _row(path, cu_num=256, token=1, model_dim=7168, inter_dim=256,
               act_type="ActivationType.Gelu")
    assert float(row["us"]) == 200.7841
    recs = A.aiter_fmoe(path, cu_num=256, dtypes=["bf16"])
    layer = [r for r in recs if (r["params"]["hidden"], r["params"]["inter"],
                                 r["params"]["experts"]) == (7168, 256, 256)]
    tokens = {r["params"]["tokens"] for r in layer}
    assert tokens.isdisjoint({1, 2, 4, 8, 16, 16384, 32768}) and 32 in tokens
    assert all(r["params"]["tp"] == r["params"]["ep"] == 1 for r in recs)


def test_fmoe_mi300x_row_by_hand():
    path = AITER / "ca781d8197cc/aiter/configs/model_configs/qwen3_235b_bf16_tuned_fmoe.csv"
    row = _row(path, cu_num=304, token=256, inter_dim=384)
    assert float(row["us"]) == 356.6064
    recs = A.aiter_fmoe(path, cu_num=304, dtypes=["bf16"])
    (rec,) = [r for r in recs if (r["params"]["tokens"], r["params"]["inter"]) == (256, 384)]
    assert rec["time_s"] == pytest.approx(356.6064e-6)
    assert rec["params"] == {"dtype": "bf16", "tokens": 256, "hidden": 4096, "inter": 384,
                             "experts": 128, "topk": 8, "tp": 1, "ep": 1, "gated": True}


def test_hipkittens_batch_from_the_files_own_flop_count():
    """The GQA sweeps run B = 16 except B = 15 at 16384 tokens (mi355x_benchmark.sh); the
    converter recovers it from tflops x time / (4 N^2 H D, halved when causal)."""
    recs = A.hipkittens_attention(HK / "fwd/benchmark/mi355x_gqa_non_causal_fwd.json",
                                  phase="prefill", heads=64, kv_heads=8, causal=False)
    batch = {r["params"]["q_len"]: r["params"]["batch"] for r in recs}
    assert batch[1024] == 16 and batch[16384] == 15
    recs = A.hipkittens_attention(HK / "fwd/benchmark/mi355x_gqa_causal_fwd.json",
                                  phase="prefill", heads=64, kv_heads=8, causal=True)
    (r1k,) = [r for r in recs if r["params"]["q_len"] == 1024]
    assert r1k["time_s"] == pytest.approx(0.3843743097782135e-3)
    with pytest.raises(ValueError, match="phase"):
        A.hipkittens_attention(HK / "fwd/benchmark/mi355x_gqa_causal_fwd.json", phase="decode",
                               heads=64, kv_heads=8)


def test_hipkittens_square_gemms_keep_the_large_calls():
    """MI300X torch.matmul, read by hand: 4096^3 in 0.22007 ms (624.5 TFLOP/s); the 1024 and
    2048 calls (32 and 63 us, launch latency included) are dropped."""
    path = SOURCES / "hipkittens/270c8c3a78f7/fp6_dwordx4/analysis/gemm/mi300x_data_to_log.json"
    recs = A.hipkittens_gemm(path)
    assert sorted(r["params"]["m"] for r in recs) == [4096, 8192, 16384]
    (r4k,) = [r for r in recs if r["params"]["m"] == 4096]
    assert r4k["time_s"] == pytest.approx(0.22007348001003266e-3)
    assert 2 * 4096**3 / r4k["time_s"] / 1e12 == pytest.approx(624.5, abs=0.1)
    assert len(A.hipkittens_gemm(path, min_time_s=0.0)) == 5


def test_pow2_m_keeps_the_tuner_sweep():
    path = AITER / "84493f0e5b08/aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_ds_v3.csv"
    all_m = {r["params"]["m"] for r in A.aiter_gemm(path, "fp8_block", 256, "gfx950")}
    kept = {r["params"]["m"] for r in A.aiter_gemm(path, "fp8_block", 256, "gfx950",
                                                     pow2_m=True)}
    assert len(all_m) > 1000 and kept <= all_m
    assert all(m & (m - 1) == 0 for m in kept)


def test_attention_floor_only_for_latency_bound_tables():
    """A table that reaches the latency floor (fastest call at 1 % of its roofline) gets
    0.95 x its fastest call less the kernel overhead; a sweep of large calls (fastest at 27 %,
    as the MI355X flash-attention files) gets none, so the MI355X profile has no
    attention_overhead_s."""
    from perfmodel.calibrate.fit.attention import attention_floor

    bound = np.geomspace(1e-7, 1e-3, 25)
    t_engine = np.maximum(bound / 0.4, 1e-5)  # a 10 us floor under the small calls
    assert attention_floor(t_engine, bound, 2e-6) == pytest.approx(0.95 * 1e-5 - 2e-6)
    big = np.geomspace(3e-5, 3e-2, 25)  # large calls only, 1000x span
    assert attention_floor(big / 0.27, big, 2e-6) == 0.0
    assert not registry.reference_profile("mi355x").attention_overhead_s


def test_unknown_converter_is_one_clear_error():
    assert R.converter("aiter_gemm") is A.aiter_gemm
    assert R.converter("aic_gemm").__module__.endswith("converters")
    with pytest.raises(PerfModelError, match="not a converter"):
        R.converter("no_such_converter")
    with pytest.raises(ValueError, match="dtype"):
        A.aiter_gemm(AITER / "e010caf52455/aiter/configs/model_configs/gptoss_bf16_tuned_gemm.csv",
                     dtype="fp64", cu_num=304)
