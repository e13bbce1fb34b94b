"""Batching policies: given an engine's queue and batch, what runs next. One class each.

* ``StaticBatching`` -- request-level batching as in FasterTransformer / HF generate before
  Orca: when the instance is idle, take up to max_batch queued requests, pad their prompts to
  the longest, prefill them together and decode until the longest output ends (finished
  sequences keep their slot). KV memory is reserved up front for prompt + output.
* ``ContinuousBatching`` -- iteration-level scheduling (Orca, Yu et al. OSDI 2022) as vLLM's
  default scheduler does it (Kwon et al. SOSP 2023, Sec. 4.5; vLLM v0 ``Scheduler``): each
  iteration first admits queued requests (FCFS, up to ``max_batch`` sequences and
  ``token_budget`` prompt tokens, if their blocks fit with a 1 % watermark) and runs a
  prefill-only iteration; otherwise every running sequence decodes one token. When a
  decode needs a block and none is free, the latest-admitted sequence is preempted and
  later recomputed.
* ``ChunkedPrefill`` -- Sarathi-Serve's stall-free batching (Agrawal et al. OSDI 2024,
  arXiv 2403.02310, Sec. 4): every iteration carries all decodes, then continues
  partially-prefilled prompts, then admits new ones, cutting prompts into chunks so that the
  iteration holds at most ``token_budget`` tokens.
* ``PrefillOnly`` / ``DecodeOnly`` -- the two pools of DistServe (Zhong et al. OSDI 2024,
  arXiv 2401.09670): prefill instances batch prompts only and hand the KV cache over;
  decode instances admit transferred sequences (no compute) and decode.

``SCHEDULERS`` maps a name to its class (as Vidur's scheduler registry does): an aggregated
deployment runs the scheduler named by ``serving.scheduler.kind`` on every instance, a
disaggregated one runs ``prefill`` and ``decode`` on its two pools. A new policy is one class
with ``@register("name")``. Where a preempted sequence waits is the engine's business
(``Engine.requeue``), so every scheduler is built from the token budget alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SpecError
from .attention_dp import decode_mask, dp_prefill
from .engine import RUN_CAP, Engine, Step

if TYPE_CHECKING:
    from ..engines import SchedulerFacts


class Scheduler:
    name = "base"

    def __init__(self, token_budget: int, facts: SchedulerFacts | None = None,
                 recv_interval: int = 1):
        self.budget = token_budget  # tokens of one iteration (static: padded prompt tokens)
        self.facts = facts  # the named engine's scheduler facts (engines/<id>.yaml), if any
        # when a queued request is seen: None = at the next iteration boundary
        self.recv = self.receiver(facts, recv_interval)
        if recv_interval != 1 and (self.recv is None or self.recv.n != recv_interval):
            why = ("this scenario names no engine" if facts is None
                   else f"not the {self.name!r} scheduler")
            raise SpecError(f"serving.scheduler.recv_interval: {recv_interval} is SGLang "
                            "--scheduler-recv-interval, valid only with engine: sglang and "
                            f"scheduler prefill_first; {why} (remove it, or use 1)")

    def receiver(self, facts: SchedulerFacts | None,
                 recv_interval: int) -> IntervalReceiver | None:
        """How this policy receives requests given the engine's facts (override); the base
        sees every queued request at the next iteration boundary."""
        return None

    def next(self, e: Engine, now: float) -> Step | None:  # pragma: no cover - interface
        raise NotImplementedError

    def truncate(self, e: Engine, t: float) -> bool:
        """A request arrived at ``t`` while ``e`` runs: end a decode run where the scheduler
        would see it (the first iteration boundary at or after ``t``, Engine.truncate; with a
        receiver, after the step whose loop receives it)."""
        if self.recv is None:
            return e.truncate(t)
        return self.recv.cut(e.step, t)

    def seen(self, e: Engine) -> int:
        """How many requests at the head of ``e``'s queue the scheduler has received."""
        return len(e.waiting) if self.recv is None else self.recv.seen(e)

    # shared pieces -----------------------------------------------------------------------
    @staticmethod
    def make_room_for_decode(e: Engine) -> None:
        """Preempt the latest-admitted sequences until every running sequence can take one
        more token (vLLM: preemption by recompute, lowest FCFS priority first)."""
        cap = e.free_cap()
        if e.used + e.n <= cap:
            return
        while e.n > 0 and e.used + e.decode_growth(1) > cap:
            e.requeue(e.preempt_last())

    @staticmethod
    def decode_run(e: Engine, now: float, stop_at_finish: bool = True) -> Step:
        n = e.n
        rem = e.out[:n] - e.gen[:n]
        k = int(rem.min()) if stop_at_finish else int(rem.max())
        if stop_at_finish:
            k = min(k, RUN_CAP)
        k = max(e.steps_that_fit(max(k, 1)), 1)
        interruptible = stop_at_finish and not e.waiting and e.n < e.max_batch
        return e.decode_run(now, k, stop_at_finish, interruptible)

    def mixed_step(self, e: Engine, now: float, chunks: list[tuple[int, int]],
                   n_dec: int) -> Step | None:
        """The step of a scheduler that mixes prefill chunks with the ``n_dec`` decodes: the
        chunks with the decodes, else (chunks blocked on memory) single decode iterations while
        some prefill is partial, else a decode run; None when nothing runs."""
        if chunks:
            return e.iteration(now, chunks, decode=n_dec > 0)
        if n_dec == 0:
            return None
        if n_dec < e.n:
            return e.iteration(now, [], decode=True)
        return self.decode_run(e, now)


