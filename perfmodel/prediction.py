"""The result of a prediction: totals, a breakdown that explains them, and provenance.

JSON keys are stable (DESIGN.md): training step_time_s, tokens_per_s, tflops_per_gpu, mfu,
memory_per_gpu_bytes, fits, breakdown; inference ttft_s, tpot_s, e2e_latency_s, tokens_per_s,
memory_per_gpu_bytes, fits, breakdown; serving adds ``serving`` (docs/serving.md). Other keys
may be added, never renamed.
"""

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import PerfModelError


class InternalError(PerfModelError):
    """A result the core should never produce (NaN, infinity): a bug, named by its quantity."""


class NotReportable(PerfModelError):
    """A valid input whose result the model cannot state truthfully (a utilisation above 1)."""


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinite number in ``value`` (nested dicts/lists). The
    walk builds no path until it finds one (a prediction's breakdown holds hundreds of
    numbers, all finite but in a bug)."""
    parts = _non_finite_parts(value)
    if parts is None:
        return None
    return path + "".join(reversed(parts))


def _non_finite_parts(value: Any) -> list[str] | None:
    """None if every number in ``value`` is finite, else the path to the first that is not,
    as its parts in reverse order ("[2]", ".key", ...)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                return [f".{k}"]
            elif (isinstance(v, (dict, list, tuple))
                  and (hit := _non_finite_parts(v)) is not None):
                hit.append(f".{k}")
                return hit
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if isinstance(v, float) and not math.isfinite(v):
                return [f"[{i}]"]
            elif (isinstance(v, (dict, list, tuple))
                  and (hit := _non_finite_parts(v)) is not None):
                hit.append(f"[{i}]")
                return hit
    return None


