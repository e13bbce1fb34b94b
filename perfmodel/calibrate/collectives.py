"""Collectives through torch.distributed: NCCL on GPUs, gloo on CPUs.

Run under ``torchrun`` (every rank runs ``perfmodel calibrate``; see docs/calibration.md), or,
without it, in processes spawned here on this machine: one per GPU with NCCL, or ``spawn_ranks``
gloo processes on a CPU. Every rank runs the same points in the same order; rank 0 times its
own calls and writes the records.

Groups, as a parallel job lays them out (``torchrun`` numbers ranks node by node):
* ``intra``: consecutive ranks inside a node (tensor-parallel groups), group sizes 2, 4, ... up
  to the ranks per node;
* ``inter``: one rank per node (data-parallel groups across nodes), sizes 2, 4, ... up to the
  number of nodes. All groups of a layout run at the same time, so every GPU's share of the
  node's NICs and fabric is what a real job gets.

Sizes follow the nccl-tests "size" convention (nccl-tests doc/PERFORMANCE.md): ``bytes`` is
the whole buffer of all_reduce; the gathered (output) buffer of all_gather; the input buffer
of reduce_scatter; the per-rank send buffer of all_to_all (each peer gets bytes / n); the bytes
each rank sends for send_recv (a ring: every rank sends to the next and receives from the
previous at once). Bus bandwidth = bytes / time x 2(n-1)/n for all_reduce, x (n-1)/n for
all_gather, reduce_scatter and all_to_all, x 1 for send_recv.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from ..errors import PerfModelError
from .benchmarks import Context, Point, classify, coverage_order, sweeps
from .budget import TableBudget
from .device_info import Monitor
from .raw import RawStore, budget_record, point_record
from .timing import measure

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ELEM_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TIMEOUT = timedelta(minutes=10)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


# ---- planning -------------------------------------------------------------------------------
def message_sizes(cfg: dict) -> list[int]:
    """min_bytes x step^i up to max_bytes (max_bytes itself always included)."""
    sizes, s = [], int(cfg["min_bytes"])
    while s < cfg["max_bytes"]:
        sizes.append(s)
        s *= cfg["step"]
    return [*sizes, int(cfg["max_bytes"])]


def _powers_of_two_upto(n: int) -> list[int]:
    out, g = [], 2
    while g <= n:
        out.append(g)
        g *= 2
    if n >= 2 and n not in out:
        out.append(n)
    return out


def layouts(world: int, local_world: int) -> list[tuple[int, str]]:
    """(group size, scope) pairs that a world of ``world`` ranks, ``local_world`` per node, has."""
    local_world = min(local_world, world)
    nodes = world // local_world
    out = [(g, "intra") for g in _powers_of_two_upto(local_world) if local_world % g == 0]
    out += [(g, "inter") for g in _powers_of_two_upto(nodes) if nodes % g == 0]
    return out


def group_ranks(group_size: int, scope: str, world: int, local_world: int) -> list[list[int]]:
    """All groups of one layout (they partition the world)."""
    if scope == "intra":
        return [list(range(s, s + group_size)) for s in range(0, world, group_size)]
    nodes = world // local_world
    return [[(block + j) * local_world + i for j in range(group_size)]
            for block in range(0, nodes, group_size) for i in range(local_world)]


def plan_collectives(cfg: dict, world: int, local_world: int) -> list[Point]:
    """Points for every collective x layout x size (``coverage_order``); bytes are rounded down
    to a multiple of group size x element size so that every rank's share is whole."""
    esize = ELEM_BYTES[cfg["dtype"]]
    points = []
    for g, scope in layouts(world, local_world):
        for coll in cfg["collectives"]:
            for b in message_sizes(cfg):
                b -= b % (g * esize)
                if b > 0:
                    points.append(Point("collective", {
                        "collective": coll, "group_size": g, "scope": scope,
                        "dtype": cfg["dtype"], "bytes": b}))
    return coverage_order(points)


