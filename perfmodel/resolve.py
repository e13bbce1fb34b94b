"""Resolve: a Scenario becomes the core's inputs (system, calibration profile, plans) plus the
warnings that belong to those inputs. The API and the serving simulator both start here, so a
scenario field maps to a plan field in exactly one place (issue 8).

The pure core (``training``, ``inference``) never sees a Scenario; ``explain`` turns its
results back into a Prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError
from .formats import asks_weight_only, engine_weight_formats, wide_activation
from .pipeline import stage_partition
from .plan import InferPlan, TrainPlan, check, inference_rules, training_rules
from .profile import CalibrationProfile
from .specs.assemble import load_scenario, resolve_system
from .specs.common import validate
from .specs.model import ModelSpec
from .specs.registry import get_interconnect, profile_for
from .specs.scenario import InferenceConfig, Parallelism, Scenario
from .specs.system import System

#: llama.cpp (engines/llamacpp.yaml, build b6000) as perfmodel models it: its default
#: --split-mode layer puts whole layers (and their KV) on each GPU, a pipeline split
#: (common/arg.cpp --split-mode help: "layer (default): split layers and KV across GPUs"; src/
#: llama-model.cpp load_tensors). Its --split-mode row is a split within each layer: "row:
#: split rows across GPUs", with --main-gpu "the GPU to use ... for intermediate results and
#: KV (with split-mode = row)" (tools/server/README.md; include/llama.h LLAMA_SPLIT_MODE_ROW
#: "split layers and KV across GPUs, use tensor parallelism if supported"): a tensor-parallel
#: split of the weight matrices, not modelled (its KV on one GPU and its per-matmul
#: transfers are not Megatron TP's). --split-mode tensor (ggml-org/llama.cpp PR #19378,
#: 2026-04, experimental) came after b6000 and is not modelled either.
#: (no apostrophes in the message: errors.clip_message shortens a long 'quoted' run)
LLAMACPP_NO_TP = ("parallelism.tp: tp = {tp} with engine llamacpp is not modelled: perfmodel "
                  "models the llama.cpp default --split-mode layer (whole layers and their KV "
                  "on each GPU, a pipeline split); set tp: 1 and pp to the GPUs of one model "
                  "copy (layers split by free memory unless parallelism.pipeline_split gives "
                  "--tensor-split). The tensor-parallel split of llama.cpp, --split-mode row "
                  "(the weight rows of each layer across the GPUs, intermediate results and KV "
                  "on --main-gpu), is not modelled")

#: llama.cpp does not stream host-resident data to the GPU for every pass, which is what
#: inference.offload models (FlexGen): layers left on the host (-ngl below the layer count) run
#: on the CPU backend for a batch below 32 tokens and are copied to the GPU per op only from 32
#: tokens on (ggml/src/ggml-cuda/ggml-cuda.cu ggml_backend_cuda_device_offload_op:
#: min_batch_size = 32, get_op_batch_size >= min_batch_size); --no-kv-offload keeps the KV cache
#: and the attention on the CPU. A decode step is then bounded by the host CPU and its memory,
#: which perfmodel has no figure for (hardware_specs/nodes host_memory_bandwidth_gbps is null
#: for the workstation presets), so the streaming estimate would be wrong by the ratio of the
#: host link to host memory bandwidth.
LLAMACPP_NO_OFFLOAD = ("inference.offload with engine llamacpp is not modelled: llama.cpp runs "
                       "the layers it keeps in host memory (-ngl below the layer count) on the "
                       "CPU for decode steps (batches below 32 tokens) and copies their weights "
                       "to the GPU only for larger batches; --no-kv-offload computes attention "
                       "on the CPU. perfmodel has no host CPU model, and its offload streams "
                       "every pass over the host link. Omit inference.offload (all layers on "
                       "the GPU, -ngl 99) or use engine generic for a streaming estimate")

ScenarioLike = Scenario | str | Path | dict
CalibrationLike = str | Path | CalibrationProfile | None


@dataclass(frozen=True)
class Resolved:
    """A scenario with its system and profile resolved, and the warnings about them."""

    scenario: Scenario
    system: System
    profile: CalibrationProfile
    warnings: list[str]
    # of those, what the device changed in the scenario (``with_device_dtypes``): a planner
    # that reads its own warnings elsewhere still reports these
    device_notes: tuple[str, ...] = ()


def as_scenario(value: ScenarioLike) -> Scenario:
    """A Scenario from a Scenario, a YAML path, or a mapping."""
    if isinstance(value, Scenario):
        return value
    if isinstance(value, (str, Path)):
        return load_scenario(value)
    if isinstance(value, dict):
        return validate(Scenario, value, what="scenario")
    raise SpecError(f"expected a Scenario, a path or a mapping, got {type(value).__name__}")


def resolve_profile(sc: Scenario, calibration: CalibrationLike = None) -> CalibrationProfile:
    """``calibration`` (a profile or its path) wins over the scenario's ``calibration:``;
    without either, the device's shipped reference profile or the documented defaults."""
    if isinstance(calibration, CalibrationProfile):
        return calibration
    path = Path(calibration) if calibration else sc.calibration_path()
    return profile_for(sc.system.device, path)


