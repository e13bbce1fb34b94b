"""One model instance (replica) in the simulation: its batch, its paged KV cache, and the
mechanics of running an iteration. What to run next is the scheduler's job
(``schedulers.py``); when things happen is the event loop's (``sim.py``).

State per running sequence (numpy arrays over batch slots, in admission order):
``target`` tokens to prefill (prompt + tokens generated before a preemption, which vLLM's
recompute mode prefills again; Kwon et al. 2023 Sec. 4.5), ``done`` tokens prefilled so far
(chunked prefill advances it by chunks; Agrawal et al. 2024), ``ctx`` tokens in the KV cache,
``gen`` tokens generated, ``out`` tokens to generate. A sequence decodes once done == target,
and then ctx = prompt + gen - 1 (the newest token enters the cache in the next step). KV
blocks held = ceil(ctx / block) (PagedAttention, Kwon et al. 2023 Sec. 4.1), or a fixed
reservation for static batching.

A run of decode-only iterations with an unchanged batch is simulated in one go (the
contexts grow by one per step, so every step's time is known in advance): a run ends at the
first finishing sequence, when the KV blocks run out, or (if the scheduler could admit
work) at the first iteration boundary after a new request arrives.

Steps without CUDA graphs (``EagerHost``): a named engine whose file says which steps replay a
captured graph (engines/<id>.yaml ``overheads.cuda_graphs``; SGLang runs extend batches
eagerly, TensorRT-LLM replays only its captured decode batch sizes) pays the host's kernel
issue on the others (``eager_host``, built by serving.deploy from the engine file and the
dispatch figure; nothing here reads a file): every kernel of the pass goes through the
torch dispatcher, at the per-kernel host time the training model already charges for eager
PyTorch (frameworks/_common.yaml ``dispatch.forward_s``, measured with the real dispatcher by
benchmarks/framework_dispatch.py; frameworks_costs.exposed_dispatch counts the kernels the same
way, op.count x op.launches). ``overheads.eager_host`` says how that time meets the GPU's:
"overlapped" (kernel launches are asynchronous; the step lasts max(host, GPU)), "serial" (adds).
vLLM V1 replays piecewise graphs for any step of up to its largest capture size in tokens and
runs larger steps as compiled code without a graph (``max_tokens``, ``max_tokens_per_seq``);
frameworks/_common.yaml gives compiled launches the eager figure as their upper bound, and the
attention kernels a piecewise step issues between its graphs are not counted.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .cost import IterationCostModel, KVCapacity
from .requests import Requests

if TYPE_CHECKING:
    from ..engines import EngineSpec

RUN_CAP = 4096  # most decode steps simulated in one run


@dataclass(frozen=True)
class EagerHost:
    """The host floor of the steps an engine runs without CUDA graphs (module docstring):
    ``seconds`` = ``layers`` x the engine's host time per layer where its file gives one
    (engines/<id>.yaml ``overheads.eager_layer_s``), else ``kernels`` of one forward pass x the
    measured dispatch time per kernel."""

    kernels: float  # kernels of one pass through all stages (op.count x op.launches)
    per_kernel_s: float  # frameworks/_common.yaml dispatch.forward_s
    prefill: bool  # steps with prefill tokens run eagerly
    decode: bool  # decode-only steps run eagerly at any batch
    decode_max: int | None  # ... or above this captured batch size
    serial: bool  # host time adds to the GPU's (else max of the two)
    # steps of more tokens run without a graph, any kind (vLLM: min(per_seq x max_num_seqs,
    # cap), set per engine by ``for_batch``); None: no token limit
    max_tokens: int | None = None
    tokens_per_seq: int | None = None
    tokens_cap: int | None = None
    # the only decode batch sizes captured when they are a list and batches are not padded
    # (TensorRT-LLM: a decode batch of another size runs eagerly); None: every size up to
    # decode_max replays a graph (padded up to a captured size)
    decode_sizes: frozenset[int] | None = None
    layers: int = 0  # decoder layers of the pass (all stages)
    per_layer_s: float | None = None  # the engine's host time per layer (None: per kernel)
    # first tokens leave after the next batch is launched (engines/<id>.yaml
    # overheads.results_after_next_launch; Engine.launched)
    results_after_next_launch: bool = False

    @property
    def seconds(self) -> float:
        if self.per_layer_s is not None:
            return self.layers * self.per_layer_s
        return self.kernels * self.per_kernel_s

    def for_batch(self, max_num_seqs: int) -> EagerHost:
        """The token limit of an engine running at most ``max_num_seqs`` sequences."""
        if self.tokens_cap is None:
            return self
        per = self.tokens_per_seq
        cap = self.tokens_cap if per is None else min(per * int(max_num_seqs), self.tokens_cap)
        return replace(self, max_tokens=cap)

    def eager(self, prefill: bool, decodes: int, tokens: int = 0) -> bool:
        if self.max_tokens is not None and tokens > self.max_tokens:
            return True
        if prefill:
            return self.prefill
        return (self.decode or (self.decode_max is not None and decodes > self.decode_max)
                or (self.decode_sizes is not None and decodes not in self.decode_sizes))

    def launch_s(self, st: Step, decodes: int) -> float:
        """Host time to issue the step ``st`` (``decodes``: its decoding sequences): the eager
        host time where it runs without a graph, else 0 (a graph replay's issue time is not
        counted here)."""
        if st.kind == "iteration":
            tokens = decodes + sum(c for _, c in st.chunks)
            eager = self.eager(bool(st.chunks), decodes, tokens)
        else:
            eager = self.eager(False, decodes, decodes)
        return self.seconds if eager else 0.0

    def step(self, gpu, prefill: bool, decodes: int, tokens: int = 0):
        """The step's time given the GPU's ``gpu`` (scalar or array); ``tokens``: the step's
        tokens (prefill chunks + decodes)."""
        if not self.eager(prefill, decodes, tokens):
            return gpu
        return gpu + self.seconds if self.serial else np.maximum(gpu, self.seconds)


def eager_host(spec: EngineSpec | None, cost: IterationCostModel,
               per_kernel_s: float, per_layer_s: float | None = None) -> EagerHost | None:
    """The eager host floor of one instance of the engine ``spec`` describes (None: the generic
    engine, an engine file that does not say which steps run eagerly, or none that does).
    ``per_kernel_s``: the host's dispatch time per kernel (frameworks/_common.yaml
    dispatch.forward_s); ``per_layer_s``: the engine's host time per decoder layer of an eager
    forward (engines/<id>.yaml overheads.eager_layer_s), which replaces the per-kernel count
    where given. Pure: the caller (serving.deploy.build_deployment) reads the files."""
    from ..engines import gpu_memory_mib
    from ..inference import forward_pass

    plan = getattr(cost, "plan", None)  # a stand-in cost model (tests) names no engine
    if plan is None or spec is None or spec.overheads.eager_host is None:
        return None
    graphs = spec.overheads.cuda_graphs
    decode_max, decode_sizes = graphs.decode_limit()
    if graphs.decode and decode_max is None and spec.memory.reserve is not None:
        # SGLang's cuda_graph_max_bs by GPU memory and the engine's tp_size (server_args.py
        # _handle_gpu_memory_settings; engines/sglang.yaml memory.reserve buckets)
        decode_max = spec.memory.reserve.graph_bs(
            gpu_memory_mib(cost.system.device),
            spec.engine_tp(int(np.max(plan.tp)), int(np.max(plan.attention_dp))))
    prefill = graphs.prefill is False
    decode = graphs.decode is False
    if not prefill and not decode and decode_max is None and graphs.max_tokens is None:
        return None
    one = replace(plan, replicas=1, batch=1)
    res = forward_pass(cost.model, cost.system, one, cost.profile, 1.0, 1.0, 1.0, 1.0,
                       "prefill", 1.0, True)
    stage = sum(float(np.max(op.count)) * float(np.max(op.launches))
                for op in res.op_times.ops)
    return EagerHost(kernels=cost.pp * stage, per_kernel_s=per_kernel_s,
                     prefill=prefill, decode=decode, decode_max=decode_max,
                     serial=spec.overheads.eager_host == "serial",
                     tokens_per_seq=graphs.max_tokens_per_seq, tokens_cap=graphs.max_tokens,
                     decode_sizes=decode_sizes, layers=int(cost.model.num_layers),
                     per_layer_s=per_layer_s,
                     results_after_next_launch=bool(spec.overheads.results_after_next_launch))


@dataclass(frozen=True, slots=True)
class RequestPath:
    """A request's host time between its send and its arrival at the engine core. A text
    prompt is tokenised by the engine's API server (engines/<id>.yaml overheads.tokenizer: how
    its calls are serialised; the cost per prompt is the tokenizer's, engines/tokenizers.yaml,
    chosen by the model's family); a token-id prompt pays ``fixed_s`` only
    (overheads.token_ids_request_s). The API server runs beside the engine core (vLLM V1,
    SGLang's TokenizerManager, trtllm-serve: processes or threads of their own), so this
    delays the request, not the batch.

    The simulator queues prompts for the tokenizer (sim.Simulation, TOKENIZE events): they
    wait in arrival order for one of ``workers`` tokenising calls; a free worker takes the
    first, collects more until ``batch_wait_s`` after it or ``max_batch`` prompts, and a call
    of several prompts lasts as long as its longest one (``batch_time``). ``delay`` is one
    prompt's path alone (an idle tokenizer): the zero-load figure."""

    fixed_s: float = 0.0
    # measured (prompt tokens, seconds) points, increasing; None: not tokenised here
    tokenize: tuple[tuple[int, float], ...] | None = None
    workers: int = 1
    batch_wait_s: float = 0.0
    max_batch: int = 1
    tokenizer: str | None = None  # tokenizer family of the ``tokenize`` points
    proxy: bool = False  # the family stands in for the model's own tokenizer (not measured)

    @property
    def measured_tokens(self) -> int | None:
        """The longest prompt the ``tokenize`` points measure (None: no points); a longer
        prompt's cost is extrapolated (``tokenize_s``)."""
        return int(self.tokenize[-1][0]) if self.tokenize else None

    @property
    def queued(self) -> bool:
        """Whether prompts go through the tokenizer queue (a text prompt on an engine whose
        API server tokenises it)."""
        return self.tokenize is not None

    def tokenize_s(self, prompt_tokens: int) -> float:
        """Tokenising one prompt of ``prompt_tokens`` tokens, read piecewise-linearly from the
        ``tokenize`` points (from (0, 0)); 0 without points. Past the last point (n_last,
        t_last) the cost is extrapolated at that point's mean rate, t_last / n_last per token:
        the per-token cost grows with the prompt over the measured range (1.3 us at 128
        tokens, 3.0 us at 8192 for o200k), so the mean rate of the longest measured prompt is
        a lower bound for longer ones, and it does not carry the noise of the last segment's
        slope (3.6 us/token there, 1.25x the segment before)."""
        if not self.tokenize:
            return 0.0
        n = float(prompt_tokens)
        n_last, t_last = self.tokenize[-1]
        if n > n_last:
            return float(t_last) * n / float(n_last)
        xs = [0.0] + [float(x) for x, _ in self.tokenize]
        ys = [0.0] + [float(t) for _, t in self.tokenize]
        return float(np.interp(n, xs, ys))

    def batch_time(self, prompts) -> float:
        """One tokenising call over ``prompts`` (token counts): its longest prompt's time
        (tokenizers' encode_batch runs the list on its thread pool)."""
        return max((self.tokenize_s(int(p)) for p in prompts), default=0.0)

    def for_model(self, model) -> RequestPath:
        """This path with the tokenizer of ``model`` (a ModelSpec: engines.tokenizer_for): the
        engine's queue rules kept, the cost table of that model's tokenizer."""
        if not self.queued:
            return self
        from ..engines import tokenizer_for

        fid, fam, proxy = tokenizer_for(model)
        return replace(self, tokenize=tuple((int(n), float(t)) for n, t in fam.tokenize_s),
                       tokenizer=fid, proxy=proxy)

    def delay(self, prompt_tokens: int) -> float:
        """One request's path on an idle API server: ``fixed_s``, plus, for a text prompt, the
        micro-batch wait (``batch_wait_s``, when ``max_batch`` > 1: no second prompt comes)
        and tokenising it."""
        if not self.queued:
            return self.fixed_s
        wait = self.batch_wait_s if self.max_batch > 1 else 0.0
        return self.fixed_s + wait + self.tokenize_s(prompt_tokens)


@dataclass(slots=True)
class TokenizerQueue:
    """An instance's API-server tokenizer during a simulation (RequestPath's rules; driven by
    sim.Simulation): prompts sent and not yet in a tokenising call, the calls running, the
    end of the open micro-batch window (None: none open) and whether an event is due then."""

    waiting: deque = field(default_factory=deque)
    busy: int = 0
    deadline: float | None = None
    armed: bool = False


def request_path(spec: EngineSpec | None, prompt_input: str | None = None,
                 model=None) -> RequestPath | None:
    """The request path of the engine ``spec`` describes (None: no such host time stated).
    ``prompt_input`` (the scenario's ``engine.prompt_input``, which its schema checks;
    default ``text``): how the client sends the prompt. ``text`` is tokenised as
    ``overheads.tokenizer`` says, at the cost of ``model``'s tokenizer (a ModelSpec:
    engines.tokenizer_for, ``RequestPath.for_model``; None or a model without a table of its
    own: the default family as a proxy); ``tokens`` (token ids, e.g. /v1/completions with a
    list of ints) skips the tokenizer on every engine whose source says so and pays only
    ``overheads.token_ids_request_s`` (vLLM 0.10.0 - 0.10.1: the ids are detokenised through
    the same micro-batching tokenizer, its 2 ms wait; vLLM 0.10.2 on, SGLang, TensorRT-LLM: 0)."""
    oh = None if spec is None else spec.overheads
    if oh is None:
        return None
    if prompt_input == "tokens":
        return RequestPath(float(oh.token_ids_request_s)) if oh.token_ids_request_s else None
    if oh.tokenizer is None:
        return None
    tk = oh.tokenizer
    queue = RequestPath(0.0, (), workers=int(tk.workers),
                        batch_wait_s=float(tk.batch_wait_s), max_batch=int(tk.max_batch))
    return queue.for_model(model)  # the cost table of the model's tokenizer


@dataclass(slots=True)
class Step:
    """What an engine is doing until ``end``: one iteration, or a decode run of ``steps``
    iterations, the j-th ending at cum[j]."""

    kind: str  # "iteration" | "run"
    end: float
    start: float
    chunks: list = field(default_factory=list)  # (slot, tokens) prefilled this iteration
    decode: bool = False  # decoding slots advance one token (iteration)
    cum: np.ndarray | None = None
    step_times: np.ndarray | None = None
    steps: int = 0
    stop_at_finish: bool = True
    interruptible: bool = False
    dec_idx: np.ndarray | None = None  # iteration: the slots that decode


class Engine:
    """Mechanics of one instance; the scheduler decides what enters the batch."""

    def __init__(self, index: int, cost: IterationCostModel, kv: KVCapacity, max_batch: int,
                 reqs: Requests, iteration_overhead_s: float = 0.0,
                 host: EagerHost | None = None, path: RequestPath | None = None):
        self.index = index
        self.cost, self.kv, self.reqs = cost, kv, reqs
        self.max_batch = max_batch
        self.overhead = iteration_overhead_s
        # steps without CUDA graphs (``eager_host``, built where the engine is resolved;
        # None: no floor)
        self.host = host.for_batch(max_batch) if host is not None else None
        # host time on a request's way in (request_delay; None: none), at the cost of this
        # model's tokenizer
        self.path = path  # request_path: the queue rules and the model's tokenizer
        self.tokenizer = TokenizerQueue() if self.path is not None and self.path.queued else None
        self.block = kv.block_tokens
        self.total_blocks = kv.num_blocks
        self.watermark = max(int(0.01 * kv.num_blocks), 0)  # vLLM keeps 1 % free at admission
        self.waiting: deque[int] = deque()
        cap = max_batch
        self._ints = np.zeros((7, cap), np.int64)  # one array: compaction is one operation
        (self.rid, self.target, self.done, self.ctx, self.gen, self.out,
         self.reserve) = self._ints  # reserve: blocks reserved up front (static batching)
        self.last = np.zeros(cap)  # time of the sequence's latest token (NaN: none here)
        self.n = 0
        self.used = 0  # blocks held by the batch
        self.reserved = False  # any slot with a reservation
        self.held_elsewhere = 0  # blocks of sequences whose KV is being transferred out
        self.step: Step | None = None
        self.version = 0
        self.samples: list[tuple[float, int]] = []  # (time, KV blocks in use)
        self.pool = None  # set by the simulator
        self.slot_in_pool = 0
        self.fresh: list[int] = []  # requests whose first token the last iteration produced

    def request_delay(self, rid: int) -> float:
        """Host time between request ``rid``'s send and its arrival at this instance's engine
        core (RequestPath.delay; 0 without engine facts)."""
        if self.path is None:
            return 0.0
        return self.path.delay(int(self.reqs.prompt[rid]))

    # ---- blocks --------------------------------------------------------------------------
    def used_blocks(self) -> int:
        return self.used + self.held_elsewhere

    def free_blocks(self) -> int:
        return self.total_blocks - self.used - self.held_elsewhere

    def blocks_for(self, tokens: int) -> int:
        return -(-int(tokens) // self.block)

    def _recount(self) -> None:
        n = self.n
        if n == 0:
            self.used = 0
            return
        b = (self.ctx[:n] + (self.block - 1)) // self.block
        if self.reserved:
            b = np.maximum(b, self.reserve[:n])
        self.used = int(b.sum())

    def decode_growth(self, steps: int = 1) -> int:
        """Extra blocks the decoding sequences need to take ``steps`` more tokens."""
        n = self.n
        if n == 0:
            return 0
        bs = self.block
        ctx = self.ctx[:n]
        dec = self.done[:n] == self.target[:n]
        grown = (ctx + steps * dec + (bs - 1)) // bs
        if self.reserved:
            grown = np.maximum(grown, self.reserve[:n])
        return int(grown.sum()) - self.used

    def free_cap(self) -> int:
        return self.total_blocks - self.held_elsewhere

    # ---- batch membership -----------------------------------------------------------------
    def add(self, rid: int, target: int, done: int, ctx: int, reserve: int = 0) -> int:
        i = self.n
        reqs = self.reqs
        self.rid[i], self.target[i], self.done[i], self.ctx[i] = rid, target, done, ctx
        self.gen[i] = reqs.gen[rid]
        self.out[i] = reqs.output[rid]
        self.reserve[i] = reserve
        self.last[i] = math.nan
        self.n += 1
        if reserve:
            self.reserved = True
        self.used += max(-(-ctx // self.block), reserve)
        return i

    def admit_head(self, now: float, target: int, reserve: int = 0) -> int:
        """Move the head of the waiting queue into the batch as a fresh prefill of ``target``
        tokens (its first admission stamps the request's start); returns its slot."""
        rid = self.waiting.popleft()
        if math.isnan(self.reqs.start[rid]):
            self.reqs.start[rid] = now
        return self.add(rid, target=target, done=0, ctx=0, reserve=reserve)

    def keep(self, mask: np.ndarray) -> None:
        """Drop the slots where ``mask`` is False, preserving order (their gen is synced)."""
        n = self.n
        k = int(np.count_nonzero(mask))
        if k == n:
            return
        gone = ~mask
        self.reqs.gen[self.rid[:n][gone]] = self.gen[:n][gone]
        self._ints[:, :k] = self._ints[:, :n][:, mask]
        self.last[:k] = self.last[:n][mask]
        self.n = k
        self._recount()

    def clear(self) -> np.ndarray:
        """Empty the batch (hand-off); returns the slots' request ids."""
        n = self.n
        rids = self.rid[:n].copy()
        self.reqs.gen[rids] = self.gen[:n]
        self.n = 0
        self.used = 0
        return rids

    def requeue(self, rid: int) -> None:
        """Put a preempted sequence back in line: where its pool sends it (a DistServe decode
        instance hands it to a prefill instance), else at the front of this queue (vLLM)."""
        send = self.pool.requeue if self.pool is not None else None
        if send is None:
            self.waiting.appendleft(rid)
        else:
            send(self, rid)

    def preempt_last(self) -> int:
        """Evict the most recently admitted sequence (lowest FCFS priority), freeing its
        blocks; the caller re-queues it. Returns its request id."""
        self.n -= 1
        i = self.n
        rid = int(self.rid[i])
        self.reqs.gen[rid] = self.gen[i]
        self.reqs.preemptions[rid] += 1
        self.used -= max(-(-int(self.ctx[i]) // self.block), int(self.reserve[i]))
        return rid

    # ---- one iteration -----------------------------------------------------------------------
    def iteration(self, now: float, chunks: list[tuple[int, int]], decode: bool,
                  decode_mask: np.ndarray | None = None) -> Step:
        """Prefill ``chunks`` [(slot, tokens)] and, if ``decode``, one token for every
        decoding slot (those of ``decode_mask`` only, when given), in one batched forward
        pass (timed by the cost model; with attention DP it is told each chunk's and
        decode's group)."""
        n = self.n
        idx = dkv = None
        if decode:
            dec = self.done[:n] == self.target[:n]
            if decode_mask is not None:
                dec &= decode_mask
            for s, _ in chunks:
                dec[s] = False
            idx = dec.nonzero()[0]
            dkv = self.ctx[idx] + 1.0
        done, target = self.done, self.target
        spans, ending = [], 0
        for s, c in chunks:
            kv = int(done[s]) + c
            spans.append((c, kv))
            if kv >= target[s]:
                ending += 1
        nd = 0 if idx is None else idx.size
        chunk_groups = decode_groups = None
        if self.cost.groups > 1:  # attention DP: where each chunk and decode runs
            of = self.cost.group_of
            chunk_groups = [of(int(self.rid[s])) for s, _ in chunks]
            if idx is not None:
                decode_groups = [of(int(r)) for r in self.rid[idx]]
        t = self.cost.step_time(spans, dkv, nd + ending, self.overhead, chunk_groups,
                                decode_groups)
        if self.host is not None:
            tokens = nd + sum(c for _, c in chunks)
            t = self.overhead + float(self.host.step(t - self.overhead, bool(chunks), nd,
                                                     tokens))
        self.samples.append((now, self.used + self.held_elsewhere))
        return Step("iteration", now + t, now, chunks=chunks, decode=decode, dec_idx=idx)

    # ---- a run of decode iterations ------------------------------------------------------------
    def steps_that_fit(self, k: int) -> int:
        """Most decode steps (<= k) for which the growing contexts still find KV blocks."""
        cap = self.free_cap()
        n = self.n
        if self.used + n * ((k - 1) // self.block + 1) <= cap:
            return k  # even if every sequence crossed a block boundary
        if self.used + self.decode_growth(k) <= cap:
            return k
        lo, hi = 0, k  # used(lo) fits, used(hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.used + self.decode_growth(mid) <= cap:
                lo = mid
            else:
                hi = mid
        return lo

    def decode_run(self, now: float, k: int, stop_at_finish: bool, interruptible: bool
                   ) -> Step:
        """Up to ``k`` decode iterations of the whole (all-decoding) batch."""
        step_times = self.cost.decode_run_times(self.ctx[:self.n], k, self.overhead)
        if self.host is not None and self.host.eager(False, self.n, self.n):
            step_times = self.overhead + self.host.step(step_times - self.overhead, False,
                                                        self.n, self.n)
        cum = np.cumsum(step_times) + now
        self.samples.append((now, self.used + self.held_elsewhere))
        return Step("run", float(cum[-1]), now, cum=cum, step_times=step_times, steps=k,
                    stop_at_finish=stop_at_finish, interruptible=interruptible)

    def truncate(self, t: float) -> bool:
        """End the current run at the first iteration boundary at or after ``t`` (a request
        arrived that the scheduler could admit). Returns True if the end moved."""
        st = self.step
        if st is None or not st.interruptible:
            return False
        st.interruptible = False
        j = int(st.cum.searchsorted(t))
        if j + 1 >= st.steps:
            return False
        st.steps = j + 1
        st.end = float(st.cum[j])
        return True

    def launched(self, st: Step | None) -> None:
        """The step ``st`` was just launched (None: the instance goes idle). Where the engine
        sends a batch's tokens only after launching the next batch (``EagerHost.
        results_after_next_launch``; SGLang ``Scheduler.event_loop_overlap``: run_batch of the
        new batch, then process_batch_result of the last), the first tokens of the iteration
        that just ended leave once ``st``'s host issue is done: at its start + its eager host
        time (a batch replayed from a CUDA graph, or none, adds nothing). Only first tokens
        (TTFT) move; the later tokens' times are left as they are."""
        fresh = self.fresh
        if not fresh:
            return
        self.fresh = []
        if st is None:
            return
        if st.kind == "iteration":
            decodes = 0 if st.dec_idx is None else int(st.dec_idx.size)
        else:
            decodes = self.n
        t = st.start + self.host.launch_s(st, decodes)
        reqs = self.reqs
        reqs.first[fresh] = np.maximum(reqs.first[fresh], t)
        end = reqs.finish[fresh]  # a one-token request leaves with its first token
        reqs.finish[fresh] = np.where(np.isnan(end), end, np.maximum(end, t))

    # ---- completing a step -------------------------------------------------------------------
    def complete(self, now: float) -> list[int]:
        """Apply the finished step; returns the request ids that finished (and left)."""
        st = self.step
        self.step = None
        reqs = self.reqs
        n = self.n
        if st.kind == "iteration":
            self._complete_iteration(st, now)
        else:
            k = st.steps
            last = self.last[:n]
            rids = self.rid[:n]
            reqs.slot_gaps(st.cum[0] - last, rids)
            self.ctx[:n] += k
            if st.stop_at_finish:
                if k > 1:
                    reqs.shared_gaps(st.step_times[1:k], rids)
                reqs.tokens_at(st.cum[:k], rids)
                self.gen[:n] += k
            else:  # static batch: finished sequences ride along (padding) until the end
                gen = self.gen[:n]
                live = np.clip(self.out[:n] - gen, 0, k)
                if k > 1:
                    counted = live if reqs.counted is None else live[reqs.counted[rids]]
                    active = counted.size - np.sort(counted).searchsorted(np.arange(1, k),
                                                                          side="right")
                    reqs.add_gaps(st.step_times[1:k], active)
                counted = live if reqs.counted is None else live[reqs.counted[rids]]
                emitting = counted.size - np.sort(counted).searchsorted(np.arange(k),
                                                                       side="right")
                reqs.tokens_weighted(st.cum[:k], emitting)
                ends = live > 0
                reqs.finish[self.rid[:n][ends]] = st.cum[live[ends] - 1]
                gen += live
            last[:] = st.cum[k - 1]
        n = self.n
        fin = self.gen[:n] >= self.out[:n]
        if st.kind == "iteration":
            fin &= self.done[:n] >= self.target[:n]
        if not fin.any():
            self._recount()
            return []
        fr = self.rid[:n][fin]
        f = reqs.finish[fr]
        reqs.finish[fr] = np.where(np.isnan(f), now, f)
        self.keep(~fin)
        return fr.tolist()

    def _complete_iteration(self, st: Step, now: float) -> None:
        reqs = self.reqs
        for s, c in st.chunks:
            d = int(self.done[s]) + c
            self.done[s] = d
            self.ctx[s] = d
            if d >= self.target[s]:
                self.gen[s] += 1
                rid = int(self.rid[s])
                if math.isnan(reqs.first[rid]):
                    reqs.first[rid] = now
                    if self.host is not None and self.host.results_after_next_launch:
                        self.fresh.append(rid)
                elif not math.isnan(self.last[s]):
                    reqs.slot_gaps(np.array([now - self.last[s]]), self.rid[s:s + 1])
                reqs.tokens_at(now, self.rid[s:s + 1])
                self.last[s] = now
        if st.decode:
            idx = st.dec_idx
            if idx.size:
                self.ctx[idx] += 1
                self.gen[idx] += 1
                reqs.slot_gaps(now - self.last[idx], self.rid[idx])
                reqs.tokens_at(now, self.rid[idx])
                self.last[idx] = now

    def idle_sample(self, now: float) -> None:
        self.samples.append((now, self.used + self.held_elsewhere))