# ---- one point ------------------------------------------------------------------------------
def build(torch, dist, ctx: Context, p: dict, group, ranks: list[int], rank: int):
    """The call that moves ``p["bytes"]`` in the nccl-tests convention (module docstring)."""
    n, coll = p["group_size"], p["collective"]
    esize = ELEM_BYTES[p["dtype"]]
    count = p["bytes"] // esize
    dt = ctx.dtype(p["dtype"])

    def zeros(c, pool="a"):  # views of reusable, already-touched zero buffers
        return ctx.buffer(f"collective_{pool}", count * esize)[:c * esize].view(dt)

    if coll == "all_reduce":
        buf = zeros(count)
        return lambda: dist.all_reduce(buf, group=group)
    if coll == "all_gather":
        inp, out = zeros(count // n), zeros(count, "b")
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(out, inp, group=group)
    if coll == "reduce_scatter":
        inp, out = zeros(count), zeros(count // n, "b")
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: scatter(out, inp, group=group)
    if coll == "all_to_all":
        inp, out = zeros(count), zeros(count, "b")
        return lambda: dist.all_to_all_single(out, inp, group=group)
    if coll == "send_recv":
        i = ranks.index(rank)
        nxt, prv = ranks[(i + 1) % n], ranks[(i - 1) % n]
        sbuf, rbuf = zeros(count), zeros(count, "b")

        def ring():
            ops = [dist.P2POp(dist.isend, sbuf, nxt, group), dist.P2POp(dist.irecv, rbuf, prv, group)]
            for work in dist.batch_isend_irecv(ops):
                work.wait()

        return ring
    raise ValueError(f"unknown collective {coll!r}")


# ---- the distributed run --------------------------------------------------------------------
def dist_env() -> dict | None:
    """rank / world / local facts when launched by torchrun (WORLD_SIZE > 1), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return {"rank": int(os.environ.get("RANK", "0")), "world": world,
            "local_rank": int(os.environ.get("LOCAL_RANK", "0")), "local_world": local_world}


def run_ranks(ctx: Context, out_raw: str | Path, env: dict, progress: bool = True,
              table: TableBudget | None = None, run_start: str = "") -> int:
    """Every rank calls this with the same arguments; returns the number of points run.

    Rank 0 reads the raw store, decides the pending points and broadcasts them, so a resumed
    run skips what is stored on every rank alike. Rank 0's ``table`` budget decides, for every
    rank, whether a point starts and when its timing stops.
    """
    torch = ctx.torch
    import torch.distributed as dist

    rank, world = env["rank"], env["world"]
    backend = "nccl" if ctx.kind == "cuda" else "gloo"
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    initialised_here = not dist.is_initialized()
    if initialised_here:
        kw = {"device_id": torch.device(ctx.dev)} if ctx.kind == "cuda" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT, **kw)
    try:
        store = RawStore(out_raw) if rank == 0 else None
        pending = None
        planned = 0
        table = table or TableBudget("collective", math.inf, math.inf)
        if rank == 0:
            cfg = sweeps()["collective"][ctx.kind][ctx.mode]
            points = plan_collectives(cfg, world, env["local_world"])
            planned = len(points)
            pending = [p.params for p in points if not store.done(p.key)]
        box = [pending]
        dist.broadcast_object_list(box, src=0)
        pending = box[0]
        groups = {}
        for g, scope in dict.fromkeys((p["group_size"], p["scope"]) for p in pending):
            enumeration = group_ranks(g, scope, world, env["local_world"])
            mine, _ = dist.new_subgroups_by_enumeration(enumeration)
            groups[(g, scope)] = (mine, next(r for r in enumeration if rank in r))
        flag = torch.zeros(1, dtype=torch.int32, device=ctx.dev)

        def decide(done: bool) -> bool:  # rank 0 decides when everyone stops
            flag.fill_(int(done))
            dist.broadcast(flag, src=0)
            return bool(flag.item())

        bar = None
        if rank == 0 and progress:
            from .progress import Progress

            bar = Progress("collective", len(pending))
        with ExitStack() as stack:
            window = None
            if rank == 0:  # clocks and throttling during the run, as for the kernels
                window = stack.enter_context(Monitor(ctx.sampler(), period_s=0.5)).window
            for params in pending:
                if not decide(rank == 0 and table.admits(None)):
                    if bar:
                        bar.step(skipped=True)
                    continue  # out of time: every rank skips, as rank 0 says
                group, ranks = groups[(params["group_size"], params["scope"])]
                deadline = table.point_deadline() if rank == 0 else None
                record = _one(torch, dist, ctx, params, group, ranks, rank, decide, deadline)
                if rank == 0:
                    if window is not None:
                        record["env"] = window()
                    store.add(record)
                    if bar:
                        bar.step(record)
        if bar:
            bar.close()
        if rank == 0:
            store.add(budget_record(table.summary(planned), run_start))
        dist.barrier()
        return table.measured
    finally:
        if initialised_here:
            dist.destroy_process_group()


def _one(torch, dist, ctx: Context, params: dict, group, ranks, rank, decide,
         deadline: float | None = None) -> dict:
    """Build on every rank, agree that all could, time on every rank; rank 0's record."""
    err = None
    try:
        fn = build(torch, dist, ctx, params, group, ranks, rank)
    except Exception as e:  # e.g. out of memory on one rank: everyone must skip together
        err, fn = e, None
    failed = torch.tensor([int(err is not None)], dtype=torch.int32, device=ctx.dev)
    dist.all_reduce(failed, op=dist.ReduceOp.MAX)
    if failed.item():
        status, msg = classify(err) if err else ("error", "failed on another rank")
        return point_record("collective", params, status=status, error=msg)
    try:
        m = measure(fn, ctx.clock, ctx.rule, prepare=dist.barrier, decide=decide,
                    deadline=deadline)
    except Exception as e:  # symmetric failures (an unsupported collective) raise everywhere
        status, msg = classify(e)
        return point_record("collective", params, status=status, error=msg)
    return point_record("collective", params, time_s=m.median_s, stats=m.stats())


# ---- local processes --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_local(device: str, quick: bool, out_raw: str | Path, nprocs: int,
                progress: bool = True, table: TableBudget | None = None,
                run_start: str = "") -> None:
    """Run the collective sweep in ``nprocs`` fresh local processes (gloo on CPU, NCCL on GPU),
    started as torchrun would start them: same command, rank facts in the environment.

    Fresh interpreters (not multiprocessing) so that nothing depends on how the caller's main
    module is written; a rank that fails stops the others, and every rank ends with this
    process, even when it is killed (``die_with_parent``). ``table``: the collectives' share of
    the run's budget, passed to the ranks as seconds left.
    """
    port = free_port()
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "perfmodel.calibrate.collectives", "--device", device,
           "--raw", str(out_raw), *(["--quick"] if quick else []),
           *([] if progress else ["--no-progress"]), "--run-start", run_start,
           "--parent-pid", str(os.getpid())]
    if table is not None and math.isfinite(table.left_s()):
        cmd += ["--budget-s", f"{max(table.left_s(), 0.0):.3f}"]
    if table is not None and math.isfinite(table.point_s):
        cmd += ["--point-budget-s", str(table.point_s)]
    procs = []
    for rank in range(nprocs):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "WORLD_SIZE": str(nprocs), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(nprocs), "PYTHONPATH": pythonpath}
        procs.append(subprocess.Popen(cmd, env=env))
    failed = None
    try:
        while any(p.poll() is None for p in procs):
            bad = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if bad:
                failed = bad[0]
                break
            time.sleep(0.05)
        else:
            bad = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
            failed = bad[0] if bad else None
    finally:
        for p in procs:  # a failed or interrupted run: stop the ranks still waiting
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    if failed:
        raise PerfModelError(f"collective benchmark rank {failed[0]} exited with code "
                             f"{failed[1]} (its error is printed above)")


