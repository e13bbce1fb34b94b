"""Sweep: one numeric field of a scenario over a range (GPUs, batch, sequence length, TP...)
and a metric against it, each point coloured by what bounds it (compute, memory or
communication)."""

from __future__ import annotations

import copy
import sys
import types
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import charts_multi
import forms
import numpy as np
import streamlit as st
import yaml
from common import (
    ERRORS,
    banded_rows,
    csv_button,
    first_line,
    plain,
    pm,
    predict,
    sync_url,
    url_state,
)

FIRST = {  # the fields a planner sweeps most, listed first
    "training": ["system.num_gpus", "parallelism.tp", "parallelism.pp", "parallelism.cp",
                 "parallelism.ep", "parallelism.vp", "training.global_batch",
                 "training.micro_batch", "training.seq_len"],
    "inference": ["inference.batch", "inference.prompt_len", "inference.output_len",
                  "system.num_gpus", "parallelism.tp", "parallelism.pp", "parallelism.ep"],
}
SECTIONS = {"system": pm.SystemConfig, "parallelism": pm.Parallelism,
            "training": pm.TrainingConfig, "inference": pm.InferenceConfig}


def _is_number(annotation) -> bool:
    """int or float, also as Optional[...] or Annotated[...] (not bool, lists or Literals)."""
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_number(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_number(args[0])
    return False


def numeric_fields(kind: str) -> list[str]:
    """Every integer or float field a scenario of ``kind`` reads (from the pydantic models;
    inference replicas read only tp, pp and ep of the parallelism), planner favourites first."""
    sections = ("system", "parallelism", kind)
    found = []
    for section in sections:
        for name, field in SECTIONS[section].model_fields.items():
            if kind == "inference" and section == "parallelism" and name not in ("tp", "pp",
                                                                                 "ep"):
                continue
            if _is_number(field.annotation):
                found.append(f"{section}.{name}")
    return FIRST[kind] + [f for f in found if f not in FIRST[kind]]


PARAMS = {kind: numeric_fields(kind) for kind in FIRST}
# metric -> (label, scale, unit, phase whose bound colours the point)
METRICS = {
    "training": {"step_time_s": ("step time", 1, "s", None),
                 "tokens_per_s": ("tokens/s", 1, "tok/s", None),
                 "mfu": ("MFU", 100, "%", None),
                 "tflops_per_gpu": ("TFLOP/s per GPU", 1, "TFLOP/s", None),
                 "memory_per_gpu_bytes": ("memory per GPU", 2**-30, "GiB", None)},
    "inference": {"tpot_s": ("TPOT", 1e3, "ms", "decode"),
                  "ttft_s": ("TTFT", 1e3, "ms", "prefill"),
                  "tokens_per_s": ("output tokens/s", 1, "tok/s", "decode"),
                  "e2e_latency_s": ("end-to-end latency", 1, "s", "decode"),
                  "memory_per_gpu_bytes": ("memory per GPU", 2**-30, "GiB", "decode"),
                  "max_concurrent_sequences": ("max sequences", 1, "", "decode")},
}
MAX_POINTS = 24
DEFAULTS = {"sw_kind": "inference", "sw_param": "inference.batch", "sw_metric": "tpot_s",
            "sw_start": 1, "sw_stop": 256, "sw_points": 9, "sw_spacing": "powers of 2",
            **forms.system_defaults("swt_", 8), **forms.training_defaults("swt_"),
            **forms.system_defaults("swi_", 1), **forms.inference_defaults("swi_")}


def sweep_values(start: int, stop: int, points: int, spacing: str) -> list[int]:
    """Integer values from start to stop: doubling, or ``points`` evenly spaced."""
    if stop < start:
        raise ValueError(f"the sweep's stop ({stop}) must be >= its start ({start})")
    if spacing == "powers of 2":
        out, v = [], start
        while v <= stop and len(out) < MAX_POINTS:
            out.append(v)
            v *= 2
        return out
    return sorted({round(v) for v in np.linspace(start, stop, min(points, MAX_POINTS))})


def with_value(scenario: dict, path: str, value: int) -> dict:
    out = copy.deepcopy(scenario)
    section, field = path.split(".")
    out.setdefault(section, {})[field] = value
    if path == "parallelism.tp" and out["kind"] == "inference":
        out["system"]["num_gpus"] = max(out["system"]["num_gpus"], value)
    return out


def on_kind_change() -> None:
    kind = st.session_state["sw_kind"]
    st.session_state["sw_param"] = PARAMS[kind][0]
    st.session_state["sw_metric"] = next(iter(METRICS[kind]))


url_state(DEFAULTS)
st.title("Sweep a parameter")
with st.sidebar:
    st.header("Sweep")
    kind = st.radio("Workload", ["training", "inference"], key="sw_kind", horizontal=True,
                    format_func=str.capitalize, on_change=on_kind_change)
    if st.session_state["sw_param"] not in PARAMS[kind]:
        st.session_state["sw_param"] = PARAMS[kind][0]
    if st.session_state["sw_metric"] not in METRICS[kind]:
        st.session_state["sw_metric"] = next(iter(METRICS[kind]))
    param = st.selectbox("Parameter", PARAMS[kind], key="sw_param")
    metric = st.selectbox("Metric", list(METRICS[kind]), key="sw_metric",
                          format_func=lambda m: METRICS[kind][m][0])
    c1, c2 = st.columns(2)
    start = int(c1.number_input("From", min_value=1, key="sw_start"))
    stop = int(c2.number_input("To", min_value=1, key="sw_stop"))
    spacing = st.radio("Spacing", ["powers of 2", "linear"], key="sw_spacing", horizontal=True)
    points = int(st.number_input("Points (linear)", min_value=2, max_value=MAX_POINTS,
                                 key="sw_points", disabled=spacing != "linear"))
    st.header("Base scenario")
    p = "swt_" if kind == "training" else "swi_"
    base = (forms.training_form if kind == "training" else forms.inference_form)(p)
sync_url([k for k in DEFAULTS if k.startswith(("sw_", p))], DEFAULTS)

try:
    xs = sweep_values(start, stop, points, spacing)
except ValueError as err:
    st.error(plain(err), icon=":material/block:")
    st.stop()
label, scale, unit, phase = METRICS[kind][metric]
rows, failed = [], []
bar = st.progress(0.0, text=f"Predicting {len(xs)} points…")
for i, x in enumerate(xs):
    try:
        pred = predict(with_value(base, param, x))
    except ERRORS as err:
        failed.append((x, first_line(err)))
    else:
        value = getattr(pred, metric)
        band = (getattr(pred, "ranges", None) or {}).get(metric)  # 80 % band, if any
        if value is not None:
            rows.append({param: x, metric: value, "x": x, "y": value * scale,
                         "y_lo": band[0] * scale if band else None,
                         "y_hi": band[1] * scale if band else None,
                         "bound": charts_multi.dominant_bound(pred, phase), "fits": pred.fits})
    bar.progress((i + 1) / len(xs), text=f"Predicted {i + 1} of {len(xs)} points")
bar.empty()
if failed:
    x, reason = failed[0]
    st.warning(f"{len(failed)} of {len(xs)} values cannot run (e.g. {param} = {x}: "
               f"{plain(reason)})", icon=":material/warning:")
if not rows:
    st.error(f"**No value of {plain(param)} in {xs[0]}…{xs[-1]} can run** with this base "
             "scenario; change the range or the base scenario.", icon=":material/block:")
    st.stop()
st.plotly_chart(charts_multi.sweep_figure(rows, param, label, unit,
                                          log_x=spacing == "powers of 2" and len(rows) > 2),
                key="sw_chart", width="stretch")
st.caption("Marker colour: what bounds the point (compute, memory or exposed communication "
           "time); hollow: it does not fit in GPU memory; error bars: the prediction's 80 % "
           "band (docs/uncertainty.md), where it has one.")
column = f"{label} ({unit})" if unit else label
table = [{param: r["x"], column: r["y"], f"{column} lo": r["y_lo"], f"{column} hi": r["y_hi"],
          "bound": r["bound"], "fits": r["fits"]} for r in rows]
st.dataframe(banded_rows(table, {column: ".4g"}), hide_index=True, width="stretch")
c1, c2 = st.columns(2)
with c1:
    csv_button(table, f"sweep-{param}", key="sw_csv", label="Sweep CSV")
c2.download_button("Base scenario YAML", yaml.safe_dump(base, sort_keys=False),
                   file_name="sweep-base.yaml", key="sw_yaml", icon=":material/download:")
