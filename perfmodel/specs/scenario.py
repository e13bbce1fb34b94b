"""The user-facing scenario: model x system x parallel plan x workload (DESIGN.md format).

Scenarios are built in code (``Scenario(kind="training", model="llama-3-8b", ...)``) or read
from YAML (``specs.assemble.load_scenario(path)``). Ids are resolved and validated here, at the
edge, so the core only ever sees complete, consistent specs. A model id or path is resolved by
the zoo when a scenario is validated (imported then, not when this module is).
"""


from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ..dtypes import DType
from ..errors import SpecError
from ..frameworks_config import FrameworkConfig
from .common import Strict, TopLevel
from .model import MODEL_DTYPE, ModelSpec
from .types import (
    MAX_BATCH,
    MAX_GPUS,
    MAX_GPUS_PER_NODE,
    MAX_LAYERS,
    MAX_NICS_PER_NODE,
    MAX_REQUESTS,
    MAX_SEED,
    MAX_TOKENS,
    MAX_WIDTH,
    Bool,
    Float,
    Int,
    require_int,
)

# fp8: Transformer Engine's per-tensor recipes (training.framework.float8_recipe); mxfp8 / nvfp4:
# TE's MXFP8BlockScaling / NVFP4BlockScaling recipes (frameworks/_common.yaml fp8_recipes.mxfp8 /
# .nvfp4; Blackwell-class tensor cores only, plan.training_precision_problem)
TrainPrecision = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4"]


def defaults(section: type[Strict]) -> Any:
    """A section's default: ``section()``, each time one is needed, made without its validator.
    With ``defer_build`` a model builds its validator on its first validation, ~2-35 ms of a
    fresh process each (the first pays pydantic's plugin import); a default instance made at
    import paid that for every section whether a scenario used it or not (a training plan never
    builds the serving scheduler's, SLOs' or engine's). No validator has anything to check in an
    empty section (defaults are not validated; ``before`` validators pass ``{}`` through), so
    ``model_construct()`` is ``section()`` field for field, fields set and extras included
    (tests/test_scenario_defaults.py)."""
    return Field(default_factory=section.model_construct)


class SystemConfig(Strict):
    """Which GPUs and how they are wired. Unset fields come from the device's default node."""

    device: str
    num_gpus: Int = Field(default=1, ge=1, le=MAX_GPUS)
    node: str | None = None  # node preset id (hardware_specs/nodes)
    gpus_per_node: Int | None = Field(default=None, ge=1, le=MAX_GPUS_PER_NODE)
    intra_node: str | None = None  # interconnect id
    inter_node: str | None = None  # interconnect id, optionally "xN" for N NICs per node
    nics_per_node: Int | None = Field(default=None, ge=0, le=MAX_NICS_PER_NODE)
    # rail-optimised fabric: NIC i of every node on leaf switch i, so same-index GPUs are one
    # switch hop apart; otherwise their traffic crosses the spine (leaf-spine-leaf)
    rail_optimized: Bool = True
    # board power limit per GPU (nvidia-smi -pl), W; None: the device's default (its TDP).
    # A cap lowers the sustained clock of compute-bound kernels (perfmodel/power.py)
    power_limit_w: Float | None = Field(default=None, gt=0)


#: ``parallelism.redundant_experts: auto`` in a scenario, ``--redundant-experts auto`` of
#: plan-serving and ``plan_serving(redundant_experts="auto")``: per EP degree, the fewest
#: redundant experts that make ep divide the physical experts (``redundant_experts_for``).
REDUNDANT_EXPERTS_AUTO = "auto"
#: the largest count of redundant experts accepted (a count of experts: ``MAX_WIDTH``)
MAX_REDUNDANT_EXPERTS = MAX_WIDTH


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == REDUNDANT_EXPERTS_AUTO


def parse_redundant_experts(value: Any, field: str = "parallelism.redundant_experts"
                            ) -> int | str:
    """A redundant-experts input as every door takes it: a whole count from 0 to
    ``MAX_REDUNDANT_EXPERTS`` (a command's text "32" too), or ``auto`` (any case), returned as
    ``REDUNDANT_EXPERTS_AUTO``; anything else is a SpecError naming ``field``."""
    if _is_auto(value):
        return REDUNDANT_EXPERTS_AUTO
    count = value
    if isinstance(value, str) and value.strip().isdigit():
        count = int(value.strip())
    if isinstance(count, bool) or not isinstance(count, int) \
            or not 0 <= count <= MAX_REDUNDANT_EXPERTS:
        raise SpecError(f"{field}: {value!r} is not a count of redundant experts (0 to "
                        f"{MAX_REDUNDANT_EXPERTS:,}) or auto")
    return count


def redundant_experts_for(value: int | str, num_experts: int | None, ep: int) -> int:
    """EPLB's redundant experts of a layout with ``ep`` expert groups. A count is kept as
    given; ``auto`` is 0 without EP or routed experts, else the fewest r that make ep divide
    the E + r physical experts, (-E) mod ep. Both engines place E + r physical experts evenly
    over the EP ranks (SGLang models/deepseek_v2.py passes n_routed_experts +
    ep_num_redundant_experts to FusedMoE, which asserts num_experts % moe_ep_size == 0; vLLM
    --eplb-config num_redundant_experts, docs.vllm.ai serving/expert_parallel_deployment), as
    the published wide-EP deployments pick r: 256 + 32 = 288 over EP72
    (lmsys.org/blog/2025-06-16-gb200-part-1)."""
    if value != REDUNDANT_EXPERTS_AUTO:
        return int(value)
    if num_experts is None or ep <= 1:
        return 0
    return -int(num_experts) % int(ep)


