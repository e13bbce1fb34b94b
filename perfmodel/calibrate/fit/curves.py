"""Curves on a log2 grid, fitted to implied efficiencies, and their honest held-out errors.

Curves are multilinear on a log2 grid (``profile.Curve``). The grid nodes are the distinct
measured log2 coordinates (thinned to evenly spaced ranks when there are too many). Node
values minimise the points' relative time errors, each weighted by the share of its time
that depends on the curve, plus a small first-difference ("membrane") penalty; where many
configurations share one node (attention over batch and heads) the unknowns are inverse
efficiencies, in which time is linear (``fit_curve``). The penalty fills nodes without data
with a discrete-harmonic average of their neighbours (scattered-data interpolation on a
grid) and holds the nearest value beyond the data: the curve never extrapolates a trend.

Held-out error: each table is split at random (seeded per table) into a fitted part and a
test part (``holdout_split``); ``errors`` gives median and p90 APE and the p90 |log ratio|.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from ...errors import SpecError
from ...profile import RESIDUAL_LEVELS, Curve

# A kernel measured at or below the overhead keeps this fraction of its time as work.
MIN_WORK_FRACTION = 0.05
GRID_DECIMALS = 6  # log2 grid nodes are stored to 1e-6 (m = 4352 and 4353 stay apart)
SMOOTH = 0.01  # membrane penalty weight (relative units)
MIN_TEST_POINTS = 3  # tables with fewer points get no held-out test


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


def log_ratio_quantiles(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, ...]:
    """Signed log(measured / predicted) of held-out points at ``RESIDUAL_LEVELS`` (rounded):
    the residual distribution ``perfmodel.uncertainty`` propagates into prediction bands."""
    logr = np.log(np.asarray(measured, float) / np.asarray(predicted, float))
    return tuple(round4(v) for v in np.quantile(logr, RESIDUAL_LEVELS))