def resolve(scenario: ScenarioLike, calibration: CalibrationLike = None) -> Resolved:
    """Everything a prediction of ``scenario`` needs before the core runs."""
    sc, variant_notes = with_default_variant(as_scenario(scenario))
    sc = with_engine_state(sc)
    if sc.kind != "training":
        check_engine_kv_dtype(sc.engine, sc.inference)
    system = resolve_system(sc.system)
    sc, dtype_notes = with_device_dtypes(sc, system.device)
    shard_notes = block_shard_notes(sc)
    profile = resolve_profile(sc, calibration)
    return Resolved(sc, system, profile,
                    [*profile_warnings(profile, system), *replica_warnings(sc, system),
                     *dtype_notes, *format_warnings(sc, system), *shard_notes,
                     *variant_notes, *engine_version_notes(sc)],
                    tuple(dtype_notes))


def engine_version_notes(sc: Scenario) -> list[str]:
    """An engine named without a version runs its newest family: the prediction says so, for
    inference and serving alike (``engines.default_version_note``)."""
    if sc.kind == "training":
        return []
    from .engines import default_version_note

    note = default_version_note(sc.engine.name, sc.engine.version, sc.engine.variant)
    return [note] if note else []


def block_shard_notes(sc: Scenario) -> list[str]:
    """A block-fp8 checkpoint's MLP / expert shards that are not whole 128 x 128 blocks: refused
    under a named engine whose file says it refuses them, a warning under ``generic``
    (engine_checks.check_block_shards / block_shard_warning)."""
    if sc.kind == "training" or sc.inference is None:
        return []
    from .engine_checks import block_shard_warning, check_block_shards

    if sc.engine is None or sc.engine.name == "generic":
        note = block_shard_warning(sc.model, sc.parallelism, sc.inference)
        return [note] if note else []
    from .engines import engine_for

    check_block_shards(engine_for(sc.engine), sc.model, sc.parallelism, sc.inference)
    return []


def check_engine_kv_dtype(engine, inference) -> None:
    """An inference / serving scenario's kv_dtype (``inference``, its InferenceConfig) must be
    a KV-cache format its named ``engine`` (EngineConfig) has, at that engine version
    (engine_checks.check_kv_dtype; ``generic`` or none named: any)."""
    if engine is None or inference is None or engine.name == "generic":
        return
    from .engine_checks import check_kv_dtype
    from .engines import engine_for  # here: a training prediction need not load the engines

    check_kv_dtype(engine_for(engine), inference.kv_dtype)


