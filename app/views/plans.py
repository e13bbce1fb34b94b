"""Plan search and capacity: the ranked parallel plans of a training run with its time and
cost to train N tokens (Pareto plot over GPU counts), and the cheapest deployment that
serves a request rate within latency SLOs ("serve at rate R")."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import backend  # noqa: E402
import charts_plans  # noqa: E402
import forms  # noqa: E402
import streamlit as st  # noqa: E402
import yaml  # noqa: E402
from common import (  # noqa: E402
    ERRORS,
    csv_button,
    metric_cards,
    pm,
    show_error,
    sync_url,
    url_state,
)

MODES = {"train": "Train: parallel plans", "serve": "Serve at rate R"}
TPS = ["1", "2", "4", "8"]
DEFAULTS = {
    "pl_mode": "train",
    **forms.system_defaults("pl_", 4096, model="llama-3.1-405b", device="h100-sxm5-80gb"),
    "pl_seq_len": 8192, "pl_global_batch": 2048, "pl_precision": "bf16", "pl_top": 20,
    "pl_tokens_b": 15000.0, "pl_counts": "2048,4096,8192",
    "ps_model": "llama-3-70b", "ps_rate": 20.0, "ps_prompt_len": 1024, "ps_output_len": 256,
    "ps_ttft_p90": 1.0, "ps_tpot_p90": 0.05, "ps_devices": ["h100-sxm5-80gb", "b200"],
    "ps_tps": TPS, "ps_scheduler": "continuous", "ps_num_requests": 300, "ps_max_gpus": 512,
}


def gpu_counts(text: str, num_gpus: int) -> list[int]:
    """The GPU counts of the Pareto plot: the scenario's, plus a comma-separated list."""
    counts = {num_gpus}
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"GPU counts: {part!r} is not a positive integer "
                             "(write e.g. 2048,4096,8192)")
        counts.add(int(part))
    return sorted(counts)[:6]


def training_scenario() -> dict:
    sc = {"kind": "training", **forms.system_form("pl_")}
    c1, c2 = st.columns(2)
    seq = int(c1.number_input("Sequence length", min_value=1, step=1024, key="pl_seq_len"))
    gb = int(c2.number_input("Global batch", min_value=1, step=64, key="pl_global_batch"))
    precision = st.selectbox("Precision", forms.TRAIN_PRECISIONS, key="pl_precision",
                             format_func=str.upper)
    sc["training"] = {"seq_len": seq, "global_batch": gb, "precision": precision}
    return sc


def plan_rows(result: dict, tokens: float, price: float | None, num_gpus: int) -> list[dict]:
    rows = []
    for rank, p in enumerate(result["plans"], start=1):
        seconds = tokens / p["tokens_per_s"]
        row = {"rank": rank, "GPUs": num_gpus, "tp": p["tp"], "pp": p["pp"], "cp": p["cp"],
               "dp": p["dp"], "ep": p["ep"], "vp": p["vp"], "micro_batch": p["micro_batch"],
               "seq. parallel": p["sequence_parallel"], "recompute": p["recompute"],
               "ZeRO": p["zero_stage"], "step (s)": p["step_time_s"], "MFU": p["mfu"],
               "GiB/GPU": p["memory_per_gpu_bytes"] / 2**30, "days": seconds / 86400}
        if price:
            row["cost (M USD)"] = price * num_gpus * seconds / 3600 / 1e6
        rows.append(row)
    return rows


def plan_scenario(sc: dict, p: dict) -> dict:
    out = {**sc, "parallelism": {k: p[k] for k in ("tp", "pp", "cp", "ep", "vp")}
           | {"sequence_parallel": p["sequence_parallel"], "zero_stage": p["zero_stage"]}}
    out["training"] = {**sc["training"], "micro_batch": p["micro_batch"],
                       "recompute": p["recompute"]}
    return out


