"""One repetition loop for every measurement, on CPU and on CUDA.

The loop (``measure``) is shared; only the clock differs: ``time.perf_counter_ns`` on the CPU
(torch CPU ops return when their threads have joined) and a pair of CUDA events on a GPU.
Per repetition: ``prepare()`` outside the timed region (an L2 flush for kernels, a barrier for
collectives), then one timed call. Warm-up first; then repetitions until the 95 % confidence
interval of the median is narrower than ``rel_ci`` of the median, or a repetition / time cap,
or the point's deadline (``calibrate.budget``): no call starts that would end past it, once
one timed call has run.

The interval of the median is distribution-free: the order statistics x_(j) <= median <= x_(n+1-j)
with the smallest j whose binomial coverage 1 - 2 P(Bin(n, 1/2) <= j - 1) still reaches the
confidence (Le Boudec, "Performance Evaluation of Computer and Communication Systems", EPFL Press
2010, Thm. 2.1). Timing noise is skewed (interrupts, clock changes), so the median and the
p10/p90 spread are recorded rather than a mean and a standard deviation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True)
class StopRule:
    """When to stop repeating one point."""

    min_reps: int = 5
    max_reps: int = 200
    rel_ci: float = 0.02  # half-width of the 95 % CI of the median, relative to the median
    max_time_s: float = 2.0  # timed-loop wall-time cap per point (min_reps always run)
    warmup_reps: int = 2  # at least this many untimed calls ...
    warmup_s: float = 0.05  # ... and more until this much wall time has passed
    max_warmup_reps: int = 50


FULL = StopRule()
QUICK = StopRule(min_reps=3, max_reps=30, rel_ci=0.05, max_time_s=0.25, warmup_reps=1,
                 warmup_s=0.01, max_warmup_reps=10)


@dataclass(frozen=True)
class Measurement:
    """Summary of the timed repetitions of one point (seconds)."""

    median_s: float
    p10_s: float
    p90_s: float
    n: int
    ci_rel: float  # half-width of the 95 % CI of the median / median
    converged: bool  # ci_rel reached the rule's tolerance (else a cap stopped the loop)
    stopped_by: str = "converged"  # converged | max_reps | max_time | deadline

    def stats(self) -> dict:
        return {"p10": self.p10_s, "p90": self.p90_s, "n": self.n,
                "ci_rel": round(self.ci_rel, 5) if math.isfinite(self.ci_rel) else None,
                "converged": self.converged,
                "stopped_by": self.stopped_by}


def median_ci_rel(samples, confidence: float = 0.95) -> float:
    """Relative half-width of the distribution-free confidence interval of the median.

    With fewer than 6 samples no order-statistic interval reaches 95 % coverage; the full
    range (j = 1) is used then, the widest honest interval available.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n < 2:
        return math.inf
    j = _lower_rank(n, confidence)
    median = float(np.median(x))
    if median <= 0:
        return math.inf
    return float(x[n - j] - x[j - 1]) / (2.0 * median)


@cache
def _lower_rank(n: int, confidence: float) -> int:
    """Largest 1-based rank j with P(x_(j) <= median <= x_(n+1-j)) >= confidence (at least 1).

    The coverage is 1 - 2 P(Bin(n, 1/2) <= j - 1).
    """
    j, tail = 1, 1 / 2.0**n  # tail = P(Bin(n, 1/2) <= j - 1)
    while j + 1 <= n // 2:
        nxt = tail + math.comb(n, j) / 2.0**n  # the tail for rank j + 1
        if 1.0 - 2.0 * nxt < confidence:
            break
        j, tail = j + 1, nxt
    return j


class CpuClock:
    """Wall clock; torch CPU kernels are synchronous."""

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()

    def stop(self) -> float:
        return (time.perf_counter_ns() - self._t0) * 1e-9


class CudaClock:
    """CUDA events on the current stream; ``stop`` waits for the end event."""

    def __init__(self, torch) -> None:
        self._a = torch.cuda.Event(enable_timing=True)
        self._b = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._a.record()

    def stop(self) -> float:
        self._b.record()
        self._b.synchronize()
        return self._a.elapsed_time(self._b) * 1e-3  # ms -> s


def make_clock(torch, device: str):
    return CudaClock(torch) if device == "cuda" else CpuClock()


class CacheFlusher:
    """Writes a buffer twice the size of the cache before each repetition (cold-cache timing).

    ``nbytes`` is the size of the cache to evict: the GPU's L2, or on a CPU the private L2 of all
    cores (the shared L3 of a server CPU, hundreds of MiB, is too large to flush per repetition;
    the memory sweep measures beyond it instead).
    """

    def __init__(self, torch, device: str, nbytes: int) -> None:
        self.nbytes = 2 * int(nbytes)
        self._buf = torch.empty(self.nbytes, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        self._buf.zero_()


def measure(fn: Callable[[], object], clock, rule: StopRule,
            prepare: Callable[[], object] | None = None,
            decide: Callable[[bool], bool] | None = None,
            deadline: float | None = None) -> Measurement:
    """Time ``fn`` until the median is stable (see module docstring).

    ``decide(done) -> done`` lets several processes agree on when to stop (collectives: every
    rank must run the same number of calls); by default each process decides for itself.
    ``deadline`` (a ``time.perf_counter()`` value) ends warm-up and timing early: a call that
    would end past it is not started, except the first timed one.
    """
    decide = decide or (lambda done: done)

    def out_of_time(last_call_s: float) -> bool:
        return deadline is not None and time.perf_counter() + last_call_s > deadline

    t_end = time.perf_counter() + rule.warmup_s
    i = 0
    while True:
        if prepare is not None:
            prepare()
        t_call = time.perf_counter()
        fn()
        last = time.perf_counter() - t_call
        i += 1
        done = i >= rule.max_warmup_reps or out_of_time(2 * last) or (
            i >= rule.warmup_reps and time.perf_counter() >= t_end)
        if decide(done):
            break
    samples: list[float] = []
    t0 = time.perf_counter()
    while True:
        if prepare is not None:
            prepare()
        clock.start()
        fn()
        samples.append(clock.stop())
        n = len(samples)
        ci = median_ci_rel(samples) if n >= rule.min_reps else math.inf
        reason = ("max_reps" if n >= rule.max_reps
                  else "deadline" if out_of_time(samples[-1])
                  else None if n < rule.min_reps
                  else "converged" if ci <= rule.rel_ci
                  else "max_time" if time.perf_counter() - t0 >= rule.max_time_s else None)
        if decide(reason is not None):
            break
    x = np.asarray(samples)
    ci = median_ci_rel(x)
    return Measurement(median_s=float(np.median(x)), p10_s=float(np.percentile(x, 10)),
                       p90_s=float(np.percentile(x, 90)), n=len(x), ci_rel=ci,
                       converged=ci <= rule.rel_ci, stopped_by=reason or "agreed")
