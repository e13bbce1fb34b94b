"""perfmodel.validate.aggregate: median and maximum APE overall, per kind, per source and per
metric; error rows are counted but carry no APE."""

from __future__ import annotations

import pytest

from perfmodel.validate import CaseResult, build_report, summarize


def test_summarize_median_max_and_errors():
    def row(cid, kind, a, status="ok"):
        return CaseResult(id=cid, source="s", kind=kind, metric="step_time_s", unit="s",
                          measured=1.0, predicted=None if a is None else 1 + a,
                          ape=a, status=status)

    results = [row("a", "training", 0.1), row("b", "training", 0.3), row("c", "training", 0.2),
               row("d", "training", None, "error"), row("e", "inference", 0.05)]
    s = summarize(results)
    assert s["overall"]["median_ape"] == pytest.approx(0.15)
    assert s["overall"]["max_ape"] == pytest.approx(0.3)
    assert s["overall"]["errors"] == 1 and s["overall"]["count"] == 5
    assert s["by_kind"]["training"]["median_ape"] == pytest.approx(0.2)
    assert s["by_kind"]["training"]["worst_case"] == "b"
    assert s["by_kind"]["inference"]["max_ape"] == pytest.approx(0.05)


def test_report_document_carries_the_overall_aggregates():
    ok = CaseResult(id="a", source="s", kind="training", metric="step_time_s", unit="s",
                    measured=2.0, predicted=2.2, ape=0.1, status="ok")
    bad = CaseResult(id="b", source="t", kind="inference", metric="ttft_s", unit="s",
                     measured=0.01, predicted=None, ape=None, status="error", error="x")
    report = build_report([ok, bad])
    assert report["count"] == 2 and report["errors"] == 1
    assert report["median_ape"] == pytest.approx(0.1) and report["max_ape"] == pytest.approx(0.1)
    assert set(report["by_source"]) == {"s", "t"} and set(report["by_metric"]) == {
        "step_time_s", "ttft_s"}
    assert [c["id"] for c in report["cases"]] == ["a", "b"]