def train_planner() -> None:
    with st.sidebar:
        sc = training_scenario()
        st.subheader("Planner")
        top = int(st.number_input("Plans to list", min_value=1, max_value=200, key="pl_top"))
        tokens_b = float(st.number_input("Tokens to train (billions)", min_value=0.001,
                                         step=1000.0, key="pl_tokens_b"))
        counts_text = st.text_input("More GPU counts for the Pareto plot", key="pl_counts",
                                    help="comma-separated, e.g. 2048,4096,8192")
    try:
        counts = gpu_counts(counts_text, sc["system"]["num_gpus"])
    except ValueError as err:
        show_error(err, "Bad input")
        return
    price = backend.gpu_prices().get(sc["system"]["device"], {}).get("usd_per_gpu_hour")
    tokens = tokens_b * 1e9
    results = {}
    bar = st.progress(0.0, text="Searching plans…")
    for i, n in enumerate(counts):
        sc_n = {**sc, "system": {**sc["system"], "num_gpus": n}}
        try:
            results[n] = backend.search_plans(sc_n, max(top, 30))
        except ERRORS as err:
            if n == sc["system"]["num_gpus"]:
                bar.empty()
                show_error(err)
                return
        bar.progress((i + 1) / len(counts), text=f"Searched {i + 1} of {len(counts)} "
                                                 "GPU counts")
    bar.empty()
    n0 = sc["system"]["num_gpus"]
    res = results[n0]
    rows = plan_rows({"plans": res["plans"][:top]}, tokens, price, n0)
    st.markdown(f"**{res['evaluated']:,}** plans evaluated on {n0:,} GPUs, "
                f"**{res['valid']:,}** valid, **{res['fitting']:,}** fit in memory.")
    if not rows:
        st.error("**No plan fits** this model, GPU count and batch: try more GPUs, a longer "
                 "global batch or a GPU with more memory. (The search tries even pipeline "
                 "splits only: a model whose layer count no candidate pp divides may need "
                 "uneven pipeline stages.)", icon=":material/block:")
        return
    best = rows[0]
    cost = f", {best['cost (M USD)']:.2f} M USD" if "cost (M USD)" in best else ""
    metric_cards([
        ("Best plan", f"TP{best['tp']} PP{best['pp']} CP{best['cp']}",
         f"DP {best['dp']}, EP {best['ep']}, VP {best['vp']}, micro-batch "
         f"{best['micro_batch']}, recompute {best['recompute']}, ZeRO {best['ZeRO']}"),
        ("Step time", f"{best['step (s)']:.2f} s", f"MFU {best['MFU']:.1%}"),
        (f"{tokens_b:,.0f} B tokens", f"{best['days']:.1f} days",
         f"on {n0:,} GPUs{cost}" if cost else "no price for this GPU"),
    ])
    st.dataframe(rows, hide_index=True, width="stretch", key="pl_table",
                 column_config={"step (s)": st.column_config.NumberColumn(format="%.3f"),
                                "MFU": st.column_config.NumberColumn(format="%.3f"),
                                "GiB/GPU": st.column_config.NumberColumn(format="%.1f"),
                                "days": st.column_config.NumberColumn(format="%.2f"),
                                "cost (M USD)": st.column_config.NumberColumn(format="%.2f")})
    c1, c2 = st.columns(2)
    with c1:
        csv_button(rows, "training-plans", key="pl_csv", label="Plans CSV")
    c2.download_button("Best plan scenario YAML",
                       yaml.safe_dump(plan_scenario(sc, res["plans"][0]), sort_keys=False),
                       file_name="best-plan.yaml", key="pl_yaml", icon=":material/download:")
    points = [{"GPUs": n, "days": r["days"], "cost": r.get("cost (M USD)", r["days"] * n),
               "plan": f"TP{r['tp']} PP{r['pp']} CP{r['cp']} DP{r['dp']} mb{r['micro_batch']} "
                       f"{r['recompute']}"}
              for n, result in results.items()
              for r in plan_rows(result, tokens, price, n)]
    y_title = "cost (M USD)" if price else "GPU-days"
    st.plotly_chart(charts_plans.pareto_figure(
        points, "days", "cost", "GPUs", f"days to train {tokens_b:,.0f} B tokens", y_title,
        "Time vs cost to train — every fitting plan, by GPU count", text="plan"),
        key="pl_pareto_chart", width="stretch")


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
            ("Cheapest", f"{best['replicas']} × {devices[best['device']].name}",
             f"TP {best['tp']} per replica = {best['gpus']} GPUs"),
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
        rows.append({"GPU": c["device"], "tp": c["tp"], "feasible": c["feasible"],
                     "replicas": c["replicas"] or None, "GPUs": c["gpus"] or None,
                     "TTFT p90 (ms)": m.get("ttft_p90_s", 0) * 1e3 if c["feasible"] else None,
                     "TPOT p90 (ms)": m.get("tpot_p90_s", 0) * 1e3 if c["feasible"] else None,
                     "USD/h": cost.get("usd_per_hour"),
                     "USD/M out tok": cost.get("usd_per_million_output_tokens"),
                     "why": c["reason"]})
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


url_state(DEFAULTS)
st.title("Plan search and capacity")
with st.sidebar:
    mode = st.radio("Planner", list(MODES), key="pl_mode", format_func=MODES.get)
sync_url([k for k in DEFAULTS if k == "pl_mode" or k.startswith("pl_" if mode == "train"
                                                                  else "ps_")], DEFAULTS)
if mode == "train":
    train_planner()
else:
    serve_planner()
