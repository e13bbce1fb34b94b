"""The user-facing scenario: model x system x parallel plan x workload (DESIGN.md format).

Scenarios are built in code (``Scenario(kind="training", model="llama-3-8b", ...)``) or read
from YAML (``specs.assemble.load_scenario(path)``). Ids are resolved and validated here, at the
edge, so the core only ever sees complete, consistent specs. A model id or path is resolved by
the zoo when a scenario is validated (imported then, not when this module is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..dtypes import DType
from ..errors import SpecError
from .common import Strict
from .model import ModelSpec

TrainPrecision = Literal["fp32", "tf32", "fp16", "bf16", "fp8"]


class SystemConfig(Strict):
    """Which GPUs and how they are wired. Unset fields come from the device's default node."""

    device: str
    num_gpus: int = Field(default=1, ge=1)
    node: str | None = None  # node preset id (hardware_specs/nodes)
    gpus_per_node: int | None = Field(default=None, ge=1)
    intra_node: str | None = None  # interconnect id
    inter_node: str | None = None  # interconnect id, optionally "xN" for N NICs per node
    nics_per_node: int | None = Field(default=None, ge=0)
    # rail-optimised fabric: NIC i of every node on leaf switch i, so same-index GPUs are one
    # switch hop apart; otherwise their traffic crosses the spine (leaf-spine-leaf)
    rail_optimized: bool = True


class Parallelism(Strict):
    """How work is split (Narayanan et al. 2021 notation: t, p, d; plus CP, EP, VP).

    ``dp`` may be omitted: it is then num_gpus / (tp * pp * cp). Expert parallelism divides the
    data-parallel ranks of MoE layers (Megatron-Core convention: ep divides dp * cp).
    """

    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    dp: int | None = Field(default=None, ge=1)
    cp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    etp: int | None = Field(default=None, ge=1)  # expert tensor parallel (default: tp)
    vp: int = Field(default=1, ge=1)  # virtual pipeline stages per rank (interleaved 1F1B)
    sequence_parallel: bool = False
    zero_stage: Literal[0, 1, 2, 3] = 0  # 1 = Megatron's distributed optimizer
    schedule: Literal["1f1b", "gpipe", "interleaved"] | None = None  # default: by vp
    placement: str = "tp-cp-ep-dp-pp"  # rank order, innermost first (Megatron default)
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    tp_comm_overlap: bool = False
    # allow num_layers not divisible by pp*vp: layers spread as evenly as possible (torchtitan,
    # DeepSpeed); the largest stage bounds the pipeline
    uneven_pipeline: bool = False
    # parameters per data-parallel collective: gradient buckets (default 40M, Megatron's DDP
    # bucket) or ZeRO-3 gather units (default one transformer layer, FSDP's wrapping; DeepSpeed
    # ZeRO-3 prefetches buckets of stage3_prefetch_bucket_size = 5e7)
    dp_bucket_params: float | None = Field(default=None, gt=0)
    # ZeRO-3 / FSDP: free gathered weights after each forward (re-gather per micro-batch). None:
    # yes without pipeline parallelism, no with it (torchtitan's default: per-micro-batch
    # gathers under PP are expensive and not overlapped)
    reshard_after_forward: bool | None = None

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
    seq_len: int = Field(ge=1)
    global_batch: int = Field(ge=1)  # sequences per optimizer step
    micro_batch: int = Field(default=1, ge=1)
    precision: TrainPrecision = "bf16"
    # selective: attention core (Korthikanti 2022); op: torchtitan's per-op policy (see
    # perfmodel/recompute.py); full: whole layers
    recompute: Literal["none", "selective", "full", "op"] = "selective"
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    flash_attention: bool = True
    dropout: bool = False  # Megatron-era GPTs used dropout 0.1 (masks cost activation memory)
    grad_reduce_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # Megatron default: fp32
    master_weights: bool = True  # fp32 master copy with 16-bit training (mixed precision)
    causal: bool = True


class OffloadConfig(Strict):
    """Keep part of the weights and/or KV cache in host memory (or on NVMe) and stream it to
    the GPU for every pass (FlexGen, Sheng et al. 2023 arXiv 2303.06865; ZeRO-Inference)."""

    weights: float = Field(default=0.0, ge=0, le=1)  # fraction of the weights off the GPU
    kv_cache: float = Field(default=0.0, ge=0, le=1)  # fraction of the KV cache off the GPU
    target: Literal["cpu", "nvme"] = "cpu"
    overlap: bool = True  # prefetch the next layer's data while the current one computes


