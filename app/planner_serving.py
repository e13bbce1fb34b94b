"""The serving planner of the Plan search page: the cheapest device, TP and replica count
that serves a request rate within latency SLOs (`perfmodel plan-serving`)."""

from __future__ import annotations

import backend
import charts_plans
import streamlit as st
from common import (
    ERRORS,
    csv_button,
    metric_cards,
    pm,
    short_name,
    show_error,
)

TPS = ["1", "2", "4", "8"]
DEFAULTS = {
    "ps_model": "llama-3-70b", "ps_rate": 20.0, "ps_prompt_len": 1024, "ps_output_len": 256,
    "ps_ttft_p90": 1.0, "ps_tpot_p90": 0.05, "ps_devices": ["h100-sxm5-80gb", "b200"],
    "ps_tps": TPS, "ps_scheduler": "continuous", "ps_num_requests": 300, "ps_max_gpus": 512,
}


def serve_planner() -> None:
    models, devices = pm.models(), pm.devices()
    with st.sidebar:
        model = st.selectbox("Model", sorted(models), key="ps_model",
                             format_func=lambda i: models[i].name)
        rate = float(st.number_input("Request rate (req/s)", min_value=0.01, step=1.0,
                                     key="ps_rate"))
        c1, c2 = st.columns(2)
        prompt = int(c1.number_input("Prompt tokens", min_value=1, step=128,
                                     key="ps_prompt_len"))
        output = int(c2.number_input("Output tokens", min_value=1, step=64,
                                     key="ps_output_len"))
        ttft = float(c1.number_input("TTFT p90 (s)", min_value=0.0, step=0.1, key="ps_ttft_p90",
                                     format="%.3f"))
        tpot = float(c2.number_input("TPOT p90 (s)", min_value=0.0, step=0.01,
                                     key="ps_tpot_p90", format="%.3f"))
        chosen = st.multiselect("GPUs to consider", sorted(devices), key="ps_devices",
                                format_func=lambda i: devices[i].name)
        tps = st.multiselect("TP degrees", TPS, key="ps_tps")
        scheduler = st.selectbox("Batching", ["continuous", "chunked", "static"],
                                 key="ps_scheduler")
        n_req = int(st.number_input("Requests per simulation", min_value=50, max_value=5000,
                                    step=100, key="ps_num_requests"))
        max_gpus = int(st.number_input("Most GPUs", min_value=1, step=64, key="ps_max_gpus"))
    slo = {k: v for k, v in (("ttft_p90_s", ttft), ("tpot_p90_s", tpot)) if v > 0}
    if not chosen or not tps:
        st.error("**Choose at least one GPU and one TP degree** to plan a deployment.",
                 icon=":material/block:")
        return
    try:
        with st.spinner(f"Sizing {len(chosen) * len(tps)} deployments (simulating each)…",
                        show_time=True):
            result = backend.plan_serving(model, rate, prompt, output, slo, tuple(chosen),
                                          tuple(int(t) for t in tps), scheduler, n_req, max_gpus)
    except ERRORS as err:
        show_error(err, "Cannot plan this deployment")
        return
    best = result["best"]
    if best:
        cost = best["cost"] or {}
        metric_cards([
            ("Cheapest", f"{best['replicas']} × {short_name(best['device'])}",
             f"{devices[best['device']].name}, TP {best['tp']} per replica = {best['gpus']} "
             "GPUs"),
            ("USD per hour", f"{cost['usd_per_hour']:.2f}" if cost else "—",
             cost.get("price", "no price")),
            ("USD per M output tokens",
             f"{cost['usd_per_million_output_tokens']:.3f}" if cost else "—",
             f"TTFT p90 {best['metrics']['ttft_p90_s'] * 1e3:.0f} ms, TPOT p90 "
             f"{best['metrics']['tpot_p90_s'] * 1e3:.1f} ms"),
        ])
    else:
        st.error("**No GPU / TP meets the SLOs** within the GPU limit; relax an SLO or allow "
                 "more GPUs.", icon=":material/block:")
    for w in result["warnings"]:
        st.info(w, icon=":material/info:")
    rows = []
    for c in result["candidates"]:
        m, cost = c["metrics"] or {}, c["cost"] or {}
        rows.append({"GPU": c["device"], "tp": c["tp"], "replicas": c["replicas"] or None,
                     "GPUs": c["gpus"] or None, "USD/h": cost.get("usd_per_hour"),
                     "USD/M out tok": cost.get("usd_per_million_output_tokens"),
                     "TTFT p90 (ms)": m.get("ttft_p90_s", 0) * 1e3 if c["feasible"] else None,
                     "TPOT p90 (ms)": m.get("tpot_p90_s", 0) * 1e3 if c["feasible"] else None,
                     "feasible": c["feasible"], "why": c["reason"]})
    per_gpu = {}
    for r in rows:  # candidates come cheapest first: the first feasible one per GPU type
        if r["feasible"] and r["USD/h"] is not None:
            per_gpu.setdefault(r["GPU"], r)
    if per_gpu:
        st.markdown("**Cheapest per GPU type** (meeting the SLOs):\n" + "\n".join(
            f"- **{short_name(g)}**: {r['replicas']} × TP{r['tp']} = {r['GPUs']} GPUs, "
            f"{r['USD/h']:.2f} USD/h, {r['USD/M out tok']:.3f} USD per M output tokens"
            for g, r in per_gpu.items()))
    st.dataframe(rows, hide_index=True, width="stretch", key="ps_table",
                 column_config={k: st.column_config.NumberColumn(format="%.2f")
                                for k in ("TTFT p90 (ms)", "TPOT p90 (ms)", "USD/h",
                                          "USD/M out tok")})
    csv_button(rows, "serving-plan", key="ps_csv", label="Candidates CSV")
    points = [{"GPU": r["GPU"], "tpot": r["TPOT p90 (ms)"], "usd": r["USD/h"],
               "label": f"TP{r['tp']} × {r['replicas']}"}
              for r in rows if r["feasible"] and r["USD/h"] is not None]
    if points:
        st.plotly_chart(charts_plans.pareto_figure(
            points, "tpot", "usd", "GPU", "TPOT p90 (ms) — interactivity", "USD per hour",
            f"Deployments meeting the SLOs at {rate:g} req/s", text="label"),
            key="ps_pareto_chart", width="stretch")
