"""The training planners of the Plan search page: every parallel plan on N GPUs ranked by
step time (`perfmodel search`, each with its 80 % bands; when none fits, the search's own
explanation), and GPUs, days, dollars, energy, MFU (6ND) and Megatron TFLOP/s to train N
tokens in a chosen framework (`perfmodel plan-training`)."""

from __future__ import annotations

import backend
import charts_plans
import forms
import streamlit as st
import yaml
from common import (
    ERRORS,
    band_text,
    banded_rows,
    csv_button,
    metric_cards,
    number,
    plain,
    pm,
    short_name,
    show_error,
)

DEFAULTS = {
    **forms.system_defaults("pl_", 4096, model="llama-3.1-405b", device="h100-sxm5-80gb"),
    "pl_seq_len": 8192, "pl_global_batch": 2048, "pl_precision": "bf16", "pl_top": 20,
    "pl_tokens_b": 15000.0,
    **({"pl_framework": forms.AUTO} if forms.stack_section("framework") else {}),
    "pt_model": "llama-3.1-405b", "pt_tokens": "15T", "pt_devices": ["h100-sxm5-80gb", "b200"],
    "pt_max_gpus": 8192, "pt_seq_len": 8192, "pt_batch_tokens": 4194304, "pt_precision": "bf16",
    "pt_days": 0.0, "pt_budget_musd": 0.0, "pt_framework": "megatron-core",
}
# banded table columns: 'value (lo–hi)' in the page, value / lo / hi in the CSV
SEARCH_BANDED = {"step (s)": ".3f", "tokens/s": ",.0f", "MFU %": ".1f", "GiB/GPU": ".1f",
                 "days": "num", "cost (M USD)": "num"}
TOKENS_BANDED = {"days": "num", "M GPU-h": "num", "M USD": "num"}


def _band(p: dict, key: str) -> tuple[float | None, float | None]:
    """The ends of a search record's 80 % band for ``key`` (``ranges``), or (None, None)."""
    band = (p.get("ranges") or {}).get(key)
    return (float(band[0]), float(band[1])) if band else (None, None)


def _scaled(pair: tuple, factor: float) -> tuple:
    return tuple(None if v is None else v * factor for v in pair)


def training_scenario() -> dict:
    sc = {"kind": "training", **forms.system_form("pl_")}
    c1, c2 = st.columns(2)
    seq = int(c1.number_input("Sequence length", min_value=1, step=1024, key="pl_seq_len"))
    gb = int(c2.number_input("Global batch", min_value=1, step=64, key="pl_global_batch"))
    precision = st.selectbox("Precision", forms.TRAIN_PRECISIONS, key="pl_precision",
                             format_func=str.upper)
    sc["training"] = {"seq_len": seq, "global_batch": gb, "precision": precision}
    forms._place(sc, "framework", forms._stack_widget("pl_", "framework", "Framework"))
    return sc