class ReceivingScheduler(Scheduler):
    """A policy whose decisions may run a step ahead of the engine (``IntervalReceiver``):
    before each decision it accounts the step that just ended and, on an idle engine,
    receives at once; after it, a decode run is cut where the loop first receives a request
    the decision missed. Subclasses decide in ``decide``."""

    def __init__(self, token_budget: int, facts: SchedulerFacts | None = None,
                 recv_interval: int = 1):
        super().__init__(token_budget, facts, recv_interval)
        self._last: Step | None = None  # the step decided last (now ended)

    def decide(self, e: Engine, now: float) -> Step | None:  # pragma: no cover - interface
        raise NotImplementedError

    def ended(self, st: Step | None) -> None:
        """Hook: ``st``, the step decided last, has ended (None: the engine was idle)."""

    def next(self, e: Engine, now: float) -> Step | None:
        st, self._last = self._last, None
        idle = st is None or e.n == 0
        self.ended(st)
        if self.recv is not None:
            self.recv.account(st)
            if idle:  # nothing runs: the idle loop receives at once
                self.recv.idle(now)
        step = self.decide(e, now)
        self._last = step
        if self.recv is not None:
            self.recv.cut_at_unseen(step, e)
        return step


SCHEDULERS: dict[str, type[Scheduler]] = {}


def register(name: str) -> Callable[[type[Scheduler]], type[Scheduler]]:
    """Class decorator: make a scheduler available under ``name``."""
    def add(cls: type[Scheduler]) -> type[Scheduler]:
        cls.name = name
        SCHEDULERS[name] = cls
        return cls
    return add


def make_scheduler(name: str, token_budget: int,
                   facts: SchedulerFacts | None = None, recv_interval: int = 1) -> Scheduler:
    """A new scheduler of the registered ``name`` (``facts``: the engine's, if named;
    ``recv_interval``: SGLang's --scheduler-recv-interval, prefill_first only)."""
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise SpecError(f"serving.scheduler.kind: no serving scheduler {name!r}; registered: "
                        f"{', '.join(sorted(SCHEDULERS))}") from None
    return cls(token_budget, facts, recv_interval)


