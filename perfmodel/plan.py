"""Parallel plans as the core sees them, and the rules a plan must satisfy.

A plan's numeric dimensions (tp, pp, dp, cp, ep, vp, micro-batch, ...) may be numpy arrays:
one code path evaluates a single scenario or a grid of millions of plans. Categorical choices
(schedule, recompute, ZeRO stage, precision) are plain values, looped over outside.

The rules are written once, as vectorised predicates with a message each: a scenario raises
the first violated rule's message; a plan search keeps the rows where all rules hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import ops as O
from .errors import SpecError
from .frameworks import FRAMEWORK_NAMES, framework_spec, resolve_framework
from .specs.model import ModelSpec
from .specs.scenario import Scenario

Array = Any


@dataclass(frozen=True)
class TrainPlan:
    tp: Array
    pp: Array
    dp: Array
    cp: Array
    ep: Array
    etp: Array
    vp: Array
    micro_batch: Array
    seq_len: Array
    global_batch: Array
    sequence_parallel: bool = False
    zero_stage: int = 0
    schedule: str = "1f1b"
    recompute: str = "selective"
    precision: str = "bf16"
    optimizer: str = "adam"
    flash_attention: bool = True
    dropout: bool = False
    grad_dtype: str = "fp32"
    master_weights: bool = True
    placement: str = "tp-cp-ep-dp-pp"
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    tp_comm_overlap: bool = False
    # the framework's EP all-to-all overlap (frameworks/<id>.yaml moe_a2a_overlap); a bool, or a
    # boolean array over a plan search's cells
    moe_a2a_overlap: Any = False
    recompute_modules: tuple[str, ...] | None = None  # selective: Megatron-Core's modules
    causal: bool = True
    uneven_pp: bool = False
    dp_bucket_params: float | None = None
    # ZeRO-3 / FSDP resharding after forward; None: derived from this plan's own pp (see
    # ``resharded``), so a plan copied with another pp does not inherit a stale choice
    reshard_after_forward: bool | None = True
    framework: Any = None  # frameworks.Framework; None becomes megatron-core (the baseline)

    def __post_init__(self) -> None:
        """No framework is megatron-core, perfmodel's baseline, resolved here once so that
        every reader of ``framework`` sees the same facts (a plan built without one predicts
        what a megatron-core plan does)."""
        if self.framework is None:
            object.__setattr__(self, "framework", resolve_framework(None))

    @property
    def num_gpus(self) -> Array:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def num_microbatches(self) -> Array:
        return self.global_batch / (self.dp * self.micro_batch)

    @classmethod
    def from_scenario(cls, sc: Scenario) -> TrainPlan:
        """The scenario's plan; a training precision its device cannot run is refused here
        (``check_training_precision``), the one door predict, search and the API share."""
        p, t = sc.parallelism, sc.training
        assert t is not None
        check_training_precision(sc.system.device, t.precision)
        # an unset dp takes the remaining GPUs (a fraction here is reported by the rules)
        dp = p.dp if p.dp is not None else sc.system.num_gpus / (p.tp * p.pp * p.cp)
        dp = int(dp) if float(dp).is_integer() else dp
        return cls(
            tp=p.tp, pp=p.pp, dp=dp, cp=p.cp, ep=p.ep, etp=p.etp or p.tp, vp=p.vp,
            micro_batch=t.micro_batch, seq_len=t.seq_len, global_batch=t.global_batch,
            sequence_parallel=p.sequence_parallel, zero_stage=p.zero_stage, schedule=p.resolved_schedule,
            recompute=t.recompute, precision=t.precision, optimizer=t.optimizer,
            flash_attention=t.flash_attention, dropout=t.dropout, grad_dtype=t.grad_reduce_dtype,
            master_weights=t.master_weights, placement=p.placement,
            overlap_grad_reduce=p.overlap_grad_reduce,
            overlap_param_gather=p.overlap_param_gather, tp_comm_overlap=p.tp_comm_overlap,
            moe_a2a_overlap=p.moe_a2a_overlap,
            recompute_modules=tuple(t.recompute_modules) if t.recompute_modules else None,
            causal=t.causal, uneven_pp=p.uneven_pipeline, dp_bucket_params=p.dp_bucket_params,
            reshard_after_forward=p.reshard_after_forward,
            framework=resolve_framework(t.framework),
        )

    @property
    def resharded(self) -> bool:
        """Whether ZeRO-3 frees gathered weights after forward: as set, else yes without
        pipeline parallelism and, with it, what the framework's ZeRO-3 does under pipeline
        parallelism (``capabilities.zero_stages[3].reshard_under_pp`` of frameworks/<id>.yaml:
        Megatron-FSDP re-gathers every micro-batch; torchtitan's FSDP2 under
        torch.distributed.pipelining keeps parameters and gradients unsharded until the step's
        last backward), per plan."""
        if self.reshard_after_forward is not None:
            return bool(self.reshard_after_forward)
        pp = np.asarray(self.pp)
        if np.all(pp == 1):
            return True
        if np.all(pp > 1):
            return stage_3_reshards_under_pp(self.framework)
        raise SpecError("parallelism.reshard_after_forward: a sweep mixing pp = 1 and pp > 1 "
                        "must set it explicitly (true or false)")

#: why a device without fp8 tensor cores cannot train in fp8: the fp8 GEMMs of every training
#: stack need them, and they refuse to run rather than fall back. Transformer Engine (Megatron-Core,
#: NeMo, DeepSpeed's fp8): transformer_engine/pytorch/quantization.py check_fp8_support "Device
#: compute capability 8.9 or higher required for FP8 execution." (NVIDIA/TransformerEngine
#: @d0067d0d; fp8.py in earlier releases); torchao float8 (torchtitan) runs torch._scaled_mm,
#: which needs compute capability 8.9+ (or MI300+). A device has them when its
#: ``peak_tflops.fp8`` is non-null (``formats.native_formats``). Inference is another fact: the
#: engines run fp8 weights weight-only there (W8A16 Marlin; engines/<id>.yaml
#: ``quantization.formats.fp8.without_tensor_cores``), so fp8 inference is not refused here.
NO_FP8_TRAINING = ("no fp8 tensor cores (peak_tflops.fp8 is null; Transformer Engine needs "
                   "compute capability 8.9+)")
#: why a device without bf16 tensor cores (V100, T4: bf16 arrived with Ampere) does not train in
#: bf16: PyTorch autocast refuses it on CUDA devices of compute capability < 8.0
#: (torch.cuda.is_bf16_supported() is False there; torch/amp/autocast_mode.py: "Current CUDA
#: Device does not support bfloat16. Please switch dtype to float16."), so mixed precision runs
#: fp16 with loss scaling there (Micikevicius et al. 2018, arXiv 1710.03740)
NO_BF16_TRAINING = ("no bf16 tensor cores (peak_tflops.bf16 is null; bf16 needs compute "
                    "capability 8.0+)")


#: why a device cannot train in MXFP8 / NVFP4 (Transformer Engine's MXFP8BlockScaling /
#: NVFP4BlockScaling; frameworks/_common.yaml block_scaled_recipes): their GEMMs need tensor cores
#: that take per-block scales, Blackwell's (PTX ISA tcgen05.mma .kind::mxf8f6f4 / .kind::mxf4nvf4
#: with .block_scale, sm_100a+) or CDNA 4's (scaled MFMA F8F6F4). A device has them when it has
#: fp4 tensor cores for the format (``formats.native_formats``: MXFP8 with the e8m0-per-32 MX
#: layout, ``mxfp4`` in ``fp4_formats``; NVFP4 with ``nvfp4``). Transformer Engine's own checks
#: (transformer_engine/pytorch/quantization.py:162-175 @d0067d0da6cb): "Device compute
#: capability 10.0 or higher required for MXFP8 execution" / "... for NVFP4 execution", and
#: "MXFP8 (for all gemm layouts) is not supported on 12.0+ architectures yet" (consumer
#: Blackwell: NO_MXFP8_SM12). AMD: ROCm Transformer Engine runs MXFP8 on MI355X (AMD-AGI/Primus
#: docs/03-configuration-reference/environment-variables.md:140 NVTE_ROCM_ENABLE_MXFP8, and its
#: MI355X llama3.1_8B-MXFP8-pretrain config @fd1eeabbad15); MI355X's fp4 is MXFP4 only, no NVFP4.
NO_BLOCK_SCALED_TRAINING = {
    "mxfp8": "no MX block-scaled tensor cores (Transformer Engine: compute capability 10.x, "
             "Blackwell; or CDNA 4)",
    "nvfp4": "no NVFP4 tensor cores (Transformer Engine: compute capability 10.0+, Blackwell)",
}
NO_MXFP8_SM12 = ("Transformer Engine runs MXFP8 on compute capability 10.x only ('not "
                 "supported on 12.0+ architectures yet')")


def _block_scaled_problem(device, precision: str) -> str | None:
    """``training_precision_problem`` for mxfp8 / nvfp4 (NO_BLOCK_SCALED_TRAINING)."""
    from .formats import native_formats

    native = native_formats(device)
    if precision == "nvfp4":
        return None if "nvfp4" in native else NO_BLOCK_SCALED_TRAINING["nvfp4"]
    if "mxfp4" not in native:
        return NO_BLOCK_SCALED_TRAINING["mxfp8"]
    cc = str(device.compute_capability or "")
    major = cc.split(".", 1)[0]
    return NO_MXFP8_SM12 if major.isdigit() and int(major) >= 12 else None


def training_precision_problem(device, precision: str) -> str | None:
    """Why ``device`` (a DeviceSpec or its id) cannot train at ``precision`` (fp8 without fp8
    tensor cores, bf16 without bf16 ones), else None: the one rule behind ``check_training_precision`` (predict, search, the API) and plan-training's
    per-device skip (``planning.training.precision_skip``)."""
    from .formats import native_formats

    if precision not in ("fp8", "bf16", "mxfp8", "nvfp4"):
        return None
    if isinstance(device, str):
        from .specs.registry import get_device

        device = get_device(device)
    if not device.supported_dtypes():  # no sourced peak at all: DeviceSpec.peak_flops says so
        return None
    if precision in NO_BLOCK_SCALED_TRAINING:
        return _block_scaled_problem(device, precision)
    if precision == "bf16":
        return None if device.peak_tflops.get("bf16") else NO_BF16_TRAINING
    return None if "fp8" in native_formats(device) else NO_FP8_TRAINING


def training_precisions(device) -> list[str]:
    """The mixed precisions ``device`` (a DeviceSpec) trains in, widest first: bf16 / fp16
    where it has those tensor cores (fp32 where neither), fp8 where it has fp8 ones, and mxfp8
    / nvfp4 where it has block-scaled ones (``NO_BLOCK_SCALED_TRAINING``)."""
    wide = [f for f in ("bf16", "fp16") if device.peak_tflops.get(f)] or ["fp32"]
    return wide + [p for p in ("fp8", "mxfp8", "nvfp4")
                   if training_precision_problem(device, p) is None]


def fp8_training_devices(precision: str = "fp8") -> list[str]:
    """Ids of the shipped devices that can train at ``precision`` (fp8, mxfp8, nvfp4; read on
    the error path only)."""
    from .specs.registry import devices, get_device

    # a device with no sourced peak is not judged (``training_precision_problem``) nor offered
    return [d for d in devices() if get_device(d).supported_dtypes()
            and training_precision_problem(get_device(d), precision) is None]


def check_training_precision(device, precision: str) -> None:
    """One SpecError naming training.precision when ``device`` cannot train at ``precision``
    (``training_precision_problem``), with what would be valid."""
    why = training_precision_problem(device, precision)
    if why is None:
        return
    if isinstance(device, str):
        from .specs.registry import get_device

        device = get_device(device)
    valid = [p for p in training_precisions(device) if p != precision]
    other = (f", or an {precision}-capable device "
             f"({', '.join(fp8_training_devices(precision))})"
             if precision in ("fp8", "mxfp8", "nvfp4") else "")
    raise SpecError(f"training.precision: {precision} on {device.id}: {why}; use "
                    f"{' or '.join(valid)} on {device.id}{other}")


@dataclass(frozen=True)
class InferPlan:
    """A batch of requests on replicas of a TP x PP (x EP) instance; numeric fields may be
    arrays (a sweep), like TrainPlan."""

    tp: Array
    pp: Array
    replicas: Array  # independent model copies (data parallel)
    batch: Array
    prompt_len: Array
    output_len: Array
    weight_dtype: str = "bf16"
    activation_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    # the scenario named 16-bit activations itself: narrow weights run weight-only (W8A16 /
    # W4A16), not the native narrow GEMM engines choose unasked (ops.Precision.inference)
    weight_only: bool = False
    group_size: int = 128
    flash_attention: bool = True
    kv_block_size: int = 16  # tokens per paged KV block (vLLM's default)
    # layers per pipeline stage of an uneven split (pipeline.stage_partition); None: L / pp
    pp_layers: tuple[int, ...] | None = None
    ep: Array = 1
    offload_weights: float = 0.0  # fraction of weights streamed from host memory / NVMe
    offload_kv: float = 0.0  # fraction of the KV cache kept off the GPU
    offload_overlap: bool = True
    spec_tokens: int = 0  # speculative decoding: draft tokens per iteration (0 = off)
    spec_acceptance: float = 0.0
    prefill_chunk: float | None = None  # tokens per prefill iteration (None: all at once)
    # DP attention (moe_parallel.py): attention_dp groups of tp GPUs, each with batch /
    # attention_dp of the requests; MoE layers over all tp * attention_dp GPUs as ep groups
    attention_dp: Array = 1
    a2a_mode: str = "auto"  # DeepEP kernels: auto | low_latency | normal
    moe_overlap: str = "none"  # none | two_batch (moe_parallel.two_batch_layer)
    expert_imbalance: float = 1.0  # busiest EP rank's routed rows over the mean
    redundant_experts: int = 0  # EPLB's extra expert replicas, spread over the EP ranks
    # per-tensor weight formats overriding weight_dtype: (class, dtype) pairs (perfmodel.formats)
    weight_formats: tuple[tuple[str, str], ...] = ()
    # whose TP all-reduce runs (engine_comm): "generic" = NCCL; vllm / sglang / trtllm their
    # own kernel below its size limit
    tp_all_reduce: str = "generic"
    # the engine release and variant whose kernel facts apply (engines.engine_facts; None:
    # the current engine file)
    engine_version: str | None = None
    engine_variant: str | None = None

    @property
    def instance_gpus(self) -> Array:
        """GPUs of one model instance (replica)."""
        return self.tp * self.attention_dp * self.pp

    @property
    def precision(self) -> O.Precision:
        return O.Precision.inference(self.weight_dtype, self.activation_dtype, self.kv_dtype,
                                     self.group_size, self.weight_formats)

    def precision_on(self, device) -> O.Precision:
        """``precision`` on ``device``: fp8 / nvfp4 weights run its fp8 / fp4 tensor cores when
        it has them, activations of a format it lacks run at 16 bits (``ops.Precision.inference``,
        ``native``)."""
        from .formats import native_formats, wide_activation

        return O.Precision.inference(self.weight_dtype, self.activation_dtype, self.kv_dtype,
                                     self.group_size, self.weight_formats,
                                     native=native_formats(device),
                                     weight_only=self.weight_only,
                                     wide=wide_activation(device))


def expert_tp(plan: InferPlan) -> Array:
    """Inference spreads experts over the instance's tp * attention_dp GPUs of a stage: ep
    groups of tp * attention_dp / ep GPUs, each group holding E/ep experts split that many
    ways (vLLM / TensorRT-LLM MoE TP x EP; with attention_dp = 1, over the TP ranks)."""
    return np.asarray(plan.tp) * np.asarray(plan.attention_dp) / np.asarray(plan.ep)


@dataclass(frozen=True)
class Rule:
    """A vectorised predicate (True = valid) and the message when it fails. ``per_stage``:
    the rule reads the ZeRO stage (the framework's capabilities), which a plan search tries
    as a categorical choice, so it evaluates these per stage (``capability_mask``)."""

    field: str
    ok: Callable[..., Array]
    message: Callable[..., str]
    per_stage: bool = False


def _capabilities(plan):
    """The capabilities block of the plan's framework."""
    return plan.framework.spec.capabilities, plan.framework.id


def stage_3_reshards_under_pp(framework) -> bool:
    """Whether the framework's ZeRO-3 re-gathers parameters every micro-batch under pipeline
    parallelism (frameworks/<id>.yaml capabilities; a framework without ZeRO-3 under pp:
    True, and the capability rules refuse the plan)."""
    fw = framework if framework is not None else resolve_framework(None)
    stage = fw.spec.capabilities.zero_stages.get(3)
    return True if stage is None or stage.reshard_under_pp is None else stage.reshard_under_pp


def _stage_table(plan, attr: str) -> Array:
    """Per plan cell, the capability ``attr`` (offered / pp / vp / ep / sole_dimension) of its ZeRO
    stage."""
    caps, _ = _capabilities(plan)
    table = np.zeros(4, bool)
    for z, stage in caps.zero_stages.items():
        table[z] = True if attr == "offered" else bool(getattr(stage, attr))
    return table[np.clip(np.asarray(plan.zero_stage).astype(int), 0, 3)]


def _stages_where(plan, attr: str, value: bool = True) -> str:
    caps, _ = _capabilities(plan)
    keep = [f"{z} ({s.setting})" for z, s in sorted(caps.zero_stages.items())
            if attr == "offered" or bool(getattr(s, attr)) == value]
    return ", ".join(keep) or "none"


def _stage_note(plan, field: str = "limits", template: str = " ({})") -> str:
    """The plan's ZeRO stage's ``field`` note (limits / ep_limits / moe_limits, sourced in
    frameworks/<id>.yaml) in ``template`` for a refusal; "" when the stage states none."""
    caps, _ = _capabilities(plan)
    stage = caps.zero_stages.get(int(plan.zero_stage))
    note = getattr(stage, field) if stage is not None else None
    return template.format(note) if note else ""


def capability_rules(model: ModelSpec | None = None) -> list[Rule]:
    """What the plan's training framework can run (frameworks/<id>.yaml ``capabilities``,
    sourced from each framework's code): its ZeRO stages, and which of them run with pipeline
    parallelism, with the interleaved schedule, with expert parallelism and with ``model``
    if it is a mixture of experts (None: no such rule)."""
    moe = model is not None and model.moe is not None
    return [
        Rule("parallelism.zero_stage", lambda p: _stage_table(p, "offered"),
             lambda p: f"{_capabilities(p)[1]} has no ZeRO stage {p.zero_stage}; valid "
                       f"zero_stage: {_stages_where(p, 'offered')}", per_stage=True),
        Rule("parallelism.pp", lambda p: (np.asarray(p.pp) == 1) | _stage_table(p, "pp"),
             lambda p: f"{_capabilities(p)[1]} runs zero_stage {p.zero_stage} without "
                       f"pipeline parallelism only{_stage_note(p)}; with pp = {p.pp} valid "
                       f"zero_stage: {_stages_where(p, 'pp')}; or pp: 1", per_stage=True),
        Rule("parallelism.vp", lambda p: (np.asarray(p.vp) == 1) | _stage_table(p, "vp"),
             lambda p: f"{_capabilities(p)[1]} has no interleaved schedule (vp > 1) with "
                       f"zero_stage {p.zero_stage}{_stage_note(p)}; valid with vp = {p.vp}: "
                       f"zero_stage {_stages_where(p, 'vp')}; or vp: 1", per_stage=True),
        Rule("parallelism.dp",
             lambda p: (~_stage_table(p, "sole_dimension")) | (np.asarray(p.dp) == 1)
                       | ((np.asarray(p.tp) == 1) & (np.asarray(p.cp) == 1)
                          & (np.asarray(p.pp) == 1)),
             lambda p: f"{_capabilities(p)[1]} runs zero_stage {p.zero_stage} only with data "
                       f"parallelism as the one parallel dimension{_stage_note(p)}; "
                       f"with dp = {p.dp} "
                       f"beside tp / cp / pp > 1 valid zero_stage: "
                       f"{_stages_where(p, 'sole_dimension', False)}; or dp: 1", per_stage=True),
        # a framework whose code has no context parallelism (cp.implementation: none, sourced
        # in its file) runs none; a scenario's cp_implementation asks what one would cost
        Rule("parallelism.cp",
             lambda p: (np.asarray(p.cp) == 1) | (p.framework.cp_implementation != "none"),
             lambda p: f"{_capabilities(p)[1]} has no context parallelism (frameworks/"
                       f"{_capabilities(p)[1]}.yaml cp.implementation: none, source "
                       f"{p.framework.spec.cp.source}); valid: cp: 1, or training.framework."
                       f"cp_implementation (p2p_ring, allgather, a2a) to price one it does "
                       f"not have"),
        # before the ep rule: a stage that runs no MoE model is not fixed by ep: 1
        Rule("parallelism.zero_stage", lambda p: (not moe) | _stage_table(p, "moe"),
             lambda p: f"{_capabilities(p)[1]} runs no mixture-of-experts model at zero_stage "
                       f"{p.zero_stage} (frameworks/{_capabilities(p)[1]}.yaml capabilities."
                       f"zero_stages.{p.zero_stage}.moe: false"
                       f"{_stage_note(p, 'moe_limits', ': {}')}); valid "
                       f"zero_stage for {model.name}: {_stages_where(p, 'moe')}", per_stage=True),
        Rule("parallelism.ep", lambda p: (np.asarray(p.ep) == 1) | _stage_table(p, "ep"),
             lambda p: f"{_capabilities(p)[1]} runs zero_stage {p.zero_stage} without "
                       f"expert parallelism only{_stage_note(p, 'ep_limits')}; "
                       f"with ep = {p.ep} valid "
                       f"zero_stage: {_stages_where(p, 'ep')}; or ep: 1", per_stage=True),
        # an explicit reshard_after_forward under pp > 1 must be what the framework's ZeRO-3
        # does there (no framework here has a switch for it). Not per stage: the plan search
        # derives each plan's reshard from the capabilities, so this never binds there
        Rule("parallelism.reshard_after_forward",
             lambda p: ((p.reshard_after_forward is None) | (np.asarray(p.zero_stage) != 3)
                        | (np.asarray(p.pp) == 1)
                        | (bool(p.reshard_after_forward)
                           == stage_3_reshards_under_pp(p.framework))),
             lambda p: f"{_capabilities(p)[1]}'s ZeRO-3 under pipeline parallelism "
                       + ("re-gathers parameters every micro-batch"
                          if stage_3_reshards_under_pp(p.framework) else
                          "keeps parameters gathered and gradients unsharded for the step")
                       + f"; reshard_after_forward: {str(bool(p.reshard_after_forward)).lower()}"
                       f" is not available with pp = {p.pp}: leave it unset"),
    ]


def _overlap_off(p) -> Array:
    """Cells without the EP all-to-all overlap (``moe_a2a_overlap`` is an array in a search)."""
    return np.logical_not(np.asarray(p.moe_a2a_overlap, bool))


def _overlap_kind(p) -> str | None:
    """The framework's overlap mechanism (frameworks/<id>.yaml moe_a2a_overlap.schedule)."""
    facts = p.framework.spec.moe_a2a_overlap
    return None if facts is None else facts.schedule


def _overlap_needs(p) -> str | None:
    """The recompute the framework's overlap composes with (moe_a2a_overlap.recompute)."""
    facts = p.framework.spec.moe_a2a_overlap
    return None if facts is None else facts.recompute


def _overlap_facts(p):
    spec = p.framework.spec
    return spec.moe_a2a_overlap, spec.dualpipev, p.framework.id


def _overlap_allows(p, kind: str, value) -> bool:
    """Whether the framework's overlap facts accept ``value`` (``moe_a2a_overlap.<kind>``;
    None there: no such check; no facts: the has-an-overlap rule refuses)."""
    facts = _overlap_facts(p)[0]
    allowed = None if facts is None else getattr(facts, kind)
    return allowed is None or value in allowed


def a2a_overlap_cells(plan) -> Array:
    """Where a plan search runs the framework's EP all-to-all overlap: the cells of ``plan``
    (arrays over the search's cells, the overlap off) where every
    ``parallelism.moe_a2a_overlap`` rule of ``overlap_rules`` holds with it on. Megatron-Core's
    combined 1F1B runs wherever its checks allow it; DualPipeV's is never on (the search tries
    no DualPipeV schedule: its rule refuses), nor any for a framework without one. On wherever
    it may run, not tried both ways: it hides all-to-all time and adds at most the SM
    contention of what it hides (parallel_comm.ep_a2a_overlap, sm_contention), never more than
    it hides; the one way it can cost is the compute it takes from hiding the data-parallel
    traffic (training._layer_costs ``busy``)."""
    rules = [r for r in overlap_rules() if r.field == "parallelism.moe_a2a_overlap"]
    with np.errstate(all="ignore"):
        return valid_mask(rules, replace(plan, moe_a2a_overlap=True))


def overlap_rules() -> list[Rule]:
    """What the framework's EP all-to-all overlap and DualPipeV schedule need
    (frameworks/<id>.yaml ``moe_a2a_overlap`` / ``dualpipev``, sourced there): the framework
    must have them; DualPipeV runs two chunks per rank (vp = 2, pp > 1) and at least as many
    micro-batches as stages (torch ScheduleDualPipeV / DualPipe ``num_chunks >= num_ranks *
    2``); the overlap needs ep > 1 (and virtual stages under pp > 1 for the combined 1F1B)
    and composes with the recompute, precisions and token dispatchers its file states. The one
    source of these checks: a scenario's plan (``training_rules``) and a plan search's cells
    (``a2a_overlap_cells``) both evaluate them."""
    def names(kind):
        return [f for f in FRAMEWORK_NAMES if getattr(framework_spec(f), kind) is not None]

    def m(p):
        return np.asarray(p.global_batch) / (np.asarray(p.dp) * p.micro_batch)

    return [
        Rule("parallelism.moe_a2a_overlap", lambda p: _overlap_off(p) | (p.ep > 1),
             lambda p: "moe_a2a_overlap overlaps the expert all-to-all: it needs ep > 1 "
                       "(Megatron-Core overlap_moe_expert_parallel_comm)"),
        # Megatron-Core transformer_config.py __post_init__: "If enabling EP A2A overlap,
        # virtual_pipeline_model_parallel_size must be specified when pipeline_model_parallel_
        # size > 1" (combined 1F1B runs unpipelined or interleaved; parallel_comm.unpaired_share)
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p) | (p.pp == 1) | (p.vp > 1)
                       | (_overlap_kind(p) != "combined_1f1b"),
             lambda p: f"moe_a2a_overlap with pp = {p.pp} needs the interleaved schedule, vp > 1 "
                       f"(got vp = {p.vp}; Megatron-Core's combined 1F1B EP overlap requires "
                       "virtual pipeline stages when pp > 1)"),
        Rule("parallelism.schedule",
             lambda p: (p.schedule != "dualpipev") | (_overlap_facts(p)[1] is not None),
             lambda p: f"schedule dualpipev (DeepSeek's DualPipeV) is not in "
                       f"{_overlap_facts(p)[2]}; frameworks with it: {names('dualpipev')}"),
        Rule("parallelism.vp",
             lambda p: (p.schedule != "dualpipev") | ((np.asarray(p.vp) == 2)
                                                      & (np.asarray(p.pp) > 1)),
             lambda p: f"schedule dualpipev runs two model chunks per rank in a V: it needs "
                       f"vp = 2 and pp > 1 (got vp = {p.vp}, pp = {p.pp})"),
        Rule("training.global_batch",
             lambda p: (p.schedule != "dualpipev") | (m(p) >= 2 * np.asarray(p.pp)),
             lambda p: f"schedule dualpipev needs at least 2*pp = {2 * p.pp} micro-batches "
                       f"per step (got {m(p):g}; torch ScheduleDualPipeV: n_microbatches >= "
                       "the number of stages)"),
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p) | (_overlap_facts(p)[0] is not None),
             lambda p: f"{_overlap_facts(p)[2]} has no expert all-to-all overlap in training; "
                       f"frameworks with one: {names('moe_a2a_overlap')}"),
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p) | (_overlap_kind(p) != "dualpipev")
                       | (p.schedule == "dualpipev"),
             lambda p: f"{_overlap_facts(p)[2]} overlaps the expert all-to-all only under its "
                       f"DualPipeV schedule ({_overlap_facts(p)[0].flag}): set schedule: "
                       "dualpipev"),
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p) | (_overlap_needs(p) != "no_full")
                       | (p.recompute != "full"),
             lambda p: f"{_overlap_facts(p)[2]}'s expert all-to-all overlap does not run with "
                       f"recompute: full ({_overlap_facts(p)[0].flag}; Megatron-Core: 'disable "
                       "full recomputation when enabling overlap_moe_expert_parallel_comm')"),
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p) | _overlap_allows(p, "precisions", p.precision),
             lambda p: f"{_overlap_facts(p)[2]}'s expert all-to-all overlap needs a 16-bit model "
                       f"(precision {_overlap_facts(p)[0].precisions}; fp8 training runs on a "
                       f"bf16 model), not precision {p.precision} (Megatron-Core: "
                       "'overlap_moe_expert_parallel_comm is only supported with bf16 or fp16 "
                       "model'); set moe_a2a_overlap: false or another precision"),
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p)
                       | _overlap_allows(p, "dispatchers", p.framework.moe_dispatcher),
             lambda p: f"{_overlap_facts(p)[2]}'s expert all-to-all overlap runs with the token "
                       f"dispatchers {_overlap_facts(p)[0].dispatchers} "
                       "(training.framework.moe_dispatcher), not moe_dispatcher "
                       f"{p.framework.moe_dispatcher} (Megatron-Core: "
                       "'overlap_moe_expert_parallel_comm is supported with alltoall/flex token "
                       "dispatcher'); set one of them or moe_a2a_overlap: false"),
        Rule("parallelism.moe_a2a_overlap",
             lambda p: _overlap_off(p) | (_overlap_needs(p) != "none")
                       | (p.recompute == "none"),
             lambda p: f"{_overlap_facts(p)[2]}'s DualPipeV EP overlap does not run with "
                       f"activation checkpointing (recompute: {p.recompute}); set recompute: "
                       "none"),
    ]


