"""An fp8 prefill attention core timed on the profile's fp8 prefill curve takes that curve's
held-out residuals in the band (``attention.prefill_fp8``), not the bf16 prefill curve's: the
band follows the roofline's record of the curve that timed each call (``OpTimes.decided``,
picked by ``roofline._attention_curve``), so a curve the roofline picks is the curve whose
error the band draws.

The case: Llama-3.1-8B, fp8 weights and KV cache, vLLM on one H100 (its FlashAttention-3
prefill quantises Q to the cache's fp8: engines/vllm.yaml ``attention.fp8_prefill``). The
residual quantiles are read from calibration/h100-sxm5-80gb.reference.json directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import uncertainty as U
from perfmodel.paths import data_dir
from perfmodel.profile import RESIDUAL_LEVELS
from perfmodel.resolve import resolve

SCENARIO = {"kind": "inference", "model": "llama-3.1-8b", "engine": {"name": "vllm"},
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
            "inference": {"batch": 8, "prompt_len": 1024, "output_len": 64,
                          "weight_dtype": "fp8", "kv_dtype": "fp8"}}


def _json_quantiles(table: str) -> list[float]:
    raw = json.loads((data_dir("calibration") / "h100-sxm5-80gb.reference.json").read_text())
    return next(fe["log_ratio_quantiles"] for fe in raw["fit_errors"] if fe["table"] == table)


@pytest.fixture(scope="module")
def case():
    rs = resolve(SCENARIO)
    return rs, pm.predict(rs.scenario)


def test_the_prefill_core_is_recorded_on_the_fp8_curve(case):
    _, pred = case
    cores = [op for op in pred.ops if op.name == "attn.core"]
    assert {op.phase: op.timed_by for op in cores} == {
        "prefill": ("attention.prefill_fp8", "curve"), "decode": ("attention.decode", "curve")}


def test_prefill_attention_term_draws_the_fp8_residuals(case):
    rs, pred = case
    tables = U.table_residuals(rs.profile)
    np.testing.assert_allclose(tables["attention.prefill_fp8"][0],
                               _json_quantiles("attention.prefill_fp8"), rtol=0, atol=0)
    terms = U._class_terms("prefill", {"attention": 1e-3}, pred.ops, tables, "fp8",
                           ("prefill",), "prefill", {})
    assert [(t.seconds, t.tables) for t in terms] == [(1e-3, ("attention.prefill_fp8",))]


def test_band_of_the_fp8_core_is_the_fp8_spread(case):
    """The band of a time that is all fp8 prefill attention is exp of the fp8 table's residual
    quantiles at 10 % and 90 % (the band's levels), up to the Monte-Carlo error of 2,000
    draws; the bf16 prefill table's 90 % point (0.1616) is farther away than that error."""
    rs, pred = case
    tables = U.table_residuals(rs.profile)
    terms = U._class_terms("prefill", {"attention": 1e-3}, pred.ops, tables, "fp8",
                           ("prefill",), "prefill", {})
    samples = U._ratio_samples(terms, U._draws(terms, tables,
                                               np.random.default_rng(U.MC_SEED)))
    lo, hi = np.log(U._quantile(samples, U.LO_P)), np.log(U._quantile(samples, U.HI_P))
    fp8, bf16 = _json_quantiles("attention.prefill_fp8"), _json_quantiles("attention.prefill")
    at = {level: i for i, level in enumerate(RESIDUAL_LEVELS)}
    assert fp8[at[0.1]] == -0.1095 and fp8[at[0.9]] == 0.18  # the stored table, by hand
    assert lo == pytest.approx(fp8[at[0.1]], abs=0.01)
    assert hi == pytest.approx(fp8[at[0.9]], abs=0.01)
    assert abs(hi - bf16[at[0.9]]) > 0.012


def test_without_the_fp8_curve_the_core_takes_the_prefill_residuals():
    """A profile without ``prefill_fp8`` times the fp8 core on the bf16 prefill curve
    (``roofline._attention_curve``): the record, and so the band, say ``attention.prefill``."""
    rs = resolve(SCENARIO)
    profile = rs.profile.model_copy(update={
        "attention": {k: v for k, v in rs.profile.attention.items() if k != "prefill_fp8"}})
    pred = pm.predict(rs.scenario, calibration=profile)
    core = next(op for op in pred.ops if op.name == "attn.core" and op.phase == "prefill")
    assert core.timed_by == ("attention.prefill", "curve")
    terms = U._class_terms("prefill", {"attention": 1e-3}, pred.ops,
                           U.table_residuals(profile), "fp8", ("prefill",), "prefill", {})
    assert [t.tables for t in terms] == [("attention.prefill",)]


def test_mixed_curves_draw_apart():
    """Two attention calls of one phase on different curves: one term each, its share of the
    section's attention time by the calls' time (hand-made reports), each with its table's
    residuals; a call with no recorded curve counts under the phase's own table."""
    from perfmodel.prediction import OpReport

    def rep(name, total, timed_by):
        return OpReport(name=name, cls="attention", phase="prefill", calls=1.0, flops=1.0,
                        bytes=1.0, intensity=1.0, compute_s=total, memory_s=total,
                        time_s=total, total_s=total, bound="compute", timed_by=timed_by)

    ops = [rep("attn.core", 3.0, ("attention.prefill_fp8", "curve")),
           rep("attn.indexer", 1.0, ("attention.prefill", "curve")),
           rep("attn.other", 1.0, ("", ""))]
    tables = {"attention.prefill": (np.zeros(7), 5), "attention.prefill_fp8": (np.ones(7), 5)}
    terms = U._class_terms("prefill", {"attention": 10.0}, ops, tables, "bf16",
                           ("prefill",), "prefill", {})
    assert sorted((t.key, t.seconds, t.tables) for t in terms) == [
        ("prefill.attention", 4.0, ("attention.prefill",)),
        ("prefill.attention.attention.prefill_fp8", 6.0, ("attention.prefill_fp8",))]
