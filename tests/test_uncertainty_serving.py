"""80 % bands of serving figures (issue 10 item 4; docs/uncertainty.md): every latency
percentile and throughput of a serving prediction has a band from its quantity's ratio band,
by hand on known distributions, and lo <= value <= hi on simulated outputs (hypothesis); the
engine start-up memory cases are inference memory cases of the same band mechanism."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.uncertainty import (
    METRIC_QUANTITY,
    SERVING_RANGE_KEYS,
    apply_ratio,
    conformal_interval,
    group_qualifies,
    prediction_ranges,
    serving_ranges,
)
from perfmodel.validate.bands import build_groups

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "app"
SERVING = ROOT / "examples" / "serving-llama3-8b-h100-continuous.yaml"
CLOSED = ROOT / "examples" / "vllm-closed-loop-llama3.1-8b-h100.yaml"


def _pred(serving: dict) -> SimpleNamespace:
    return SimpleNamespace(kind="serving", serving=serving)


def _summary(closed: bool = False) -> dict:
    pct = {"p50": 0.1, "p90": 0.2, "p99": 0.4, "mean": 0.12}
    wl = {"concurrency": 8} if closed else {"rate_per_s": 5.0}
    return {"ttft_s": dict(pct), "tpot_s": dict(pct), "tbt_s": dict(pct), "e2e_s": dict(pct),
            "queue_s": dict(pct), "workload": wl,
            "throughput": {"output_tokens_per_s": 1000.0, "total_tokens_per_s": 5000.0,
                           "requests_per_s": 4.0, "offered_requests_per_s": 4.4}}


RATIOS = {"ttft_s": ((0.9, 1.5), "t"), "tpot_s": ((0.8, 1.2), "d"),
          "e2e_latency_s": ((0.8, 1.25), "e"), "memory_per_gpu_bytes": (None, "no band")}


def test_percentile_bands_by_hand():
    ranges, basis = serving_ranges(_pred(_summary()), RATIOS)
    assert ranges["ttft_p90_s"] == pytest.approx([0.18, 0.30])  # 0.2 x [0.9, 1.5]
    assert ranges["ttft_p99_s"] == pytest.approx([0.36, 0.60])
    assert ranges["tpot_p50_s"] == pytest.approx([0.08, 0.12])
    assert ranges["itl_p99_s"] == pytest.approx([0.32, 0.48])  # time between tokens: TPOT's
    # E2E 0.2 x [0.8, 1.25] = [0.16, 0.25], raised to the TTFT band's [0.18, 0.30]: a
    # request's E2E includes its first token
    assert ranges["e2e_p90_s"] == pytest.approx([0.18, 0.30])
    assert "at least the TTFT band" in basis["e2e_p90_s"]
    assert not any(k.startswith("queue") for k in ranges)  # queueing is not re-simulated
    assert set(basis) == set(ranges) and basis["ttft_p90_s"].startswith("ttft_s band")


def test_throughput_bands_by_hand_open_loop_capped_at_the_offered_load():
    ranges, _ = serving_ranges(_pred(_summary()), RATIOS)
    # inverse of the E2E band: 1000 / [1.25, 0.8] = [800, 1250]; the upper end capped at
    # 1000 x offered 4.4 / served 4.0 = 1100
    assert ranges["output_tokens_per_s"] == pytest.approx([800.0, 1100.0])
    assert ranges["requests_per_s"] == pytest.approx([3.2, 4.4])
    assert ranges["total_tokens_per_s"] == pytest.approx([4000.0, 5500.0])


def test_throughput_bands_by_hand_closed_loop_uncapped():
    ranges, basis = serving_ranges(_pred(_summary(closed=True)), RATIOS)
    assert ranges["output_tokens_per_s"] == pytest.approx([800.0, 1250.0])  # C / E2E
    assert "capped" not in basis["output_tokens_per_s"]


def test_no_ratio_no_band():
    ranges, _ = serving_ranges(_pred(_summary()), {"ttft_s": (None, "no band")})
    assert ranges == {}
    assert apply_ratio(2.0, (0.5, 4.0), -1) == [0.5, 4.0]
    assert apply_ratio(2.0, (0.5, math.inf), 1) is None


def _mem_rows(source: str, errors: list[float], metric: str) -> list[dict]:
    return [{"id": f"{source}-{i}", "source": source, "kind": "inference", "metric": metric,
             "status": "ok", "measured": math.exp(e), "predicted": 1.0, "device": None}
            for i, e in enumerate(errors)]


def test_engine_startup_memory_cases_are_inference_memory_cases():
    """weights / KV GiB / KV tokens are parts of memory per GPU (a token count is the pool's
    bytes over an exact bytes-per-token): their signed log errors form the inference memory
    groups, which band an inference prediction's memory as they band training's."""
    for metric in ("weights_gib", "kv_cache_gib", "kv_cache_tokens"):
        assert METRIC_QUANTITY[metric] == ("memory_per_gpu_bytes", 1)
    errors_a = [-0.10, -0.05, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.12]
    errors_b = [-0.02, 0.0, 0.02]
    rows = (_mem_rows("a", errors_a[:7], "kv_cache_tokens")
            + _mem_rows("a2", errors_a[7:], "weights_gib")
            + _mem_rows("b", errors_b, "kv_cache_gib"))
    groups = build_groups(rows)
    g = groups["inference/memory_per_gpu_bytes/*/*"]
    assert g["n"] == 13 and group_qualifies(g)
    lo, hi = conformal_interval(errors_a + errors_b)
    # ceil(14 x 0.9) = 13th of 13: the extremes
    assert (lo, hi) == (-0.10, 0.12)
    pred = pm.predict(ROOT / "examples" / "llama2-7b-decode-a100.yaml")
    profile = pm.load_profile(pred.calibration["path"])
    ranges, basis = prediction_ranges(pred, profile, None, groups=groups)
    m = pred.memory_per_gpu_bytes
    assert ranges["memory_per_gpu_bytes"] == pytest.approx(
        [m * math.exp(-0.10), m * math.exp(0.12)], rel=1e-4)
    assert "inference/memory_per_gpu_bytes/*/*" in basis["memory_per_gpu_bytes"]
    # one source alone is no group (as training memory): no band, not a zero-width one
    single = build_groups(_mem_rows("a", errors_a, "weights_gib"))
    ranges, basis = prediction_ranges(pred, profile, None, groups=single)
    assert "memory_per_gpu_bytes" not in ranges
    assert basis["memory_per_gpu_bytes"].startswith("no band")


# ---- real simulations ---------------------------------------------------------------------

def _check(p) -> None:
    for key, (lo, hi) in (p.ranges or {}).items():
        v = getattr(p, key)
        assert math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= v <= hi, key
    assert p.serving_ranges, "a serving prediction states its percentiles' bands"
    for key, (lo, hi) in p.serving_ranges.items():
        section, entry, _q, _pw = SERVING_RANGE_KEYS[key]
        v = p.serving[section][entry]
        assert math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= v <= hi, key


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.floats(2.0, 60.0), closed=st.booleans(), conc=st.integers(1, 64),
       scheduler=st.sampled_from(["continuous", "chunked", "static"]))
def test_serving_bands_hold_the_value(rate, closed, conc, scheduler):
    sc = pm.load_scenario(SERVING)
    arrival = ({"process": "closed", "concurrency": conc} if closed
               else {"process": "poisson", "rate_per_s": rate})
    serving = sc.serving.model_copy(update={
        "num_requests": 150,
        "arrival": sc.serving.arrival.model_copy(update=arrival),
        "scheduler": sc.serving.scheduler.model_copy(update={"kind": scheduler})})
    _check(pm.predict(sc.model_copy(update={"serving": serving})))


def test_cli_text_and_json_state_the_serving_bands(capsys):
    assert main(["predict", str(CLOSED), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    s, r = data["serving"], data["serving_ranges"]
    for name, section in (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("itl", "tbt_s"),
                          ("e2e", "e2e_s")):
        for q in (50, 90, 99):
            lo, hi = r[f"{name}_p{q}_s"]
            assert lo <= s[section][f"p{q}"] <= hi
    for key in ("output_tokens_per_s", "requests_per_s"):
        lo, hi = r[key]
        assert lo <= s["throughput"][key] <= hi and key in data["range_basis"]
    lo, hi = data["ranges"]["tokens_per_s"]
    assert lo <= data["tokens_per_s"] <= hi
    assert main(["predict", str(SERVING)]) == 0
    text = capsys.readouterr().out.splitlines()
    rows = [i for i, line in enumerate(text) if line.startswith("  80 % range")]
    assert len(rows) == 4  # TTFT, TPOT, E2E, time between tokens
    assert text[rows[0] - 1].startswith("TTFT")
    assert "(80 % range" in next(line for line in text if line.startswith("output tokens/s"))
    assert any("80 % range" in line for line in text if line.startswith("SLO"))


# ---- the dashboard's serving page logic (no browser) ---------------------------------------

def _app(name: str):
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    return importlib.import_module(name)


def test_dashboard_percentile_rows_carry_the_bands():
    cs = _app("charts_serving")
    common = _app("common")
    p = pm.predict(SERVING)
    rows = cs.percentile_rows(p)
    assert [r["metric"] for r in rows] == ["ttft", "tpot", "itl", "e2e", "queue"]
    for r in rows[:4]:
        for q in ("p50", "p90", "p99"):
            assert r[f"{q} lo"] <= r[q] <= r[f"{q} hi"], (r["metric"], q)
    assert "p90 lo" not in rows[4]  # queueing: no band
    shown = common.banded_rows(rows, {k: ".4g" for k in ("p50", "p90", "p99")})
    assert "(" in shown[0]["p90 [80 %]"]  # 'value (lo–hi)'
    assert "(" not in shown[4]["p90 [80 %]"]  # the value alone
    check = {"met": True, "bound_s": 0.03, "value_s": 0.025}
    assert cs.slo_status(check, [0.02, 0.035]) == "met, may miss (band)"
    assert cs.slo_status(check, [0.02, 0.029]) == "met"
    assert cs.slo_status({**check, "met": False}, None) == "MISSED"


def test_sweep_concurrency_points_carry_bands():
    from perfmodel.serving.capacity import benchmark_ranges, serving_bands
    from perfmodel.serving.sweep import render_sweep, sweep_concurrency

    res = sweep_concurrency(CLOSED, [1, 8], num_requests=40)
    sc = pm.load_scenario(CLOSED)
    bands = serving_bands(sc, res["device"])
    (tlo, thi), _ = bands["tpot_s"]
    (elo, ehi), _ = bands["e2e_latency_s"]
    for p in res["points"]:
        r = p["ranges"]
        for key, (lo, hi) in r.items():
            assert lo <= p[key] <= hi, key
        assert r["median_tpot_ms"] == pytest.approx([p["median_tpot_ms"] * tlo,
                                                     p["median_tpot_ms"] * thi])
        assert r["output_throughput"] == pytest.approx([p["output_throughput"] / ehi,
                                                        p["output_throughput"] / elo])
        assert r["output_throughput_per_user"] == pytest.approx(
            [p["output_throughput_per_user"] / thi, p["output_throughput_per_user"] / tlo])
        assert "max_itl_ms" not in r
    assert benchmark_ranges({"median_ttft_ms": 10.0, "completed": 5}, {}) == {}
    assert "[80 % band]" in render_sweep(res)
