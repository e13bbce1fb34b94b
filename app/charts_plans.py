"""Plotly figures of the planners: candidates in a cost-vs-time (or cost-vs-latency) plane
with their Pareto frontier drawn."""

from __future__ import annotations

import plotly.graph_objects as go
from charts import _layout

PALETTE = ["#3b6fb6", "#e08a2e", "#6aa84f", "#8e6c8a", "#c0392b", "#17becf", "#7f7f7f"]


def pareto_front(points: list[dict], x: str, y: str) -> list[dict]:
    """The points no other point beats on both ``x`` and ``y`` (both lower-is-better),
    sorted by ``x``."""
    front, best_y = [], float("inf")
    for p in sorted(points, key=lambda p: (p[x], p[y])):
        if p[y] < best_y:
            front.append(p)
            best_y = p[y]
    return front


def pareto_figure(points: list[dict], x: str, y: str, group: str, x_title: str,
                  y_title: str, title: str, text: str | None = None,
                  from_zero: bool = True) -> go.Figure:
    """Every candidate as a marker coloured by ``group``; the Pareto frontier as a line.
    ``from_zero``: axes start at 0 (else they zoom on the points)."""
    fig = go.Figure()
    groups = list(dict.fromkeys(str(p[group]) for p in points))
    for i, g in enumerate(groups):
        pts = [p for p in points if str(p[group]) == g]
        fig.add_trace(go.Scatter(
            x=[p[x] for p in pts], y=[p[y] for p in pts], mode="markers", name=g,
            marker={"color": PALETTE[i % len(PALETTE)], "size": 10, "opacity": 0.8},
            text=[p.get(text, "") if text else "" for p in pts],
            hovertemplate=f"{group} {g}<br>%{{text}}<br>{x_title}: %{{x:.4g}}<br>"
                          f"{y_title}: %{{y:.4g}}<extra></extra>"))
    front = pareto_front(points, x, y)
    if front:
        fig.add_trace(go.Scatter(x=[p[x] for p in front], y=[p[y] for p in front],
                                 mode="lines", name="Pareto frontier",
                                 line={"color": "#222222", "dash": "dot", "width": 2},
                                 hoverinfo="skip"))
    mode = "tozero" if from_zero else "normal"
    fig.update_xaxes(title_text=x_title, rangemode=mode)
    fig.update_yaxes(title_text=y_title, rangemode=mode)
    _layout(fig, title, height=420)
    fig.update_layout(margin={"t": 100})
    return fig
