"""Fit raw microbenchmark records into a calibration profile, with honest held-out errors.

Every efficiency is the inverse of the core's own time formula (``perfmodel.profile``), so a
fitted curve reproduces its measurements when the core evaluates it:

* GEMM, attention: ``eff = bound / (t - fixed)``, ``bound`` = max(compute, memory) of the
  same operator as ``perfmodel.ops`` builds it (``ops.gemm``; ``ops.attention_ops`` with its
  FlashAttention IO model and causal pairs, and ``ops.backward`` for the backward pass:
  reused, not re-derived), from ``roofline.op_times`` with unit efficiency; ``fixed`` is
  ``kernel_overhead_s`` (plus, for attention, ``attention_overhead_s[phase]``);
* memory-bound kernels: ``eff = (bytes / bw) / (t - kernel_overhead_s)``;
* collectives: ``comm.collective_time`` / ``comm.p2p_time`` solved for ``eff`` at every
  measured size, with the nccl-tests bus factors (``comm.bus_factor``).

Fixed times. ``kernel_overhead_s``: the launch benchmark's median, or (published CUDA-graph
tables, which carry no launch cost) 0.95 x the smallest kernel time, the floor every kernel
pays. An attention op runs several kernels, so a table that sweeps down to its own floor
gets ``attention_overhead_s[phase]`` = 0.95 x its fastest call - kernel_overhead_s. A
collective's latency makes its fixed time 0.95 x the table's fastest call.

Curves are multilinear on a log2 grid (``profile.Curve``). The grid nodes are the distinct
measured log2 coordinates (thinned to evenly spaced ranks when there are too many). Node
values minimise the points' relative time errors, each weighted by the share of its time
that depends on the curve, plus a small first-difference ("membrane") penalty; where many
configurations share one node (attention over batch and heads) the unknowns are inverse
efficiencies, in which time is linear (``fit_curve``). The penalty fills nodes without data
with a discrete-harmonic average of their neighbours (scattered-data interpolation on a
grid) and holds the nearest value beyond the data: the curve never extrapolates a trend.

Held-out error, honestly: each table is split at random (seeded per table) into a fitted
part and a test part; fixed times are taken from the fitted part only, and the test points
are predicted THROUGH THE CORE (``op_times``, ``collective_time``, ``p2p_time``) with a
profile holding the curve fitted on the other points. That gives ``FitError`` and
``uncertainty[table]`` (p90 of |log(predicted / measured)| on the test part). The shipped
curve is then refitted on all points. Errors are fractions (``median_ape`` 0.05 = 5 %).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from .. import ops as O
from ..comm import bus_factor, collective_time, intra_bandwidth, network_steps, p2p_time
from ..dtypes import BYTES, nbytes
from ..errors import SpecError
from ..profile import (
    CalibrationProfile,
    CollectiveFit,
    Curve,
    DefaultEfficiency,
    FitError,
    default_profile,
)
from ..roofline import Roofline, op_times
from ..specs.common import Source
from ..specs.hardware import DeviceSpec, InterconnectSpec
from ..specs.model import ModelSpec
from ..specs.system import System
from ..topology import GroupSpan

KERNEL_BENCHES = ("gemm", "attention", "memory", "elementwise")
# Without a launch benchmark (published CUDA-graph tables), the per-kernel overhead is this
# fraction of the smallest measured kernel time: the floor every kernel pays, less a margin
# so that the smallest kernel keeps a positive work term.
OVERHEAD_FLOOR_FRACTION = 0.95
# A kernel measured at or below the overhead keeps this fraction of its time as work.
MIN_WORK_FRACTION = 0.05
# Collectives: latency chosen so that the fixed time is this fraction of the fastest call.
LATENCY_FLOOR_FRACTION = 0.95
# Grid nodes per axis before thinning, per table kind.
MAX_NODES = {"gemm": 80, "attention": 24, "memory": 40, "collective": 40}
GRID_DECIMALS = 6  # log2 grid nodes are stored to 1e-6 (m = 4352 and 4353 stay apart)
SMOOTH = 0.01  # membrane penalty weight (relative units)
MIN_TEST_POINTS = 3  # tables with fewer points get no held-out test
# Elements moved (read + written) per output element of an elementwise op, matching
# perfmodel.ops: binary ops read two inputs, unary ops and norms one; gated activations
# (SiLU-and-mul, GeGLU) read two halves per output element.
ELEMENTWISE_IO = {
    "add": 3.0, "sub": 3.0, "mul": 3.0, "residual": 3.0, "triad": 3.0,
    "copy": 2.0, "scale": 2.0, "relu": 2.0, "gelu": 2.0, "silu": 2.0, "exp": 2.0, "neg": 2.0,
    "softmax": 2.0, "layernorm": 2.0, "rmsnorm": 2.0, "cast": 2.0,
    "silu_and_mul": 3.0, "swiglu": 3.0, "geglu": 3.0,
}


# ---- curve fitting on a log2 grid ---------------------------------------------------------

def grid_nodes(log2_values: np.ndarray, max_nodes: int) -> np.ndarray:
    """The distinct values (to 1e-9), thinned to ``max_nodes`` evenly spaced ranks (the
    extremes always kept)."""
    u = np.unique(np.round(np.asarray(log2_values, float), 9))
    if len(u) > max_nodes:
        u = u[np.unique(np.round(np.linspace(0, len(u) - 1, max_nodes)).astype(int))]
    return u


def interpolation_matrix(grids: Sequence[np.ndarray], log2_points: np.ndarray) -> sp.csr_matrix:
    """Sparse weights W with (W @ values) = Curve(points): the same clamped multilinear
    scheme as ``Curve.__call__``."""
    npts = log2_points.shape[0]
    shape = tuple(len(g) for g in grids)
    idx, frac = [], []
    for j, g in enumerate(grids):
        u = log2_points[:, j]
        if len(g) == 1:
            idx.append(np.zeros(npts, dtype=np.intp))
            frac.append(np.zeros(npts))
            continue
        u = np.clip(u, g[0], g[-1])
        i = np.clip(np.searchsorted(g, u, side="right") - 1, 0, len(g) - 2)
        idx.append(i)
        frac.append((u - g[i]) / (g[i + 1] - g[i]))
    rows, cols, vals = [], [], []
    for corner in np.ndindex(*(2 if len(g) > 1 else 1 for g in grids)):
        weight = np.ones(npts)
        index = []
        for c, i, f in zip(corner, idx, frac, strict=True):
            weight = weight * (f if c else 1.0 - f)
            index.append(i + c)
        rows.append(np.arange(npts))
        cols.append(np.ravel_multi_index(tuple(index), shape))
        vals.append(weight)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(npts, int(np.prod(shape))))


def _difference_operator(shape: tuple[int, ...]) -> sp.csr_matrix:
    """First differences between neighbouring nodes along every axis (C-order grid)."""
    blocks = []
    for j, nj in enumerate(shape):
        if nj < 2:
            continue
        diff = sp.diags([-np.ones(nj - 1), np.ones(nj - 1)], [0, 1], shape=(nj - 1, nj))
        op = sp.identity(1, format="csr")
        for i, ni in enumerate(shape):
            op = sp.kron(op, diff if i == j else sp.identity(ni), format="csr")
        blocks.append(op)
    if not blocks:
        return sp.csr_matrix((0, int(np.prod(shape))))
    return sp.vstack(blocks, format="csr")


def fit_curve(axes: Sequence[str], coords: np.ndarray, eff: np.ndarray, *,
              work_fraction: np.ndarray | None = None, max_nodes: int = 40,
              smooth: float | None = None, space: str = "auto") -> Curve:
    """A ``Curve`` over ``axes`` (coords: one column per axis, linear units) fitted to the
    efficiencies ``eff`` the points imply.

    Objective: the points' relative time errors plus a membrane penalty on neighbouring
    nodes. With A the ``Curve`` interpolation and phi = (t - fixed time) / t the share of a
    point's time that depends on the curve (``work_fraction``; 1 if not given), a point's
    relative time error is phi (eff / c - 1) for a curve value c. ``space="eff"`` solves for
    c linearised at the measured eff (residual phi (A c - eff) / eff): exact when each node
    carries one point. ``space="inverse"`` solves for u = 1/c (residual phi (eff A u - 1)),
    exact for any number of points per node, the right choice when configurations that the
    curve's axes do not separate are pooled (attention over batch and heads; copy, read and
    write of one size). ``space="auto"``: inverse when two points share coordinates. Either
    way a kernel whose time is mostly fixed overhead barely pulls on the curve, as its time
    barely depends on it.
    """
    coords = np.asarray(coords, float)
    coords = coords[:, None] if coords.ndim == 1 else coords
    eff = np.asarray(eff, float)
    phi = np.ones(len(eff)) if work_fraction is None else np.clip(
        np.asarray(work_fraction, float), MIN_WORK_FRACTION, 1.0)
    ok = np.isfinite(eff) & (eff > 0) & np.all(coords > 0, axis=1)
    coords, eff, phi = coords[ok], eff[ok], phi[ok]
    if len(eff) == 0:
        raise SpecError("fit_curve: no valid points")
    logc = np.log2(coords)
    grids = [np.unique(np.round(grid_nodes(logc[:, j], max_nodes), GRID_DECIMALS))
             for j in range(len(axes))]
    a = interpolation_matrix(grids, logc)
    d = _difference_operator(tuple(len(g) for g in grids))
    pooled = len(np.unique(coords, axis=0)) < len(coords)
    inverse = space == "inverse" or (space == "auto" and pooled)
    typical = float(np.median(eff))
    aw = sp.diags(phi * eff if inverse else phi / eff) @ a
    scale = (SMOOTH if smooth is None else smooth) * (typical if inverse else 1.0 / typical)
    lhs = (aw.T @ aw + (scale**2) * (d.T @ d)).tocsc()
    rhs = aw.T @ phi
    x = np.atleast_1d(spsolve(lhs, rhs)) if lhs.shape[0] > 1 else \
        np.array([float(rhs[0] / lhs[0, 0])])
    values = 1.0 / np.clip(x, 0.5 / eff.max(), 2.0 / eff.min()) if inverse else \
        np.clip(x, 0.5 * eff.min(), 2.0 * eff.max())
    return Curve(axes=tuple(axes), log2_grid=tuple(tuple(float(v) for v in g) for g in grids),
                 values=tuple(round4(v) for v in values))


def round4(x: float) -> float:
    """Four significant digits (keeps shipped JSON small)."""
    return float(f"{float(x):.4g}")


# ---- held-out split and errors -------------------------------------------------------------

def holdout_split(n: int, holdout: float, seed: int, table: str) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, test indices): a random, disjoint split seeded by ``seed`` and the table
    name; no test part for tables of fewer than ``MIN_TEST_POINTS`` points."""
    idx = np.arange(n)
    if n < MIN_TEST_POINTS or holdout <= 0:
        return idx, idx[:0]
    rng = np.random.default_rng([seed, zlib.crc32(table.encode())])
    perm = rng.permutation(n)
    n_test = min(n - 2, max(1, round(holdout * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def errors(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float, float]:
    """(median APE, p90 APE, p90 |log ratio|) of predicted vs measured times."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    ape = np.abs(predicted - measured) / measured
    logr = np.abs(np.log(predicted / measured))
    return (float(np.median(ape)), float(np.percentile(ape, 90)),
            float(np.percentile(logr, 90)))


# ---- tables --------------------------------------------------------------------------------

@dataclass
class Table:
    """One fitted curve: its points, the core's time for them, and how to invert it.

    ``implied(fit_idx)`` gives (efficiency, work share phi) of every point, with any fixed
    time (collective latency, attention floor) taken from the points ``fit_idx`` only;
    ``install(profile, curve, fit_idx)`` is ``profile`` with the curve (and that fixed time)
    where the core reads them; ``times(profile, idx)`` is the core's time of points ``idx``.
    """

    name: str
    kind: str  # gemm | attention | memory | collective
    axes: tuple[str, ...]
    coords: np.ndarray  # (n, len(axes)), linear units
    measured: np.ndarray  # seconds
    records: list[dict]
    implied: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    install: Callable[[CalibrationProfile, Curve, np.ndarray], CalibrationProfile]
    times: Callable[[CalibrationProfile, np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return len(self.measured)

    @property
    def eff(self) -> np.ndarray:
        return self.implied(np.arange(len(self)))[0]

    def fit(self, idx: np.ndarray | None = None) -> Curve:
        idx = np.arange(len(self)) if idx is None else idx
        eff, phi = self.implied(idx)
        return fit_curve(self.axes, self.coords[idx], eff[idx], work_fraction=phi[idx],
                         max_nodes=MAX_NODES[self.kind], space="auto")

    def predict(self, base: CalibrationProfile, curve: Curve, idx: np.ndarray,
                fit_idx: np.ndarray | None = None) -> np.ndarray:
        fit_idx = np.arange(len(self)) if fit_idx is None else fit_idx
        return self.times(self.install(base, curve, fit_idx), idx)


def _ok(records: Iterable[dict], bench: str) -> list[dict]:
    out = []
    for r in records:
        if r.get("bench") != bench or r.get("status", "ok") != "ok":
            continue
        t = r.get("time_s")
        if t is None or not np.isfinite(t) or t <= 0:
            continue
        out.append(r)
    return out


def _inverse(bound: np.ndarray, t: np.ndarray, fixed: float) -> tuple[np.ndarray, np.ndarray]:
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
    """Efficiency 1 everywhere, no overhead: op_times then returns the roofline bound."""
    unit = DefaultEfficiency(gemm=1.0, attention=1.0, memory=1.0, collective=1.0,
                             collective_latency_s=0.0, network_step_latency_s=0.0)
    return base.model_copy(update={"defaults": unit, "kernel_overhead_s": 0.0, "gemm": {},
                                   "attention": {}, "attention_overhead_s": {}, "memory": None,
                                   "collectives": []})


def _gemm_op(recs: list[dict], dtype: str) -> O.Op:
    m, n, k = (np.array([r["params"][x] for r in recs], float) for x in ("m", "n", "k"))
    return O.gemm("gemm", m, n, k, precision_for(dtype))


def gemm_tables(records: list[dict], device: DeviceSpec, base: CalibrationProfile) -> list[Table]:
    """Per dtype: efficiency over (m, n, k) of ``ops.gemm`` (bytes = (mk + kn + mn) x size)."""
    by_dtype: dict[str, list[dict]] = defaultdict(list)
    for r in _ok(records, "gemm"):
        by_dtype[r["params"]["dtype"]].append(r)
    unit = Roofline(device, unit_profile(base))
    tables = []
    for dtype, recs in sorted(by_dtype.items()):
        op = _gemm_op(recs, dtype)
        t = np.array([r["time_s"] for r in recs])
        inv = _inverse(op_times([op], unit).time[0], t, base.kernel_overhead_s)

        def times(prof, idx, dtype=dtype, recs=recs):
            return op_times([_gemm_op([recs[i] for i in idx], dtype)],
                            Roofline(device, prof)).time[0]

        def install(prof, curve, fit_idx, dtype=dtype):
            return prof.model_copy(update={"gemm": {**prof.gemm, dtype: curve}})

        tables.append(Table(f"gemm.{dtype}", "gemm", ("m", "n", "k"), np.stack(op.shape, axis=1),
                            t, recs, lambda idx, inv=inv: inv, install, times))
    return tables


def _attention_model(heads: int, kv_heads: int, head_dim: int) -> ModelSpec:
    """The smallest ModelSpec that gives ``ops.attention_ops`` these heads."""
    return ModelSpec(id="attention-bench", name="attention microbenchmark", num_layers=1,
                     hidden_size=heads * head_dim, num_heads=heads, num_kv_heads=kv_heads,
                     head_dim=head_dim, ffn_hidden_size=1, vocab_size=1)


def attention_op(recs: list[dict]) -> O.Op:
    """The core's attention operator (``ops.attention_ops``, FlashAttention IO, causal pairs;
    ``ops.backward`` for the backward phase) for records sharing heads, head_dim, dtypes,
    causality and phase; batch, q_len and kv_len broadcast over the records."""
    p0 = recs[0]["params"]
    b, q, kv = (np.array([r["params"][x] for r in recs], float)
                for x in ("batch", "q_len", "kv_len"))
    prec = precision_for(p0.get("dtype", "bf16"), p0.get("kv_dtype"))
    model = _attention_model(int(p0["heads"]), int(p0.get("kv_heads") or p0["heads"]),
                             int(p0["head_dim"]))
    pairs = O.attention_pairs(q, kv, bool(p0.get("causal", True)))
    phase = p0["phase"]
    (op,) = O.attention_ops(model, b, q, kv, pairs, O.Shard(), prec, True,
                            "decode" if phase == "decode" else "prefill")
    if phase == "backward":
        (op,) = O.backward(op, prec)
    return op


def _attention_point(p: dict) -> tuple:
    """The record's coordinates on its phase's curve, as the core places the same call
    (``ops.attention_curve_point``)."""
    kv_heads = int(p.get("kv_heads") or p["heads"])
    return O.attention_curve_point(p["phase"], p["batch"], p["q_len"], p["kv_len"], kv_heads)


def _attention_key(p: dict) -> tuple:
    return (p["phase"], int(p["heads"]), int(p.get("kv_heads") or p["heads"]),
            int(p["head_dim"]), p.get("dtype", "bf16"), p.get("kv_dtype"),
            bool(p.get("causal", True)))


@cache
def core_applies_attention_overhead() -> bool:
    """Whether ``roofline.op_times`` adds ``profile.attention_overhead_s`` (a schema field
    the calibration fit introduced; probed once so that the held-out predictions are always
    the core's, with the fixed time added here only while the core does not add it)."""
    dev = _host_device({"bf16": 1.0}, 1.0, {})
    prof = default_profile().model_copy(update={"kernel_overhead_s": 0.0,
                                                "attention_overhead_s": {"prefill": 1.0}})
    op = attention_op([{"params": {"phase": "prefill", "batch": 1, "heads": 1, "head_dim": 8,
                                   "q_len": 1, "kv_len": 1}}])
    return bool(np.all(np.asarray(op_times([op], Roofline(dev, prof)).time[0]) >= 1.0))


def attention_times(recs: list[dict], roof: Roofline) -> np.ndarray:
    """Core times of attention records, one op_times call per group of equal heads."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        groups[_attention_key(r["params"])].append(i)
    out = np.empty(len(recs))
    for rows in groups.values():
        out[rows] = op_times([attention_op([recs[i] for i in rows])], roof).time[0]
    if not core_applies_attention_overhead():
        extra = roof.profile.attention_overhead_s
        out += np.array([extra.get(r["params"]["phase"], 0.0) for r in recs])
    return out


def attention_floor(t: np.ndarray, bound: np.ndarray, overhead: float) -> float:
    """Fixed time per attention call beyond ``overhead``: ``OVERHEAD_FLOOR_FRACTION`` of the
    fastest call, less the kernel overhead, when the table sweeps down to the latency floor
    (>= 20 points spanning >= 100x in roofline bound); else 0."""
    if len(t) < 20 or bound.max() < 100 * bound.min():
        return 0.0
    return max(0.0, OVERHEAD_FLOOR_FRACTION * float(t.min()) - overhead)


def fastest_backend(recs: list[dict]) -> str | None:
    """The backend with the lowest geometric-mean time over the points every backend ran:
    the one a framework's dispatcher would use. One curve per phase cannot hold two kernels
    (a fused flash kernel and the unfused "math" path differ several-fold)."""
    by_backend: dict[str, dict[str, float]] = defaultdict(dict)
    for r in recs:
        p = r["params"]
        shape = tuple(sorted((k, str(v)) for k, v in p.items() if k != "backend"))
        by_backend[p.get("backend")][shape] = r["time_s"]
    if len(by_backend) < 2:
        return next(iter(by_backend), None)
    common = set.intersection(*(set(v) for v in by_backend.values()))
    if not common:  # no shared points: the backend that ran the most of them
        return max(by_backend, key=lambda b: len(by_backend[b]))
    return min(by_backend, key=lambda b: sum(np.log(by_backend[b][k]) for k in common))


def attention_tables(records: list[dict], device: DeviceSpec,
                     base: CalibrationProfile) -> list[Table]:
    """Per phase (prefill, decode, backward): efficiency over (q_len, kv_len) of the
    fastest backend (``fastest_backend``), and the phase's fixed time per call
    (``attention_floor``)."""
    by_phase: dict[str, list[dict]] = defaultdict(list)
    for r in _ok(records, "attention"):
        p = r["params"]
        if int(p["heads"]) % int(p.get("kv_heads") or p["heads"]) == 0:
            by_phase[p["phase"]].append(r)
    for phase, recs in by_phase.items():
        best = fastest_backend(recs)
        by_phase[phase] = [r for r in recs if r["params"].get("backend") == best]
    unit = Roofline(device, unit_profile(base))
    overhead = base.kernel_overhead_s
    tables = []
    for phase, recs in sorted(by_phase.items()):
        t = np.array([r["time_s"] for r in recs])
        bound = attention_times(recs, unit)
        coords = np.array([_attention_point(r["params"]) for r in recs], float)

        def floor(idx, t=t, bound=bound):
            return attention_floor(t[idx], bound[idx], overhead)

        def implied(fit_idx, t=t, bound=bound, floor=floor):
            return _inverse(bound, t, overhead + floor(fit_idx))

        def install(prof, curve, fit_idx, phase=phase, floor=floor):
            extra = {k: v for k, v in prof.attention_overhead_s.items() if k != phase}
            if floor(fit_idx) > 0:
                extra[phase] = round4(floor(fit_idx))
            return prof.model_copy(update={"attention": {**prof.attention, phase: curve},
                                           "attention_overhead_s": extra})

        def times(prof, idx, recs=recs):
            return attention_times([recs[i] for i in idx], Roofline(device, prof))

        axes = ("streams", "kv_len") if phase == "decode" else ("q_len", "kv_len")
        tables.append(Table(f"attention.{phase}", "attention", axes, coords, t,
                            recs, implied, install, times))
    return tables


def elementwise_bytes(p: dict) -> float:
    """Bytes an elementwise record moves (explicit ``bytes``, else elems x IO x dtype size)."""
    if p.get("bytes"):
        return float(p["bytes"])
    return float(p["elems"]) * ELEMENTWISE_IO.get(p["op"], 2.0) * BYTES[p.get("dtype", "fp32")]


def record_bytes(r: dict) -> float:
    return float(r["params"]["bytes"]) if r["bench"] == "memory" else elementwise_bytes(r["params"])


def memory_table(recs: list[dict], device: DeviceSpec, base: CalibrationProfile,
                 name: str = "memory") -> Table:
    """Memory-bound kernels (``memory`` records: bytes moved; ``elementwise``: see
    ``elementwise_bytes``): efficiency over bytes of t = bytes / (bw eff) + overhead."""
    nb = np.array([record_bytes(r) for r in recs])
    t = np.array([r["time_s"] for r in recs])
    inv = _inverse(nb / Roofline(device, base).bandwidth, t, base.kernel_overhead_s)

    def times(prof, idx):
        op = O.Op("memory", O.ELEMENTWISE, 0.0, nb[idx], "fp32")
        return op_times([op], Roofline(device, prof)).time[0]

    def install(prof, curve, fit_idx):
        return prof.model_copy(update={"memory": curve})

    return Table(name, "memory", ("bytes",), nb[:, None], t, recs, lambda idx: inv, install,
                 times)


def elementwise_op(p: dict) -> O.Op:
    """The core's operator for an elementwise record (``ops.elementwise`` of that kind)."""
    io = ELEMENTWISE_IO.get(p["op"], 2.0)
    elems = float(p["elems"])
    return O.elementwise(p["op"], (io - 1.0) * elems, elems, BYTES[p.get("dtype", "fp32")],
                         kind=p["op"])


def elementwise_rate(recs: list[dict], overhead: float) -> float:
    """Best element rate of a kernel kind (elements / second of kernel time)."""
    return max(float(r["params"]["elems"]) / max(r["time_s"] - overhead, 1e-12) for r in recs)


def elementwise_times(recs: list[dict], device: DeviceSpec, prof: CalibrationProfile
                      ) -> np.ndarray:
    return np.array([float(op_times([elementwise_op(r["params"])], Roofline(device, prof))
                           .time[0]) for r in recs])


def elementwise_rates(recs: list[dict], device: DeviceSpec, prof: CalibrationProfile,
                      holdout: float, seed: int
                      ) -> tuple[dict[str, float], list[FitError], dict[str, float]]:
    """Per kernel kind: its element rate (fitted on all records), the held-out error of the
    core's time for it (rate fitted on a random part, the rest predicted) and the residual
    spread (p90 |log ratio|)."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_kind[r["params"]["op"]].append(r)
    rates, errs, spread = {}, [], {}
    for kind, rows in sorted(by_kind.items()):
        rates[kind] = round4(elementwise_rate(rows, prof.kernel_overhead_s))
        fit_idx, test_idx = holdout_split(len(rows), holdout, seed, f"elementwise.{kind}")
        if len(test_idx) == 0 or len(fit_idx) == 0:
            continue
        trial = prof.model_copy(update={"elementwise_rate": {
            **prof.elementwise_rate,
            kind: elementwise_rate([rows[i] for i in fit_idx], prof.kernel_overhead_s)}})
        test = [rows[i] for i in test_idx]
        med, p90, logp90 = errors(elementwise_times(test, device, trial),
                                  np.array([r["time_s"] for r in test]))
        errs.append(FitError(table=f"elementwise.{kind}", n_fit=len(fit_idx),
                             n_test=len(test_idx), median_ape=round4(med),
                             p90_ape=round4(p90)))
        spread[f"elementwise.{kind}"] = round4(logp90)
    return rates, errs, spread


# ---- collectives ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Links:
    """The links collectives are measured against, as the core's ``System`` holds them."""

    intra: InterconnectSpec | None
    inter: InterconnectSpec | None
    nics_per_node: int
    gpus_per_node: int
    host_link: InterconnectSpec | None
    label: dict

    def system(self, device: DeviceSpec, num_gpus: int) -> System:
        return System(device=device, num_gpus=num_gpus, gpus_per_node=self.gpus_per_node,
                      intra=self.intra or _synthetic_link("intra", 1.0), inter=self.inter,
                      nics_per_node=self.nics_per_node, host_link=self.host_link, node=None)

    def inter_per_gpu(self) -> float:
        """Per-GPU share of a full node's NICs (B/s), as System.inter_bandwidth_per_gpu."""
        if self.inter is None or not self.nics_per_node:
            return 0.0
        return self.inter.bandwidth * self.nics_per_node / self.gpus_per_node


def _synthetic_link(scope: str, gbps: float, what: str = "given") -> InterconnectSpec:
    return InterconnectSpec(
        id=f"calibration-{scope}", kind="ethernet" if scope == "inter" else "pcie",
        name=f"{scope}-node link ({what})", bandwidth_gbps=gbps,
        sources=[Source(title="link bandwidth given to perfmodel.calibrate.fit_profile",
                        url="local://perfmodel-calibrate")])


def device_links(device: DeviceSpec | None, link_bandwidths: dict | None,
                 records: list[dict]) -> Links:
    """Intra-node fabric (per GPU per direction) and the per-GPU share of a full node's
    NICs, from the device's default node; ``link_bandwidths`` ({"intra": GB/s, "inter":
    GB/s per GPU}) override; with neither, the best measured bus bandwidth of the scope."""
    from ..specs import registry

    given = dict(link_bandwidths or {})
    intra = inter = host = None
    nics, per_node = 0, 8
    label: dict[str, str] = {}
    if device is not None and device.default_node:
        node = registry.get_node(device.default_node)
        intra = registry.get_interconnect(node.intra_node)
        per_node = node.gpus_per_node
        label["intra"] = (f"{intra.id} of {node.id} ({intra.bandwidth_gbps:g} GB/s per GPU "
                          "per direction)")
        if node.inter_node and node.nics_per_node:
            inter = registry.get_interconnect(node.inter_node)
            nics = node.nics_per_node
            label["inter"] = (f"{inter.id} x{nics} per {per_node} GPUs of {node.id} "
                              f"({inter.bandwidth_gbps * nics / per_node:g} GB/s per GPU)")
    if device is not None and device.host_link:
        host = registry.get_interconnect(device.host_link)
    for scope in ("intra", "inter"):
        gbps, what = given.get(scope), "given"
        if gbps is None and (intra if scope == "intra" else inter) is None:
            best = _best_busbw(records, scope)
            gbps, what = (best / 1e9, "best measured bus bandwidth") if best else (None, "")
        if gbps is None:
            continue
        link = _synthetic_link(scope, gbps, what)
        label[scope] = f"{what}: {gbps:.4g} GB/s per GPU per direction"
        if scope == "intra":
            intra, host = link, None
        else:  # a per-GPU figure: one link per GPU
            inter, nics = link, per_node
    return Links(intra, inter, nics, per_node, host, label)


def _best_busbw(records: list[dict], scope: str) -> float | None:
    rates = [float(r["params"]["bytes"]) * float(bus_factor(r["params"]["collective"],
                                                            int(r["params"]["group_size"])))
             / r["time_s"] for r in _ok(records, "collective")
             if r["params"].get("scope", "intra") == scope]
    return max(rates) if rates else None


def collective_geometry(p: dict) -> tuple[int, int, int]:
    """(group size, members per node, nodes) of a collective record; an inter-node record
    without ``per_node`` has one member per node."""
    n = int(p["group_size"])
    local = n if p.get("scope", "intra") == "intra" else int(p.get("per_node") or 1)
    return n, local, max(1, n // local)


def collective_times(coll: str, scope: str, nb: np.ndarray, geom: tuple[int, int, int],
                     system: System, prof: CalibrationProfile) -> np.ndarray:
    """The core's time: ``comm.p2p_time`` for send_recv, else ``comm.collective_time``."""
    n, local, nodes = geom
    if coll == "send_recv":
        return np.asarray(p2p_time(nb, np.full(nb.shape, scope == "inter"), system, prof))
    return np.asarray(collective_time(coll, nb, GroupSpan(n, local, nodes), system, prof))


def collective_tables(records: list[dict], device: DeviceSpec, links: Links,
                      base: CalibrationProfile, scope: str) -> list[Table]:
    """One table per (collective, scope, group size). Intra-node, comm.collective_time is
    t = latency + S factor(n) / (fabric bw eff(S)); inter-node (k nodes of ``local``
    members) t = latency + steps x step latency + S/local factor(k) / (NIC share
    eff(S/local)), all_to_all S (n-local)/n instead; send_recv t = latency + S / (bw eff(S)).
    Each is solved for eff at every measured size; latency makes the fixed time
    ``LATENCY_FLOOR_FRACTION`` of the table's fastest call."""
    if scope == "intra" and links.intra is None:
        return []
    if scope == "inter" and links.inter_per_gpu() <= 0:
        return []
    step_latency = float(base.defaults.network_step_latency_s or 0.0)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _ok(records, "collective"):
        p = r["params"]
        if p.get("scope", "intra") == scope:
            groups[(p["collective"], *collective_geometry(p))].append(r)
    tables = []
    for (coll, n, local, nodes), recs in sorted(groups.items()):
        geom = (n, local, nodes)
        system = links.system(device, n)
        nb = np.array([float(r["params"]["bytes"]) for r in recs])
        t = np.array([r["time_s"] for r in recs])
        # inter-node collectives also pay the core's per-step network latency
        stepped = (float(network_steps(coll, n, nodes)) * step_latency
                   if scope == "inter" and coll != "send_recv" else 0.0)
        if coll == "send_recv":
            bw = system.intra.bandwidth if scope == "intra" else links.inter_per_gpu()
            moved, axis = nb, nb
        elif scope == "intra":
            bw = float(intra_bandwidth(system, local))
            moved, axis = nb * float(bus_factor(coll, local)), nb
        else:
            bw = links.inter_per_gpu()
            moved = (nb * (n - local) / n if coll == "all_to_all"
                     else nb / local * float(bus_factor(coll, nodes)))
            axis = nb / local

        def latency(idx, t=t, stepped=stepped):
            return max(0.0, LATENCY_FLOOR_FRACTION * float(t[idx].min()) - stepped)

        def implied(fit_idx, t=t, moved=moved, bw=bw, stepped=stepped, latency=latency):
            return _inverse(moved / bw, t, latency(fit_idx) + stepped)

        def install(prof, curve, fit_idx, coll=coll, n=n, latency=latency):
            fit = CollectiveFit(collective=coll, scope=scope, group_size=n,
                                latency_s=round4(latency(fit_idx)), efficiency=curve,
                                link=links.label.get(scope))
            keep = [f for f in prof.collectives
                    if (f.collective, f.scope, f.group_size) != (coll, scope, n)]
            return prof.model_copy(update={"collectives": [*keep, fit]})

        def times(prof, idx, coll=coll, geom=geom, nb=nb, system=system):
            return collective_times(coll, scope, nb[idx], geom, system, prof)

        tables.append(Table(f"collective.{coll}.{scope}.{n}", "collective", ("bytes",),
                            axis[:, None], t, recs, implied, install, times))
    return tables


# ---- the profile ---------------------------------------------------------------------------

@dataclass
class FitResult:
    """A fitted profile with its tables and held-out predictions (for reports)."""

    profile: CalibrationProfile
    tables: list[Table]
    heldout: dict[str, tuple[np.ndarray, np.ndarray]]  # table -> (test idx, predicted s)


def kernel_overhead(records: list[dict]) -> tuple[float, str]:
    """Per-kernel overhead and how it was chosen (recorded in the profile notes)."""
    launch = _ok(records, "launch")
    if launch:
        return (float(np.median([r["time_s"] for r in launch])),
                f"median of {len(launch)} launch-benchmark records")
    times = [r["time_s"] for b in KERNEL_BENCHES for r in _ok(records, b)]
    if times:
        floor = float(min(times))
        return OVERHEAD_FLOOR_FRACTION * floor, (
            f"{OVERHEAD_FLOOR_FRACTION:g} x the smallest measured kernel time ({floor * 1e6:.3g}"
            " us): CUDA-graph tables carry no launch cost, so the floor every kernel pays "
            "stands in for it")
    return 0.0, "no kernel records"


def measured_peaks(records: list[dict], cache_bytes: float = 0.0
                   ) -> tuple[dict[str, float], float | None]:
    """Best measured GEMM rate per dtype (TFLOP/s) and best memory bandwidth (GB/s, from
    ``memory`` records, else ``elementwise`` ones, of working sets >= 2 x ``cache_bytes``
    where there are some): the peaks of a device without a datasheet (a CPU)."""
    peaks: dict[str, float] = {}
    for r in _ok(records, "gemm"):
        p = r["params"]
        rate = 2.0 * p["m"] * p["n"] * p["k"] / r["time_s"] / 1e12
        peaks[p["dtype"]] = max(peaks.get(p["dtype"], 0.0), rate)
    bw = None
    for bench in ("memory", "elementwise"):
        recs = _ok(records, bench)
        big = [r for r in recs if record_bytes(r) >= 2 * cache_bytes]
        rates = [record_bytes(r) / r["time_s"] / 1e9 for r in (big or recs)]
        if rates:
            bw = max(rates)
            break
    return {k: round4(v) for k, v in peaks.items()}, (round4(bw) if bw else None)


def _host_device(peaks: dict[str, float], bw: float | None, facts: dict) -> DeviceSpec:
    """A stand-in DeviceSpec for a machine without a hardware_specs entry."""
    peak = {k: v for k, v in peaks.items() if k in ("fp32", "tf32", "fp16", "bf16", "fp8",
                                                     "int8", "int4", "fp64")}
    if "fp32" not in peak:
        peak["fp32"] = max(peak.values()) if peak else 1.0
    return DeviceSpec(id="calibration-host", kind="cpu", vendor=str(facts.get("vendor", "host")),
                      name=str(facts.get("name", "measured host")), peak_tflops=peak,
                      memory_gb=float(facts.get("memory_gb") or 1.0),
                      memory_bandwidth_gbps=bw or 1.0,
                      sources=[Source(title="measured by perfmodel calibrate",
                                      url="local://perfmodel-calibrate")])


def host_device(profile: CalibrationProfile) -> DeviceSpec:
    """The device a profile was fitted on: its hardware_specs entry, else a stand-in built
    from the profile's measured peaks."""
    if profile.device:
        from ..specs import registry

        return registry.get_device(profile.device)
    return _host_device(profile.peak_tflops, profile.memory_bandwidth_gbps, profile.device_facts)


def heldout_error(table: Table, base: CalibrationProfile, holdout: float, seed: int
                  ) -> tuple[FitError, float, np.ndarray, np.ndarray] | None:
    """Fit on a random part of ``table``, predict the rest through the core: (FitError,
    p90 |log ratio|, test indices, predicted seconds), or None for a table too small."""
    fit_idx, test_idx = holdout_split(len(table), holdout, seed, table.name)
    if len(test_idx) == 0:
        return None
    pred = table.predict(base, table.fit(fit_idx), test_idx, fit_idx)
    med, p90, logp90 = errors(pred, table.measured[test_idx])
    fe = FitError(table=table.name, n_fit=len(fit_idx), n_test=len(test_idx),
                  median_ape=round4(med), p90_ape=round4(p90))
    return fe, round4(logp90), test_idx, pred


def fit_profile(records: Iterable[dict], device: DeviceSpec | None, *, kind: str,
                profile_id: str, sources: Sequence[Source | dict],
                peak_tflops: dict[str, float] | None = None,
                memory_bandwidth_gbps: float | None = None,
                link_bandwidths: dict[str, float] | None = None, holdout: float = 0.3,
                seed: int = 0, notes: str | None = None,
                return_result: bool = False) -> CalibrationProfile | FitResult:
    """Fit every table found in ``records`` (module docstring) into a profile.

    ``device`` None or a CPU: peaks and bandwidth are the best measured ones and are stored
    in the profile; otherwise the datasheet applies unless ``peak_tflops`` /
    ``memory_bandwidth_gbps`` are given. ``link_bandwidths`` = {"intra": GB/s per GPU per
    direction, "inter": GB/s per GPU} overrides the device's default node. Memory: fitted on
    ``memory`` records when there are any, the ``elementwise`` ones are then checked against
    that curve (table ``elementwise.check``); otherwise fitted on the elementwise ones.
    """
    records = list(records)
    meta = next((r for r in records if r.get("bench") == "meta"), None)
    facts = {k: v for k, v in (meta or {}).items() if k != "bench"}
    overhead, overhead_how = kernel_overhead(records)
    peaks = dict(peak_tflops or {})
    bw = memory_bandwidth_gbps
    if device is None or device.kind == "cpu":
        # beyond the cache the harness flushes between reps, the bandwidth is DRAM's
        measured, measured_bw = measured_peaks(records, float(facts.get("flush_bytes") or 0))
        peaks = {**measured, **peaks}
        bw = bw or measured_bw
    dev = device or _host_device(peaks, bw, facts)
    fallback = default_profile()  # documented defaults for tables the records lack
    prof = CalibrationProfile(
        id=profile_id, device=device.id if device else None, kind=kind,
        created=date.today().isoformat(),
        sources=[s if isinstance(s, Source) else Source(**s) for s in sources],
        defaults=fallback.defaults, kernel_overhead_s=round4(overhead),
        memory_overheads=fallback.memory_overheads, peak_tflops=peaks,
        memory_bandwidth_gbps=bw, device_facts=facts)

    fit_errors: list[FitError] = []
    uncertainty: dict[str, float] = {}
    heldout: dict[str, tuple] = {}
    tables: list[Table] = []
    notes_out = [notes] if notes else []
    notes_out.append(f"kernel_overhead_s: {overhead_how}.")

    def run(table: Table) -> None:
        nonlocal prof
        result = heldout_error(table, prof, holdout, seed)
        if result is not None:
            fe, unc, test_idx, pred = result
            fit_errors.append(fe)
            uncertainty[table.name] = unc
            heldout[table.name] = (test_idx, pred)
        tables.append(table)
        prof = table.install(prof, table.fit(), np.arange(len(table)))

    for table in gemm_tables(records, dev, prof):
        run(table)
    for table in attention_tables(records, dev, prof):
        run(table)
    measured_backends: dict[str, set] = defaultdict(set)
    for r in _ok(records, "attention"):
        measured_backends[r["params"]["phase"]].add(str(r["params"].get("backend")))
    chosen = [f"{t.name.split('.')[1]}: {t.records[0]['params'].get('backend')} of "
              f"{'/'.join(sorted(measured_backends[t.name.split('.')[1]]))}"
              for t in tables if t.kind == "attention"
              and len(measured_backends[t.name.split(".")[1]]) > 1]
    if chosen:
        notes_out.append("attention: per phase the fastest backend (" + "; ".join(chosen)
                         + ").")
    if prof.attention_overhead_s:
        notes_out.append(
            "attention_overhead_s: per phase, the fixed time of an attention call beyond "
            f"kernel_overhead_s = {OVERHEAD_FLOOR_FRACTION:g} x its fastest call - "
            "kernel_overhead_s, for tables that sweep down to that floor.")
    mem_recs, elem_recs = _ok(records, "memory"), _ok(records, "elementwise")
    if mem_recs or elem_recs:
        run(memory_table(mem_recs or elem_recs, dev, prof))
        if mem_recs and elem_recs:
            check = memory_table(elem_recs, dev, prof, name="elementwise.check")
            pred = check.times(prof, np.arange(len(check)))
            med, p90, logp90 = errors(pred, check.measured)
            fit_errors.append(FitError(table=check.name, n_fit=0, n_test=len(check),
                                       median_ape=round4(med), p90_ape=round4(p90)))
            uncertainty[check.name] = round4(logp90)
            heldout[check.name] = (np.arange(len(check)), pred)
            tables.append(check)
            notes_out.append("memory: fitted on the bandwidth records; the elementwise kernels "
                             "are checked against that curve (table elementwise.check, every "
                             "kernel a test point).")
        elif elem_recs:
            notes_out.append("memory: fitted on the elementwise kernels (no bandwidth records).")
    if elem_recs:
        rates, errs, spread = elementwise_rates(elem_recs, dev, prof, holdout, seed)
        prof = prof.model_copy(update={"elementwise_rate": rates})
        fit_errors.extend(errs)
        uncertainty.update(spread)
        notes_out.append("elementwise_rate: per kernel kind, the best measured elements per "
                         "second, the compute roof of kernels the bandwidth does not bound "
                         "(tables elementwise.<kind>: rate fitted on part, the rest predicted).")

    links = device_links(device, link_bandwidths, records)
    for scope in ("intra", "inter"):  # inter-node times include the intra-node hop
        for table in collective_tables(records, dev, links, prof, scope):
            run(table)
    if prof.collectives:
        notes_out.append(
            f"collectives: latency_s makes the fixed time {LATENCY_FLOOR_FRACTION:g} x the "
            "fastest call of each table (inter-node: less the network steps x "
            "defaults.network_step_latency_s that comm.collective_time adds); efficiency = "
            "the core's time formula solved at each measured size.")
    prof = prof.model_copy(update={"fit_errors": fit_errors, "uncertainty": uncertainty,
                                   "notes": " ".join(notes_out)})
    prof = CalibrationProfile.model_validate(prof.model_dump())
    if return_result:
        return FitResult(prof, tables, heldout)
    return prof
