"""One training or inference prediction on a page: metric cards (with uncertainty ranges when
the prediction carries them), time and memory breakdowns, the roofline, the operator table,
and downloads. Shared by the Training and Inference pages."""

from __future__ import annotations

import charts
import streamlit as st
from common import (
    csv_button,
    header_line,
    metric_cards,
    plain,
    pm,
    ranged,
    scenario_downloads,
    scenario_file,
    show_warnings,
    sync_url,
    try_predict,
    url_state,
)

from perfmodel.textfmt import percent


def cards(pred: pm.Prediction) -> list[tuple]:
    """(label, value, help, uncertainty range or None) of the page's metric cards."""
    mem = (f"{pred.memory_per_gpu_bytes / charts.GIB:.1f} GiB",
           f"of {pred.memory_capacity_bytes / charts.GIB:g} GiB; "
           + ("fits" if pred.fits else "does NOT fit"))
    sec, rate = charts.fmt_seconds, charts.fmt_rate
    mem_band = ranged(pred, "memory_per_gpu_bytes", lambda v: f"{v / charts.GIB:.1f}")
    mem_band = mem_band and f"{mem_band} GiB"
    if pred.kind == "training":
        return [
            ("Step time", sec(pred.step_time_s),
             f"{pred.num_microbatches:g} micro-batches per step", ranged(pred, "step_time_s", sec)),
            ("Tokens/s", rate(pred.tokens_per_s), "whole system, all GPUs",
             ranged(pred, "tokens_per_s", rate)),
            ("TFLOP/s per GPU", f"{pred.tflops_per_gpu:.1f}",
             "model FLOPs (Megatron convention: GEMMs + attention, no recompute)",
             ranged(pred, "tflops_per_gpu", lambda v: f"{v:.0f}")),
            ("MFU", percent(pred.mfu),
             f"vs the dense peak of the training dtype; 6ND convention: "
             f"{percent(pred.mfu_6nd)}; HFU incl. recompute: {percent(pred.hfu)}",
             ranged(pred, "mfu", percent)),
            ("Memory per GPU", *mem, mem_band),
            ("Micro-batches", f"{pred.num_microbatches:g}", "per step and pipeline", None),
        ]
    return [
        ("TTFT", sec(pred.ttft_s), "time to first token (prefill)", ranged(pred, "ttft_s", sec)),
        ("TPOT", sec(pred.tpot_s), "time per output token (decode step)",
         ranged(pred, "tpot_s", sec)),
        ("End-to-end", sec(pred.e2e_latency_s), "whole request",
         ranged(pred, "e2e_latency_s", sec)),
        ("Output tokens/s", rate(pred.tokens_per_s), "generated tokens per second, all replicas",
         ranged(pred, "tokens_per_s", rate)),
        ("Memory per GPU", *mem, mem_band),
        ("Max sequences", f"{pred.max_concurrent_sequences:,.0f}",
         "concurrent sequences whose KV cache fits in memory "
         f"({charts.fmt_bytes(pred.kv_cache_bytes_per_sequence)} of KV cache each per GPU)", None),
    ]


CARD_METRIC = {"Step time": "step_time_s", "Tokens/s": "tokens_per_s",
               "TFLOP/s per GPU": "tflops_per_gpu", "MFU": "mfu", "TTFT": "ttft_s",
               "TPOT": "tpot_s", "End-to-end": "e2e_latency_s",
               "Output tokens/s": "tokens_per_s", "Memory per GPU": "memory_per_gpu_bytes"}


def with_basis(pred: pm.Prediction, items: list[tuple]) -> list[tuple]:
    """Each banded card's help ends with what its band is based on (Prediction.range_basis)."""
    basis = getattr(pred, "range_basis", None) or {}
    out = []
    for label, value, help_, band in items:
        why = basis.get(CARD_METRIC.get(label, ""), "") if isinstance(basis, dict) else ""
        out.append((label, value, f"{help_}. Range basis: {why}" if band and why else help_,
                    band))
    return out


