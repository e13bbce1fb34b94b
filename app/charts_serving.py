"""Plotly figures of a serving simulation: latency CDFs with the SLO bounds, the timeline of
running / queued requests and KV-cache use, and SLO attainment. Pure functions of plain data
(the Prediction's ``serving`` summary and per-request latencies)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from charts import _layout
from plotly.subplots import make_subplots

METRICS = {"ttft": ("TTFT", "#3b6fb6"), "tpot": ("TPOT", "#e08a2e"), "e2e": ("E2E", "#6aa84f")}


def _ecdf(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(np.asarray(values, dtype=float))
    return x, np.arange(1, x.size + 1) / max(x.size, 1)


def latency_cdf_figure(latencies: dict[str, list[float]] | None, summary: dict) -> go.Figure:
    """One panel per latency (TTFT, TPOT, E2E): the empirical CDF over requests (or the
    p50 / p90 / p99 points when per-request data is absent) and each SLO bound as a dashed
    line."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[v[0] for v in METRICS.values()],
                        horizontal_spacing=0.08)
    bounds = summary.get("slo", {}).get("bounds", {})
    for col, (metric, (label, color)) in enumerate(METRICS.items(), start=1):
        if latencies and latencies.get(metric):
            x, y = _ecdf(latencies[metric])
            fig.add_trace(go.Scatter(x=x * 1e3, y=y, mode="lines", line={"color": color},
                                     name=label, showlegend=False,
                                     hovertemplate=f"{label} %{{x:.4g}} ms: %{{y:.0%}} of "
                                                   "requests<extra></extra>"), row=1, col=col)
        else:
            pct = summary.get(f"{metric}_s", {})
            pts = [(float(pct[f"p{q}"]), q / 100) for q in (50, 90, 99)
                   if pct.get(f"p{q}") is not None]
            fig.add_trace(go.Scatter(x=[p[0] * 1e3 for p in pts], y=[p[1] for p in pts],
                                     mode="markers+lines", line={"color": color},
                                     name=label, showlegend=False), row=1, col=col)
        for key, bound in bounds.items():
            if key.startswith(metric + "_p"):
                q = float(key.removeprefix(metric + "_p").removesuffix("_s")) / 100
                fig.add_vline(x=bound * 1e3, line={"color": "#c0392b", "dash": "dash"},
                              row=1, col=col)
                fig.add_trace(go.Scatter(x=[bound * 1e3], y=[q], mode="markers",
                                         marker={"color": "#c0392b", "symbol": "x", "size": 10},
                                         name="SLO", showlegend=False,
                                         hovertemplate=f"SLO {key} = {bound:g} s"
                                                       "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="ms", rangemode="tozero", row=1, col=col)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1,
                     title_text="share of requests")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    _layout(fig, "Latency CDFs over requests (dashed: SLO bound)", height=320)
    fig.update_layout(margin={"t": 80})
    return fig


def timeline_figure(series: dict) -> go.Figure:
    """Requests running (the batch) and queued, and KV-cache utilisation, over the run."""
    t = series.get("t_s", [])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        row_heights=[0.6, 0.4])
    fig.add_trace(go.Scatter(x=t, y=series.get("running", []), name="running (batch)",
                             line={"color": "#3b6fb6"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=series.get("queued", []), name="queued",
                             line={"color": "#c0392b"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=series.get("kv_utilization", []), name="KV-cache use",
                             line={"color": "#6aa84f"}, fill="tozeroy"), row=2, col=1)
    fig.update_yaxes(title_text="requests", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="KV used", tickformat=".0%", range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="time since the first arrival (s)", row=2, col=1)
    _layout(fig, "Timeline — batch size, queue and KV-cache use", height=420)
    fig.update_layout(margin={"t": 90})
    return fig


def attainment_figure(summary: dict) -> go.Figure:
    """Each SLO check: the achieved percentile against its bound (bars, ms)."""
    checks = summary.get("slo", {}).get("checks", {})
    names = list(checks)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[checks[k]["value_s"] * 1e3 for k in names],
                         name="achieved",
                         marker_color=["#6aa84f" if checks[k]["met"] else "#c0392b"
                                       for k in names]))
    fig.add_trace(go.Scatter(x=names, y=[checks[k]["bound_s"] * 1e3 for k in names],
                             mode="markers", name="SLO bound",
                             marker={"symbol": "line-ew-open", "size": 40, "color": "#222",
                                     "line": {"width": 3}}))
    fig.update_yaxes(title_text="ms", rangemode="tozero")
    _layout(fig, "SLO checks — achieved percentile vs bound", height=300)
    return fig


