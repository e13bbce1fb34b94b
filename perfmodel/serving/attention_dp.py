"""Prefill batches of an attention-DP instance under SGLang's prefill-first scheduler.

With ``--enable-dp-attention`` every attention DP rank runs its own scheduler with its own
waiting queue and its own chunked request (sgl-project/sglang v0.5.6.post2
python/sglang/srt/managers/data_parallel_controller.py sends each request to one rank,
``round_robin`` by default; managers/scheduler.py ``get_new_batch_prefill`` per rank), and
each rank's chunk is ``chunked_prefill_size // dp_size`` tokens (server_args.py
``_handle_data_parallelism``: "DP attention is enabled. The chunked prefill size is adjusted
to ..."). All ranks run each forward pass together (the MoE layers see every rank's tokens),
so one iteration of the instance is: every rank with prefill work runs its own prefill batch
(prefill first, per rank), and every other rank decodes its running requests.

The simulator keeps one queue per instance (serving/cost.py module docstring); the rank of a
request is ``IterationCostModel.group_of`` (round robin in arrival order). ``dp_prefill``
forms the per-rank prefill batches from that queue, per rank FCFS and against the rank's own
share of the KV pool (each SGLang DP rank sizes and fills its own pool): a rank stops adding
requests when its chunk budget is spent or a request does not fit, the other ranks go on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .engine import Engine


def rank_budget(budget: int, groups: int) -> int:
    """Prefill tokens of one attention-DP rank per iteration: chunked_prefill_size // dp_size
    (SGLang server_args.py ``_handle_data_parallelism``), at least one token."""
    return max(int(budget) // int(groups), 1)


def rank_pools(e: Engine, ntr, ratio: float) -> tuple[list[int], list[float]]:
    """(free KV blocks, PrefillAdder rem_total_tokens) of each rank: every rank holds an
    equal share of the instance's blocks (serving/cost.py ``kv_capacity``) and its own
    requests' KV; ``rem`` subtracts, for each of its decoding requests, min(remaining output,
    clip) x ``ratio`` (schedule_policy.py PrefillAdder; 0 without ``ntr``)."""
    g = e.cost.groups
    n = e.n
    share = (e.total_blocks - e.held_elsewhere) // g
    grp = e.cost.group_of(e.rid[:n])  # the batch's slots at once (one pass per iteration)
    held = np.maximum(-(-e.ctx[:n] // e.block), e.reserve[:n])  # Engine.blocks_for, reserved
    used = np.bincount(grp, weights=held, minlength=g).astype(np.int64)
    reserve = np.zeros(g)
    if ntr is not None:
        last = e.done[:n] == e.target[:n]
        left = np.maximum(np.minimum(e.out[:n] - e.gen[:n], ntr.clip_max_new_tokens), 0)
        reserve = np.bincount(grp[last], weights=left[last], minlength=g)
    free = [share - int(u) for u in used]
    rem = [f * e.block - float(r) * ratio for f, r in zip(free, reserve, strict=True)]
    return free, rem


def dp_prefill(e: Engine, now: float, budget: int, ntr, ratio: float,
               seen: int | None = None) -> tuple[list[tuple[int, int]], set[int]]:
    """(chunks [(slot, tokens)], ranks that prefill) of one iteration of an attention-DP
    instance (module docstring), each rank with its own KV pool (``rank_pools``) and SGLang's
    admission rule (``PrefillFirst``: a new request needs prompt + min(output, clip) + a page
    below the rank's rem_total_tokens, a rank without running requests takes one whose blocks
    fit; without ``ntr`` the 1 % watermark of the rank's share). ``seen``: the waiting
    requests the scheduler has received (the queue's first ``seen``; all when None).
    Continuing chunked requests come first on their rank, then waiting requests FCFS per rank
    while the rank's ``rank_budget`` lasts."""
    cost = e.cost
    g = cost.groups
    left = [rank_budget(budget, g)] * g
    free, rem = rank_pools(e, ntr, ratio)
    watermark = e.watermark // g
    chunks: list[tuple[int, int]] = []
    busy: set[int] = set()
    active = [False] * g  # the rank runs requests already (or took one this iteration)
    n = e.n
    for grp in np.unique(cost.group_of(e.rid[:n])).tolist():
        active[grp] = True
    for slot in np.flatnonzero(e.done[:n] < e.target[:n]).tolist():  # the chunked requests
        grp = cost.group_of(int(e.rid[slot]))
        done = int(e.done[slot])
        c = min(int(e.target[slot]) - done, left[grp])
        need = e.blocks_for(done + c) - e.blocks_for(done)
        if c <= 0 or need > free[grp]:
            continue
        free[grp] -= need
        left[grp] -= c
        if ntr is not None:
            last = done + c >= int(e.target[slot])
            out = int(e.out[slot] - e.gen[slot])
            rem[grp] -= c + (min(out, ntr.clip_max_new_tokens) if last else 0)
        busy.add(grp)
        chunks.append((slot, c))
    closed = {grp for grp in range(g) if left[grp] <= 0}
    reqs = e.reqs
    waiting = list(e.waiting)
    for rid in waiting if seen is None else waiting[:seen]:
        if len(closed) == g or e.n >= e.max_batch:
            break
        grp = cost.group_of(rid)
        if grp in closed:
            continue
        q = int(reqs.prompt[rid] + reqs.gen[rid])
        c = min(q, left[grp])
        need = e.blocks_for(c)
        if ntr is not None:
            out = min(int(reqs.output[rid] - reqs.gen[rid]), ntr.clip_max_new_tokens)
            if (q + out + e.block >= rem[grp] and active[grp]) or need > free[grp]:
                closed.add(grp)  # this rank's FCFS stops here; the others go on
                continue
            rem[grp] -= c if c < q else q + out
        elif free[grp] - need < watermark:
            closed.add(grp)
            continue
        free[grp] -= need
        left[grp] -= c
        if left[grp] <= 0:
            closed.add(grp)
        active[grp] = True
        busy.add(grp)
        e.waiting.remove(rid)  # admit this rank's head (Engine.admit_head takes the front)
        e.waiting.appendleft(rid)
        chunks.append((e.admit_head(now, q), c))
    return chunks, busy


def decode_mask(e: Engine, busy: set[int]) -> np.ndarray:
    """Slots of the ranks that run no prefill this iteration: they decode meanwhile (each
    rank picks its own batch; ``get_next_batch_to_run`` decodes when it has no prefill)."""
    return ~np.isin(e.cost.group_of(e.rid[:e.n]), list(busy))
