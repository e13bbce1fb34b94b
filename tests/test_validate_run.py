"""perfmodel.validate.run: the harness predicts cases end to end; a bad scenario or an
unsupported plan becomes an error row and never stops the other cases."""

from __future__ import annotations

import math

import pytest
from case_files import GOOD
from case_files import write_case_file as _write

from perfmodel.validate import build_report, load_cases, render, run_case, run_cases


@pytest.fixture(scope="module")
def all_cases():
    return load_cases()


def _case(all_cases, cid):
    return next(lc for lc in all_cases if lc.case.id == cid)


def test_harness_runs_end_to_end_on_a_few_cases(all_cases):
    picked = [_case(all_cases, cid) for cid in (
        "korthikanti2022_t5_175B_seqpar_selective", "megascale_t3_megatron_baseline_175B_256gpu_gbs256",
        "llmfoundry_a100_80gb_amp_bf16_mpt7b_seq2048_8gpu", "A-TRT05-TTFT-A100-16",
        "B-LCPP-PR4766-RTX3090-LLAMA7B-Q4_0-tg128")]
    results = run_cases(picked)
    for r in results:
        assert r.status == "ok", r.error
        assert math.isfinite(r.predicted) and r.predicted > 0
        assert math.isfinite(r.ape) and r.ape == pytest.approx(
            abs(r.predicted - r.measured) / r.measured)
    report = build_report(results)
    assert report["count"] == 5 and report["errors"] == 0
    assert set(report["by_kind"]) == {"training", "inference"}
    text = render(report)
    assert "korthikanti2022_t5_175B_seqpar_selective" in text and "median APE" in text


def test_a_bad_scenario_is_an_error_row_and_does_not_stop_the_run(tmp_path):
    bad_device = {**GOOD, "id": "bad-device",
                  "scenario": {**GOOD["scenario"],
                               "system": {"device": "a100-sxm9", "num_gpus": 1}}}
    bad_plan = {**GOOD, "id": "bad-plan",
                "scenario": {**GOOD["scenario"], "system": {"device": "a100-sxm4-80gb",
                                                            "num_gpus": 3},
                             "parallelism": {"tp": 3}}}
    _write(tmp_path, [bad_device, GOOD, bad_plan])
    results = {r.id: r for r in run_cases(load_cases(root=tmp_path))}
    assert results["tiny"].status == "ok" and results["tiny"].ape is not None
    assert results["bad-device"].status == "error"
    assert "a100-sxm9" in results["bad-device"].error
    assert results["bad-plan"].status == "error" and "tp" in results["bad-plan"].error
    report = build_report(list(results.values()))
    assert report["errors"] == 2 and report["median_ape"] == results["tiny"].ape


def test_unsupported_plan_in_shipped_cases_is_reported_not_raised(all_cases):
    # BLOOM's 70 layers over 12 stages is an uneven split perfmodel does not model yet
    r = run_case(_case(all_cases, "bloom176b_tr11_384gpu_gbs2048"))
    assert r.status in ("ok", "error")
    if r.status == "error":
        assert "num_layers" in r.error