def tradeoff_figure(points: list[dict]) -> go.Figure:
    """Throughput per GPU vs interactivity (output tokens/s per user = 1 / TPOT) as the
    offered load grows; each point labelled with its request rate (or concurrency). Points
    with ``user_lo`` / ``user_hi`` (from the TPOT p50's 80 % band) get horizontal error bars."""
    bands = None
    if any(p.get("user_lo") is not None for p in points):
        bands = {"type": "data", "symmetric": False, "color": "rgba(59,111,182,0.5)",
                 "thickness": 1.2, "width": 3,
                 "array": [max((p.get("user_hi") or p["tokens_per_user"])
                               - p["tokens_per_user"], 0.0) for p in points],
                 "arrayminus": [max(p["tokens_per_user"]
                                    - (p.get("user_lo") or p["tokens_per_user"]), 0.0)
                                for p in points]}
    fig = go.Figure(go.Scatter(
        x=[p["tokens_per_user"] for p in points], y=[p["tokens_per_gpu"] for p in points],
        error_x=bands, mode="lines+markers+text", text=[p["label"] for p in points], textposition="top center",
        line={"color": "#3b6fb6"}, hovertemplate="%{text}: %{x:.1f} tok/s/user, "
                                                 "%{y:.1f} tok/s/GPU<extra></extra>"))
    fig.update_xaxes(title_text="interactivity: output tokens/s per user (1 / TPOT p50)",
                     rangemode="tozero")
    fig.update_yaxes(title_text="output tokens/s per GPU", rangemode="tozero")
    _layout(fig, "Throughput vs interactivity", height=340)
    return fig


# ---- 80 % bands of the serving figures (``Prediction.serving_ranges``, uncertainty.py) -----
PERCENTILE_METRICS = (("ttft", "ttft_s", "ttft"), ("tpot", "tpot_s", "tpot"),
                      ("itl", "tbt_s", "itl"), ("e2e", "e2e_s", "e2e"), ("queue", "queue_s", None))


def serving_band(pred, key: str) -> list[float] | None:
    """The 80 % band [lo, hi] of a serving figure (``ttft_p90_s``, ``output_tokens_per_s``,
    ...), or None."""
    band = (getattr(pred, "serving_ranges", None) or {}).get(key)
    return list(band) if band and len(band) == 2 else None


def percentile_rows(pred) -> list[dict]:
    """One row per latency (TTFT, TPOT, ITL = time between tokens, E2E, queueing): its p50 /
    p90 / p99 / mean in seconds and, where the prediction has one, each percentile's 80 %
    band as ``p90 lo`` / ``p90 hi`` (queueing has none: it is not re-simulated)."""
    rows = []
    for name, section, band_key in PERCENTILE_METRICS:
        part = pred.serving.get(section) or {}
        row: dict = {"metric": name}
        for k, v in part.items():
            row[k] = v
            band = serving_band(pred, f"{band_key}_{k}_s") if band_key else None
            if band:
                row[f"{k} lo"], row[f"{k} hi"] = band
        rows.append(row)
    return rows


def slo_status(check: dict, band: list[float] | None) -> str:
    """"met", "MISSED", or "met, may miss (band)": the value meets the bound but the upper end
    of its 80 % band does not -- the CLI's rule (``perfmodel.serving.report.slo_status``)."""
    from perfmodel.serving.report import slo_status as cli_status

    return cli_status(check, band)
