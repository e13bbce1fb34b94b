"""The discrete-event loop: arrivals, engine steps and KV transfers in time order (heapq).

Requests arrive (pre-generated, sorted), a router sends each to the instance of its pool
with the fewest outstanding requests (or round-robin), and every instance runs iterations
back to back while it has work; its scheduler decides what each iteration holds. An idle
instance wakes when work arrives; a busy one whose current decode run could take the new
request is cut at the next iteration boundary (iteration-level scheduling, Orca).
Disaggregated serving (DistServe) adds a second pool: a request's first token comes from a
prefill instance, its KV cache then travels to a decode instance (``transfer_s``), and the
prefill instance keeps the blocks until the transfer ends.

A closed loop (``Workload.concurrency`` = C, the way ``vllm bench serve --max-concurrency``,
genai-perf's concurrency mode and SGLang's ``bench_serving --max-concurrency`` load a server)
sends requests 0..C-1 at t = 0 and request i + C the moment a request ends (zero client
think time): an ARRIVE event at the finish time, handled after the instance has scheduled
its next iteration, so the new request joins at the next iteration boundary, as a request
arriving over HTTP during an engine step does. At most C requests are ever in the system.

A request sent by a client reaches its instance's engine core only after the engine's host
time on the request path (engine.RequestPath): the router counts it at once, the instance's
scheduler sees it later (a READY event), and its TTFT, measured from the send, includes the
wait (``Requests.ready``: the metrics report it as the request path, apart from queueing at
the engine core). A text prompt is tokenised by the engine's API server (engines/<id>.yaml
``overheads.tokenizer``; the cost is the model's tokenizer's, engines/tokenizers.yaml): prompts
queue there in arrival order for the API server's tokenising workers, which take them one at a
time or in micro-batches (``_tokenize_next``, TOKENIZE / TOKENIZED events): vLLM's single
tokenizer thread and SGLang's TokenizerManager event loop serialise concurrent prompts,
trtllm-serve's thread pool runs them side by side. A token-id prompt pays a fixed
``token_ids_request_s`` (``Engine.request_delay``). Other requests' steps are not slowed (the
API server is a process or thread of its own). A preempted or transferred request does not
pay it again.

Everything is deterministic: the workload is fixed by its seed and ties are broken by a
sequence number.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .engine import Engine
from .requests import Requests
from .schedulers import Scheduler

STEP, TRANSFER, ARRIVE, READY, TOKENIZE, TOKENIZED = 0, 1, 2, 3, 4, 5


@dataclass
class Pool:
    """Instances of one role: 'mixed' (prefill and decode), 'prefill' or 'decode'."""

    role: str
    engines: list[Engine]
    routing: str = "least_loaded"
    outstanding: np.ndarray = field(default=None)  # requests routed and not yet gone
    rr: int = 0
    requeue: Callable[[Engine, int], None] | None = None  # where preempted sequences go

    def __post_init__(self):
        self.outstanding = np.zeros(len(self.engines), np.int64)
        for i, e in enumerate(self.engines):
            e.pool, e.slot_in_pool = self, i

    def pick(self) -> Engine:
        if self.routing == "round_robin":
            i = self.rr % len(self.engines)
            self.rr += 1
        else:
            i = int(np.argmin(self.outstanding))
        return self.engines[i]


class Simulation:
    """Runs a workload through pools of engines. ``schedulers[e.index]`` drives engine e."""

    def __init__(self, reqs: Requests, pools: list[Pool], schedulers: list[Scheduler],
                 transfer_s: Callable[[int], float] | None = None,
                 concurrency: int | None = None):
        self.reqs = reqs
        self.concurrency = concurrency  # closed loop: clients; None: pre-set arrivals
        self.pools = pools
        self.entry = pools[0]  # arrivals go here ('mixed' or 'prefill')
        self.decode_pool = next((p for p in pools if p.role == "decode"), None)
        if self.decode_pool is not None:  # DistServe: recompute a preempted KV cache
            self.decode_pool.requeue = self.requeue_to_prefill
        self.engines = [e for p in pools for e in p.engines]
        self.schedulers = schedulers
        self.transfer_s = transfer_s
        self.heap: list = []
        self.order = 0
        self.transfers: dict[int, tuple[Engine, int]] = {}
        self.pending: dict[int, Engine] = {}  # sent, not yet at their engine core (READY)
        self.now = 0.0

    # ---- event plumbing ---------------------------------------------------------------------
    def _push(self, t: float, kind: int, ref: int, version: int) -> None:
        self.order += 1
        heapq.heappush(self.heap, (t, self.order, kind, ref, version))

    def _kick(self, e: Engine, now: float) -> None:
        step = self.schedulers[e.index].next(e, now)
        e.step = step
        e.launched(step)  # first tokens that leave after this launch (Engine.launched)
        if step is None:
            e.idle_sample(now)
            return
        e.version += 1
        self._push(step.end, STEP, e.index, e.version)

    def _notify(self, e: Engine, now: float) -> None:
        # An idle instance starts on the first request it receives, before requests sent at the
        # same instant reach it: an idle vLLM EngineCore blocks in input_queue.get() and
        # TensorRT-LLM's idle executor in a blocking get() (batch_wait_timeout_ms 0: no wait for
        # more), each draining only what is already queued; requests sent together arrive
        # milliseconds apart (HTTP, tokenisation), after that step started. (vllm v1/engine/
        # core.py _process_input_queue @b4622cf; TensorRT-LLM executor_request_queue.py
        # _get_from_request_queue @007a750, llm_args.py @7b437aa; review 1203c finding 4.)
        if e.step is None:
            self._kick(e, now)
        elif self.schedulers[e.index].truncate(e, now):
            e.version += 1
            self._push(e.step.end, STEP, e.index, e.version)

    def _enqueue(self, pool: Pool, rid: int, now: float, front: bool = False,
                 sent: bool = False) -> None:
        """Route ``rid`` to an instance of ``pool``; ``sent``: a client has just sent it, so it
        reaches the engine core after the engine's request-path host time (module docstring)."""
        e = pool.pick()
        pool.outstanding[e.slot_in_pool] += 1
        if sent and e.tokenizer is not None:  # a text prompt: the API server's tokenizer
            self.pending[rid] = e
            e.tokenizer.waiting.append(rid)
            self._tokenize_next(e, now)
            return
        delay = e.request_delay(rid) if sent else 0.0
        if sent:  # the time its engine core sees it (metrics: request path vs queueing)
            self.reqs.ready[rid] = self.reqs.arrival[rid] + delay
        if delay > 0.0:
            self.pending[rid] = e
            self._push(now + delay, READY, rid, 0)
            return
        self._admit(e, rid, now, front)

    def _tokenize_next(self, e: Engine, now: float) -> None:
        """Start the tokenising calls ``e``'s API server can start at ``now`` (RequestPath):
        while a worker is free and prompts wait, the first waiting prompt opens a micro-batch
        window of ``batch_wait_s`` (none when ``max_batch`` is 1); the call starts when the
        window ends or ``max_batch`` prompts wait, holds up to ``max_batch`` of them in arrival
        order and lasts RequestPath.batch_time; each of its prompts reaches the engine core
        when it ends (a READY event; ``Requests.ready``)."""
        q, path = e.tokenizer, e.path
        while q.waiting and q.busy < path.workers:
            if q.deadline is None:
                q.deadline = now + (path.batch_wait_s if path.max_batch > 1 else 0.0)
            if len(q.waiting) < path.max_batch and now < q.deadline:
                if not q.armed:  # wake at the window's end (TOKENIZE)
                    q.armed = True
                    self._push(q.deadline, TOKENIZE, e.index, 0)
                return
            batch = [q.waiting.popleft() for _ in range(min(path.max_batch, len(q.waiting)))]
            q.deadline = None
            q.busy += 1
            done = now + path.batch_time(self.reqs.prompt[batch])
            for rid in batch:
                self.reqs.ready[rid] = done + path.fixed_s
                self._push(done + path.fixed_s, READY, rid, 0)
            self._push(done, TOKENIZED, e.index, 0)

    def _admit(self, e: Engine, rid: int, now: float, front: bool = False) -> None:
        if front:
            e.waiting.appendleft(rid)
        else:
            e.waiting.append(rid)
        self._notify(e, now)

    def requeue_to_prefill(self, e: Engine, rid: int) -> None:
        """A decode instance preempted ``rid``: recompute its KV cache on a prefill instance."""
        e.pool.outstanding[e.slot_in_pool] -= 1
        self._enqueue(self.entry, rid, self.now, front=True)

    # ---- the loop --------------------------------------------------------------------------------
    def run(self) -> float:
        """Simulate until every request has finished; returns the end time."""
        arrival = self.reqs.arrival
        n = arrival.size
        i = 0
        heap = self.heap
        if self.concurrency is not None:  # closed loop: the first C requests at t = 0
            self.next_rid = min(self.concurrency, n)
            for rid in range(self.next_rid):
                arrival[rid] = 0.0
                self._push(0.0, ARRIVE, rid, 0)
            i = n  # no pre-set arrivals
        while i < n or heap:
            if heap and (i >= n or heap[0][0] <= arrival[i]):
                t, _, kind, ref, version = heapq.heappop(heap)
                self.now = t
                if kind == STEP:
                    e = self.engines[ref]
                    if version != e.version or e.step is None:
                        continue
                    self._step_done(e, t)
                elif kind == ARRIVE:  # its send time is set already (_send_next)
                    self._enqueue(self.entry, ref, t, sent=True)
                elif kind == READY:  # past the request path: the engine core has it
                    self._admit(self.pending.pop(ref), ref, t)
                elif kind == TOKENIZE:  # a micro-batch window ends
                    e = self.engines[ref]
                    e.tokenizer.armed = False
                    self._tokenize_next(e, t)
                elif kind == TOKENIZED:  # a tokenising call ends: its worker is free
                    e = self.engines[ref]
                    e.tokenizer.busy -= 1
                    self._tokenize_next(e, t)
                else:
                    self._transfer_done(ref, t)
            else:
                t = float(arrival[i])
                self.now = t
                self._enqueue(self.entry, i, t, sent=True)
                i += 1
        return self.now

    def _step_done(self, e: Engine, now: float) -> None:
        finished = e.complete(now)
        pool = e.pool
        if finished:
            pool.outstanding[e.slot_in_pool] -= len(finished)
        if pool.role == "prefill" and e.n:
            self._hand_off(e, now)
        self._kick(e, now)
        # after the kick: an engine that sends an iteration's first tokens only once the next
        # batch is launched (Engine.launched) has just moved a one-token request's finish
        # later; its client sees the request end then, not at the step's end
        if finished and self.concurrency is not None:
            self._send_next(finished, now)

    def _send_next(self, finished: list[int], now: float) -> None:
        """Closed loop: each finished request's client sends the next unsent request the
        moment its last token reached the client, ``finish`` as final after the instance
        launched its next step (static batching reports a request's end before the batch
        leaves the instance: the request is then queued at ``now``; an engine that sends
        first tokens after its next launch delivers a one-token request after ``now``: the
        request is queued then). A client never sends before its previous request ended:
        arrival = finish of the request it replaces."""
        reqs = self.reqs
        n = reqs.arrival.size
        if len(finished) > 1:  # the clients whose requests ended first send first
            finished = sorted(finished, key=lambda r: reqs.finish[r])
        for done in finished:
            if self.next_rid >= n:
                return
            end = float(reqs.finish[done])
            reqs.arrival[self.next_rid] = end
            reqs.sent_after[self.next_rid] = done
            self._push(max(now, end), ARRIVE, self.next_rid, 0)
            self.next_rid += 1

    def _hand_off(self, e: Engine, now: float) -> None:
        """Every sequence a prefill instance just prefilled leaves for a decode instance; its
        blocks stay held until its KV cache has arrived."""
        n = e.n
        ctxs = e.ctx[:n].tolist()
        blocks = [-(-c // e.block) for c in ctxs]
        rids = e.clear().tolist()
        for rid, b, ctx in zip(rids, blocks, ctxs, strict=True):
            e.held_elsewhere += b
            self.transfers[rid] = (e, b)
            self._push(now + self.transfer_s(ctx), TRANSFER, rid, 0)
        e.pool.outstanding[e.slot_in_pool] -= n

    def _transfer_done(self, rid: int, now: float) -> None:
        src, blocks = self.transfers.pop(rid)
        src.held_elsewhere -= blocks
        self._enqueue(self.decode_pool, rid, now)
        if src.step is None and src.waiting:
            self._kick(src, now)