def plan_rows(result: dict, tokens: float, price: float | None, num_gpus: int) -> list[dict]:
    """One row per searched plan: the plan, and step time, tokens/s, MFU, memory, days and
    cost, each with its 80 % band's ends (``<col> lo`` / ``<col> hi``; days and cost from the
    tokens/s band, as plan-training scales them)."""
    rows = []
    for rank, p in enumerate(result["plans"], start=1):
        seconds = tokens / p["tokens_per_s"]
        tps_lo, tps_hi = _band(p, "tokens_per_s")
        days = (seconds / 86400, tokens / tps_hi / 86400 if tps_hi else None,
                tokens / tps_lo / 86400 if tps_lo else None)
        row = {"rank": rank, "GPUs": num_gpus, "tp": p["tp"], "pp": p["pp"], "cp": p["cp"],
               "dp": p["dp"], "ep": p["ep"], "vp": p["vp"], "micro_batch": p["micro_batch"],
               "seq. parallel": p["sequence_parallel"], "recompute": p["recompute"],
               "ZeRO": p["zero_stage"], "uneven": bool(p.get("uneven_pipeline", False))}
        if "may_not_fit" in p:  # the memory band reaches past the device (newer searches)
            row["may not fit"] = bool(p["may_not_fit"])
        banded = {"step (s)": (p["step_time_s"], *_band(p, "step_time_s")),
                  "tokens/s": (p["tokens_per_s"], tps_lo, tps_hi),
                  "MFU %": _scaled((p["mfu"], *_band(p, "mfu")), 100),
                  "GiB/GPU": _scaled((p["memory_per_gpu_bytes"],
                                      *_band(p, "memory_per_gpu_bytes")), 1 / 2**30),
                  "days": days}
        if price:
            banded["cost (M USD)"] = _scaled(days, price * num_gpus * 24 / 1e6)
        for col, (value, lo, hi) in banded.items():
            row |= {col: value, f"{col} lo": lo, f"{col} hi": hi}
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
    headroom = res.get("headroom")
    st.markdown(f"**{res['evaluated']:,}** plans considered on {n0:,} GPUs, "
                f"**{res['valid']:,}** valid, **{res['fitting']:,}** fit in memory"
                + (f" with {headroom:.0%} headroom." if headroom is not None else "."))
    for w in res.get("warnings", []):
        st.warning(plain(w), icon=":material/warning:")
    if not rows:
        message = (res.get("explanation") or {}).get("message") or (
            "try more GPUs, another global batch or a GPU with more memory.")
        if message.lower().startswith("no plan fits: "):
            message = message[len("no plan fits: "):]
        st.error("**No plan fits:** " + plain(message), icon=":material/block:")
        return
    best = rows[0]
    cost = (f", {best['cost (M USD)']:.2f} M USD" if "cost (M USD)" in best else "")
    metric_cards([
        ("Best plan", f"TP{best['tp']} PP{best['pp']} CP{best['cp']}",
         f"DP {best['dp']}, EP {best['ep']}, VP {best['vp']}, micro-batch "
         f"{best['micro_batch']}, recompute {best['recompute']}, ZeRO {best['ZeRO']}"),
        ("Step time", f"{best['step (s)']:.2f} s",
         f"MFU {best['MFU %']:.1f} %; 80 % band under the value", band_text((best["step (s) lo"], best["step (s) hi"]), ".2f", 1, "s")),
        (f"{tokens_b:,.0f} B tokens", f"{best['days']:.1f} days",
         (f"on {n0:,} GPUs{cost}" if cost else "no price for this GPU")
         + "; 80 % band under the value",
         band_text((best["days lo"], best["days hi"]), ".1f", 1, "days")),
    ])
    why_line(res.get("explanation"))
    basis = (res["plans"][0].get("range_basis") or {}).get("step_time_s")
    st.caption("Ranges: 80 % bands (docs/uncertainty.md)"
               + (f"; step time: {plain(basis)}" if basis else "") + ".")
    st.dataframe(banded_rows(rows, SEARCH_BANDED), hide_index=True, width="stretch",
                 key="pl_table")
    c1, c2 = st.columns(2)
    with c1:
        csv_button(rows, "training-plans", key="pl_csv", label="Plans CSV")
    c2.download_button("Best plan scenario YAML",
                       yaml.safe_dump(plan_scenario(sc, res["plans"][0]), sort_keys=False),
                       file_name="best-plan.yaml", key="pl_yaml", icon=":material/download:")
    points = [{"TP": f"TP{r['tp']}", "step": r["step (s)"], "mem": r["GiB/GPU"],
               "step_lo": r["step (s) lo"], "step_hi": r["step (s) hi"],
               "mem_lo": r["GiB/GPU lo"], "mem_hi": r["GiB/GPU hi"],
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
        frameworks = forms.stack_choices("framework") or ["megatron-core"]
        framework = st.selectbox("Framework", frameworks, key="pt_framework",
                                 help="the training stack the plans run in "
                                      "(frameworks/<id>.yaml, `--framework`)")
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
                                        precision, days or None, budget * 1e6 or None,
                                        framework)
    except ERRORS as err:
        show_error(err, "Cannot plan this run")
        return
    for w in res["warnings"]:
        st.info(plain(w), icon=":material/info:")
    ans = res["answer"]
    rule = (res.get("answer_rule") or {}).get("text")  # how the answer was chosen, if said
    if ans:
        answer_cards(ans, devices, (res.get("inputs") or {}).get("mfu_6nd"))
        if rule:
            st.markdown(f"**Chosen as:** {plain(rule)}")
        if ans.get("may_miss"):  # no row meets the limits across its band (the CLI's rule)
            st.warning("**May miss " + ", ".join(f"--{m}" for m in ans["may_miss"])
                       + ":** the answer meets the limits at the point estimate, but its "
                       "80 % band's upper end does not, and no row meets them across its "
                       "band.", icon=":material/warning:")
    else:
        st.error("**No plan meets the limits**" + (f": {plain(rule)}" if rule else
                                                    "; allow more days, budget or GPUs."),
                 icon=":material/block:")
    rows = capacity_rows(res["rows"])
    points = [{"GPU": r["GPU"], "days": r["days"], "usd": r["M USD"],
               "days_lo": r["days lo"], "days_hi": r["days hi"],
               "usd_lo": r["M USD lo"], "usd_hi": r["M USD hi"],
               "label": f"{r['GPUs']:,} GPUs: {r['plan']}"} for r in rows
              if r["M USD"] is not None]
    if points:
        st.plotly_chart(charts_plans.pareto_figure(
            points, "days", "usd", "GPU", "days to train", "cost (M USD)",
            "Time vs cost — fastest plan per GPU count", text="label"),
            key="pt_pareto_chart", width="stretch")
    st.dataframe(banded_rows(rows, TOKENS_BANDED), hide_index=True, width="stretch",
                 key="pt_table",
                 column_config={c: st.column_config.NumberColumn(format="%.2f")
                                for c in ("MWh", "step (s)")}
                 | {c: st.column_config.NumberColumn(format="%.1f")
                    for c in ("MFU 6ND %", "MFU Megatron %", "TFLOP/s per GPU", "free %")})
    inp, work = res["inputs"], res.get("work") or {}
    st.caption(plain(
        f"MFU: {inp.get('mfu', 'Megatron model FLOPs')}. MFU 6ND: "
        f"{inp.get('mfu_6nd', '6 x parameters x tokens/s')}. Ranges: {inp.get('band', '80 % band')}. "
        f"Price basis: {(inp.get('prices') or {}).get('basis', '—')} "
        "(hardware_specs/prices.yaml). Energy basis: per row, column 'energy basis'. "
        + (f"Searched {work['considered']:,} plans ({work['fitting']:,} fit) in "
           f"{work['seconds']:.2f} s." if "considered" in work else "")))
    csv_button(rows, "training-capacity", key="pt_csv", label="Rows CSV")


def _usd(value: float | None, band) -> tuple[str, str | None]:
    """A cost as 'N M USD' (or 'N k USD' below a million) and its band in the same unit."""
    if value is None:
        return "—", None
    unit, scale = ("M USD", 1e-6) if value >= 1e6 else ("k USD", 1e-3)
    return f"{number(value * scale, 'num')} {unit}", band_text(band, "num", scale, unit)


def answer_cards(ans: dict, devices: dict, mfu_basis: str | None = None) -> None:
    """The planner's answer: GPUs and plan, days, cost (both with their 80 % bands), MFU in
    both conventions (``mfu_basis``: the planner's own statement of them), and energy with
    its basis."""
    cost, cost_band = _usd(ans["usd"], ans.get("usd_range"))
    mwh = ans.get("energy_mwh")
    megatron, six_nd = ans.get("mfu"), ans.get("mfu_6nd")  # JSON mfu: Megatron's, as predict
    metric_cards([
        ("Answer", f"{ans['gpus']:,} GPUs", f"{devices[ans['device']].name}: {ans['plan']}",
         short_name(ans["device"])),
        ("Time", f"{number(ans['days'], 'num')} days",
         f"step {ans['step_time_s']:.2f} s; 80 % band under the value",
         band_text(ans.get("days_range"), "num", 1, "days")),
        ("Cost", cost, f"{ans['gpu_hours'] / 1e6:.3g} M GPU-hours"
         + ("; 80 % band under the value" if cost_band else ""),
         cost_band or band_text(ans.get("gpu_hours_range"), ".3g", 1e-6, "M GPU-h")),
        ("MFU (6ND)", f"{six_nd:.1%}" if six_nd is not None else "—",
         (mfu_basis or "6ND: 6 x parameters x tokens/s / (GPUs x dense peak)")
         + (f"; Megatron's convention (attention counted): {megatron:.1%}"
            if megatron is not None else "")),
        ("TFLOP/s per GPU", f"{ans['model_tflops_per_gpu']:.0f}"
         if ans.get("model_tflops_per_gpu") is not None else "—",
         "model FLOPs in Megatron's convention (attention counted non-causally)"
         + (f"; MFU {megatron:.1%} in it" if megatron is not None else "")),
        ("Energy", f"{number(mwh, 'num')} MWh" if mwh is not None else "—",
         ans.get("energy_basis") or "no power model for this device"),
    ])


def capacity_rows(rows: list[dict]) -> list[dict]:
    """plan-training's rows as numbers (the CSV), days / GPU-hours / USD with their 80 %
    band's ends; the table shows them as 'value (lo–hi)'."""
    out = []
    for r in rows:
        row = {"GPU": r["device"], "GPUs": r["gpus"], "plan": r["plan"]}
        for col, key, scale in (("days", "days", 1.0), ("M GPU-h", "gpu_hours", 1e-6),
                                ("M USD", "usd", 1e-6)):
            value, band = r.get(key), r.get(f"{key}_range")
            row[col] = None if value is None else value * scale
            row[f"{col} lo"] = band[0] * scale if band and value is not None else None
            row[f"{col} hi"] = band[1] * scale if band and value is not None else None
        pct = {k: None if r.get(k) is None else 100 * r[k] for k in ("mfu", "mfu_6nd")}
        row |= {"MWh": r.get("energy_mwh"), "energy basis": r.get("energy_basis") or "—",
                "MFU 6ND %": pct["mfu_6nd"], "MFU Megatron %": pct["mfu"],
                "TFLOP/s per GPU": r.get("model_tflops_per_gpu"),
                "free %": None if r.get("memory_headroom") is None
                else 100 * r["memory_headroom"],
                "step (s)": r["step_time_s"],
                "bound by": ", ".join(f"{b['term']} {b['share']:.0%}"
                                      for b in r.get("bound_by") or []),
                "Pareto": r["pareto"], "meets limits": r["meets_constraints"]}
        if "may_miss" in r:  # met at the point estimate only (newer planners)
            row["limits across 80 % band"] = (
                "—" if not r["meets_constraints"] else "yes" if not r["may_miss"]
                else "may miss " + ", ".join(f"--{m}" for m in r["may_miss"]))
        if "may_not_fit" in r:  # the memory band reaches past the device (newer planners)
            row["may not fit"] = bool(r["may_not_fit"])
        out.append(row)
    return out
