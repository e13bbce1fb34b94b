"""Where the members of each parallel group sit, and therefore which links they cross.

Ranks are laid out in the order of ``Parallelism.placement`` (innermost first; Megatron-LM's
default is tp-cp-ep-dp-pp, Narayanan et al. 2021 Sec. 3.2: TP inside a node, PP outermost).
Two grids share the ranks, as in Megatron-Core's ``parallel_state`` (two RankGenerators over
one order string):

* the dense grid: the placement without ``ep`` (dims tp, cp, dp, pp): TP, CP, DP and PP groups;
* the expert grid: the placement without ``cp`` (dims tp = etp, ep, edp, pp, with
  edp = tp*cp*dp / (ep*etp)): the expert-TP, EP and expert data-parallel groups. This is
  Megatron-Core's "MoE parallel folding" (parallel_state.py ``initialize_model_parallel``,
  "Build expert rank generator": ``RankGenerator(tp=expert_tensor_parallel_size,
  ep=expert_model_parallel_size, dp=world_size // (etp*ep*pp), pp=..., cp=1)``; Liu et al.
  2025 arXiv 2504.14960 Sec. 3): the experts' ETP x EP groups are drawn from the same
  TP x CP x DP ranks of a pipeline stage as attention's, so EP may span attention-TP ranks
  (etp*ep divides tp*cp*dp, ``plan.training_rules``). With etp = tp it is the older layout,
  EP carved out of the DP x CP ranks.

A dimension of size n and stride S (product of the sizes of the dims inside it) places
min(n, max(1, G // S)) of its members on each node of G GPUs. A group made of several dims
(the dense gradients reduce over cp x dp) multiplies those counts.
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


def _locals(gpus_per_node: int, order: list[str], sizes: dict[str, Array]) -> dict[str, Array]:
    """Members per node of each dim of a rank grid laid out in ``order`` (innermost first)."""
    stride: Array = 1.0
    local: dict[str, Array] = {}
    for dim in order:
        n = np.asarray(sizes[dim], dtype=float)
        per_node = np.maximum(1.0, gpus_per_node // np.asarray(stride, dtype=float))
        local[dim] = np.where(np.asarray(stride) < gpus_per_node, np.minimum(n, per_node), 1.0)
        stride = np.asarray(stride) * n
    return local


def _grids(placement: str, tp, cp, ep, dp, pp, etp=None
           ) -> tuple[tuple[list[str], dict], tuple[list[str], dict]]:
    """(order, sizes) of the dense grid (no ep) and of the expert grid (no cp; its "tp" is
    the expert TP size etp, default tp, its "dp" the expert data-parallel size
    tp*cp*dp / (ep*etp), module docstring)."""
    dims = placement.split("-")
    dense = {"tp": tp, "cp": cp, "dp": dp, "pp": pp}
    etp = tp if etp is None else etp
    expert = {"tp": etp, "ep": ep, "dp": np.asarray(tp, float) * np.asarray(cp, float)
              * np.asarray(dp, float) / (np.asarray(ep, float) * np.asarray(etp, float)),
              "pp": pp}
    return ([d for d in dims if d != "ep"], dense), ([d for d in dims if d != "cp"], expert)


def group_spans(gpus_per_node: int, placement: str, tp: Array = 1, cp: Array = 1,
                ep: Array = 1, dp: Array = 1, pp: Array = 1, etp: Array = None
                ) -> dict[str, GroupSpan]:
    """Spans of the tp, cp, dp (dense data parallel), pp, etp (expert TP, default tp), ep and
    edp (expert data parallel = tp*cp*dp/(ep*etp)) groups, and the gradient groups: grad
    (dense gradients reduce over cp x dp) and egrad (expert gradients over the expert
    data-parallel group, = edp)."""
    (d_order, d_sizes), (e_order, e_sizes) = _grids(placement, tp, cp, ep, dp, pp, etp)
    d_local = _locals(gpus_per_node, d_order, d_sizes)
    e_local = _locals(gpus_per_node, e_order, e_sizes)

    def span(sizes: dict, locals_: dict, *dims: str) -> GroupSpan:
        size = reduce(mul, [np.asarray(sizes[d], float) for d in dims])
        local = np.minimum(reduce(mul, [locals_[d] for d in dims]), size)
        return GroupSpan(size=size, local=local, nodes=size / local)

    edp = span(e_sizes, e_local, "dp")
    return {
        "tp": span(d_sizes, d_local, "tp"),
        "cp": span(d_sizes, d_local, "cp"),
        "ep": span(e_sizes, e_local, "ep"),
        "etp": span(e_sizes, e_local, "tp"),
        "dp": span(d_sizes, d_local, "dp"),
        "edp": edp,
        "pp": span(d_sizes, d_local, "pp"),
        "grad": span(d_sizes, d_local, "cp", "dp"),
        "egrad": edp,
    }


def pp_neighbours_cross_nodes(gpus_per_node: int, placement: str, tp: Array = 1,
                              cp: Array = 1, ep: Array = 1, dp: Array = 1) -> Array:
    """Whether consecutive pipeline stages sit on different nodes (stride of pp >= G)."""
    (order, sizes), _ = _grids(placement, tp, cp, ep, dp, 1)
    stride: Array = 1.0
    for dim in order:
        if dim == "pp":
            break
        stride = stride * np.asarray(sizes[dim], dtype=float)
    return np.asarray(stride) >= gpus_per_node
