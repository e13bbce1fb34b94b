"""Compare: two to four scenarios side by side (H100 vs B200, TP4 vs TP8, FP8 vs BF16...):
metrics with the difference to A highlighted, time breakdowns and memory on shared axes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import backend
import charts_multi
import forms
import pandas as pd
import streamlit as st
import yaml
from common import (
    ERRORS,
    csv_button,
    plain,
    predict,
    show_warnings,
    sync_url,
    url_state,
)

SLOTS = "ABCD"
DEVICES = ["h100-sxm5-80gb", "b200", "a100-sxm4-80gb", "h200-sxm-141gb"]
# (field, label, unit scale, format, lower is better)
METRICS = {
    "training": [("step_time_s", "Step time (s)", 1, "{:.3f}", True),
                 ("tokens_per_s", "Tokens/s", 1, "{:,.0f}", False),
                 ("tflops_per_gpu", "TFLOP/s per GPU", 1, "{:.1f}", False),
                 ("mfu", "MFU", 100, "{:.1f}%", False),
                 ("memory_per_gpu_bytes", "Memory per GPU (GiB)", 2**-30, "{:.1f}", True),
                 ("usd_per_hour", "USD per hour", 1, "{:,.2f}", True),
                 ("usd_per_m_tokens", "USD per M tokens", 1, "{:.3f}", True)],
    "inference": [("ttft_s", "TTFT (ms)", 1e3, "{:.1f}", True),
                  ("tpot_s", "TPOT (ms)", 1e3, "{:.2f}", True),
                  ("e2e_latency_s", "End-to-end (s)", 1, "{:.3f}", True),
                  ("tokens_per_s", "Output tokens/s", 1, "{:,.0f}", False),
                  ("memory_per_gpu_bytes", "Memory per GPU (GiB)", 2**-30, "{:.1f}", True),
                  ("max_concurrent_sequences", "Max sequences", 1, "{:,.0f}", False),
                  ("usd_per_hour", "USD per hour", 1, "{:,.2f}", True),
                  ("usd_per_m_tokens", "USD per M output tokens", 1, "{:.3f}", True)],
}


def prefix(slot: int, kind: str) -> str:
    return f"c{slot}{kind[0]}_"


DEFAULTS: dict = {"cmp_n": 2, "cmp_kind": "inference"}
for i, dev in enumerate(DEVICES):
    DEFAULTS |= forms.system_defaults(prefix(i, "training"), 8, device=dev)
    DEFAULTS |= forms.training_defaults(prefix(i, "training"))
    DEFAULTS |= forms.system_defaults(prefix(i, "inference"), 1, model="llama-3-8b", device=dev)
    DEFAULTS |= forms.inference_defaults(prefix(i, "inference"))


def values(pred) -> dict[str, float | None]:
    out = {field: getattr(pred, field, None) for field, *_ in METRICS[pred.kind]}
    price = backend.gpu_prices().get(pred.device)
    if price:
        per_hour = price["usd_per_gpu_hour"] * pred.num_gpus
        out["usd_per_hour"] = per_hour
        out["usd_per_m_tokens"] = per_hour / (pred.tokens_per_s * 3600) * 1e6
    return out


def metric_table(kind: str, names: list[str], preds: list) -> pd.DataFrame:
    """Rows: metrics; columns: each scenario ('value (lo–hi)' where the prediction carries an
    80 % band), then its difference to A (in %, of the values)."""
    rows = []
    base = values(preds[0])
    for field, label, scale, fmt, _lower in METRICS[kind]:
        row = {"metric": label}
        for name, pred in zip(names, preds, strict=True):
            v = values(pred).get(field)
            band = (getattr(pred, "ranges", None) or {}).get(field)  # 80 % band, if any
            row[name] = "—" if v is None else fmt.format(v * scale) + (
                f" ({fmt.format(band[0] * scale)}–{fmt.format(band[1] * scale)})"
                if band else "")
        for name, pred in zip(names[1:], preds[1:], strict=True):
            v, b = values(pred).get(field), base.get(field)
            row[f"{name} vs A"] = (f"{100 * (v / b - 1):+.1f}%" if v is not None and b else "—")
        rows.append(row)
    return pd.DataFrame(rows)


def highlight(df: pd.DataFrame, kind: str):
    """Green where a scenario beats A, red where it is worse (by the metric's direction)."""
    lower = {label: lo for _f, label, _s, _fmt, lo in METRICS[kind]}

    def colour(row: pd.Series) -> list[str]:
        out = []
        for col, value in row.items():
            if not str(col).endswith("vs A") or not str(value).endswith("%"):
                out.append("")
                continue
            delta = float(str(value).rstrip("%"))
            better = delta < 0 if lower[row["metric"]] else delta > 0
            out.append("" if abs(delta) < 0.05 else
                       "background-color: #d9f2d9" if better else
                       "background-color: #f9d6d5")
        return out

    return df.style.apply(colour, axis=1)


url_state(DEFAULTS)
st.title("Compare scenarios")
with st.sidebar:
    st.header("Scenarios")
    n = int(st.number_input("How many", min_value=2, max_value=4, key="cmp_n"))
    kind = st.radio("Workload", ["training", "inference"], key="cmp_kind", horizontal=True,
                    format_func=str.capitalize)
    scenarios = []
    for i, tab in enumerate(st.tabs([f"Scenario {s}" for s in SLOTS[:n]])):
        with tab:
            form = forms.training_form if kind == "training" else forms.inference_form
            scenarios.append(form(prefix(i, kind)))
sync_url([k for k in DEFAULTS if k.startswith("cmp_") or (k[1:2].isdigit()
          and int(k[1]) < n and k[2] == kind[0])], DEFAULTS)

names, preds = [], []
with st.spinner("Predicting the scenarios…", show_time=True):
    for slot, sc in zip(SLOTS, scenarios, strict=False):
        try:
            preds.append(predict(sc))
            names.append(slot)
        except ERRORS as err:
            st.error(f"**Scenario {slot} cannot run:** {plain(str(err).splitlines()[0])}",
                     icon=":material/block:")
if len(preds) >= 2:
    st.markdown(" · ".join(f"**{n}**: {plain(p.model)} on {p.num_gpus} × {plain(p.device)}"
                           for n, p in zip(names, preds, strict=True)))
    for n_, p in zip(names, preds, strict=True):
        show_warnings([f"{n_}: {w}" for w in p.warnings if not w.startswith("uncalibrated")])
    table = metric_table(kind, names, preds)
    st.dataframe(highlight(table, kind), hide_index=True, width="stretch", key="cmp_table")
    c1, c2 = st.columns(2)
    with c1:
        csv_button(table.to_dict("records"), "compare", key="cmp_csv", label="Table CSV")
    c2.download_button("Scenarios YAML", yaml.safe_dump_all(scenarios, sort_keys=False),
                       file_name="compare-scenarios.yaml", key="cmp_yaml",
                       icon=":material/download:", help="one YAML document per scenario")
    st.plotly_chart(charts_multi.compare_time_figure(preds, names), key="cmp_time_chart",
                    width="stretch")
    st.plotly_chart(charts_multi.compare_memory_figure(preds, names), key="cmp_memory_chart",
                    width="stretch")
    st.caption("Costs: GPU-hours at hardware_specs/prices.yaml list prices (—: no price).")
elif preds:
    st.info("At least two scenarios must run to compare them.")
