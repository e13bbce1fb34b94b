"""Plotly figures of the model's quality: predicted vs measured published cases with +-10 %
and +-25 % bands (Validation), and a calibration table's measured points against the fitted
profile (Calibration)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from charts import _layout, log_ticks
from charts_plans import PALETTE

BANDS = ((0.25, "rgba(224,138,46,0.12)", "±25 %"), (0.10, "rgba(106,168,79,0.22)", "±10 %"))


def validation_figure(rows: list[dict], colour_by: str = "source") -> go.Figure:
    """Predicted against measured (log-log; every metric in its canonical unit, so points
    of different metrics share the plane only through the ratio), with the y = x line and
    the ±10 % / ±25 % bands."""
    fig = go.Figure()
    xs = [r["measured"] for r in rows] + [r["predicted"] for r in rows]
    lo, hi = min(xs) / 1.5, max(xs) * 1.5
    line = [lo, hi]
    for band, color, name in BANDS:
        fig.add_trace(go.Scatter(x=line + line[::-1],
                                 y=[v * (1 + band) for v in line]
                                 + [v * (1 - band) for v in line[::-1]],
                                 fill="toself", fillcolor=color, line={"width": 0},
                                 mode="lines",
                                 name=name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=line, y=line, mode="lines", name="predicted = measured",
                             line={"color": "#222", "width": 1.5}, hoverinfo="skip"))
    groups = list(dict.fromkeys(str(r.get(colour_by)) for r in rows))
    for i, g in enumerate(groups):
        pts = [r for r in rows if str(r.get(colour_by)) == g]
        fig.add_trace(go.Scatter(
            x=[r["measured"] for r in pts], y=[r["predicted"] for r in pts], mode="markers",
            name=g, marker={"color": PALETTE[i % len(PALETTE)], "size": 8, "opacity": 0.85,
                            "symbol": i // len(PALETTE)},
            customdata=[[r["id"], r["metric"], r["unit"], 100 * r["ape"]] for r in pts],
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}: measured %{x:.4g}, "
                          "predicted %{y:.4g} %{customdata[2]}<br>APE %{customdata[3]:.1f}%"
                          "<extra></extra>"))
    ticks = log_ticks(lo, hi)
    fig.update_xaxes(type="log", title_text="measured (canonical unit of each metric)",
                     range=[math.log10(lo), math.log10(hi)], **ticks)
    fig.update_yaxes(type="log", title_text="predicted", range=[math.log10(lo), math.log10(hi)],
                     **ticks)
    _layout(fig, f"Predicted vs measured — {len(rows)} published cases", height=560)
    fig.update_layout(margin={"t": 120})
    return fig


def calibration_figure(points: dict, table: str, log_y: bool = False) -> go.Figure:
    """Measured efficiency (roofline bound / measured time) and the fitted profile's
    (bound / the core's time) of the same points, against the table's main axis."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=points["x"], y=points["measured_eff"], mode="markers",
                             name="measured", marker={"color": "#3b6fb6", "size": 6,
                                                      "opacity": 0.45}))
    order = sorted(range(len(points["x"])), key=lambda i: points["x"][i])
    fig.add_trace(go.Scatter(x=[points["x"][i] for i in order],
                             y=[points["fitted_eff"][i] for i in order], mode="markers",
                             name="fitted (core time with the profile)",
                             marker={"color": "#e08a2e", "size": 5, "symbol": "x"}))
    fig.update_xaxes(type="log", title_text=points["x_label"])
    fig.update_yaxes(type="log" if log_y else "linear",
                     title_text="efficiency (roofline bound / time)")
    _layout(fig, f"{table}: measured vs fitted", height=420)
    fig.update_layout(margin={"t": 100})
    return fig


def parity_figure(points: dict, table: str) -> go.Figure:
    """The core's time against the measured time of each point (log-log, y = x line)."""
    xs = points["measured_s"] + points["fitted_s"]
    lo, hi = min(xs) / 1.3, max(xs) * 1.3
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line={"color": "#222", "width": 1}))
    fig.add_trace(go.Scatter(x=points["measured_s"], y=points["fitted_s"], mode="markers",
                             name="points", marker={"color": "#3b6fb6", "size": 5,
                                                    "opacity": 0.5}))
    fig.update_xaxes(type="log", title_text="measured time (s)")
    fig.update_yaxes(type="log", title_text="fitted time (s)")
    _layout(fig, f"{table}: fitted vs measured time", height=380)
    fig.update_layout(margin={"t": 90})
    return fig
