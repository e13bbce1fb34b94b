"""How long the serving simulator takes for 10,000 requests (target: under 2 s per run).

    PYTHONPATH=. python benchmarks/serving_speed.py [--requests 10000] [--repeat 3]

Workload: the examples' Llama 3 8B on one H100 SXM (lognormal prompts of mean 1024 and
outputs of mean 256 tokens, Poisson arrivals at 16 req/s, a moderately loaded instance)
for every scheduler; disaggregated runs on two GPUs. Setup (building the iteration cost
model from the operator list) and the summary (percentiles, series) are timed apart from
the event loop; "CPU s" is the process CPU time of the whole run (setup + simulation +
summary), which other jobs on a shared machine disturb less than the wall-clock time. A
figure, not a pass/fail test: it depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import yaml

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.serving.metrics import summarize
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.specs.assemble import resolve_system

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / \
    "serving-llama3-8b-h100-continuous.yaml"
SCHEDULERS = {
    "continuous": {"kind": "continuous"},
    "chunked": {"kind": "chunked", "token_budget": 512},
    "static": {"kind": "static"},
    "disaggregated": {"kind": "disaggregated"},
}


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
        data = {**base, "serving": {**base["serving"], "num_requests": args.requests,
                                    "scheduler": {**base["serving"]["scheduler"], **sched},
                                    "arrival": {"process": "poisson", "rate_per_s": args.rate}}}
        if name == "disaggregated":
            data["system"] = {**data["system"], "num_gpus": 2}
        sc = pm.as_scenario(data)
        system, profile = resolve_system(sc.system), resolve_profile(sc)
        best = None
        for _ in range(args.repeat):
            c0 = time.process_time()
            t0 = time.perf_counter()
            inf, wl = serving_inputs(sc)
            dep = deployment_for(sc, system, profile, inf, wl)
            t1 = time.perf_counter()
            res = dep.simulate(wl)
            t2 = time.perf_counter()
            s = summarize(res.reqs, res.engines, sc.serving.slo, res.end)
            t3 = time.perf_counter()
            cpu = time.process_time() - c0
            row = (t1 - t0, t2 - t1, t3 - t2, t3 - t0, cpu,
                   sum(len(e.samples) for e in res.engines), s)
            best = row if best is None or row[3] < best[3] else best
        setup, sim, summ, total, cpu, iters, s = best
        print(f"{name:14s} {setup:8.3f} {sim:10.3f} {summ:9.3f} {total:8.3f} {cpu:6.3f} "
              f"{iters:10d}  "
              f"{s['ttft_s']['p90'] * 1e3:.0f} ms / {s['tpot_s']['p90'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