def _resolve_redundant_experts(parallelism: Any, model: Any) -> Any:
    """The raw parallelism section with ``redundant_experts: auto`` replaced by its count for
    ``model`` (a count or anything else is left to the field's own validation)."""
    if not isinstance(parallelism, dict) or "redundant_experts" not in parallelism:
        return parallelism
    value = parallelism["redundant_experts"]
    if not _is_auto(value) or not isinstance(model, ModelSpec):
        return parallelism
    ep = parallelism.get("ep", 1)
    if isinstance(ep, bool) or not isinstance(ep, int):
        return {**parallelism, "redundant_experts": 0}  # the ep field reports its own error
    experts = model.moe.num_experts if model.moe is not None else None
    return {**parallelism, "redundant_experts": redundant_experts_for(
        REDUNDANT_EXPERTS_AUTO, experts, ep)}


class Parallelism(Strict):
    """How work is split (Narayanan et al. 2021 notation: t, p, d; plus CP, EP, VP).

    ``dp`` may be omitted: it is then num_gpus / (tp * pp * cp). Training folds the MoE layers'
    ep x etp expert groups over a stage's tp * cp * dp ranks (Megatron-Core MoE parallel
    folding: ep * etp divides tp * cp * dp; perfmodel/topology.py).
    """

    tp: Int = Field(default=1, ge=1, le=MAX_GPUS)
    pp: Int = Field(default=1, ge=1, le=MAX_GPUS)
    dp: Int | None = Field(default=None, ge=1, le=MAX_GPUS)
    cp: Int = Field(default=1, ge=1, le=MAX_GPUS)
    ep: Int = Field(default=1, ge=1, le=MAX_GPUS)
    etp: Int | None = Field(default=None, ge=1, le=MAX_GPUS)  # expert tensor parallel (default: tp)
    # virtual pipeline stages per rank (interleaved 1F1B)
    vp: Int = Field(default=1, ge=1, le=MAX_LAYERS)
    sequence_parallel: Bool = False
    # 1 = Megatron's distributed optimizer
    zero_stage: Annotated[Literal[0, 1, 2, 3], BeforeValidator(require_int)] = 0
    # default: by vp. dualpipev: DeepSeek's DualPipeV (two chunks per rank in a V, vp: 2),
    # where the framework runs it (frameworks/<id>.yaml dualpipev; pipeline.dualpipev_bubble)
    schedule: Literal["1f1b", "gpipe", "interleaved", "dualpipev"] | None = None
    placement: str = "tp-cp-ep-dp-pp"  # rank order, innermost first (Megatron default)
    overlap_grad_reduce: Bool = True
    overlap_param_gather: Bool = True
    tp_comm_overlap: Bool = False
    # training: Megatron-Core's combined 1F1B EP overlap (--overlap-moe-expert-parallel-comm,
    # Megatron-Bridge moe_a2a_overlap): the MoE all-to-alls of one micro-batch run beside the
    # other's compute (parallel_comm.ep_a2a_overlap)
    moe_a2a_overlap: Bool = False
    # allow num_layers not divisible by pp*vp: layers spread as evenly as possible (torchtitan,
    # DeepSpeed); the largest stage bounds the pipeline
    uneven_pipeline: Bool = False
    # inference: layers per pipeline stage (vLLM VLLM_PP_LAYER_PARTITION, SGLang
    # SGLANG_PP_LAYER_PARTITION), pp counts summing to num_layers; or llama.cpp's
    # --tensor-split proportions with --split-mode layer (one per stage). Without either, a
    # named engine splits by its own rule (engines/<id>.yaml pipeline.default_split); the
    # generic engine with uneven_pipeline: true as vLLM does (perfmodel/pipeline.py)
    pipeline_layers: list[Annotated[int, Field(strict=True, ge=1, le=MAX_LAYERS)]] | None = \
        Field(default=None, min_length=1, max_length=MAX_GPUS)
    pipeline_split: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = \
        Field(default=None, min_length=1, max_length=MAX_GPUS)
    # parameters per data-parallel collective: gradient buckets (default 40M, Megatron's DDP
    # bucket) or ZeRO-3 gather units (default one transformer layer, FSDP's wrapping; DeepSpeed
    # ZeRO-3 prefetches buckets of stage3_prefetch_bucket_size = 5e7)
    dp_bucket_params: Float | None = Field(default=None, gt=0, le=1e15)
    # ZeRO-3 / FSDP: free gathered weights after each forward (re-gather per micro-batch). None:
    # yes without pipeline parallelism, no with it (torchtitan's default: per-micro-batch
    # gathers under PP are expensive and not overlapped)
    reshard_after_forward: Bool | None = None
    # inference: attention data parallelism ("DP attention", SGLang --enable-dp-attention,
    # TRT-LLM enable_attention_dp): attention_dp groups of tp GPUs, each with its own requests
    # and KV cache; the MoE layers span all tp * attention_dp GPUs as ep expert groups
    # (perfmodel/moe_parallel.py)
    attention_dp: Int = Field(default=1, ge=1, le=MAX_GPUS)
    # inference: DeepEP all-to-all kernels; auto = normal for prefill, low_latency for decode
    # (SGLang --deepep-mode)
    a2a_mode: Literal["auto", "low_latency", "normal"] = "auto"
    # inference: two-micro-batch overlap of the all-to-all with compute (SGLang
    # --enable-two-batch-overlap, vLLM --enable-dbo): none | two_batch; null = the engine's
    # default (engines/<id>.yaml moe.overlap, off in every engine)
    moe_overlap: Literal["none", "two_batch"] | None = None
    # inference: extra expert replicas placed by a load balancer (DeepSeek EPLB, SGLang
    # --ep-num-redundant-experts; e.g. 256 + 32 = 288 experts over EP72); ep divides the sum.
    # In a scenario also "auto": the fewest that make ep divide them (redundant_experts_for),
    # resolved with the model (Scenario._resolve_model), so the field is a count here
    redundant_experts: Int = Field(default=0, ge=0, le=MAX_REDUNDANT_EXPERTS)

    @field_validator("redundant_experts", mode="before")
    @classmethod
    def _auto_needs_the_model(cls, value: Any) -> Any:
        if _is_auto(value):
            raise SpecError("redundant_experts: auto is resolved with the model's expert count; "
                            "give it in a scenario (parallelism.redundant_experts: auto) or a "
                            "count of redundant experts")
        if isinstance(value, str):  # a number in quotes too: strict, as every count
            raise SpecError(f"{value!r} is not a count of redundant experts (0 to "
                            f"{MAX_REDUNDANT_EXPERTS:,}) or auto")
        return value

    @field_validator("placement")
    @classmethod
    def _check_placement(cls, value: str) -> str:
        dims = value.split("-")
        if sorted(dims) != sorted(["tp", "cp", "ep", "dp", "pp"]):
            raise SpecError(
                f"placement {value!r} must order all of tp, cp, ep, dp, pp, joined by '-', "
                "innermost first (e.g. 'tp-cp-ep-dp-pp')"
            )
        return value

    @property
    def resolved_schedule(self) -> str:
        return self.schedule or ("interleaved" if self.vp > 1 else "1f1b")


