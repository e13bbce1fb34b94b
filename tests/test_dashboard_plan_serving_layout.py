"""The serving planner's tables name each row's instance layout as plan-serving does (its
``layout`` key: "tp 2", "tp 8 ep 8", "tp 1 dp 8 ep 8" with attention DP), not TP / EP alone:
two layouts of one size and device (attention DP vs TP) are two different rows."""

from __future__ import annotations

from test_dashboard_page_helpers import app_module
from test_dashboard_pages import page


def _planner():
    return app_module("planner_serving")


def _candidate(layout: str, tp: int, dp: int) -> dict:
    return {"device": "h200-sxm-141gb", "tp": tp, "pp": 1, "attention_dp": dp, "ep": 8,
            "layout": layout, "feasible": False, "reason": "SLOs not met", "replicas": None,
            "gpus": None, "metrics": None, "cost": None, "ranges": None}


def test_candidate_rows_name_the_layout():
    rows = _planner().candidate_rows([_candidate("tp 8 ep 8", 8, 1),
                                      _candidate("tp 1 dp 8 ep 8", 1, 8)])
    assert [r["layout"] for r in rows] == ["tp 8 ep 8", "tp 1 dp 8 ep 8"]
    assert "tp" not in rows[0] and "ep" not in rows[0]


def test_plan_serving_page_tables_show_the_layout():
    at = page("plans", pl_mode="serve")  # llama-3-8b on H100, --tp 1,2 (FAST)
    table, front = at.dataframe[0].value, at.dataframe[1].value
    assert set(table["layout"]) <= {"tp 1", "tp 2"} and len(set(table["layout"])) == 2
    assert "layout" in front.columns and not {"tp", "ep"} & set(front.columns)
    assert set(front["layout"]) <= {"tp 1", "tp 2"}
