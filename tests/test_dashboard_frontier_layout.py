"""The serving planner's frontier chart groups and labels its Pareto points by device and
plan-serving's ``layout`` key (``perfmodel.serving.capacity.layout_label``), not by device /
TP / EP alone: "tp 8 ep 8" and "tp 1 dp 8 ep 8" (attention DP) are two legend entries."""

from __future__ import annotations

from test_dashboard_page_helpers import app_module

from perfmodel.serving.capacity import layout_label


def _charts():
    return app_module("charts_plans")


def _point(tp: int, dp: int, ep: int, user: float, gpu: float, pp: int = 1) -> dict:
    return {"device": "h200-sxm-141gb", "tp": tp, "pp": pp, "attention_dp": dp, "ep": ep,
            "layout": layout_label(tp, pp, dp, ep), "batch": 8, "tpot_s": 1 / user,
            "tokens_per_s_per_user": user, "tokens_per_s_per_gpu": gpu, "pareto": True}


def test_attention_dp_layouts_are_two_groups():
    cp = _charts()
    tp8, dp8 = _point(8, 1, 8, 50.0, 900.0), _point(1, 8, 8, 30.0, 1500.0)
    names = [cp.frontier_point(p)["config"] for p in (tp8, dp8)]
    assert names == ["h200-sxm-141gb tp 8 ep 8", "h200-sxm-141gb tp 1 dp 8 ep 8"]
    assert cp.frontier_point(dp8)["label"].startswith("h200-sxm-141gb tp 1 dp 8 ep 8, batch 8")
    fig = cp.frontier_figure([tp8, dp8], "frontier")
    legend = [t.name for t in fig.data if t.mode == "markers" and t.name != "not on the frontier"]
    assert legend == names


def test_pp_and_missing_layout():
    cp = _charts()
    assert cp.frontier_point(_point(4, 1, 1, 20.0, 400.0, pp=2))["config"] \
        == "h200-sxm-141gb tp 4 pp 2"
    old = {k: v for k, v in _point(2, 1, 1, 20.0, 400.0).items() if k != "layout"}
    assert cp.frontier_point(old)["config"] == "h200-sxm-141gb tp 2"