def _div(a, b) -> Array:
    a, b = np.asarray(a), np.asarray(b)
    return np.mod(a, b) == 0


def training_rules(model: ModelSpec, num_gpus: int) -> list[Rule]:
    """Divisibility and consistency rules of Megatron-LM style training (Narayanan et al.
    2021 Sec. 3; Megatron-Core argument checks)."""
    L, H, KV = model.num_layers, model.num_heads, model.kv_heads
    E = model.moe.num_experts if model.moe else 1
    return [
        Rule("parallelism.tp", lambda p: _div(H, p.tp),
             lambda p: f"tp ({p.tp}) must divide the model's {H} attention heads; valid tp: "
                       f"{_divisors(H)}"),
        Rule("parallelism.tp", lambda p: _div(KV, p.tp) | _div(p.tp, KV),
             lambda p: f"tp ({p.tp}) and the {KV} KV heads must divide one another"),
        Rule("parallelism.dp", lambda p: np.mod(p.dp, 1) == 0,
             lambda p: f"system.num_gpus ({num_gpus}) must be a multiple of tp*pp*cp = "
                       f"{p.tp * p.pp * p.cp} (data parallelism takes the rest)"),
        Rule("parallelism", lambda p: p.tp * p.pp * p.dp * p.cp == num_gpus,
             lambda p: f"tp*pp*dp*cp = {p.tp}*{p.pp}*{p.dp}*{p.cp} = "
                       f"{p.tp * p.pp * p.dp * p.cp} must equal system.num_gpus ({num_gpus})"),
        Rule("parallelism.pp", lambda p: _div(L, p.pp * p.vp) | p.uneven_pp,
             lambda p: f"num_layers ({L}) must be divisible by pp*vp = {p.pp * p.vp}; valid pp "
                       f"for vp={p.vp}: {[d for d in _divisors(L) if L % (d * p.vp) == 0]} "
                       "(or set parallelism.uneven_pipeline: true)"),
        Rule("parallelism.pp", lambda p: p.pp * p.vp <= L,
             lambda p: f"pp*vp = {p.pp * p.vp} exceeds num_layers ({L})"),
        Rule("parallelism.vp", lambda p: (p.vp == 1) | (p.pp > 1),
             lambda p: "vp > 1 (interleaved schedule) needs pp > 1"),
        Rule("training.global_batch", lambda p: _div(p.global_batch, p.dp * p.micro_batch),
             lambda p: f"global_batch ({p.global_batch}) must be a multiple of dp*micro_batch "
                       f"= {p.dp}*{p.micro_batch} = {p.dp * p.micro_batch}"),
        Rule("training.global_batch",
             lambda p: (p.vp == 1) | (p.schedule == "dualpipev")
                       | _div(p.global_batch / (p.dp * p.micro_batch), p.pp),
             lambda p: f"the interleaved schedule needs the number of micro-batches "
                       f"({p.global_batch // max(1, p.dp * p.micro_batch)}) to be a multiple "
                       f"of pp ({p.pp})"),
        Rule("training.seq_len", lambda p: _div(p.seq_len, 2 * p.cp) | (p.cp == 1),
             lambda p: f"seq_len ({p.seq_len}) must be divisible by 2*cp = {2 * p.cp} "
                       "(load-balanced context parallelism)"),
        Rule("training.seq_len", lambda p: (not p.sequence_parallel) | _div(p.seq_len / p.cp, p.tp),
             lambda p: f"with sequence_parallel, seq_len/cp ({p.seq_len // p.cp}) must be "
                       f"divisible by tp ({p.tp})"),
        Rule("parallelism.ep", lambda p: _div(E, p.ep),
             lambda p: f"ep ({p.ep}) must divide the number of experts ({E})"
             if model.moe else "ep > 1 needs a mixture-of-experts model"),
        Rule("parallelism.ep", lambda p: (p.ep == 1) | (model.moe is not None),
             lambda p: "ep > 1 needs a mixture-of-experts model"),
        # MoE parallel folding: the ETP x EP groups are drawn from a stage's tp*cp*dp ranks
        # (Megatron-Core parallel_state.py: world_size % (etp*ep*pp) == 0, else RuntimeError)
        Rule("parallelism.ep", lambda p: _div(p.tp * p.dp * p.cp, p.ep * p.etp),
             lambda p: f"ep*etp = {p.ep}*{p.etp} = {p.ep * p.etp} must divide the "
                       f"tp*cp*dp = {p.tp * p.cp * p.dp} GPUs of a pipeline stage (expert "
                       f"groups are folded over attention's TP x CP x DP ranks){_etp_hint(p)}"),
        Rule("training.recompute_modules",
             lambda p: (not p.recompute_modules) | (p.recompute == "selective"),
             lambda p: f"recompute_modules {list(p.recompute_modules or ())} apply with "
                       f"recompute: selective (Megatron-Core recompute_granularity), not "
                       f"{p.recompute!r}"),
        *overlap_rules(),
        Rule("parallelism.etp", lambda p: _div(model.moe.expert_ffn_hidden_size, p.etp)
             if model.moe else p.etp > 0,
             lambda p: f"etp ({p.etp}) must divide the expert FFN width"),
        *capability_rules(model),
    ]


