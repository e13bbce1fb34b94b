"""Where the members of each parallel group sit, and therefore which links they cross.

Ranks are laid out in the order of ``Parallelism.placement`` (innermost first; Megatron-LM's
default is tp-cp-ep-dp-pp, Narayanan et al. 2021 Sec. 3.2: TP inside a node, PP outermost).
EP is carved out of the data-parallel ranks (Megatron-Core expert parallelism: ``ep`` of the
``dp`` ranks hold different experts), so the rank grid has dims tp, cp, ep, dp/ep, pp.

A dimension of size n and stride S (product of the sizes of the dims inside it) places
min(n, max(1, G // S)) of its members on each node of G GPUs. A group made of several dims
(the dense data-parallel group is ep x dp/ep) multiplies those counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import mul
from typing import Any

import numpy as np

Array = Any


@dataclass(frozen=True)
class GroupSpan:
    """A parallel group's geometry: size, members per node, nodes spanned."""

    size: Array
    local: Array  # members on one node
    nodes: Array  # size / local


def _dim_sizes(tp, cp, ep, dp, pp) -> dict[str, Array]:
    return {"tp": tp, "cp": cp, "ep": ep, "dp": np.asarray(dp) / np.asarray(ep), "pp": pp}


def group_spans(gpus_per_node: int, placement: str, tp: Array = 1, cp: Array = 1,
                ep: Array = 1, dp: Array = 1, pp: Array = 1) -> dict[str, GroupSpan]:
    """Spans of the tp, cp, ep, dp (dense data-parallel = ep x dp/ep), edp (expert data
    parallel = dp/ep) and pp groups, and the gradient groups: grad (dense gradients reduce
    over cp x dp) and egrad (expert gradients over cp x dp/ep)."""
    sizes = _dim_sizes(tp, cp, ep, dp, pp)
    stride: Array = 1
    local_of: dict[str, Array] = {}
    for dim in placement.split("-"):
        n = np.asarray(sizes[dim], dtype=float)
        per_node = np.maximum(1.0, gpus_per_node // np.asarray(stride, dtype=float))
        local_of[dim] = np.where(np.asarray(stride) < gpus_per_node, np.minimum(n, per_node),
                                 1.0)
        stride = np.asarray(stride) * n

    def span(*dims: str) -> GroupSpan:
        size = reduce(mul, [np.asarray(sizes[d], float) for d in dims])
        local = reduce(mul, [local_of[d] for d in dims])
        local = np.minimum(local, size)
        return GroupSpan(size=size, local=local, nodes=size / local)

    return {
        "tp": span("tp"),
        "cp": span("cp"),
        "ep": span("ep"),
        "dp": span("ep", "dp"),
        "edp": span("dp"),
        "pp": span("pp"),
        "grad": span("cp", "ep", "dp"),
        "egrad": span("cp", "dp"),
    }


def pp_neighbours_cross_nodes(gpus_per_node: int, placement: str, tp: Array = 1,
                              cp: Array = 1, ep: Array = 1, dp: Array = 1) -> Array:
    """Whether consecutive pipeline stages sit on different nodes (stride of pp >= G)."""
    sizes = _dim_sizes(tp, cp, ep, dp, 1)
    stride: Array = 1.0
    for dim in placement.split("-"):
        if dim == "pp":
            break
        stride = stride * np.asarray(sizes[dim], dtype=float)
    return np.asarray(stride) >= gpus_per_node
