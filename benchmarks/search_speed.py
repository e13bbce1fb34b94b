"""Speed of the plan search (issue 10 item 5): plans per second of ``plan-training`` for one
device, and the ratio to a numpy floor measured in the same run.

    .venv/bin/python benchmarks/search_speed.py [--model llama-3-70b] [--device h100-sxm5-80gb]

Figures (printed, never asserted; the machine is shared and wall times vary 2-5x with its
load, so CPU time -- less sensitive to other processes -- is printed beside them). One count
of plans is used throughout: the whole plans of the space (GPU count x tp x pp x cp x ep x
vp x micro-batch x recompute x SP x ZeRO with tp*pp*cp*dp one of the GPU counts, before any
other rule), i.e. ``Sweep.considered``. Mesh cells (``Sweep.modelled``) are a different unit:
the mesh also holds products tp*pp*cp*dp that are none of the counts, modelled but no plan, so
they can outnumber the plans; they are printed, never divided by.

* search only: that count over the time of the sweep and the best plan per GPU count
  (``search.sweep`` + ``search.best_per_gpu_count``), in process, data files loaded.
* plan_training in process: over all of ``plan_training`` (the search, then each row's
  plan predicted on its own through ``perfmodel.predict`` for its band and energy).
* whole process: over ``perfmodel plan-training MODEL --tokens 15T --devices DEVICE --json``
  as a fresh process (interpreter start, imports, data files, search, rows, JSON), with the
  package's bytecode compiled as an installed package has it; twice: with the registry's parse
  cache warm, as every run after a user's first one has it (``specs.registry.parse_cache``: the
  parsed data files, in a private folder of this run), and with the parse cache off
  (PERFMODEL_CACHE_DIR=off: every data file parsed, as a first run parses them).
* where a fresh process's CPU goes: the CLI's steps in a fresh process, timed one by one
  (the interpreter's start; imports of numpy, of pydantic and of the package's modules; data
  files and spec validation, incl. pydantic's first validator build; the search; the row
  predictions; the interpreter's exit, i.e. the process's CPU past the last step, after
  ``gc.freeze()`` and by ``os._exit`` as the CLI's main ends plan-training,
  ``perfmodel.cli.FAST_EXIT``), parse cache warm as in the CLI. Of the package's import, the
  CPU spent creating classes is printed apart (pydantic's ``ModelMetaclass.__new__``, which
  collects every field even with ``defer_build``, with the validators it builds for classes
  without it; ``dataclasses``' code generation): beside those validators, the part of the
  import that only fewer classes would remove.
* summary: the figures issue 10 item 5 asks for on one line -- plans evaluated, whole-process
  wall seconds and plans/s (wall and CPU), search-only plans/CPU-s, the numpy floor and its
  ratios, the import time -- and what 10^6 plans/s would leave for the whole process.
* process floor: a fresh process that only starts the interpreter, imports numpy (with
  OpenBLAS at one thread, as ``perfmodel.cli.console_main`` starts it: a thread pool started at
  import costs ~30-50 ms of CPU here, which the CLI does not pay) and pydantic and builds
  one pydantic validator (pydantic's plugin search off, as the CLI has it) -- what any fresh
  process of this design pays before
  perfmodel's own code runs; with the search's own CPU time added, the most plans per
  CPU-second a fresh ``plan-training`` process could reach if everything else were free.
* numpy floor: every numpy call the sweep makes on mesh arrays is recorded (ufunc, method,
  operand shapes; other array functions by their output shape) and replayed on ready-made
  arrays of the same shapes, with no Python logic in between: the CPU time numpy itself needs
  for the same elementwise work. ratio = floor / the row's CPU time (1.0 = as fast as the
  sweep's numpy arithmetic alone; printed for the search and for the whole process). Calls
  on arrays created inside the core from scratch (np.full, np.zeros, ...) and never combined
  with a mesh array are not recorded, so the floor is a lower bound and the ratios err low.

Every figure is measured ``--repeats`` times (default 3) and the **median** CPU time is the one
reported (the best run beside it): on this shared machine the other sessions' load moves CPU
time too, by 20-40 %.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the in-process figures time this checkout's package, as the fresh processes (run in ROOT) do,
# not whichever copy is installed (an editable install of another checkout)
sys.path.insert(0, str(ROOT))


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
    """Best CPU time of replaying the recorded calls; total elements they produce."""
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
            t = time.process_time()
            for fn, args in calls:
                fn(*args)
            best = min(best, time.process_time() - t)
    return best, elements


PHASES = """
import gc, json, os, sys, time
t0 = time.process_time()
marks = {"interpreter start": t0}  # the process's CPU before its first line
def mark(name):
    global t0
    t = time.process_time()
    marks[name] = marks.get(name, 0.0) + t - t0
    t0 = t
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as perfmodel.cli.console_main (FRESH_PROCESS_ENV), before numpy
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # as perfmodel.cli.console_main
import numpy  # what the CLI imports, split: numpy, pydantic, then the package's own modules
mark("import numpy")
import pydantic
from pydantic import BaseModel
mark("import pydantic")
import dataclasses
from pydantic._internal import _model_construction as _mc
made = {"pydantic models": [0.0, 0], "of which their validators": [0.0, 0],
        "dataclasses": [0.0, 0]}  # CPU s, calls