class OpReport(BaseModel):
    """One operator on the critical GPU: per-call costs and the step's total time in it."""

    model_config = ConfigDict(frozen=True)

    name: str
    cls: str
    phase: str
    calls: float  # per step (training) or per pass (inference)
    flops: float  # per call, executed
    bytes: float  # per call, HBM
    intensity: float  # FLOP / byte
    compute_s: float  # per call, before efficiency
    memory_s: float  # per call, before efficiency
    time_s: float  # per call, modelled
    total_s: float  # calls x time
    bound: Literal["compute", "memory"]
    # (table, how) of the profile table whose fit decided time_s (roofline ``OpTimes.decided``:
    # ("gemm.fp8", "floor"), ("attention.prefill_fp8", "curve"), ...; ("", "") none), which the
    # band's residuals follow (perfmodel.uncertainty); out of model_dump like the bands
    timed_by: tuple[str, str] = Field(default=("", ""), exclude=True)


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["training", "inference", "serving"]
    name: str | None = None
    model: str
    device: str
    num_gpus: int
    calibration: dict[str, Any]
    # training
    step_time_s: float | None = None
    tflops_per_gpu: float | None = None  # Megatron model-FLOP convention
    hardware_tflops_per_gpu: float | None = None  # executed FLOPs incl. recompute (HFU's)
    mfu: float | None = None  # tflops_per_gpu / dense peak of the training dtype
    mfu_6nd: float | None = None  # 6 * active params * tokens convention
    hfu: float | None = None  # incl. recompute FLOPs (Korthikanti eq. 8)
    num_microbatches: float | None = None
    # inference
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_latency_s: float | None = None
    prefill_time_s: float | None = None
    max_concurrent_sequences: float | None = None
    kv_cache_bytes_per_sequence: float | None = None  # per GPU (this GPU's shard of one sequence)
    # serving (discrete-event simulation): percentiles, throughput, goodput, SLO attainment,
    # KV utilisation and queue length over time; ttft_s / tpot_s / e2e_latency_s are the p50s
    serving: dict[str, Any] | None = None
    # inference / serving with a named engine (engine_memory.EngineMemory): KV cache tokens and
    # blocks, max concurrency at max_model_len, memory by the engine's categories
    engine: dict[str, Any] | None = None
    # both
    tokens_per_s: float
    memory_per_gpu_bytes: float
    memory_capacity_bytes: float  # what the driver reports (memory.memory_capacity_bytes)
    fits: bool
    # how memory_capacity_bytes was obtained (memory.capacity_basis): "as CUDA reports it", ...
    memory_capacity_basis: str | None = Field(default=None, exclude=True)
    # False when the deployment cannot run as specified (it does not fit; a named engine fails
    # to start); the latency and throughput figures are then those it would have if it ran,
    # and not_runnable_reason says why and what would make it run
    runnable: bool | None = Field(default=None, exclude=True)
    not_runnable_reason: str | None = Field(default=None, exclude=True)
    breakdown: dict[str, Any]
    ops: list[OpReport] = []
    warnings: list[str] = []
    # the settings a prediction assumed that move the answer and that a published table
    # usually leaves out (``training_assumptions``: a MoE model's dispatcher, EP all-to-all
    # overlap, gradient-reduce dtype, recompute), one line each naming the value and where it
    # came from; left out of model_dump like the fields below, in to_json_dict
    assumptions: list[str] | None = Field(default=None, exclude=True)
    # inference: decode steps alone, no prefill (batch x replicas / TPOT at the modelled
    # contexts): generated tokens per second of the whole system and per GPU, the figure a
    # disaggregated decode instance's published rate compares with; decode_context_tokens
    # (first, last, mean) the contexts TPOT and breakdown["decode_step"] average. Left out of
    # model_dump like the energy fields below; to_json_dict includes them
    decode_tokens_per_s: float | None = Field(default=None, exclude=True)
    decode_tokens_per_s_per_gpu: float | None = Field(default=None, exclude=True)
    decode_context_tokens: list[float] | None = Field(default=None, exclude=True)
    # energy (perfmodel.power): whole system per training step / per decode step, per trained /
    # generated token, and mean GPU board power; breakdown["energy"] has the parts. Left out of
    # model_dump (the stored serving copies predate them); to_json_dict includes them.
    energy_per_step_j: float | None = Field(default=None, exclude=True)
    energy_per_token_j: float | None = Field(default=None, exclude=True)
    avg_power_per_gpu_w: float | None = Field(default=None, exclude=True)
    # 80 % bands (perfmodel.uncertainty, docs/uncertainty.md): field -> [lo, hi], and how
    # each band was made; left out of model_dump (stored copies predate them), in to_json_dict
    ranges: dict[str, list[float]] | None = Field(default=None, exclude=True)
    range_basis: dict[str, str] | None = Field(default=None, exclude=True)
    # serving: the bands of ``serving``'s percentiles and throughputs (key -> [lo, hi], e.g.
    # ttft_p90_s, itl_p99_s, output_tokens_per_s; uncertainty.SERVING_RANGE_KEYS)
    serving_ranges: dict[str, list[float]] | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_finite(self) -> "Prediction":
        """No NaN or infinity reaches a Prediction (it is not even valid JSON), and no
        utilisation above 1 is printed."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "ops":  # an OpReport's fields are flat: its __dict__ is its model_dump
                value = [vars(op) for op in value]
            if (hit := _non_finite(value, name)) is not None:
                raise InternalError(f"internal error: the prediction's {hit} is not a finite "
                                    "number; please report this scenario")
        for name in ("mfu", "hfu", "mfu_6nd"):
            value = getattr(self, name)
            if value is not None and value > 1.0:
                raise NotReportable(
                    f"{name} = {value:.3f} > 1: the model-FLOP convention counts attention "
                    "non-causally (s^2 query-key pairs) while causal attention executes about "
                    "half of them, and at this sequence length attention dominates the step; "
                    "a utilisation above 1 is not reported (shorten training.seq_len)")
        return self

    def to_json_dict(self, include_ops: bool = False) -> dict[str, Any]:
        """Every set field, including those added after the stored serving copies were
        written (declared ``exclude=True`` so ``model_dump`` still matches those copies)."""
        data = self.model_dump(exclude_none=True, exclude={"ops"})
        data.update({name: value for name, field in type(self).model_fields.items()
                     if field.exclude and (value := getattr(self, name)) is not None})
        if include_ops:
            data["ops"] = [op.model_dump() for op in self.ops]
        return data

    @property
    def bound_summary(self) -> dict[str, dict[str, float]]:
        """Compute- vs memory-bound operator seconds per phase: "step" for training (its
        operators add up to the step); "prefill" and "decode" (one decode step) for a request,
        whose phases do not add up (one prefill, then one decode step per output token)."""
        out: dict[str, dict[str, float]] = {}
        for op in self.ops:
            phase = "step" if self.kind == "training" else op.phase
            split = out.setdefault(phase, {"compute": 0.0, "memory": 0.0})
            split[op.bound] += op.total_s
        return out


def training_assumptions(scenario: Any, plan: Any) -> list[str]:
    """What a training prediction of a MoE model assumed for the settings that move it most and
    that a published table rarely states (QA 1205d D8: Megatron-Bridge 26.08's recipes run the
    flex / HybridEP dispatcher with per-model EP overlap, and switching either moves the step by
    10-40 %): the MoE token dispatcher, the EP all-to-all overlap, the gradient-reduce dtype and
    the recompute policy, one line each, "<setting> <value> (<where the value came from>)".

    One rule for every framework, read from the framework's facts (``plan.framework``, the
    resolved frameworks/<id>.yaml): a value the scenario set says so; a default names the file
    or field it came from (the dispatcher: the file's ``moe.dispatcher``; the overlap: whether
    the file has ``moe_a2a_overlap`` facts at all). [] for a model without experts.
    ``scenario``: the specs.Scenario; ``plan``: its plan.TrainPlan."""
    if getattr(scenario.model, "moe", None) is None or scenario.training is None:
        return []
    t, par, fw = scenario.training, scenario.parallelism, plan.framework
    given_fw = t.framework.model_fields_set if t.framework is not None else set()
    spec = fw.spec
    facts = f"frameworks/{fw.id}.yaml"
    if "moe_dispatcher" in given_fw:
        where = "training.framework.moe_dispatcher as set"
    elif spec.moe is not None:
        others = [d for d in ("alltoall", *spec.moe.dispatchers) if d != fw.moe_dispatcher]
        where = (f"{facts} moe.dispatcher default; training.framework.moe_dispatcher selects "
                 f"{' / '.join(others)}" if others else f"{facts} moe.dispatcher default")
    else:
        where = f"perfmodel's default: {facts} states no MoE dispatcher"
    lines = [f"moe_dispatcher {fw.moe_dispatcher} ({where})"]
    on = bool(plan.moe_a2a_overlap)
    state = "on" if on else "off: the expert all-to-all is exposed, not hidden under compute"
    if "moe_a2a_overlap" in par.model_fields_set:
        where = "parallelism.moe_a2a_overlap as set"
    elif spec.moe_a2a_overlap is not None:
        where = (f"parallelism.moe_a2a_overlap default; {facts} moe_a2a_overlap offers "
                 f"{spec.moe_a2a_overlap.schedule}")
    else:
        where = f"parallelism.moe_a2a_overlap default; {facts} has no EP overlap"
    lines.append(f"moe_a2a_overlap {state} ({where})")
    where = ("training.grad_reduce_dtype as set" if "grad_reduce_dtype" in t.model_fields_set
             else "training.grad_reduce_dtype default, Megatron-Core's grad_reduce_in_fp32")
    lines.append(f"grad_reduce_dtype {plan.grad_dtype} ({where})")
    policy = plan.recompute
    if policy == "selective":
        modules = plan.recompute_modules or ("core_attn",)
        policy = f"selective [{', '.join(modules)}]"
    where = ("training.recompute as set" if "recompute" in t.model_fields_set
             else "training.recompute default")
    if plan.recompute == "selective" and plan.recompute_modules is None:
        where += "; training.recompute_modules default, Megatron-Core's [core_attn]"
    lines.append(f"recompute {policy} ({where})")
    return lines
