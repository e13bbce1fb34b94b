"""A serving run reported the way a serving benchmark client reports it.

``vllm bench serve`` (vllm-project/vllm ``vllm/benchmarks/serve.py`` at def9ce85,
``calculate_metrics`` and ``benchmark``) measures, over the successful requests of a run:

* TTFT per request: first token - send; E2EL: last token - send;
* TPOT per request with more than one output token: (E2EL - TTFT) / (output tokens - 1)
  ("Time per Output Token (excl. 1st token)");
* ITL: every gap between consecutive streamed tokens, all requests pooled;
* request / output token / total token throughput: completed requests, output tokens and
  input + output tokens divided by the benchmark duration (first send to last finish);
* mean, median and chosen percentiles (``np.percentile``, linear), printed in ms.

SGLang's ``bench_serving`` (sgl-project/sglang ``python/sglang/bench_serving.py`` at
0033168f, and as v0.5.14 prints it, ``calculate_metrics`` and ``benchmark``) and genai-perf
report the same quantities; SGLang adds "Concurrency" (sum of E2E / duration) and prints its
own block (``report: sglang``). "Peak output token throughput" (vLLM and SGLang v0.5.14 alike)
is the fullest 1-second bucket of token emission times since the first send (here: the
simulator's step ends, counted requests only), "Peak concurrent requests" the most requests
active in one such second. The throughput vs
interactivity axes follow SemiAnalysis InferenceMAX (``utils/process_result.py``): tokens/s per
GPU = throughput / GPUs, and interactivity (tokens/s per user) = 1000 / TPOT in ms.

Here the numbers are the simulation's: TTFT, TPOT and E2E per request from ``Requests``
(warm-up requests excluded), the mean ITL exactly (sum of gaps / number of gaps = sum of
(E2E - TTFT) / sum of (output - 1)), ITL percentiles from the simulator's gap histogram
(0.5 % wide log bins, so within 0.25 %).
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from .clients import DEFAULT_CLIENT, ClientSpec, load_client
from .metrics import latencies
from .requests import Requests

BENCH_PERCENTILES = (90, 99)  # always in the result keys (p90_*, p99_*), printed or not
SGLANG_PERCENTILES = (90, 95, 99)  # sglang v0.5.14 bench_serving: P90 / P95 / P99 of each
WIDTH = 50  # the banner width of both vLLM's and SGLang's blocks


def _word(q: float) -> str:
    """vLLM's percentile label: 99 -> '99', 99.9 -> '99.9' (serve.py process_one_metric)."""
    return str(int(q)) if int(q) == q else str(q)


def _stats(name: str, x: np.ndarray, out: dict, qs) -> None:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return
    ms = x * 1e3
    out[f"mean_{name}_ms"] = float(ms.mean())
    out[f"median_{name}_ms"] = float(np.median(ms))
    out[f"std_{name}_ms"] = float(ms.std())
    for q in qs:
        out[f"p{_word(q)}_{name}_ms"] = float(np.percentile(ms, q))


