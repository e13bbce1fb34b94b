"""Training: one training step of a scenario — step time, throughput, MFU, memory, where
the time goes, and the roofline of its operators."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import forms
import prediction_view
import streamlit as st
from common import scenario_file, sync_url, try_predict, url_state

P = "tr_"
DEFAULTS = {**forms.system_defaults(P, 8), **forms.training_defaults(P)}

url_state(DEFAULTS)
st.title("Training step")
with st.sidebar:
    st.header("Training scenario")
    scenario = forms.training_form(P)
sync_url(DEFAULTS, DEFAULTS)
pred = try_predict(scenario)
if pred is not None:
    prediction_view.show(scenario, pred, key="tr")
scenario_file(scenario)