#: engines whose attention-DP ranks without a request run an idle batch that joins the MoE
#: collectives (SGLang: inference.idle_ranks, with its source); kind: inference predicts a
#: MoE batch below attention_dp for them. vLLM's dummy batch and TensorRT-LLM's attention-DP
#: dummy requests are not read: refused there
IDLE_RANK_ENGINES = frozenset({"sglang"})


def _attention_dp_batch_message(p, num_gpus: int) -> str:
    """Why ``kind: inference`` refuses a batch that is not a multiple of attention_dp, and what
    would be valid (QA 1205c D8). A MoE batch below attention_dp runs under SGLang, whose
    ranks without a request run idle (``IDLE_RANK_ENGINES``, inference.idle_ranks); other
    uneven loads split the batch unevenly over the groups, which the serving simulation
    models (serving/attention_dp.py hands requests to the ranks one by one)."""
    batch, dp, tp, pp, ep = (int(p.batch), int(p.attention_dp), int(p.tp), int(p.pp),
                             int(p.ep))
    lower, upper = (batch // dp) * dp, (batch // dp + 1) * dp
    valid = f"{lower} or {upper}" if lower else f"{upper}"
    # smaller attention_dp degrees that divide the batch and keep this plan's other rules
    fits = [d for d in _divisors(batch) if d < dp and num_gpus % (tp * d * pp) == 0
            and (tp * d) % ep == 0]
    other = (f", or attention_dp {'/'.join(map(str, fits[-3:]))} (dividing {batch})"
             if fits else "")
    return (f"batch ({batch}) must be a multiple of parallelism.attention_dp ({dp}): "
            f"kind: inference gives each attention data-parallel group batch/attention_dp "
            f"requests; valid: batch {valid}{other}; {batch} requests on {dp} DP ranks, some "
            f"idle, run as kind: serving (serving.arrival: "
            f"{{process: closed, concurrency: {batch}}})")


def _etp_hint(p) -> str:
    """What would make ep x etp fit a stage (QA 1205d D10): etp unset is tp, as Megatron-Core's
    --expert-tensor-parallel-size is when not given (arguments.py: None becomes
    tensor_model_parallel_size); the expert TP degrees that would fit, e.g. etp: 1."""
    stage, ep = int(p.tp * p.cp * p.dp), int(p.ep)
    fits = [e for e in _divisors(stage // ep) if e <= int(p.tp)] if stage % ep == 0 else []
    etp = f"; valid etp: {', '.join(map(str, fits))}" if fits else ""
    return f" (parallelism.etp not given is tp, as in Megatron-Core{etp})"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0 and d <= 64]


def check(rules: list[Rule], plan) -> None:
    """Raise SpecError with the first violated rule (scalar plans)."""
    for rule in rules:
        if not bool(np.all(rule.ok(plan))):
            raise SpecError(f"{rule.field}: {rule.message(plan)}")


def valid_mask(rules: list[Rule], plan) -> Array:
    """Elementwise AND of all rules (array plans)."""
    mask = np.asarray(True)
    for rule in rules:
        mask = mask & np.asarray(rule.ok(plan))
    return mask


def inference_rules(model: ModelSpec, num_gpus: int) -> list[Rule]:
    """Rules of TP/PP inference (each replica uses tp*attention_dp*pp GPUs)."""
    L, H, KV = model.num_layers, model.num_heads, model.kv_heads
    E = model.moe.num_experts if model.moe else 1
    return [
        Rule("parallelism", lambda p: _div(num_gpus, p.instance_gpus),
             lambda p: f"tp*attention_dp*pp = {p.instance_gpus} must divide system.num_gpus "
                       f"({num_gpus}); the GPUs form num_gpus/(tp*attention_dp*pp) replicas"
             if np.any(np.asarray(p.attention_dp) > 1) else
             f"tp*pp = {p.tp * p.pp} must divide system.num_gpus ({num_gpus}); "
             "the GPUs form num_gpus/(tp*pp) replicas"),
        # fewer requests than DP ranks: SGLang runs the others idle (inference.idle_ranks)
        Rule("inference.batch", lambda p: _div(p.batch, p.attention_dp)
             | ((np.asarray(p.batch) < np.asarray(p.attention_dp))
                & (p.tp_all_reduce in IDLE_RANK_ENGINES) & (model.moe is not None)),
             lambda p: _attention_dp_batch_message(p, num_gpus)),

        Rule("parallelism.tp", lambda p: _div(H, p.tp),
             lambda p: f"tp ({p.tp}) must divide the model's {H} attention heads; valid tp: "
                       f"{_divisors(H)}"),
        Rule("parallelism.tp", lambda p: _div(KV, p.tp) | _div(p.tp, KV),
             lambda p: f"tp ({p.tp}) and the {KV} KV heads must divide one another"),
        Rule("parallelism.pp", lambda p: _div(L, p.pp) | (p.pp_layers is not None),
             lambda p: f"pp ({p.pp}) must divide num_layers ({L}); valid pp: {_divisors(L)} "
                       "(or split unevenly: parallelism.pipeline_layers, pipeline_split or "
                       "uneven_pipeline: true)"),
        Rule("parallelism.ep", lambda p: (p.ep == 1) | (model.moe is not None),
             lambda p: "ep > 1 needs a mixture-of-experts model"),
        Rule("parallelism.ep", lambda p: _div(E + p.redundant_experts, p.ep),
             lambda p: f"ep ({p.ep}) must divide the number of experts ({E}"
                       + (f" + {p.redundant_experts} redundant" if p.redundant_experts else "")
                       + ")" + ("" if p.redundant_experts else
                                "; EPLB's parallelism.redundant_experts can make it divide")),
        Rule("parallelism.ep", lambda p: (p.ep == 1) | _div(p.tp * p.attention_dp, p.ep),
             lambda p: f"in inference, ep ({p.ep}) must divide tp*attention_dp = "
                       f"{p.tp * p.attention_dp} (experts spread over the instance's GPUs)"),
    ]