def benchmark_metrics(reqs: Requests, num_gpus: int, concurrency: int | None,
                      client: ClientSpec | None = None, failed: int = 0,
                      options=None) -> dict:
    """The result of a ``vllm bench serve`` run, keyed as its ``--save-result`` JSON
    (``completed``, ``failed``, ``duration``, ``request_throughput``, ``mean_ttft_ms``, ...),
    plus tokens/s per GPU and per user. ``client`` (clients/<id>.yaml; default vLLM's rules): a
    client with ``itl: per_request`` (genai-perf, AIPerf) reports each request's
    (E2E - TTFT) / (output - 1) as its ITL, so its ITL statistics are the TPOT ones; the
    requests measured are ``reqs.counted`` (warm-up and, for a windowed client, its windows).
    ``failed``: requests the engine rejected (not simulated). ``options`` (the scenario's
    serving.benchmark) may choose the percentiles printed (``metric_percentiles``,
    ``percentile_metrics``)."""
    client = client if client is not None else load_client(DEFAULT_CLIENT)
    keep = reqs.counted if reqs.counted is not None else np.ones(len(reqs), bool)
    lat = {k: v[keep] for k, v in latencies(reqs).items()}
    arrival, finish = reqs.arrival[keep], reqs.finish[keep]
    prompt, output = reqs.prompt[keep], reqs.output[keep]
    duration = float(np.nanmax(finish) - np.min(arrival))
    total_in, total_out = int(prompt.sum()), int(output.sum())
    shown = _shown(client, options)
    qs = sorted({*BENCH_PERCENTILES, *shown["metric_percentiles"]}
                | (set(SGLANG_PERCENTILES) if shown["report"] == "sglang" else set()))

    def rate(x: float) -> float:
        return x / duration if duration > 0 else 0.0

    out: dict = {
        "completed": int(keep.sum()),
        "failed": int(failed),
        "warmup_requests": int((~keep).sum()),
        "max_concurrency": concurrency,
        "duration": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": rate(keep.sum()),
        "input_throughput": rate(total_in),
        "output_throughput": rate(total_out),
        "total_token_throughput": rate(total_in + total_out),
    } | shown
    _stats("ttft", lat["ttft"], out, qs)
    if concurrency is not None:  # a closed loop: its start-up ramp apart (first_wave)
        out |= first_wave(arrival, lat["ttft"], float(np.min(reqs.arrival)))
    _stats("tpot", lat["tpot"], out, qs)
    multi = output > 1
    gaps = float(np.sum(output[multi] - 1))
    if client.itl == "per_request":
        _stats("itl", lat["tpot"], out, qs)  # the per-request ITL of genai-perf / AIPerf
    elif gaps:
        streamed = float(np.sum((lat["e2e"] - lat["ttft"])[multi]))
        out["mean_itl_ms"] = 1e3 * streamed / gaps
        itl = reqs.tbt_percentiles((50, *qs))
        out["median_itl_ms"] = 1e3 * itl[50]
        for q in qs:
            out[f"p{_word(q)}_itl_ms"] = 1e3 * itl[q]
        out["max_itl_ms"] = 1e3 * reqs.tbt_max()
    _stats("e2el", lat["e2e"], out, qs)
    # SGLang's "Concurrency": sum of the requests' E2E latencies / duration
    out["concurrency"] = rate(float(np.nansum(lat["e2e"])))
    out["max_concurrent_requests"] = peak_concurrent(arrival, finish)
    if client.measurement == "all_requests":  # the tokens recorded are the counted ones'
        out["max_output_tokens_per_s"] = peak_output_rate(reqs, float(np.min(arrival)))
    out["output_throughput_per_gpu"] = out["output_throughput"] / num_gpus
    out["total_token_throughput_per_gpu"] = out["total_token_throughput"] / num_gpus
    tpot = out.get("median_tpot_ms")
    out["output_throughput_per_user"] = 1e3 / tpot if tpot else None  # InferenceMAX intvty
    return out


def first_wave(send: np.ndarray, ttft: np.ndarray, start: float) -> dict:
    """A closed loop's start-up ramp apart from the rest of its measured requests.

    Every closed-loop client (``vllm bench serve`` / InferenceX ``benchmark_serving.py``
    ``asyncio.Semaphore(max_concurrency)``, SGLang ``bench_serving``, AIPerf
    CONCURRENCY_BURST) sends its first C requests at the same instant, and a warm-up phase,
    where there is one, is awaited before that instant (clients/<id>.yaml ``warmup:
    separate_phase``): the measured run starts on an idle server with C prompts queued at
    once, and the k-th of them waits for the k - 1 prefills before it. Their mean TTFT is
    reported apart (``mean_ttft_first_wave_ms``, over ``first_wave_requests``: the counted
    requests among those sent at the loop's ``start``; none when warm-up requests of the same
    loop or a client's windows leave them out) from the mean of the requests sent later
    (``mean_ttft_after_first_wave_ms``; None if there are none), so that a published mean can
    be read against either: with R requests, mean = (C x first + (R - C) x after) / R.
    ``send`` and ``ttft``: the counted requests'."""
    wave = send == start
    ok = ~np.isnan(ttft)
    first, rest = ttft[wave & ok], ttft[~wave & ok]
    return {"first_wave_requests": int(wave.sum()),
            "mean_ttft_first_wave_ms": float(1e3 * first.mean()) if first.size else None,
            "mean_ttft_after_first_wave_ms": float(1e3 * rest.mean()) if rest.size else None}


