"""Inference: one batch of requests — TTFT, TPOT, throughput, memory and KV capacity, where
the time goes in prefill and decode, and the roofline of its operators."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import forms
import prediction_view
import streamlit as st
from common import scenario_file, sync_url, try_predict, url_state

P = "in_"
DEFAULTS = {**forms.system_defaults(P, 1), **forms.inference_defaults(P)}

url_state(DEFAULTS)
st.title("Inference request")
with st.sidebar:
    st.header("Inference scenario")
    scenario = forms.inference_form(P)
sync_url(DEFAULTS, DEFAULTS)
pred = try_predict(scenario)
if pred is not None:
    prediction_view.show(scenario, pred, key="in")
scenario_file(scenario)
