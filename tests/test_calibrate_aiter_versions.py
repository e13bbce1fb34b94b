"""Kernel tables by the aiter release an engine image ships (calibration/references.yaml mi300x,
engines/versions/sglang-0.5.5.post3.yaml): SGLang v0.5.5.post3's ROCm images pin aiter
v0.1.7.post1, so its block-scale fp8 GEMMs on MI300X read that release's tuned rows
(gemm.fp8_block@aiter_v0.1.7.post1); a later SGLang reads the reference table (aiter 84493f0e).

Checked against the copied CSV rows themselves (independent of the fit): at M = 16, N = 1536,
K = 7168 (DeepSeek-V3's q_a_proj) aiter v0.1.7.post1 timed 19.30 us, aiter 84493f0e 11.54 us
on 304-CU MI300X (1.67x apart), so a prediction near one of them and far from the other tells
which table was read."""

from __future__ import annotations

import csv

import pytest

from perfmodel import ops as O
from perfmodel.calibrate import converters_amd as CA
from perfmodel.calibrate.fit.table import precision_for
from perfmodel.calibrate.reference import sources_dir
from perfmodel.engines import gemm_kernels, moe_kernels
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry

OLD = "aiter/44610f47a975/aiter/configs/a8w8_blockscale_tuned_gemm.csv"
NEW = "aiter/84493f0e5b08/aiter/configs/model_configs/a8w8_blockscale_tuned_gemm_ds_v3.csv"
SHAPE = (16, 1536, 7168)


def _row_us(path: str, shape: tuple[int, int, int]) -> float:
    """The ``us`` of the cu_num 304 (gfx942) row of ``shape`` in a copied aiter CSV."""
    with open(sources_dir() / path, newline="") as f:
        hits = [float(r["us"]) for r in csv.DictReader(f)
                if r["cu_num"] == "304" and r.get("gfx", "gfx942") == "gfx942"
                and (int(r["M"]), int(r["N"]), int(r["K"])) == shape]
    assert len(hits) == 1, (path, shape, hits)
    return hits[0]


def _gemm_us(version: str, shape: tuple[int, int, int]) -> float:
    """The MI300X reference profile's time of one fp8_block GEMM run by SGLang ``version``."""
    dev = registry.get_device("mi300x")
    roof = Roofline(dev, registry.reference_profile("mi300x"), engine="sglang",
                    engine_version=version)
    m, n, k = shape
    op = O.gemm("gemm", m, n, k, precision_for("fp8_block"))  # as the fit times its rows
    return float(op_times([op], roof).time[0]) * 1e6


def test_the_rows_differ_by_release():
    old, new = _row_us(OLD, SHAPE), _row_us(NEW, SHAPE)
    assert old == pytest.approx(19.3027) and new == pytest.approx(11.544)


def test_sglang_0_5_5_post3_names_the_aiter_release_of_its_image():
    assert gemm_kernels("sglang", "fp8_block", "0.5.5.post3") == ("aiter_v0.1.7.post1",)
    assert moe_kernels("sglang", "fp8_block", "0.5.5.post3")[0][0] == "aiter_v0.1.7.post1"
    for later in ("0.5.6", "0.5.9"):
        assert gemm_kernels("sglang", "fp8_block", later) == ()
        assert "aiter_v0.1.7.post1" not in moe_kernels("sglang", "fp8_block", later)[0]


def test_the_profile_picks_the_table_of_the_engine_version():
    prof = registry.reference_profile("mi300x")
    old = gemm_kernels("sglang", "fp8_block", "0.5.5.post3")
    assert prof.gemm_table("fp8_block", old)[0] == "fp8_block@aiter_v0.1.7.post1"
    assert prof.gemm_table("fp8_block", gemm_kernels("sglang", "fp8_block", "0.5.9"))[0] == \
        "fp8_block"
    kernels, proxy = moe_kernels("sglang", "fp8_block", "0.5.5.post3")
    assert prof.moe_table("fp8_block", "", kernels, proxy)[0] == "fp8_block@aiter_v0.1.7.post1"
    kernels, proxy = moe_kernels("sglang", "fp8_block", "0.5.9")
    assert prof.moe_table("fp8_block", "", kernels, proxy)[0] == "fp8_block"


def test_older_sglang_times_the_older_rows():
    """0.5.5.post3 lands near aiter v0.1.7.post1's 19.30 us, 0.5.9 near 84493f0e's 11.54 us:
    each within 25 % of its own release's row (the tables' held-out p90 is 17-25 %), and
    closer to it than to the other release's."""
    old_row, new_row = _row_us(OLD, SHAPE), _row_us(NEW, SHAPE)
    old, new = _gemm_us("0.5.5.post3", SHAPE), _gemm_us("0.5.9", SHAPE)
    assert old == pytest.approx(old_row, rel=0.25)
    assert new == pytest.approx(new_row, rel=0.25)
    assert abs(old - old_row) < abs(old - new_row)
    assert abs(new - new_row) < abs(new - old_row)


def test_a_default_kernel_is_priced_by_the_kernels_the_release_ships():
    """aiter v0.1.7.post1 has no cu_num 304 fused-MoE row (its tuned_fmoe.csv holds cu_num 80
    and 256 only), so the 1-stage asm default runs; of the gfx942 / 304-CU GLM-5 rows of
    c16d44b9 (the table the build reads: calibration/references.yaml mi300x) only those that
    ran one of the four 32x256 kernels that release ships are kept: for the 257-expert TP 8
    shape tokens 32 - 512 (215.49, 288.41, 327.91, 340.65, 310.92 us, the CSV's ``us``), for
    the 32-expert top-8 6144 x 2048 shape tokens 2 - 256 (e.g. 207.63 us at 4). b86bc7a9's
    cu_num 304 rows, read before, repeat an MI355X run (tests/test_aiter_glm5_fmoe_rows.py)."""
    with open(sources_dir() / "aiter/44610f47a975/aiter/configs/tuned_fmoe.csv",
              newline="") as f:
        assert {r["cu_num"] for r in csv.DictReader(f)} == {"80", "256"}
    recs = CA.aiter_fmoe(
        sources_dir() / "aiter/c16d44b93a52/aiter/configs/model_configs/"
        "a8w8_blockscale_tuned_fmoe_glm5_1.csv", cu_num=304, dtypes=["fp8_block"],
        one_stage=True, kernel_source="aiter_v0.1.7.post1_fmoe_default_gfx942",
        kernels_file="aiter/44610f47a975/hsa/gfx942/fmoe/silu/"
                     "fmoe_bf16_blockscaleFp8_g1u1_silu.csv")
    glm5 = sorted((r["params"]["tokens"], round(r["time_s"] * 1e6, 2)) for r in recs
                  if r["params"]["experts"] == 257)
    assert glm5 == [(32, 215.49), (64, 288.41), (128, 327.91), (256, 340.65), (512, 310.92)]
    small = {r["params"]["tokens"]: round(r["time_s"] * 1e6, 2) for r in recs
             if r["params"]["experts"] == 32}
    assert small[4] == 207.63
    assert {r["params"]["table"] for r in recs} == {"fp8_block@aiter_v0.1.7.post1"}
    assert {(r["params"]["hidden"], r["params"]["inter"], r["params"]["experts"],
             r["params"]["topk"]) for r in recs} == {(6144, 256, 257, 9), (6144, 2048, 32, 8)}
