"""The training planners of the Plan search page: every parallel plan on N GPUs ranked by
step time (`perfmodel search`), and GPUs, days and dollars to train N tokens
(`perfmodel plan-training`)."""

from __future__ import annotations

import backend
import charts_plans
import forms
import streamlit as st
import yaml
from common import (
    ERRORS,
    csv_button,
    metric_cards,
    plain,
    pm,
    short_name,
    show_error,
)

DEFAULTS = {
    **forms.system_defaults("pl_", 4096, model="llama-3.1-405b", device="h100-sxm5-80gb"),
    "pl_seq_len": 8192, "pl_global_batch": 2048, "pl_precision": "bf16", "pl_top": 20,
    "pl_tokens_b": 15000.0,
    "pt_model": "llama-3.1-405b", "pt_tokens": "15T", "pt_devices": ["h100-sxm5-80gb", "b200"],
    "pt_max_gpus": 8192, "pt_seq_len": 8192, "pt_batch_tokens": 4194304, "pt_precision": "bf16",
    "pt_days": 0.0, "pt_budget_musd": 0.0,
}


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
               "ZeRO": p["zero_stage"], "uneven": bool(p.get("uneven_pipeline", False)),
               "step (s)": p["step_time_s"], "MFU": p["mfu"],
               "GiB/GPU": p["memory_per_gpu_bytes"] / 2**30, "days": seconds / 86400}
        if price:
            row["cost (M USD)"] = price * num_gpus * seconds / 3600 / 1e6
        rows.append(row)
    return rows


def plan_scenario(sc: dict, p: dict) -> dict:
    out = {**sc, "parallelism": {k: p[k] for k in ("tp", "pp", "cp", "ep", "vp")}
           | {"sequence_parallel": p["sequence_parallel"], "zero_stage": p["zero_stage"]}}
    for key in ("uneven_pipeline", "schedule"):  # fields of newer searches
        if p.get(key):
            out["parallelism"][key] = p[key]
    out["training"] = {**sc["training"], "micro_batch": p["micro_batch"],
                       "recompute": p["recompute"]}
    return out


def why_line(explanation: dict | None) -> None:
    """Why the best plan wins (the search's own explanation), one caption."""
    if not explanation:
        return
    terms = ", ".join(f"{b['term']} {b['share']:.0%}" for b in explanation.get("bound_by", []))
    runner = explanation.get("runner_up") or {}
    text = f"Best plan's time goes to: {terms}."
    if runner:
        text += (f" Runner-up {runner['plan']} is {runner['margin']:.1%} slower"
                 + (" (" + ", ".join(f"{d['term']} {d['delta_s']:+.3g} s"
                                     for d in runner.get("differences", [])) + " for the best)"
                    if runner.get("differences") else "") + ".")
    st.caption(plain(text))


def search_planner() -> None:
    """`perfmodel search`: every plan on the scenario's GPU count, ranked by step time."""
    with st.sidebar:
        sc = training_scenario()
        st.subheader("Planner")
        top = int(st.number_input("Plans to list", min_value=1, max_value=200, key="pl_top"))
        tokens_b = float(st.number_input("Tokens to train (billions)", min_value=0.001,
                                         step=1000.0, key="pl_tokens_b"))
    price = backend.gpu_prices().get(sc["system"]["device"], {}).get("usd_per_gpu_hour")
    tokens, n0 = tokens_b * 1e9, sc["system"]["num_gpus"]
    try:
        with st.spinner("Searching plans…", show_time=True):
            res = backend.search_plans(sc, max(top, 50))
    except ERRORS as err:
        show_error(err)
        return
    rows = plan_rows({"plans": res["plans"][:top]}, tokens, price, n0)
    st.markdown(f"**{res['evaluated']:,}** plans considered on {n0:,} GPUs, "
                f"**{res['valid']:,}** valid, **{res['fitting']:,}** fit in memory.")
    if not rows:
        st.error("**No plan fits** this model, GPU count and batch: try more GPUs, another "
                 "global batch or a GPU with more memory.", icon=":material/block:")
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
    why_line(res.get("explanation"))
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
    points = [{"TP": f"TP{r['tp']}", "step": r["step (s)"], "mem": r["GiB/GPU"],
               "plan": f"TP{r['tp']} PP{r['pp']} CP{r['cp']} DP{r['dp']} VP{r['vp']} "
                       f"mb{r['micro_batch']} ZeRO{r['ZeRO']}"}
              for r in plan_rows(res, tokens, price, n0)]
    st.plotly_chart(charts_plans.pareto_figure(
        points, "step", "mem", "TP", "step time (s)", "memory per GPU (GiB)",
        f"The {len(points)} fastest plans — step time vs memory", text="plan",
        from_zero=False),
        key="pl_pareto_chart", width="stretch")


