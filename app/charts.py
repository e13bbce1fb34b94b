"""Plotly figures and number formats for the dashboard: pure functions of a Prediction.

Kept free of Streamlit so they are unit-tested directly (tests/test_dashboard.py). The
roofline follows Williams, Waterman & Patterson, "Roofline: an insightful visual performance
model for multicore architectures", CACM 52(4), 2009: attainable FLOP/s = min(peak, I x BW).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

GIB = 2**30

# One colour per time / memory component, stable across kinds and reruns.
TIME_LABELS = {
    "gemm": "GEMM", "attention": "Attention", "elementwise": "Elementwise",
    "optimizer": "Optimizer step", "pipeline_bubble": "Pipeline bubble",
    "tp_comm": "TP comm (exposed)", "cp_comm": "CP comm (exposed)",
    "ep_comm": "EP comm (exposed)", "pp_comm": "PP comm (exposed)",
    "dp_comm": "DP comm (exposed)",
}
TIME_COLORS = {
    "gemm": "#3b6fb6", "attention": "#e08a2e", "elementwise": "#6aa84f",
    "optimizer": "#8e6c8a", "pipeline_bubble": "#b0b0b0", "tp_comm": "#c0392b",
    "cp_comm": "#e57373", "ep_comm": "#d35400", "pp_comm": "#922b21", "dp_comm": "#f1948a",
}
MEMORY_LABELS = {
    "weights": "Weights", "gradients": "Gradients", "optimizer": "Optimizer states",
    "activations": "Activations", "kv_cache": "KV cache",
    "communication_buffers": "Comm. buffers", "cuda_context": "CUDA context",
    "allocator_overhead": "Allocator overhead", "draft_weights": "Draft weights",
    "draft_kv_cache": "Draft KV cache",
}
MEMORY_COLORS = {
    "weights": "#3b6fb6", "gradients": "#7fa7dc", "optimizer": "#8e6c8a",
    "activations": "#e08a2e", "kv_cache": "#6aa84f", "communication_buffers": "#c0392b",
    "cuda_context": "#9e9e9e", "allocator_overhead": "#cfcfcf",
}
CLASS_COLORS = {k: TIME_COLORS[k] for k in ("gemm", "attention", "elementwise", "optimizer")}
PHASE_SYMBOLS = {"fwd": "circle", "prefill": "circle", "decode": "diamond", "bwd": "square-open",
                 "recompute": "triangle-up", "step": "x"}
FONT = {"family": "Inter, 'Source Sans Pro', sans-serif", "size": 13}
OTHER = "#888888"


# --------------------------------------------------------------------------- formatting
def time_unit(seconds: float) -> tuple[str, float]:
    """The unit (s, ms, us) that shows ``seconds`` with 1-3 integer digits, and its scale."""
    s = abs(seconds)
    if s >= 1 or s == 0:
        return "s", 1.0
    if s >= 1e-3:
        return "ms", 1e3
    return "µs", 1e6


def fmt_seconds(seconds: float) -> str:
    unit, scale = time_unit(seconds)
    return f"{seconds * scale:.3g} {unit}" if unit != "s" else f"{seconds:.3f} s"


def fmt_bytes(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f} GiB"


def fmt_rate(x: float) -> str:
    """Tokens/s with thousands separators (one decimal below 100)."""
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def label(key: str, labels: Mapping[str, str]) -> str:
    return labels.get(key, key.replace("_", " "))


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "y": 0.98, "yanchor": "top",
               "yref": "container", "font": {"size": 16}},
        template="plotly_white", font=FONT, height=height,
        margin={"l": 10, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 0.0,
                "title": {"text": ""}, "traceorder": "normal"},
        hoverlabel={"font": {"family": FONT["family"]}},
    )
    return fig


# --------------------------------------------------------------------------- time
def time_components(pred) -> dict[str, dict[str, float]]:
    """Positive time components (s) per phase: {"Training step": {...}} or
    {"Prefill": {...}, "Decode step": {...}}. Zero terms (and round-off such as -1e-15
    pipeline bubbles) are dropped."""
    bd = pred.breakdown
    if pred.kind == "training":
        phases = {"Training step": bd["time"]}
    else:
        phases = {"Prefill": bd["prefill"], "Decode step": bd["decode_step"]}
    order = {k: i for i, k in enumerate(TIME_LABELS)}
    out = {}
    for phase, parts in phases.items():
        kept = [(k, float(v)) for k, v in parts.items() if k != "total_s" and float(v) > 1e-12]
        out[phase] = dict(sorted(kept, key=lambda kv: order.get(kv[0], len(order))))
    return out


def time_figure(pred) -> go.Figure:
    """Where the time goes: training step components (bar per component, largest first);
    inference prefill (TTFT) and one decode step (TPOT), each stacked by component."""
    phases = time_components(pred)
    if pred.kind == "training":
        parts = sorted(phases["Training step"].items(), key=lambda kv: kv[1])
        total = pred.step_time_s
        unit, scale = time_unit(total)
        fig = go.Figure(go.Bar(
            y=[label(k, TIME_LABELS) for k, _ in parts], x=[v * scale for _, v in parts],
            orientation="h", marker_color=[TIME_COLORS.get(k, OTHER) for k, _ in parts],
            text=[f"{v * scale:.3g} {unit} · {100 * v / total:.1f}%" for _, v in parts],
            textposition="auto", cliponaxis=False,
            hovertemplate="%{y}: %{x:.4g} " + unit + "<extra></extra>", showlegend=False))
        fig.update_xaxes(title_text=f"time per training step ({unit})", rangemode="tozero")
        _layout(fig, f"Step time breakdown — {fmt_seconds(total)} per step",
                height=max(260, 60 + 38 * len(parts)))
        return fig

    totals = {"Prefill": ("TTFT", pred.breakdown["prefill"]["total_s"]),
              "Decode step": ("TPOT", pred.breakdown["decode_step"]["total_s"])}
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.3)
    shown: set[str] = set()
    for row, (phase, parts) in enumerate(phases.items(), start=1):
        metric, phase_total = totals[phase]
        ylabel = f"<b>{phase}</b><br>{metric} {fmt_seconds(phase_total)}"
        total = sum(parts.values()) or 1.0
        unit, scale = time_unit(total)
        for key, value in parts.items():
            fig.add_trace(go.Bar(
                y=[ylabel], x=[value * scale], orientation="h", name=label(key, TIME_LABELS),
                marker_color=TIME_COLORS.get(key, OTHER), legendgroup=key,
                showlegend=key not in shown,
                text=[f"{100 * value / total:.0f}%" if value / total >= 0.06 else ""],
                textposition="inside", insidetextanchor="middle",
                hovertemplate=f"{phase} · {label(key, TIME_LABELS)}: %{{x:.4g}} {unit} "
                              f"({100 * value / total:.1f}%)<extra></extra>"), row=row, col=1)
            shown.add(key)
        fig.update_xaxes(ticksuffix=f" {unit}", rangemode="tozero", row=row, col=1)
    fig.update_xaxes(title_text="time (per phase; prefill and decode use their own scales)",
                     row=2, col=1)
    fig.update_layout(barmode="stack")
    _layout(fig, "Latency breakdown — prefill and one decode step", height=330)
    fig.update_layout(margin={"t": 95})
    return fig


# --------------------------------------------------------------------------- memory
def memory_figure(pred) -> go.Figure:
    """Memory per GPU stacked by kind (GiB), with the device capacity as a dashed line."""
    parts = [(k, float(v)) for k, v in pred.breakdown["memory"].items() if float(v) > 0]
    total = pred.memory_per_gpu_bytes / GIB
    cap = pred.memory_capacity_bytes / GIB
    fig = go.Figure()
    for key, value in parts:
        gib = value / GIB
        fig.add_trace(go.Bar(
            y=["per GPU"], x=[gib], orientation="h", name=label(key, MEMORY_LABELS),
            marker_color=MEMORY_COLORS.get(key, OTHER),
            text=[f"{gib:.1f}" if gib >= 0.06 * max(total, cap) else ""],
            textposition="inside", insidetextanchor="middle",
            hovertemplate=f"{label(key, MEMORY_LABELS)}: %{{x:.2f}} GiB "
                          f"({100 * value / pred.memory_per_gpu_bytes:.1f}% of used)"
                          "<extra></extra>"))
    fig.add_vline(x=cap, line={"color": "#222222", "dash": "dash", "width": 2},
                  annotation_text=f"capacity {cap:g} GiB", annotation_position="top",
                  annotation_font_size=12)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="memory per GPU (GiB)", range=[0, 1.08 * max(total, cap)])
    fig.update_yaxes(showticklabels=False)
    verdict = "" if pred.fits else " — DOES NOT FIT"
    _layout(fig, f"Memory per GPU — {total:.1f} of {cap:g} GiB ({100 * total / cap:.0f}%)"
                 f"{verdict}", height=330)
    fig.update_layout(margin={"t": 125})
    return fig


# --------------------------------------------------------------------------- roofline
def op_stages(pred) -> list[str]:
    """The stage of each operator: training ops by phase (fwd/bwd/recompute/step); inference
    predictions list the prefill pass's operators, then the decode step's (api.py), so the
    repeat of a name is its decode instance."""
    if pred.kind == "training":  # forward attention kernels carry the "prefill" phase
        return ["fwd" if op.phase == "prefill" else op.phase for op in pred.ops]
    seen: set[str] = set()
    out = []
    for op in pred.ops:
        out.append("decode" if op.name in seen or op.phase == "decode" else "prefill")
        seen.add(op.name)
    return out


def roofline_points(pred) -> list[dict]:
    """Operators with matrix FLOPs placed at (FLOP/byte, achieved FLOP/s per call)."""
    total = sum(op.total_s for op in pred.ops) or 1.0
    points = []
    for op, stage in zip(pred.ops, op_stages(pred), strict=True):
        if op.flops <= 0 or op.bytes <= 0 or op.time_s <= 0:
            continue
        points.append({"name": op.name, "cls": op.cls, "stage": stage, "bound": op.bound,
                       "intensity": op.flops / op.bytes, "flops_per_s": op.flops / op.time_s,
                       "time_s": op.time_s, "calls": op.calls, "share": op.total_s / total})
    return points


def roofline_figure(pred, peak_flops: float, bandwidth: float, dtype: str,
                    device_name: str | None = None) -> go.Figure:
    """Log-log roofline of the device (compute roof ``peak_flops`` at ``dtype``, memory
    slope ``bandwidth`` B/s) with this workload's operators; marker area ~ share of time.

    Elementwise operators carry no matrix FLOPs in the model (their cost is bytes), so they
    have no place on the FLOP/s axis; the caption of the page says how much time they take.
    """
    points = roofline_points(pred)
    ridge = peak_flops / bandwidth
    xs = [p["intensity"] for p in points] + [ridge]
    lo = 10 ** math.floor(math.log10(min(xs) / 2))
    hi = 10 ** math.ceil(math.log10(max(xs) * 2))
    tf = 1e-12
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[lo, ridge, hi], y=[lo * bandwidth * tf, peak_flops * tf, peak_flops * tf],
        mode="lines", line={"color": "#222222", "width": 2.5}, name="roofline",
        hovertemplate="attainable: %{y:.4g} TFLOP/s at %{x:.3g} FLOP/B<extra></extra>",
        showlegend=False))
    by_class: dict[str, list[dict]] = {}
    for p in points:
        by_class.setdefault(p["cls"], []).append(p)
    for cls, pts in by_class.items():
        color = CLASS_COLORS.get(cls, OTHER)
        fig.add_trace(go.Scatter(
            x=[p["intensity"] for p in pts], y=[p["flops_per_s"] * tf for p in pts],
            mode="markers", name=cls,
            marker={"color": color,
                    "symbol": [PHASE_SYMBOLS.get(p["stage"], "circle") for p in pts],
                    "size": [9 + 30 * math.sqrt(p["share"]) for p in pts],
                    "line": {"color": [color if p["stage"] == "bwd" else "white"
                                       for p in pts], "width": 1.5}, "opacity": 0.8},
            customdata=[[p["name"], p["stage"], p["bound"], fmt_seconds(p["time_s"]),
                         f"{p['calls']:g}", 100 * p["share"],
                         100 * p["flops_per_s"] / min(peak_flops, p["intensity"] * bandwidth)]
                        for p in pts],
            hovertemplate=("<b>%{customdata[0]}</b> (%{customdata[1]})<br>"
                           "%{customdata[2]}-bound<br>"
                           "intensity: %{x:.3g} FLOP/B<br>"
                           "achieved: %{y:.4g} TFLOP/s (%{customdata[6]:.0f}% of roof)<br>"
                           "time per call: %{customdata[3]} × %{customdata[4]}<br>"
                           "share of operator time: %{customdata[5]:.1f}%<extra></extra>")))
    fig.add_vline(x=ridge, line={"color": "#999999", "dash": "dot", "width": 1})
    # anchored at the right end of the roof, so it stays inside the plot at any width
    fig.add_annotation(x=math.log10(hi), y=math.log10(peak_flops * tf), yshift=10,
                       text=f"{dtype.upper()} peak {peak_flops * tf:,.4g} TFLOP/s<br>"
                            f"ridge {ridge:.0f} FLOP/B",
                       showarrow=False, xanchor="right", yanchor="bottom", align="right",
                       font={"size": 12})
    slope_x = math.sqrt(lo * ridge)
    fig.add_annotation(x=math.log10(slope_x), y=math.log10(slope_x * bandwidth * tf),
                       text=f"HBM {bandwidth / 1e9:,.0f} GB/s", showarrow=False,
                       textangle=-32, yshift=14, font={"size": 12})
    minor = {"dtick": "D1", "showgrid": True, "gridcolor": "#f2f2f2"}
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP/byte)",
                     range=[math.log10(lo), math.log10(hi)], minor=minor,
                     **log_ticks(lo, hi))
    ymin = min([p["flops_per_s"] * tf for p in points] + [lo * bandwidth * tf]) / 2
    ymax = peak_flops * tf * 2
    fig.update_yaxes(type="log", title_text="performance (TFLOP/s)",
                     range=[math.log10(ymin), math.log10(ymax)], minor=minor,
                     **log_ticks(ymin, ymax))
    who = f" — {device_name}" if device_name else ""
    _layout(fig, f"Roofline{who} ({dtype.upper()}, per GPU)", height=460)
    fig.update_layout(legend={"title": {"text": "operator class"}, "orientation": "v",
                              "x": 0.99, "xanchor": "right", "y": 0.03, "yanchor": "bottom",
                              "bgcolor": "rgba(255,255,255,0.85)"})
    return fig


def compute_dtype(scenario: Mapping, device=None) -> str:
    """The dtype whose tensor-core peak a scenario's GEMMs run at: the training precision;
    in inference the weight dtype when activations share it, else the activation dtype
    (weight-only quantisation dequantises into activation-precision GEMMs) -- except fp8
    weights on a ``device`` with fp8 tensor cores with activations unset, which run the fp8
    GEMM (as perfmodel.ops.Precision.inference with fp8_gemm, perfmodel/plan.py); a 16-bit
    activation_dtype given with them asks for the weight-only kernel."""
    if scenario["kind"] == "training":
        return scenario.get("training", {}).get("precision", "bf16")
    inf = scenario.get("inference", {})
    weight, act = inf.get("weight_dtype", "bf16"), inf.get("activation_dtype")
    if not isinstance(weight, str):  # per-tensor formats: the activation dtype's roof
        return act or "bf16"
    fp8_cores = device is not None and bool(device.peak_tflops.get("fp8"))
    if weight in ("fp8", "fp8_block") and fp8_cores and act in (None, "fp8", "fp8_block"):
        return "fp8"  # activations unset: quantised as the engines do; 16-bit: weight-only
    act = act or "bf16"
    return weight if weight == act else act


def log_ticks(lo: float, hi: float) -> dict:
    """Labelled ticks for a log axis: every decade, plus 2 and 5 when it spans <= 3 decades
    (plotly's own minor labels are bare digits)."""
    steps = (1, 2, 5) if math.log10(hi / lo) <= 3 else (1,)
    vals = [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in steps if lo <= m * 10.0**e <= hi]
    return {"tickvals": vals, "ticktext": [f"{v:,.6g}" for v in vals]}


OPERATOR_CLASSES = ("gemm", "attention", "elementwise", "optimizer")


def elementwise_share(pred) -> dict[str, float]:
    """Per phase, the fraction of operator time (communication excluded) in elementwise
    operators, from the prediction's time breakdown."""
    out = {}
    for phase, parts in time_components(pred).items():
        ops = sum(v for k, v in parts.items() if k in OPERATOR_CLASSES)
        out[phase] = parts.get("elementwise", 0.0) / ops if ops else 0.0
    return out
