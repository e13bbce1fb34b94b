"""Speed of the plan search (issue 10 item 5): plans per second of ``plan-training`` for one
device, and the ratio to a numpy floor measured in the same run.

    .venv/bin/python benchmarks/search_speed.py [--model llama-3-70b] [--device h100-sxm5-80gb]

Figures (printed, never asserted; the machine is shared and wall times vary 2-5x with its
load, so CPU time -- less sensitive to other processes -- is printed beside them):

* plans/s of the search: candidate plans considered by ``plan_training`` (every whole plan:
  GPU count x tp x pp x cp x ep x vp x micro-batch x recompute x SP x ZeRO with tp*pp*cp*dp
  one of the GPU counts, before any other rule) / the time of its sweep and best-per-count
  selection; the same for the mesh cells the model evaluated (after dropping axis values no
  valid plan uses).
* plans/s in process: the same count over all of ``plan_training`` (the search, then each
  row's plan predicted on its own for its band and energy).
* plans/s of the whole process: the same count over the wall time of
  ``perfmodel plan-training MODEL --tokens 15T --devices DEVICE --json`` (interpreter start,
  imports, data files, search, output).
* numpy floor: every numpy call the sweep makes on mesh arrays is recorded (ufunc, method,
  operand shapes; other array functions by their output shape) and replayed on ready-made
  arrays of the same shapes, with no Python logic in between: the time numpy itself needs for
  the same elementwise work. ratio = floor time / sweep time (1.0 = the search is as fast as
  its numpy arithmetic alone). Calls on arrays created inside the core from scratch
  (np.full, np.zeros, ...) and never combined with a mesh array are not recorded, so the
  floor is a lower bound and the ratio errs low.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Tap(np.ndarray):
    """An ndarray that records every numpy call made on it (and on what it produces)."""

    log: ClassVar[list] = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        args = [_plain(x) for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(x) for x in kwargs["out"])
        result = getattr(ufunc, method)(*args, **kwargs)
        Tap.log.append(("ufunc", ufunc, method, [(np.shape(a), np.asarray(a).dtype.char)
                                                 for a in args], np.shape(result)))
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        result = func(*_unwrap(args), **_unwrap(kwargs))
        first = result[0] if isinstance(result, tuple) and result else result
        Tap.log.append(("function", func, None, None, np.shape(first)))
        return _wrap(result)


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, Tap) else x


def _unwrap(obj):
    if isinstance(obj, Tap):
        return obj.view(np.ndarray)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray) and not isinstance(obj, Tap) and obj.dtype.kind in "fib":
        return obj.view(Tap)
    if isinstance(obj, tuple):
        return tuple(_wrap(x) for x in obj)
    return obj


def record_sweep(run) -> list:
    """Run ``run()`` with mesh columns as Tap arrays and np.asarray keeping them; the log."""
    from perfmodel import search as S

    original_column, original_asarray = S._column, np.asarray
    S._column = lambda values, axis: original_column(values, axis).view(Tap)
    np.asarray = np.asanyarray
    Tap.log = []
    try:
        run()
    finally:
        S._column, np.asarray = original_column, original_asarray
    return list(Tap.log)


def replay_seconds(log: list, repeats: int = 3) -> tuple[float, int]:
    """Best time of replaying the recorded calls; total elements they produce."""
    cache: dict = {}

    def arr(shape, dtype="d"):
        key = (shape, dtype)
        if key not in cache:
            cache[key] = np.full(shape, 1.5).astype(dtype)
        return cache[key]

    calls = []
    elements = 0
    for kind, fn, method, in_shapes, out_shape in log:
        elements += int(np.prod(out_shape)) if out_shape else 1
        if kind == "ufunc" and method == "__call__" and fn.nin == len(in_shapes):
            calls.append((fn, tuple(arr(*s) for s in in_shapes)))
        elif kind == "ufunc" and method == "reduce":
            calls.append((fn.reduce, (arr(*in_shapes[0]),)))
        else:  # an array function (where, interp, broadcast_to, ...): one pass over its output
            calls.append((np.copy, (arr(out_shape),)))
    best = float("inf")
    with np.errstate(all="ignore"):
        for _ in range(repeats):
            t = time.perf_counter()
            for fn, args in calls:
                fn(*args)
            best = min(best, time.perf_counter() - t)
    return best, elements


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3-70b")
    ap.add_argument("--device", default="h100-sxm5-80gb")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    from perfmodel.planning.training import (
        DEFAULT_BATCH_TOKENS,
        DEFAULT_SEQ_LEN,
        _system,
        plan_training,
    )
    from perfmodel.search import SearchSpace, base_plan, sweep
    from perfmodel.specs.registry import profile_for
    from perfmodel.specs.scenario import TrainingConfig
    from perfmodel.zoo import resolve_model

    model = resolve_model(args.model)
    plan_training(model=model, tokens="15T", devices=[args.device])  # warm caches
    best, search_s, cpu, result = float("inf"), float("inf"), float("inf"), None
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        result = plan_training(model=model, tokens="15T", devices=[args.device])
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
        search_s = min(search_s, result.work["search_seconds"])
    w = result.work
    print(f"plan-training {args.model} on {args.device}: {w['considered']:,} plans considered, "
          f"{w['modelled']:,} modelled, {w['valid']:,} valid, {w['fitting']:,} fit; "
          f"{len(result.rows)} GPU counts answered")
    print(f"  search:        {search_s:.3f} s  ->  {w['considered'] / search_s / 1e6:.2f} M "
          f"plans/s considered, {w['modelled'] / search_s / 1e6:.2f} M/s modelled (the sweep "
          "and the best plan per GPU count)")
    print(f"  in process:    {best:.3f} s  ->  {w['considered'] / best / 1e6:.2f} M plans/s "
          f"considered, {w['modelled'] / best / 1e6:.2f} M/s modelled, "
          f"{w['valid'] / best / 1e6:.2f} M/s valid; CPU time {cpu:.3f} s -> "
          f"{w['considered'] / cpu / 1e6:.2f} M plans per CPU-second")

    walls, cpus = [], []
    for _ in range(args.repeats):
        t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "perfmodel.cli", "plan-training", args.model,
                        "--tokens", "15T", "--devices", args.device, "--json"], cwd=ROOT,
                       check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    wall, child_cpu = min(walls), min(cpus)
    print(f"  whole process: {wall:.3f} s  ->  {w['considered'] / wall / 1e6:.2f} M plans/s "
          f"considered, {w['modelled'] / wall / 1e6:.2f} M/s modelled; CPU time "
          f"{child_cpu:.3f} s -> {w['considered'] / child_cpu / 1e6:.2f} M plans per "
          "CPU-second")

    # numpy floor of the sweep (the modelling part of the search)
    training = TrainingConfig(seq_len=DEFAULT_SEQ_LEN,
                              global_batch=DEFAULT_BATCH_TOKENS // DEFAULT_SEQ_LEN)
    sc, system, counts = _system(args.device, model, 16384, training)
    profile, base, space = profile_for(args.device), base_plan(sc), SearchSpace()

    def run():
        return sweep(model, system, profile, base, space, counts)

    sweep_s, sweep_cpu = float("inf"), float("inf")
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        run()
        sweep_s = min(sweep_s, time.perf_counter() - t)
        sweep_cpu = min(sweep_cpu, time.process_time() - c)
    log = record_sweep(run)
    floor_s, elements = replay_seconds(log, args.repeats)
    rate = w["considered"] / sweep_cpu / 1e6
    print(f"  sweep alone:   {sweep_s:.3f} s, CPU {sweep_cpu:.3f} s ({rate:.2f} M plans per "
          f"CPU-second); numpy floor of its {len(log):,} recorded calls "
          f"({elements / 1e6:.1f} M elements): {floor_s:.3f} s  ->  ratio {floor_s / sweep_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
