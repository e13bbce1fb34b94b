"""A GEMM is never slower than a larger GEMM it fits into: a bound on the efficiency a fitted
GEMM curve gives an (m, n, k) that the curve did not measure.

Y[m, n] = X[m, k] W[k, n] is computed exactly by any kernel of a shape (m, n', k') with
n' >= n and k' >= k: pad W with zero columns and X, W with zero rows along k, and drop the
extra columns of the result. So the time of (m, n, k) is at most the time of (m, n', k'), the
same bound ``padding`` applies along the token axis m (there: by the engines' CUDA-graph
padding). A fitted curve (``profile.Curve``: multilinear on the product of the measured log2
m, n and k, nodes without data filled by a membrane average of their neighbours,
``calibrate/fit/curves.py``) can break that bound where its table is sparse: the MI355X bf16
table (ROCm/aiter gfx950 rows, docs/calibration.md) has at M = 1 tuned asm / FlyDSL kernels at
N >= 1280 only with K >= 8192, N >= 5120 with K <= 7168, and Triton fallback rows at N = 100,
200, 800 (K = 5120) at 0.04-0.34 TB/s; the fill between them gave (1, 1536, 4096) an efficiency
of 0.05 (34 us for a 12.6 MB weight at 8 TB/s) next to 0.71 at the measured (1, 2560, 8192)
(10.2 us for 42 MB).

The bound is applied to the efficiency, where the core reads it (``profile.gemm_efficiency``),
without the device: eff(m, n, k) >= eff(m, n', k') x min(F / F', E / E'), F = 2 m n k the
FLOPs and E = m k + k n + m n the elements moved. With R = max(F / peak, bytes / bw) the
roofline time, R <= max(F / F', E / E') R', so the bounded time R / eff is at least the larger
GEMM's time R' / eff' (the bound never makes a GEMM faster than the one it borrows from) and at
most max / min of the two ratios times it; in the memory-bound decode regime (m small against n
and k) the two ratios agree to O(m / n + m / k) and the bound is the larger GEMM's time. Elements
stand in for bytes (a mixed-format op's per-operand sizes are not known here; its weight term
dominates in decode either way).

Shapes tried for n': n itself, every node of the curve's n grid above n, and n x 2^i up to
the last node (beyond it the curve is clamped, the efficiency constant and the time grows);
likewise for k. Only the op's own m is used: the token axis has its own bound (``padding``,
applied to times for a model step), which tries fewer sizes on purpose (docs/calibration.md,
"Padded kernels"). Where the curve is already at least as fast as every larger shape, nothing
changes: the bound is a no-op on a table whose time grows with n and k.
"""

from __future__ import annotations

import numpy as np

# distinct shapes evaluated per block (memory: shapes x candidates floats per array)
_BLOCK = 1024


def _candidates(values: np.ndarray, nodes: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """(shapes, C): the value itself, the nodes above it, its doublings up to the last node,
    none above ``cap`` (a larger shape's FLOP ratio would leave no room for a gain); NaN where
    not a candidate, columns without any dropped."""
    top = nodes[-1]
    doublings = int(max(np.ceil(np.log2(max(top, 1.0) / max(values.min(), 1.0))), 0))
    v, cap = values[:, None], np.minimum(cap, top)[:, None]
    above = np.where((nodes[None, :] > v) & (nodes[None, :] <= cap), nodes[None, :], np.nan)
    twice = v * 2.0 ** np.arange(1, doublings + 1)[None, :]
    twice = np.where(twice <= cap, twice, np.nan)
    out = np.concatenate([v, above, twice], axis=1)
    return out[:, np.isfinite(out).any(axis=0)]


def _distinct(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows (D, 3), index of each element's row) of broadcast (m, n, k) arrays,
    without sorting rows: each axis's distinct values (1-D), then a dense table of the index
    triples that occur (a sweep of plans repeats a handful of shapes millions of times)."""
    values, codes = [], []
    for a in arrays:
        u, inv = np.unique(a, return_inverse=True)
        values.append(u)
        codes.append(np.asarray(inv, dtype=np.int64).reshape(a.shape))
    sizes = [len(u) for u in values]
    key = (codes[0] * sizes[1] + codes[1]) * sizes[2] + codes[2]
    total = sizes[0] * sizes[1] * sizes[2]
    if total <= 1 << 24:
        seen = np.zeros(total, dtype=bool)
        seen[key] = True
        uniq = np.flatnonzero(seen)
        pos = np.zeros(total, dtype=np.intp)
        pos[uniq] = np.arange(len(uniq))
        index = pos[key]
    else:
        uniq, index = np.unique(key, return_inverse=True)
    i, rest = np.divmod(uniq, sizes[1] * sizes[2])
    j, q = np.divmod(rest, sizes[2])
    rows = np.stack([values[0][i], values[1][j], values[2][q]], axis=1)
    return rows, np.asarray(index).reshape(key.shape)


def contained_efficiency(curve, m, n, k) -> np.ndarray:
    """``curve(m, n, k)`` raised to max over larger shapes (m, n', k') of
    ``curve(m, n', k') x min(F / F', E / E')`` (module docstring). ``curve``: a
    ``profile.Curve`` over (m, n, k); inputs broadcast; returns an array of their shape."""
    base = np.asarray(curve(m, n, k), dtype=float)
    if tuple(curve.axes) != ("m", "n", "k"):
        return base
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (m, n, k)))
    if arrays[0].size == 0:
        return base
    shapes, index = _distinct(arrays)
    out = np.asarray(curve(shapes[:, 0], shapes[:, 1], shapes[:, 2]), dtype=float).copy()
    raised = out.copy()
    n_nodes, k_nodes = (2.0 ** np.asarray(g, dtype=float) for g in curve.log2_grid[1:])
    best = float(curve.best)
    for lo in range(0, len(shapes), _BLOCK):
        s = shapes[lo:lo + _BLOCK]
        mm, nn, kk = s[:, 0], s[:, 1], s[:, 2]
        e = out[lo:lo + len(s)]
        room = best / np.maximum(e, 1e-30)  # n' k' / (n k) must stay below it
        cn = _candidates(nn, n_nodes, nn * room)[:, :, None]  # (S, Cn, 1)
        ck = _candidates(kk, k_nodes, kk * room)[:, None, :]  # (S, 1, Ck)
        m3, n3, k3 = mm[:, None, None], nn[:, None, None], kk[:, None, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            flops = (n3 * k3) / (cn * ck)
            elems = (m3 * k3 + n3 * k3 + m3 * n3) / (m3 * ck + cn * ck + m3 * cn)
            ratio = np.minimum(flops, elems)
        # only candidates that could raise the efficiency are evaluated
        hope = np.isfinite(ratio) & (ratio * best > e[:, None, None])
        if not hope.any():
            continue
        idx = np.nonzero(hope)
        cand = curve(mm[idx[0]], np.broadcast_to(cn, hope.shape)[idx],
                     np.broadcast_to(ck, hope.shape)[idx]) * ratio[idx]
        up = np.full(len(s), -np.inf)
        np.maximum.at(up, idx[0], cand)
        raised[lo:lo + len(s)] = np.maximum(e, up)
    if not np.any(raised > out):
        return base
    return np.maximum(base, raised[index])
