"""CPU seconds of `perfmodel plan-serving` (a figure, not a pass/fail timing test).

Runs the README's command (15 priced devices x TP 1-8, Llama-3-8B at 20 req/s) in a fresh
process and prints its CPU time (user + system, from the child's rusage) and wall time. Issue
10 item 3 / QA: 21 s CPU before the iteration-cost tables were evaluated only where lookups
reach them (serving/cost.py TokenTable, W_d rows x kv columns), 6-7 s after (same 2-CPU
machine, same tree, 2026-12-04).

    .venv/bin/python benchmarks/plan_serving_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

README_COMMAND = ["plan-serving", "--model", "llama-3-8b", "--rate", "20", "--prompt-len",
                  "1024", "--output-len", "256", "--ttft-p90", "0.5", "--tpot-p90", "0.05",
                  "--json"]


def cpu_seconds(args: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `perfmodel ARGS` run in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from perfmodel.cli import main; "
                    "sys.exit(main(sys.argv[1:]))", *args], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for i in range(args.repeat):
        cpu, wall = cpu_seconds(README_COMMAND)
        print(f"plan-serving (README command) run {i + 1}: {cpu:.2f} s CPU, {wall:.2f} s wall")


if __name__ == "__main__":
    main()