def with_device_dtypes(sc: Scenario, device) -> tuple[Scenario, list[str]]:
    """Inference on a device without bf16 tensor cores (V100, T4) computes in its 16-bit dtype,
    fp16 (``formats.wide_activation``: vLLM casts a bf16 checkpoint to float16 there): the
    default bf16 activations and KV cache become fp16, and an explicit bf16 one is refused,
    as vLLM refuses ``--dtype bfloat16`` there ("Bfloat16 is only supported on GPUs with
    compute capability of at least 8.0", vllm/platforms/cuda.py check_if_supports_dtype).
    Weights keep their dtype: bf16 and fp16 weights are the same bytes, and the GEMMs take
    the activation dtype (``ops.Precision.inference``). Returns the scenario and a note per
    replaced default."""
    inf = sc.inference
    if sc.kind == "training" or inf is None:
        return sc, []
    wide = wide_activation(device)
    if wide == "bf16" or not device.supported_dtypes():  # no peak sourced at all: peak_flops says so
        return sc, []
    fields = ("activation_dtype", "kv_dtype")
    given = inf.model_fields_set
    for field in fields:
        if field in given and getattr(inf, field) == "bf16":
            raise SpecError(f"inference.{field}: bf16 on {device.id}: no bf16 tensor cores "
                            "(peak_tflops.bf16 is null; bf16 needs compute capability 8.0+); "
                            f"use {wide}")
    update = {f: wide for f in fields if getattr(inf, f) == "bf16"}
    if not update:
        return sc, []
    note = (f"{device.id} has no bf16 tensor cores: the default bf16 "
            f"{' and '.join(update)} {'runs' if len(update) == 1 else 'run'} as {wide} (engines "
            "cast a bf16 checkpoint there, e.g. vLLM)")
    resolved = inf.model_copy(update=update)
    # still defaults, not the user's: model_copy marks updated fields as set, and whether the
    # scenario named a dtype itself matters downstream (formats.asks_weight_only)
    object.__setattr__(resolved, "__pydantic_fields_set__", set(given))
    return sc.model_copy(update={"inference": resolved}), [note]


def with_default_variant(sc: Scenario) -> tuple[Scenario, list[str]]:
    """``sc`` with the engine variant its model runs on when its ``engine:`` names none: the
    variant whose version range says it is the default for the model's family at the
    scenario's version (``engines.default_variant``; no version: the newest release), and one
    line saying so. vLLM 0.22 - 0.24 picks Model Runner V2 (variant ``mrv2``) by HF
    architecture (config/vllm.py DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES, engines/versions/
    vllm-0.22-mrv2.yaml ``default_for``). A named variant is the user's choice and stays.

    A scenario with a draft model (``inference.speculative``) keeps the release's default:
    vLLM takes a separate draft model as speculative method 'draft_model', which
    VllmConfig._get_v2_model_runner_unsupported_features lists ('speculative method ...', not
    eagle / eagle3 / mtp at 0.22.0 - 0.24.0), so use_v2_model_runner falls back to the V1
    runner; the only one of its exceptions a scenario can state."""
    eng = sc.engine
    if (sc.kind == "training" or eng is None or eng.name == "generic" or eng.variant is not None
            or (sc.inference is not None and sc.inference.speculative is not None)):
        return sc, []
    from .engines import default_variant, families, newest_range, version_key

    family = sc.model.family
    variant = default_variant(eng.name, eng.version, family)
    if variant is None:
        return sc, []
    spans = [(f, r) for f in families(eng.name) for r in f.ranges if r.variant == variant
             and family in r.default_for]
    if eng.version is None:
        end = newest_range(eng.name)[1].until
        fam, span = max(spans, key=lambda fr: version_key(fr[1].until))
        where = f"{eng.name}'s newest release modelled (before {end}; no engine.version)"
        others = {r.variant for f in families(eng.name) for r in f.ranges
                  if r.variant not in (None, variant) and r.until == end}
    else:
        fam, span = next((f, r) for f, r in spans if r.holds(eng.version, variant))
        where = f"{eng.name} {eng.version}"
        others = {r.variant for f in families(eng.name) for r in f.ranges
                  if r.variant not in (None, variant) and r.holds(eng.version, r.variant)}
    choose = (f": {' / '.join(sorted(others))} runs it as the release's other models"
              if others else "")
    note = (f"engine.variant not given: {where} runs {family} models on variant {variant} by "
            f"default (from {span.default_for[family]}, version family {fam.version}), modelled "
            f"with its facts; name engine.variant to choose{choose}")
    return sc.model_copy(update={"engine": eng.model_copy(update={"variant": variant})}), [note]


