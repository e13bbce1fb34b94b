"""Serving engines as data: the schema of ``engines/<id>.yaml`` and its loader.

An engine file holds the sourced facts that decide an engine's capacity before any request
arrives: how it budgets device memory for the KV cache (``memory.budget``), what it subtracts
(weights, the activation peak of a profiling run, non-torch buffers), its block size, its
scheduler defaults and its all-reduce choice. Every non-null number is backed by a source id
(``field_sources``); facts without a published source are null, never guessed. The rules that
turn these facts into a KV capacity live in ``perfmodel.engine_memory``; the scenario's
``engine:`` section (``specs.scenario.EngineConfig``) names the engine and overrides its defaults.

Files come in through the package's one file door (``specs.registry.load_file``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import Field, model_validator

from .errors import SpecError, unknown_id
from .paths import data_dir
from .specs.common import Source, Strict
from .specs.types import Bool, Float, Int

#: engines that have a data file; ``generic`` is perfmodel's own engine-neutral model
ENGINE_IDS = ("vllm", "sglang", "trtllm", "llamacpp")
Budget = Literal["total_fraction", "init_free_fraction", "free_after_peak_fraction",
                 "context_upfront"]


class ReserveBucket(Strict):
    """SGLang's defaults below a GPU-memory size (MiB): chunked_prefill_size and
    cuda_graph_max_bs for small and large TP."""

    below_mb: Float = Field(gt=0)
    chunked_prefill_size: Int = Field(ge=1)
    graph_bs_small_tp: Int = Field(ge=0)
    graph_bs_large_tp: Int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            if len(data) != 4:
                raise SpecError(f"a reserve bucket is [below_mb, chunked_prefill_size, "
                                f"graph_bs_small_tp, graph_bs_large_tp], got {list(data)}")
            return dict(zip(("below_mb", "chunked_prefill_size", "graph_bs_small_tp",
                             "graph_bs_large_tp"), data, strict=True))
        return data


class ReserveRule(Strict):
    """The default memory fraction from a reserve in MiB (SGLang's mem_fraction_static rule):
    f = (gpu_mem - reserved) / gpu_mem, reserved = base + per_prefill_token x max(chunk,
    min_prefill_tokens) + per_graph_batch x graph_bs + per_tp_pp x tp x pp, at least floor_mb on
    GPUs above floor_above_mb."""

    base_mb: Float = Field(ge=0)
    per_prefill_token_mb: Float = Field(ge=0)
    min_prefill_tokens: Int = Field(ge=0)
    per_graph_batch_mb: Float = Field(ge=0)
    per_tp_pp_mb: Float = Field(ge=0)
    floor_mb: Float = Field(ge=0)
    floor_above_mb: Float = Field(ge=0)
    small_tp_below: Int = Field(ge=1)
    buckets: list[ReserveBucket] = Field(min_length=1)

    def bucket(self, gpu_mem_mb: float) -> ReserveBucket:
        return next((b for b in self.buckets if gpu_mem_mb < b.below_mb), self.buckets[-1])


class MemoryFacts(Strict):
    budget: Budget
    fraction: Float | None = Field(default=None, gt=0, le=1)
    fraction_name: str | None = None
    profile_run: Bool = False
    sampler_bytes_per_logit: Float | None = Field(default=None, ge=0)
    # fused MoE (vLLM): tokens per chunk; the (chunk, top_k, hidden) output cache is held at
    # the MoE layer's activation peak (None: not counted)
    moe_chunk_tokens: Int | None = Field(default=None, ge=1)
    non_torch_gib_tp1: Float | None = Field(default=None, ge=0)
    non_torch_gib_tp_multi: Float | None = Field(default=None, ge=0)
    non_torch_gib_nvls_extra: Float | None = Field(default=None, ge=0)  # NVLS fabrics, TP >= 2
    cuda_graphs_in_budget: Bool = False
    block_size: Int = Field(ge=1)
    default_n_ctx: Int | None = Field(default=None, ge=1)
    reserve: ReserveRule | None = None


class SchedulerFacts(Strict):
    max_num_seqs: Int | None = Field(default=None, ge=1)
    max_num_seqs_large_gpu: Int | None = Field(default=None, ge=1)
    max_num_batched_tokens: Int | None = Field(default=None, ge=1)
    max_num_batched_tokens_large_gpu: Int | None = Field(default=None, ge=1)
    large_gpu_min_gib: Float | None = Field(default=None, gt=0)
    large_gpu_excludes: list[str] = Field(default_factory=list)
    chunked_prefill: Bool | None = None
    prefix_caching: Bool | None = None
    preemption: Literal["recompute", "swap"] | None = None
    # the serving simulator's scheduler that does what the engine's does
    # (perfmodel/serving/schedulers.py); a scenario without serving.scheduler.kind runs it
    policy: Literal["continuous", "chunked", "inflight", "prefill_first"] | None = None


class CommFacts(Strict):
    """The engine's tensor-parallel all-reduce choice: its own kernel for TP sizes in
    ``custom_allreduce_world_sizes`` below ``custom_allreduce_max_bytes`` (``_tp2``: at TP <=
    2, where it differs), NCCL above (``perfmodel.engine_comm``)."""

    custom_allreduce_world_sizes: list[int] | None = None
    custom_allreduce_max_bytes: Int | None = Field(default=None, ge=1)
    custom_allreduce_max_bytes_tp2: Int | None = Field(default=None, ge=1)
    oneshot_max_tokens: Int | None = Field(default=None, ge=1)  # one-shot below, two-shot above


class OverheadFacts(Strict):
    step_cpu_s: Float | None = Field(default=None, ge=0)
    request_s: Float | None = Field(default=None, ge=0)


class EngineSpec(Strict):
    """One engine's sourced facts (engines/<id>.yaml)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    version: str
    memory: MemoryFacts
    scheduler: SchedulerFacts
    comm: CommFacts = CommFacts()
    overheads: OverheadFacts = OverheadFacts()
    field_sources: dict[str, list[str]] = Field(min_length=1)
    sources: list[Source] = Field(min_length=1)
    notes: str | None = None

    @model_validator(mode="after")
    def _check_sources(self) -> EngineSpec:
        """Every field_sources key names a real field (or section) and known source ids, and
        every non-null fact is covered by a key: no unsourced number."""
        known = {s.id for s in self.sources}
        facts = _leaves(self.model_dump(include={"memory", "scheduler", "comm", "overheads"}))
        covered: set[str] = set()
        for keys, ids in self.field_sources.items():
            for key in (k.strip() for k in keys.split(",")):
                hits = {f for f in facts if f == key or f.startswith(key + ".")}
                if not hits and key not in _sections():
                    raise SpecError(f"field_sources: {key!r} is not a field of an engine file")
                missing = [i for i in ids if i not in known]
                if missing:
                    raise SpecError(f"field_sources[{key!r}]: source id(s) {missing} not in "
                                    f"sources ({sorted(known)})")
                covered |= hits
        unsourced = sorted(f for f, v in facts.items() if v not in (None, []) and f not in covered)
        if unsourced:
            raise SpecError(f"engine {self.id!r}: no source for {unsourced[:5]}; add them to "
                            "field_sources or set them to null")
        return self

    def max_num_seqs(self, device_memory_gib: float, device_id: str) -> int | None:
        """The scheduler's default sequence cap on this device (vLLM: larger on big GPUs)."""
        s = self.scheduler
        return s.max_num_seqs_large_gpu if self._large(device_memory_gib, device_id) \
            and s.max_num_seqs_large_gpu else s.max_num_seqs

    def max_num_batched_tokens(self, device_memory_gib: float, device_id: str) -> int | None:
        s = self.scheduler
        return s.max_num_batched_tokens_large_gpu if self._large(device_memory_gib, device_id) \
            and s.max_num_batched_tokens_large_gpu else s.max_num_batched_tokens

    def _large(self, gib: float, device_id: str) -> bool:
        s = self.scheduler
        return bool(s.large_gpu_min_gib and gib >= s.large_gpu_min_gib
                    and not any(x in device_id for x in s.large_gpu_excludes))


def _leaves(data: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted paths of the leaves (numbers, strings, lists) of a nested mapping."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _leaves(v, path + ".")
        else:
            out[path] = v
    return out


def _sections() -> set[str]:
    return {"memory", "scheduler", "comm", "overheads", "memory.reserve"}


@cache
def get_engine(engine_id: str) -> EngineSpec:
    """The shipped engine file ``engines/<engine_id>.yaml``, validated (cached)."""
    from .specs.registry import load_file

    if engine_id not in ENGINE_IDS:
        raise unknown_id("engine", engine_id, ENGINE_IDS)
    path = data_dir("engines") / f"{engine_id}.yaml"
    spec = load_file(EngineSpec, path)
    if spec.id != engine_id:
        raise SpecError(f"{path}: id {spec.id!r} must equal the file name {engine_id!r}")
    return spec


def engines() -> dict[str, EngineSpec]:
    return {e: get_engine(e) for e in ENGINE_IDS}