class TrainingConfig(Strict):
    seq_len: Int = Field(ge=1, le=MAX_TOKENS)
    global_batch: Int = Field(ge=1, le=MAX_BATCH)  # sequences per optimizer step
    micro_batch: Int = Field(default=1, ge=1, le=MAX_BATCH)
    precision: TrainPrecision = "bf16"
    # selective: attention core (Korthikanti 2022); op: torchtitan's per-op policy (see
    # perfmodel/recompute.py); full: whole layers
    recompute: Literal["none", "selective", "full", "op"] = "selective"
    # with selective: Megatron-Core's recompute_modules (default [core_attn]); the submodules
    # re-run in backward (perfmodel/recompute.py MODULES)
    recompute_modules: list[Literal["core_attn", "layernorm", "moe_act", "mla_up_proj", "mlp",
                                    "shared_experts"]] | None = Field(default=None,
                                                                      max_length=6)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    flash_attention: Bool = True
    dropout: Bool = False  # Megatron-era GPTs used dropout 0.1 (masks cost activation memory)
    grad_reduce_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # Megatron default: fp32
    master_weights: Bool = True  # fp32 master copy with 16-bit training (mixed precision)
    causal: Bool = True
    # the training stack (frameworks/<id>.yaml): megatron-core (perfmodel's baseline),
    # torchtitan, fsdp (composer / llm-foundry), deepspeed, nemo; a name or {name, overrides}
    framework: FrameworkConfig = defaults(FrameworkConfig)


class OffloadConfig(Strict):
    """Keep part of the weights and/or KV cache in host memory (or on NVMe) and stream it to
    the GPU for every pass (FlexGen, Sheng et al. 2023 arXiv 2303.06865; ZeRO-Inference)."""

    weights: Float = Field(default=0.0, ge=0, le=1)  # fraction of the weights off the GPU
    kv_cache: Float = Field(default=0.0, ge=0, le=1)  # fraction of the KV cache off the GPU
    target: Literal["cpu", "nvme"] = "cpu"
    overlap: Bool = True  # prefetch the next layer's data while the current one computes


class SpeculativeConfig(Strict):
    """Speculative decoding (Leviathan et al. 2023 arXiv 2211.17192): a draft model proposes
    ``num_tokens`` tokens, the target verifies them in one pass; each is accepted with
    probability ``acceptance_rate`` (i.i.d., the paper's alpha)."""

    draft_model: ModelSpec
    num_tokens: Int = Field(default=4, ge=1, le=64)
    acceptance_rate: Float = Field(default=0.7, gt=0, lt=1)
    # the draft's tensor-parallel size (vLLM --speculative-config draft_tensor_parallel_size);
    # None: the engine's default (engines/<id>.yaml speculative.draft_tp: the target's TP in
    # vLLM, SGLang and TensorRT-LLM); a value the engine does not accept is refused
    draft_tp: Int | None = Field(default=None, ge=1, le=MAX_GPUS)

    @model_validator(mode="before")
    @classmethod
    def _resolve_draft(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("draft_model"), ModelSpec) \
                and "draft_model" in data:
            from ..zoo import resolve_model

            data = {**data, "draft_model": resolve_model(data["draft_model"])}
        return data