def with_engine_state(sc: Scenario) -> Scenario:
    """``sc`` with its model's linear-attention / Mamba state dtypes as its engine keeps them
    (engines/<id>.yaml ``memory.state_dtype``, ``inference.ssm_state_dtype`` over it;
    attention_variants.engine_state_model); a model without such layers is left as it is."""
    m = sc.model
    if m.linear_attention is None and m.mamba is None:
        return sc
    from .attention_variants import engine_state_model

    override = sc.inference.ssm_state_dtype if sc.inference is not None else None
    model = engine_state_model(m, sc.engine.name, sc.engine.version, sc.engine.variant,
                               override)
    return sc if model is m else sc.model_copy(update={"model": model})


def format_warnings(sc: Scenario, system: System) -> list[str]:
    """An inference activation format the device has no tensor cores for (fp4 on Hopper /
    Ampere, NVFP4 on MI355X, fp8 on A100) runs as a weight-only GEMM, and an explicit 16-bit
    activation dtype the engine replaces (vLLM / SGLang / TensorRT-LLM run fp8 weights W8A8
    where fp8 tensor cores exist), narrow weights the device has no tensor cores for (nvfp4
    on Hopper: weight-only W4A16), and an engine's few-token GEMM kernel timed by a proxy:
    say so (``formats.activation_format_warning``, ``formats.engine_activation_warning``,
    ``formats.weight_format_warning``, ``engines.skinny_gemm_warning``)."""
    if sc.kind == "training" or sc.inference is None:
        return []
    from .formats import (
        activation_format_warning,
        engine_activation_warning,
        weight_format_warning,
    )

    lines = [activation_format_warning(system.device, sc.inference.activation_dtype),
             weight_format_warning(system.device, sc.inference, sc.model, sc.engine)]
    if sc.engine is not None:
        from .engines import skinny_gemm_warning

        lines += [engine_activation_warning(system.device, sc.engine, sc.inference),
                  skinny_gemm_warning(system.device, sc.engine, sc.inference.weight_dtype,
                                      sc.inference.batch if sc.kind == "inference" else None)]
    return [line for line in lines if line]


def replica_warnings(sc: Scenario, system: System) -> list[str]:
    """An inference scenario on more GPUs than one model copy uses (tp x pp) runs independent
    replicas, not one model split wider: say so, since the user may have meant tensor
    parallelism."""
    if sc.kind != "inference" or sc.inference is None:
        return []
    tp, pp, adp = sc.parallelism.tp, sc.parallelism.pp, sc.parallelism.attention_dp
    replicas = system.num_gpus // (tp * adp * pp)
    if replicas <= 1:
        return []
    dims = f"tp {tp} x attention_dp {adp} x pp {pp}" if adp > 1 else f"tp {tp} x pp {pp}"
    return [f"{system.num_gpus} GPUs with {dims}: {replicas} independent replicas "
            f"of the model, each serving a batch of {sc.inference.batch}; latencies are one "
            "replica's, tokens/s the sum over replicas (set parallelism.tp to split one copy "
            "of the model over more GPUs)"]


def cpu_profile(profile: CalibrationProfile) -> bool:
    """Whether ``profile`` was measured on a CPU (``perfmodel calibrate --device cpu``)."""
    facts = profile.device_facts or {}
    return str(facts.get("device", "")).lower() == "cpu"


def device_mismatch(profile: CalibrationProfile, device_id: str) -> list[str]:
    """One line when ``profile`` was measured on another device than the one it is used for
    (its efficiencies describe that device): every command that takes --calibration says so.
    Not for the device's ``calibration_proxy`` profile borrowed for it (``borrowed_for``): the
    same silicon, its rates rescaled, and the output names it ("borrowed from ...")."""
    if profile.device and profile.device != device_id and not borrowed_for(profile, device_id):
        return [f"calibration profile {profile.id!r} was measured on {profile.device!r}, "
                f"not on {device_id!r}: its efficiencies describe {profile.device!r}"]
    return []


