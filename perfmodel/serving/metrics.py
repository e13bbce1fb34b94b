"""What a serving simulation reports: latency percentiles, throughput, goodput, SLO
attainment, KV-cache utilisation and queue length over time.

Definitions (as in vLLM's benchmark_serving and DistServe):

* TTFT: first token time - arrival (the request path and queueing included). Request path:
  the engine's host time before its engine core sees the request (``Requests.ready`` -
  arrival; the API server tokenising a text prompt and waiting for its tokenizer,
  engines/<id>.yaml overheads.tokenizer, engines/tokenizers.yaml). Queueing: waiting at the engine core, first admitted to a batch - ready. TPOT: (finish - first token) /
  (output tokens - 1), a request's mean time per output token after the first (requests with
  one output token have none). E2E: finish - arrival. TBT: every gap between consecutive
  tokens of a request (Sarathi-Serve's time-between-tokens; its tail shows generation stalls).
* Throughput: output tokens / s and requests / s over the makespan (first arrival to last
  finish).
* SLO: each ``<metric>_p<q>_s`` bound requires that percentile to be within the bound
  (``slo_met`` when all hold). A request *attains* the SLO when its own TTFT, TPOT and E2E
  are within every bound given for them; goodput = attaining requests / makespan (DistServe,
  Zhong et al. 2024 Sec. 2.2: the rate of requests that meet their SLOs).
"""

from __future__ import annotations

import numpy as np

from ..specs.scenario import SLOConfig
from .engine import Engine
from .requests import Requests

PERCENTILES = (50, 90, 99)
SERIES_POINTS = 200


def _pcts(x: np.ndarray) -> dict[str, float]:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return {f"p{q}": float("nan") for q in PERCENTILES} | {"mean": float("nan")}
    vals = np.percentile(x, PERCENTILES)
    return {f"p{q}": float(v) for q, v in zip(PERCENTILES, vals, strict=True)} | {"mean": float(x.mean())}


def latencies(reqs: Requests) -> dict[str, np.ndarray]:
    ttft = reqs.first - reqs.arrival
    e2e = reqs.finish - reqs.arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(reqs.output > 1, (reqs.finish - reqs.first) / (reqs.output - 1),
                        np.nan)
    ready = _ready(reqs)
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e, "request_path": ready - reqs.arrival,
            "queue": reqs.start - ready}


def _ready(reqs: Requests) -> np.ndarray:
    """When each request reached its engine core (its arrival where none was recorded)."""
    return np.where(np.isnan(reqs.ready), reqs.arrival, reqs.ready)


def slo_report(lat: dict[str, np.ndarray], slo: SLOConfig, makespan: float) -> dict:
    bounds = {k: v for k, v in slo.model_dump().items() if v is not None}
    good = np.ones(lat["e2e"].size, bool)
    checks = {}
    for key, bound in bounds.items():
        metric, pct = key.removesuffix("_s").split("_p")
        x = lat[metric]
        value = float(np.nanpercentile(x, float(pct))) if np.any(~np.isnan(x)) else 0.0
        checks[key] = {"bound_s": bound, "value_s": value, "met": bool(value <= bound)}
        good &= np.isnan(x) | (x <= bound)
    n = good.size
    return {
        "bounds": bounds,
        "checks": checks,
        "slo_met": all(c["met"] for c in checks.values()),
        "attainment": float(good.mean()) if bounds else 1.0,
        "goodput_rps": float(good.sum() / makespan) if makespan > 0 else 0.0,
        "good_requests": int(good.sum()) if bounds else n,
    }


def _counting_integral(events: np.ndarray, x: np.ndarray) -> np.ndarray:
    """integral_0^x #{e <= t} dt for each x (events sorted)."""
    csum = np.concatenate([[0.0], np.cumsum(events)])
    k = np.searchsorted(events, x, side="right")
    return k * x - csum[k]