def energy_card(pred: pm.Prediction) -> list[tuple]:
    """Energy per token and power per GPU (perfmodel.power), when the prediction has them."""
    joules = getattr(pred, "energy_per_token_j", None)
    if not joules:
        return []
    watts = getattr(pred, "avg_power_per_gpu_w", None)
    what = "trained" if pred.kind == "training" else "generated"
    return [("Energy per token", f"{joules:.3g} J",
             f"per {what} token, whole system"
             + (f"; average power {watts:.0f} W per GPU" if watts else ""), None)]


def engine_plan(pred: pm.Prediction) -> None:
    """A named engine's memory plan (KV cache size, concurrency it admits), when present."""
    plan = getattr(pred, "engine", None)
    if not isinstance(plan, dict) or not plan:
        return
    with st.expander(f"Engine memory plan — {plan.get('engine', '?')} "
                     f"{plan.get('version', '')}".strip()):
        shown = {k: v for k, v in plan.items() if not isinstance(v, (dict, list))}
        st.dataframe([{"field": k, "value": str(v)} for k, v in shown.items()],
                     hide_index=True, width="stretch")
        for problem in plan.get("problems", []):
            st.warning(plain(problem), icon=":material/warning:")


def range_line(pred: pm.Prediction) -> None:
    """What the ranges under the metric values mean, when the prediction has them."""
    if not getattr(pred, "ranges", None):
        return
    st.caption("Grey ranges under the values: the prediction's uncertainty band (80 %, from "
               "the calibration's residuals and the validation errors of comparable cases; "
               "each card's ? says which).")


BAND_LABELS = {"step_time_s": "step time", "tokens_per_s": "tokens/s",
               "tflops_per_gpu": "TFLOP/s per GPU", "mfu": "MFU", "ttft_s": "TTFT",
               "tpot_s": "TPOT", "e2e_latency_s": "end-to-end",
               "memory_per_gpu_bytes": "memory per GPU"}


def band_basis(pred: pm.Prediction) -> None:
    """Every uncertainty band of the prediction (``Prediction.ranges``) and what it is based
    on (``Prediction.range_basis``), including the metrics that have none and why."""
    basis = getattr(pred, "range_basis", None) or {}
    ranges = getattr(pred, "ranges", None) or {}
    if not isinstance(basis, dict) or not basis:
        return
    rows = []
    for field, why in basis.items():
        band = ranges.get(field)
        point = getattr(pred, field, None)
        rows.append({"metric": BAND_LABELS.get(field, field) + (" (p50)" if pred.kind ==
                                                                "serving" else ""),
                     "predicted": _band_value(field, point),
                     "band (80 %)": " – ".join(_band_value(field, v) for v in band)
                     if band else "none",
                     "basis": str(why)})
    with st.expander("Uncertainty bands and their basis"):
        st.dataframe(rows, hide_index=True, width="stretch")


def _band_value(field: str, value) -> str:
    if value is None:
        return "—"
    value = float(value)
    if field.endswith("_s"):
        return charts.fmt_seconds(value)
    if field.endswith("_bytes"):
        return charts.fmt_bytes(value)
    if field == "mfu":
        return percent(value)
    return f"{value:,.4g}"


A2A_MODES = {"ll": "low latency", "normal": "normal", "": "none"}
MOE_PHASES = {"prefill": "prefill", "decode_step": "decode step"}


def moe_rows(pred: pm.Prediction) -> list[dict]:
    """Per phase of a MoE prediction (``breakdown["moe"]``): the grouped-GEMM table its
    experts read, the all-to-all kernels, the overlap run, and the all-to-all time split into
    exposed (on the critical path) and overlapped (hidden behind the other micro-batch)."""
    moe = (pred.breakdown or {}).get("moe")
    rows = []
    for phase, label in MOE_PHASES.items():
        m = moe.get(phase) if isinstance(moe, dict) else None
        if not isinstance(m, dict):
            continue
        ms = {k: 1e3 * float(m.get(f"{k}_s", 0.0) or 0.0)
              for k in ("all_to_all", "all_to_all_exposed", "all_to_all_overlapped",
                        "dispatch", "combine")}
        rows.append({"phase": label, "grouped-GEMM table": m.get("grouped_gemm_table") or "—",
                     "all-to-all": A2A_MODES.get(m.get("a2a_mode", ""), m.get("a2a_mode")),
                     "overlap": m.get("moe_overlap", "none"),
                     "all-to-all (ms)": ms["all_to_all"],
                     "exposed (ms)": ms["all_to_all_exposed"],
                     "overlapped (ms)": ms["all_to_all_overlapped"],
                     "dispatch (ms)": ms["dispatch"], "combine (ms)": ms["combine"],
                     "routed expert weights / GPU": charts.fmt_bytes(float(m.get(
                         "routed_expert_weight_bytes_per_gpu", 0.0) or 0.0))})
    return rows