class InferenceConfig(Strict):
    batch: Int = Field(default=1, ge=1, le=MAX_BATCH)
    prompt_len: Int = Field(ge=1, le=MAX_TOKENS)
    output_len: Int = Field(default=1, ge=1, le=MAX_TOKENS)
    # one dtype, or a mapping by tensor class (perfmodel.formats), split on loading into the
    # default (weight_dtype) and the per-class overrides (weight_formats). A narrow dtype
    # (fp8, int8, int4, nvfp4, mxfp4, fp8_block) applies to the linear layers (attention,
    # MLP, experts): router, embeddings and LM head stay bf16 unless named
    # (formats.KEPT_16BIT), as quantised checkpoints and engines keep them
    weight_dtype: DType = Field(default="bf16", description=(
        "weight format: one name, or a mapping {default: ..., <class>: ...} by tensor class "
        "(perfmodel.formats.WEIGHT_CLASSES); a narrow format applies to the linear layers, "
        "router, embeddings and LM head stay bf16 unless the mapping names them"))
    weight_formats: dict[str, DType] = Field(default_factory=dict)
    # unset (the field reads bf16, the width of the hidden states between kernels, which is
    # also the GEMM activation width counted): as engines run the checkpoint. fp8 / fp8_block /
    # nvfp4 weights on a GPU with those tensor cores run the narrow GEMM (W8A8 / W4A4), its
    # input quantised inside the producing norm / activation kernel (ops.Precision.inference
    # ``fp8_gemm`` / ``native``); so the prediction is not that of an explicit bf16 (weight-only)
    # and differs slightly from an explicit fp8, which counts the GEMM input and output at 1 B
    # per element where unset counts both at 2 B (the engines' kernels read 1 B and write 2 B:
    # vLLM w8a8_utils.apply_fp8_linear, ``ops.cutlass_scaled_mm(qinput, ...,
    # out_dtype=input.dtype)``, the 16-bit dtype before the quantise). Elsewhere (no tensor cores
    # for the format, int8 / int4 / mxfp4 weights) unset is 16-bit activations against the
    # dequantised weights, unless a named engine's rule runs the format narrow there and says so
    # (mxfp4 on Blackwell: W4A8, formats.DEFAULT_REPLACED). A 16-bit value
    # given here asks for weight-only (W8A16 / W4A16), run under the generic engine and where
    # the device lacks the format's tensor cores, and timed no faster than the device's own
    # kernel of the weight format (roofline.weight_only_floor); a named engine that has no
    # weight-only path there runs its narrow GEMM instead and says so (engines/<id>.yaml
    # quantization.formats)
    activation_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8", "nvfp4", "mxfp4",
                              "fp8_block"] = Field(default="bf16", description=(
        "GEMM activation dtype. Unset (reads bf16): as engines run the checkpoint: fp8 / "
        "fp8_block / nvfp4 weights on a GPU with those tensor cores run the narrow GEMM "
        "(W8A8 / W4A4, input quantised by the producing kernel, activations counted at 16 bit), "
        "other weights 16-bit activations (or the named engine's own rule, with a note). "
        "A 16-bit value given asks for weight-only "
        "(W8A16 / W4A16) GEMMs, never faster than the device's own kernel for the weight "
        "format; a named engine without such a path replaces it and warns. fp8 / nvfp4: "
        "W8A8 / W4A4, GEMM inputs and outputs counted at the narrow width"))
    kv_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4", "nvfp4", "mxfp4"] = "bf16"
    quant_group_size: Int = Field(default=128, ge=1, le=MAX_WIDTH)
    flash_attention: Bool = True
    # paged KV cache block (vLLM default 16)
    kv_block_size: Int = Field(default=16, ge=1, le=MAX_TOKENS)
    # tokens per prefill iteration: long prompts run in chunks of this size (chunked prefill,
    # Agrawal et al. 2024 arXiv 2403.02310; TensorRT-LLM max_num_tokens, vLLM
    # max_num_batched_tokens); None = the whole batch of prompts in one pass. Sets the
    # activation workspace; prefill time is the same work either way.
    prefill_chunk_tokens: Int | None = Field(default=None, ge=1,
                                              le=MAX_TOKENS)
    # routed rows of the busiest EP rank over the mean (1 = uniform routing, the default).
    # SGLang's large-scale EP blog (lmsys.org/blog/2025-05-05-large-scale-ep, "Expert
    # Parallelism Load Balancer") defines balancedness = mean / max per-GPU load (this is its
    # inverse) and measures EPLB speeding DeepSeek-V3 up 1.49x (prefill, EP32) and 2.54x
    # (decode, EP72): without a balancer the busiest rank carries up to ~1.5-2.5x the mean
    expert_imbalance: Float = Field(default=1.0, ge=1.0, le=64.0)
    # the recurrent (SSM) state dtype of linear-attention / Mamba layers as the engine's launch
    # option sets it (SGLang --mamba-ssm-dtype, vLLM --mamba-ssm-cache-dtype); None: the
    # engine's rule (engines/<id>.yaml memory.state_dtype, attention_variants.with_state_dtypes)
    ssm_state_dtype: Literal["fp32", "bf16", "fp16"] | None = None
    offload: OffloadConfig | None = None
    speculative: SpeculativeConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _weight_formats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from ..formats import split_weight_dtype, with_kept_16bit

        if isinstance(data.get("weight_dtype"), dict):
            default, formats = split_weight_dtype(data["weight_dtype"])
            data = {**data, "weight_dtype": default,
                    "weight_formats": {**data.get("weight_formats", {}), **formats}}
        elif data.get("weight_formats"):
            split_weight_dtype(data["weight_formats"])  # one-line errors for bad classes
        # a narrow weight dtype: embeddings and LM head at the model dtype unless named
        given = data.get("weight_formats") or {}
        kept = with_kept_16bit(data.get("weight_dtype"), dict(given), MODEL_DTYPE)
        if kept != given:
            data = {**data, "weight_formats": kept}
        return data


