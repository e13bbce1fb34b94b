"""Plan search and capacity: the ranked parallel plans of a training run, the GPUs, days
and cost to train N tokens (Pareto plot over GPU counts and devices), and the cheapest
deployment that serves a request rate within latency SLOs ("serve at rate R"). The planners
live in app/planner_training.py and app/planner_serving.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import backend
import planner_serving
import planner_training
import streamlit as st
from common import sync_url, url_state

MODES = {"search": "Parallel plans on N GPUs", "tokens": "Train N tokens",
         "serve": "Serve at rate R"}
if backend.plan_training_api() is None:  # an older perfmodel without plan-training
    MODES.pop("tokens")
DEFAULTS = {"pl_mode": "search", **planner_training.DEFAULTS, **planner_serving.DEFAULTS}
PLANNERS = {"search": planner_training.search_planner, "tokens": planner_training.tokens_planner,
            "serve": planner_serving.serve_planner}
PREFIX = {"search": "pl_", "tokens": "pt_", "serve": "ps_"}

url_state(DEFAULTS)
st.title("Plan search and capacity")
with st.sidebar:
    mode = st.radio("Planner", list(MODES), key="pl_mode", format_func=lambda m: MODES.get(m, m))
sync_url([k for k in DEFAULTS if k == "pl_mode" or k.startswith(PREFIX[mode])], DEFAULTS)
PLANNERS[mode]()