def _step_integral(times: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """integral_0^x of the step function holding values[i] from times[i] (0 before)."""
    if times.size == 0:
        return np.zeros_like(x)
    seg = np.diff(times) * values[:-1]
    c = np.concatenate([[0.0], np.cumsum(seg)])
    k = np.searchsorted(times, x, side="right") - 1
    kk = np.clip(k, 0, None)
    out = c[kk] + values[kk] * (x - times[kk])
    return np.where(k < 0, 0.0, out)


def time_series(reqs: Requests, engines: list[Engine], end: float,
                points: int = SERIES_POINTS) -> dict[str, list[float]]:
    """Time-weighted bin averages: requests on the request path (sent, not yet at the engine
    core), queued (at the engine core, not yet admitted), running (admitted, not finished) and
    KV-cache utilisation (blocks in use / blocks, mean over instances)."""
    edges = np.linspace(0.0, end, points + 1)
    width = np.diff(edges)
    arr = np.sort(reqs.arrival)
    ready = np.sort(_ready(reqs))
    start = np.sort(reqs.start)
    fin = np.sort(reqs.finish)

    def avg(integral: np.ndarray) -> np.ndarray:
        return np.diff(integral) / width

    on_path = avg(_counting_integral(arr, edges) - _counting_integral(ready, edges))
    queued = avg(_counting_integral(ready, edges) - _counting_integral(start, edges))
    in_system = avg(_counting_integral(arr, edges) - _counting_integral(fin, edges))
    kv = np.zeros(points)
    for e in engines:
        if not e.samples or e.total_blocks == 0:
            continue
        s = np.asarray(e.samples)
        kv += avg(_step_integral(s[:, 0], s[:, 1] / e.total_blocks, edges))
    kv /= max(len(engines), 1)
    mid = (edges[:-1] + edges[1:]) / 2
    r = 6
    return {"t_s": np.round(mid, r).tolist(), "request_path": np.round(on_path, 3).tolist(),
            "queued": np.round(queued, 3).tolist(),
            "running": np.round(in_system - on_path - queued, 3).tolist(),
            "kv_utilization": np.round(kv, 4).tolist()}


def summarize(reqs: Requests, engines: list[Engine], slo: SLOConfig, end: float) -> dict:
    """Every figure over the measured requests: all of them, or those after the warm-up
    (``Requests.counted``); the window runs from the first measured request's arrival to the
    last measured one's finish."""
    lat = latencies(reqs)
    keep = reqs.counted
    arrival, finish = reqs.arrival, reqs.finish
    output, prompt = reqs.output, reqs.prompt
    if keep is not None:
        lat = {k: v[keep] for k, v in lat.items()}
        arrival, finish, output, prompt = arrival[keep], finish[keep], output[keep], prompt[keep]
    n = int(arrival.size)
    t0 = float(arrival.min())
    makespan = float(np.nanmax(finish)) - t0
    out_tokens = float(output.sum())
    tbt = reqs.tbt_percentiles(PERCENTILES)
    kv_mean = []
    for e in engines:
        if e.samples and e.total_blocks:
            s = np.asarray(e.samples)
            x = np.array([end])
            kv_mean.append(float(_step_integral(s[:, 0], s[:, 1], x)[0] / end / e.total_blocks)
                           if end > 0 else 0.0)
    series = time_series(reqs, engines, end)
    return {
        "num_requests": n,
        "ttft_s": _pcts(lat["ttft"]),
        "tpot_s": _pcts(lat["tpot"]),
        "e2e_s": _pcts(lat["e2e"]),
        "request_path_s": _pcts(lat["request_path"]) | _extrapolated(engines, prompt),
        "queue_s": _pcts(lat["queue"]),
        "tbt_s": {f"p{q}": v for q, v in tbt.items()},
        "throughput": {
            "output_tokens_per_s": out_tokens / makespan if makespan > 0 else 0.0,
            "total_tokens_per_s": (out_tokens + float(prompt.sum())) / makespan
            if makespan > 0 else 0.0,
            "requests_per_s": n / makespan if makespan > 0 else 0.0,
            "offered_requests_per_s": (n - 1) / (float(arrival.max()) - t0)
            if n > 1 and arrival.max() > t0 else 0.0,
            "makespan_s": makespan,
        },
        "slo": slo_report(lat, slo, makespan),
        "kv_cache": {"mean_utilization": float(np.mean(kv_mean)) if kv_mean else 0.0,
                     "peak_utilization": float(max(max(v for _, v in e.samples) / e.total_blocks
                                                   for e in engines if e.samples
                                                   and e.total_blocks)) if engines else 0.0},
        "preemptions": int(reqs.preemptions.sum()),
        "mean_in_system": float(np.mean(np.asarray(series["running"])
                                        + np.asarray(series["queued"])
                                        + np.asarray(series["request_path"]))),
        "series": series,
    }


def _extrapolated(engines: list[Engine], prompt: np.ndarray) -> dict:
    """Which tokenizer's cost the request path reads (``tokenizer``; ``tokenizer_proxy``: the
    table stands in for the model's own tokenizer, not measured: engines/tokenizers.yaml
    default), where that cost is extrapolated: the measured table's longest prompt
    (``tokenize_measured_tokens``) and how many of the measured requests are longer
    (``tokenize_extrapolated_requests``, their cost taken at that point's mean rate:
    engine.RequestPath.tokenize_s); nothing without a table."""
    paths = [e.path for e in engines if e.path is not None and e.path.measured_tokens]
    if not paths:
        return {}
    longest = max(p.measured_tokens for p in paths)
    return {"tokenizer": paths[0].tokenizer, "tokenizer_proxy": bool(paths[0].proxy),
            "tokenize_measured_tokens": int(longest),
            "tokenize_extrapolated_requests": int(np.count_nonzero(prompt > longest))}
