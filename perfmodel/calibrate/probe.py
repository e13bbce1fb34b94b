"""Which dtypes this device runs at speed: one small GEMM per dtype before the sweeps.

A PyTorch build may run a dtype through a slow fallback rather than refuse it: torch
2.13.0+cpu runs ``torch._scaled_mm`` in fp8 on some x86 CPUs at ~0.1 GFLOP/s and fp16
matmuls on others at ~0.5 GFLOP/s, against hundreds for bf16 (ENVIRONMENT.md; measured on
the project's 2-core CI machines). Sweeping such a dtype takes minutes a point and measures the
fallback, not the hardware. So each dtype is timed once on the same GEMM (``probe`` in
sweeps.yaml); one more than ``slower_than_best`` times slower than the fastest dtype is treated
as a GPU treats fp8 it lacks: its GEMM and attention points are recorded ``unsupported`` with
the probed rate, and the fit falls back to a related dtype's curve (``profile.gemm_efficiency``).

The probe's rates also predict how long one call of a point takes (``predicted_call_s``), so
that the time budget (``budget.py``) does not start a point that cannot finish in time.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

from .benchmarks import Context, Point, attention_gflop, build_gemm, classify, sweeps
from .raw import point_record
from .timing import StopRule, measure

PROBED_BENCHES = ("gemm", "attention")  # matmul-based tables: a dtype's probe rules for them

# One warm-up call, then timed calls for at most max_s: a slow dtype costs two calls.
PROBE_RULE = StopRule(min_reps=3, max_reps=10, rel_ci=0.05, max_time_s=0.05, warmup_reps=1,
                      warmup_s=0.0, max_warmup_reps=3)


@dataclass(frozen=True)
class DtypeRate:
    dtype: str
    gflops: float | None  # None: the probe GEMM failed (see ``error``)
    error: str | None = None  # why the dtype is skipped, None when it is swept

    @property
    def supported(self) -> bool:
        return self.error is None


def probe_points(dtypes) -> list[Point]:
    cfg = sweeps()["probe"]
    return [Point("probe", {"dtype": d, "m": cfg["m"], "n": cfg["n"], "k": cfg["k"]})
            for d in dict.fromkeys(dtypes)]


def run_probe(ctx: Context, point: Point) -> dict:
    """Time the probe GEMM of one dtype (a record; never raises except on Ctrl-C)."""
    p = point.params
    try:
        with ExitStack() as stack:
            kernel = build_gemm(ctx, p, stack)
            deadline = time.perf_counter() + sweeps()["probe"]["max_s"]
            m = measure(kernel.fn, ctx.clock, PROBE_RULE, deadline=deadline)
    except Exception as err:
        status, message = classify(err)
        return point_record("probe", p, status=status, error=message)
    return point_record("probe", p, time_s=m.median_s, stats=m.stats())


def rates(records: list[dict]) -> dict[str, DtypeRate]:
    """The verdict per probed dtype from stored probe records (module docstring)."""
    factor = sweeps()["probe"]["slower_than_best"]
    gflops = {}
    out = {}
    for r in records:
        if r.get("bench") != "probe":
            continue
        p, d = r["params"], r["params"]["dtype"]
        if r["status"] == "ok" and r["time_s"]:
            gflops[d] = 2.0 * p["m"] * p["n"] * p["k"] / r["time_s"] / 1e9
        else:
            out[d] = DtypeRate(d, None, f"unsupported (the probe GEMM failed: {r['error']})")
    if gflops:
        best = max(gflops, key=gflops.get)
        for d, g in gflops.items():
            slow = gflops[best] / g
            error = None
            if slow > factor:
                error = (f"unsupported (emulated, {g:.3g} GFLOP/s: {slow:.0f}x slower than "
                         f"{best} in the dtype probe; skipped)")
            out[d] = DtypeRate(d, g, error)
    return out


def predicted_call_s(point: Point, probed: dict[str, DtypeRate]) -> float | None:
    """One call's time at the probed rate of its dtype: GEMM and attention points (None for
    the others, or a dtype not probed)."""
    p = point.params
    rate = probed.get(p.get("dtype", ""))
    if rate is None or not rate.gflops:
        return None
    if point.bench == "gemm":
        return 2.0 * p["m"] * p["n"] * p["k"] / 1e9 / rate.gflops
    if point.bench == "attention":
        return attention_gflop(p) / rate.gflops
    return None


def skipped_record(point: Point, rate: DtypeRate) -> dict:
    """The record of a point whose dtype the probe ruled out."""
    return point_record(point.bench, point.params, status="unsupported", error=rate.error)
