"""Plotly figures of the planners: candidates in a cost-vs-time (or cost-vs-latency) plane
with their Pareto frontier drawn, and plan-serving's throughput-vs-interactivity frontier;
80 % uncertainty bands as error bars where the points carry them."""

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


def faded(hex_color: str, alpha: float = 0.45) -> str:
    """'#rrggbb' as a translucent rgba() (error bars under many markers stay readable)."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def error_bars(points: list[dict], key: str, color: str | None = None) -> dict | None:
    """Plotly asymmetric error bars from each point's ``<key>_lo`` / ``<key>_hi`` (its 80 %
    band), or None when no point has a band (a point without one gets a zero-length bar)."""
    if not any(p.get(f"{key}_lo") is not None for p in points):
        return None
    plus = [0.0 if p.get(f"{key}_hi") is None else max(p[f"{key}_hi"] - p[key], 0.0)
            for p in points]
    minus = [0.0 if p.get(f"{key}_lo") is None else max(p[key] - p[f"{key}_lo"], 0.0)
             for p in points]
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus,
            "thickness": 1.2, "width": 3} | ({"color": color} if color else {})


def pareto_figure(points: list[dict], x: str, y: str, group: str, x_title: str,
                  y_title: str, title: str, text: str | None = None,
                  from_zero: bool = True) -> go.Figure:
    """Every candidate as a marker coloured by ``group``; the Pareto frontier as a line.
    ``from_zero``: axes start at 0 (else they zoom on the points). Points with ``<x>_lo`` /
    ``<x>_hi`` (or ``<y>_...``) get error bars: their 80 % band."""
    fig = go.Figure()
    groups = list(dict.fromkeys(str(p[group]) for p in points))
    for i, g in enumerate(groups):
        pts = [p for p in points if str(p[group]) == g]
        fig.add_trace(go.Scatter(
            x=[p[x] for p in pts], y=[p[y] for p in pts], mode="markers", name=g,
            marker={"color": PALETTE[i % len(PALETTE)], "size": 10, "opacity": 0.8},
            error_x=error_bars(pts, x, faded(PALETTE[i % len(PALETTE)])),
            error_y=error_bars(pts, y, faded(PALETTE[i % len(PALETTE)])),
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


def frontier_figure(points: list[dict], title: str) -> go.Figure:
    """plan-serving's throughput-vs-interactivity points (``frontier_points``: tokens/s per
    user on x, tokens/s per GPU on y, both higher-is-better): every point faded, the Pareto
    points (the API's ``pareto`` flag) coloured by device and layout and joined, each with its
    80 % band (``ranges``) as error bars."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[float(p["tokens_per_s_per_user"]) for p in points],
        y=[float(p["tokens_per_s_per_gpu"]) for p in points], mode="markers",
        name="not on the frontier", marker={"color": "#bbbbbb", "size": 6},
        hoverinfo="skip"))
    front = [frontier_point(p) for p in points if p.get("pareto")]
    groups = list(dict.fromkeys(p["config"] for p in front))
    for i, g in enumerate(groups):
        pts = [p for p in front if p["config"] == g]
        fig.add_trace(go.Scatter(
            x=[p["user"] for p in pts], y=[p["gpu"] for p in pts], mode="markers", name=g,
            marker={"color": PALETTE[i % len(PALETTE)], "size": 9},
            error_x=error_bars(pts, "user", faded(PALETTE[i % len(PALETTE)])),
            error_y=error_bars(pts, "gpu", faded(PALETTE[i % len(PALETTE)])),
            text=[p["label"] for p in pts],
            hovertemplate="%{text}<extra></extra>"))
    line = sorted(front, key=lambda p: p["user"])
    if line:
        fig.add_trace(go.Scatter(x=[p["user"] for p in line], y=[p["gpu"] for p in line],
                                 mode="lines", name="Pareto frontier",
                                 line={"color": "#222222", "dash": "dot", "width": 2},
                                 hoverinfo="skip"))
    fig.update_xaxes(title_text="output tokens/s per user (interactivity)", rangemode="tozero")
    fig.update_yaxes(title_text="output tokens/s per GPU", rangemode="tozero")
    _layout(fig, title, height=440)
    fig.update_layout(margin={"t": 100})
    return fig


def frontier_point(p: dict) -> dict:
    """One frontier point as plotted: config name (device and plan-serving's ``layout`` key,
    "tp 8 ep 8" vs "tp 1 dp 8 ep 8": the legend entry, so layouts differing only in attention
    DP or PP stay apart), values and their 80 % band ends."""
    ranges = p.get("ranges") or {}
    user, gpu = ranges.get("tokens_per_s_per_user"), ranges.get("tokens_per_s_per_gpu")
    out = {"config": f"{p['device']} {p.get('layout') or 'tp ' + str(p['tp'])}",
           "user": float(p["tokens_per_s_per_user"]), "gpu": float(p["tokens_per_s_per_gpu"]),
           "user_lo": float(user[0]) if user else None, "user_hi": float(user[1]) if user
           else None, "gpu_lo": float(gpu[0]) if gpu else None,
           "gpu_hi": float(gpu[1]) if gpu else None}
    band = "" if not gpu else f" ({gpu[0]:,.0f}–{gpu[1]:,.0f})"
    uband = "" if not user else f" ({user[0]:.0f}–{user[1]:.0f})"
    out["label"] = (f"{out['config']}, batch {p['batch']}<br>{out['user']:.1f}{uband} tok/s "
                    f"per user<br>{out['gpu']:,.0f}{band} tok/s per GPU")
    return out