def main(argv=None) -> int:
    """One rank of a local collective sweep (started by ``spawn_local``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="perfmodel.calibrate.collectives")
    parser.add_argument("--device", choices=["cpu", "cuda"], required=True)
    parser.add_argument("--raw", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--budget-s", type=float, default=math.inf)
    parser.add_argument("--point-budget-s", type=float, default=math.inf)
    parser.add_argument("--run-start", default="")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    env = dist_env()
    if env is None:
        raise SystemExit("perfmodel.calibrate.collectives: needs RANK / WORLD_SIZE >= 2 "
                         "(started by perfmodel calibrate or torchrun)")
    ctx = Context(args.device, args.quick, local_rank=env["local_rank"])
    if args.device == "cpu":  # share the cores instead of oversubscribing them
        ctx.torch.set_num_threads(max(1, (os.cpu_count() or 1) // env["local_world"]))
    table = TableBudget("collective", args.budget_s, args.point_budget_s)
    run_ranks(ctx, args.raw, env, progress=not args.no_progress, table=table,
              run_start=args.run_start)
    return 0


def die_with_parent(parent_pid: int) -> None:
    """End this rank as soon as ``parent_pid`` (the ``perfmodel calibrate`` that spawned it)
    is gone, even when it was SIGKILLed and could not stop its children: Linux's
    prctl(PR_SET_PDEATHSIG, SIGKILL) (prctl(2)), and on any OS a thread that watches the
    parent pid."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(1)

    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
