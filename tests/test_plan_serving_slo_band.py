"""plan-serving flags a row whose value meets an SLO but whose 80 % band's upper end does not
("may miss SLO"), in text, JSON and the answer's explanation, and answers with the cheapest
row that meets every SLO across its band when one exists (issue 10 item 4; docs/planning.md)."""

from __future__ import annotations

import json

import pytest

from perfmodel.cli import main
from perfmodel.serving.capacity import (
    Candidate,
    PlanInputs,
    PlanResult,
    may_miss_slo,
    metric_ranges,
    plan_serving,
    render_plan,
)
from perfmodel.specs.scenario import LengthDistribution, SLOConfig
from perfmodel.zoo import resolve_model

BANDS = {"ttft_s": ((0.97, 1.41), "t"), "tpot_s": ((0.84, 1.36), "d"),
         "e2e_latency_s": ((0.84, 1.36), "e")}


def _metrics(tpot: float, bound: float) -> dict:
    return {"ttft_p90_s": 0.1, "tpot_p90_s": tpot, "e2e_p90_s": 5.0,
            "checks": {"tpot_p90_s": {"bound_s": bound, "value_s": tpot,
                                      "met": tpot <= bound},
                       "ttft_p90_s": {"bound_s": 1.0, "value_s": 0.1, "met": True}},
            "output_tokens_per_s": 1000.0, "requests_per_s": 4.0, "slo_met": tpot <= bound}


def test_the_qa_rows_by_hand():
    """H200 TP2: TPOT p90 33.6 ms x [0.84, 1.36] = 28.2-45.7 ms against a 40 ms SLO: meets it,
    may miss it; 29.7 ms against 30 ms likewise; 25 ms x 1.36 = 34 ms < 40 ms holds."""
    for tpot, bound, miss in ((0.0336, 0.040, True), (0.0297, 0.030, True),
                              (0.025, 0.040, False), (0.045, 0.040, False)):
        m = _metrics(tpot, bound)
        ranges, _ = metric_ranges(m, BANDS)
        assert ranges["tpot_p90_s"] == pytest.approx([tpot * 0.84, tpot * 1.36])
        assert (may_miss_slo(m, ranges) == ["tpot_p90_s"]) is miss
        assert "ttft_p90_s" not in may_miss_slo(m, ranges)  # 0.1 x 1.41 < 1 s


def test_throughput_bands_by_hand():
    m = _metrics(0.02, 0.04)
    ranges, basis = metric_ranges(m, BANDS, offered_rps=4.2)
    # 1000 / [1.36, 0.84] = [735.3, 1190.5]; upper end capped at 1000 x 4.2 / 4 = 1050
    assert ranges["output_tokens_per_s"] == pytest.approx([1000 / 1.36, 1050.0])
    assert ranges["requests_per_s"] == pytest.approx([4 / 1.36, 4.2])
    assert "capped" in basis["requests_per_s"]
    # the cap never cuts below the point (served above offered in a short run)
    ranges, _ = metric_ranges(m, BANDS, offered_rps=3.0)
    assert ranges["requests_per_s"][1] == pytest.approx(4.0)


def _cand(device: str, usd: float, tpot: float, bound: float = 0.04) -> Candidate:
    m = _metrics(tpot, bound)
    ranges, basis = metric_ranges(m, BANDS)
    return Candidate(device, 1, True, "meets the SLOs", 1, 1, 1, m,
                     {"usd_per_hour": usd, "usd_per_million_output_tokens": 1.0}, None,
                     8, 8, "why", "measured", ranges, basis, may_miss=may_miss_slo(m, ranges))


def test_the_answer_prefers_a_row_that_meets_the_slos_across_its_band():
    cheap, dear = _cand("cheap", 2.0, 0.0336), _cand("dear", 5.0, 0.020)
    res = PlanResult({}, [cheap, dear])
    assert cheap.may_miss == ["tpot_p90_s"] and not dear.may_miss
    assert res.best is dear
    note = res.choice_note()
    assert "preferred to cheaper rows" in note and "cheap tp 1 may miss tpot_p90_s" in note
    assert "45.7 ms > 40 ms" in note
    d = res.to_dict()
    assert d["best"]["device"] == "dear" and d["choice"] == note
    flags = {c["device"]: (c["may_miss_slo"], c["slo_met_across_band"]) for c in d["candidates"]}
    assert flags == {"cheap": (["tpot_p90_s"], False), "dear": ([], True)}
    # no row meets them across the band: the cheapest meeting them at the point, said so
    res = PlanResult({}, [cheap, _cand("other", 3.0, 0.035)])
    assert res.best is cheap and res.choice_note().startswith("no row meets")


def test_plan_serving_end_to_end_flags_and_prefers():
    """A real plan: every feasible row's flag is its band against its bounds; the answer meets
    the SLOs across its band whenever some row does; text and JSON say so."""
    inp = PlanInputs(model=resolve_model("llama-3.1-8b"), rate_per_s=20.0,
                     slo=SLOConfig(ttft_p90_s=0.5, tpot_p90_s=0.03),
                     prompt_len=LengthDistribution(kind="fixed", value=1024),
                     output_len=LengthDistribution(kind="fixed", value=256),
                     devices=["h100-sxm5-80gb", "h200-sxm-141gb"], tps=(1, 2),
                     num_requests=200)
    res = plan_serving(inp)
    feasible = [c for c in res.candidates if c.feasible]
    assert feasible
    for c in feasible:
        checks = c.metrics["checks"]
        assert c.may_miss == [k for k, ch in checks.items()
                              if ch["met"] and c.ranges[k][1] > ch["bound_s"]]
        for k, ch in checks.items():
            lo, hi = c.ranges[k]
            assert lo <= ch["value_s"] <= hi
        for k in ("output_tokens_per_s", "requests_per_s"):
            lo, hi = c.ranges[k]
            assert lo <= c.metrics[k] <= hi
    if any(not c.may_miss for c in feasible):
        assert not res.best.may_miss
    text = render_plan(res)
    assert "SLOs across band" in text and "SLO bands: " in text
    if any(c.may_miss for c in feasible):
        assert "may miss SLO (the value meets it" in text


def test_help_states_the_rule(capsys):
    with pytest.raises(SystemExit):
        main(["plan-serving", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "meet every SLO across its 80 % band" in out and "may miss SLO" in out


def test_json_states_the_flags(capsys):
    code = main(["plan-serving", "--model", "llama-3.1-8b", "--rate", "20", "--prompt-len",
                 "1024", "--output-len", "256", "--ttft-p90", "0.5", "--tpot-p90", "0.03",
                 "--devices", "h200-sxm-141gb", "--tp", "1", "--num-requests", "200",
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == (0 if data["best"] else 1)
    assert "choice" in data
    for c in data["candidates"]:
        if c["feasible"]:
            assert isinstance(c["may_miss_slo"], list)
            assert c["slo_met_across_band"] is (not c["may_miss_slo"])
