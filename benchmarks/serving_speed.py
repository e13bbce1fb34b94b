"""How long the serving simulator takes for 10,000 requests (target: under 2 s per run).

    PYTHONPATH=. python benchmarks/serving_speed.py [--requests 10000] [--repeat 3]

Workload: the examples' Llama 3 8B on one H100 SXM (lognormal prompts of mean 1024 and
outputs of mean 256 tokens, Poisson arrivals at 16 req/s, a moderately loaded instance)
for every scheduler; disaggregated runs on two GPUs. Setup (building the iteration cost
model from the operator list) and the summary (percentiles, series) are timed apart from
the event loop; "CPU s" is the process CPU time of the whole run (setup + simulation +
summary), which other jobs on a shared machine disturb less than the wall-clock time. A
figure, not a pass/fail test: it depends on the machine and its load.

The closed-loop rows (``closed C=...``) replace the Poisson arrivals by C clients that each
send their next request when the last one ends (``vllm bench serve --max-concurrency``),
with continuous and chunked batching; "req/s sim" is requests simulated per second of the
event loop's CPU time, "bench" the vLLM-style summary (serving.bench.benchmark_metrics).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import yaml

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.serving.bench import benchmark_metrics
from perfmodel.serving.metrics import summarize
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.specs.assemble import resolve_system

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / \
    "serving-llama3-8b-h100-continuous.yaml"
CLOSED = ((16, "continuous"), (64, "continuous"), (16, "chunked"), (256, "chunked"))
SCHEDULERS = {
    "continuous": {"kind": "continuous"},
    "chunked": {"kind": "chunked", "token_budget": 512},
    "static": {"kind": "static"},
    "disaggregated": {"kind": "disaggregated"},
}


def _scenario(base: dict, args, sched: dict, arrival: dict, num_gpus: int | None = None):
    data = {**base, "serving": {**base["serving"], "num_requests": args.requests,
                                "scheduler": {**base["serving"]["scheduler"], **sched},
                                "arrival": arrival}}
    if num_gpus is not None:
        data["system"] = {**data["system"], "num_gpus": num_gpus}
    return pm.as_scenario(data)


def _timed(sc, system, profile, summarise) -> dict:
    """One run: set-up, simulation and summary, wall and CPU time of each part."""
    c0, t0 = time.process_time(), time.perf_counter()
    inf, wl = serving_inputs(sc)
    dep = deployment_for(sc, system, profile, inf, wl)
    t1, c1 = time.perf_counter(), time.process_time()
    res = dep.simulate(wl)
    t2, c2 = time.perf_counter(), time.process_time()
    out = summarise(res, dep)
    t3 = time.perf_counter()
    return {"setup": t1 - t0, "sim": t2 - t1, "summary": t3 - t2, "total": t3 - t0,
            "cpu": time.process_time() - c0, "sim_cpu": c2 - c1, "res": res, "out": out}


def _best(sc, repeat: int, summarise, by: str) -> dict:
    system, profile = resolve_system(sc.system), resolve_profile(sc)
    return min((_timed(sc, system, profile, summarise) for _ in range(repeat)),
               key=lambda run: run[by])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=16.0)
    args = ap.parse_args()
    base = yaml.safe_load(EXAMPLE.read_text())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.requests} requests, best of {args.repeat}; load average {load:.2f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'scheduler':14s} {'setup s':>8s} {'simulate s':>10s} {'summary s':>9s} "
          f"{'total s':>8s} {'CPU s':>6s} {'iterations':>10s}  p90 TTFT / TPOT")
    for name, sched in SCHEDULERS.items():
        sc = _scenario(base, args, sched, {"process": "poisson", "rate_per_s": args.rate},
                       2 if name == "disaggregated" else None)
        r = _best(sc, args.repeat, lambda res, dep, slo=sc.serving.slo: summarize(
            res.reqs, res.engines, slo, res.end), "total")
        s, iters = r["out"], sum(len(e.samples) for e in r["res"].engines)
        print(f"{name:14s} {r['setup']:8.3f} {r['sim']:10.3f} {r['summary']:9.3f} "
              f"{r['total']:8.3f} {r['cpu']:6.3f} {iters:10d}  "
              f"{s['ttft_s']['p90'] * 1e3:.0f} ms / {s['tpot_s']['p90'] * 1e3:.1f} ms")
    closed_loop(base, args)


def closed_loop(base: dict, args) -> None:
    """The closed-loop benchmark mode at a few client counts."""
    print(f"\n{'closed loop':18s} {'setup s':>8s} {'simulate s':>10s} {'bench s':>8s} "
          f"{'CPU s':>6s} {'req/s sim':>10s}  median TTFT / TPOT")
    for conc, kind in CLOSED:
        sched = {"kind": kind} | ({"token_budget": 512} if kind == "chunked" else {})
        sc = _scenario(base, args, sched, {"process": "closed", "concurrency": conc})
        r = _best(sc, args.repeat,
                  lambda res, dep, c=conc: benchmark_metrics(res.reqs, dep.num_gpus, c), "sim_cpu")
        b = r["out"]
        label = f"closed C={conc} {kind[:5]}"
        print(f"{label:18s} {r['setup']:8.3f} {r['sim']:10.3f} {r['summary']:8.3f} "
              f"{r['cpu']:6.3f} {args.requests / r['sim_cpu']:10.0f}  "
              f"{b['median_ttft_ms']:.0f} ms / {b['median_tpot_ms']:.1f} ms")


if __name__ == "__main__":
    main()