@register("continuous")
class ContinuousBatching(Scheduler):
    prefill_only = False

    def admit(self, e: Engine, now: float) -> list[tuple[int, int]]:
        reqs = e.reqs
        chunks: list[tuple[int, int]] = []
        tokens = 0
        free = e.free_blocks()
        while e.waiting and e.n < e.max_batch:
            rid = e.waiting[0]
            q = int(reqs.prompt[rid] + reqs.gen[rid])
            if chunks and tokens + q > self.budget:
                break
            need = e.blocks_for(q)
            if free - need < e.watermark:
                break
            free -= need
            tokens += q
            slot = e.admit_head(now, q)
            chunks.append((slot, q))
        return chunks

    def next(self, e: Engine, now: float) -> Step | None:
        chunks = self.admit(e, now)
        if chunks:
            return e.iteration(now, chunks, decode=False)
        if self.prefill_only or e.n == 0:
            return None
        self.make_room_for_decode(e)
        if e.n == 0:
            return self.next(e, now)
        return self.decode_run(e, now)


@register("prefill")
class PrefillOnly(ContinuousBatching):
    """A DistServe prefill instance: admits and prefills prompts, never decodes (the
    simulation hands each prefilled sequence to a decode instance)."""

    prefill_only = True


@register("chunked")
class ChunkedPrefill(ReceivingScheduler):
    """When a request is seen: at the next iteration boundary; with vLLM's async scheduling
    (engine fact ``scheduler.async_scheduling``, default from 0.14.0) one step later, as with
    SGLang's overlap scheduler (``IntervalReceiver``, interval 1): EngineCore
    ``step_with_batch_queue`` schedules the batch after the running one when the running one
    starts, so a request sent at the end of step m is prefilled after step m + 2."""

    def receiver(self, facts: SchedulerFacts | None,
                 recv_interval: int) -> IntervalReceiver | None:
        on = facts is not None and bool(facts.async_scheduling)
        return IntervalReceiver(1) if on else None

    def decide(self, e: Engine, now: float) -> Step | None:
        """One iteration; it admits only the queued requests the scheduler has seen."""
        reqs = e.reqs
        self.make_room_for_decode(e)
        n = e.n
        dec = e.done[:n] == e.target[:n]
        n_dec = int(np.count_nonzero(dec))
        # preempted requests go back to the head of the queue, seen already
        seen = self.seen(e)
        if n_dec == n and not seen:
            return self.decode_run(e, now) if n else None  # nothing to prefill
        budget = self.budget - n_dec
        # blocks left once every decode has taken its next token (guaranteed above); each
        # decode takes at most one block, so count exactly only when that bound is tight
        free = e.free_blocks() - n_dec
        if n_dec and free < e.watermark + budget // e.block + 16:
            free = e.free_blocks() - e.decode_growth(1)
        chunks: list[tuple[int, int]] = []
        if n_dec < n:
            for slot in np.flatnonzero(~dec).tolist():  # partial prefills, admission order
                if budget <= 0:
                    break
                done, target = int(e.done[slot]), int(e.target[slot])
                c = min(target - done, budget)
                need = e.blocks_for(done + c) - e.blocks_for(done)
                if need > free:
                    c = (e.blocks_for(done) + free) * e.block - done
                    if c <= 0:
                        break
                    need = free
                free -= need
                budget -= c
                chunks.append((slot, c))
        while budget > 0 and seen and e.n < e.max_batch:
            seen -= 1
            rid = e.waiting[0]
            q = int(reqs.prompt[rid] + reqs.gen[rid])
            c = min(q, budget)
            need = e.blocks_for(c)
            if free - need < e.watermark:
                break
            free -= need
            budget -= c
            slot = e.admit_head(now, q)
            chunks.append((slot, c))
        return self.mixed_step(e, now, chunks, n_dec)


@register("static")
class StaticBatching(Scheduler):
    def next(self, e: Engine, now: float) -> Step | None:
        reqs = e.reqs
        if e.n:  # the batch has been prefilled: decode it to the end
            return self.decode_run(e, now, stop_at_finish=False)
        if not e.waiting:
            return None
        batch: list[int] = []
        longest = 0
        free = e.free_blocks()
        while e.waiting and len(batch) < e.max_batch:
            rid = e.waiting[0]
            p = max(longest, int(reqs.prompt[rid]))
            out = max([int(reqs.output[r]) for r in batch] + [int(reqs.output[rid])])
            need = (len(batch) + 1) * e.blocks_for(p + out)  # padded, reserved up front
            if batch and (need > free or (len(batch) + 1) * p > self.budget):
                break
            e.waiting.popleft()
            batch.append(rid)
            longest = p
        out = max(int(reqs.output[r]) for r in batch)
        reserve = e.blocks_for(longest + out)
        chunks = []
        for rid in batch:
            reqs.start[rid] = now
            slot = e.add(rid, target=longest, done=0, ctx=0, reserve=reserve)
            chunks.append((slot, longest))
        return e.iteration(now, chunks, decode=False)


