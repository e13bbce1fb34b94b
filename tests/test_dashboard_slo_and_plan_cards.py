"""QA4 items 5 and 6: the Serving page's SLO card names every missed SLO before those that
may miss (the CLI's per-SLO status, ``serving.report.slo_status``, summed up by
``textfmt.slo_summary``); the serving planner's card counts GPUs (replicas x layout under it),
an infeasible candidate row says why as the CLI does, and the 'why' text formats times as the
rest (``textfmt.short_seconds``)."""

from __future__ import annotations

import re

from test_dashboard_page_helpers import metric_card
from test_dashboard_pages import page
from test_dashboard_plan_serving_layout import _candidate, _planner

from perfmodel.serving.report import slo_status
from perfmodel.textfmt import short_seconds, slo_summary


def test_slo_summary_names_the_missed_first_then_the_may_miss():
    checks = {"tpot_p90_s": ({"met": True, "bound_s": 0.05}, [0.03, 0.06]),
              "ttft_p90_s": ({"met": False, "bound_s": 1.0}, [4.0, 6.0]),
              "e2e_p90_s": ({"met": False, "bound_s": 10.0}, None),
              "ttft_p99_s": ({"met": True, "bound_s": 2.0}, [0.5, 1.0])}
    statuses = {k: slo_status(c, band) for k, (c, band) in checks.items()}
    assert slo_summary(statuses) == ("missed ttft_p90_s, e2e_p90_s; may miss tpot_p90_s "
                                     "(80 % band above the bound)")
    assert slo_summary({"ttft_p99_s": "met"}) == "met" and slo_summary({}) == ""


def test_serving_card_names_a_missed_ttft_not_only_a_may_miss():
    # /tmp/qa4/serv40.yaml: llama-3-8b on one H100 at 40 req/s, 300 requests: TTFT p90 ~5 s
    # against 1 s (missed), TPOT p90 within 0.05 s but its band above it (may miss)
    at = page("serving", sv_num_requests="300", sv_rate="40")
    value, under = metric_card(at, "SLOs")
    assert value == "MISSED"
    assert under.startswith("missed ttft_p90_s"), under  # the missed SLO first, by name


def test_short_seconds_reads_like_the_rest():
    assert [short_seconds(x) for x in (0.0347998, 0.051, 2.15, 0.0005)] == [
        "34.8 ms", "51 ms", "2.15 s", "500 us"]


def test_infeasible_rows_say_why():
    rows = _planner().candidate_rows([
        _candidate("tp 8", 8, 1) | {"reason": "skipped: cannot beat 40.14 USD/h"},
        _candidate("tp 1", 1, 1) | {"reason": "does not apply: the longest request does not "
                                              "fit in the KV cache"}])
    assert [r["not feasible"] for r in rows] == ["skipped: cannot beat 40.14 USD/h",
                                                 "does not apply: the longest request does "
                                                 "not fit in the KV cache"]
    assert list(rows[0])[:3] == ["GPU", "layout", "not feasible"]  # beside the empty numbers


def test_plan_card_counts_gpus_and_the_why_formats_times():
    at = page("plans", pl_mode="serve", ps_rate="40", ps_tps="2")  # llama-3-8b, H100 (FAST)
    table = at.dataframe[0].value
    best = table[table["feasible"]].iloc[0]
    assert best["GPUs"] == 2 * best["replicas"]  # tp 2: the GPUs are not the replicas
    value, under = metric_card(at, "Cheapest")
    assert value.startswith(f"{int(best['GPUs'])} × "), (value, best.to_dict())
    assert under == f"{int(best['replicas'])} replica{'' if best['replicas'] == 1 else 's'}" \
        f" × {best['layout']}"
    why = next(m.value for m in at.markdown if m.value.startswith("**Why this deployment:**"))
    assert "binds:" in why and not re.search(r"\d\.\d{4,} s", why), why
    assert re.search(r"binds: \S+ [\d.]+ m?s of [\d.]+ m?s", why.replace("\\", "")), why
