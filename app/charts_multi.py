"""Plotly figures over several predictions: scenarios side by side on shared axes (Compare)
and a metric against a swept parameter with each point's bound coloured (Sweep)."""

from __future__ import annotations

import plotly.graph_objects as go
from charts import (
    GIB,
    MEMORY_COLORS,
    MEMORY_LABELS,
    OTHER,
    TIME_COLORS,
    TIME_LABELS,
    _layout,
    label,
    time_components,
)
from plotly.subplots import make_subplots

BOUND_COLORS = {"compute": "#3b6fb6", "memory": "#e08a2e", "communication": "#c0392b"}


def compare_time_figure(preds: list, names: list[str]) -> go.Figure:
    """Time per scenario stacked by component, one shared axis (ms) per phase: the training
    step, or prefill (TTFT) and one decode step (TPOT)."""
    phases = list(time_components(preds[0]))
    fig = make_subplots(rows=len(phases), cols=1, subplot_titles=phases,
                        vertical_spacing=0.25 if len(phases) > 1 else 0.1)
    keys: list[str] = []
    for pred in preds:
        for parts in time_components(pred).values():
            keys += [k for k in parts if k not in keys]
    order = {k: i for i, k in enumerate(TIME_LABELS)}
    keys.sort(key=lambda k: order.get(k, len(order)))
    for row, phase in enumerate(phases, start=1):
        for key in keys:
            values = [time_components(p).get(phase, {}).get(key, 0.0) * 1e3 for p in preds]
            fig.add_trace(go.Bar(y=names, x=values, orientation="h",
                                 name=label(key, TIME_LABELS), legendgroup=key,
                                 showlegend=row == 1, marker_color=TIME_COLORS.get(key, OTHER),
                                 hovertemplate="%{y}: " + label(key, TIME_LABELS)
                                               + " %{x:.4g} ms<extra></extra>"),
                          row=row, col=1)
        fig.update_xaxes(title_text="ms", rangemode="tozero", row=row, col=1)
        fig.update_yaxes(autorange="reversed", row=row, col=1)
    fig.update_layout(barmode="stack")
    _layout(fig, "Where the time goes — shared axis per phase",
            height=140 + 60 * len(preds) * len(phases) + 60 * len(phases))
    fig.update_layout(margin={"t": 120})
    return fig


def compare_memory_figure(preds: list, names: list[str]) -> go.Figure:
    """Memory per GPU per scenario stacked by kind (GiB, one axis), each scenario's device
    capacity as a black tick."""
    keys: list[str] = []
    for pred in preds:
        keys += [k for k, v in pred.breakdown["memory"].items() if v > 0 and k not in keys]
    fig = go.Figure()
    for key in keys:
        fig.add_trace(go.Bar(y=names, x=[p.breakdown["memory"].get(key, 0.0) / GIB
                                         for p in preds],
                             orientation="h", name=label(key, MEMORY_LABELS),
                             marker_color=MEMORY_COLORS.get(key, OTHER),
                             hovertemplate="%{y}: " + label(key, MEMORY_LABELS)
                                           + " %{x:.2f} GiB<extra></extra>"))
    fig.add_trace(go.Scatter(y=names, x=[p.memory_capacity_bytes / GIB for p in preds],
                             mode="markers", name="capacity",
                             marker={"symbol": "line-ns-open", "size": 30, "color": "#222",
                                     "line": {"width": 3}},
                             hovertemplate="%{y}: capacity %{x:g} GiB<extra></extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="memory per GPU (GiB)", rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    _layout(fig, "Memory per GPU — shared axis", height=200 + 50 * len(preds))
    fig.update_layout(margin={"t": 120})
    return fig


def dominant_bound(pred, phase: str | None = None) -> str:
    """compute, memory or communication: whichever takes most of the time of ``phase``
    (inference: "prefill" or "decode"; training: the step) — operator time by each
    operator's bound, exposed communication from the time breakdown."""
    from charts import op_stages

    stages = op_stages(pred)
    want = {"prefill": {"prefill"}, "decode": {"decode"}}.get(phase or "")
    shares = {"compute": 0.0, "memory": 0.0}
    for op, stage in zip(pred.ops, stages, strict=True):
        if want is None or stage in want:
            shares[op.bound] += op.total_s
    phases = time_components(pred)
    name = {"prefill": "Prefill", "decode": "Decode step"}.get(phase or "")
    parts = [v for k, v in phases.items() if name is None or k == name]
    shares["communication"] = sum(v for p in parts for k, v in p.items()
                                  if k.endswith("_comm"))
    return max(shares, key=shares.get)


def _bands(points: list[dict], color: str) -> dict | None:
    """Error bars from the points' ``y_lo`` / ``y_hi`` (80 % bands); None without any."""
    if not any(p.get("y_lo") is not None for p in points):
        return None
    return {"type": "data", "symmetric": False, "color": color, "thickness": 1.2, "width": 3,
            "array": [0.0 if p.get("y_hi") is None else max(p["y_hi"] - p["y"], 0.0)
                      for p in points],
            "arrayminus": [0.0 if p.get("y_lo") is None else max(p["y"] - p["y_lo"], 0.0)
                           for p in points]}


def sweep_figure(points: list[dict], param: str, metric: str, unit: str,
                 log_x: bool = False) -> go.Figure:
    """``metric`` against ``param``: a grey line through every point, markers coloured by the
    point's dominant bound; points that do not fit in memory are hollow; points with
    ``y_lo`` / ``y_hi`` get error bars (their 80 % band)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[p["x"] for p in points], y=[p["y"] for p in points],
                             mode="lines", line={"color": "#bbbbbb"}, showlegend=False,
                             hoverinfo="skip"))
    for bound, color in BOUND_COLORS.items():
        pts = [p for p in points if p["bound"] == bound]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in pts], y=[p["y"] for p in pts], mode="markers",
            name=f"{bound}-bound",
            marker={"color": [color if p["fits"] else "white" for p in pts], "size": 11,
                    "line": {"color": color, "width": 2}},
            error_y=_bands(pts, color),
            hovertemplate=f"{param} = %{{x:g}}<br>{metric} = %{{y:.4g}} {unit}<br>"
                          f"{bound}-bound<extra></extra>"))
    xs = sorted({p["x"] for p in points})
    ticks = {"tickvals": xs, "ticktext": [f"{x:,g}" for x in xs]} if log_x else {}
    fig.update_xaxes(title_text=param, type="log" if log_x else "linear", **ticks)
    fig.update_yaxes(title_text=f"{metric} ({unit})" if unit else metric, rangemode="tozero")
    _layout(fig, f"{metric} vs {param}", height=420)
    fig.update_layout(margin={"t": 100})
    return fig
