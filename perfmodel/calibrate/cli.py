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

BENCH_NAMES = {"gemm": "gemm", "memory": "memory", "attention": "attention",
               "elementwise": "elementwise", "launch": "launch", "collective": "collective",
               "collectives": "collective"}
ALL_BENCHES = ("launch", "memory", "elementwise", "gemm", "attention", "collective")


class Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, stream=None, width: int = 24) -> None:
        self.label, self.total, self.width = label, total, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.counts, self.t0 = 0, Counter(), time.monotonic()
        self._last_tenth = -1
        if total:
            self._draw()

    def step(self, record: dict | None = None, skipped: bool = False) -> None:
        self.done += 1
        self.counts["skipped" if skipped else (record or {}).get("status", "ok")] += 1
        self._draw()

    def _draw(self) -> None:
        frac = self.done / self.total if self.total else 1.0
        tenth = int(frac * 10)
        if not self.tty and tenth == self._last_tenth and self.done < self.total:
            return
        self._last_tenth = tenth
        fill = int(frac * self.width)
        elapsed = time.monotonic() - self.t0
        counts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        line = (f"{self.label:<11} {self.done:>4}/{self.total:<4} "
                f"[{'#' * fill}{'.' * (self.width - fill)}] {elapsed:6.1f}s {counts}")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


def parse_only(only: str | None) -> tuple[str, ...]:
    if not only:
        return ALL_BENCHES
    out = []
    for name in (s.strip() for s in only.split(",") if s.strip()):
        if name not in BENCH_NAMES:
            raise PerfModelError(f"--only: unknown benchmark {name!r}; choose from "
                                 "gemm, memory, attention, elementwise, launch, collectives")
        out.append(BENCH_NAMES[name])
    return tuple(b for b in ALL_BENCHES if b in out)


def default_out(device_id: str | None, device: str) -> Path:
    return Path("calibration") / f"{device_id or device}.measured.json"


def run_cli(args: argparse.Namespace) -> int:
    if getattr(args, "reference", None):
        return _reference(args)
    t_start = time.monotonic()
    benches = parse_only(args.only)
    from . import collectives as C
    from .benchmarks import Context, plan
    from .device_info import now_iso
    from .raw import RawStore, raw_path

    env = C.dist_env()
    rank = env["rank"] if env else 0
    ctx = Context(args.device, bool(args.quick), local_rank=env["local_rank"] if env else 0)
    out = Path(args.out) if args.out else default_out(ctx.device_id, args.device)
    raw = raw_path(out)
    store = None
    if rank == 0:
        store = RawStore(raw)
        resumed = len(store.records())
        store.start({**ctx.meta(), "start_time": now_iso(),
                     "world_size": env["world"] if env else None})
        say(f"calibrating {ctx.name} ({args.device}, {ctx.torch.get_num_threads()} threads, "
            f"torch {ctx.torch.__version__}); raw points -> {raw}"
            + (f" (resuming: {resumed} stored)" if resumed else ""))

    try:
        if "collective" in benches:  # first, so that under torchrun no rank waits on rank 0
            _collectives(ctx, args, raw, env)
        if rank != 0:
            return 0
        points = plan(ctx, benches)
        _kernels(ctx, points, store)
    except KeyboardInterrupt:
        if rank == 0:
            store.inflight.unlink(missing_ok=True)  # a user's Ctrl-C is no crash of the point
            say(f"interrupted; completed points are in {raw}: run the same command to resume")
        raise

    store = RawStore(raw)  # re-read: spawned collective ranks appended to the same file
    records = [store.meta, *store.records()]
    summarize(records, say)
    profile = _fit(ctx, records, out)
    say(f"profile -> {out} ({time.monotonic() - t_start:.1f} s)")
    _report(args, profile, records, out)
    return 0


def say(text: str) -> None:
    print(f"perfmodel calibrate: {text}", file=sys.stderr, flush=True)


def _collectives(ctx, args, raw: Path, env: dict | None) -> None:
    from . import collectives as C
    from .benchmarks import sweeps
    from .raw import RawStore

    if env is not None:  # under torchrun: every rank is already running
        C.run_ranks(ctx, raw, env)
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
    C.spawn_local(args.device, bool(args.quick), raw, nprocs)


def _kernels(ctx, points, store) -> None:
    """Measure the single-device points not yet stored, each record as soon as it completes."""
    from .benchmarks import run_point
    from .device_info import Monitor
    from .raw import MAX_DEATHS, point_record

    if not points:
        return
    bar = Progress("kernels", len(points))
    current = None
    # NVML every 0.2 s; a CPU's frequency each second (reading it may interrupt the cores)
    with Monitor(ctx.sampler(), period_s=0.2 if ctx.kind == "cuda" else 1.0) as monitor:
        for point in points:
            if point.bench != current:  # free the previous bench's buffers
                ctx.release()
                current = point.bench
            if store.done(point.key):
                bar.step(skipped=True)
                continue
            if store.deadly(point.key):
                record = point_record(point.bench, point.params, status="oom", error=(
                    f"the process died {MAX_DEATHS} times while measuring this point (killed "
                    "by the kernel's out-of-memory killer?); skipped"))
            else:
                store.begin(point.key)
                record = run_point(ctx, point, env=monitor.window)
            store.add(record)
            bar.step(record)
    ctx.release()
    bar.close()


def summarize(records: list[dict], emit) -> dict:
    """Counts per bench and status, and how many points ran throttled (printed)."""
    counts: dict[str, Counter] = {}
    throttled, clocks = 0, []
    for r in records[1:]:
        counts.setdefault(r["bench"], Counter())[r["status"]] += 1
        env = r.get("env") or {}
        throttled += bool(env.get("throttled"))
        for key in ("sm_clock_mhz_min", "cpu_mhz_min"):
            if key in env:
                clocks.append(env[key])
    for bench, c in counts.items():
        emit(f"{bench:<11} " + ", ".join(f"{v} {k}" for k, v in sorted(c.items())))
    if throttled:
        emit(f"warning: {throttled} points ran with the clocks throttled (power or thermal "
             "slow-down, see each record's env.reasons): their times are pessimistic")
    if clocks:
        emit(f"lowest clock sampled per point: {min(clocks):g}-{max(clocks):g} MHz")
    return {"counts": {b: dict(c) for b, c in counts.items()}, "throttled_points": throttled}


def _fit(ctx, records: list[dict], out: Path):
    from ..specs import registry
    from .fit import fit_profile
    from .reference import write_profile

    device = registry.get_device(ctx.device_id) if ctx.device_id else None
    profile = fit_profile(
        records, device, kind="measured", profile_id=out.name.removesuffix(".json"),
        sources=[{"title": f"perfmodel calibrate on {ctx.name} (raw points: "
                           f"{out.name}.raw.jsonl)", "url": "local://perfmodel-calibrate"}])
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