def _timed(kind, make):  # class creation inside the package's import, measured apart
    def timed(*args, **kwargs):
        t = time.process_time()
        try:
            return make(*args, **kwargs)
        finally:
            made[kind][0] += time.process_time() - t
            made[kind][1] += 1
    return timed
_mc.ModelMetaclass.__new__ = _timed("pydantic models", _mc.ModelMetaclass.__new__)
dataclasses._process_class = _timed("dataclasses", dataclasses._process_class)
_mc.complete_model_class = _timed("of which their validators", _mc.complete_model_class)
from perfmodel.cli import GC_THRESHOLD
gc.set_threshold(*GC_THRESHOLD)  # as the CLI's main
import perfmodel.planning.cli  # as the CLI
mark("import perfmodel")
from perfmodel.specs.registry import parse_cache
cache = parse_cache()  # as the CLI's run_cli; held: a dropped context manager's generator
cache.__enter__()      # is closed at once, which would leave the block (no cache at all)
from perfmodel import predict
from perfmodel.planning.training import DEFAULT_BATCH_TOKENS, gpu_counts, training_scenario
from perfmodel.search import SearchSpace, base_plan, best_per_gpu_count, scenario_for, sweep
from perfmodel.serving.economics import load_prices
from perfmodel.specs import registry
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.scenario import SystemConfig, TrainingConfig
from perfmodel.zoo import resolve_model
mark("import perfmodel")
marks["_classes"] = {k: list(v) for k, v in made.items()}  # of the package's import
model, device = resolve_model(sys.argv[1]), sys.argv[2]
load_prices()
dev = registry.get_device(device)
counts = gpu_counts(registry.get_node(dev.default_node).gpus_per_node, 16384)
sc = training_scenario(model, SystemConfig(device=device, num_gpus=max(counts)),  # as the CLI
                       TrainingConfig(seq_len=8192, global_batch=DEFAULT_BATCH_TOKENS // 8192))
system, profile, base = resolve_system(sc.system), registry.profile_for(device), base_plan(sc)
mark("data files and spec validation")
sw = sweep(model, system, profile, base, SearchSpace(), counts)
best = best_per_gpu_count(sw)
mark("search (sweep + best per count)")
for rec in best:
    predict(scenario_for(sc, rec))
mark("row predictions (bands, energy)")
marks["_end"] = time.process_time()  # the parent adds the interpreter's exit: its CPU past this
print(json.dumps(marks))
gc.freeze()  # as the CLI's main before the interpreter exits
import atexit
sys.stdout.flush()  # and as plan-training's end (perfmodel.cli.FAST_EXIT): no finalisation
atexit._run_exitfuncs()
os._exit(0)
"""


FLOOR = """
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI starts numpy (cli.console_main)
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # as the CLI (cli.console_main)
import numpy
from pydantic import BaseModel
class Floor(BaseModel):
    x: float = 1.0
Floor()
"""


def _process(cmd: list[str], repeats: int, parse_cache: bool = True
             ) -> tuple[list[float], list[float], list[str]]:
    """Wall and CPU seconds of each run of ``cmd`` as a fresh process, and its outputs. The package's bytecode is
    compiled into a private cache first (an installed package ships it;
    PYTHONDONTWRITEBYTECODE, if set, would make every run recompile every module), so the
    figure is what a user's run costs. That first run also fills a private parse cache
    (``parse_cache``; else PERFMODEL_CACHE_DIR=off: none)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    walls, cpus, outs = [], [], []
    with tempfile.TemporaryDirectory() as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        env["PERFMODEL_CACHE_DIR"] = os.path.join(cache, "parsed") if parse_cache else "off"
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)  # compile
        for _ in range(repeats):
            t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True,
                                 text=True).stdout
            walls.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            outs.append(out)
    return walls, cpus, outs


