"""A fitted table: its points, the core's time for them, and how to invert that time.

Every efficiency is the inverse of the core's own time formula (``perfmodel.profile``), so a
fitted curve reproduces its measurements when the core evaluates it: with a fixed time
(kernel overhead, attention floor, collective latency) t = fixed + bound / eff, hence
eff = bound / (t - fixed) (``invert_time``), ``bound`` coming from the core at unit efficiency
(``unit_profile``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ... import ops as O
from ...dtypes import nbytes
from ...profile import CalibrationProfile, Curve, DefaultEfficiency
from .curves import MIN_WORK_FRACTION, SMOOTH, fit_curve

# Without a launch benchmark (published CUDA-graph tables), the per-kernel overhead is this
# fraction of the smallest measured kernel time: the floor every kernel pays, less a margin
# so that the smallest kernel keeps a positive work term.
OVERHEAD_FLOOR_FRACTION = 0.95
# Grid nodes per axis before thinning, per table kind.
MAX_NODES = {"gemm": 80, "moe": 16, "attention": 24, "attention_scale": 12, "memory": 40,
             "collective": 40}


@dataclass
class Table:
    """One fitted curve: its points, the core's time for them, and how to invert it.

    ``implied(fit_idx)`` gives (efficiency, work share phi) of every point, with any fixed
    time (collective latency, attention floor) taken from the points ``fit_idx`` only;
    ``install(profile, curve, fit_idx)`` is ``profile`` with the curve (and that fixed time)
    where the core reads them; ``times(profile, idx)`` is the core's time of points ``idx``.
    ``smooth``: the weight of the curve's membrane penalty (``curves.fit_curve``), a property
    of the table family: ``curves.SMOOTH`` unless the family's module passes its own (MoE:
    ``moe.MOE_SMOOTH``, chosen by held-out error).
    """

    name: str
    kind: str  # gemm | moe | attention | memory | collective
    axes: tuple[str, ...]
    coords: np.ndarray  # (n, len(axes)), linear units
    measured: np.ndarray  # seconds
    records: list[dict]
    implied: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    install: Callable[[CalibrationProfile, Curve, np.ndarray], CalibrationProfile]
    times: Callable[[CalibrationProfile, np.ndarray], np.ndarray]
    smooth: float = SMOOTH

    def __len__(self) -> int:
        return len(self.measured)

    @property
    def eff(self) -> np.ndarray:
        return self.implied(np.arange(len(self)))[0]

    def fit(self, idx: np.ndarray | None = None) -> Curve:
        idx = np.arange(len(self)) if idx is None else idx
        eff, phi = self.implied(idx)
        return fit_curve(self.axes, self.coords[idx], eff[idx], work_fraction=phi[idx],
                         max_nodes=MAX_NODES[self.kind], smooth=self.smooth, space="auto")

    def predict(self, base: CalibrationProfile, curve: Curve, idx: np.ndarray,
                fit_idx: np.ndarray | None = None) -> np.ndarray:
        fit_idx = np.arange(len(self)) if fit_idx is None else fit_idx
        return self.times(self.install(base, curve, fit_idx), idx)


def ok_records(records: Iterable[dict], bench: str) -> list[dict]:
    """The records of ``bench`` that ran and have a positive finite time."""
    out = []
    for r in records:
        if r.get("bench") != bench or r.get("status", "ok") != "ok":
            continue
        t = r.get("time_s")
        if t is None or not np.isfinite(t) or t <= 0:
            continue
        out.append(r)
    return out


def invert_time(bound: np.ndarray, t: np.ndarray, fixed: float) -> tuple[np.ndarray, np.ndarray]:
    """(eff, phi) of t = fixed + bound / eff; a point at or below ``fixed`` keeps
    ``MIN_WORK_FRACTION`` of its time as work."""
    work = np.maximum(t - fixed, MIN_WORK_FRACTION * t)
    return bound / work, work / t


def precision_for(dtype: str, kv_dtype: str | None = None) -> O.Precision:
    """All operands in ``dtype`` (a microbenchmark's GEMM or attention)."""
    size = nbytes(dtype)
    return O.Precision(compute=dtype, act=size, weight=size,
                       kv=nbytes(kv_dtype) if kv_dtype else size)


def unit_profile(base: CalibrationProfile) -> CalibrationProfile:
    """Efficiency 1 everywhere, no overhead: op_times then returns the roofline bound (no
    ``attention_kernels``: a device below FlashAttention's capability would read the
    default profile's memory-efficient kernel's efficiency instead of 1)."""
    unit = DefaultEfficiency(gemm=1.0, attention=1.0, memory=1.0, collective=1.0,
                             collective_latency_s=0.0, network_step_latency_s=0.0)
    return base.model_copy(update={"defaults": unit, "kernel_overhead_s": 0.0, "gemm": {},
                                   "moe": {}, "moe_overhead_s": {}, "attention": {},
                                   "attention_kernels": [],
                                   "attention_overhead_s": {}, "memory": None,
                                   "collectives": []})
