"""Start-up time of the CLI: whole-process wall time of a few everyday commands.

Prints, per command, the median (and min) wall time of ``python -m perfmodel.cli ...`` over
several fresh processes, and, with ``--modules``, how many ``perfmodel`` modules a bare
``import perfmodel.ops`` / ``import perfmodel.roofline`` loads. A figure, not a pass/fail
test: this small machine is noisy, so take the median of at least five runs.

The runs use the package's bytecode compiled into a private folder first and a private parse
cache (``specs.registry.parse_cache``) filled by that first run, as an installed package and
every run after a user's first one have them: with PYTHONDONTWRITEBYTECODE set (this
checkout's environment) every run would recompile every module, and the shared cache folder
is re-filled whenever another process runs changed code.

Run: python benchmarks/startup.py [--runs 7] [--modules]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "perfmodel --help": ["--help"],
    "perfmodel models list": ["models", "list"],
    "perfmodel predict <decode> --json": ["predict", "examples/llama2-7b-decode-a100.yaml",
                                          "--json"],
    "perfmodel search <train 8B>": ["search", "examples/llama3-8b-fsdp-h100.yaml"],
    # issue 10 item 5's whole process (plans/s: benchmarks/search_speed.py)
    "perfmodel plan-training <70B, H100> --json": ["plan-training", "llama-3-70b", "--tokens",
                                                   "15T", "--devices", "h100-sxm5-80gb",
                                                   "--json"],
}

_COUNT = ("import sys, importlib; importlib.import_module({mod!r}); "
          "print(sum(m == 'perfmodel' or m.startswith('perfmodel.') for m in sys.modules))")


def wall_times(argv: list[str], runs: int, env: dict | None = None) -> list[float]:
    cmd = [sys.executable, "-m", "perfmodel.cli", *argv]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)  # compile
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def module_count(mod: str) -> int:
    out = subprocess.run([sys.executable, "-c", _COUNT.format(mod=mod)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return int(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--modules", action="store_true",
                        help="also count the perfmodel modules a core import loads")
    args = parser.parse_args()
    interp = [sys.executable, "-c", "pass"]
    base = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(interp, check=True)
        base.append(time.perf_counter() - t0)
    print(f"{'command':46s} {'median s':>9s} {'min s':>7s}   ({args.runs} runs)")
    print(f"{'python -c pass (interpreter only)':46s} {statistics.median(base):9.3f} "
          f"{min(base):7.3f}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as private:
        env["PYTHONPYCACHEPREFIX"] = private
        env["PERFMODEL_CACHE_DIR"] = os.path.join(private, "parsed")
        for label, argv in COMMANDS.items():
            t = wall_times(argv, args.runs, env)
            print(f"{label:46s} {statistics.median(t):9.3f} {min(t):7.3f}")
    if args.modules:
        for mod in ("perfmodel.ops", "perfmodel.roofline", "perfmodel"):
            print(f"import {mod}: {module_count(mod)} perfmodel modules")


if __name__ == "__main__":
    main()