def _shown(client: ClientSpec, options) -> dict:
    """The layout and the percentiles the client prints (the scenario's choice first)."""
    report = client.report
    qs = list(client.metric_percentiles)
    metrics = list(client.percentile_metrics)
    for name in ("metric_percentiles", "percentile_metrics"):
        given = getattr(options, name, None)
        if given is None:
            continue
        if report != "vllm":
            raise SpecError(f"serving.benchmark.{name}: {client.id} prints fixed percentiles "
                            "(no such option); remove it, or use client: vllm-bench-serve")
        if name == "metric_percentiles":
            qs = [float(q) for q in given]
        else:
            metrics = list(dict.fromkeys(given))
    return {"report": report, "metric_percentiles": [float(q) for q in qs],
            "percentile_metrics": metrics}


def peak_output_rate(reqs: Requests, t0: float) -> float:
    """vLLM's 'Peak output token throughput (tok/s)': the counted requests' tokens bucketed by
    whole seconds since the first send (bucket int(t - t0)), the fullest bucket
    (``calculate_metrics``, tokens_per_second at def9ce85). Token times are the simulator's
    step ends, where every token of the step comes out."""
    t, w = reqs.token_times()
    if t.size == 0:
        return 0.0
    ok = t >= t0
    buckets = np.bincount((t[ok] - t0).astype(np.int64), weights=w[ok])
    return float(buckets.max()) if buckets.size else 0.0


def peak_concurrent(start: np.ndarray, end: np.ndarray) -> int:
    """vLLM's 'Peak concurrent requests': requests active in each whole second of the run
    (a request counts in every second from int(start - t0) to int(end - t0)), the maximum
    (``calculate_metrics``, concurrent_requests_per_second). Closed loops of C clients can
    show more than C: requests that end and start within the same second both count."""
    t0 = float(np.min(start))
    first = (start - t0).astype(np.int64)
    last = (end - t0).astype(np.int64)
    diff = np.zeros(int(last.max()) + 2)
    np.add.at(diff, first, 1)
    np.add.at(diff, last + 1, -1)
    return int(np.cumsum(diff).max())


def render_benchmark(b: dict, title: str = " Serving Benchmark Result ") -> str:
    """The result block as the client prints it (``report``: vLLM's or SGLang's layout,
    "{:<40} {:<10}" rows under a 50-wide banner), then perfmodel's per-GPU / per-user rates."""
    lines = [f"{title:=^{WIDTH}}"]

    def row(label: str, value, fmt: str = ".2f") -> None:
        text = "-" if value is None else (format(value, fmt) if fmt else str(value))
        lines.append(f"{label:<40} {text:<10}".rstrip())

    if b.get("client") and b["client"] not in (DEFAULT_CLIENT, "sglang-bench-serving"):
        row("Benchmark client (measurement rules):", b["client"], "")
    if b.get("windows"):
        w = b["windows"]
        row("Measurement windows (s each):", f"{w['count']} x {w['window_s']:.1f}", "")
        row("Windows stable:", "yes" if w["stable"] else "no", "")
    if b.get("report") == "sglang":
        _sglang_rows(b, lines, row)
    else:
        _vllm_rows(b, lines, row)
    lines.append("=" * WIDTH)
    row("perfmodel: output tok/s per GPU:", b["output_throughput_per_gpu"])
    row("perfmodel: output tok/s per user:", b["output_throughput_per_user"])
    return "\n".join(lines)


