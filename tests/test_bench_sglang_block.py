"""SGLang's bench_serving block as sglang v0.5.14 prints it (python/sglang/bench_serving.py
``benchmark``, L1547-1680 of the PyPI wheel): every line of a text, non-speculative run, in
its order; and a closed loop's head rows name its clients, not an offered rate."""

import numpy as np

import perfmodel as pm
from perfmodel.report import render_prediction
from perfmodel.serving.bench import peak_concurrent, render_benchmark

# the labels, in order, copied from sglang v0.5.14 bench_serving.py benchmark()
SGLANG_0514 = [
    "Backend:", "Traffic request rate:", "Max request concurrency:", "Successful requests:",
    "Benchmark duration (s):", "Total input tokens:", "Total input text tokens:",
    "Total generated tokens:", "Total generated tokens (retokenized):",
    "Request throughput (req/s):", "Input token throughput (tok/s):",
    "Output token throughput (tok/s):", "Peak output token throughput (tok/s):",
    "Peak concurrent requests:", "Total token throughput (tok/s):", "Concurrency:",
    "Mean E2E Latency (ms):", "Median E2E Latency (ms):", "P90 E2E Latency (ms):",
    "P95 E2E Latency (ms):", "P99 E2E Latency (ms):",
    "Mean TTFT (ms):", "Median TTFT (ms):", "P90 TTFT (ms):", "P95 TTFT (ms):",
    "P99 TTFT (ms):",
    "Mean TPOT (ms):", "Median TPOT (ms):", "P90 TPOT (ms):", "P95 TPOT (ms):",
    "P99 TPOT (ms):",
    "Mean ITL (ms):", "Median ITL (ms):", "P90 ITL (ms):", "P95 ITL (ms):", "P99 ITL (ms):",
    "Max ITL (ms):",
]
BANNERS = ["End-to-End Latency", "Time to First Token",
           "Time per Output Token (excl. 1st token)", "Inter-Token Latency"]


def _result() -> dict:
    b = {"report": "sglang", "request_rate": None, "max_concurrency": 2, "completed": 4,
         "duration": 10.0, "total_input_tokens": 400, "total_output_tokens": 40,
         "request_throughput": 0.4, "input_throughput": 40.0, "output_throughput": 4.0,
         "max_output_tokens_per_s": 6.0, "max_concurrent_requests": 3,
         "total_token_throughput": 44.0, "concurrency": 1.9, "max_itl_ms": 50.0,
         "output_throughput_per_gpu": 4.0, "output_throughput_per_user": 20.0}
    for key in ("e2el", "ttft", "tpot", "itl"):
        b |= {f"mean_{key}_ms": 1.0, f"median_{key}_ms": 1.0, f"p90_{key}_ms": 1.0,
              f"p95_{key}_ms": 1.0, f"p99_{key}_ms": 1.0}
    return b


def test_sglang_block_has_every_line_in_its_order():
    lines = render_benchmark(_result()).splitlines()
    labels = [line[:40].rstrip() for line in lines if not line.startswith(("=", "-"))
              and not line.startswith("perfmodel:")]
    assert labels == [s.rstrip() for s in SGLANG_0514]
    banners = [line.strip("-") for line in lines if line.startswith("-")]
    assert banners == BANNERS
    text = "\n".join(lines)
    # "{:<40} {:<10}" rows: integers as integers (SGLang's peak concurrency is an int),
    # rates with two decimals; retokenized = generated tokens, text tokens = input tokens
    assert "Peak concurrent requests:                3\n" in text + "\n"
    assert "Peak output token throughput (tok/s):    6.00" in text
    assert "Total generated tokens (retokenized):    40\n" in text
    assert "Total input text tokens:                 400\n" in text
    assert "Traffic request rate:                    inf" in text


def test_peak_concurrent_counts_every_second_a_request_is_active():
    # by hand: t0 = 0; a request counts in seconds int(start)..int(end):
    # [0, 1.5] -> 0, 1; [1.2, 2.1] -> 1, 2; [1.9, 1.95] -> 1; second 1 holds all three
    start, end = np.array([0.0, 1.2, 1.9]), np.array([1.5, 2.1, 1.95])
    assert peak_concurrent(start, end) == 3


def test_closed_loop_head_names_its_clients_not_an_offered_rate():
    sc = {
        "kind": "serving", "model": "llama-3.1-8b", "engine": "sglang",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
        "inference": {"prompt_len": 512, "output_len": 64},
        "serving": {"arrival": {"process": "closed", "concurrency": 4}, "num_requests": 24,
                    "benchmark": {"client": "sglang-bench-serving"}, "seed": 0}}
    p = pm.predict(sc)
    text = render_prediction(p)
    assert "offered" not in text
    served = next(line for line in text.splitlines() if line.startswith("requests/s (served)"))
    assert f"{p.serving['throughput']['requests_per_s']:.2f}" in served
    assert "closed loop (concurrency)" in text and "4 clients" in text
    # every line of SGLang's block is there, in order
    block = [line[:40].rstrip() for line in text.split("Serving Benchmark Result")[1]
             .split("=" * 50)[0].splitlines()[1:] if line and not line.startswith("-")]
    assert block == [s.rstrip() for s in SGLANG_0514]
