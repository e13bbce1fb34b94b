"""Operator time on a device: the roofline bound under calibrated efficiencies.

For every operator (Williams et al. 2009, "Roofline", CACM 52(4)):

    compute = FLOPs / peak[dtype] + vector FLOPs / peak[fp32]
    memory  = bytes / HBM bandwidth
    GEMM, attention: time = max(compute, memory) / eff(shape) + overhead
    memory-bound kernels: time = max(compute, memory / eff_mem(bytes)) + overhead

The bound is the larger of the two terms *before* efficiencies, so "memory-bound" is a
statement about arithmetic intensity vs the device's ridge point, not about the fit.
Efficiencies of all operators of a class are evaluated in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import ATTENTION, GEMM, Op
from .profile import CalibrationProfile
from .specs.hardware import DeviceSpec


@dataclass(frozen=True)
class Roofline:
    """A device's peaks as the model uses them (profile overrides win: a measured CPU)."""

    device: DeviceSpec
    profile: CalibrationProfile

    def peak(self, dtype: str) -> float:
        measured = self.profile.peak_tflops.get(dtype)
        return measured * 1e12 if measured else self.device.peak_flops(dtype)

    @property
    def vector_peak(self) -> float:
        return self.peak("fp32")

    @property
    def bandwidth(self) -> float:
        bw = self.profile.memory_bandwidth_gbps
        return bw * 1e9 if bw else self.device.memory_bandwidth


@dataclass
class OpTimes:
    """Per-call times of a list of operators (arrays stacked on axis 0, one row per op)."""

    ops: list[Op]
    time: np.ndarray
    compute: np.ndarray
    memory: np.ndarray

    @property
    def compute_bound(self) -> np.ndarray:
        return self.compute >= self.memory

    def total(self) -> np.ndarray:
        """Sum over operators of count x time (the step's share of these operators)."""
        counts = stack([op.count for op in self.ops], self.time.shape[1:])
        return row_sum(counts * self.time, range(len(self.ops)))

    def by_class(self) -> dict[str, np.ndarray]:
        counts = stack([op.count for op in self.ops], self.time.shape[1:])
        weighted = counts * self.time
        out: dict[str, np.ndarray] = {}
        for i, op in enumerate(self.ops):
            out[op.cls] = out.get(op.cls, 0.0) + weighted[i]
        return out


def row_sum(matrix: np.ndarray, rows) -> np.ndarray | float:
    """Sum of ``matrix[i]`` over ``rows`` in a fixed order, so that a sweep of plans and a
    single plan give bit-identical totals (numpy's pairwise summation would not)."""
    acc = 0.0
    for i in rows:
        acc = acc + matrix[i]
    return acc


def stack(values: list, shape: tuple) -> np.ndarray:
    """Rows of ``values`` (scalars or arrays) broadcast to ``shape``, as one float array."""
    if not shape:
        return np.array(values, dtype=float)
    out = np.empty((len(values), *shape))
    for i, v in enumerate(values):
        out[i] = v
    return out


def op_times(ops: list[Op], roof: Roofline) -> OpTimes:
    """Time every operator; one efficiency lookup per class (and dtype / phase)."""
    shape = np.broadcast_shapes(*(x.shape for op in ops
                                  for x in (op.flops, op.bytes, op.count, op.vector_flops)
                                  if isinstance(x, np.ndarray)))
    flops = stack([op.flops for op in ops], shape)
    vec = stack([op.vector_flops for op in ops], shape)
    nbytes = stack([op.bytes for op in ops], shape)
    peaks = np.array([roof.peak(op.dtype) if op.cls in (GEMM, ATTENTION) else roof.vector_peak
                      for op in ops]).reshape((-1,) + (1,) * len(shape))
    compute = flops / peaks + vec / roof.vector_peak
    memory = nbytes / roof.bandwidth
    eff = np.ones_like(compute)
    profile = roof.profile
    rows_by_key: dict[tuple, list[int]] = {}
    for i, op in enumerate(ops):
        key = (op.cls, op.dtype if op.cls == GEMM else op.phase if op.cls == ATTENTION else "")
        rows_by_key.setdefault(key, []).append(i)
    memory_rows = []
    for (cls, sub), rows in rows_by_key.items():
        if cls == GEMM:
            m, n, k = (stack([ops[i].shape[j] for i in rows], shape) for j in range(3))
            eff[rows] = profile.gemm_efficiency(sub, m, n, k)
        elif cls == ATTENTION:
            q, kv = (stack([ops[i].shape[j] for i in rows], shape) for j in range(2))
            eff[rows] = profile.attention_efficiency(_attention_curve(sub), q, kv)
        else:
            memory_rows += rows
    time = np.maximum(compute, memory) / eff
    if memory_rows:
        mem_eff = profile.memory_efficiency(nbytes[memory_rows])
        time[memory_rows] = np.maximum(compute[memory_rows], memory[memory_rows] / mem_eff)
    time = time + profile.kernel_overhead_s
    return OpTimes(ops, time, compute, memory)


def _attention_curve(phase: str) -> str:
    """Decode kernels (one query token) and backward kernels have their own curves; forward
    and recompute passes use the prefill curve."""
    return {"decode": "decode", "bwd": "backward"}.get(phase, "prefill")
