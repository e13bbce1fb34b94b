"""plan-serving sizes a row that may miss an SLO once more across its 80 % band: the fewest
replicas whose every SLO holds at the band's upper end, as a second row for the same device /
TP that the answer can take (issue 10; capacity.size_across_band)."""

from __future__ import annotations

import json
import re

import pytest

from perfmodel.cli import main
from perfmodel.serving.capacity import PlanInputs, band_slo, plan_serving, render_plan
from perfmodel.specs.scenario import LengthDistribution, SLOConfig
from perfmodel.zoo import resolve_model

BANDS = {"ttft_s": ((1.07, 1.85), "t"), "tpot_s": ((0.88, 1.42), "d")}


def test_band_slo_by_hand():
    """30 ms / 1.42 = 21.13 ms; 0.5 s / 1.85 = 0.2703 s; no E2E band: kept; a band whose
    upper end is below 1 never loosens a bound."""
    slo = SLOConfig(ttft_p90_s=0.5, tpot_p90_s=0.03, e2e_p99_s=9.0)
    tight = band_slo(slo, BANDS)
    assert tight.tpot_p90_s == pytest.approx(0.021127, rel=1e-4)
    assert tight.ttft_p90_s == pytest.approx(0.27027, rel=1e-4)
    assert tight.e2e_p99_s == 9.0 and tight.ttft_p50_s is None
    assert band_slo(slo, {"tpot_s": ((0.5, 0.9), "x")}).tpot_p90_s == pytest.approx(0.03)
    # a value meets the divided bound exactly when value x 1.42 meets 30 ms
    for v in (0.0211, 0.0212):
        assert (v <= tight.tpot_p90_s) is (v * 1.42 <= 0.03)


# a TPOT bound between one replica's point (23.1 ms) and its band's upper end (29-31 ms as
# the validation bands stood): met at the point, maybe not across the band
TPOT = 0.026


def _inputs(tpot: float, max_gpus: int = 512) -> PlanInputs:
    return PlanInputs(model=resolve_model("llama-3.1-8b"), rate_per_s=20.0,
                      slo=SLOConfig(ttft_p90_s=0.5, tpot_p90_s=tpot),
                      prompt_len=LengthDistribution(kind="fixed", value=1024),
                      output_len=LengthDistribution(kind="fixed", value=256),
                      devices=["h100-sxm5-80gb"], tps=(1,), num_requests=200,
                      max_gpus=max_gpus)


def test_a_row_that_may_miss_gets_a_row_sized_across_its_band():
    res = plan_serving(_inputs(TPOT))
    point = [c for c in res.candidates if c.feasible and c.point_replicas is None]
    wide = [c for c in res.candidates if c.point_replicas is not None]
    assert len(point) == 1 and len(wide) == 1
    p, w = point[0], wide[0]
    assert p.may_miss == ["tpot_p90_s"] and not w.may_miss and w.feasible
    assert w.point_replicas == p.replicas and w.replicas > p.replicas
    assert w.gpus == w.replicas  # tp 1
    # every SLO holds at the upper end of its band, judged against the SLOs themselves
    for k, c in w.metrics["checks"].items():
        assert c["bound_s"] == {"ttft_p90_s": 0.5, "tpot_p90_s": TPOT}[k]
        assert c["met"] and w.ranges[k][1] <= c["bound_s"]
    # the cost is the price x GPUs, the point row's USD/h x replicas
    assert w.cost["usd_per_hour"] == pytest.approx(
        p.cost["usd_per_hour"] * w.replicas / p.replicas)
    assert res.best is w
    note = res.choice_note()
    assert f"with {w.replicas} replicas, {w.replicas - p.replicas} more than the " \
           f"{p.replicas} that meet them at the point estimate" in note
    assert f"{w.replicas} replica(s) meet every SLO across its 80 % band" in p.across_band
    text = render_plan(res)
    assert f"yes, +{w.replicas - p.replicas} replica(s)" in text
    assert p.across_band in text


def test_the_fewest_replicas_across_the_band():
    """With max_gpus one below the row sized across the band, no count meets the SLOs across
    the band (so the count found is the fewest); the point row stays and says why."""
    w = next(c for c in plan_serving(_inputs(TPOT)).candidates if c.point_replicas)
    res = plan_serving(_inputs(TPOT, max_gpus=w.replicas - 1))
    assert not [c for c in res.candidates if c.point_replicas]
    p = next(c for c in res.candidates if c.feasible)
    assert p.across_band == (f"no replica count within max_gpus = {w.replicas - 1} meets "
                             "every SLO across its 80 % band")
    assert res.best is p and res.choice_note().startswith("no row meets")


def test_unreachable_across_the_band_is_said():
    """A TPOT bound between an idle replica's TPOT (which the refusal of a 1 ms bound states)
    and that times the band's upper ratio (read from a row: its TPOT band's upper end over its
    value; the ratio moves with the validation bands): replicas can meet it at the point, but
    not the bound / that ratio, below the idle TPOT, which no replica count helps; the row
    says so."""
    refused = plan_serving(_inputs(0.001)).candidates[0]
    assert not refused.feasible
    idle = float(re.search(r"takes ([0-9.e-]+) s", refused.reason).group(1))
    row = next(c for c in plan_serving(_inputs(2.0 * idle)).candidates if c.feasible)
    upper = row.ranges["tpot_p90_s"][1] / row.metrics["checks"]["tpot_p90_s"]["value_s"]
    assert upper > 1.0
    res = plan_serving(_inputs(idle * (1.0 + upper) / 2))
    p = next(c for c in res.candidates if c.feasible)
    assert p.may_miss == ["tpot_p90_s"]
    assert p.across_band.startswith("no replica count meets every SLO across its 80 % band "
                                    "(bound / band's upper end): tpot_p90_s = ")
    assert not [c for c in res.candidates if c.point_replicas]


def test_json_names_the_rows_sized_across_the_band(capsys):
    code = main(["plan-serving", "--model", "llama-3.1-8b", "--rate", "20", "--prompt-len",
                 "1024", "--output-len", "256", "--ttft-p90", "0.5", "--tpot-p90", str(TPOT),
                 "--devices", "h100-sxm5-80gb", "--tp", "1", "--num-requests", "200",
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {c["sized_across_band"]: c for c in data["candidates"] if c["feasible"]}
    assert rows[True]["replicas_at_point"] == rows[False]["replicas"]
    assert rows[True]["slo_met_across_band"] and not rows[False]["slo_met_across_band"]
    assert rows[False]["across_band"].startswith(f"{rows[True]['replicas']} replica(s)")
    assert data["best"]["sized_across_band"] is True
