"""perfmodel.validate.output: the plot skips error rows; the report file is replaced
atomically."""

from __future__ import annotations

import json

from perfmodel.validate import CaseResult, build_report, plot_report, write_json_atomic


def test_plot_skips_error_rows(tmp_path):
    ok = CaseResult(id="a", source="s", kind="training", metric="step_time_s", unit="s",
                    measured=2.0, predicted=2.2, ape=0.1, status="ok")
    bad = CaseResult(id="b", source="t", kind="inference", metric="ttft_s", unit="s",
                     measured=0.01, predicted=None, ape=None, status="error", error="x")
    out = plot_report(build_report([ok, bad]), tmp_path / "p.svg")
    assert "<svg" in out.read_text()


def test_write_json_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    write_json_atomic({"median_ape": 0.1}, target)
    assert json.loads(target.read_text()) == {"median_ape": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left