def _timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of ``repeats`` calls of ``fn`` in this process."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return walls, cpus


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3-70b")
    ap.add_argument("--device", default="h100-sxm5-80gb")
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure (median reported)")
    args = ap.parse_args(argv)

    from perfmodel.planning.training import DEFAULT_BATCH_TOKENS, plan_training
    from perfmodel.search import SearchSpace, base_plan, best_per_gpu_count, sweep
    from perfmodel.specs.assemble import resolve_system
    from perfmodel.specs.registry import profile_for
    from perfmodel.specs.scenario import Scenario, SystemConfig, TrainingConfig
    from perfmodel.zoo import resolve_model

    model = resolve_model(args.model)
    result = plan_training(model=model, tokens="15T", devices=[args.device])  # warm caches
    w = result.work
    per = w["per_device"][args.device]
    counts = per["gpu_counts"]
    space = SearchSpace()

    # the search alone: the sweep over every GPU count and the best plan per count
    seq = result.inputs["seq_len"]
    sc = Scenario(kind="training", model=model,
                  system=SystemConfig(device=args.device, num_gpus=max(counts)),
                  training=TrainingConfig(seq_len=seq, global_batch=DEFAULT_BATCH_TOKENS // seq))
    system, profile, base = resolve_system(sc.system), profile_for(args.device), base_plan(sc)

    def search():
        sw = sweep(model, system, profile, base, space, counts)
        return sw, best_per_gpu_count(sw)

    sw, best = search()
    search_times = _timed(search, args.repeats)
    # all of plan_training in process (the search, then each row's plan through predict)
    inproc_times = _timed(lambda: plan_training(model=model, tokens="15T",
                                                devices=[args.device]), args.repeats)

    cli = [sys.executable, "-m", "perfmodel.cli", "plan-training", args.model, "--tokens", "15T",
           "--devices", args.device, "--json"]
    whole_times = _process(cli, args.repeats)[:2]
    cold_times = _process(cli, args.repeats, parse_cache=False)[:2]
    floor_times = _process([sys.executable, "-c", FLOOR], args.repeats)[:2]
    _, phase_cpus, outs = _process([sys.executable, "-c", PHASES, args.model, args.device],
                                   args.repeats)
    runs = [json.loads(o.splitlines()[-1]) for o in outs]
    for r, cpu in zip(runs, phase_cpus, strict=True):  # the exit: process CPU past the last mark
        r["interpreter exit"] = cpu - r.pop("_end")
    made = [r.pop("_classes") for r in runs]
    phases = {k: statistics.median(r[k] for r in runs) for k in runs[0]}  # CPU s, median

    # numpy floor of the sweep: its recorded array calls replayed with no Python between
    log = record_sweep(lambda: sweep(model, system, profile, base, space, counts))
    floor_s, elements = replay_seconds(log, args.repeats)

    n = sw.considered
    print(f"perfmodel plan-training {args.model} --tokens 15T --devices {args.device} --json")
    print(f"  space: {n:,} whole plans = {len(counts)} GPU counts ({counts[0]}-{counts[-1]}) "
          f"x tp {space.tp} x pp {space.pp} x cp {space.cp} x vp {space.vp} x micro-batch "
          f"{space.micro_batch}" + (f" x ep {space.ep}" if model.moe else "")
          + f" x {len(space.choices())} categorical choices (recompute x SP x ZeRO), counted "
          "where tp*pp*cp*dp is one of the GPU counts")
    print(f"  {sw.plans_modelled:,} whole plans modelled (axis values with no valid plan "
          f"dropped first), as {sw.modelled:,} mesh cells incl. products off the GPU counts "
          f"({sw.model_calls} model calls for {len(sw.choices)} categorical choices); "
          f"{sw.valid:,} valid, {sw.fitting:,} fit; {len(best)} GPU counts answered")
    print("  plans/s below count whole plans of the space (the first figure), never mesh "
          "cells")
    print(f"  numpy floor of the sweep: {floor_s:.4f} s ({len(log):,} recorded numpy calls, "
          f"{elements / 1e6:.1f} M elements)")
    print()
    med = statistics.median
    print(f"  {'':34s} {'wall s':>8s} {'M plans/s':>10s} {'CPU s':>8s} {'M plans/CPU-s':>14s} "
          f"{'(best run)':>11s} {'floor / time':>13s}")
    for name, (walls, cpus) in (("search only (sweep + best per count)", search_times),
                                ("plan_training in process", inproc_times),
                                ("whole process (interpreter..JSON)", whole_times),
                                ("  the same, parse cache off", cold_times)):
        cpu = med(cpus)
        print(f"  {name:34s} {med(walls):8.3f} {n / med(walls) / 1e6:10.2f} {cpu:8.3f} "
              f"{n / cpu / 1e6:14.2f} {n / min(cpus) / 1e6:11.2f} {floor_s / cpu:13.3f}")
    process_floor = med(floor_times[1])
    reach = process_floor + med(search_times[1])
    print(f"  process floor (interpreter, import numpy + pydantic, one validator): "
          f"{process_floor:.3f} s CPU; plus the search's own, {reach:.3f} s: at most "
          f"{n / reach / 1e6:.2f} M plans/CPU-s for a fresh process if all else were free")
    print("  where a fresh process's CPU goes (median of the runs, the same steps as the CLI "
          "but the JSON): " + ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in phases.items()))
    print("    of import perfmodel, creating classes: " + ", ".join(
        f"{kind} {1e3 * statistics.median(m[kind][0] for m in made):.0f} ms "
        f"({made[0][kind][1]})" for kind in made[0])
        + " (validators: built at creation where a class has no defer_build, the first one "
          "with pydantic's schema machinery)")
    imports = sum(v for k, v in phases.items() if k.startswith("import "))
    whole_wall, whole_cpu = med(whole_times[0]), med(whole_times[1])
    print()
    print(f"  summary (issue 10 item 5, medians of {args.repeats} runs): {n:,} plans evaluated "
          f"(the rules on all, the cost model on {sw.plans_modelled:,}: "
          f"{n / whole_wall / 1e6 * sw.plans_modelled / n:.2f} M of those per wall second); "
          f"whole process {whole_wall:.3f} s wall = {n / whole_wall / 1e6:.2f} M plans/s "
          f"({whole_cpu:.3f} s CPU = {n / whole_cpu / 1e6:.2f} M plans/CPU-s); search only "
          f"{n / med(search_times[1]) / 1e6:.2f} M plans/CPU-s; numpy floor {floor_s:.4f} s: "
          f"ratio {floor_s / med(search_times[1]):.3f} (search), {floor_s / whole_cpu:.3f} "
          f"(whole process); imports {imports:.3f} s CPU ({imports / whole_cpu:.0%} of the "
          f"whole process's CPU)")
    print(f"  10^6 plans/s whole process would need {n / 1e6:.3f} s for the {n:,} plans; the "
          f"process floor alone (interpreter, numpy, pydantic, one validator) took "
          f"{process_floor:.3f} s CPU of it, imports {imports:.3f} s")
    print()
    print("  floor / time: the numpy floor over that row's median CPU time (1.0 = as fast as "
          f"the sweep's numpy work alone); CPU s: median of {args.repeats} runs (wall times "
          "move 2-5x with the shared machine's load, CPU time 20-40 %); load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