@register("decode")
class DecodeOnly(Scheduler):
    """Admits sequences whose KV cache arrived from a prefill instance; decodes them (a
    preempted one goes back to a prefill instance: ``Engine.requeue``)."""

    def next(self, e: Engine, now: float) -> Step | None:
        reqs = e.reqs
        free = e.free_blocks()
        while e.waiting and e.n < e.max_batch:
            rid = e.waiting[0]
            ctx = int(reqs.prompt[rid] + reqs.gen[rid] - 1)
            need = e.blocks_for(ctx + 1)
            if free - need < e.watermark:
                break
            e.waiting.popleft()
            free -= need
            e.add(rid, target=ctx, done=ctx, ctx=ctx)
            e.last[e.n - 1] = reqs.first[rid] if reqs.gen[rid] == 1 else np.nan
        if e.n == 0:
            return None
        self.make_room_for_decode(e)
        if e.n == 0:
            return None
        return self.decode_run(e, now)


@register("inflight")
class InflightBatching(ReceivingScheduler):
    """TensorRT-LLM's in-flight batching with its default policies.

    Capacity (``GUARANTEED_NO_EVICT``, the executor's default ``SchedulerConfig``,
    cpp/include/tensorrt_llm/executor/executor.h; batch_manager/capacityScheduler.cpp): a
    request starts only if the KV blocks of its whole prompt + max_tokens fit, and holds them
    to the end, so nothing is ever evicted. Micro-batch (batch_manager/microBatchScheduler.cpp
    ``operator()`` at 0a949d3): the active requests in arrival order, every generation
    request one token, every context request whole; the first one that would push the
    iteration past ``max_num_tokens`` (``token_budget``) stops the scan (``break``). With
    chunked context off (TensorRT-LLM's default, ``enable_chunked_prefill`` False) each
    context runs in one iteration together with the decodes; with ``chunked`` on
    (``enable_chunked_prefill``) contexts are cut first-come-first-served to the tokens left,
    the cut rounded down to whole KV blocks (``setCtxRequestsChunkSize<kFIRST_COME_FIRST_
    SERVED>``, chunk unit = tokens_per_block). A context longer than the budget on an empty
    instance runs alone (TensorRT-LLM would refuse it: max_num_tokens < max input length).

    When a request is seen: with the engine fact ``scheduler.async_scheduling`` (the PyTorch
    backend's overlap scheduler, on by default: engines/trtllm.yaml source trtoverlap) one step
    later than at the iteration boundary (``IntervalReceiver``, interval 1): PyExecutor
    ``_executor_loop_overlap`` fetches new requests, schedules and launches batch j, and only
    then waits for batch j - 1 and sends its tokens, so a request sent when batch j - 1's
    token comes out is fetched by the loop that schedules batch j + 2. Without the fact (the
    0.5 - 0.6 family, pipeline parallelism: ``_executor_loop_pp``) at the next boundary.
    """

    chunked = False

    def receiver(self, facts: SchedulerFacts | None,
                 recv_interval: int) -> IntervalReceiver | None:
        on = facts is not None and bool(facts.async_scheduling)
        return IntervalReceiver(1) if on else None

    def decide(self, e: Engine, now: float) -> Step | None:
        """One iteration; it admits only the queued requests the scheduler has seen."""
        reqs = e.reqs
        n = e.n
        dec = e.done[:n] == e.target[:n]
        n_dec = int(np.count_nonzero(dec))
        seen = self.seen(e)
        if n_dec == n and not seen:
            return self.decode_run(e, now) if n else None
        budget = self.budget - n_dec  # generation requests come first in the active list
        chunks: list[tuple[int, int]] = []
        for slot in np.flatnonzero(~dec).tolist():  # chunked contexts in progress (FCFS)
            left = int(e.target[slot] - e.done[slot])
            c = left if left <= budget else budget // e.block * e.block
            if c <= 0:
                break
            chunks.append((slot, c))
            budget -= c
        free = e.free_blocks()
        while seen and e.n < e.max_batch:
            rid = e.waiting[0]
            q = int(reqs.prompt[rid] + reqs.gen[rid])
            if q <= budget:
                c = q
            elif self.chunked:
                c = budget // e.block * e.block
                if c <= 0:
                    break
            elif chunks or n_dec:
                break
            else:
                c = q  # alone on an idle instance
            need = e.blocks_for(reqs.prompt[rid] + reqs.output[rid])  # to completion
            if need > free:
                break
            free -= need
            budget -= c
            seen -= 1
            slot = e.admit_head(now, q, reserve=need)
            chunks.append((slot, c))
        return self.mixed_step(e, now, chunks, n_dec)