def borrowed_for(profile: CalibrationProfile, device_id: str) -> bool:
    """Whether ``profile`` is the reference of ``device_id``'s ``calibration_proxy`` borrowed
    for it (specs.registry.proxy_of, and borrow_profile's id ``<profile>@<device>``: a proxy
    device's profile used as it is, its absolute rates not rescaled, is not)."""
    from .specs import registry

    if not profile.id.endswith(f"@{device_id}") or device_id not in registry.ids("device"):
        return False
    return registry.proxy_of(profile, registry.get_device(device_id)) is not None


def profile_warnings(profile: CalibrationProfile, system: System) -> list[str]:
    """Say when the numbers rest on default, foreign or poor calibration data."""
    out = []
    if profile.kind == "default":
        source = profile.path or "calibration/default.json"
        out.append(f"uncalibrated: documented default efficiencies ({source}); "
                   "run `perfmodel calibrate` on this device for measured ones")
    elif cpu_profile(profile) and system.device.kind != "cpu":
        name = profile.device_facts.get("name")
        out.append(f"calibration profile {profile.id!r} was measured on a CPU"
                   + (f" ({str(name)[:60]})" if name else "")
                   + f", not on a {system.device.kind}: its efficiencies do not describe "
                   f"{system.device.id!r}; use the device's reference profile or calibrate on it")
    else:
        out += device_mismatch(profile, system.device.id)
    if profile.quality is not None and profile.quality.verdict == "poor":
        out.append(f"calibration profile {profile.id!r} is of poor quality: "
                   + "; ".join(profile.quality.notes))
    return out


def training_plan(sc: Scenario, system: System) -> TrainPlan:
    """The scenario's TrainPlan, checked against the model and the GPU count."""
    plan = TrainPlan.from_scenario(sc)
    check(training_rules(sc.model, system.num_gpus), plan)
    return plan


