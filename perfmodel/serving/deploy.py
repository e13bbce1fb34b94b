"""A serving deployment: instance types (plan, iteration cost model, KV capacity), how many
of each, and their schedulers; ``Deployment.simulate(workload)`` runs the event loop.

One instance = tp x pp GPUs holding one model copy (tp x attention_dp x pp with attention
data parallelism: attention_dp groups of tp GPUs, each with its own requests and KV cache, the
MoE layers over all of them; perfmodel/moe_parallel.py, cost.py). Aggregated schedulers
(static, continuous, chunked) run num_gpus / (tp * attention_dp * pp) identical instances. Disaggregated serving
(DistServe) runs prefill_gpus / (prefill_tp * pp) prefill instances and decode_gpus /
(decode_tp * pp) decode instances; a request's KV cache moves between them point to point,
each of the sending GPUs carrying its shard over its own link (``comm.p2p_time``), over
NVLink when a prefill and a decode instance fit in one node (DistServe places them so,
Sec. 4.3), otherwise over the scale-out network. An instance may span nodes (TP16 over two
8-GPU nodes, PP across them) as an inference plan does: its iteration cost is that plan's pass
(cost.py), with the pipeline split the scenario or the named engine makes
(``pipeline.engine_split``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..comm import p2p_time
from ..engines import engine_for, gpu_memory_mib
from ..errors import DoesNotFitError, SpecError
from ..frameworks import common_facts
from ..pipeline import engine_split
from ..plan import InferPlan
from ..profile import CalibrationProfile
from ..resolve import inference_plan
from ..specs.model import ModelSpec
from ..specs.scenario import EngineConfig, InferenceConfig, Parallelism, SchedulerConfig
from ..specs.system import System
from .cost import IterationCostModel, KVCapacity, kv_capacity
from .engine import EagerHost, Engine, RequestPath, eager_host, request_path
from .limits import RequestLimit, pool_request_limit, tightest
from .requests import Requests
from .schedulers import make_scheduler
from .sim import Pool, Simulation
from .workload import Workload

if TYPE_CHECKING:
    from ..engines import SchedulerFacts

CHUNKED_DEFAULT_BUDGET = 512  # vLLM's max_num_batched_tokens default with chunked prefill


@dataclass
class InstanceType:
    role: str  # mixed | prefill | decode
    count: int
    plan: InferPlan
    cost: IterationCostModel
    kv: KVCapacity
    host: EagerHost | None = None  # the engine's eager host floor (engine.eager_host)
    path: RequestPath | None = None  # host time on a request's way in (engine.request_path)

    @property
    def gpus(self) -> int:
        return self.count * int(self.plan.instance_gpus)


@dataclass
class SimResult:
    reqs: Requests
    engines: list[Engine]
    end: float
    workload: Workload | None = None  # the requests as the engine served them (``served``)


@dataclass
class Deployment:
    scheduler: SchedulerConfig
    instances: list[InstanceType]
    token_budget: int
    transfer_cross_node: bool | None = None
    system: System | None = None
    profile: CalibrationProfile | None = None
    _transfer_table: list | None = None
    # the named engine's scheduler facts (engines/<id>.yaml), for the policies that use them
    engine_facts: SchedulerFacts | None = None

    @property
    def num_gpus(self) -> int:
        return sum(i.gpus for i in self.instances)

    @property
    def request_limit(self) -> RequestLimit | None:
        """The named engine's cap on a request where its KV pool is below max_model_len
        (serving/limits.py; the tightest of the instance types), else None."""
        return tightest(i.kv.limit for i in self.instances)

    def served(self, workload: Workload) -> Workload:
        """``workload`` as the engine serves it: with a request limit, the prompts it refuses
        left out (failed) and the outputs it cuts short cut (``RequestLimit.served``)."""
        limit = self.request_limit
        return workload if limit is None else limit.served(workload)

    def with_counts(self, *counts: int) -> Deployment:
        """The same instance types with other replica counts (capacity planning)."""
        inst = [replace(i, count=c) for i, c in zip(self.instances, counts, strict=True)]
        return replace(self, instances=inst)

    def transfer_s(self, tokens: int) -> float:
        """Seconds to move the KV cache of ``tokens`` tokens from a prefill instance to a
        decode instance: every sending GPU ships its shard over its own link."""
        table = self._transfer_table
        if table is not None and tokens < len(table):
            return table[tokens]
        return float(self._transfer(np.asarray(tokens, float)))

    def _transfer(self, tokens: np.ndarray) -> np.ndarray:
        pre, dec = self.instances
        senders = int(pre.plan.tp * pre.plan.pp)
        receivers = int(dec.plan.tp * dec.plan.pp)
        per_link = pre.kv.bytes_per_token * tokens * senders / min(senders, receivers)
        return p2p_time(per_link, self.transfer_cross_node, self.system, self.profile)

    def prepare_transfers(self, max_tokens: int) -> None:
        """Tabulate transfer times for 0..max_tokens tokens (one vectorised call)."""
        self._transfer_table = self._transfer(np.arange(max_tokens + 1.0)).tolist()

    def simulate(self, workload: Workload) -> SimResult:
        workload = self.served(workload)
        reqs = Requests(workload)
        kind = self.scheduler.kind
        pools, schedulers, engines = [], [], []
        for inst in self.instances:
            name = kind if inst.role == "mixed" else inst.role  # DistServe: prefill, decode
            members = []
            for _ in range(inst.count):
                e = Engine(len(engines), inst.cost, inst.kv, self.scheduler.max_batch, reqs,
                           self.scheduler.iteration_overhead_s, host=inst.host,
                           path=inst.path)
                engines.append(e)
                members.append(e)
                schedulers.append(make_scheduler(name, self.token_budget, self.engine_facts,
                                                 self.scheduler.recv_interval))
            pools.append(Pool(inst.role, members, self.scheduler.routing))
        if kind == "disaggregated":
            self.prepare_transfers(int((workload.prompt + workload.output).max()))
        # a simulation visits most decode batch sizes, at its requests' contexts
        kv = (float(workload.prompt.min()), float((workload.prompt + workload.output).max()) + 2)
        for inst in self.instances:
            inst.cost.prepare(*kv)
        sim = Simulation(reqs, pools, schedulers,
                         self.transfer_s if kind == "disaggregated" else None,
                         concurrency=workload.concurrency)
        end = sim.run()
        if np.isnan(reqs.finish).any():  # a scheduler left work behind: a bug, not an input
            raise RuntimeError(f"serving simulation stalled with "
                               f"{int(np.isnan(reqs.finish).sum())} unfinished requests")
        return SimResult(reqs, engines, end, workload)


def watermark_free(kind: str, facts: SchedulerFacts | None) -> bool:
    """Whether the scheduler ``kind`` admits a request whenever its blocks fit, without
    vLLM's 1 % watermark (schedulers.py): TensorRT-LLM's ``inflight`` (GUARANTEED_NO_EVICT),
    ``static`` (reservation up front) and SGLang's ``prefill_first`` with its engine facts
    (PrefillAdder); the others keep 1 % of the blocks free."""
    return kind in ("inflight", "static") or (kind == "prefill_first" and facts is not None
                                              and facts.new_token_ratio is not None)


def _budget(cfg: SchedulerConfig, model: ModelSpec, longest_prompt: int) -> int:
    """Tokens per iteration: given, or Sarathi-Serve's / vLLM's defaults. Static batching
    has no token cap (its batches are bounded by max_batch and the KV reservation); its
    workspace is sized like continuous batching's."""
    if cfg.token_budget is not None:
        return cfg.token_budget
    if cfg.kind == "chunked":
        return CHUNKED_DEFAULT_BUDGET
    # vLLM v0 without chunked prefill: max_num_batched_tokens = max(max_model_len, 2048)
    return max(model.max_position_embeddings, 2048, longest_prompt)