class LengthDistribution(Strict):
    """Prompt or output lengths in tokens: ``fixed`` (value), ``uniform`` (min..max,
    inclusive) or ``lognormal`` (mean and coefficient of variation, optionally clipped to
    min..max). A bare integer in YAML means fixed."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    mean: Float | None = Field(default=None, gt=0, le=MAX_TOKENS)
    cv: Float | None = Field(default=None, ge=0)
    min: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    max: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)

    @model_validator(mode="before")
    @classmethod
    def _bare_int(cls, data: Any) -> Any:
        if isinstance(data, bool):
            return data
        if isinstance(data, int):
            return {"kind": "fixed", "value": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "LengthDistribution":
        if self.kind == "fixed" and self.value is None:
            raise SpecError("a fixed length needs 'value' (or write the integer itself)")
        if self.kind == "uniform" and (self.min is None or self.max is None):
            raise SpecError("a uniform length needs 'min' and 'max'")
        if self.kind == "lognormal" and (self.mean is None or self.cv is None):
            raise SpecError("a lognormal length needs 'mean' and 'cv' (coefficient of variation)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SpecError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class ArrivalConfig(Strict):
    """When requests arrive: a Poisson process, a gamma renewal process (``cv`` > 1 is
    burstier than Poisson, < 1 smoother), or a CSV trace (prompt_len,output_len[,arrival_s]);
    a trace without arrival_s gets Poisson arrivals at ``rate_per_s``. ``closed``: a closed
    loop of ``concurrency`` clients, each sending its next request when the last one ends
    (``vllm bench serve --max-concurrency``); a ``trace`` then gives the lengths only."""

    process: Literal["poisson", "gamma", "trace", "closed"] = "poisson"
    rate_per_s: Float | None = Field(default=None, gt=0)
    cv: Float = Field(default=1.0, gt=0)
    trace: str | None = None
    concurrency: Int | None = Field(default=None, ge=1, le=MAX_REQUESTS)

    @model_validator(mode="after")
    def _check(self) -> "ArrivalConfig":
        if self.process == "closed":
            if self.concurrency is None:
                raise SpecError("serving.arrival.concurrency: arrival process 'closed' needs "
                                "concurrency (clients, each with one request in flight)")
            if self.rate_per_s is not None:
                raise SpecError("serving.arrival.rate_per_s: arrival process 'closed' sends a "
                                "request whenever one finishes; remove rate_per_s")
            return self
        if self.concurrency is not None:
            raise SpecError(f"serving.arrival.concurrency: only arrival process 'closed' takes "
                            f"concurrency, not {self.process!r}; set process: closed")
        if self.process == "trace" and not self.trace:
            raise SpecError("arrival process 'trace' needs 'trace' (a CSV path with columns "
                            "prompt_len,output_len[,arrival_s])")
        if self.process != "trace" and self.rate_per_s is None:
            raise SpecError(f"arrival process {self.process!r} needs 'rate_per_s' (requests/s)")
        return self


class SchedulerConfig(Strict):
    """How one serving instance batches work (iteration-level scheduling, Orca / vLLM).

    static: a batch is formed when the instance is idle and runs until its longest request
    ends. continuous: vLLM's default scheduler (prefill-first iterations, paged KV blocks,
    preemption by recompute). chunked: Sarathi-Serve stall-free batching with a per-iteration
    ``token_budget``. disaggregated: DistServe's separate prefill and decode pools
    (``prefill_gpus`` / ``decode_gpus``) with KV transfer. inflight: TensorRT-LLM's in-flight
    batching (every context that fits ``token_budget`` joins the decodes, KV reserved for the
    whole request). prefill_first: SGLang's default (prefill-only batches of up to
    ``token_budget`` tokens before decoding). Unset with a named ``engine``: the engine's own.
    """

    kind: Literal["static", "continuous", "chunked", "disaggregated", "inflight",
                  "prefill_first"] = "continuous"
    max_batch: Int = Field(default=256, ge=1, le=MAX_BATCH)  # vLLM max_num_seqs default
    token_budget: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)  # tokens per iteration
    prefill_gpus: Int | None = Field(default=None, ge=1, le=MAX_GPUS)
    decode_gpus: Int | None = Field(default=None, ge=1, le=MAX_GPUS)
    prefill_tp: Int | None = Field(default=None, ge=1, le=MAX_GPUS)
    decode_tp: Int | None = Field(default=None, ge=1, le=MAX_GPUS)
    kv_transfer: Literal["auto", "intra_node", "inter_node"] = "auto"
    routing: Literal["least_loaded", "round_robin"] = "least_loaded"
    iteration_overhead_s: Float = Field(default=0.0, ge=0)  # CPU/framework time per iteration
    # SGLang --scheduler-recv-interval: new requests are taken in every N decode batches
    # (engine: sglang, kind prefill_first; perfmodel/serving/schedulers.py IntervalReceiver)
    recv_interval: Int = Field(default=1, ge=1, le=100000)


class SLOConfig(Strict):
    """Latency targets: each bounds a percentile over requests (e.g. ttft_p90_s: 90 % of
    requests see their first token within this many seconds). TPOT is a request's mean time
    per output token after the first."""

    ttft_p50_s: Float | None = Field(default=None, gt=0)
    ttft_p90_s: Float | None = Field(default=None, gt=0)
    ttft_p99_s: Float | None = Field(default=None, gt=0)
    tpot_p50_s: Float | None = Field(default=None, gt=0)
    tpot_p90_s: Float | None = Field(default=None, gt=0)
    tpot_p99_s: Float | None = Field(default=None, gt=0)
    e2e_p50_s: Float | None = Field(default=None, gt=0)
    e2e_p90_s: Float | None = Field(default=None, gt=0)
    e2e_p99_s: Float | None = Field(default=None, gt=0)


class BenchmarkClientConfig(Strict):
    """The benchmark client whose measurement a closed loop reports (``clients/<id>.yaml``,
    perfmodel/serving/clients.py): which requests its statistics cover. Window settings
    override the client's defaults (genai-perf --measurement-interval, --stability-percentage;
    perf_analyzer --max-trials)."""

    client: str = "vllm-bench-serve"
    measurement_interval_ms: Float | None = Field(default=None, gt=0)
    stability_percentage: Float | None = Field(default=None, gt=0)
    max_trials: Int | None = Field(default=None, ge=1, le=1000)
    # vllm bench serve --metric-percentiles / --percentile-metrics: the percentiles printed
    # and of which metrics (default: the client's, vLLM's 99 of ttft, tpot, itl)
    metric_percentiles: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        default=None, min_length=1, max_length=10)
    percentile_metrics: list[Literal["ttft", "tpot", "itl", "e2el"]] | None = Field(
        default=None, min_length=1, max_length=4)


class ServingConfig(Strict):
    """A serving workload: request arrivals and lengths, the scheduler, and SLOs. Lengths
    default to the inference section's fixed prompt_len / output_len."""

    arrival: ArrivalConfig
    # default 1000 (a trace: all rows)
    num_requests: Int | None = Field(default=None, ge=1, le=MAX_REQUESTS)
    prompt_len: LengthDistribution | None = None
    output_len: LengthDistribution | None = None
    scheduler: SchedulerConfig = defaults(SchedulerConfig)
    slo: SLOConfig = defaults(SLOConfig)
    seed: Int = Field(default=0, ge=0, le=MAX_SEED)
    # warm-up requests, run as `vllm bench serve --num-warmups` and genai-perf
    # --warmup-request-count run them: a phase of their own before the measured run (clients/
    # <id>.yaml ``warmup: separate_phase``), so all num_requests are measured; default 0
    warmup_requests: Int = Field(default=0, ge=0, le=MAX_REQUESTS)
    # the benchmark client whose measurement rules apply (default: vllm bench serve's)
    benchmark: BenchmarkClientConfig | None = None