def inference_plan(model: ModelSpec, parallelism: Parallelism, inf: InferenceConfig,
                   num_gpus: int, *, tp: int | None = None, replicas: int | None = None,
                   request: bool = True, engine: str = "generic",
                   engine_version: str | None = None,
                   engine_variant: str | None = None) -> InferPlan:
    """The InferPlan for ``inf`` on ``num_gpus`` GPUs, checked against the model.

    ``tp`` overrides the scenario's (a DistServe pool has its own); ``replicas`` defaults to
    the model copies that fit, num_gpus / (tp * pp). With ``request`` the plan carries the
    request (batch, lengths) and its offloading, speculation and prefill chunking; without,
    it is a serving instance: batch = attention_dp (1 without DP attention), prompt = output
    = 1, since the simulator sets the batch of every iteration itself.
    """
    # read here, not at import: moe_parallel loads the engines' fact models (~30 ms of a
    # fresh process), which a training prediction never reads
    from .moe_parallel import moe_overlap_mode

    p = parallelism
    tp = p.tp if tp is None else tp
    if replicas is None:
        replicas = max(num_gpus // (tp * p.attention_dp * p.pp), 1)
    fields = dict(tp=tp, pp=p.pp, replicas=replicas, weight_dtype=inf.weight_dtype,
                  activation_dtype=inf.activation_dtype, kv_dtype=inf.kv_dtype,
                  # 16-bit activations the scenario names itself: weight-only where the
                  # engine runs it (inference.as_engine_runs)
                  weight_only=asks_weight_only(inf),
                  weight_formats=engine_weight_formats(  # the router as the engine builds it
                      tuple(sorted(inf.weight_formats.items())), inf.weight_dtype, engine,
                      engine_version, engine_variant),
                  group_size=inf.quant_group_size,
                  flash_attention=inf.flash_attention, kv_block_size=inf.kv_block_size, ep=p.ep,
                  attention_dp=p.attention_dp, a2a_mode=p.a2a_mode,
                  moe_overlap=moe_overlap_mode(p.moe_overlap, engine, engine_version,
                                               engine_variant),
                  expert_imbalance=inf.expert_imbalance, redundant_experts=p.redundant_experts,
                  tp_all_reduce=engine, engine_version=engine_version,
                  engine_variant=engine_variant)
    if request:
        off, spec = inf.offload, inf.speculative
        fields |= dict(
            batch=inf.batch, prompt_len=inf.prompt_len, output_len=inf.output_len,
            offload_weights=off.weights if off else 0.0, offload_kv=off.kv_cache if off else 0.0,
            offload_overlap=off.overlap if off else True,
            spec_tokens=spec.num_tokens if spec else 0,
            spec_acceptance=spec.acceptance_rate if spec else 0.0,
            prefill_chunk=inf.prefill_chunk_tokens)
    else:
        # one sequence per attention-DP group: the smallest batch the instance runs
        fields |= dict(batch=p.attention_dp, prompt_len=1, output_len=1)
    # an uneven layer split (vLLM / SGLang partition, llama.cpp proportions, vLLM's default)
    # (llama.cpp's own split by free memory is its default for a request; the serving cost
    # model splits evenly)
    fields["pp_layers"] = stage_partition(model.num_layers, p.pp, p.pipeline_layers,
                                          p.pipeline_split, p.uneven_pipeline,
                                          engine=engine if request else None,
                                          engine_version=engine_version if request else None,
                                          engine_variant=engine_variant if request else None)
    if engine == "llamacpp" and tp > 1:
        raise SpecError(LLAMACPP_NO_TP.format(tp=tp))
    if engine == "llamacpp" and request and inf.offload is not None and (
            inf.offload.weights > 0 or inf.offload.kv_cache > 0):
        raise SpecError(LLAMACPP_NO_OFFLOAD)
    plan = InferPlan(**fields)
    check(inference_rules(model, num_gpus), plan)
    return plan


@dataclass(frozen=True)
class InferenceInputs:
    """Arguments of ``inference.inference`` for an inference scenario."""

    plan: InferPlan
    draft: ModelSpec | None
    offload_bandwidth: float | None
    draft_tp: int | None = None  # the draft's tensor-parallel size (engines.draft_tp)


def inference_inputs(sc: Scenario, system: System, profile: CalibrationProfile
                     ) -> InferenceInputs:
    """Plan, draft model and offload link of an inference scenario."""
    inf = sc.inference
    assert inf is not None
    plan = inference_plan(sc.model, sc.parallelism, inf, system.num_gpus, engine=sc.engine.name,
                          engine_version=sc.engine.version, engine_variant=sc.engine.variant)
    draft = inf.speculative.draft_model if inf.speculative else None
    bw = offload_bandwidth(system, inf.offload.target, profile) if inf.offload else None
    dtp = None
    if inf.speculative:  # the engine's default draft TP, or the scenario's if it runs it
        from .engines import draft_tp

        dtp = draft_tp(sc.engine.name, sc.engine.version, sc.engine.variant,
                       int(sc.parallelism.tp), inf.speculative.draft_tp)
        if dtp > sc.parallelism.tp:
            raise SpecError(f"inference.speculative.draft_tp: {dtp} is more than the target's "
                            f"tp {sc.parallelism.tp}; the draft runs on GPUs of its TP group")
        if draft is not None and (draft.num_heads % dtp or (draft.kv_heads % dtp
                                  and dtp % draft.kv_heads)):
            raise SpecError(f"inference.speculative.draft_tp: the draft runs at tp {dtp}, "
                            f"which must divide its {draft.num_heads} attention heads and "
                            f"divide or be a multiple of its {draft.kv_heads} KV heads")
    return InferenceInputs(plan, draft, bw, dtp)


def offload_bandwidth(system: System, target: str, profile: CalibrationProfile) -> float:
    """Achieved per-direction B/s of the path offloaded data streams over: the GPU's host link
    for CPU memory (times the profile's host-link efficiency); for NVMe also the drive (the
    node's figure, else one PCIe Gen4 x4 drive's link limit)."""
    if system.host_link is None:
        raise SpecError(f"inference.offload: device {system.device.id!r} has no host link in "
                        "its spec, so offloading cannot be modelled")
    bw = system.host_link.bandwidth
    if target == "nvme":
        node_bw = system.node.nvme_read_gbps if system.node else None
        drive = node_bw * 1e9 if node_bw else get_interconnect("nvme-gen4-x4").bandwidth
        bw = min(bw, drive)
    return bw * (profile.defaults.host_link or 1.0)