def _vllm_rows(b: dict, lines: list, row) -> None:
    """``vllm bench serve`` at def9ce85 (serve.py benchmark / process_one_metric)."""
    row("Successful requests:", b["completed"], "")
    row("Failed requests:", b.get("failed", 0), "")
    if b.get("warmup_requests"):
        row("Warm-up requests (before, extra):" if b.get("warmup") ==
            "separate_phase" else "Warm-up requests (not measured):", b["warmup_requests"], "")
    if b.get("max_concurrency") is not None:
        row("Maximum request concurrency:", b["max_concurrency"], "")
    if b.get("request_rate") is not None:  # an open loop (vLLM prints it unless inf)
        row("Request rate configured (RPS):", b["request_rate"])
    row("Benchmark duration (s):", b["duration"])
    row("Total input tokens:", b["total_input_tokens"], "")
    row("Total generated tokens:", b["total_output_tokens"], "")
    row("Request throughput (req/s):", b["request_throughput"])
    row("Output token throughput (tok/s):", b["output_throughput"])
    if b.get("max_output_tokens_per_s") is not None:
        row("Peak output token throughput (tok/s):", b["max_output_tokens_per_s"])
    row("Peak concurrent requests:", b["max_concurrent_requests"])
    row("Total token throughput (tok/s):", b["total_token_throughput"])
    shown = b.get("percentile_metrics", ["ttft", "tpot", "itl", "e2el"])
    qs = b.get("metric_percentiles", BENCH_PERCENTILES)
    for key, name, header in (("ttft", "TTFT", "Time to First Token"),
                              ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
                              ("itl", "ITL", "Inter-token Latency"),
                              ("e2el", "E2EL", "End-to-end Latency")):
        if key not in shown or f"mean_{key}_ms" not in b:
            continue
        lines.append(f"{header:-^{WIDTH}}")
        row(f"Mean {name} (ms):", b[f"mean_{key}_ms"])
        row(f"Median {name} (ms):", b[f"median_{key}_ms"])
        for q in qs:
            row(f"P{_word(q)} {name} (ms):", b.get(f"p{_word(q)}_{key}_ms"))


def _sglang_rows(b: dict, lines: list, row) -> None:
    """``python -m sglang.bench_serving`` as sglang v0.5.14 prints it (PyPI wheel
    sglang-0.5.14, python/sglang/bench_serving.py ``benchmark``, L1547-1680; the wheel records
    no commit id, so the tag is the pin): a closed loop is --request-rate inf (its default)
    with --max-concurrency C; an open loop prints its --request-rate as given (a float).
    Every line of a text-only, non-speculative, streamed run, in its order and labels; those
    left out (vision tokens, Accept length, the --cache-report block) are listed in
    docs/serving.md. "Total input text tokens" is the input tokens (a text prompt's
    text_prompt_len defaults to its prompt_len, benchmark/datasets/common.py); "Total
    generated tokens (retokenized)" re-encodes the generated text, which a simulation does
    not have: it is printed equal to the generated tokens (an --ignore-eos random-dataset
    run's retokenized count can differ by a few tokens per request)."""
    row("Backend:", "sglang", "")
    rate = b.get("request_rate")
    row("Traffic request rate:", "inf" if rate is None else rate, "")
    row("Max request concurrency:", b.get("max_concurrency") or "not set", "")
    row("Successful requests:", b["completed"], "")
    row("Benchmark duration (s):", b["duration"])
    row("Total input tokens:", b["total_input_tokens"], "")
    row("Total input text tokens:", b["total_input_tokens"], "")
    row("Total generated tokens:", b["total_output_tokens"], "")
    row("Total generated tokens (retokenized):", b["total_output_tokens"], "")
    row("Request throughput (req/s):", b["request_throughput"])
    row("Input token throughput (tok/s):", b["input_throughput"])
    row("Output token throughput (tok/s):", b["output_throughput"])
    if b.get("max_output_tokens_per_s") is not None:
        row("Peak output token throughput (tok/s):", b["max_output_tokens_per_s"])
    row("Peak concurrent requests:", b["max_concurrent_requests"], "")
    row("Total token throughput (tok/s):", b["total_token_throughput"])
    row("Concurrency:", b["concurrency"])
    for key, name, header, extra in (
            ("e2el", "E2E Latency", "End-to-End Latency", ()),
            ("ttft", "TTFT", "Time to First Token", ()),
            ("tpot", "TPOT", "Time per Output Token (excl. 1st token)", ()),
            ("itl", "ITL", "Inter-Token Latency", (("Max ITL (ms):", "max_itl_ms"),))):
        lines.append(f"{header:-^{WIDTH}}")
        row(f"Mean {name} (ms):", b.get(f"mean_{key}_ms"))
        row(f"Median {name} (ms):", b.get(f"median_{key}_ms"))
        for q in SGLANG_PERCENTILES:
            row(f"P{q} {name} (ms):", b.get(f"p{q}_{key}_ms"))
        for label, k in extra:
            row(label, b.get(k))