def build_deployment(model: ModelSpec, system: System, parallelism: Parallelism,
                     inference: InferenceConfig, cfg: SchedulerConfig,
                     profile: CalibrationProfile, longest_prompt: int, longest_request: int,
                     counts: tuple[int, ...] | None = None,
                     engine: EngineConfig | None = None) -> Deployment:
    """Instance types for ``cfg`` on ``system``; ``counts`` overrides the instance counts that
    the system's GPU count implies. A named ``engine`` sizes each instance's KV cache by its
    own start-up rule (``engine_memory``) and, unless the scenario sets
    serving.scheduler.max_batch, caps the batch at its max_num_seqs default."""
    named = engine is not None and engine.name != "generic"
    facts = None
    user_set = cfg.model_fields_set
    if named:
        cfg = _engine_scheduler(cfg, engine, model, system, parallelism, inference, profile)
        facts = scheduler_facts(engine, parallelism)
    for name in ("offload", "speculative"):
        if getattr(inference, name, None) is not None:
            raise SpecError(f"inference.{name}: the serving simulator does not model {name} "
                            "yet; predict it as kind: inference")
    budget = _budget(cfg, model, longest_prompt)
    max_tokens = max(budget, longest_request)  # workspace and iteration-cost grid
    grid_tokens = max_tokens
    if cfg.kind == "static" and cfg.token_budget is None:
        grid_tokens = max(max_tokens, cfg.max_batch * longest_prompt)
        budget = cfg.max_batch * longest_prompt

    parallelism = engine_split(model, parallelism, engine if named else None)
    adp = parallelism.attention_dp
    dims = "tp*attention_dp*pp" if adp > 1 else "tp*pp"
    derive_running = (named and facts is not None and facts.max_running is not None
                      and "max_batch" not in user_set and not engine.max_num_seqs)

    def instance(role: str, tp: int, gpus: int, count: int | None,
                 max_batch: int) -> tuple[InstanceType, int]:
        """The instance type and its batch cap (``max_batch``, or SGLang's max_running_requests
        derived from this instance's KV pool when ``derive_running``)."""
        per = tp * adp * parallelism.pp
        if count is None:
            if gpus % per:
                raise SpecError(f"serving.scheduler: {role} pool of {gpus} GPUs is not a "
                                f"multiple of {dims} = {per}")
            count = gpus // per
        if count < 1:
            raise SpecError(f"serving.scheduler: the {role} pool needs at least {dims} = {per} "
                            f"GPUs, got {gpus}")
        plan = inference_plan(model, parallelism, inference, per * count, tp=tp,
                              replicas=count, request=False,
                              engine=engine.name if named else "generic",
                              engine_version=engine.version if named else None,
                              engine_variant=engine.variant if named else None)
        if per > system.gpus_per_node and system.inter_bandwidth_per_gpu <= 0:
            raise SpecError(f"system.inter_node: one {role} instance ({dims} = {per} GPUs) "
                            f"spans nodes of {system.gpus_per_node} GPUs, but the system has "
                            "no inter-node network; give e.g. inter_node: ib-ndr-400x8")
        if named:
            kv = engine_kv_capacity(model, system, parallelism, inference, tp, engine, profile,
                                    plan.pp_layers)
            if derive_running:  # SGLang: max_running_requests from each rank's pool
                max_batch = adp * facts.max_running.requests(
                    kv.tokens // adp,
                    engine.max_model_len or model.max_position_embeddings)
        else:
            kv = kv_capacity(model, system, plan, profile, max_tokens, max_batch)
        group_blocks = kv.num_blocks // adp  # a request's KV lives in its DP group's pool
        longest = longest_request
        margin = max(int(0.01 * group_blocks), 0)
        if kv.limit is not None:  # the engine cuts a request to its pool (serving/limits.py)
            longest = min(longest, kv.limit.max_request_tokens)
            if watermark_free(cfg.kind, facts):  # admitted whenever its blocks fit
                margin = 0
        need = -(-longest // kv.block_tokens) + margin
        if group_blocks < need:
            free_gib = group_blocks * kv.block_tokens * kv.bytes_per_token / 2**30
            if named:  # the engine's budget is the cause: say which rule and which field
                from ..engine_fit import engine_cause

                cause = engine_cause(model, system, parallelism, inference, tp, engine, profile)
                if cause:
                    raise SpecError(
                        f"serving: the longest request ({longest} tokens) does not fit "
                        f"in the KV cache of one {role} instance ({group_blocks * kv.block_tokens}"
                        f" tokens per GPU): {cause}")
            raise DoesNotFitError(
                f"serving: the longest request ({longest} tokens) does not fit in the KV "
                f"cache of one {role} instance ({group_blocks * kv.block_tokens} tokens, "
                f"{free_gib:.2f} GiB per GPU after weights {kv.memory['weights'] / 2**30:.1f} "
                f"GiB); use more tensor/pipeline parallelism, a smaller kv_dtype or shorter "
                "requests")
        cost = IterationCostModel(model, system, plan, profile, max_tokens=grid_tokens,
                                  max_context=longest_request + 1, max_batch=max_batch)
        host = path = None
        if named:  # the engine's own per-layer host time where its file gives one
            spec = engine_for(engine)
            by_kind = spec.overheads.eager_layer_s
            host = eager_host(spec, cost, common_facts().dispatch.forward_s,
                              None if by_kind is None else by_kind.for_model(model))
            path = request_path(spec, engine.prompt_input, model)
        return InstanceType(role, count, plan, cost, kv, host, path), max_batch

    def with_max_batch(max_batch: int) -> SchedulerConfig:
        if not derive_running:
            return cfg
        return cfg.model_copy(update={"max_batch": max_batch})

    tp = parallelism.tp
    if cfg.kind != "disaggregated":
        per = tp * adp * parallelism.pp
        count = counts[0] if counts else None
        if count is None and system.num_gpus % per:
            raise SpecError(f"parallelism: {dims} = {per} must divide system.num_gpus "
                            f"({system.num_gpus}); the GPUs form num_gpus/({dims}) replicas")
        mixed, max_batch = instance("mixed", tp, system.num_gpus, count, cfg.max_batch)
        return Deployment(with_max_batch(max_batch), [mixed], budget, system=system,
                          profile=profile, engine_facts=facts)
    tp_p = cfg.prefill_tp or tp
    tp_d = cfg.decode_tp or tp
    gp, gd = (cfg.prefill_gpus, cfg.decode_gpus) if counts else _pool_gpus(cfg, system)
    # a prefill and a decode instance side by side (both tp x attention_dp x pp); a request's
    # KV moves from the tp x pp GPUs of its prefill DP group to those of its decode DP group
    pair = (tp_p + tp_d) * adp * parallelism.pp
    cross = {"intra_node": False, "inter_node": True}.get(cfg.kv_transfer,
                                                           pair > system.gpus_per_node)
    if cross and system.inter_bandwidth_per_gpu <= 0:
        raise SpecError("serving.scheduler.kv_transfer: KV transfer between nodes needs an "
                        "inter-node network (system.inter_node, e.g. ib-ndr-400x8)")
    pre, max_batch = instance("prefill", tp_p, gp or 0, counts[0] if counts else None,
                              cfg.max_batch)
    dec, max_batch = instance("decode", tp_d, gd or 0, counts[1] if counts else None, max_batch)
    return Deployment(with_max_batch(max_batch), [pre, dec], budget,
                      transfer_cross_node=bool(cross), system=system, profile=profile,
                      engine_facts=facts)


def scheduler_facts(engine: EngineConfig, parallelism: Parallelism) -> SchedulerFacts:
    """The named engine's scheduler facts (its version's family) with the scenario's
    engine.async_scheduling applied; where the engine's async scheduling does not run with
    pipeline parallelism (``async_scheduling_with_pp`` false, vLLM 0.14) its default turns off
    at pp > 1 and an explicit on is refused, as the engine's config check does."""
    facts = engine_for(engine).scheduler
    asy = engine.async_scheduling
    no_pp = parallelism.pp > 1 and facts.async_scheduling_with_pp is False
    if asy and no_pp:
        raise SpecError(f"engine.async_scheduling: {engine.name} does not run async scheduling "
                        f"with pipeline parallelism (parallelism.pp = {parallelism.pp}); "
                        "leave it unset or set parallelism.pp: 1")
    if asy is None and facts.async_scheduling and no_pp:
        asy = False
    if asy is not None:
        facts = facts.model_copy(update={"async_scheduling": asy})
    return facts


def engine_kv_capacity(model: ModelSpec, system: System, parallelism: Parallelism,
                       inference: InferenceConfig, tp: int, engine: EngineConfig,
                       profile: CalibrationProfile, pp_layers: tuple | None = None
                       ) -> KVCapacity:
    """The KV pool of one instance as the named engine sizes it at start-up
    (``engine_memory.engine_memory``): its blocks, block size and memory by its categories.
    With attention DP the instance's pool is its attention_dp groups' pools (each GPU's
    figure is one group's: its attention shard, its experts, its requests' KV). With an
    uneven layer split (``pp_layers``) the figures are the largest stage's GPU's: its weights
    and its layers' KV per token bound the blocks every stage allocates alike. Below one
    request of max_model_len an engine whose file says ``memory.short_pool: cap`` (SGLang,
    TensorRT-LLM) starts and caps a request to the pool: the pool's ``limit``
    (serving/limits.py)."""
    from ..engine_memory import engine_memory, shape_for

    shape = replace(shape_for(parallelism, inference, system, pp_layers), tp=tp)
    mem = engine_memory(model, system.device, shape, engine_for(engine), engine,
                        profile.memory_overheads.cuda_context_gib)
    return KVCapacity(mem.kv_bytes_per_token, mem.kv_block_size,
                      mem.kv_cache_blocks * parallelism.attention_dp, dict(mem.breakdown),
                      pool_request_limit(mem, engine_for(engine)))


def _engine_scheduler(cfg: SchedulerConfig, engine: EngineConfig, model: ModelSpec,
                      system: System, parallelism: Parallelism, inference: InferenceConfig,
                      profile: CalibrationProfile) -> SchedulerConfig:
    """The scheduler the named engine runs, for what the scenario leaves unset: ``kind`` the
    engine's policy (engines/<id>.yaml scheduler.policy: vLLM V1 ``chunked``, TensorRT-LLM
    ``inflight``, SGLang ``prefill_first``), ``token_budget`` its max_num_batched_tokens
    (TensorRT-LLM max_num_tokens; SGLang chunked_prefill_size by GPU memory) and
    ``max_batch`` its max_num_seqs. Fields the scenario sets are kept. With attention DP these
    stay the instance's: SGLang divides them among the DP groups (python/sglang/srt/
    server_args.py: ``chunked_prefill_size // dp_size`` when enable_dp_attention;
    model_executor/model_runner.py: ``max_running_requests // dp_size``)."""
    spec = engine_for(engine)  # engine.version / variant: that family's scheduler facts
    dev = system.device
    gib = dev.usable_memory_bytes / 2**30
    update: dict = {}
    if "kind" not in cfg.model_fields_set and spec.scheduler.policy:
        update["kind"] = spec.scheduler.policy
    if cfg.token_budget is None:
        budget = engine.max_num_batched_tokens or spec.max_num_batched_tokens(gib, dev.id)
        if budget is None and spec.memory.reserve is not None:  # SGLang: by GPU memory
            budget = spec.memory.reserve.bucket(gpu_memory_mib(dev)).chunked_prefill_size
        if budget:
            update["token_budget"] = budget
    if "max_batch" not in cfg.model_fields_set:
        seqs = engine.max_num_seqs or spec.max_num_seqs(gib, dev.id)
        if seqs:
            update["max_batch"] = seqs
    return cfg.model_copy(update=update) if update else cfg


def _pool_gpus(cfg: SchedulerConfig, system: System) -> tuple[int, int]:
    """GPUs of the prefill and the decode pool: as given, the rest, or half each."""
    gp, gd = cfg.prefill_gpus, cfg.decode_gpus
    if gp is None and gd is None:
        gp = gd = system.num_gpus // 2
    elif gp is None:
        gp = system.num_gpus - gd
    elif gd is None:
        gd = system.num_gpus - gp
    if gp + gd != system.num_gpus:
        raise SpecError(f"serving.scheduler: prefill_gpus + decode_gpus = {gp} + {gd} must "
                        f"equal system.num_gpus ({system.num_gpus})")
    return gp, gd


def zero_load(dep: Deployment, prompt: int, output: int) -> dict[str, float]:
    """Latency of a single request on an idle deployment: the engine's request path (host
    time before the engine core sees it: engine.RequestPath, ``request_path_s``, 0 without
    one), its prefill, then its decode steps. TTFT and E2E include the request path, as a
    benchmark client's clock (and the simulation, sim READY) does."""
    inst = dep.instances[0]
    path = inst.path.delay(prompt) if inst.path is not None else 0.0
    ttft = path + inst.cost.iteration_time([prompt], [prompt])
    dec_cost = dep.instances[-1].cost
    # the decode steps j = 1 .. output - 1 (iteration_time([], [], [prompt + j]) each)
    steps = dec_cost.single_decode_times(prompt + np.arange(1.0, output)).tolist()
    transfer = dep.transfer_s(prompt) if dep.scheduler.kind == "disaggregated" else 0.0
    tpot = (sum(steps) + transfer) / (output - 1) if output > 1 else 0.0
    return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": ttft + transfer + sum(steps),
            "request_path_s": path}

