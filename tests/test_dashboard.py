"""The dashboard's chart builders (app/charts.py) tested directly on real predictions; the
pages themselves run in tests/test_dashboard_pages.py."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel as pm

APP_DIR = Path(__file__).resolve().parents[1] / "app"
GIB = 2**30


def _load_charts():
    spec = importlib.util.spec_from_file_location("perfmodel_dashboard_charts",
                                                  APP_DIR / "charts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


charts = _load_charts()


# --------------------------------------------------------------------------- helpers
def _inference(batch=8, prompt_len=1024, output_len=256, tp=1, num_gpus=1,
               model="llama-2-7b", device="a100-sxm4-80gb", **extra) -> dict:
    return {"kind": "inference", "model": model,
            "system": {"device": device, "num_gpus": num_gpus}, "parallelism": {"tp": tp},
            "inference": {"batch": batch, "prompt_len": prompt_len, "output_len": output_len,
                          **extra}}


def _training(tp=2, pp=1, num_gpus=8, model="llama-2-7b", device="a100-sxm4-80gb",
              **extra) -> dict:
    return {"kind": "training", "model": model,
            "system": {"device": device, "num_gpus": num_gpus},
            "parallelism": {"tp": tp, "pp": pp, "zero_stage": 1},
            "training": {"seq_len": 4096, "global_batch": 128, "micro_batch": 1, **extra}}


# --------------------------------------------------------------------------- chart builders
@pytest.fixture(scope="module")
def train_pred() -> pm.Prediction:
    return pm.predict(_training())


@pytest.fixture(scope="module")
def infer_pred() -> pm.Prediction:
    return pm.predict(_inference())


def test_time_units():
    assert charts.time_unit(2.5) == ("s", 1.0)
    assert charts.time_unit(0.0123) == ("ms", 1e3)
    assert charts.time_unit(4e-6) == ("µs", 1e6)
    assert charts.fmt_seconds(0.0123) == "12.3 ms"
    assert charts.fmt_seconds(14.6784) == "14.678 s"


def test_compute_dtype_follows_the_gemm_precision():
    assert charts.compute_dtype(_training(precision="fp8")) == "fp8"
    assert charts.compute_dtype(_training()) == "bf16"
    assert charts.compute_dtype(_inference(weight_dtype="fp8", activation_dtype="fp8")) == "fp8"
    assert charts.compute_dtype(_inference(weight_dtype="int4")) == "bf16"  # weight-only
    # fp8 weights run the fp8 GEMM where the device has fp8 tensor cores (vLLM), else W8A16
    h100, a100 = pm.get_device("h100-sxm5-80gb"), pm.get_device("a100-sxm4-80gb")
    assert charts.compute_dtype(_inference(weight_dtype="fp8"), h100) == "fp8"
    assert charts.compute_dtype(_inference(weight_dtype="fp8"), a100) == "bf16"
    # a 16-bit activation dtype given with fp8 weights is the weight-only kernel (W8A16)
    assert charts.compute_dtype(_inference(weight_dtype="fp8", activation_dtype="bf16"),
                                h100) == "bf16"


def test_training_time_bars_add_up_to_the_step(train_pred):
    fig = charts.time_figure(train_pred)
    (bar,) = fig.data
    unit, scale = charts.time_unit(train_pred.step_time_s)
    assert fig.layout.xaxis.title.text == f"time per training step ({unit})"
    assert sum(bar.x) / scale == pytest.approx(train_pred.step_time_s, rel=1e-9)
    assert list(bar.x) == sorted(bar.x)  # largest component on top
    assert "GEMM" in bar.y


def test_inference_time_bars_are_prefill_and_one_decode_step(infer_pred):
    fig = charts.time_figure(infer_pred)
    sums: dict[str, float] = {}
    for trace in fig.data:
        sums[trace.y[0]] = sums.get(trace.y[0], 0.0) + trace.x[0]
    assert len(sums) == 2
    prefill, decode = sorted(sums, key=lambda y: "Decode" in y)
    _, scale = charts.time_unit(infer_pred.prefill_time_s)
    assert sums[prefill] / scale == pytest.approx(infer_pred.prefill_time_s, rel=1e-9)
    _, scale = charts.time_unit(infer_pred.tpot_s)
    # the bar is one decode step at the mean context; TPOT averages steps over the
    # generation, equal up to the curvature of the calibrated efficiencies in the context
    assert sums[decode] / scale == pytest.approx(infer_pred.tpot_s, rel=2e-3)
    legend = [t.name for t in fig.data if t.showlegend]
    assert len(legend) == len(set(legend))  # one legend entry per component


def test_memory_bar_stacks_to_the_total_with_capacity_line(train_pred):
    fig = charts.memory_figure(train_pred)
    assert fig.layout.barmode == "stack"
    total = sum(t.x[0] for t in fig.data)
    assert total == pytest.approx(train_pred.memory_per_gpu_bytes / GIB, rel=1e-9)
    (line,) = fig.layout.shapes
    # the A100 80GB's capacity as CUDA reports it, GiB (hardware_specs usable_memory_gib)
    assert line.x0 == line.x1 == pytest.approx(79.32)
    assert "GiB" in fig.layout.xaxis.title.text
    assert {t.name for t in fig.data} >= {"Weights", "Gradients", "Optimizer states",
                                          "Activations"}


def test_roofline_roof_and_points(infer_pred):
    device = pm.get_device("a100-sxm4-80gb")
    peak, bw = device.peak_flops("bf16"), device.memory_bandwidth
    fig = charts.roofline_figure(infer_pred, peak, bw, "bf16", device.name)
    roof, *points = fig.data
    assert max(roof.y) == pytest.approx(peak / 1e12)
    assert roof.x[1] == pytest.approx(peak / bw)  # ridge point
    assert roof.y[0] == pytest.approx(roof.x[0] * bw / 1e12)  # bandwidth slope
    assert {t.name for t in points} == {"gemm", "attention"}
    names = {row[0] for t in points for row in t.customdata}
    assert {"attn.qkv", "mlp.up", "attn.core"} <= names
    stages = {row[1] for t in points for row in t.customdata}
    assert stages == {"prefill", "decode"}
    assert "%{customdata[2]}-bound" in points[0].hovertemplate
    assert "FLOP/byte" in fig.layout.xaxis.title.text
    assert "TFLOP/s" in fig.layout.yaxis.title.text


def test_elementwise_share_from_the_breakdown(train_pred, infer_pred):
    (share,) = charts.elementwise_share(train_pred).values()
    t = train_pred.breakdown["time"]
    assert share == pytest.approx(t["elementwise"] / (t["gemm"] + t["attention"]
                                                      + t["elementwise"] + t["optimizer"]))
    shares = charts.elementwise_share(infer_pred)
    assert set(shares) == {"Prefill", "Decode step"}
    assert all(0 < v < 0.5 for v in shares.values())


def test_op_stages_split_prefill_and_decode(infer_pred, train_pred):
    stages = charts.op_stages(infer_pred)
    half = len(stages) // 2
    assert stages[:half] == ["prefill"] * half and stages[half:] == ["decode"] * half
    assert set(charts.op_stages(train_pred)) <= {"fwd", "bwd", "recompute", "step"}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.sampled_from([1, 4, 32, 256]), prompt=st.sampled_from([128, 1024, 8176]),
       weight=st.sampled_from(["bf16", "fp8", "int4"]),
       device=st.sampled_from(["a100-sxm4-80gb", "h100-sxm5-80gb", "l40s", "mi300x"]))
def test_no_operator_sits_above_the_roof(batch, prompt, weight, device):
    """Modelled time >= the roofline bound, so achieved FLOP/s <= min(peak, I * BW)."""
    sc = _inference(batch=batch, prompt_len=prompt, output_len=16, weight_dtype=weight,
                    model="llama-3-8b", device=device)
    pred = pm.predict(sc)
    spec = pm.get_device(device)
    dtype = charts.compute_dtype(sc, spec)
    peak, bw = spec.peak_flops(dtype), spec.memory_bandwidth
    points = charts.roofline_points(pred)
    assert points
    for p in points:
        attainable = min(peak, p["intensity"] * bw)
        assert p["flops_per_s"] <= attainable * (1 + 1e-9), p["name"]
    fig = charts.roofline_figure(pred, peak, bw, dtype)
    lo, hi = fig.layout.xaxis.range
    assert all(lo <= math.log10(p["intensity"]) <= hi for p in points)


# --------------------------------------------------------------------------- shared helpers
def _app_module(name: str):
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    return importlib.import_module(name)


def _dominates(a: dict, b: dict) -> bool:
    return a["x"] <= b["x"] and a["y"] <= b["y"] and (a["x"] < b["x"] or a["y"] < b["y"])


def test_pareto_front_by_hand():
    plans = _app_module("charts_plans")
    pts = [{"x": 1, "y": 9}, {"x": 2, "y": 5}, {"x": 3, "y": 6}, {"x": 4, "y": 1},
           {"x": 5, "y": 1}]
    assert plans.pareto_front(pts, "x", "y") == [pts[0], pts[1], pts[3]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30))
def test_pareto_front_is_exactly_the_non_dominated_points(pairs):
    plans = _app_module("charts_plans")
    pts = [{"x": x, "y": y} for x, y in pairs]
    front = plans.pareto_front(pts, "x", "y")
    expected = {(p["x"], p["y"]) for p in pts if not any(_dominates(q, p) for q in pts)}
    assert {(f["x"], f["y"]) for f in front} == expected
    assert len(front) == len(expected)  # one point per non-dominated position


def test_csv_of_rows_and_url_values():
    common = _app_module("common")
    text = common.to_csv([{"a": 1, "b": {"c": 2}}, {"a": 3, "d": "x"}])
    assert text.splitlines() == ["a,b,d", '1,"{""c"": 2}",', "3,,x"]
    assert common._coerce("4", 1) == 4 and common._coerce("0.5", 1.0) == 0.5
    assert common._coerce("true", False) is True and common._coerce("a,b", []) == ["a", "b"]


def test_uploaded_records_bad_line_is_named():
    backend = _app_module("backend")
    good = b'{"bench": "gemm", "time_s": 1e-3}\n\n{"bench": "memory"}\n'
    assert [r["bench"] for r in backend.load_records(good)] == ["gemm", "memory"]
    with pytest.raises(ValueError, match="records line 2 is not JSON"):
        backend.load_records(b'{"bench": "gemm"}\n{oops\n')


def test_banded_cells_and_error_bars_by_hand():
    """'value (lo–hi)' cells in the page, value / lo / hi kept for the CSV; error bars are the
    band's distance above and below each value."""
    common = _app_module("common")
    rows = [{"n": 1, "step (s)": 1.25, "step (s) lo": 1.0, "step (s) hi": 2.0},
            {"n": 2, "step (s)": 3.0, "step (s) lo": None, "step (s) hi": None}]
    assert common.banded_rows(rows, {"step (s)": ".2f"}) == [
        {"n": 1, "step (s) [80 %]": "1.25 (1.00–2.00)"}, {"n": 2, "step (s) [80 %]": "3.00"}]
    assert common.band_text([1234.0, 56789.0], "num", 1e-3, "k") == "1.23–56.8 k"
    assert common.with_band(None, [1, 2]) is None
    plans = _app_module("charts_plans")
    pts = [{"x": 2.0, "x_lo": 1.5, "x_hi": 3.0}, {"x": 5.0}]
    bars = plans.error_bars(pts, "x")
    assert bars["array"] == [1.0, 0.0] and bars["arrayminus"] == [0.5, 0.0]
    assert plans.error_bars([{"x": 1.0}], "x") is None
    point = plans.frontier_point({"device": "b200", "tp": 2, "ep": 1, "batch": 8,
                                  "tokens_per_s_per_user": 50.0, "tokens_per_s_per_gpu": 900.0,
                                  "ranges": {"tokens_per_s_per_user": [40.0, 60.0],
                                             "tokens_per_s_per_gpu": [700.0, 1000.0]}})
    assert (point["config"], point["user_lo"], point["gpu_hi"]) == ("b200 tp 2", 40.0, 1000.0)
