"""The band reads the roofline's record of which table decided each operator's time
(``roofline.OpTimes.decided``, a prediction's ``OpReport.timed_by``) instead of timing the
inference passes a second time (uncertainty ``_floor_shares`` did until 2026-12-05).

The weight-only bands below are literal numbers recorded before that change (commit 7bcf910,
``uncertainty.calibration_ratios`` with the second timing pass): the record must give the same
floor shares, so the same bands, to the last digit the Monte Carlo draws carry. They move only
if the profile's residual tables, the fixed-seed draws or the model's times change."""

from __future__ import annotations

import json

import pytest

import perfmodel as pm
from perfmodel import uncertainty as U
from perfmodel.paths import data_dir
from perfmodel.resolve import resolve


def _weight_only(device: str, batch: int, tp: int = 1) -> dict:
    return {"kind": "inference", "model": "llama-3.1-8b", "engine": {"name": "generic"},
            "system": {"device": device, "num_gpus": tp},
            **({"parallelism": {"tp": tp}} if tp > 1 else {}),
            "inference": {"batch": batch, "prompt_len": 1024, "output_len": 64,
                          "weight_dtype": "fp8", "activation_dtype": "bf16"}}


# (device, batch, tp) -> quantity -> (lo, hi) of true / predicted, recorded at 7bcf910
BEFORE = {
    ("h100-sxm5-80gb", 1, 1): {
        "ttft_s": (0.9630714003700895, 1.060208053946452),
        "tpot_s": (0.9678007734937887, 1.1019650225129753),
        "e2e_latency_s": (0.9708901089229721, 1.0936283119453862)},
    ("h100-sxm5-80gb", 16, 1): {
        "ttft_s": (0.9623753035879198, 1.0605348307980773),
        "tpot_s": (0.9602027831800011, 1.2070410810219747),
        "e2e_latency_s": (0.9746910339289713, 1.1095740817717614)},
    ("h200-sxm-141gb", 4, 2): {
        "ttft_s": (0.9597063122013862, 1.051257945960318),
        "tpot_s": (0.9594317702227628, 1.1105175452077372),
        "e2e_latency_s": (0.9675680281841901, 1.0853338485638648)},
}


@pytest.mark.parametrize("case", list(BEFORE), ids=lambda c: f"{c[0]}-b{c[1]}-tp{c[2]}")
def test_weight_only_band_as_before_the_record(case):
    rs = resolve(_weight_only(*case))
    pred = pm.predict(rs.scenario)
    got = U.calibration_ratios(pred, rs.profile, rs.scenario)
    for quantity, (lo, hi) in BEFORE[case].items():
        assert got[quantity] == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))


def test_floor_share_is_read_from_the_record():
    """H100, batch 1: every decode projection is floored (``gemm.fp8``), the LM head is not;
    the floor's share of the decode GEMMs is their count x time over all five, and the
    prefill GEMMs (1,024 rows) stay on the bf16 curve: no floor share."""
    rs = resolve(_weight_only("h100-sxm5-80gb", 1))
    pred = pm.predict(rs.scenario)
    gemms = [op for op in pred.ops if op.cls == "gemm" and op.phase == "decode"]
    floored = sum(op.calls * op.time_s for op in gemms if op.name != "head.lm")
    total = sum(op.calls * op.time_s for op in gemms)
    tables = U.table_residuals(rs.profile)
    assert U._floor_shares(tables, pred.ops, ("decode",)) == {
        "gemm.fp8": pytest.approx(floored / total, rel=1e-12)}
    assert U._floor_shares(tables, pred.ops, ("prefill",)) == {}


def test_floor_table_without_residuals_keeps_the_dense_tables():
    """A floor whose table has no residuals in the profile leaves its share with the dense
    GEMMs' tables (the table set below is the profile's without ``gemm.fp8``)."""
    rs = resolve(_weight_only("h100-sxm5-80gb", 1))
    pred = pm.predict(rs.scenario)
    tables = {k: v for k, v in U.table_residuals(rs.profile).items() if k != "gemm.fp8"}
    assert U._floor_shares(tables, pred.ops, ("decode",)) == {}


def test_serving_reads_the_floor_of_its_baseline_request():
    """A serving prediction carries its baseline request's operators (serving.predict), with
    their record: its decode band splits the floor's share as the inference one does (before
    the record, serving kept the 16-bit table for every dense GEMM). Same request shape as the
    batch-1 inference case, so the same TPOT calibration band."""
    sc = {**_weight_only("h100-sxm5-80gb", 1), "kind": "serving",
          "serving": {"arrival": {"process": "poisson", "rate_per_s": 4}, "num_requests": 100,
                      "seed": 0, "scheduler": {"kind": "continuous", "max_batch": 64}}}
    sc["inference"] = {k: v for k, v in sc["inference"].items() if k != "batch"}
    rs = resolve(sc)
    pred = pm.predict(rs.scenario)
    assert any(op.timed_by == ("gemm.fp8", "floor") for op in pred.ops)
    got = U.calibration_ratios(pred, rs.profile, rs.scenario)["tpot_s"]
    lo, hi = BEFORE[("h100-sxm5-80gb", 1, 1)]["tpot_s"]
    assert got == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))


def test_record_names_tables_the_profile_json_holds():
    """Every table a prediction's operators record is a table of its profile file: a dense GEMM
    curve under ``gemm``, an attention curve under ``attention`` (read from the JSON, not
    through the code)."""
    rs = resolve(_weight_only("h100-sxm5-80gb", 16))
    raw = json.loads((data_dir("calibration") / "h100-sxm5-80gb.reference.json").read_text())
    recorded = {op.timed_by[0] for op in pm.predict(rs.scenario).ops if op.timed_by[0]}
    assert recorded == {"gemm.bf16", "gemm.fp8", "attention.prefill", "attention.decode"}
    for table in recorded:
        section, key = table.split(".", 1)
        assert key in raw[section]
