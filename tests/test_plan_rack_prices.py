"""NVL72 prices in the dated, sourced price table (hardware_specs/prices.yaml): GB200 from
CoreWeave's on-demand list (42.00 USD/h per 4-GPU instance, read 2026-09-20); GB300 has no
citable public per-GPU-hour price, which the table says, and its rows say "no price"."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.planning.render import render
from perfmodel.planning.training import default_devices
from perfmodel.serving.economics import cost_report, default_prices_path, load_prices


def test_gb200_is_priced_per_gpu_from_the_instance_price():
    table = load_prices()
    gb200 = table.devices["gb200"]
    assert gb200.usd_per_gpu_hour == pytest.approx(42.00 / 4)  # instance of 4 GPUs
    src = table.source(gb200.source)
    assert src.url == "https://www.coreweave.com/pricing" and src.date == gb200.date
    assert "42.00" in src.title and "4 GPUs" in src.title and src.read_via
    assert "gb200" in default_devices(table)
    rep = cost_report(table, "gb200", 72, 1000.0)
    assert rep["usd_per_hour"] == pytest.approx(72 * 10.5)
    assert "CoreWeave" in rep["price"] and "2026-09-20" in rep["price"]


def test_gb300_has_no_price_and_the_table_says_why():
    assert "gb300" not in load_prices().devices
    text = default_prices_path().read_text()
    assert "GB300 NVL72 has no citable" in text and "Contact sales" in text


def test_plan_training_gives_usd_for_gb200_and_says_no_price_for_gb300():
    res = pm.plan_training(model="llama-3-8b", tokens="1T", devices=["gb200", "gb300"],
                           max_gpus=144)
    by = {d: [r for r in res.rows if r.device == d] for d in ("gb200", "gb300")}
    assert by["gb200"] and by["gb300"]
    assert all(r.usd == pytest.approx(r.gpu_hours * 10.5) for r in by["gb200"])
    assert all(r.usd is None for r in by["gb300"])
    assert any(w.startswith("gb300: no price in hardware_specs/prices.yaml") for w in res.warnings)
    assert not any(w.startswith("gb200: no price") for w in res.warnings)
    assert "no price" in render(res, all_rows=True)
