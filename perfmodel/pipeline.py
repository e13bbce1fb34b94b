"""Pipeline parallelism: how layers split over stages, and the time of m micro-batches through
p stages (Narayanan et al. 2021, arXiv 2104.04473, Sec. 2.2).

Array-friendly in every numeric plan dimension (pp, vp, micro-batches, stage times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any


def layers_on_largest_stage(num_layers: int, pp: Array, vp: Array, uneven: bool) -> Array:
    """L/p, or with an uneven split (layers spread as evenly as possible over p*v chunks, as
    torchtitan and DeepSpeed do) the largest stage's ceil(L/(p v)) * v."""
    if not uneven:
        return num_layers / pp
    return np.ceil(num_layers / (np.asarray(pp) * vp)) * vp


@dataclass(frozen=True)
class StageTimes:
    """Time of one micro-batch (forward + backward) on the first, a middle and the last
    stage, and the sum over all stages (every layer once)."""

    first: Array
    middle: Array  # 0 when there is no middle stage (pp <= 2)
    last: Array
    total: Array


def stage_times(body: Array, body_avg: Array, embed: Array, head: Array, pp: Array) -> StageTimes:
    """Stage times from the largest stage's ``body`` (its layers, their exposed communication
    and the pipeline sends), an average stage's ``body_avg`` and the embedding (first stage)
    and LM head + loss (last stage). Without pipelining one stage does everything."""
    pp_on = np.asarray(pp) > 1
    first = body + embed + np.where(pp_on, 0.0, head)
    last = np.where(pp_on, body + head, first)
    middle = np.where(np.asarray(pp) > 2, body, 0.0)
    total = np.where(pp_on, pp * body_avg + embed + head, first)
    return StageTimes(first=first, middle=middle, last=last, total=total)


def slowest_stage(t: StageTimes) -> Array:
    return np.maximum(np.maximum(t.first, t.last), t.middle)


def pipeline_time(t: StageTimes, microbatches: Array, vp: Array) -> tuple[Array, Array]:
    """(time of the whole schedule, its bubble) for m micro-batches over the stages.

    Narayanan et al. 2021 Sec. 2.2: the slowest stage runs m micro-batches; the fill and drain
    cost the other stages' time once, divided by the v virtual chunks of the interleaved
    schedule (Sec. 2.2.2): T = m max_i T_i + (sum_i T_i - max_i T_i) / v, which for p equal
    stages is (m + (p-1)/v) T, a bubble fraction (p-1)/(v m) (their eq. for t_pb / t_id).
    GPipe and 1F1B have the same bubble (Sec. 2.2.1); they differ in memory.
    """
    t_max = slowest_stage(t)
    bubble = (t.total - t_max) / vp
    return microbatches * t_max + bubble, bubble