def tokens_planner() -> None:
    """`perfmodel plan-training`: GPUs, days and dollars to train N tokens, per device."""
    models, devices = pm.models(), pm.devices()
    with st.sidebar:
        model = st.selectbox("Model", sorted(models), key="pt_model",
                             format_func=lambda i: models[i].name)
        tokens = st.text_input("Tokens to train", key="pt_tokens", help="e.g. 15T, 300B, 2e12")
        chosen = st.multiselect("GPUs to consider", sorted(devices), key="pt_devices",
                                format_func=lambda i: devices[i].name)
        c1, c2 = st.columns(2)
        max_gpus = int(c1.number_input("Most GPUs", min_value=1, step=1024, key="pt_max_gpus"))
        seq = int(c2.number_input("Sequence length", min_value=1, step=1024, key="pt_seq_len"))
        batch = int(c1.number_input("Tokens per step", min_value=1, step=2**20,
                                    key="pt_batch_tokens"))
        precision = c2.selectbox("Precision", forms.TRAIN_PRECISIONS, key="pt_precision",
                                 format_func=str.upper)
        days = float(c1.number_input("At most days (0 = any)", min_value=0.0, step=30.0,
                                     key="pt_days"))
        budget = float(c2.number_input("Budget M USD (0 = any)", min_value=0.0, step=10.0,
                                       key="pt_budget_musd"))
    if not chosen:
        st.error("**Choose at least one GPU** to plan the run.", icon=":material/block:")
        return
    try:
        with st.spinner("Sweeping plans over GPU counts…", show_time=True):
            res = backend.plan_training(model, tokens, tuple(chosen), max_gpus, seq, batch,
                                        precision, days or None, budget * 1e6 or None)
    except ERRORS as err:
        show_error(err, "Cannot plan this run")
        return
    for w in res["warnings"]:
        st.info(plain(w), icon=":material/info:")
    ans = res["answer"]
    if ans:
        metric_cards([
            ("Answer", f"{ans['gpus']:,} × {short_name(ans['device'])}",
             f"{devices[ans['device']].name}: {ans['plan']}"),
            ("Time", f"{ans['days']:.1f} days", f"MFU {ans['mfu']:.1%}, step "
                                                f"{ans['step_time_s']:.2f} s"),
            ("Cost", f"{ans['usd'] / 1e6:,.1f} M USD" if ans["usd"] else "—",
             f"{ans['gpu_hours'] / 1e6:.2f} M GPU-hours"),
        ])
    else:
        st.error("**No plan meets the limits**; allow more days, budget or GPUs.",
                 icon=":material/block:")
    rows = [{"GPU": r["device"], "GPUs": r["gpus"], "plan": r["plan"], "days": r["days"],
             "M USD": None if r["usd"] is None else r["usd"] / 1e6, "MFU": r["mfu"],
             "step (s)": r["step_time_s"], "Pareto": r["pareto"],
             "meets limits": r["meets_constraints"]} for r in res["rows"]]
    points = [{"GPU": r["GPU"], "days": r["days"], "usd": r["M USD"],
               "label": f"{r['GPUs']:,} GPUs: {r['plan']}"} for r in rows
              if r["M USD"] is not None]
    if points:
        st.plotly_chart(charts_plans.pareto_figure(
            points, "days", "usd", "GPU", "days to train", "cost (M USD)",
            "Time vs cost — fastest plan per GPU count", text="label"),
            key="pt_pareto_chart", width="stretch")
    st.dataframe(rows, hide_index=True, width="stretch", key="pt_table",
                 column_config={c: st.column_config.NumberColumn(format="%.2f")
                                for c in ("days", "M USD", "MFU", "step (s)")})
    csv_button(rows, "training-capacity", key="pt_csv", label="Rows CSV")
