"""The dashboard shows the serving bands where it shows the figures (issue 10 item 4), checked
with Streamlit's AppTest (no browser): the serving page's p90 and throughput cards carry their
80 % band (lo <= value <= hi), the percentile table each percentile's band, and the serving
planner's table whether each row meets the SLOs across its band."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app"
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"


def _page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(APP / "views" / f"{name}.py"), default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _card(at: AppTest, label: str):
    cards = [m for m in at.metric if m.label == label]
    assert cards, f"no metric {label!r}"
    return cards[0]


def _seconds(text: str) -> list[float]:
    return [float(v.replace(",", "")) * UNITS[u]
            for v, u in re.findall(NUMBER + r" (s|ms|us|µs|ns)\b", text)]


@pytest.fixture(scope="module")
def serving_page() -> AppTest:
    return _page("serving", sv_num_requests="60")


def test_serving_cards_carry_the_bands(serving_page):
    at = serving_page
    for label in ("TTFT p90", "TPOT p90"):
        card = _card(at, label)
        (value,) = _seconds(card.value)
        lo, hi = _seconds(card.delta.split("·")[0])
        assert lo <= value * (1 + 5e-3) and value <= hi * (1 + 5e-3), (label, card.delta)
        assert "p50" in card.delta
    card = _card(at, "Output tokens/s")
    value = float(card.value.replace(",", ""))
    lo, hi = (float(x.replace(",", "")) for x in re.findall(NUMBER, card.delta)[:2])
    assert lo <= value * (1 + 5e-3) and value <= hi * (1 + 5e-3), card.delta


def test_serving_percentile_table_has_the_bands(serving_page):
    frames = [df.value for df in serving_page.dataframe]
    table = next(f for f in frames if "metric" in f.columns and "p90 [80 %]" in f.columns)
    ttft = table[table["metric"] == "ttft"].iloc[0]
    assert "(" in str(ttft["p90 [80 %]"]) and "–" in str(ttft["p90 [80 %]"])


def test_serving_planner_says_which_rows_meet_the_slos_across_the_band():
    at = _page("plans", pl_mode="serve", ps_model="llama-3-8b", ps_devices="h100-sxm5-80gb", ps_tps="1,2",
               ps_num_requests="60", ps_rate="4", pl_model="llama-2-7b", pl_num_gpus="64",
               pl_global_batch="256", pl_seq_len="4096", pt_model="llama-3-8b",
               pt_devices="h100-sxm5-80gb", pt_max_gpus="512")
    frames = [df.value for df in at.dataframe]
    plan = [f for f in frames if "SLOs across band" in f.columns]
    assert plan, [list(f.columns) for f in frames]
    assert set(plan[0]["SLOs across band"].dropna()) <= {"yes", "may miss SLO"}
    assert "out tok/s [80 %]" in plan[0].columns  # 'value (lo–hi)'
    assert "(" in str(plan[0]["out tok/s [80 %]"].iloc[0])
