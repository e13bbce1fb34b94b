"""`perfmodel calibrate`: run the sweep, store raw points, fit a profile, write a report.

    perfmodel calibrate --device cpu --quick          # this CPU, under a minute
    perfmodel calibrate --device cuda                 # one GPU (+ every local GPU for NCCL)
    torchrun --nproc-per-node 8 --no-python perfmodel calibrate --device cuda --only collectives

Measurements go to ``<out>.raw.jsonl`` as they complete; re-running the same command resumes
(points already stored are skipped). See docs/calibration.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from ..errors import PerfModelError
from .progress import Progress

BENCH_NAMES = {"gemm": "gemm", "memory": "memory", "attention": "attention",
               "elementwise": "elementwise", "launch": "launch", "collective": "collective",
               "collectives": "collective"}
ALL_BENCHES = ("launch", "memory", "elementwise", "gemm", "attention", "collective")


def parse_only(only: str | None) -> tuple[str, ...]:
    if not only:
        return ALL_BENCHES
    out = []
    for name in (s.strip() for s in only.split(",") if s.strip()):
        if name not in BENCH_NAMES:
            raise PerfModelError(f"--only: unknown benchmark {name!r}; choose from "
                                 "gemm, memory, attention, elementwise, launch, collectives")
        out.append(BENCH_NAMES[name])
    if not out:
        raise PerfModelError(f"--only: {only!r} names no benchmark; choose from "
                             "gemm, memory, attention, elementwise, launch, collectives")
    return tuple(b for b in ALL_BENCHES if b in out)


def default_out(device_id: str | None, device: str) -> Path:
    return Path("calibration") / f"{device_id or device}.measured.json"


def run_cli(args: argparse.Namespace) -> int:
    if getattr(args, "reference", None):
        return _reference(args)
    t_start = time.monotonic()
    benches = parse_only(args.only)
    from . import collectives as C
    from .benchmarks import Context, plan, sweeps
    from .budget import default_budget
    from .device_info import now_iso
    from .raw import RawStore, raw_path

    env = C.dist_env()
    rank = env["rank"] if env else 0
    ctx = Context(args.device, bool(args.quick), local_rank=env["local_rank"] if env else 0)
    out = Path(args.out) if args.out else default_out(ctx.device_id, args.device)
    prepare_out(out, checked=bool(args.out))
    raw = raw_path(out)
    budget = default_budget(sweeps()["budget"], args.device, ctx.mode,
                            getattr(args, "budget_s", None), getattr(args, "point_budget_s", None))
    run_start = now_iso()
    store = None
    if rank == 0:
        store = RawStore(raw)
        resumed = len(store.records())
        store.start({**ctx.meta(), "start_time": run_start,
                     "world_size": env["world"] if env else None, "budget": budget.describe()})
        limit = f"budget {budget.run_s:g} s" if budget.run_s else "no run budget"
        say(f"calibrating {ctx.name} ({args.device}, {ctx.torch.get_num_threads()} threads, "
            f"torch {ctx.torch.__version__}, {limit}); raw points -> {raw}"
            + (f" (resuming: {resumed} stored)" if resumed else ""))

    try:
        if "collective" in benches:  # first, so that under torchrun no rank waits on rank 0
            table = budget.table("collective", list(benches))
            _collectives(ctx, args, raw, env, table, run_start)
        if rank != 0:
            return 0
        points = plan(ctx, benches)
        _kernels(ctx, points, store, budget, run_start)
    except KeyboardInterrupt:
        if rank == 0:
            store.inflight.unlink(missing_ok=True)  # a user's Ctrl-C is no crash of the point
            say(f"interrupted; completed points are in {raw}: run the same command to resume")
        raise

    store = RawStore(raw)  # re-read: spawned collective ranks appended to the same file
    records = [store.meta, *store.records()]
    summarize(records, say, run_start)
    profile = _fit(ctx, records, out, run_start, strict=bool(getattr(args, "strict", False)))
    say(f"profile -> {out} ({time.monotonic() - t_start:.1f} s)")
    _report(args, profile, records, out)
    return 0


def prepare_out(out: Path, checked: bool) -> None:
    """Before measuring anything: ``out`` writable (``atomic.check_writable``, the one check of
    every command's output; a given --out was checked by the CLI before any command ran,
    ``cli._check_outputs``, so only the default path is checked here), its missing folders
    created (--out's help: "missing folders are created"; the raw store appends there from the
    first point) and an existing raw store beside it appendable."""
    from ..atomic import OutputError
    from ..atomic import check_writable as writable
    from .raw import raw_path

    if not checked:
        try:
            writable(out)
        except OutputError as err:
            raise OutputError(f"--out (default): {err}") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"--out: cannot write {out}: cannot create {out.parent} "
                          f"({err.strerror})") from None
    raw = raw_path(out)
    if raw.exists():
        try:
            with open(raw, "ab"):
                pass
        except OSError as err:
            raise OutputError(f"--out: cannot write {raw} ({err.strerror}); choose another "
                              "--out") from None


def say(text: str) -> None:
    print(f"perfmodel calibrate: {text}", file=sys.stderr, flush=True)


def _collectives(ctx, args, raw: Path, env: dict | None, table, run_start: str) -> None:
    from . import collectives as C
    from .benchmarks import sweeps
    from .raw import RawStore

    if env is not None:  # under torchrun: every rank is already running
        C.run_ranks(ctx, raw, env, table=table, run_start=run_start)
        return
    cfg = sweeps()["collective"][args.device][ctx.mode]
    if args.device == "cpu":
        nprocs = cfg["spawn_ranks"]
    else:
        nprocs = ctx.torch.cuda.device_count()
        if nprocs < 2:
            say("collectives: one GPU here; run under torchrun across GPUs or nodes "
                "(docs/calibration.md) to measure them")
            return
    store = RawStore(raw)
    if all(store.done(p.key) for p in C.plan_collectives(cfg, nprocs, nprocs)):
        return  # a resumed run with every collective stored: no processes to start
    C.spawn_local(args.device, bool(args.quick), raw, nprocs, table=table, run_start=run_start)


def _kernels(ctx, points, store, budget=None, run_start: str = "") -> None:
    """Measure the single-device points not yet stored, each record as soon as it completes,
    table by table within the budget (``budget.py``); a dtype probe first (``probe.py``)."""
    from itertools import groupby

    from .budget import Budget
    from .device_info import Monitor
    from .raw import budget_record

    if not points:
        return
    budget = budget or Budget(run_s=None, point_s=None, weights={})
    bar = Progress("kernels", len(points))
    tables = [(bench, list(group)) for bench, group in groupby(points, key=lambda p: p.bench)]
    remaining = [bench for bench, _ in tables]
    # NVML every 0.2 s; a CPU's frequency each second (reading it may interrupt the cores)
    with Monitor(ctx.sampler(), period_s=0.2 if ctx.kind == "cuda" else 1.0) as monitor:
        probed = _probe(ctx, points, store, monitor)
        for bench, pts in tables:
            ctx.release()  # free the previous bench's buffers
            table = budget.table(bench, remaining)
            remaining.remove(bench)
            for point in pts:
                _one_point(ctx, point, store, table, probed, monitor, bar)
            if table.cut:
                say(f"{bench}: {table.out_of_time + table.over_point_budget} of {len(pts)} "
                    f"points not measured within the budget ({table.budget_s:.1f} s for the "
                    f"table, {table.point_s:g} s a point); rerun with a larger --budget-s "
                    "to measure them")
            store.add(budget_record(table.summary(len(pts)), run_start))
    ctx.release()
    bar.close()


def _probe(ctx, points, store, monitor) -> dict:
    """Probe the dtypes of the planned GEMM and attention points (stored ones are reused)."""
    from .probe import PROBED_BENCHES, probe_points, rates, run_probe

    dtypes = [p.params["dtype"] for p in points if p.bench in PROBED_BENCHES]
    for point in probe_points(dtypes):
        if not store.done(point.key):
            record = run_probe(ctx, point)
            record["env"] = monitor.window()
            store.add(record)
    probed = rates(store.records())
    for rate in probed.values():
        if rate.gflops is not None:
            say(f"dtype probe: {rate.dtype} {rate.gflops:.3g} GFLOP/s"
                + (f": {rate.error}" if rate.error else ""))
        elif rate.error:
            say(f"dtype probe: {rate.dtype} {rate.error}")
    return probed


def _one_point(ctx, point, store, table, probed, monitor, bar) -> None:
    from .benchmarks import run_point
    from .probe import PROBED_BENCHES, predicted_call_s, skipped_record
    from .raw import MAX_DEATHS, point_record

    if store.done(point.key):
        bar.step(skipped=True)
        return
    rate = probed.get(point.params.get("dtype")) if point.bench in PROBED_BENCHES else None
    if rate is not None and not rate.supported:
        record = skipped_record(point, rate)
    elif not table.admits(predicted_call_s(point, probed)):
        bar.step(skipped=True)
        return
    elif store.deadly(point.key):
        record = point_record(point.bench, point.params, status="oom", error=(
            f"the process died {MAX_DEATHS} times while measuring this point (killed "
            "by the kernel's out-of-memory killer?); skipped"))
    else:
        store.begin(point.key)
        record = run_point(ctx, point, env=monitor.window, deadline=table.point_deadline())
    store.add(record)
    bar.step(record)


def summarize(records: list[dict], emit, run_start: str | None = None) -> dict:
    """Counts per bench and status, this run's budget cuts, and how many points ran
    throttled (printed)."""
    from .raw import BENCHES

    counts: dict[str, Counter] = {}
    throttled, clocks = 0, []
    for r in records[1:]:
        if r["bench"] == "budget":
            continue
        counts.setdefault(r["bench"], Counter())[r["status"]] += 1
        env = r.get("env") or {}
        throttled += bool(env.get("throttled"))
        for key in ("sm_clock_mhz_min", "cpu_mhz_min"):
            if key in env:
                clocks.append(env[key])
    for bench, c in counts.items():
        if bench in BENCHES:
            emit(f"{bench:<11} " + ", ".join(f"{v} {k}" for k, v in sorted(c.items())))
    for r in records[1:]:
        if r["bench"] == "budget" and r["params"]["run"] == run_start:
            b = r["stats"]
            left = b["not_started_out_of_time"] + b["not_started_over_point_budget"]
            if left:
                emit(f"{b['table']:<11} budget {b['budget_s']} s, used {b['used_s']:.1f} s: "
                     f"{left} of {b['planned']} points not measured")
    if throttled:
        emit(f"warning: {throttled} points ran with the clocks throttled (power or thermal "
             "slow-down, see each record's env.reasons): their times are pessimistic")
    if clocks:
        emit(f"lowest clock sampled per point: {min(clocks):g}-{max(clocks):g} MHz")
    return {"counts": {b: dict(c) for b, c in counts.items()}, "throttled_points": throttled}


def _fit(ctx, records: list[dict], out: Path, run_start: str = "", strict: bool = False):
    from ..specs import registry
    from .fit import fit_profile
    from .quality import assess
    from .reference import write_profile

    quality = assess(records)
    if quality.verdict == "poor":
        for note in quality.notes:
            say(f"WARNING: {note}")
        if strict:
            raise PerfModelError(f"--strict: profile not written ({quality.notes[0]})")
        say("WARNING: the profile is written with quality 'poor'; predictions from it say so")
    device = registry.get_device(ctx.device_id) if ctx.device_id else None
    profile = fit_profile(
        records, device, kind="measured", profile_id=out.name.removesuffix(".json"),
        sources=[{"title": f"perfmodel calibrate on {ctx.name} (raw points: "
                           f"{out.name}.raw.jsonl)", "url": "local://perfmodel-calibrate"}])
    profile = profile.model_copy(update={"quality": quality})
    write_profile(profile, out)
    return profile


def _report(args, profile, records: list[dict], out: Path) -> None:
    from .report import write_report

    path = Path(args.report) if getattr(args, "report", None) else out.with_suffix(".png")
    write_report(records, profile, path)
    say(f"report -> {path}")


def _reference(args: argparse.Namespace) -> int:
    from .reference import run_reference_cli

    return run_reference_cli(args)