EngineName = Literal["generic", "vllm", "sglang", "trtllm", "llamacpp"]
#: the memory-fraction override each engine reads (its own name for it)
ENGINE_FRACTION = {"vllm": "gpu_memory_utilization", "sglang": "mem_fraction_static",
                   "trtllm": "free_gpu_memory_fraction"}


class EngineConfig(Strict):
    """The serving engine and its overrides (``engine: vllm`` or ``engine: {name: vllm,
    gpu_memory_utilization: 0.85}``). ``generic`` is perfmodel's engine-neutral model (today's
    behaviour); the others read the sourced facts of engines/<name>.yaml (docs/engines.md).
    Each override replaces the engine's default of the same name."""

    name: EngineName = "generic"
    # the engine release whose rules apply ("0.7.3", or a main-branch snapshot "0.2.4+pr2031")
    # and its variant (vLLM: "v1" engine core before 0.8); default: the current engine file
    version: str | None = Field(default=None, min_length=1, max_length=40)
    variant: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    gpu_memory_utilization: Float | None = Field(default=None, gt=0, le=1)  # vLLM
    mem_fraction_static: Float | None = Field(default=None, gt=0, le=1)  # SGLang
    free_gpu_memory_fraction: Float | None = Field(default=None, gt=0, le=1)  # TensorRT-LLM
    max_num_seqs: Int | None = Field(default=None, ge=1, le=MAX_BATCH)
    max_num_batched_tokens: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    # context the engine is sized for (vLLM max_model_len, llama.cpp n_ctx); default: the
    # model's max_position_embeddings (llama.cpp: its n_ctx default)
    max_model_len: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    block_size: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    # vLLM --async-scheduling / --no-async-scheduling (engines/vllm*.yaml scheduler.async_scheduling)
    async_scheduling: Bool | None = None
    # how the benchmark client sends prompts: "text" (default; the API server tokenises them:
    # overheads.tokenizer at the model's tokenizer's cost, engines/tokenizers.yaml) or "tokens"
    # (token ids: overheads.token_ids_request_s only; serving.engine.request_path)
    prompt_input: Literal["text", "tokens"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("version", mode="before")
    @classmethod
    def _quoted_version(cls, value: Any) -> Any:
        """A YAML number is refused, not converted: ``version: 0.10`` arrives as 0.1, a
        different release, and no conversion can tell them apart."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise SpecError(f"{value!r} was read as a number (YAML turns 0.10 "
                            "into 0.1); quote the release, e.g. version: '0.10'")
        return value

    @model_validator(mode="after")
    def _check_overrides(self) -> "EngineConfig":
        given = sorted(self.model_fields_set - {"name"})
        if self.name == "generic" and given:
            raise SpecError(f"engine.{given[0]}: the generic engine has no {given[0]}; "
                            "name an engine (vllm, sglang, trtllm, llamacpp)")
        for engine, field in ENGINE_FRACTION.items():
            if field in given and self.name != engine:
                raise SpecError(f"engine.{field} is {engine}'s setting; engine {self.name!r} "
                                + (f"uses {ENGINE_FRACTION[self.name]}"
                                   if self.name in ENGINE_FRACTION else "has no memory fraction"))
        if "async_scheduling" in given and self.name != "vllm":
            raise SpecError(f"engine.async_scheduling is vLLM's setting; engine {self.name!r} has none")
        return self


ALL = frozenset({"*"})  # every field of the section
# The fields each kind of scenario reads, per section; a section missing from a kind's entry is
# not read at all. A field outside this table given with a non-default value is an error.
# Inference and serving run replicas of one TP x PP (x EP) instance: num_gpus / (tp * pp) of
# them (no dp, cp, vp, ...); a serving simulator forms its own batches and prefill chunks.
_INSTANCE = frozenset({"tp", "pp", "ep"})
# MoE layouts of an instance (perfmodel/moe_parallel.py), read by inference and serving alike
_MOE_LAYOUT = frozenset({"attention_dp", "a2a_mode", "redundant_experts", "moe_overlap"})
# uneven layer splits of the pipeline, read by inference and serving alike (the serving
# cost model takes the same split: the largest stage paces it and holds the most weights/KV)
_PIPELINE_SPLIT = frozenset({"uneven_pipeline", "pipeline_layers", "pipeline_split"})
FIELDS_USED: dict[str, dict[str, frozenset[str]]] = {
    "training": {"parallelism": ALL, "training": ALL},
    "inference": {"parallelism": _INSTANCE | _PIPELINE_SPLIT | _MOE_LAYOUT, "inference": ALL},
    "serving": {"parallelism": _INSTANCE | _PIPELINE_SPLIT | _MOE_LAYOUT, "serving": ALL,
                "inference": frozenset(InferenceConfig.model_fields)
                - {"batch", "prefill_chunk_tokens"}},
}
UNUSED_HINTS = {
    ("inference", "parallelism.dp"): " (the GPUs form num_gpus/(tp*pp) replicas)",
    ("serving", "parallelism.dp"): " (the GPUs form num_gpus/(tp*attention_dp*pp) instances)",
    ("serving", "inference.batch"): " (the scheduler forms batches: serving.scheduler.max_batch)",
    ("serving", "inference.prefill_chunk_tokens"):
        " (chunked prefill is serving.scheduler.kind: chunked with token_budget)",
}


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _longest(dist: LengthDistribution | None, fixed: int | None) -> int | None:
    """The longest length a distribution can draw (None: unbounded lognormal)."""
    if dist is None:
        return fixed
    if dist.kind == "fixed":
        return dist.value
    return dist.max


def _checkpoint_defaults(inf: Any, model: Any) -> Any:
    """The inference section with a quantised checkpoint's own formats filled in
    (``ModelSpec.checkpoint_formats`` / ``checkpoint_kv_dtype``, read from its config.json)
    where the user named none: an explicit ``weight_dtype`` / ``kv_dtype`` wins. ``inf`` is
    a mapping or an ``InferenceConfig`` (the fields its builder set count as named), so the
    rule does not depend on how the section was passed."""
    formats = getattr(model, "checkpoint_formats", None)
    kv = getattr(model, "checkpoint_kv_dtype", None)
    if isinstance(inf, InferenceConfig):
        given = inf.model_fields_set
        if (formats and "weight_dtype" not in given) or (kv and "kv_dtype" not in given):
            inf = {name: getattr(inf, name) for name in given}
    if not isinstance(inf, dict):
        return inf
    if formats and "weight_dtype" not in inf:
        inf = {**inf, "weight_dtype": dict(formats)}
    if kv and "kv_dtype" not in inf:
        inf = {**inf, "kv_dtype": kv}
    return inf


#: llama.cpp's quantised weights are GGUF blocks of 32 values with an fp16 scale: Q4_0 18 B
#: (4.5 bits per weight), Q8_0 34 B (8.5 bits); Q4_K's 256-value super-block is 144 B, also
#: 4.5 bits (ggml/src/ggml-common.h block_q4_0 / block_q8_0 / block_q4_K, static_asserts of
#: their sizes). perfmodel's int4 / int8 with a 32-value group and a 2-byte scale are exactly
#: those bytes, so engine llamacpp defaults ``quant_group_size`` to 32 (128 otherwise: GPTQ /
#: AWQ's common group); an explicit quant_group_size wins.
LLAMACPP_QUANT_GROUP = 32
#: the GGUF type llama.cpp's quantiser gives output.weight (the LM head) whatever the file's
#: main type: Q6_K (6.5625 bits) unless that type is Q8_0, which it keeps (src/llama-quant.cpp
#: llama_tensor_get_type: ``else if (new_type != GGML_TYPE_Q8_0) new_type = GGML_TYPE_Q6_K``;
#: a model with tied embeddings gets the same rule for token_embd, which otherwise keeps the
#: file's type). Q6_K is modelled as int8 (8.5 bits at group 32), the nearer of perfmodel's
#: two integer formats (int4 is 4.5 bits). So a plain ``weight_dtype: int4`` / ``int8`` with
#: engine llamacpp names the embeddings at the main type and the LM head int8, instead of the
#: 16-bit ends perfmodel keeps for other engines (formats.with_kept_16bit).
LLAMACPP_HEAD_DTYPE = "int8"


def _engine_name(engine: Any) -> str | None:
    """The engine a raw scenario's ``engine:`` names (a name, a mapping or an EngineConfig)."""
    if isinstance(engine, str):
        return engine
    if isinstance(engine, dict):
        return engine.get("name")
    return getattr(engine, "name", None)


def _llamacpp_defaults(inf: dict, tied: bool) -> dict:
    """The inference section as a GGUF file holds an int4 / int8 model (engine llamacpp):
    ``quant_group_size`` 32 unless given (``LLAMACPP_QUANT_GROUP``), and a plain int4 / int8
    ``weight_dtype`` with the embeddings at that type and the LM head at
    ``LLAMACPP_HEAD_DTYPE`` (both at it when tied)."""
    if "quant_group_size" not in inf:
        inf = {**inf, "quant_group_size": LLAMACPP_QUANT_GROUP}
    w = inf.get("weight_dtype")
    if isinstance(w, str) and w in ("int4", "int8"):
        emb = LLAMACPP_HEAD_DTYPE if tied else w
        inf = {**inf, "weight_dtype": {"default": w, "embeddings": emb,
                                       "lm_head": LLAMACPP_HEAD_DTYPE}}
    return inf


class Scenario(TopLevel):
    """One what-if question. ``model`` accepts a preset id, a path or an inline mapping."""

    kind: Literal["training", "inference", "serving"]
    model: ModelSpec
    system: SystemConfig
    parallelism: Parallelism = defaults(Parallelism)
    training: TrainingConfig | None = None
    inference: InferenceConfig | None = None
    serving: ServingConfig | None = None
    engine: EngineConfig = defaults(EngineConfig)  # inference / serving engine (default: generic)
    calibration: str | None = None  # profile path; default: the device's reference profile
    name: str | None = None
    description: str | None = None
    base_dir: str | None = Field(default=None, exclude=True)  # for relative paths
    # model sequences longer than the model's context (max_position_embeddings), e.g. a
    # context-extension run; without it such a sequence is an error
    allow_beyond_context: Bool = False

    @model_validator(mode="before")
    @classmethod
    def _resolve_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("model"), ModelSpec):
            from ..zoo import resolve_model

            base = Path(data["base_dir"]) if data.get("base_dir") else None
            if "model" in data:
                data = {**data, "model": resolve_model(data["model"], base_dir=base)}
        if isinstance(data, dict) and isinstance(data.get("parallelism"), dict):
            data = {**data, "parallelism": _resolve_redundant_experts(data["parallelism"],
                                                                      data.get("model"))}
        if isinstance(data, dict) and data.get("inference") is not None:
            inf = _checkpoint_defaults(data["inference"], data.get("model"))
            if isinstance(inf, dict) and _engine_name(data.get("engine")) == "llamacpp":
                inf = _llamacpp_defaults(inf, getattr(data.get("model"), "tie_embeddings",
                                                      False))
            if isinstance(inf, dict) and getattr(data.get("model"), "tie_embeddings", False):
                from ..formats import tie_named_formats  # one tensor, one format

                inf = {**inf, **{key: tie_named_formats(inf[key], True, f"inference.{key}")
                                 for key in ("weight_dtype", "weight_formats") if key in inf}}
            data = {**data, "inference": inf}
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> "Scenario":
        if self.kind == "training" and self.training is None:
            raise SpecError("kind 'training' needs a 'training' section "
                            "(seq_len, global_batch, ...)")
        if self.kind == "inference" and self.inference is None:
            raise SpecError("kind 'inference' needs an 'inference' section "
                            "(batch, prompt_len, output_len, ...)")
        if self.kind == "serving" and self.serving is None:
            raise SpecError("kind 'serving' needs a 'serving' section (arrival, scheduler, "
                            "slo, prompt_len, output_len, ...)")
        if self.kind == "training" and self.engine.name != "generic":
            raise SpecError(f"engine: {self.engine.name!r} is an inference engine; a training "
                            "scenario does not use it (remove engine)")
        self._check_unused_fields()
        if not self.allow_beyond_context:
            self._check_context()
        return self

    def _check_unused_fields(self) -> None:
        """A field the scenario's kind does not read (``FIELDS_USED``) is an error when it is
        given with a value other than its default: it would be silently ignored."""
        used = FIELDS_USED[self.kind]
        for section in ("parallelism", "training", "inference", "serving"):
            value = getattr(self, section)
            if value is None or section not in self.model_fields_set:
                continue
            if section not in used:
                raise SpecError(f"{section}: {_a(self.kind)} scenario has no {section!r} "
                                f"section; remove it (or set kind: {section})")
            if used[section] is ALL:
                continue
            for name in sorted(value.model_fields_set - used[section]):
                field = type(value).model_fields[name]
                if getattr(value, name) != field.default:
                    hint = UNUSED_HINTS.get((self.kind, f"{section}.{name}"), "")
                    raise SpecError(f"{section}.{name}: {_a(self.kind)} scenario does not "
                                    f"use this field{hint}; remove it")

    def _check_context(self) -> None:
        """Sequences longer than the model's context are an error (``allow_beyond_context``
        models them anyway). A request of p prompt and o output tokens puts p + o - 1
        positions through the model (the last token is sampled, never fed back)."""
        limit = self.model.max_position_embeddings
        where, length = None, 0
        if self.kind == "training" and self.training is not None:
            where, length = "training.seq_len", self.training.seq_len
        elif self.kind == "inference" and self.inference is not None:
            where = "inference.prompt_len + inference.output_len - 1"
            length = self.inference.prompt_len + self.inference.output_len - 1
        elif self.kind == "serving" and self.serving is not None:
            inf = self.inference
            prompt = _longest(self.serving.prompt_len, inf.prompt_len if inf else None)
            output = _longest(self.serving.output_len, inf.output_len if inf else None)
            if prompt is not None and output is not None:
                where, length = "the longest prompt + output - 1 of serving", prompt + output - 1
        if where and length > limit:
            raise SpecError(
                f"{where} = {length} tokens exceeds the context of model {self.model.id!r} "
                f"({limit} tokens, max_position_embeddings); shorten it, or set "
                "allow_beyond_context: true to model it anyway")

    def inference_or_default(self) -> InferenceConfig:
        """The inference section, or for a scenario without one (serving may omit it) the
        defaults with the checkpoint's own formats (``_checkpoint_defaults``); its prompt_len
        1 is a placeholder: serving lengths come from the serving section."""
        if self.inference is not None:
            return self.inference
        return InferenceConfig.model_validate(
            _checkpoint_defaults({"prompt_len": 1}, self.model))

    def calibration_path(self) -> Path | None:
        if not self.calibration:
            return None
        path = Path(self.calibration)
        if not path.is_absolute() and self.base_dir:
            path = Path(self.base_dir) / path
        return path
