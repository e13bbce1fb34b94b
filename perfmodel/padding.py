"""A kernel of m rows can always run as the padded kernel of m' >= m rows, so its time is at
most the best time over the padded sizes (a suffix minimum along the token axis of a measured
table, applied to TIME, and only where a measured curve is used).

Engines do exactly this: decode batches are padded up to a captured CUDA-graph size
(vLLM vllm/config/compilation.py: ``cudagraph_capture_sizes = [1, 2, 4] + range(8, 256, 8) +
range(256, max + 1, 16)``; TensorRT-LLM tensorrt_llm/llmapi/llm_args.py
``CudaGraphConfig._generate_cuda_graph_batch_sizes``: [1, 2, 4] + multiples of 8 up to 128 +
powers of 2 with ``enable_padding``; SGLang python/sglang/srt/server_args.py
``_generate_cuda_graph_batch_sizes``: [1, 2, 4, 8, 12] + range(16, 257, 8) + ...). Measured
tables show kernel-selection dips (an H200 fp8 GEMM at a small m slower than at a larger one);
the fitted efficiency curve keeps them (forcing the curve monotone raised held-out error,
issue 12), and the time is bounded here instead.

The padded sizes tried are m x 2^i, i >= 0, up to the curve's last node (beyond it the curve
is clamped and time only grows): the power-of-two ladder the engines' capture sizes follow at
small batch. With that ladder doubling the rows never lowers the time, exactly (the sizes
tried for 2m are a subset of those for m). The grid nodes in between are not tried: a
microbenchmark replays the unpadded kernel, and every extra candidate moves the prediction
away from the table (held-out error, docs/calibration.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Columns = tuple[np.ndarray, ...]


def padded_minimum(rows: np.ndarray, columns: Columns,
                   time_at: Callable[[np.ndarray, Columns], np.ndarray],
                   bound_at: Callable[[np.ndarray, Columns], np.ndarray],
                   top_rows: float, best_efficiency: float) -> np.ndarray:
    """min over i >= 0 of time_at(rows x 2^i) (rows x 2^i <= top_rows for i >= 1),
    elementwise.

    ``columns``: the other per-kernel inputs, broadcast with ``rows``; ``time_at(r, cols)``
    and ``bound_at(r, cols)`` take row counts and those columns (a subset of the kernels).
    ``bound_at / best_efficiency`` is a lower bound of ``time_at`` that never decreases with
    the rows (the roofline time over the curve's best efficiency): a kernel whose bound
    exceeds its best time so far is not evaluated again (same result, less work). Repeated
    kernels (a sweep of plans shares shapes) are evaluated once."""
    arrays = np.broadcast_arrays(np.asarray(rows, dtype=float),
                                 *(np.asarray(c, dtype=float) for c in columns))
    shape = arrays[0].shape
    flat = [a.ravel() for a in arrays]
    order = np.lexsort(flat[::-1])
    new = np.ones(order.size, dtype=bool)
    new[1:] = np.any([np.diff(f[order]) != 0 for f in flat], axis=0)
    first = order[new]
    inverse = np.empty(order.size, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    r, cols = flat[0][first], tuple(f[first] for f in flat[1:])
    best = np.asarray(time_at(r, cols), dtype=float).copy()
    live = np.ones(r.shape, dtype=bool)  # kernels a larger candidate may still improve
    doubled = np.maximum(r, 1e-30) * 2.0
    while np.any(live & (doubled <= top_rows)):
        idx = np.flatnonzero(live & (doubled <= top_rows))
        sub = tuple(c[idx] for c in cols)
        hopeless = bound_at(doubled[idx], sub) / best_efficiency >= best[idx]
        live[idx[hopeless]] = False
        keep = idx[~hopeless]
        if keep.size:
            sub = tuple(c[keep] for c in cols)
            best[keep] = np.minimum(best[keep], time_at(doubled[keep], sub))
        doubled = doubled * 2.0
    return best[inverse].reshape(shape)
