"""Serving: a request stream (Poisson, gamma, closed-loop clients or an uploaded trace) on
replicas under a scheduler, simulated; latency CDFs against SLOs, the timeline of batch size,
queue and KV-cache use, goodput and cost, and the throughput-interactivity trade-off."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (run as a lone script)

import backend
import charts
import charts_serving
import forms
import numpy as np
import prediction_view
import streamlit as st
from common import (
    ERRORS,
    banded_rows,
    csv_button,
    header_line,
    metric_cards,
    ranged,
    scenario_downloads,
    scenario_file,
    show_error,
    show_warnings,
    sync_url,
    url_state,
)

import perfmodel as pm
from perfmodel.serving.predict import predict_with_latencies
from perfmodel.specs.scenario import ArrivalConfig, SchedulerConfig, ServingConfig
from perfmodel.textfmt import slo_summary

P = "sv_"
PROCESSES = forms.field_choices(ArrivalConfig, "process") or ["poisson"]
SCHEDULERS = forms.field_choices(SchedulerConfig, "kind") or ["continuous"]
CLOSED = "closed" in PROCESSES and forms.has_field(ArrivalConfig, "concurrency")
CLIENTS = backend.benchmark_clients() if forms.has_field(ServingConfig, "benchmark") else {}
DEFAULTS = {
    **forms.system_defaults(P, 1, model="llama-3-8b", device="h100-sxm5-80gb"),
    **forms.inference_defaults(P, serving=True),
    f"{P}process": "poisson", f"{P}rate": 8.0, f"{P}cv": 1.0, f"{P}concurrency": 32,
    f"{P}num_requests": 300, f"{P}scheduler": "continuous", f"{P}max_batch": 256,
    f"{P}token_budget": 0, f"{P}prefill_gpus": 1, f"{P}decode_gpus": 1,
    f"{P}ttft_p90": 1.0, f"{P}tpot_p90": 0.05, f"{P}e2e_p90": 0.0, f"{P}seed": 0,
    **({f"{P}client": next(iter(CLIENTS)), f"{P}interval_ms": 0.0} if CLIENTS else {}),
}
PROCESS_LABELS = {"poisson": "Poisson", "gamma": "Gamma (bursty)", "trace": "Trace (CSV upload)",
                  "closed": "Closed loop (clients)"}


def serving_section() -> dict | None:
    """The ``serving`` section from the workload, scheduler and SLO widgets (None: a trace
    process without an uploaded file)."""
    st.subheader("Requests")
    process = st.selectbox("Arrivals", [p for p in PROCESSES if p != "closed" or CLOSED],
                           key=f"{P}process", format_func=lambda p: PROCESS_LABELS.get(p, p))
    arrival: dict = {"process": process}
    if process in ("poisson", "gamma", "trace"):
        arrival["rate_per_s"] = float(st.number_input(
            "Request rate (req/s)", min_value=0.01, step=1.0, key=f"{P}rate",
            help="trace: used only when the CSV has no arrival_s column"))
    if process == "gamma":
        arrival["cv"] = float(st.number_input("Burstiness (gap CV)", min_value=0.05, step=0.25,
                                              key=f"{P}cv"))
    bench: dict = {}
    if process == "closed":
        arrival["concurrency"] = int(st.number_input("Clients (concurrency)", min_value=1,
                                                     step=8, key=f"{P}concurrency"))
        bench = benchmark_client()
    if process == "trace":
        upload = st.file_uploader("Trace CSV: prompt_len,output_len[,arrival_s]", type=["csv"],
                                  key=f"{P}trace")
        if upload is None:
            return None
        arrival["trace"] = backend.save_upload(upload.getvalue())
    serving: dict = {"arrival": arrival,
                     "num_requests": int(st.number_input("Requests simulated", min_value=10,
                                                         max_value=20000, step=100,
                                                         key=f"{P}num_requests")),
                     "seed": int(st.number_input("Seed", min_value=0, key=f"{P}seed"))}
    if process == "trace":
        serving.pop("num_requests")
    if bench:
        serving["benchmark"] = bench
    st.subheader("Scheduler")
    kind = st.selectbox("Batching", SCHEDULERS, key=f"{P}scheduler")
    sched: dict = {"kind": kind, "max_batch": int(st.number_input(
        "Max batch (sequences)", min_value=1, step=16, key=f"{P}max_batch"))}
    if kind in ("chunked", "inflight", "prefill_first"):  # per-iteration token cap
        budget = int(st.number_input("Token budget per iteration (0 = default)", min_value=0,
                                     step=256, key=f"{P}token_budget"))
        if budget:
            sched["token_budget"] = budget
    if kind == "disaggregated":
        c1, c2 = st.columns(2)
        sched["prefill_gpus"] = int(c1.number_input("Prefill GPUs", min_value=1,
                                                    key=f"{P}prefill_gpus"))
        sched["decode_gpus"] = int(c2.number_input("Decode GPUs", min_value=1,
                                                   key=f"{P}decode_gpus"))
    serving["scheduler"] = sched
    st.subheader("SLOs (p90, seconds; 0 = none)")
    slo = {}
    for name, label, step in (("ttft_p90", "TTFT p90", 0.1), ("tpot_p90", "TPOT p90", 0.01),
                              ("e2e_p90", "E2E p90", 1.0)):
        value = float(st.number_input(label, min_value=0.0, step=step, key=f"{P}{name}",
                                      format="%.3f"))
        if value > 0:
            slo[f"{name}_s"] = value
    serving["slo"] = slo
    return serving


def benchmark_client() -> dict:
    """``serving.benchmark`` of a closed loop: the client whose measurement rules apply
    (clients/*.yaml) and, for a client that measures in time windows (genai-perf), the
    measurement interval; {} for the default client."""
    if not CLIENTS:
        return {}
    client = st.selectbox("Benchmark client", list(CLIENTS), key=f"{P}client",
                          help="whose measurement the numbers are: which requests its "
                               "statistics cover and how it defines ITL (clients/*.yaml)")
    bench: dict = {}
    if client != next(iter(CLIENTS)):
        bench["client"] = client
    facts = CLIENTS.get(client, {})
    if facts.get("windows"):
        interval = float(st.number_input(
            "Measurement interval, ms (0 = every request)", min_value=0.0, step=1000.0,
            key=f"{P}interval_ms",
            help=f"{client} --measurement-interval: statistics over the requests finishing in "
                 f"its time windows (default {facts.get('interval_ms') or 0:g} ms when given "
                 "without a value); 0: request-count mode, every request counts"))
        if interval > 0:
            bench["measurement_interval_ms"] = interval
    return bench


def benchmark_report(pred) -> None:
    """The closed loop as its benchmark client reports it (``serving.benchmark``)."""
    b = pred.serving.get("benchmark")
    if not isinstance(b, dict):
        return
    win = b.get("windows") if isinstance(b.get("windows"), dict) else None
    rows = [{"field": k, "value": "—" if v is None else
             f"{v:,.4g}" if isinstance(v, float) else str(v)}
            for k, v in b.items() if not isinstance(v, (dict, list))]
    with st.expander(f"Benchmark client's report — {b.get('client', '?')}"):
        if win:
            st.caption(f"{win.get('count')} measurement windows of {win.get('window_s', 0):.1f} s"
                       f" ({'stable' if win.get('stable') else 'not stable'}); "
                       f"{win.get('unmeasured_requests', 0)} requests outside them")
        st.dataframe(rows, hide_index=True, width="stretch")


def cards(pred) -> list[tuple]:
    s = pred.serving
    tput, slo = s["throughput"], s["slo"]
    cost = s.get("cost") or {}
    sec = charts.fmt_seconds

    def pct(metric: str, q: int) -> str:
        value = s[f"{metric}_s"].get(f"p{q}")
        return "—" if value is None else sec(value)

    def p50(metric: str) -> str:
        """The median, with its 80 % band (``Prediction.ranges`` holds the p50's band)."""
        band = ranged(pred, f"{metric}_s", sec)
        return f"p50 {pct(metric, 50)}" + (f" ({band})" if band else "")

    def p90_band(metric: str) -> str | None:
        """The p90's 80 % band and the median (``Prediction.serving_ranges``)."""
        band = charts_serving.serving_band(pred, f"{metric}_p90_s")
        return (f"{sec(band[0])} – {sec(band[1])} · " if band else "") + p50(metric)

    def rate_band(key: str) -> str | None:
        band = charts_serving.serving_band(pred, key)
        return (f"{charts.fmt_rate(band[0])} – {charts.fmt_rate(band[1])}" if band
                else None)

    basis = getattr(pred, "range_basis", None) or {}
    statuses = {k: charts_serving.slo_status(v, charts_serving.serving_band(pred, k))
                for k, v in slo["checks"].items()}
    summary = slo_summary(statuses)  # every missed SLO first, then those that may miss
    return [
        ("TTFT p90", pct("ttft", 90), "time to first token, queueing included (90th "
         "percentile over requests); under the value its 80 % band and the median with its "
         f"band: {basis.get('ttft_p90_s', basis.get('ttft_s', 'no band'))}", p90_band("ttft")),
        ("TPOT p90", pct("tpot", 90), "mean time per output token after the first, per "
         "request (90th percentile); under the value its 80 % band and the median with its "
         f"band: {basis.get('tpot_p90_s', basis.get('tpot_s', 'no band'))}", p90_band("tpot")),
        ("Output tokens/s", charts.fmt_rate(tput["output_tokens_per_s"]),
         f"{tput['requests_per_s']:.2f} req/s served of "
         f"{tput['offered_requests_per_s']:.2f} offered; 80 % band under the value: "
         f"{basis.get('output_tokens_per_s', 'no band')}", rate_band("output_tokens_per_s")),
        ("Goodput", f"{slo['goodput_rps']:.2f} req/s",
         f"requests meeting every SLO per second; attainment {slo['attainment']:.0%}"),
        # the missed SLOs first (every one), then those that may miss: the CLI's per-SLO
        # status (serving.report.slo_status) summed up by textfmt.slo_summary
        ("SLOs", "met" if slo["slo_met"] else "MISSED",
         "; ".join(f"{k} {sec(v['value_s'])} vs {sec(v['bound_s'])}: {statuses[k]}"
                   for k, v in slo["checks"].items()) or "no SLO given",
         summary if summary not in ("", "met") else None),
        ("USD per M output tokens",
         f"{cost['usd_per_million_output_tokens']:.2f}" if cost else "—",
         (f"{cost['usd_per_hour']:.2f} USD/h for {pred.num_gpus} GPUs; {cost.get('price', '')}"
          if cost else "no price for this GPU in hardware_specs/prices.yaml")),
    ]


@st.cache_data(show_spinner=False, max_entries=64)
def simulate(scenario: dict) -> tuple[pm.Prediction, dict[str, list[float]]]:
    """One simulation per distinct scenario: the prediction (as ``perfmodel.predict`` gives
    it) and the per-request latencies behind the CDFs, from the same run (SpecErrors are
    raised, not cached)."""
    pred, lat = predict_with_latencies(pm.as_scenario(scenario))
    return pred, {k: [float(x) for x in v if np.isfinite(x)] for k, v in lat.items()}


def try_simulate(scenario: dict) -> tuple[pm.Prediction | None, dict | None]:
    """``simulate``, or (None, None) after showing the reason as one line in the page."""
    try:
        return simulate(scenario)
    except ERRORS as err:
        show_error(err)
        return None, None


def tradeoff(scenario: dict) -> None:
    """Re-simulate at 4 loads (a quarter to twice the current rate, or concurrency) and plot
    tokens/s per GPU against tokens/s per user."""
    arrival = scenario["serving"]["arrival"]
    field = "concurrency" if arrival["process"] == "closed" else "rate_per_s"
    if field not in arrival:
        st.info("The trade-off curve needs a rate or a concurrency.")
        return
    points = []
    bar = st.progress(0.0, text="Simulating 4 loads…")
    for i, factor in enumerate((0.25, 0.5, 1.0, 2.0)):
        value = arrival[field] * factor
        value = max(1, round(value)) if field == "concurrency" else value
        sc = {**scenario, "serving": {**scenario["serving"],
                                      "arrival": {**arrival, field: value}}}
        try:
            p = simulate(sc)[0]  # the current load is the page's own run (cached)
        except ERRORS as err:
            show_error(err, "A load of the sweep cannot run")
            break
        if p.tpot_s:
            band = (p.ranges or {}).get("tpot_s")  # the TPOT p50's 80 % band
            points.append({"label": f"{value:g}", "tokens_per_user": 1.0 / p.tpot_s,
                           "user_lo": 1.0 / band[1] if band else None,
                           "user_hi": 1.0 / band[0] if band else None,
                           "tokens_per_gpu": p.tokens_per_s / p.num_gpus})
        bar.progress((i + 1) / 4, text=f"Simulated {i + 1} of 4 loads")
    bar.empty()
    if points:
        st.plotly_chart(charts_serving.tradeoff_figure(points), key="sv_tradeoff_chart",
                        width="stretch")


url_state(DEFAULTS)
st.title("Serving")
with st.sidebar:
    st.header("Serving scenario")
    scenario = forms.inference_form(P, serving=True)
    serving = serving_section()
sync_url(DEFAULTS, DEFAULTS)
if serving is None:
    st.info("Upload a trace CSV (columns prompt_len, output_len and optionally arrival_s) in "
            "the sidebar to simulate it.")
    st.stop()
scenario["serving"] = serving
with st.spinner("Simulating the request stream…", show_time=True):
    pred, lat = try_simulate(scenario)
if pred is not None:
    header_line(pred)
    show_warnings(pred.warnings)
    metric_cards(cards(pred))
    prediction_view.band_basis(pred)
    prediction_view.engine_plan(pred)
    benchmark_report(pred)
    st.plotly_chart(charts_serving.latency_cdf_figure(lat, pred.serving),
                    key="sv_cdf_chart", width="stretch")
    st.plotly_chart(charts_serving.timeline_figure(pred.serving["series"]),
                    key="sv_timeline_chart", width="stretch")
    if pred.serving["slo"]["checks"]:
        st.plotly_chart(charts_serving.attainment_figure(pred.serving), key="sv_slo_chart",
                        width="stretch")
    if st.toggle("Throughput vs interactivity (4 more simulations)", key=f"{P}tradeoff"):
        tradeoff(scenario)
    rows = charts_serving.percentile_rows(pred)  # with each percentile's 80 % band
    with st.expander("Percentiles (s) [80 % band]"):
        st.dataframe(banded_rows(rows, {k: ".4g" for k in ("p50", "p90", "p99")}),
                     hide_index=True, width="stretch")
        csv_button(rows, "serving-percentiles", key="sv_pct_csv", label="Percentiles CSV")
    scenario_downloads(scenario, pred, key="sv", name="serving-scenario")
scenario_file(scenario)