class IntervalReceiver:
    """When SGLang's scheduler sees a new request (sgl-project/sglang
    python/sglang/srt/managers/scheduler.py ``event_loop_overlap``; scheduler_recv_skipper.py
    ``SchedulerRecvSkipper``; sources in docs/serving.md, "When a request is seen").

    Overlap scheduler (on by default since v0.4, ``disable_overlap_schedule`` False): loop
    iteration j receives requests, decides and launches batch j, then waits for batch j - 1's
    result and sends its tokens. So the loop that decides the step starting at boundary
    ``b`` runs when the step before it starts, and it sees only the requests that arrived
    before that moment: a request a client sends when its previous one ends (output sent at
    the end of step m) is prefilled after step m + 2, not m + 1. An idle server's loop spins
    and receives at once.

    ``--scheduler-recv-interval N`` (default 1): ``recv_requests`` returns nothing unless
    the skipper's counter, raised by the weight of the last batch's forward mode (decode 1,
    idle 1, any other mode 1000: SGLANG_SCHEDULER_RECV_SKIPPER_WEIGHT_*), reaches N; it then
    resets to 0. A loop after a prefill batch always receives; during decoding every N-th.

    A loop runs at the start of every step and counts that step's weight; ``fire_t`` is the
    time of the latest loop that received (``fire_incl``: requests arriving at that very time
    count, for the loop of an idle server).
    """

    def __init__(self, interval: int = 1):
        if interval < 1:
            raise SpecError(f"serving.scheduler.recv_interval: must be >= 1, got {interval}")
        self.n = int(interval)
        self.counter = 0
        self.fire_t = -math.inf
        self.fire_incl = True
        self.idle_t = -math.inf  # when the server last received from idle

    def idle(self, now: float) -> None:
        self.counter = 0
        self.fire_t, self.fire_incl = now, True
        self.idle_t = now

    def _loops(self, st: Step) -> tuple[np.ndarray, bool]:
        """Start times of the steps of ``st`` (one loop each) and whether they are decodes."""
        if st.kind == "run":
            k = st.steps
            return np.concatenate(([st.start], st.cum[:k - 1])), True
        return np.array([st.start]), not st.chunks

    def account(self, st: Step | None) -> None:
        """Advance the counter over the loops of the finished step ``st``."""
        if st is None:
            return
        starts, decode = self._loops(st)
        if not decode:  # weight 1000 >= any interval: this loop receives
            self.counter = 0
            self.fire_t = float(starts[0])
            self.fire_incl = self.fire_t == self.idle_t  # the loop right after an idle launch
            return
        k = starts.size
        first = self.n - 1 - self.counter  # loop index whose counter reaches n
        if first > k - 1:
            self.counter += k
            return
        last = first + ((k - 1 - first) // self.n) * self.n
        self.counter = k - 1 - last
        self.fire_t = float(starts[last])
        self.fire_incl = self.fire_t == self.idle_t

    def _before(self, t: float) -> bool:
        return t < self.fire_t or (self.fire_incl and t == self.fire_t)

    def seen(self, e: Engine) -> int:
        """How many requests at the head of the queue the scheduler has received (the queue
        is in arrival order after any retracted ones, which it holds already)."""
        arrival = e.reqs.arrival
        if not e.waiting or self._before(float(arrival[e.waiting[-1]])):
            return len(e.waiting)  # the newest is received: all are
        k = 0
        for rid in e.waiting:
            if not self._before(float(arrival[rid])):
                break
            k += 1
        return k

    def unseen(self, e: Engine) -> float | None:
        """Arrival time of the first queued request not received yet, if any."""
        k = self.seen(e)
        if k < len(e.waiting):
            return float(e.reqs.arrival[e.waiting[k]])
        return None

    def cut_at_unseen(self, step: Step | None, e: Engine) -> None:
        """After a decision: a decode run ``step`` whose deciding loop missed a queued request
        ends after the step whose loop first receives it (``cut``); a run that could stop at a
        finishing sequence with a slot free is marked interruptible for it."""
        if step is None or step.kind != "run":
            return
        unseen = self.unseen(e)
        step.interruptible = step.interruptible or (unseen is not None and step.stop_at_finish
                                                    and e.n < e.max_batch)
        if unseen is not None:  # a request arrived that this batch's decision missed
            self.cut(step, unseen)

    def cut(self, st: Step | None, t: float) -> bool:
        """End the decode run ``st`` after the step whose starting loop first receives a
        request that arrived at ``t`` (a loop at a step start after ``t`` whose counter
        reaches the interval). Returns True if the end moved."""
        if st is None or st.kind != "run" or not st.interruptible:
            return False
        st.interruptible = False
        starts, _ = self._loops(st)
        k = starts.size
        first = self.n - 1 - self.counter
        after = int(np.searchsorted(starts, t, side="right"))  # loops strictly after t
        if first < after:
            first += -(-(after - first) // self.n) * self.n
        if first >= k - 1:
            return False
        st.steps = first + 1
        st.end = float(st.cum[first])
        return True


@register("prefill_first")
class PrefillFirst(ReceivingScheduler):
    """SGLang's default scheduler (python/sglang/srt/managers/scheduler.py
    ``get_next_batch_to_run``; schedule_policy.py ``PrefillAdder``): whenever requests wait
    and fit, the next batch is a prefill-only ("extend") batch and the running decodes wait
    for it (mixed chunks are off by default, ``enable_mixed_chunk`` False). The batch takes
    the request being chunked first, then waiting requests FCFS while ``chunked_prefill_size``
    (``token_budget``) tokens remain; a request longer than what is left is cut to it and
    continues in the next prefill batch. Otherwise every running request decodes.

    Memory admission with the engine's ``new_token_ratio`` facts (SGLang): the free KV tokens
    minus, for every running request, min(remaining output, clip) x ratio must exceed a new
    request's prompt + min(output, clip) + one page; each admitted request then reserves its
    prompt and clipped output (a cut one its chunk only). The ratio falls per decode batch
    from ``init`` to ``init x min_factor`` over ``decay_steps``, resets when the instance is
    idle and, after a retraction, becomes (decoded + retract_decode_steps x n) / (outputs + 1)
    (NewTokenRatioTracker). Without those facts (no engine named) admission keeps the 1 %
    watermark as ``continuous`` does.

    When a request is seen (SGLang, engine facts given; ``IntervalReceiver``): the overlap
    scheduler decides each batch while the previous one runs, and with
    ``--scheduler-recv-interval N`` it takes in new requests only every N decode batches.
    Without engine facts a request is seen at the next iteration boundary, as before.
    """

    def __init__(self, token_budget: int, facts: SchedulerFacts | None = None,
                 recv_interval: int = 1):
        super().__init__(token_budget, facts, recv_interval)
        self.ntr = facts.new_token_ratio if facts is not None else None
        self.ratio = 0.0  # no reserve without the facts
        if self.ntr is not None:
            self.ratio = self.ntr.init
            self.min_ratio = self.ntr.init * self.ntr.min_factor
            self.decay = (self.ntr.init - self.min_ratio) / self.ntr.decay_steps

    def receiver(self, facts: SchedulerFacts | None,
                 recv_interval: int) -> IntervalReceiver | None:
        return IntervalReceiver(recv_interval) if facts is not None else None

    def ended(self, st: Step | None) -> None:
        """Apply the decode batches the step ran (a run may have been cut short)."""
        if self.ntr is None or st is None:
            return
        k = st.steps if st.kind == "run" else int(st.decode)
        if k:
            self.ratio = max(self.min_ratio, self.ratio - self.decay * k)

    def decide(self, e: Engine, now: float) -> Step | None:
        step = self._next(e, now)
        if step is None and self.ntr is not None:
            self.ratio = self.ntr.init  # idle
        return step

    def _next(self, e: Engine, now: float) -> Step | None:
        reqs = e.reqs
        n = e.n
        budget = self.budget
        free = e.free_blocks()
        ntr = self.ntr
        rem = 0.0
        if ntr is not None:  # PrefillAdder.rem_total_tokens (page size = KV block)
            dec = e.done[:n] == e.target[:n]
            left = np.minimum(e.out[:n][dec] - e.gen[:n][dec], ntr.clip_max_new_tokens)
            rem = free * e.block - float(np.clip(left, 0, None).sum()) * self.ratio
        if e.cost.groups > 1:  # attention DP: every rank its own prefill batch
            chunks, busy = dp_prefill(e, now, self.budget, self.ntr, self.ratio,
                                      None if self.recv is None else self.recv.seen(e))
            if chunks:
                mask = decode_mask(e, busy)
                return e.iteration(now, chunks, decode=bool(mask.any()), decode_mask=mask)
            budget = 0  # nothing fits on any rank: the running requests decode
        chunks: list[tuple[int, int]] = []
        for slot in np.flatnonzero(e.done[:n] < e.target[:n]).tolist():  # the chunked request
            done = int(e.done[slot])
            c = min(int(e.target[slot]) - done, budget)
            need = e.blocks_for(done + c) - e.blocks_for(done)
            if c <= 0 or need > free:
                break
            free -= need
            budget -= c
            if ntr is not None:
                last = done + c >= int(e.target[slot])
                out = int(e.out[slot] - e.gen[slot])
                rem -= c + (min(out, ntr.clip_max_new_tokens) if last else 0)
            chunks.append((slot, c))
        seen = self.seen(e)
        while budget > 0 and seen and e.n < e.max_batch:
            seen -= 1
            rid = e.waiting[0]
            q = int(reqs.prompt[rid] + reqs.gen[rid])
            c = min(q, budget)
            need = e.blocks_for(c)
            if ntr is not None:
                out = min(int(reqs.output[rid] - reqs.gen[rid]), ntr.clip_max_new_tokens)
                # an idle instance still takes a request whose blocks fit (SGLang would
                # refuse one larger than its pool)
                if (q + out + e.block >= rem and (e.n or chunks)) or need > free:
                    break
                rem -= c if c < q else q + out
            elif free - need < e.watermark:
                break
            free -= need
            budget -= c
            slot = e.admit_head(now, q)
            chunks.append((slot, c))
        if chunks:
            return e.iteration(now, chunks, decode=False)
        before = e.n
        self.make_room_for_decode(e)  # SGLang retracts decodes when memory runs out
        if e.n < before and ntr is not None and e.n:  # NewTokenRatioTracker after a retract
            k = e.n
            self.ratio = min(1.0, float(e.gen[:k].sum() + ntr.retract_decode_steps * k)
                             / float(e.out[:k].sum() + 1))
        if e.n == 0:
            if e.waiting and n and self.recv is not None and not self.recv.seen(e):
                self.recv.idle(now)  # everything was retracted: the idle loop receives
            return self._next(e, now) if e.waiting and n else None
        dec = e.done[:e.n] == e.target[:e.n]
        if not dec.all():  # a chunk blocked on memory: decode the others one step
            return e.iteration(now, [], decode=True)
        return self.decode_run(e, now)
