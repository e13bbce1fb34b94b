"""Serving engines as data: the schema of ``engines/<id>.yaml`` and its loader.

An engine file holds the sourced facts that decide an engine's capacity before any request
arrives: how it budgets device memory for the KV cache (``memory.budget``), what it subtracts
(weights, the activation peak of a profiling run, non-torch buffers), its block size, its
scheduler defaults and its all-reduce choice. Every non-null number is backed by a source id
(``field_sources``); facts without a published source are null, never guessed. The rules that
turn these facts into a KV capacity live in ``perfmodel.engine_memory``; the scenario's
``engine:`` section (``specs.scenario.EngineConfig``) names the engine and overrides its defaults.

Engines change their rules between releases. ``engines/<id>.yaml`` holds the current rules
(its ``ranges``: the versions they apply to); ``engines/versions/<id>-<label>.yaml`` files each
hold one earlier version family: the facts that differ (``extends: <id>``), their own sources
and the version ``ranges`` they cover. ``get_engine(id, version, variant)`` overlays the family
whose range holds ``version`` on the current file (docs/engines.md, "Versions"). Kernel
facts (``attention``, ``moe``, ``comm``) are read at the scenario's version too, through
``engine_facts``: the plan carries the engine's version and variant to every cost model.

Files come in through the package's one file door (``specs.registry.load_file``,
``specs.registry.read_mapping``).
"""

from __future__ import annotations

import re
from functools import cache
from itertools import pairwise
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from .errors import SpecError, unknown_id
from .paths import data_dir
from .specs.common import Source, Strict, check_source_ids
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
    min_prefill_tokens) + per_graph_batch x graph_bs + per_tp_pp x tp x pp (+ the DP-attention
    terms per graph batch and DP rank), at least floor_mb on GPUs above floor_above_mb."""

    base_mb: Float = Field(ge=0)
    per_prefill_token_mb: Float = Field(ge=0)
    min_prefill_tokens: Int = Field(ge=0)
    per_graph_batch_mb: Float = Field(ge=0)
    per_tp_pp_mb: Float = Field(ge=0)
    # --enable-dp-attention: + per_graph_batch_dp_mb x graph_bs x dp_size, and
    # + large_graph_dp_mb x graph_bs x dp_size when graph_bs > large_graph_above
    per_graph_batch_dp_mb: Float = Field(default=0.0, ge=0)
    large_graph_above: Int | None = Field(default=None, ge=0)
    large_graph_dp_mb: Float = Field(default=0.0, ge=0)
    floor_mb: Float = Field(ge=0)
    floor_above_mb: Float = Field(ge=0)
    small_tp_below: Int = Field(ge=1)
    buckets: list[ReserveBucket] = Field(min_length=1)

    def bucket(self, gpu_mem_mb: float) -> ReserveBucket:
        """The bucket of a GPU of ``gpu_mem_mb`` MiB (``gpu_memory_mib``)."""
        return next((b for b in self.buckets if gpu_mem_mb < b.below_mb), self.buckets[-1])

    def graph_bs(self, gpu_mem_mb: float, engine_tp: int) -> int:
        """cuda_graph_max_bs of that bucket at the engine's own tp_size (``engine_tp``)."""
        b = self.bucket(gpu_mem_mb)
        return b.graph_bs_small_tp if engine_tp < self.small_tp_below else b.graph_bs_large_tp


def gpu_memory_mib(device) -> float:
    """A GPU's memory in MiB as SGLang's reserve rules read it (server_args.py
    _handle_gpu_memory_settings takes get_device_memory_capacity, nvidia-smi's memory.total):
    the device file's ``nvidia_smi_memory_mib``, else its usable capacity
    (``DeviceSpec.usable_memory_bytes``). The one figure every reserve bucket is looked up by
    (start-up memory, chunked_prefill_size, cuda_graph_max_bs)."""
    mib = device.nvidia_smi_memory_mib
    return float(mib) if mib else float(device.usable_memory_bytes) / 2**20


class VersionRange(Strict):
    """Versions ``since <= v < until`` (``until`` open when null) of one engine variant
    (vLLM: ``v0`` / ``v1`` engine core; null = the release's default). A range answers exactly
    its own variant: a scenario that names a release's default variant explicitly is answered
    by a range that names it, so a family lists such releases twice, once without a variant
    and once with it (engines/vllm.yaml: ``{since: 0.10.2, until: 0.12.0}`` and the same with
    ``variant: v1``); the data says which names a release answers to, no rule infers it.

    ``default_for`` (a named variant's range only): the model families (``ModelSpec.family``)
    this variant is the release's default for, each -> the first release where it is (inside
    the range). An engine that picks its runner by model (vLLM 0.22 - 0.24: Model Runner V2 by
    HF architecture, engines/versions/vllm-0.22-mrv2.yaml) runs such a model on this variant
    when the scenario names none (``default_variant``; resolve.with_default_variant)."""

    since: str
    until: str | None = None
    variant: str | None = None
    default_for: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> VersionRange:
        lo = version_key(self.since)
        if self.until is not None and version_key(self.until) <= lo:
            raise SpecError(f"version range: until {self.until!r} must be after since "
                            f"{self.since!r}")
        if self.default_for and self.variant is None:
            raise SpecError(f"version range since {self.since!r}: default_for needs a named "
                            "variant (a range without one is already the release's default)")
        for family, first in self.default_for.items():
            key = version_key(first)
            if key < lo or (self.until is not None and key >= version_key(self.until)):
                raise SpecError(f"version range {self.since}..{self.until or ''} "
                                f"({self.variant}): default_for.{family} {first!r} is outside "
                                "the range")
        return self

    def holds(self, version: str, variant: str | None) -> bool:
        v = version_key(version)
        return (variant == self.variant and version_key(self.since) <= v
                and (self.until is None or v < version_key(self.until)))