def moe_view(pred: pm.Prediction, key: str) -> None:
    """The MoE table the prediction read and its exposed / overlapped all-to-all."""
    rows = moe_rows(pred)
    if not rows:
        return
    tables = sorted({t for r in rows for t in r["grouped-GEMM table"].split("; ")})
    parts = [f"**MoE experts** read {', '.join(f'`{t}`' for t in tables)}"]
    for r in rows:
        if r["all-to-all (ms)"] > 0:
            parts.append(f"{r['phase']} all-to-all {r['exposed (ms)']:.3g} ms exposed, "
                         f"{r['overlapped (ms)']:.3g} ms overlapped (`{r['overlap']}`)")
    if len(parts) == 1:
        parts.append("no expert all-to-all (attention DP 1: experts reached by TP "
                     "collectives)")
    st.markdown(" · ".join(parts))
    with st.expander("MoE: grouped-GEMM table and all-to-all per phase"):
        fmt = st.column_config.NumberColumn(format="%.3f")
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={c: fmt for c in rows[0] if c.endswith("(ms)")})
        csv_button(rows, f"{pred.kind}-moe", key=f"{key}_moe_csv", label="MoE CSV")


def show(scenario: dict, pred: pm.Prediction, key: str) -> None:
    header_line(pred)
    show_warnings(pred.warnings)
    metric_cards(with_basis(pred, cards(pred)) + energy_card(pred))
    range_line(pred)
    band_basis(pred)
    engine_plan(pred)
    moe_view(pred, key)
    st.plotly_chart(charts.time_figure(pred), key=f"{key}_time_chart", width="stretch")
    st.plotly_chart(charts.memory_figure(pred), key=f"{key}_memory_chart", width="stretch")
    device = pm.get_device(pred.device)
    dtype = charts.compute_dtype(scenario, device)
    st.plotly_chart(charts.roofline_figure(pred, device.peak_flops(dtype),
                                           device.memory_bandwidth, dtype, device.name),
                    key=f"{key}_roofline_chart", width="stretch")
    shares = " and ".join(f"{100 * v:.0f}% of {k.lower()}"
                          for k, v in charts.elementwise_share(pred).items())
    st.caption(
        "Each marker is one operator at (FLOP per HBM byte, modelled FLOP/s per call); marker "
        "area ∝ its share of operator time. ● forward / prefill, ◆ decode, ■ backward, "
        "▲ recompute. Elementwise operators move bytes without matrix FLOPs and are not "
        f"placed ({shares} operator time).")
    rows = [{"operator": op.name, "class": op.cls, "stage": stage, "calls": op.calls,
             "FLOP/B": op.intensity, "bound": op.bound, "per call (µs)": op.time_s * 1e6,
             "total (ms)": op.total_s * 1e3}
            for op, stage in zip(pred.ops, charts.op_stages(pred), strict=True)]
    with st.expander("Operators"):
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={"FLOP/B": st.column_config.NumberColumn(format="%.1f"),
                                    "per call (µs)": st.column_config.NumberColumn(
                                        format="%.1f"),
                                    "total (ms)": st.column_config.NumberColumn(format="%.3f")})
        csv_button(rows, f"{pred.kind}-operators", key=f"{key}_ops_csv", label="Operators CSV")
    scenario_downloads(scenario, pred, key=key, name=f"{pred.kind}-scenario")


def page(prefix: str, defaults: dict, title: str, header: str, form) -> None:
    """A whole Training or Inference page: URL state, the scenario form in the sidebar, the
    prediction and the scenario file."""
    url_state(defaults)
    st.title(title)
    with st.sidebar:
        st.header(header)
        scenario = form(prefix)
    sync_url(defaults, defaults)
    pred = try_predict(scenario)
    if pred is not None:
        show(scenario, pred, key=prefix.rstrip("_"))
    scenario_file(scenario)
