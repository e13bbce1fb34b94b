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

SGLang's ``bench_serving`` and genai-perf report the same quantities. The throughput vs
interactivity axes follow SemiAnalysis InferenceMAX (``utils/process_result.py``): tokens/s per
GPU = throughput / GPUs, and interactivity (tokens/s per user) = 1000 / TPOT in ms.

Here the numbers are the simulation's: TTFT, TPOT and E2E per request from ``Requests``
(warm-up requests excluded), the mean ITL exactly (sum of gaps / number of gaps = sum of
(E2E - TTFT) / sum of (output - 1)), ITL percentiles from the simulator's gap histogram
(0.5 % wide log bins, so within 0.25 %).
"""

from __future__ import annotations

import numpy as np

from .clients import DEFAULT_CLIENT, ClientSpec
from .metrics import latencies
from .requests import Requests

BENCH_PERCENTILES = (90, 99)  # printed after mean and median (vLLM prints P99 by default)
WIDTH = 50  # vLLM's banner width


def _stats(name: str, x: np.ndarray, out: dict) -> None:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return
    ms = x * 1e3
    out[f"mean_{name}_ms"] = float(ms.mean())
    out[f"median_{name}_ms"] = float(np.median(ms))
    out[f"std_{name}_ms"] = float(ms.std())
    for q in BENCH_PERCENTILES:
        out[f"p{q}_{name}_ms"] = float(np.percentile(ms, q))


def benchmark_metrics(reqs: Requests, num_gpus: int, concurrency: int | None,
                      client: ClientSpec | None = None) -> dict:
    """The result of a ``vllm bench serve`` run, keyed as its ``--save-result`` JSON
    (``completed``, ``duration``, ``request_throughput``, ``mean_ttft_ms``, ...), plus
    tokens/s per GPU and per user. ``client`` (clients/<id>.yaml; default vLLM's rules): a
    client with ``itl: per_request`` (genai-perf, AIPerf) reports each request's
    (E2E - TTFT) / (output - 1) as its ITL, so its ITL statistics are the TPOT ones; the
    requests measured are ``reqs.counted`` (warm-up and, for a windowed client, its windows)."""
    keep = reqs.counted if reqs.counted is not None else np.ones(len(reqs), bool)
    lat = {k: v[keep] for k, v in latencies(reqs).items()}
    arrival, finish = reqs.arrival[keep], reqs.finish[keep]
    prompt, output = reqs.prompt[keep], reqs.output[keep]
    duration = float(np.nanmax(finish) - np.min(arrival))
    total_in, total_out = int(prompt.sum()), int(output.sum())
    out: dict = {
        "completed": int(keep.sum()),
        "warmup_requests": int((~keep).sum()),
        "max_concurrency": concurrency,
        "duration": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": keep.sum() / duration if duration > 0 else 0.0,
        "output_throughput": total_out / duration if duration > 0 else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else 0.0,
    }
    _stats("ttft", lat["ttft"], out)
    _stats("tpot", lat["tpot"], out)
    multi = output > 1
    gaps = float(np.sum(output[multi] - 1))
    if client is not None and client.itl == "per_request":
        _stats("itl", lat["tpot"], out)  # the per-request ITL of genai-perf / AIPerf
    elif gaps:
        streamed = float(np.sum((lat["e2e"] - lat["ttft"])[multi]))
        out["mean_itl_ms"] = 1e3 * streamed / gaps
        itl = reqs.tbt_percentiles((50, *BENCH_PERCENTILES))
        out["median_itl_ms"] = 1e3 * itl[50]
        for q in BENCH_PERCENTILES:
            out[f"p{q}_itl_ms"] = 1e3 * itl[q]
    _stats("e2el", lat["e2e"], out)
    out["max_concurrent_requests"] = peak_concurrent(arrival, finish)
    out["output_throughput_per_gpu"] = out["output_throughput"] / num_gpus
    out["total_token_throughput_per_gpu"] = out["total_token_throughput"] / num_gpus
    tpot = out.get("median_tpot_ms")
    out["output_throughput_per_user"] = 1e3 / tpot if tpot else None  # InferenceMAX intvty
    return out


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
    """The result block as ``vllm bench serve`` prints it ("{:<40} {:<10}" rows under a
    50-wide banner), with P90 beside P99 and the per-GPU / per-user rates added."""
    lines = [f"{title:=^{WIDTH}}"]

    def row(label: str, value, fmt: str = ".2f") -> None:
        text = "-" if value is None else (format(value, fmt) if fmt else str(value))
        lines.append(f"{label:<40} {text:<10}".rstrip())

    if b.get("client") and b["client"] != DEFAULT_CLIENT:  # the text block reads as vLLM's
        row("Benchmark client (measurement rules):", b["client"], "")
    if b.get("windows"):
        w = b["windows"]
        row("Measurement windows (s each):", f"{w['count']} x {w['window_s']:.1f}", "")
        row("Windows stable:", "yes" if w["stable"] else "no", "")
    row("Successful requests:", b["completed"], "")
    row("Failed requests:", 0, "")  # the simulator serves every request
    if b.get("warmup_requests"):
        row("Warm-up requests (not measured):", b["warmup_requests"], "")
    if b.get("max_concurrency") is not None:
        row("Maximum request concurrency:", b["max_concurrency"], "")
    row("Benchmark duration (s):", b["duration"])
    row("Total input tokens:", b["total_input_tokens"], "")
    row("Total generated tokens:", b["total_output_tokens"], "")
    row("Request throughput (req/s):", b["request_throughput"])
    row("Output token throughput (tok/s):", b["output_throughput"])
    row("Peak concurrent requests:", b["max_concurrent_requests"])
    row("Total Token throughput (tok/s):", b["total_token_throughput"])
    row("Output tok/s per GPU:", b["output_throughput_per_gpu"])
    row("Output tok/s per user (1000/med. TPOT):", b["output_throughput_per_user"])
    for key, name, header in (("ttft", "TTFT", "Time to First Token"),
                              ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
                              ("itl", "ITL", "Inter-token Latency"),
                              ("e2el", "E2EL", "End-to-end Latency")):
        if f"mean_{key}_ms" not in b:
            continue
        lines.append(f"{header:-^{WIDTH}}")
        row(f"Mean {name} (ms):", b[f"mean_{key}_ms"])
        row(f"Median {name} (ms):", b[f"median_{key}_ms"])
        for q in BENCH_PERCENTILES:
            row(f"P{q} {name} (ms):", b[f"p{q}_{key}_ms"])
    lines.append("=" * WIDTH)
    return "\n".join(lines)