_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\+pr(\d+))?$")
#: a llama.cpp build tag: its releases are tagged ``b<N>``, N the build number (the commit count
#: of master; llama-bench prints it as ``build: 32d9f7d9 (1786)``)
_BUILD = re.compile(r"^b(\d+)$")
#: PEP 440's pre-release phases, before the final release (440: "1.0a1 < 1.0b1 < 1.0rc1 < 1.0")
_PRE_PHASES = {"a": 0, "b": 1, "rc": 2, None: 3}


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of an engine version: a release ``0.7.3`` (``.postN`` allowed), a pre-release
    ``1.2.0rc2`` (most TensorRT-LLM images are; ``aN`` / ``bN`` too), sorting before its release
    as PEP 440 orders them, or a main-branch snapshot ``0.2.4+pr2031`` (the release it follows,
    with pull request N merged), which sorts after its release and before the next:
    (0, 2, 4, 0, 3, 0, 0, 2031). A llama.cpp build tag ``b1786`` sorts by its build number,
    (1786, 0, 0, 0, 3, 0, 0, 0); ``get_engine`` takes build tags for llama.cpp only
    (``is_build_tag``)."""
    b = _BUILD.match(str(version).strip())
    if b:
        return (int(b.group(1)), 0, 0, 0, _PRE_PHASES[None], 0, 0, 0)
    m = _VERSION.match(str(version).strip())
    if not m:
        raise SpecError(f"engine.version {version!r}: give a release like '0.7.3' or "
                        "'0.4.0.post1', a pre-release like '1.2.0rc2', a main-branch "
                        "snapshot like '0.2.4+pr2031', or a llama.cpp build tag like 'b1786'")
    nums = [int(x) for x in m.group(1).split(".")][:4]
    nums += [0] * (4 - len(nums))
    return (*nums, _PRE_PHASES[m.group(2)], int(m.group(3) or 0), int(m.group(4) or 0),
            int(m.group(5) or 0))


def is_build_tag(version: str) -> bool:
    """Whether ``version`` is a llama.cpp build tag (``b1786``), not a release (``0.7.3``)."""
    return bool(_BUILD.match(str(version).strip()))


#: how an engine picks one recurrent state's dtype (``StateDtypeFacts``): ``config_or_fp32`` /
#: ``config_or_model`` the checkpoint config's stated dtype (ModelSpec ``ssm_dtype``), else fp32
#: / else the model dtype; ``fp32`` / ``bf16`` / ``model`` that dtype whatever the config says
StateRule = Literal["config_or_fp32", "config_or_model", "fp32", "bf16", "model"]


class StateDtypeFacts(Strict):
    """The dtype an engine keeps the per-sequence state of linear-attention and Mamba layers
    in (attention_variants.with_state_dtypes): ``ssm`` the recurrent / SSM state, per mixer
    kind (gated delta net, Kimi delta attention, Mamba-2), ``conv`` the causal conv1d's state,
    and ``flag`` the launch option that sets the SSM state dtype (a scenario's
    ``inference.ssm_state_dtype``; null: none)."""

    ssm: dict[Literal["gated_delta_net", "kda", "mamba"], StateRule]
    conv: Literal["bf16", "model"] = "model"
    flag: str | None = None


class KvCacheDtypeFacts(Strict):
    """The KV-cache formats an engine offers (``memory.kv_cache_dtype``; perfmodel/engine_checks.py
    refuses the others): ``flag`` the launch option, ``values`` its accepted values as the
    source lists them, ``formats`` perfmodel's kv_dtype names -> the value that gives each."""

    flag: str
    values: list[str] = Field(min_length=1)
    formats: dict[str, str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> KvCacheDtypeFacts:
        bad = sorted(v for v in self.formats.values() if v not in self.values)
        if bad:
            raise SpecError(f"memory.kv_cache_dtype.formats: {bad} not among its values "
                            f"{self.values}")
        return self


class CudaGraphEstimate(Strict):
    """vLLM >= 0.20 (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default 1): the KV budget also
    subtracts an estimate of the CUDA-graph memory, measured at start-up by capturing the two
    largest graphs of each mode (gpu_model_runner.profile_cudagraph_memory): the first
    capture of the largest size in a fresh pool, plus the second capture's increase, at least
    ``min_per_graph_mib``, times the mode's other graphs; the modes share one pool, so the
    largest first capture counts once (engine_memory.cudagraph_memory_estimate)."""

    modes: list[Literal["piecewise", "full"]] = Field(min_length=1)
    # the second capture's increase (the CUDA driver's graph and its new pool blocks): a
    # measured figure (the family file cites it); vLLM floors it at min_per_graph_mib
    per_graph_mib: Float = Field(gt=0)
    min_per_graph_mib: Float = Field(default=1.0, ge=0)
    # device vendors (DeviceSpec.vendor) on which the worker estimates at all (vLLM: CUDA only,
    # 'current_platform.is_cuda()'; ROCm subtracts nothing); empty: every device
    vendors: list[str] = Field(default_factory=list)


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
    # the KV budget also subtracts an estimate of the CUDA-graph memory (vLLM >= 0.20); null: not
    cuda_graph_estimate: CudaGraphEstimate | None = None
    # what the budget subtracts besides weights and the torch activation peak (older vLLM
    # profilers differ): memory outside torch's allocator (NCCL, custom all-reduce, cuBLAS),
    # the CUDA context, and (TP > 1) every tensor-parallel all-reduce output of the profile
    # run, which torch's allocator could not reuse while NCCL's stream held it
    non_torch_counted: Bool = True
    cuda_context_counted: Bool = False
    tp_allreduce_outputs_held: Bool = False
    # rows of vocabulary-wide sampler tensors in the profile run: min(max_num_seqs, tokens)
    # ("seqs") or one per dummy token ("tokens")
    sampler_rows: Literal["seqs", "tokens"] = "seqs"
    block_size: Int = Field(ge=1)
    default_n_ctx: Int | None = Field(default=None, ge=1)
    # engine.<field> overrides the engine has no setting for (llama.cpp: no KV block size):
    # a scenario giving one is refused (perfmodel/engine_checks.py)
    no_setting: list[str] = Field(default_factory=list)
    # engine.max_model_len above the model's context: "refuse" (the engine will not start
    # without an environment override); null: accepted
    context_above_model: Literal["refuse"] | None = None
    # a KV pool smaller than one request of max_model_len: "refuse" (the engine will not start:
    # vLLM check_enough_kv_cache_memory), "cap" (it starts and limits a request to what the
    # pool holds: SGLang max_req_len, TensorRT-LLM's reduced max_seq_len); null: not stated
    # (engine_memory words the warning by it, engine_fit.fails_to_start refuses by it)
    short_pool: Literal["refuse", "cap"] | None = None
    reserve: ReserveRule | None = None
    # with attention DP, whether the engine's own tp_size counts the attention-DP ranks (SGLang:
    # --enable-dp-attention splits the TP group into dp attention groups, so tp_size = attention
    # tp x dp) or each DP rank is its own engine with its own tp (vLLM); the engine's reserve
    # and distributed-init rules see that tp_size (engine_memory.engine_tp). null: false
    attention_dp_in_tp_group: Bool | None = None
    # the recurrent-state dtypes of linear-attention / Mamba layers; null: perfmodel's generic
    # rule (attention_variants.GENERIC_STATE_RULE: the config's dtype, else the model dtype)
    state_dtype: StateDtypeFacts | None = None
    # the KV-cache formats the engine offers (KvCacheDtypeFacts); null: not stated (any)
    kv_cache_dtype: KvCacheDtypeFacts | None = None


class NewTokenRatio(Strict):
    """SGLang's admission reserve (schedule_policy.py ``PrefillAdder``, environ.py): running
    requests hold min(remaining output, ``clip_max_new_tokens``) x ratio future tokens, a new
    one its whole clipped output; the ratio starts at ``init``, falls by (init - init x
    ``min_factor``) / ``decay_steps`` per decode batch, returns to ``init`` when idle, and
    after a retraction becomes (decoded + ``retract_decode_steps`` x requests) / (max new
    tokens + 1), at most 1 (new_token_ratio_tracker.py)."""

    init: Float = Field(gt=0, le=1)
    min_factor: Float = Field(ge=0, le=1)
    decay_steps: Int = Field(ge=1)
    retract_decode_steps: Int = Field(ge=0)
    clip_max_new_tokens: Int = Field(ge=1)


class MaxRunningRule(Strict):
    """SGLang's default max_running_requests (``SchedulerFacts.max_running``)."""

    kv_divisor: Int = Field(ge=1)
    reqs_per_context: Float = Field(gt=0)
    reqs_min: Int = Field(ge=1)
    reqs_max: Int = Field(ge=1)

    def requests(self, kv_tokens: int, context_len: int) -> int:
        """max_running_requests of one scheduler (one DP rank) when the launch leaves it unset
        (engines/sglang.yaml ``scheduler.max_running``, tp_worker.py / model_runner.py):
        min(T // 2, min(max(int(T / context_len x 512), 2048), 4096)) for a pool of T tokens."""
        pool = min(max(int(kv_tokens / context_len * self.reqs_per_context), self.reqs_min),
                   self.reqs_max)
        return max(min(int(kv_tokens) // self.kv_divisor, pool), 1)


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
    # a request whose prompt + requested output exceeds max_model_len: "reject" (an HTTP 400
    # error, a failed request for the benchmark client); null: not stated (served)
    over_context_request: Literal["reject"] | None = None
    # the serving simulator's scheduler that does what the engine's does
    # (perfmodel/serving/schedulers.py); a scenario without serving.scheduler.kind runs it
    policy: Literal["continuous", "chunked", "inflight", "prefill_first"] | None = None
    new_token_ratio: NewTokenRatio | None = None  # SGLang's admission reserve (prefill_first)
    # SGLang's max_running_requests when unset, per (DP) scheduler from its KV pool of T
    # tokens: min(T // kv_divisor, req_to_token_pool size = min(max(int(T / context_len x
    # reqs_per_context), reqs_min), reqs_max)) (MaxRunningRule.requests)
    max_running: MaxRunningRule | None = None
    # vLLM async scheduling (vllm/v1/core/sched/async_scheduler.py, on by default from 0.14.0
    # except with pipeline parallelism): the batch after the running one is scheduled when
    # the running one starts, so a new request is seen one step later (serving.schedulers
    # IntervalReceiver, in the chunked scheduler); a scenario overrides it with
    # engine.async_scheduling
    async_scheduling: Bool | None = None
    # false: async scheduling does not run with pipeline parallelism > 1, so the default turns
    # off there and an explicit on is refused (serving.deploy.scheduler_facts); null: no rule
    async_scheduling_with_pp: Bool | None = None


class CommFacts(Strict):
    """The engine's tensor-parallel all-reduce choice: its own kernel for TP sizes in
    ``custom_allreduce_world_sizes`` below ``custom_allreduce_max_bytes`` (``_tp2``: at TP <=
    2, where it differs), NCCL above (``perfmodel.engine_comm``)."""

    custom_allreduce_world_sizes: list[int] | None = None
    custom_allreduce_max_bytes: Int | None = Field(default=None, ge=1)
    custom_allreduce_max_bytes_tp2: Int | None = Field(default=None, ge=1)
    oneshot_max_tokens: Int | None = Field(default=None, ge=1)  # one-shot below, two-shot above
    # how far the engine's own kernel reaches: "host" (buffers shared by CUDA IPC inside one OS
    # host: the group must sit on one host, NCCL otherwise) or "nvlink_domain" (a multi-node
    # NVLink kernel takes over where the group leaves the host: one NVLink domain); None: host
    custom_allreduce_reach: Literal["host", "nvlink_domain"] | None = None


OverlapGroup = Literal["attention", "attn_in", "attn_core", "shared", "experts"]
OVERLAP_GROUPS: tuple[str, ...] = get_args(OverlapGroup)


class OverlapSegment(Strict):
    """One step of a two-micro-batch MoE layer (``MoeOverlapFacts.schedule``): compute of one
    micro-batch (op groups of ``moe_parallel.overlap_groups``) on the compute stream while an
    all-to-all (``comm``: ``dispatch`` / ``combine`` of one micro-batch, or none) is in flight;
    the step lasts the longer of the two."""

    compute: list[OverlapGroup] = Field(default_factory=list)
    comm: Literal["dispatch", "combine"] | None = None


class OverlapPhase(Strict):
    """The engine's two-micro-batch schedule of one phase: the segments of one MoE layer of
    both micro-batches (each compute group twice, attention = attn_in + attn_core, and two
    dispatches and two combines), the fewest tokens and sequences per attention-DP rank it
    splits (``min_tokens``, ``min_sequences``: below, one batch), and the SMs the all-to-all kernels hold while the GEMMs
    of the other micro-batch run (``comm_sms``; null: none, DeepEP's low-latency kernels wait
    by a receive hook without SMs)."""

    segments: list[OverlapSegment] = Field(min_length=1)
    min_tokens: Int = Field(default=2, ge=2)
    min_sequences: Int = Field(default=1, ge=1)  # an engine that splits between sequences: 2
    comm_sms: Int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> OverlapPhase:
        count = {g: 0 for g in OVERLAP_GROUPS} | {"dispatch": 0, "combine": 0}
        for seg in self.segments:
            for g in seg.compute:
                count[g] += 1
            if seg.comm:
                count[seg.comm] += 1
        att = count["attention"] + min(count["attn_in"], count["attn_core"])
        ok = (att == 2 and count["attn_in"] == count["attn_core"] == 2 - count["attention"]
              and all(count[k] == 2 for k in ("shared", "experts", "dispatch", "combine")))
        if not ok:
            raise SpecError("moe.overlap schedule: one MoE layer of two micro-batches has each "
                            "of attention (or attn_in + attn_core), shared, experts, dispatch "
                            f"and combine exactly twice; got {count}")
        return self


class MoeOverlapFacts(Strict):
    """Two-micro-batch overlap of the expert all-to-all with compute (SGLang two-batch overlap,
    vLLM dual-batch overlap; ``moe_parallel`` ``two_batch_layer``): ``default`` the engine's
    choice without its launch ``flag``; ``split_dense``: dense layers and the LM head also run
    per micro-batch (else on the whole batch); per phase (``decode`` also serves verification)
    the schedule."""

    default: Literal["none", "two_batch"] = "none"
    flag: str | None = None
    split_dense: Bool = True
    decode: OverlapPhase | None = None
    prefill: OverlapPhase | None = None


#: how a MoE layer's tokens reach its experts, as far as the engine's kernel choice depends on
#: it (SGLang ``--moe-a2a-backend``): ``deepep`` a dispatch / combine all-to-all (DeepEP, and
#: SGLang's Mooncake / NIXL backends alike), ``none`` no all-to-all (TP MoE, or the DP-attention
#: gather). ``moe_parallel.all_to_all`` decides it for a plan.
A2A_BACKENDS = ("none", "deepep")


class Mxfp4Backend(Strict):
    """What one MXFP4 MoE backend allocates for the experts (vLLM ``Mxfp4MoEMethod``):
    ``create_weights`` pads the hidden size and the per-partition intermediate size up to
    multiples of ``hidden`` / ``intermediate`` (w13: E x 2I' x H'/2 bytes + E x 2I' x H'/32 e8m0
    scales; w2: E x H' x I'/2 + E x H' x I'/32), and ``scales_kept``: process_weights_after_loading
    keeps the checkpoint's e8m0 scales registered beside the backend's own swizzled copy."""

    hidden: Int = Field(default=1, ge=1)
    intermediate: Int = Field(default=1, ge=1)
    scales_kept: Bool = False
    # the MoE kernel label its grouped GEMMs are timed by (calibration/moe_kernels.yaml; the
    # profile's w4a16_mxfp4@<label> table); None: the backend's own name
    kernel: str | None = None


class Mxfp4Facts(Strict):
    """MXFP4 experts: ``backend`` the backend the engine selects by the device's compute
    capability (exactly as DeviceSpec.compute_capability spells it; a device not listed: no
    padding modelled), ``backends`` what each allocates (``Mxfp4Backend``)."""

    backend: dict[str, str] = Field(default_factory=dict)
    backends: dict[str, Mxfp4Backend] = Field(default_factory=dict)

    def backend_for(self, capability: str | None) -> str | None:
        """The backend the engine selects on a device of ``capability``
        (DeviceSpec.compute_capability; None: not listed): the one rule for the experts'
        layout (``mxfp4_pad_multiples``) and their kernel (``kernel``)."""
        return self.backend.get(str(capability)) if capability else None

    def kernel(self, capability: str | None) -> str | None:
        """The kernel label of ``backend_for(capability)`` (None: not listed)."""
        name = self.backend_for(capability)
        return None if name is None else (self.backends[name].kernel or name)

    @model_validator(mode="after")
    def _check(self) -> Mxfp4Facts:
        unknown = sorted({b for b in self.backend.values() if b not in self.backends})
        if unknown:
            raise SpecError(f"moe.mxfp4.backend names {unknown}, not in moe.mxfp4.backends "
                            f"({sorted(self.backends)})")
        return self


class MoeFacts(Strict):
    """The grouped-GEMM kernel the engine runs for a MoE layer's experts, per format (a MoE
    table name: bf16, fp8, fp8_block, nvfp4, w4a16_mxfp4, ...; ``profile.moe_format``):
    ``kernels[format]`` the implementations it selects, in its order (a profile table that
    measured one of them is read; calibration/moe_kernels.yaml names the tables' kernels),
    either one list for any all-to-all backend or a list per backend (``A2A_BACKENDS``, every
    one given) where the engine's choice depends on it (SGLang fp8_block: DeepGEMM only
    under a DeepEP all-to-all); a list (for any backend, or a backend's) may instead be a
    list per expert-parallel case (``EP_CASES``, both given: ``ep1`` the experts unsplit,
    ``ep_gt1`` EP > 1) where the choice depends on the EP size (vLLM Hopper block fp8: Triton
    at EP 1, FlashInfer CUTLASS at EP > 1; SGLang gpt-oss: triton_kernels at EP 1 only);
    ``proxy[format]`` the format whose table stands in where the
    profile's table of that format measured another kernel
    (``profile.CalibrationProfile.moe_table``). A format not listed reads the profile's table
    as measured."""

    kernels: dict[str, list[str] | dict[str, list[str] | dict[str, list[str]]]] = Field(
        default_factory=dict)
    proxy: dict[str, str] = Field(default_factory=dict)
    overlap: MoeOverlapFacts | None = None  # two-micro-batch all-to-all overlap (TBO / DBO)
    # the dtype the engine builds the router (gate) in whatever the checkpoint's format: an
    # unquantised linear (formats.engine_weight_formats); None: the checkpoint's format
    router_dtype: Literal["bf16", "fp16", "fp32"] | None = None
    # experts' input format -> the format the engine's all-to-all dispatch sends in
    # (engine_comm.dispatch_format, formats.dispatch_elem_bytes); a format not listed: DeepEP's
    # fp8 dispatch for fp8 / fp4 experts, the activations as they are otherwise
    dispatch: dict[str, Literal["bf16", "fp16", "fp8", "nvfp4", "mxfp4"]] = Field(
        default_factory=dict)
    # attention DP with MoE TP (no all-to-all): phase (prefill / decode) -> how the groups'
    # tokens reach the MoE layer and return (moe_parallel.stage_comm): ``all_gather`` (all-gather
    # before, reduce-scatter after) or ``all_reduce`` (a zero-padded buffer of every group's
    # tokens all-reduced before, the MLP's all-reduce after); not listed: ``all_gather``
    dp_gather: dict[Literal["prefill", "decode"], Literal["all_gather", "all_reduce"]] = Field(
        default_factory=dict)
    # MXFP4 experts: the backend per device and the padding / extra copies it allocates
    # (engine_memory.mxfp4_expert_factor); None: the checkpoint's shapes as they are
    mxfp4: Mxfp4Facts | None = None

    @field_validator("kernels", mode="before")
    @classmethod
    def _check_kernel_backends(cls, value: Any) -> Any:
        """Per format: a list of kernel labels; or a list per all-to-all backend (keys exactly
        ``A2A_BACKENDS``) or per EP case (keys exactly ``EP_CASES``); a backend's value a list
        or a list per EP case. Anything else: one line naming ``moe.kernels.<format>[...]``."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise SpecError(f"moe.kernels: a mapping format -> kernel list, got {value!r}")
        for fmt, kernels in value.items():
            _check_kernel_entry(kernels, f"moe.kernels.{fmt}", A2A_BACKENDS + EP_CASES)
        return value

    def kernels_for(self, fmt: str, a2a: str = "none", ep: int = 1,
                    capability: str | None = None) -> tuple[str, ...]:
        """The kernels of format ``fmt`` under all-to-all backend ``a2a`` at expert-parallel
        size ``ep`` (() if not listed). W4A16 MXFP4 experts on a device of ``capability``
        (DeviceSpec.compute_capability) the file's ``mxfp4.backend`` lists: that backend's
        kernel first, the one rule the experts' memory layout is also read by
        (engine_memory.mxfp4_expert_factor), so weights and time follow the same backend."""
        if a2a not in A2A_BACKENDS:
            raise SpecError(f"a2a backend {a2a!r}: expected one of {list(A2A_BACKENDS)}")
        kernels = self.kernels.get(fmt, [])
        if isinstance(kernels, dict) and a2a in kernels:
            kernels = kernels[a2a]
        if isinstance(kernels, dict):
            kernels = kernels[ep_case(ep)]
        chosen = (self.mxfp4.kernel(capability)
                  if fmt == MXFP4_EXPERTS and self.mxfp4 is not None else None)
        if chosen is None:
            return tuple(kernels)
        return (chosen, *(k for k in kernels if k != chosen))


#: the MoE table format of MXFP4 experts with 16-bit activations, whose kernel the engine's
#: ``moe.mxfp4.backend`` selects per device (``MoeFacts.kernels_for``)
MXFP4_EXPERTS = "w4a16_mxfp4"
#: the expert-parallel cases an engine's MoE kernel list may tell apart (``moe.kernels``):
#: ``ep1`` every rank holds every expert (TP MoE), ``ep_gt1`` the experts split over ranks
EP_CASES = ("ep1", "ep_gt1")


def ep_case(ep: int) -> str:
    """``EP_CASES`` entry of expert-parallel size ``ep``."""
    return "ep1" if int(ep) <= 1 else "ep_gt1"


def _labels(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"{where}: a list of kernel labels, got {value!r}")


def _check_kernel_entry(value: Any, where: str, keys: tuple[str, ...]) -> None:
    """``value`` a kernel list, or a mapping whose keys are exactly ``A2A_BACKENDS`` or exactly
    ``EP_CASES`` (of ``keys``, the cases still open at ``where``), each value checked alike."""
    if not isinstance(value, dict):
        _labels(value, where)
        return
    for group in (A2A_BACKENDS, EP_CASES):
        if set(value) == set(group) and group[0] in keys:
            inner = EP_CASES if group == A2A_BACKENDS else ()
            for case, kernels in value.items():
                _check_kernel_entry(kernels, f"{where}.{case}", inner)
            return
    groups = [list(g) for g in (A2A_BACKENDS, EP_CASES) if g[0] in keys]
    raise SpecError(
        f"{where}: the keys must be exactly " + " or exactly ".join(map(str, groups))
        + f" (got {sorted(value)}); or give one list of kernel labels")


class Fp8PrefillFacts(Strict):
    """``attention.fp8_prefill``: where the engine's prefill (context / extend) attention
    kernel runs in fp8 when the KV cache is fp8 (Q, K and V quantised to e4m3, QK^T and PV on
    fp8 tensor cores: ``ops.Shard.fp8_prefill_attention``), by kernel class: ``mha`` (MHA /
    GQA / MQA) and ``mla`` (DeepSeek MLA's MHA-mode prefill), each the compute capabilities
    ("major.minor") whose default backend does so; ``mha_since`` / ``mla_since``: the first
    release that does (a scenario naming an older ``engine.version`` gets the 16-bit kernel;
    none named: the file's current facts); ``mha_paged_context``: MHA only when the prefill
    kernel is the paged one (``scheduler.prefix_caching`` or ``scheduler.chunked_prefill``:
    TensorRT-LLM's ``use_paged_context_fmha``). Empty: the 16-bit prefill kernel everywhere."""

    mha: list[str] = Field(default_factory=list)
    mla: list[str] = Field(default_factory=list)
    mha_since: str | None = None
    mla_since: str | None = None
    mha_paged_context: Bool | None = None

    def holds(self, mla: bool, capability: str | None, version: str | None,
              paged: bool) -> bool:
        caps, since = (self.mla, self.mla_since) if mla else (self.mha, self.mha_since)
        if capability is None or str(capability) not in caps:
            return False
        if since and version and version_key(version) < version_key(since):
            return False
        return mla or not self.mha_paged_context or paged


class AttentionFacts(Strict):
    """The engine's generation-phase (decode) attention kernel: ``decode_kernel`` its name and
    ``decode_kv_reads`` how often it reads each KV head's cache per step (``ops.attention_ops``):
    ``kv_head`` once (a kernel that processes a KV head's group of query heads together:
    TensorRT-LLM's XQA, FlashInfer / FlashAttention decode with GQA packing), ``query_head``
    once per query head (a kernel with one thread block per query head, each loading its KV
    head: TensorRT-LLM's masked multi-head attention before XQA). None: not stated, read once."""

    decode_kernel: str | None = None
    decode_kv_reads: Literal["kv_head", "query_head"] | None = None
    fp8_prefill: Fp8PrefillFacts = Fp8PrefillFacts()


#: how an engine runs the bf16 -> fp8 quantise of a per-tensor fp8 GEMM's input
#: (``quantization.fp8_activation``): ``fused`` into the producing kernel (no kernel of its
#: own), ``static_kernel`` one quantise kernel with the checkpoint's input scale,
#: ``per_token_kernel`` one kernel that also reduces each row's scale, ``dynamic_kernel`` a
#: whole-tensor amax kernel and then the quantise (``ops.activation_quant_ops``)
Fp8ActivationMode = Literal["fused", "static_kernel", "per_token_kernel", "dynamic_kernel"]


class FusionConditions(Strict):
    """When an engine's fused quantise applies (every condition given must hold): ``min_tp``
    the least attention TP degree (a fusion into the TP all-reduce needs one), ``hidden_above``
    the hidden size it must exceed, ``attention_dp`` false when attention data parallelism
    turns it off."""

    min_tp: Int | None = Field(default=None, ge=1)
    hidden_above: Int | None = Field(default=None, ge=0)
    attention_dp: Bool | None = None


class Fp8ActivationFacts(Strict):
    """``quantization.fp8_activation``: a mode (``Fp8ActivationMode``) for every deployment, or
    ``{mode: fused, fused_when: {...}, unfused: <kernel mode>}`` where the fusion depends on
    the deployment. null: not stated (no quantise kernel counted)."""

    mode: Fp8ActivationMode | None = None
    fused_when: FusionConditions | None = None
    unfused: Literal["static_kernel", "per_token_kernel", "dynamic_kernel"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> Fp8ActivationFacts:
        if (self.fused_when is None) != (self.unfused is None):
            raise SpecError("quantization.fp8_activation: fused_when and unfused go together "
                            "(the conditions of the fusion and the kernel run where they fail)")
        if self.fused_when is not None and self.mode != "fused":
            raise SpecError(f"quantization.fp8_activation.mode: {self.mode!r} with fused_when; "
                            "conditions describe a fusion, so mode must be 'fused'")
        return self


#: what an engine does with a narrow weight format on a device without its tensor cores, per
#: vendor (``quantization.formats.<fmt>.without_tensor_cores``): weight-only (W8A16 / W4A16:
#: 16-bit activations against weights dequantised in the GEMM, e.g. Marlin), ``emulated``
#: (every call dequantises the whole weight to 16 bit in a kernel of its own, quantise-
#: dequantises the activation, then runs a 16-bit GEMM that reads the dequantised weight:
#: vLLM's QuarkOCP_MX on gfx942, ``formats.emulated_formats``, ``inference.
#: _with_emulated_gemms``) or a load error
FormatFallback = Literal["weight_only", "emulated", "refuse"]
#: the narrow weight formats an engine file states a rule for (``quantization.formats``;
#: mxfp4: TensorRT-LLM's W4A8 MXFP4 x MXFP8 gpt-oss experts on Blackwell)
RULE_FORMATS = ("fp8", "fp8_block", "nvfp4", "mxfp4")


class FormatRule(Strict):
    """What the engine runs for a checkpoint whose weights are in one narrow format, by what the
    device has (``quantization.formats.<fmt>``; one mechanism for every format,
    ``formats.engine_activation``).

    ``with_tensor_cores``: ``narrow`` where the device has tensor cores for the format: the
    engine runs the narrow GEMM (W8A8 / W4A4, its own activation quantise,
    ``quantization.<fmt>_activation``) whatever 16-bit activation dtype a scenario names, since
    the engine offers no weight-only path there (vLLM Fp8LinearMethod takes Marlin W8A16 only
    below SM 8.9 or when forced by a test switch); null: not stated (the scenario's choice is
    honoured). ``without_tensor_cores``: per device vendor (lower case), ``weight_only``,
    ``emulated`` or ``refuse`` (``FormatFallback``); a vendor not listed: not stated (modelled
    as weight-only)."""

    with_tensor_cores: Literal["narrow"] | None = None
    without_tensor_cores: dict[str, FormatFallback] = Field(default_factory=dict)
    # a block-quantised format (fp8_block): true when the engine refuses to load a weight whose
    # tensor-parallel shard is not a whole number of the checkpoint's blocks (vLLM / SGLang
    # Fp8LinearMethod / Fp8MoEMethod.create_weights ValueError; engine_checks.check_block_shards);
    # null: not stated
    block_aligned_shards: Bool | None = None

    @field_validator("without_tensor_cores", mode="before")
    @classmethod
    def _vendors(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise SpecError("quantization.formats.<fmt>.without_tensor_cores: a mapping vendor "
                            f"-> weight_only | emulated | refuse, got {value!r}")
        return {str(k).lower(): v for k, v in value.items()}


class QuantizationFacts(Strict):
    """How the engine runs quantised GEMMs' activation quantisation: ``fp8_activation`` for
    per-tensor fp8 GEMM inputs, ``nvfp4_activation`` for NVFP4 (W4A4) GEMM inputs (the same
    modes; an NVFP4 quantise is one pass with the checkpoint's global input scale and the
    16-element block scales computed in the kernel, so ``static_kernel``)."""

    fp8_activation: Fp8ActivationFacts = Fp8ActivationFacts()
    nvfp4_activation: Fp8ActivationFacts = Fp8ActivationFacts()
    #: what the engine runs for a checkpoint in each narrow weight format (``FormatRule``:
    #: with and without the device's tensor cores for it), keyed by format (``RULE_FORMATS``)
    formats: dict[str, FormatRule] = Field(default_factory=dict)

    @field_validator("fp8_activation", "nvfp4_activation", mode="before")
    @classmethod
    def _null(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise SpecError(f"quantization.formats: a mapping format -> rule, got {value!r}")
        bad = sorted(set(value) - set(RULE_FORMATS))
        if bad:
            raise SpecError(f"quantization.formats: unknown format(s) {bad}; valid: "
                            f"{list(RULE_FORMATS)}")
        return value


#: how an engine splits num_layers over pp stages when no explicit partition is given
#: (``pipeline.default_partition``): ``before_last`` vLLM's get_pp_indices (L // pp each, the
#: remainder one each to the stages before the last, counting back from the second-to-last);
#: ``last_stage`` the last stage takes the whole remainder; ``last_ranks`` / ``first_ranks`` the
#: last / first L % pp stages take one extra layer each; ``free_memory`` llama.cpp's split by
#: each device's free memory (split points over L + 1 slots, applied even when pp divides L).
SplitRule = Literal["before_last", "last_stage", "last_ranks", "first_ranks", "free_memory"]


class PipelineFacts(Strict):
    """The engine's pipeline layer split: ``default_split`` its rule when the launch gives no
    partition (null: pp must divide num_layers), ``partition_env`` the setting that gives one
    (the scenario's parallelism.pipeline_layers; null: the engine has none)."""

    default_split: SplitRule | None = None
    partition_env: str | None = None


class CudaGraphFacts(Strict):
    """Which steps replay a captured CUDA graph (the host issues one graph launch) and which run
    eagerly (the host issues every kernel through the torch dispatcher). null: not stated."""

    decode: Bool | None = None  # decode-only batches, up to the capture limit
    # largest decode batch captured, every smaller batch padded up to a captured size; null with
    # memory.reserve (SGLang): cuda_graph_max_bs of the reserve bucket (ReserveRule), else no
    # limit stated
    decode_max_batch: Int | None = Field(default=None, ge=1)
    # the decode batch sizes captured when they are a list (TensorRT-LLM cuda_graph_config
    # batch_sizes): without decode_padding a decode batch of any other size runs eagerly, with it
    # a batch up to the largest is padded up to the next captured size
    decode_batch_sizes: list[Int] | None = None
    decode_padding: Bool | None = None
    prefill: Bool | None = None  # batches with prefill (extend / context) tokens
    # steps of more tokens than min(max_tokens_per_seq x max_num_seqs, max_tokens) run without a
    # graph whatever their kind (vLLM V1: the largest capture size); null: no token limit
    max_tokens: Int | None = Field(default=None, ge=1)
    max_tokens_per_seq: Int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> CudaGraphFacts:
        at = "overheads.cuda_graphs"
        if self.max_tokens_per_seq is not None and self.max_tokens is None:
            raise SpecError(f"{at}.max_tokens_per_seq needs {at}.max_tokens: the token limit is "
                            "min(max_tokens_per_seq x max_num_seqs, max_tokens); give max_tokens "
                            "too, or drop max_tokens_per_seq")
        for name in ("decode_max_batch", "decode_batch_sizes", "decode_padding"):
            if getattr(self, name) is not None and self.decode is not True:
                raise SpecError(f"{at}.{name} is set but {at}.decode is {self.decode}: a "
                                "decode capture limit is valid only with decode: true (decode "
                                f"batches replay graphs); set decode: true or drop {name}")
        sizes = self.decode_batch_sizes
        if sizes is not None:
            if not sizes or sizes[0] < 1 or any(a >= b for a, b in pairwise(sizes)):
                raise SpecError(f"{at}.decode_batch_sizes: give distinct batch sizes >= 1 in "
                                f"increasing order, got {sizes}")
            if self.decode_max_batch is not None:
                raise SpecError(f"{at}.decode_max_batch and {at}.decode_batch_sizes: give one "
                                "(decode_max_batch: every batch up to it replays a graph; "
                                "decode_batch_sizes: the sizes captured), not both")
        elif self.decode_padding is not None:
            raise SpecError(f"{at}.decode_padding pads a batch up to a size of "
                            f"{at}.decode_batch_sizes; give decode_batch_sizes too, or drop "
                            "decode_padding")
        return self

    def decode_limit(self) -> tuple[int | None, frozenset[int] | None]:
        """(largest decode batch that replays a graph, the only sizes that do when they are a
        list without padding); (None, None): no limit stated."""
        sizes = self.decode_batch_sizes
        if sizes is None:
            return self.decode_max_batch, None
        return sizes[-1], None if self.decode_padding else frozenset(sizes)


class SkinnyGemmFacts(Strict):
    """An engine's own kernel for unquantised GEMMs of a few tokens (vLLM on ROCm:
    ``rocm_unquantized_gemm`` -> wvSplitK): it runs a GEMM of one of ``dtypes`` on a device
    whose compute capability is in ``archs`` when 0 < tokens <= ``max_tokens``, the GEMM has at
    least ``min_out`` outputs and its inner dimension is a multiple of ``k_multiple``. It streams
    the weights at ``hbm_fraction[device][t - 1]`` of the datasheet HBM bandwidth for t tokens,
    keyed by the device the kernel times were measured on (a fraction does not carry over to
    another device of the same arch: MI325X is gfx942 like MI300X at 6.0 vs 5.3 TB/s); a
    device without fractions, or a null entry, leaves those GEMMs to the profile's curve."""

    archs: list[str] = Field(default_factory=list)
    dtypes: list[str] = Field(default_factory=list)
    max_tokens: Int | None = Field(default=None, ge=1)
    min_out: Int | None = Field(default=None, ge=1)
    k_multiple: Int | None = Field(default=None, ge=1)
    hbm_fraction: dict[str, list[Float | None]] = Field(default_factory=dict)
    #: per dtype, where the engine's kernel for it runs under narrower conditions than the
    #: 16-bit one (vLLM's fp8 wvSplitKQ: 1 token, k % 16): {dtype: {max_tokens, k_multiple}}
    #: overriding the fields above for GEMMs of that dtype
    dtype_limits: dict[str, dict[str, Int]] = Field(default_factory=dict)
    #: per dtype whose kernel has no measured time: what stands in for it, one clause said in
    #: the prediction's warnings (``skinny_gemm_warning``)
    proxies: dict[str, str] = Field(default_factory=dict)

    def limits(self, dtype: str) -> tuple[int, int]:
        """(max_tokens, k_multiple) of the kernel for GEMMs of ``dtype``."""
        own = self.dtype_limits.get(dtype, {})
        return (int(own.get("max_tokens", self.max_tokens)),
                int(own.get("k_multiple", self.k_multiple)))

    @model_validator(mode="after")
    def _check(self) -> SkinnyGemmFacts:
        at = "gemm.skinny"
        for dtype, own in self.dtype_limits.items():
            if dtype not in self.dtypes or set(own) - {"max_tokens", "k_multiple"} or any(
                    v < 1 for v in own.values()) or own.get("max_tokens", 1) > (
                    self.max_tokens or 0):
                raise SpecError(f"{at}.dtype_limits.{dtype}: a dtype of {at}.dtypes with "
                                "max_tokens (1..max_tokens) and / or k_multiple (>= 1)")
        if set(self.proxies) - set(self.dtypes):
            raise SpecError(f"{at}.proxies: keys must be dtypes of {at}.dtypes {self.dtypes}, "
                            f"got {sorted(self.proxies)}")
        if self.hbm_fraction and None in (self.max_tokens, self.min_out, self.k_multiple):
            raise SpecError(f"{at}: hbm_fraction needs max_tokens, min_out and k_multiple (the "
                            "conditions under which the kernel runs)")
        for device, fracs in self.hbm_fraction.items():
            if len(fracs) != self.max_tokens:
                raise SpecError(f"{at}.hbm_fraction.{device}: give one fraction (or null) per "
                                f"token count 1..{self.max_tokens}, got {len(fracs)}")
            if any(f is not None and not 0.0 < f <= 1.0 for f in fracs):
                raise SpecError(f"{at}.hbm_fraction.{device}: fractions of the datasheet HBM "
                                f"bandwidth lie in (0, 1], got {fracs}")
        return self


#: a draft model's tensor-parallel size: the target's (``target``) or 1
DraftTp = Literal["target", 1]


class SpeculativeFacts(Strict):
    """Draft-model speculative decoding: the draft's tensor-parallel size by default
    (``draft_tp``) and the sizes the engine accepts for it (``draft_tp_allowed``; empty: not
    stated). ``target`` is the target model's TP. A scenario's ``speculative.draft_tp``
    overrides the default within the allowed sizes (``draft_tp``)."""

    draft_tp: DraftTp | None = None
    draft_tp_allowed: list[DraftTp] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SpeculativeFacts:
        if self.draft_tp is not None and self.draft_tp_allowed \
                and self.draft_tp not in self.draft_tp_allowed:
            raise SpecError(f"speculative.draft_tp: {self.draft_tp!r} is not in "
                            f"draft_tp_allowed {self.draft_tp_allowed}")
        return self

    def draft_tp_for(self, target_tp: int, requested: int | None) -> int:
        """The draft's TP beside a target at ``target_tp``: ``requested`` (a scenario's
        speculative.draft_tp) if the engine accepts it, else its default (the target's when
        the file states none: every engine on file does so). A size it refuses is one line
        naming the field and the valid sizes."""
        sizes = {int(target_tp) if t == "target" else int(t) for t in self.draft_tp_allowed}
        if requested is None:
            return int(target_tp) if self.draft_tp in (None, "target") else int(self.draft_tp)
        if sizes and requested not in sizes:
            raise SpecError(f"inference.speculative.draft_tp: {requested} is not a draft "
                            f"tensor-parallel size this engine runs beside tp {target_tp}; "
                            f"valid: {sorted(sizes)}")
        return int(requested)


class GemmFacts(Strict):
    """The engine's dense GEMM kernels where they are its own (not the BLAS library's).
    ``kernels[dtype]``: the GEMM implementations the engine selects for a format, in its order
    (labels of calibration/gemm_kernels.yaml; a profile table that measured one of them is read,
    ``profile.CalibrationProfile.gemm_table``, as ``moe.kernels`` for the grouped GEMMs); a
    format not listed reads the profile's reference table of it."""

    skinny: SkinnyGemmFacts = SkinnyGemmFacts()
    kernels: dict[str, list[str]] = Field(default_factory=dict)
    # llama.cpp's CUDA backend: which kernel a quantised weight's matmul runs above a few tokens
    # (perfmodel/llamacpp_kernels.kernel_path): ``should_use_mmq`` (ggml_cuda_should_use_mmq,
    # PR #8075 on: MMQ at every batch from compute capability 7.5) or ``small_batch_mmq`` (the
    # rule before it: MMQ up to 32 tokens, dequantise + cuBLAS above on fp16 tensor-core GPUs,
    # kernel_path(legacy=True)); null: not llama.cpp
    ggml_mmq: Literal["should_use_mmq", "small_batch_mmq"] | None = None


class ResidualNormFusion(Strict):
    """When the residual add + norm run inside the TP all-reduce, by kind of model as the
    engine's decoder-layer classes decide it: ``dense`` (TensorRT-LLM LlamaDecoderLayer:
    TP, no attention DP, hidden > 4096) and ``moe`` (a model with routed experts: gpt-oss's
    TransformerBlock.forward_tp, TP and no attention DP); null: not fused for that kind."""

    dense: FusionConditions | None = None
    moe: FusionConditions | None = None


class KernelFacts(Strict):
    """Fused kernels of the engine's forward pass that change its operator list.
    ``fused_residual_norm``: the norm kinds (``rmsnorm``, ``layernorm``) whose residual add
    and following norm the engine runs as one kernel (vLLM ``fused_add_rms_norm``, SGLang
    ``fused_add_rmsnorm``; ``ops.fuse_residual_norms``, applied by inference._pass_ops); null
    or empty: two kernels, the generic engine's operator list."""

    fused_residual_norm: list[Literal["rmsnorm", "layernorm"]] | None = None
    # the residual add and the norm after it (the fused_residual_norm kernel) run inside the
    # tensor-parallel all-reduce kernel where these conditions hold and the all-reduce is the
    # engine's own kernel (below its workspace, ``comm``): no kernel of their own, the
    # all-reduce keeps its measured time (TensorRT-LLM AllReduceFusionOp.RESIDUAL_RMS_NORM);
    # null: never (``fused_away_kernels``)
    residual_norm_in_allreduce: ResidualNormFusion | None = None
    # the attention op applies the rotary embedding in its own QKV preprocessing (TensorRT-LLM
    # rope_fusion), so the measured attention tables hold it: no RoPE kernel of its own
    rope_in_attention: Bool | None = None


class EagerLayerFacts(Strict):
    """Host time of an eager forward through the engine's own model code (Python module calls,
    custom-op wrappers, shape logic, the torch dispatcher and every kernel it issues), per
    decoder layer of the whole pass: an eager forward's host time = num_layers x this figure
    (serving.engine.eager_host), whatever perfmodel's own kernel list for the format counts, so
    a format whose GEMMs add quantise launches does not inflate it unless the source shows it.
    A model with routed experts runs the engine's MoE path (router, top-k, expert alignment,
    grouped GEMMs, per-token-group quantisation), so it has its own figure; null: the bare
    torch dispatch figure per perfmodel kernel (frameworks/_common.yaml dispatch.forward_s)."""

    dense: Float | None = Field(default=None, gt=0)
    moe: Float | None = Field(default=None, gt=0)

    def for_model(self, model) -> float | None:
        """The figure for ``model`` (a ModelSpec): ``moe`` when it has routed experts."""
        return self.moe if getattr(model, "moe", None) is not None else self.dense


class TokenizerPathFacts(Strict):
    """Where the engine's API server turns a text prompt into token ids, on the request's way
    to the engine core (serving.engine.RequestPath; the cost itself is the tokenizer's,
    engines/tokenizers.yaml). One mechanism for every engine: prompts queue in arrival order
    for ``workers`` concurrent tokenising calls; a free worker takes the first queued prompt,
    then collects more until ``batch_wait_s`` after it or ``max_batch`` prompts, and tokenises
    them in one call (a batch of several: HF ``tokenizers`` encode_batch, which splits the list
    over its rayon threads, so the call takes as long as its longest prompt).
    vLLM 0.10 - 0.13: one AsyncMicrobatchTokenizer thread, 2 ms, 32; SGLang: the
    TokenizerManager's event loop, one prompt at a time (1, 0, 1); TensorRT-LLM 1.2:
    ``asyncio.to_thread`` per prompt (the default executor's threads, 0, 1)."""

    workers: Int = Field(default=1, ge=1)
    batch_wait_s: Float = Field(default=0.0, ge=0)
    max_batch: Int = Field(default=1, ge=1)


class OverheadFacts(Strict):
    # no per-step CPU time: no engine version here has a published per-step figure
    # (docs/engines.md "Per-step CPU overhead"); serving.scheduler.iteration_overhead_s takes a
    # measured one
    # the API server tokenises a text prompt on the request path, and how its calls are
    # serialised (TokenizerPathFacts; the cost: engines/tokenizers.yaml); null: not stated
    # (no tokenising time)
    tokenizer: TokenizerPathFacts | None = None
    # host time on the request path when the client sends the prompt as token ids (scenario
    # engine.prompt_input: tokens), which skip the tokenizer where the source says so: 0;
    # vLLM 0.10.0 - 0.10.1 detokenise the ids through the same micro-batching tokenizer (its
    # 2 ms wait); null: not stated (no host time)
    token_ids_request_s: Float | None = Field(default=None, ge=0)
    cuda_graphs: CudaGraphFacts = CudaGraphFacts()
    # an eager step's kernel issue on the host: "overlapped" (the host queues kernels ahead of
    # the GPU, which waits only when they are issued slower than they run: step = max(host,
    # GPU)), "serial" (host time adds); null: not stated (no eager host floor)
    eager_host: Literal["overlapped", "serial"] | None = None
    # host time per decoder layer of an eager forward through the engine's own model code, by
    # kind of model (EagerLayerFacts); null: the bare torch dispatch figure per kernel
    eager_layer_s: EagerLayerFacts | None = None
    # the engine loop hands a batch's tokens to the client only after it has launched the next
    # batch (SGLang event_loop_overlap: run_batch(next), then process_batch_result(last)), so an
    # eager next batch's host issue time delays them (serving.engine.Engine.launched); false:
    # a batch's tokens leave when its step ends (null: not stated, the same)
    results_after_next_launch: bool | None = None


class EngineSpec(Strict):
    """One engine's sourced facts (engines/<id>.yaml)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    version: str
    ranges: list[VersionRange] = Field(default_factory=list)  # versions these facts describe
    memory: MemoryFacts
    scheduler: SchedulerFacts
    comm: CommFacts = CommFacts()
    moe: MoeFacts = MoeFacts()
    attention: AttentionFacts = AttentionFacts()
    pipeline: PipelineFacts = PipelineFacts()
    overheads: OverheadFacts = OverheadFacts()
    quantization: QuantizationFacts = QuantizationFacts()
    gemm: GemmFacts = GemmFacts()
    speculative: SpeculativeFacts = SpeculativeFacts()
    kernels: KernelFacts = KernelFacts()
    field_sources: dict[str, list[str]] = Field(min_length=1)
    sources: list[Source] = Field(min_length=1)
    notes: str | None = None

    @model_validator(mode="after")
    def _check_sources(self) -> EngineSpec:
        """Every field_sources key names a real field (or section) and known source ids, and
        every non-null fact is covered by a key: no unsourced number."""
        known = {s.id for s in self.sources}
        facts = _leaves(self.model_dump(include=set(_FACT_SECTIONS)))
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
        if self.memory.budget != "total_fraction":  # vLLM's profiler terms: not read
            facts = {f: v for f, v in facts.items() if f not in _PROFILER_TERMS}
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

    def engine_tp(self, tp: int, attention_dp: int = 1) -> int:
        """The tensor-parallel size the engine itself sees (its ``tp_size``), which its reserve
        and distributed-init rules are written in: tp x attention_dp when the engine runs
        attention DP inside the TP group (``memory.attention_dp_in_tp_group``, SGLang), else tp
        (engine_memory.engine_tp)."""
        return int(tp) * int(attention_dp) if self.memory.attention_dp_in_tp_group else int(tp)

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
    return {*_FACT_SECTIONS, "memory.reserve",
            "moe.kernels", "moe.proxy", "moe.overlap", "moe.dispatch", "moe.mxfp4",
            "quantization.fp8_activation", "quantization.fp8_activation.fused_when",
            "quantization.nvfp4_activation", "quantization.nvfp4_activation.fused_when",
            "gemm.skinny", "gemm.kernels"}


_FACT_SECTIONS = ("memory", "scheduler", "comm", "moe", "attention", "pipeline", "overheads",
                  "quantization", "gemm", "speculative", "kernels")
#: terms of the total_fraction (vLLM) profiler rule; other budgets do not read them
_PROFILER_TERMS = {"memory.non_torch_counted", "memory.cuda_context_counted",
                   "memory.tp_allreduce_outputs_held", "memory.sampler_rows"}


class EngineFamily(Strict):
    """One earlier version family of an engine (engines/versions/<id>-<label>.yaml): the facts
    that differ from the current file, with their own sources, and the versions they cover."""

    extends: str
    version: str  # label, e.g. "0.2.0"
    ranges: list[VersionRange] = Field(min_length=1)
    memory: dict[str, Any] = Field(default_factory=dict)
    scheduler: dict[str, Any] = Field(default_factory=dict)
    comm: dict[str, Any] = Field(default_factory=dict)
    moe: dict[str, Any] = Field(default_factory=dict)
    attention: dict[str, Any] = Field(default_factory=dict)
    pipeline: dict[str, Any] = Field(default_factory=dict)
    overheads: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] = Field(default_factory=dict)
    gemm: dict[str, Any] = Field(default_factory=dict)
    speculative: dict[str, Any] = Field(default_factory=dict)
    kernels: dict[str, Any] = Field(default_factory=dict)
    field_sources: dict[str, list[str]] = Field(default_factory=dict)
    sources: list[Source] = Field(default_factory=list)
    notes: str | None = None


def overlay(base: EngineSpec, fam: EngineFamily) -> EngineSpec:
    """``base`` with ``fam``'s facts in place of its own: a fact the family sets is cited by the
    family's sources only; every other fact keeps the base file's citation."""
    data = base.model_dump(exclude={"field_sources", "sources", "ranges", "notes", "version"})
    changed: set[str] = set()
    for section in _FACT_SECTIONS:
        for key, value in getattr(fam, section).items():
            data[section][key] = value
            changed.add(f"{section}.{key}")
    sources: dict[str, list[str]] = {}
    for keys, ids in base.field_sources.items():
        for key in (k.strip() for k in keys.split(",")):
            if not any(key == c or key.startswith(c + ".") for c in changed):
                sources[key] = list(ids)
    for keys, ids in fam.field_sources.items():
        for key in (k.strip() for k in keys.split(",")):
            sources[key] = list(ids)
    own = {s.id for s in fam.sources}
    clash = own & {s.id for s in base.sources}
    if clash:
        raise SpecError(f"engine family {fam.extends} {fam.version}: source id(s) "
                        f"{sorted(clash)} already used by engines/{base.id}.yaml")
    notes = " ".join(n for n in (fam.notes, base.notes) if n)
    return EngineSpec(**data, version=fam.version, ranges=fam.ranges, field_sources=sources,
                      sources=[*base.sources, *fam.sources], notes=notes or None)


@cache
def _base(engine_id: str) -> EngineSpec:
    from .specs.registry import load_named

    if engine_id not in ENGINE_IDS:
        raise unknown_id("engine", engine_id, ENGINE_IDS)
    return _check_kernel_labels(load_named(EngineSpec, data_dir("engines"), engine_id),
                                f"engines/{engine_id}.yaml")


def _check_kernel_labels(spec: EngineSpec, where: str) -> EngineSpec:
    """``spec`` once every kernel its ``gemm.kernels`` and ``moe.kernels`` name is a label of
    calibration/gemm_kernels.yaml / moe_kernels.yaml (the names the profiles' tables carry: a
    label matching none would silently read the reference table); else one line naming
    ``<where> gemm.kernels.<format>`` (``moe.kernels.<format>[.<all-to-all>]``), the unknown
    labels and the valid ones."""
    from .calibrate.moe_kernels import check_labels

    check_labels("gemm", spec.gemm.kernels, f"{where} gemm.kernels")
    moe: dict[str, list[str]] = {}
    todo = list(spec.moe.kernels.items())
    while todo:  # per all-to-all backend and / or EP case: moe.kernels.<format>.<case>...
        at, kernels = todo.pop(0)
        if isinstance(kernels, dict):
            todo += [(f"{at}.{case}", ks) for case, ks in kernels.items()]
        else:
            moe[f"kernels.{at}"] = kernels
    if spec.moe.mxfp4 is not None:  # the kernels the MXFP4 backends are timed by
        moe |= {f"mxfp4.backends.{name}": [b.kernel or name]
                for name, b in spec.moe.mxfp4.backends.items()}
    check_labels("moe", moe, f"{where} moe")
    return spec


@cache
def families(engine_id: str) -> tuple[EngineSpec, ...]:
    """Every version family of ``engine_id`` (the current file last), validated (cached)."""
    from .specs.registry import load_file

    base = _base(engine_id)
    out = []
    for path in sorted((data_dir("engines") / "versions").glob(f"{engine_id}-*.yaml")):
        fam = load_file(EngineFamily, path)
        if fam.extends != engine_id:
            raise SpecError(f"{path}: extends {fam.extends!r}, expected {engine_id!r}")
        try:
            spec = overlay(base, fam)
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None
        out.append(_check_kernel_labels(spec, f"engines/versions/{path.name}"))
    for spec in (*out, base):  # get_engine's one rule needs the newest release described
        for r in spec.ranges:
            if r.until is None:
                raise SpecError(f"engine {engine_id} family {spec.version}: range since "
                                f"{r.since!r} has no until: end it at the release known to "
                                "change a fact, else the next minor release after the newest "
                                "one its facts were read at")
    return (*out, base)


def family_holds(spec: EngineSpec, version: str, variant: str | None) -> bool:
    """Whether ``spec`` (a version family) answers ``version`` / ``variant``: one of its ranges
    of exactly that variant holds the version (``VersionRange.holds``)."""
    return any(r.holds(version, variant) for r in spec.ranges)


def family_order(spec: EngineSpec) -> tuple[int, ...]:
    """Sort key of a version family: its earliest release (``version_key`` of its ranges'
    ``since``), so families list by version (0.2, ..., 0.8, 0.10, 0.12), not as text."""
    return min(version_key(r.since) for r in spec.ranges)


def newest_range(engine_id: str, variant: str | None = None) -> tuple[EngineSpec, VersionRange]:
    """The version family of ``engine_id`` that describes the newest release perfmodel has facts
    for (of ``variant``; None: the release's default engine), and that range: the range of that
    variant with the latest ``until`` (every range ends, ``families``)."""
    spans = [(f, r) for f in families(engine_id) for r in f.ranges if r.variant == variant]
    return max(spans, key=lambda fr: (version_key(fr[1].until or fr[1].since),
                                      version_key(fr[1].since)))


def default_variant(engine_id: str, version: str | None, family: str) -> str | None:
    """The variant ``engine_id`` runs a model of ``family`` (``ModelSpec.family``) on at
    ``version`` when the scenario names none: the variant of the range that holds ``version``
    and whose ``default_for`` lists the family from a release at or before it (None: the
    release's default, the ranges without a variant). No ``version``: at the newest release
    the newest family describes (``newest_range``; get_engine's rule), i.e. a range reaching
    its ``until`` whose ``default_for`` starts before it. Two variants claiming one family at
    one release are a data error."""
    if engine_id not in ENGINE_IDS or not _base(engine_id).ranges:
        return None
    spans = [r for f in families(engine_id) for r in f.ranges if family in r.default_for]
    if version is None:
        end = version_key(newest_range(engine_id)[1].until)
        hits = {r.variant for r in spans if version_key(r.default_for[family]) < end
                and version_key(r.until) >= end}
    else:
        key = version_key(version)
        hits = {r.variant for r in spans if r.holds(version, r.variant)
                and version_key(r.default_for[family]) <= key}
    if len(hits) > 1:
        raise SpecError(f"engine {engine_id}: several variants {sorted(hits)} are the default "
                        f"for {family} models at {version or 'the newest release'} "
                        "(ranges' default_for overlap)")
    return hits.pop() if hits else None


def default_version_note(engine_id: str, version: str | None,
                         variant: str | None = None) -> str | None:
    """The assumption a scenario makes when its ``engine:`` names no ``version`` (one line,
    naming the field), or None when it names one (or the engine has no version families)."""
    if version is not None or engine_id not in ENGINE_IDS or not _base(engine_id).ranges:
        return None
    fam, span = newest_range(engine_id, variant)
    what = f"{engine_id} {variant}" if variant else engine_id
    return (f"engine.version not given: {what} is modelled with the newest facts perfmodel has, "
            f"version family {fam.version} (versions {span.since} up to {span.until}, not "
            f"included); name engine.version for another release")


@cache
def get_engine(engine_id: str, version: str | None = None,
               variant: str | None = None) -> EngineSpec:
    """The engine's facts for ``version`` (and ``variant``, e.g. vLLM's ``v1`` engine core
    before it became the default): the family whose version range holds it (cached).

    One rule for every engine (QA 1205c D7): every family's ranges end (``until``: the release
    known to change a fact, else the next minor release after the newest one its facts were
    read at, engines/<id>.yaml comments), so perfmodel knows the newest release it describes.

    - No ``version``: the family of that newest release (of ``variant``; none named: the
      release's default engine), the facts a user of today's engine expects; the prediction
      states it (``default_version_note``). Not the current file: that is the family whose
      facts were read most completely, not necessarily the newest (vLLM's is 0.10).
    - A ``version`` newer than every range: refused in one line naming the newest release the
      facts cover and the remedy (pin a covered release, or omit engine.version). Not run on
      the newest family's facts with a warning: a range ends where a fact is known to change
      (vLLM 0.20 subtracts a CUDA-graph estimate from the KV budget) or where the facts were
      not read, so running it would silently model a release as another; omitting the version
      says which facts are used.
    - A ``version`` older than, or between, the families: refused naming the known families.
    """
    base = _base(engine_id)
    if not base.ranges:
        if version is None and variant is None:
            return base
        if version is None:
            raise SpecError(f"engine.variant: {engine_id} has no variants (given {variant!r}); "
                            f"engines/{engine_id}.yaml describes {base.version} (omit "
                            "engine.variant)")
        raise SpecError(f"engine.version: {engine_id} has no version families; "
                        f"engines/{engine_id}.yaml describes {base.version} (omit engine.version "
                        "and engine.variant)")
    fams = families(engine_id)
    if variant is not None:
        variants = sorted({r.variant for f in fams for r in f.ranges if r.variant})
        if not variants:
            raise SpecError(f"engine.variant: {engine_id} has no variants (given {variant!r}); "
                            "omit engine.variant")
        if variant not in variants:
            known = ", ".join(repr(v) for v in variants)
            raise SpecError(f"engine.variant: {engine_id} has no variant {variant!r}; its "
                            f"variants: {known}, or omit engine.variant for the default engine")
    if version is None:  # the newest release perfmodel has facts for
        return newest_range(engine_id, variant)[0]
    key = version_key(version)
    builds = is_build_tag(base.ranges[0].since)  # llama.cpp names builds, the others releases
    if is_build_tag(version) != builds:
        raise SpecError(f"engine.version {version!r}: {engine_id} versions are "
                        + ("build tags like 'b1786'" if builds else
                           "releases like '0.7.3' (a build tag names a llama.cpp build)"))
    hits = [f for f in fams if family_holds(f, version, variant)]
    what = f"version {version!r}" + (f" variant {variant!r}" if variant else "")
    if not hits:
        fam, span = newest_range(engine_id, variant)
        if key >= version_key(span.until):
            raise SpecError(
                f"engine.version: {engine_id} has no facts for {what}, newer than its newest "
                f"version family {fam.version} ({span.since} up to {span.until}, not "
                f"included): pin a version before {span.until}, or omit engine.version for "
                f"family {fam.version}")
        known = "; ".join(
            f"{f.version}: " + ", ".join(
                f"{r.since}..{r.until or ''}" + (f" ({r.variant})" if r.variant else "")
                for r in f.ranges) for f in sorted(fams, key=family_order))
        raise SpecError(f"engine.version: {engine_id} has no facts for {what}; "
                        f"known families: {known}")
    if len(hits) > 1:
        raise SpecError(f"engine {engine_id}: version {version!r} is in several families "
                        f"({[f.version for f in hits]}); their ranges overlap")
    return hits[0]


def engine_for(cfg) -> EngineSpec:
    """The facts a scenario's ``engine:`` section names (its version and variant, if given)."""
    return get_engine(cfg.name, getattr(cfg, "version", None), getattr(cfg, "variant", None))


def engine_facts(engine_id: str, version: str | None = None,
                 variant: str | None = None) -> EngineSpec | None:
    """The facts of ``engine_id`` at ``version`` / ``variant`` (``get_engine``), or None for
    ``generic`` (no file). Every kernel fact (MoE kernels, router dtype, two-batch overlap,
    all-reduce choice, decode attention) is read through this, so a scenario's
    ``engine.version`` selects the kernels of that release as it selects its memory rules."""
    if engine_id not in ENGINE_IDS:
        return None
    return get_engine(engine_id, version, variant)


def moe_kernels(engine_id: str, fmt: str, version: str | None = None,
                variant: str | None = None, a2a: str = "none", ep: int = 1,
                capability: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """(kernels, proxy) of ``engine_id``'s MoE experts in format ``fmt`` when the layer's
    tokens move by all-to-all backend ``a2a`` and the experts are split over ``ep`` ranks, on
    a device of compute ``capability`` (``MoeFacts.kernels_for``); ((), None) for ``generic``
    or a format its file does not list."""
    spec = engine_facts(engine_id, version, variant)
    if spec is None:
        return (), None
    return spec.moe.kernels_for(fmt, a2a, ep, capability), spec.moe.proxy.get(fmt)


@cache
def production_kernels(fmt: str) -> frozenset[str]:
    """Kernel labels some engine file selects for experts of format ``fmt`` (any all-to-all
    backend, any EP case): engines/<id>.yaml ``moe.kernels``, each list cited to the engine
    source that selects it (the kernels the generic engine may run: roofline.moe_alternatives,
    calibration/moe_kernels.yaml ``generic``)."""

    def flat(v) -> list[str]:
        if isinstance(v, dict):
            return [k for x in v.values() for k in flat(x)]
        return list(v or ())

    return frozenset(k for e in ENGINE_IDS for k in flat(get_engine(e).moe.kernels.get(fmt)))


def gemm_kernels(engine_id: str, dtype: str, version: str | None = None,
                 variant: str | None = None) -> tuple[str, ...]:
    """The dense GEMM kernels ``engine_id`` selects for ``dtype`` (``GemmFacts.kernels``), in
    its order; () for ``generic`` or a format its file does not list."""
    spec = engine_facts(engine_id, version, variant)
    return tuple(spec.gemm.kernels.get(dtype, ())) if spec is not None else ()


def moe_overlap_facts(engine_id: str, version: str | None = None,
                      variant: str | None = None) -> MoeOverlapFacts | None:
    """The two-micro-batch overlap facts of ``engine_id`` (None: ``generic`` or not listed)."""
    spec = engine_facts(engine_id, version, variant)
    return spec.moe.overlap if spec is not None else None


def dp_gather_mode(engine_id: str, phase: str, version: str | None = None,
                   variant: str | None = None) -> str:
    """How ``engine_id`` moves attention-DP groups' tokens to a tensor-parallel MoE layer in
    ``phase`` (``MoeFacts.dp_gather``): ``all_gather`` (also for ``generic`` and where the
    file is silent) or ``all_reduce``."""
    spec = engine_facts(engine_id, version, variant)
    mode = spec.moe.dp_gather.get(phase) if spec is not None else None
    return mode or "all_gather"


def decode_kv_reads(engine_id: str, version: str | None = None,
                    variant: str | None = None) -> str:
    """``kv_head`` or ``query_head``: how the engine's decode attention kernel reads the KV
    cache (``AttentionFacts``); ``kv_head`` for ``generic`` and where the file is silent."""
    spec = engine_facts(engine_id, version, variant)
    reads = spec.attention.decode_kv_reads if spec is not None else None
    return reads or "kv_head"


def fp8_prefill_attention(engine_id: str, version: str | None, variant: str | None, model,
                          capability: str | None) -> bool:
    """Whether ``engine_id`` runs ``model``'s prefill attention in fp8 with an fp8 KV cache on
    a GPU of ``capability`` (``Fp8PrefillFacts``); False for ``generic`` and where the file is
    silent."""
    spec = engine_facts(engine_id, version, variant)
    if spec is None:
        return False
    paged = bool(spec.scheduler.prefix_caching or spec.scheduler.chunked_prefill)
    return spec.attention.fp8_prefill.holds(model.mla is not None, capability, version, paged)


def mxfp4_pad_multiples(spec: EngineSpec | None, model, device, expert_dtype: str
                        ) -> tuple[str | None, tuple[int, int] | None, bool]:
    """(backend, (hidden multiple, intermediate multiple), scales kept) of the MXFP4 MoE
    backend ``spec``'s engine selects on ``device`` (engines/<id>.yaml ``moe.mxfp4.backend``,
    by compute capability) for experts stored as ``expert_dtype``
    (``formats.class_dtype(formats, "experts", weight_dtype)``); (None, None, False) when
    they are not MXFP4, the engine is generic or its file has no backend for the device."""
    facts = None if spec is None else spec.moe.mxfp4
    if facts is None or model.moe is None or expert_dtype != "mxfp4":
        return None, None, False
    backend = facts.backend_for(device.compute_capability)
    if backend is None:
        return None, None, False
    pad = facts.backends[backend]
    return backend, (pad.hidden, pad.intermediate), bool(pad.scales_kept)


def skinny_gemm_facts(engine_id: str, version: str | None, variant: str | None, device,
                      ) -> tuple[SkinnyGemmFacts, tuple[float | None, ...]] | None:
    """(facts, HBM fractions by token count) of ``engine_id``'s own few-token GEMM kernel on
    ``device`` (engines/<id>.yaml ``gemm.skinny``: the kernel runs on the archs it names, at
    the fractions measured on that device); None for ``generic``, a file that does not state
    one, or a device it has no measured fractions for."""
    spec = engine_facts(engine_id, version, variant)
    if spec is None:
        return None
    facts = spec.gemm.skinny
    fracs = facts.hbm_fraction.get(device.id)
    if not fracs or str(device.compute_capability) not in facts.archs:
        return None
    return facts, tuple(fracs)


def skinny_gemm_warning(device, engine, weight_dtype: str,
                        batch: int | None = None) -> str | None:
    """The one-line note of a scenario whose weights run, at a few tokens, on an engine kernel
    with no measured time on ``device`` (``gemm.skinny.proxies``: vLLM's fp8 wvSplitKQ on
    MI300X), else None: for a prediction's warnings (resolve.format_warnings). ``batch``: the
    decode batch of a single-pass prediction; above the kernel's token limit it never runs
    (None: a serving simulation, whose batches can be that small)."""
    found = skinny_gemm_facts(engine.name, engine.version, engine.variant, device)
    if found and batch is not None and batch > found[0].limits(weight_dtype)[0]:
        return None
    note = found[0].proxies.get(weight_dtype) if found else None
    return (f"{engine.name} on {device.name}: {note} (engines/{engine.name}.yaml gemm.skinny)"
            if note else None)


def fp8_activation_kernels(engine_id: str, version: str | None, variant: str | None,
                           hidden_size: int, tp, attention_dp,
                           fmt: str = "fp8") -> tuple[str | None, Any]:
    """(kernel mode, on) of the activation quantise ``engine_id`` runs per per-tensor fp8 GEMM
    input (``quantization.fp8_activation``; ``fmt`` "nvfp4": per NVFP4 GEMM input,
    ``quantization.nvfp4_activation``): the mode of its own kernel(s) (``ops.
    activation_quant_ops``) and where it runs them (1) or fuses them (0), broadcast over ``tp``
    / ``attention_dp`` arrays of plans; (None, 0) for ``generic``, a fused engine or a file
    that does not state it."""
    if fmt not in ("fp8", "nvfp4"):
        raise ValueError(f"fp8_activation_kernels: fmt {fmt!r} is not fp8 or nvfp4")
    spec = engine_facts(engine_id, version, variant)
    facts = getattr(spec.quantization, f"{fmt}_activation") if spec is not None else None
    if facts is None or facts.mode is None or (facts.mode == "fused" and facts.unfused is None):
        return None, 0.0
    if facts.mode != "fused":
        return facts.mode, 1.0
    import numpy as np

    when = facts.fused_when
    fused = np.ones(np.broadcast(np.asarray(tp), np.asarray(attention_dp)).shape, bool)
    if when.min_tp is not None:
        fused = fused & (np.asarray(tp) >= when.min_tp)
    if when.hidden_above is not None:
        fused = fused & (hidden_size > when.hidden_above)
    if when.attention_dp is False:
        fused = fused & (np.asarray(attention_dp) <= 1)
    return facts.unfused, np.where(fused, 0.0, 1.0)


def fused_away_kernels(engine_id: str, version: str | None, variant: str | None,
                       hidden_size: int, tp, attention_dp, custom_allreduce,
                       moe: bool = False) -> tuple[Any, bool]:
    """(in_allreduce, rope_in_attention) of ``engine_id`` (``KernelFacts``): ``in_allreduce``
    1 where a layer's fused residual-norm kernels run inside its TP all-reduce, 0 elsewhere,
    broadcast over the plans' ``tp`` / ``attention_dp`` and ``custom_allreduce`` (where the
    all-reduce is the engine's own kernel: ``engine_comm.custom_eligible``, its TP sizes, one
    node, NVLink, a message below its workspace; NCCL's fallback runs the add and the norm
    after it as a kernel), under ``residual_norm_in_allreduce``'s conditions for the model's
    kind (``moe`` for a model with routed experts); ``rope_in_attention`` whether the
    attention op applies RoPE. (0, False) for ``generic`` or a file that is silent."""
    import numpy as np

    spec = engine_facts(engine_id, version, variant)
    if spec is None:
        return 0.0, False
    rope = bool(spec.kernels.rope_in_attention)
    by_kind = spec.kernels.residual_norm_in_allreduce
    when = None if by_kind is None else (by_kind.moe if moe else by_kind.dense)
    if when is None:
        return 0.0, rope
    tp = np.asarray(tp)
    fused = np.asarray(custom_allreduce, bool) & np.ones(
        np.broadcast(tp, np.asarray(attention_dp)).shape, bool)
    if when.min_tp is not None:
        fused = fused & (tp >= when.min_tp)
    if when.hidden_above is not None:
        fused = fused & (hidden_size > when.hidden_above)
    if when.attention_dp is False:
        fused = fused & (np.asarray(attention_dp) <= 1)
    return np.where(fused, 1.0, 0.0), rope


def fused_residual_norms(engine_id: str, version: str | None = None,
                         variant: str | None = None) -> tuple[str, ...]:
    """The norm kinds whose residual add and following norm ``engine_id`` runs as one kernel
    (``KernelFacts.fused_residual_norm``); () for ``generic`` or a file that does not state it."""
    spec = engine_facts(engine_id, version, variant)
    return tuple(spec.kernels.fused_residual_norm or ()) if spec is not None else ()


def format_rule(engine_id: str, fmt: str, version: str | None = None,
                variant: str | None = None) -> FormatRule | None:
    """``engine_id``'s rule for weights in ``fmt`` (``quantization.formats``): None for
    ``generic`` (no engine rule: the scenario's choice is honoured) or a format its file does
    not state."""
    spec = engine_facts(engine_id, version, variant)
    return None if spec is None else spec.quantization.formats.get(fmt)


def draft_tp(engine_id: str, version: str | None, variant: str | None, target_tp: int,
             requested: int | None) -> int:
    """The draft model's tensor-parallel size (``SpeculativeFacts.draft_tp_for``); ``generic``
    (no file): ``requested``, else the target's, as every engine on file runs it."""
    spec = engine_facts(engine_id, version, variant)
    facts = spec.speculative if spec is not None else SpeculativeFacts()
    return facts.draft_tp_for(target_tp, requested)


def llamacpp_small_batch_mmq(engine_id: str | None, version: str | None = None,
                             variant: str | None = None) -> bool:
    """Whether ``engine_id`` at ``version`` is a llama.cpp build before PR #8075 (engines/
    versions/llamacpp-b1786.yaml: ``gemm.ggml_mmq: small_batch_mmq``), whose quantised matmuls
    above 32 tokens take the dequantise + cuBLAS path: the ``legacy`` argument of
    ``llamacpp_kernels.with_ggml_cuda_matmuls`` / ``kernel_path``."""
    spec = engine_facts(engine_id, version, variant) if engine_id == "llamacpp" else None
    return spec is not None and spec.gemm.ggml_mmq == "small_batch_mmq"


def pipeline_facts(engine_id: str | None, version: str | None = None,
                   variant: str | None = None) -> PipelineFacts:
    """The pipeline layer-split facts of ``engine_id`` at ``version`` / ``variant``; for
    ``generic`` (or None) none: pp must divide the layers unless the scenario asks otherwise."""
    spec = engine_facts(engine_id, version, variant) if engine_id else None
    return spec.pipeline if spec is not None else PipelineFacts()


def engines() -> dict[str, EngineSpec]:
    return {e: get_engine(e) for e in ENGINE_IDS}


class TokenizerFamily(Strict):
    """One tokenizer's measured cost (engines/tokenizers.yaml ``families``)."""

    name: str
    # the models that use this tokenizer: [ModelSpec family, vocab_size] pairs (the vocabulary
    # tells a family's tokenizer generations apart: Llama-2's 32k from Llama-3's 128k)
    models: list[tuple[str, int]] = Field(default_factory=list)
    # [[prompt tokens, seconds], ...] of one tokenizer(prompt) call, increasing
    tokenize_s: list[tuple[int, Float]] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)

    @field_validator("tokenize_s")
    @classmethod
    def _increasing(cls, v):
        """Tokens > 0 strictly increasing, seconds >= 0 non-decreasing (read from (0, 0))."""
        if any(b[0] <= a[0] or b[1] < a[1] for a, b in pairwise([(0, 0.0), *v])):
            raise ValueError("tokenize_s: [tokens, seconds] points with tokens > 0 strictly "
                             "increasing and seconds >= 0 non-decreasing")
        return v


class TokenizerFacts(Strict):
    """engines/tokenizers.yaml: what tokenising a text prompt costs, by tokenizer family, and
    the family a model without its own entry reads as a proxy (``default``)."""

    default: str
    default_note: str
    families: dict[str, TokenizerFamily] = Field(min_length=1)
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> TokenizerFacts:
        if self.default not in self.families:
            raise SpecError(f"engines/tokenizers.yaml: default {self.default!r} is not a "
                            f"family ({sorted(self.families)})")
        for fid, fam in self.families.items():
            check_source_ids(fam.sources, self.sources,
                             f"engines/tokenizers.yaml: families.{fid}.sources")
        return self


@cache
def tokenizer_facts() -> TokenizerFacts:
    """engines/tokenizers.yaml, validated (cached)."""
    from .specs.registry import load_file

    return load_file(TokenizerFacts, data_dir("engines") / "tokenizers.yaml")


def tokenizer_for(model) -> tuple[str, TokenizerFamily, bool]:
    """(family id, its facts, proxy) of the tokenizer ``model`` (a ModelSpec; None: not known)
    uses: the family that lists its (family, vocab_size), else the file's ``default`` standing
    in for it (proxy True: an assumption the serving summary states)."""
    facts = tokenizer_facts()
    key = (getattr(model, "family", None), getattr(model, "vocab_size", None))
    for fid, fam in facts.families.items():
        if key in {(f, int(v)) for f, v in fam.models}:
            return fid, fam, False
    return facts.default, facts.families[facts.default], True