class SpeculativeConfig(Strict):
    """Speculative decoding (Leviathan et al. 2023 arXiv 2211.17192): a draft model proposes
    ``num_tokens`` tokens, the target verifies them in one pass; each is accepted with
    probability ``acceptance_rate`` (i.i.d., the paper's alpha)."""

    draft_model: ModelSpec
    num_tokens: int = Field(default=4, ge=1, le=64)
    acceptance_rate: float = Field(default=0.7, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _resolve_draft(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("draft_model"), ModelSpec) \
                and "draft_model" in data:
            from ..zoo import resolve_model

            data = {**data, "draft_model": resolve_model(data["draft_model"])}
        return data


class InferenceConfig(Strict):
    batch: int = Field(default=1, ge=1)
    prompt_len: int = Field(ge=1)
    output_len: int = Field(default=1, ge=1)
    weight_dtype: DType = "bf16"
    activation_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8"] = "bf16"
    kv_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"] = "bf16"
    quant_group_size: int = Field(default=128, ge=1)
    flash_attention: bool = True
    kv_block_size: int = Field(default=16, ge=1)  # paged KV cache block (vLLM default 16)
    # tokens per prefill iteration: long prompts run in chunks of this size (chunked prefill,
    # Agrawal et al. 2024 arXiv 2403.02310; TensorRT-LLM max_num_tokens, vLLM
    # max_num_batched_tokens); None = the whole batch of prompts in one pass. Sets the
    # activation workspace; prefill time is the same work either way.
    prefill_chunk_tokens: int | None = Field(default=None, ge=1)
    offload: OffloadConfig | None = None
    speculative: SpeculativeConfig | None = None


class LengthDistribution(Strict):
    """Prompt or output lengths in tokens: ``fixed`` (value), ``uniform`` (min..max,
    inclusive) or ``lognormal`` (mean and coefficient of variation, optionally clipped to
    min..max). A bare integer in YAML means fixed."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value: int | None = Field(default=None, ge=1)
    mean: float | None = Field(default=None, gt=0)
    cv: float | None = Field(default=None, ge=0)
    min: int | None = Field(default=None, ge=1)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_int(cls, data: Any) -> Any:
        if isinstance(data, bool):
            return data
        if isinstance(data, int):
            return {"kind": "fixed", "value": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> LengthDistribution:
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
    a trace without arrival_s gets Poisson arrivals at ``rate_per_s``."""

    process: Literal["poisson", "gamma", "trace"] = "poisson"
    rate_per_s: float | None = Field(default=None, gt=0)
    cv: float = Field(default=1.0, gt=0)
    trace: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ArrivalConfig:
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
    (``prefill_gpus`` / ``decode_gpus``) with KV transfer.
    """

    kind: Literal["static", "continuous", "chunked", "disaggregated"] = "continuous"
    max_batch: int = Field(default=256, ge=1)  # vLLM max_num_seqs default
    token_budget: int | None = Field(default=None, ge=1)  # tokens per iteration
    prefill_gpus: int | None = Field(default=None, ge=1)
    decode_gpus: int | None = Field(default=None, ge=1)
    prefill_tp: int | None = Field(default=None, ge=1)
    decode_tp: int | None = Field(default=None, ge=1)
    kv_transfer: Literal["auto", "intra_node", "inter_node"] = "auto"
    routing: Literal["least_loaded", "round_robin"] = "least_loaded"
    iteration_overhead_s: float = Field(default=0.0, ge=0)  # CPU/framework time per iteration


class SLOConfig(Strict):
    """Latency targets: each bounds a percentile over requests (e.g. ttft_p90_s: 90 % of
    requests see their first token within this many seconds). TPOT is a request's mean time
    per output token after the first."""

    ttft_p50_s: float | None = Field(default=None, gt=0)
    ttft_p90_s: float | None = Field(default=None, gt=0)
    ttft_p99_s: float | None = Field(default=None, gt=0)
    tpot_p50_s: float | None = Field(default=None, gt=0)
    tpot_p90_s: float | None = Field(default=None, gt=0)
    tpot_p99_s: float | None = Field(default=None, gt=0)
    e2e_p50_s: float | None = Field(default=None, gt=0)
    e2e_p90_s: float | None = Field(default=None, gt=0)
    e2e_p99_s: float | None = Field(default=None, gt=0)


class ServingConfig(Strict):
    """A serving workload: request arrivals and lengths, the scheduler, and SLOs. Lengths
    default to the inference section's fixed prompt_len / output_len."""

    arrival: ArrivalConfig
    num_requests: int | None = Field(default=None, ge=1)  # default 1000 (a trace: all rows)
    prompt_len: LengthDistribution | None = None
    output_len: LengthDistribution | None = None
    scheduler: SchedulerConfig = SchedulerConfig()
    slo: SLOConfig = SLOConfig()
    seed: int = 0


class Scenario(Strict):
    """One what-if question. ``model`` accepts a preset id, a path or an inline mapping."""

    kind: Literal["training", "inference", "serving"]
    model: ModelSpec
    system: SystemConfig
    parallelism: Parallelism = Parallelism()
    training: TrainingConfig | None = None
    inference: InferenceConfig | None = None
    serving: ServingConfig | None = None
    calibration: str | None = None  # profile path; default: the device's reference profile
    name: str | None = None
    description: str | None = None
    base_dir: str | None = Field(default=None, exclude=True)  # for relative paths

    @model_validator(mode="before")
    @classmethod
    def _resolve_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("model"), ModelSpec):
            from ..zoo import resolve_model

            base = Path(data["base_dir"]) if data.get("base_dir") else None
            if "model" in data:
                data = {**data, "model": resolve_model(data["model"], base_dir=base)}
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> Scenario:
        if self.kind == "training" and self.training is None:
            raise SpecError("kind 'training' needs a 'training' section "
                            "(seq_len, global_batch, ...)")
        if self.kind == "inference" and self.inference is None:
            raise SpecError("kind 'inference' needs an 'inference' section "
                            "(batch, prompt_len, output_len, ...)")
        if self.kind == "serving" and self.serving is None:
            raise SpecError("kind 'serving' needs a 'serving' section (arrival, scheduler, "
                            "slo, prompt_len, output_len, ...)")
        return self

    def calibration_path(self) -> Path | None:
        if not self.calibration:
            return None
        path = Path(self.calibration)
        if not path.is_absolute() and self.base_dir:
            path = Path(self.base_dir) / path
        return path
