"""Start: what each page answers, and the two planning questions a newcomer asks first, one
click away (the links carry the inputs in their query parameters)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import streamlit as st

VIEWS = Path(__file__).resolve().parent
PAGES = [
    ("training.py", "Training", "one training step: time, MFU, memory, roofline"),
    ("inference.py", "Inference", "one batch of requests: TTFT, TPOT, KV capacity"),
    ("serving.py", "Serving", "a request stream under a scheduler: latency CDFs, goodput"),
    ("compare.py", "Compare", "2-4 scenarios side by side, differences highlighted"),
    ("sweep.py", "Sweep", "a metric against any numeric field, coloured by bound"),
    ("plans.py", "Plan search", "ranked parallel plans; the cheapest way to serve a rate"),
    ("calibration.py", "Calibration", "fitted efficiency curves against measured points"),
    ("validation.py", "Validation", "predictions against published measurements"),
]

st.title("perfmodel · what-if")
st.markdown("An analytical performance model of LLM training, inference and serving. "
            "Pick a page on the left, or start from a question:")
with st.container(border=True):
    st.markdown("**H100 or B200 for Llama-3-70B at 20 req/s, and at what cost?**")
    st.page_link(str(VIEWS / "plans.py"), label="Plan search → serve at 20 req/s",
                 icon=":material/arrow_forward:",
                 query_params={"pl_mode": "serve", "ps_model": "llama-3-70b", "ps_rate": "20",
                               "ps_devices": "h100-sxm5-80gb,b200"})
    st.page_link(str(VIEWS / "compare.py"), label="Compare → H100 vs B200, Llama-3-70B on TP4",
                 icon=":material/arrow_forward:",
                 query_params={"cmp_kind": "inference", **{
                     f"c{i}i_{k}": v for i in (0, 1) for k, v in
                     (("model", "llama-3-70b"), ("num_gpus", "4"), ("tp", "4"))}})
    st.caption("The cheapest replica count per GPU and TP that meets the TTFT / TPOT SLOs, "
               "with USD per hour and per million tokens; then the two GPUs side by side.")
with st.container(border=True):
    st.markdown("**Which parallel plan for Llama-3.1-405B on 4,096 GPUs?**")
    st.page_link(str(VIEWS / "plans.py"), label="Plan search → training plans",
                 icon=":material/arrow_forward:",
                 query_params={"pl_mode": "search", "pl_model": "llama-3.1-405b",
                               "pl_num_gpus": "4096"})
    st.caption("Every valid TP × PP × CP × DP × EP × VP × micro-batch × recompute × ZeRO plan "
               "ranked by step time, with days and cost to train N tokens.")
st.subheader("Pages")
for file, title, what in PAGES:
    st.page_link(str(VIEWS / file), label=f"{title} — {what}")
st.caption("Every page keeps its settings in the address bar: copy the link to share a view. "
           "Tables download as CSV, scenarios as YAML (`perfmodel predict FILE`).")
