"""Benchmark clients as data: which requests a closed-loop benchmark client measures.

Every client in ``clients/<id>.yaml`` keeps C requests in flight the same way (``send:
burst``: C requests at once, the next one when one ends; ``sim.py`` runs that loop). They
differ in which requests their statistics cover (``measurement``):

* ``all_requests``: every request of the measured run (``vllm bench serve``,
  ``sglang.bench_serving``, AIPerf): perfmodel's default, today's behaviour.
* ``time_windows``: perf_analyzer's concurrency mode as genai-perf drives it with
  ``--measurement-interval`` (triton-inference-server/perf_analyzer ``src/inference_profiler.cc``
  at 263c5f6e, ``ProfileHelper`` / ``Measure`` / ``ValidLatencyMeasurement``): consecutive
  windows of ``interval x sleep_factor`` from the start of the load; a request belongs to the
  window its last token falls in; after each window from the third on, the run stops when the
  last three windows' throughput (requests / window) and mean latency each have max / min <=
  1 + stability_percentage / 100 and every one completed a request, or after ``max_trials``
  windows. genai-perf's statistics cover every request of every window
  (``profile_data_collector.cc`` AddData, ``llm_profile_data_parser.py`` _parse_requests);
  requests still running when the last window ends are not measured.

``itl: per_request`` (genai-perf, AIPerf) reports ITL as each request's (E2E - TTFT) / (output -
1), which is vLLM's TPOT; ``per_gap`` (vLLM, SGLang) pools every gap between tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import SpecError, unknown_id
from ..paths import data_dir
from ..specs.common import Source, Strict
from ..specs.types import Bool, Float, Int

DEFAULT_CLIENT = "vllm-bench-serve"
Metric = Literal["ttft", "tpot", "itl", "e2el"]


class WindowRules(Strict):
    """perf_analyzer's time-window measurement (genai-perf --measurement-interval)."""

    interval_ms: Float = Field(gt=0)
    sleep_factor: Float = Field(ge=1)
    stability_windows: Int = Field(ge=1)
    stability_percentage: Float = Field(gt=0)
    max_trials: Int = Field(ge=1)
    counts: Literal["finished_in_window"]
    statistics_over: Literal["all_windows"]
    # the windows apply only when the run sets an interval (genai-perf: --measurement-interval
    # switches perf_analyzer from --request-count, its default, to time windows); without one
    # the client measures every request of the run (perf_analyzer --request-count N: one count
    # window of exactly the N requests sent)
    only_with_interval: Bool = False


class ClientSpec(Strict):
    """One benchmark client's sourced measurement rules (clients/<id>.yaml)."""

    id: str
    name: str
    send: Literal["burst"]
    warmup: Literal["separate_phase"]
    measurement: Literal["all_requests", "time_windows"]
    windows: WindowRules | None = None
    itl: Literal["per_gap", "per_request"]
    duration: Literal["first_send_to_last_finish"]
    # the result block it prints (bench.render_benchmark): vLLM's ``vllm bench serve`` layout
    # or SGLang's ``bench_serving`` one
    report: Literal["vllm", "sglang"] = "vllm"
    # percentiles printed, and of which metrics (vllm bench serve --metric-percentiles,
    # --percentile-metrics; a scenario's serving.benchmark overrides them)
    metric_percentiles: list[Float] = Field(default=[90.0, 99.0], min_length=1)
    percentile_metrics: list[Metric] = Field(default=["ttft", "tpot", "itl", "e2el"],
                                             min_length=1)
    sources: list[Source] = Field(min_length=1)
    notes: str | None = None


def uses_windows(client: ClientSpec, interval_ms: float | None) -> bool:
    """Whether this run is measured in time windows (else every request counts)."""
    if client.measurement != "time_windows" or client.windows is None:
        return False
    return interval_ms is not None or not client.windows.only_with_interval


def client_ids() -> list[str]:
    return sorted(p.stem for p in data_dir("clients").glob("*.yaml"))


@cache
def load_client(client_id: str) -> ClientSpec:
    """The client's facts (cached); an unknown id is a one-line error listing the known ones."""
    from ..specs.registry import load_named

    ids = client_ids()
    if client_id not in ids:
        raise unknown_id("serving.benchmark.client", client_id, ids)
    path = data_dir("clients") / f"{client_id}.yaml"
    spec = load_named(ClientSpec, path.parent, client_id)
    if (spec.measurement == "time_windows") != (spec.windows is not None):
        raise SpecError(f"{path}: windows must be given exactly when measurement is "
                        "time_windows")
    return spec


@dataclass(frozen=True)
class WindowResult:
    """Which requests a windowed client measured, and how its windows went."""

    counted: np.ndarray  # bool per request
    bounds_s: list[float]  # window boundaries, first start .. last end
    throughput_rps: list[float]  # completed requests / window length, per window
    mean_latency_s: list[float]  # mean E2E of the requests completed in each window
    stable: bool
    complete: bool  # False: the simulated loop drained before the measurement ended


def select_windows(send: np.ndarray, finish: np.ndarray, t0: float, loaded_until: float,
                   rules: WindowRules, interval_ms: float | None = None,
                   stability_percentage: float | None = None,
                   max_trials: int | None = None) -> WindowResult:
    """perf_analyzer's window loop (``ProfileHelper``) over simulated send / finish times.

    Window k spans [t0 + k L, t0 + (k + 1) L], L = interval x sleep_factor; its requests are
    those whose last token falls in it (``ValidLatencyMeasurement``; a request finishing
    exactly on a boundary counts in the earlier window, as it leaves the records there). After
    each window from the ``stability_windows``-th on, stop if the last ones are stable
    (``DetermineStability``); stop anyway after ``max_trials`` windows. ``loaded_until`` is
    when the simulated loop stopped sending (its last send): a window ending later would see
    a draining loop the real client never produces, so the result is then ``complete=False``
    (simulate more requests)."""
    length = (interval_ms or rules.interval_ms) / 1e3 * rules.sleep_factor
    pct = stability_percentage if stability_percentage is not None else rules.stability_percentage
    trials = max_trials or rules.max_trials
    k_win = rules.stability_windows
    thr: list[float] = []
    lat: list[float] = []
    counted = np.zeros(send.size, bool)
    stable = False
    k = 0
    while k < trials:
        lo, hi = t0 + k * length, t0 + (k + 1) * length
        if hi > loaded_until:
            return WindowResult(counted, [t0 + i * length for i in range(k + 1)], thr, lat,
                                False, False)
        inside = (finish >= lo) & (finish <= hi) & ~counted
        counted |= inside
        n = int(inside.sum())
        thr.append(n / length)
        lat.append(float(np.mean(finish[inside] - send[inside])) if n else float("inf"))
        k += 1
        if k >= k_win:
            t, la = thr[-k_win:], lat[-k_win:]
            if min(t) > 0 and max(t) / min(t) <= 1 + pct / 100 \
                    and max(la) / min(la) <= 1 + pct / 100:
                stable = True
                break
    return WindowResult(counted, [t0 + i * length for i in range(k + 1)], thr, lat, stable,
                        True)
