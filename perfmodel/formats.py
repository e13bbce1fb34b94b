"""Per-tensor weight formats: one checkpoint, several dtypes (DESIGN.md "Formats are per tensor").

Real checkpoints mix formats: gpt-oss stores its routed experts in MXFP4 and keeps attention,
router, embeddings and LM head in bf16 (its config.json ``quantization_config``:
``modules_to_not_convert``); fp8 checkpoints such as Meta-Llama-3.1-405B-Instruct-FP8 keep
the embeddings and LM head (and some layers) in bf16. A scenario therefore gives
``weight_dtype`` either as one name or as a mapping by tensor class::

    weight_dtype: {default: fp8, experts: mxfp4, attention: bf16, lm_head: bf16}

A narrow (sub-16-bit) weight dtype, one name or the mapping's ``default``, applies to the
linear layers (attention, MLP, experts): the MoE router, the embeddings and the LM head stay at
the model's 16-bit dtype unless the scenario names them (``KEPT_16BIT``, ``with_kept_16bit``),
as the quantisers and engines keep them.

The classes are what ``parameters.ParamCounts`` and the operator names of ``ops`` tell apart
(``WEIGHT_CLASSES``). Norms and biases follow ``default`` (they are < 0.01 % of a model).
Memory counts each class at its own bytes (block scales included, ``dtypes.BYTES``); each
GEMM reads its weight's bytes and runs at its weight's compute dtype (``ops.Precision``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .dtypes import BYTES, DTYPES, nbytes, quantized_weight_bytes
from .errors import SpecError
from .parameters import ParamCounts

# class -> what it holds (ParamCounts fields / operator-name prefixes)
WEIGHT_CLASSES: dict[str, str] = {
    "attention": "attention projections (QKV / output; MLA up-projections)",
    "mla": "MLA low-rank down-projections (q_down, kv_down) and the sparse-attention indexer",
    "mlp": "dense MLP (up / gate / down)",
    "experts": "routed experts",
    "shared_experts": "shared experts",
    "router": "MoE router (gate)",
    "embeddings": "word / position embeddings",
    "lm_head": "LM head (output projection to the vocabulary)",
}

# operator-name prefix -> class (longest prefix first); ops.py names are "<block>.<what>"
_OP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("attn.q_down", "mla"), ("attn.kv_down", "mla"), ("attn.", "attention"),
    ("moe.expert.", "experts"), ("moe.shared.", "shared_experts"), ("moe.router", "router"),
    ("mlp.", "mlp"), ("embed.", "embeddings"), ("head.", "lm_head"),
)


#: weight classes a narrow ``weight_dtype`` (one name, or a mapping's ``default``) leaves at
#: the model's 16-bit dtype (``specs.model.MODEL_DTYPE``) unless the scenario names them: the
#: quantisers and engines quantise linear layers only. vLLM Fp8Config.get_quant_method returns
#: a quantised method for ``LinearBase`` / ``FusedMoE`` layers and None otherwise, so
#: ``VocabParallelEmbedding`` / ``ParallelLMHead`` stay unquantised (vllm-project/vllm
#: vllm/model_executor/layers/quantization/fp8.py @ 0071b24bf8fe); ModelOpt disables
#: ``"*lm_head*"`` in every default config and has no embedding quantiser
#: (NVIDIA/TensorRT-Model-Optimizer modelopt/torch/quantization/config.py
#: ``_default_disabled_quantizer_cfg`` @ 103b1bb137ca; its hf_quant_config.json lists lm_head
#: under ``exclude_modules``); llm-compressor recipes ``ignore: ["lm_head"]`` and AWQ /
#: AutoAWQ ``modules_to_not_convert`` keep it likewise (the checkpoints cited in
#: validation/inference/engine_startup.yaml). A checkpoint that does quantise them (GGUF
#: llama.cpp files quantise ``token_embd`` / ``output``) names them:
#: ``{default: int4, embeddings: int4, lm_head: int4}``. The MoE router (gate) likewise: vLLM
#: builds it unquantised (vllm-project/vllm vllm/model_executor/models/qwen3_moe.py
#: ``Qwen3MoeSparseMoeBlock``: ``self.gate = ReplicatedLinear(..., quant_config=None)`` @
#: 002456df36fc; deepseek_v2.py / mixtral.py the same, ``engine_weight_formats``) and
#: DeepSeek-V3's fp8 checkpoint keeps ``mlp.gate.weight`` in bf16 (deepseek-ai/DeepSeek-V3
#: inference/model.py ``Gate.weight``: a plain ``nn.Parameter`` at the bf16 default dtype,
#: not an fp8 ``Linear``).
KEPT_16BIT: tuple[str, ...] = ("router", "embeddings", "lm_head")


def with_kept_16bit(default: Any, formats: dict[str, str], wide: str) -> dict[str, str]:
    """``formats`` ({class: dtype} overrides of ``default``) with each ``KEPT_16BIT`` class
    the scenario does not name at ``wide`` (the model's 16-bit dtype) when ``default`` is a
    narrow format (under 2 B per weight); unchanged otherwise (a 16- or 32-bit default, or
    an unknown name, which the schema reports)."""
    if not isinstance(default, str) or default not in BYTES or BYTES[default] >= 2:
        return formats
    return {**{cls: wide for cls in KEPT_16BIT}, **formats}


def tie_named_formats(value: Any, tied: bool, field: str = "inference.weight_dtype") -> Any:
    """A ``weight_dtype`` / ``weight_formats`` mapping as a model whose LM head is its word
    embedding (``ModelSpec.tie_embeddings``: one tensor) reads it: a format named for
    ``embeddings`` or ``lm_head`` applies to both, so memory (which counts the tensor once, as
    ``embeddings``: ``parameters.ParamCounts.lm_head`` is 0) and decode (whose head GEMM reads
    it as ``lm_head``) see one format. Both named and different: one line naming the two
    fields. Untied models and one-name values pass unchanged. Applied where the model and
    the scenario's formats meet (``specs.scenario.Scenario``), before ``with_kept_16bit``."""
    if not tied or not isinstance(value, dict):
        return value
    emb, head = value.get("embeddings"), value.get("lm_head")
    if emb is not None and head is not None and emb != head:
        raise SpecError(f"{field}.embeddings ({emb}) and {field}.lm_head ({head}): the model "
                        "ties its LM head to the word embedding (tie_embeddings), one tensor "
                        "in one format; name one of them, or both alike")
    one = emb if emb is not None else head
    return value if one is None else {**value, "embeddings": one, "lm_head": one}


def op_weight_class(op_name: str) -> str | None:
    """The weight class a GEMM operator's weight belongs to (None: no class, the default)."""
    for prefix, cls in _OP_PREFIXES:
        if op_name.startswith(prefix):
            return cls
    return None


def split_weight_dtype(value: Any) -> tuple[Any, dict[str, str]]:
    """A scenario's ``weight_dtype`` -> (default dtype, {class: dtype} overrides).

    One name passes through unchanged; a mapping needs ``default`` (or defaults to bf16) and
    classes from ``WEIGHT_CLASSES``. A ``KEPT_16BIT`` class the mapping names stays in the
    overrides even at the default's dtype (the scenario named it: ``with_kept_16bit`` leaves
    it). Bad input: one line naming the field and what is valid.
    """
    if not isinstance(value, dict):
        return value, {}
    field = "inference.weight_dtype"
    out: dict[str, str] = {}
    for cls, dtype in value.items():
        if cls != "default" and cls not in WEIGHT_CLASSES:
            raise SpecError(f"{field}: unknown tensor class {cls!r}; valid: default, "
                            f"{', '.join(WEIGHT_CLASSES)}")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SpecError(f"{field}.{cls}: unknown dtype {dtype!r}; valid: "
                            f"{', '.join(DTYPES)}")
        out[cls] = dtype
    default = out.pop("default", "bf16")
    return default, {c: d for c, d in out.items() if d != default or c in KEPT_16BIT}


def class_dtype(formats: dict[str, str] | tuple, cls: str | None, default: str) -> str:
    """The dtype of weight class ``cls`` (``formats`` as a dict or (class, dtype) pairs)."""
    table = dict(formats)
    return table.get(cls, default) if cls else default


def weight_byte_counts(pc: ParamCounts, default: str, formats: dict[str, str] | tuple = (),
                       group_size: int = 128) -> ParamCounts:
    """``pc`` with every count turned into BYTES at its class's format (scales included):
    ``stages.stage_params`` of the result gives the weight bytes one GPU holds, exactly per
    stage (embeddings on the first, the LM head on the last, experts split by EP)."""
    def b(cls: str | None) -> float:
        return quantized_weight_bytes(class_dtype(formats, cls, default), group_size)

    return replace(
        pc,
        word_embedding=pc.word_embedding * b("embeddings"),
        position_embedding=pc.position_embedding * b("embeddings"),
        embedding_norm=pc.embedding_norm * b(None),
        attention=pc.attention * b("attention"),
        attention_replicated=pc.attention_replicated * b("mla"),
        layer_norms=pc.layer_norms * b(None),
        dense_mlp=pc.dense_mlp * b("mlp"),
        expert=pc.expert * b("experts"),
        shared_experts=pc.shared_experts * b("shared_experts"),
        router=pc.router * b("router"),
        final_norm=pc.final_norm * b(None),
        lm_head=pc.lm_head * b("lm_head"),
        linear_attention_delta=pc.linear_attention_delta * b("attention"),
        hybrid_adjustment=pc.hybrid_adjustment * b("attention"),
        moe_latent_proj=pc.moe_latent_proj * b(None),
        indexer_adjustment=pc.indexer_adjustment * b("mla"),
    )


def model_weight_bytes(pc: ParamCounts, default: str, formats: dict[str, str] | tuple = (),
                       group_size: int = 128) -> float:
    """Bytes of all weights of a model (every tensor at its class's format)."""
    return float(weight_byte_counts(pc, default, formats, group_size).total)


def engine_weight_formats(formats: tuple, default: str, engine_id: str,
                          version: str | None = None, variant: str | None = None) -> tuple:
    """``formats`` ((class, dtype) pairs) as ``engine_id`` runs them: the router at the dtype
    the engine builds it in (engines/<id>.yaml ``moe.router_dtype``), whatever the checkpoint
    says. vLLM builds the DeepSeek-V2/V3 gate without a quantisation config
    (vllm/model_executor/models/deepseek_v2.py ``DeepseekV2MoE``: ``ReplicatedLinear(...,
    quant_config=None)``, later ``GateLinear`` with no quant_config), SGLang as its own
    ``MoEGate`` parameter (python/sglang/srt/models/deepseek_v2.py), TensorRT-LLM as
    ``DeepseekV3Gate.weight`` in the model dtype (tensorrt_llm/_torch/models/
    modeling_deepseekv3.py): an nvfp4 / fp8 checkpoint's router runs a bf16 GEMM. The generic
    engine (no file) keeps the checkpoint's formats. ``version`` / ``variant``: the release
    whose facts apply (engines.engine_facts)."""
    from .engines import engine_facts

    spec = engine_facts(engine_id, version, variant)
    if spec is None:
        return tuple(formats)
    router = spec.moe.router_dtype
    if router is None:
        return tuple(formats)
    table = dict(formats)
    table.pop("router", None)
    if router != default:
        table["router"] = router
    return tuple(sorted(table.items()))

# -- activations a MoE dispatch sends (issue 13) -------------------------------------------
#: Activation block layouts that differ from the weight layout of the same name (element bits,
#: elements per scale, scale bits): DeepEP's fp8 dispatch scales each token per 128 channels
#: with one fp32 scale (deepseek-ai/DeepEP tests/test_low_latency.py, ``hidden + hidden / 128
#: * 4`` bytes per token; DeepSeek-V3 arXiv 2412.19437 Sec. 3.3.2: 1 x 128 activation tiles).
#: NVFP4 / MXFP4 activations use the weights' 1-D blocks along the hidden dimension
#: (``dtypes.BLOCK_SCALED``: 16 e2m1 + one e4m3 scale, 32 e2m1 + one e8m0 scale); NVFP4's
#: per-tensor fp32 scale is a static input scale, not sent per token (TensorRT-LLM
#: ``fp4_quantize(x, fc31_input_scale, scaling_vector_size)``).
ACTIVATION_BLOCKS: dict[str, tuple[int, int, int]] = {"fp8": (8, 128, 32)}
#: dispatch formats that send the activations unquantised (the engines' name for it)
UNQUANTISED_DISPATCH = ("bf16", "fp16")


def dispatch_elem_bytes(fmt: str, act_bytes: float) -> float:
    """Bytes per hidden element a MoE dispatch sends in format ``fmt`` (scales included):
    ``bf16`` / ``fp16`` the activations as they are (``act_bytes``); ``fp8`` DeepEP's per-128
    -channel e4m3 (1 + 4/128 = 1.03125); ``nvfp4`` 0.5 + 1/16 = 0.5625; ``mxfp4`` 0.5 + 1/32 =
    0.53125 (``dtypes.BYTES``, whose block layout the activations share)."""
    if fmt in UNQUANTISED_DISPATCH:
        return float(act_bytes)
    if fmt in ACTIVATION_BLOCKS:
        bits, block, scale_bits = ACTIVATION_BLOCKS[fmt]
        return (bits + scale_bits / block) / 8.0
    if fmt in ("nvfp4", "mxfp4"):
        return BYTES[fmt]
    raise SpecError(f"moe dispatch format {fmt!r}: valid are "
                    f"{', '.join((*UNQUANTISED_DISPATCH, *ACTIVATION_BLOCKS, 'nvfp4', 'mxfp4'))}")


# -- which low-precision GEMMs a device runs natively (issue 13) ---------------------------
#: 16-bit activations the engines fall back to where a format has no tensor cores
WEIGHT_ONLY_ACTIVATION = "bf16"
#: the activation dtype the native GEMM of each narrow weight format an engine file states a
#: rule for takes (its keys are engines.RULE_FORMATS): W8A8 per-tensor / per-token, block W8A8
#: with 1 x 128 activation groups, W4A4 NVFP4, W4A8 MXFP4 x MXFP8 (TensorRT-LLM
#: W4A8_MXFP4_MXFP8, the 8-bit e4m3 activations modelled as fp8: the profiles' measured
#: w4a8_mxfp4_mxfp8 grouped-GEMM table, profile.MOE_MIXED)
RULE_ACTIVATION = {"fp8": "fp8", "fp8_block": "fp8_block", "nvfp4": "nvfp4", "mxfp4": "fp8"}
#: narrow weight formats whose native GEMM the model does not reach from 16-bit activations by
#: itself: ops.Precision.inference runs fp8 / nvfp4 weights on their tensor cores whatever
#: the activation dtype, but keeps MXFP4 weights weight-only (W4A16) unless the activations
#: are 8-bit. An engine rule ``with_tensor_cores: narrow`` for one of these replaces the
#: unasked default activation too (with a warning), not only a 16-bit one the scenario names
DEFAULT_REPLACED = ("mxfp4",)


def native_formats(device) -> tuple[str, ...]:
    """The sub-16-bit GEMM input formats ``device`` has tensor cores for: fp8 / fp8_block at a
    non-null ``peak_tflops.fp8``, int8 at ``int8``, nvfp4 / mxfp4 at ``fp4`` for the block
    layouts its ``fp4_formats`` lists (hardware_specs/devices/*.yaml; MI355X: MXFP4 only)."""
    peaks = device.peak_tflops
    out = []
    if peaks.get("fp8"):
        out += ["fp8", "fp8_block"]
    if peaks.get("int8"):
        out.append("int8")
    if peaks.get("fp4"):
        out += list(device.fp4_formats)
    return tuple(out)


def modelled_activation(activation_dtype: str, native: tuple[str, ...] | None,
                        wide: str = WEIGHT_ONLY_ACTIVATION) -> str:
    """The activation dtype the GEMMs run with: ``activation_dtype`` where the device has tensor
    cores for it (or ``native`` is None: no device), else the device's 16-bit activations
    (``wide``, ``wide_activation``) against dequantised weights, the engines' weight-only path
    there (vLLM ModelOptNvFp4LinearMethod picks Marlin W4A16 when neither FlashInfer nor
    CUTLASS fp4 runs, vllm/model_executor/layers/quantization/modelopt.py; Fp8LinearMethod
    Marlin W8A16 below SM 8.9, fp8.py)."""
    if native is None or nbytes(activation_dtype) >= 2 or activation_dtype in native:
        return activation_dtype
    return wide


def wide_activation(device) -> str:
    """The 16-bit dtype ``device`` computes in: bf16 where it has bf16 tensor cores, else fp16
    (V100, T4: vLLM's platform lists float16 / float32 only below compute capability 8.0,
    vllm/platforms/cuda.py ``supported_dtypes``, and casts a bf16 checkpoint to float16 there,
    logging "Your device 'Tesla T4' (with compute capability 7.5) doesn't support
    torch.bfloat16. Falling back to torch.float16 for compatibility.", vllm/config/model.py
    _resolve_auto_dtype), else fp32."""
    peaks = device.peak_tflops
    return next((f for f in ("bf16", "fp16") if peaks.get(f)), "fp32")


#: 16-bit activation dtypes: a scenario naming one of these asks for weight-only GEMMs
WIDE_ACTIVATIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class EngineActivation:
    """What the engine runs for the checkpoint on the device (``engine_activation``): the
    activation dtype its GEMMs take, whether narrow weights run weight-only, and a one-line
    note where the scenario's activation dtype was replaced (None where not)."""

    activation_dtype: str
    weight_only: bool
    note: str | None = None


def engine_activation(device, engine: str | None, version: str | None, variant: str | None,
                      weight_dtype: str, weight_formats, activation_dtype: str,
                      weight_only: bool) -> EngineActivation:
    """How ``engine`` runs a checkpoint in ``weight_dtype`` (and the classes of
    ``weight_formats``) on ``device``, from engines/<id>.yaml ``quantization.formats``
    (``engines.FormatRule``), one rule per narrow format and device capability:

    - the device has tensor cores for every narrow format of the checkpoint and the engine's
      rule is ``with_tensor_cores: narrow``: the narrow GEMM runs (W8A8 / W4A4, with the
      engine's activation quantise), so a 16-bit activation dtype the scenario names
      (``weight_only``) is replaced by the format's own (the engines have no weight-only path
      there: vLLM / SGLang Fp8LinearMethod take Marlin W8A16 only below SM 8.9 or when a
      test / environment switch forces it, TensorRT-LLM has no fp8 weight-only QuantAlgo);
    - the device lacks them: ``without_tensor_cores`` for its vendor, ``weight_only`` (the
      16-bit GEMM against dequantised weights, ``modelled_activation``) or ``refuse`` (a
      ``SpecError`` naming the device, engine and format);
    - no rule (``generic``, or a format the file does not state): the scenario as given.

    A checkpoint whose narrow formats need different activations (e.g. fp8 attention beside
    nvfp4 experts) is left as given."""
    from .engines import format_rule

    eng = engine or "generic"
    narrow = sorted({weight_dtype, *dict(weight_formats).values()} & set(RULE_ACTIVATION))
    keep = EngineActivation(activation_dtype, weight_only)
    if not narrow:
        return keep
    native = native_formats(device)
    rules = {f: format_rule(eng, f, version, variant) for f in narrow}
    for fmt, rule in rules.items():
        if fmt in native or rule is None:
            continue
        if rule.without_tensor_cores.get(str(device.vendor).lower()) == "refuse":
            at = f" {version}" if version else ""
            arch = f" {device.architecture}" if device.architecture else ""
            cores = {"nvfp4": "NVFP4", "mxfp4": "MXFP4"}.get(fmt, "fp8")
            raise SpecError(
                f"engine {eng}{at} does not run {fmt} weights on {device.id} ({device.vendor}"
                f"{arch}, no {cores} tensor cores): it refuses to load such a checkpoint there "
                f"(engines/{eng}.yaml quantization.formats.{fmt}.without_tensor_cores); use a "
                f"device with {cores} tensor cores, an engine that runs it weight-only, or "
                "another weight_dtype")
    if activation_dtype not in WIDE_ACTIVATIONS:
        return keep
    # fp8 / fp8_block / nvfp4: a 16-bit activation the scenario names is replaced (the engine
    # has no weight-only path there; the default already runs narrow). DEFAULT_REPLACED
    # formats: the unasked default is replaced, a 16-bit activation the scenario names is
    # kept (TensorRT-LLM's W4A16_MXFP4 through OVERRIDE_QUANT_ALGO, engines/trtllm.yaml
    # trtmxfp4algo: the user asked for the weight-only path the engine offers)
    if weight_only == all(f in DEFAULT_REPLACED for f in narrow):
        return keep
    if not all(f in native and r is not None and r.with_tensor_cores == "narrow"
               for f, r in rules.items()):
        return keep
    acts = {RULE_ACTIVATION[f] for f in narrow}
    if len(acts) != 1:
        return keep
    act = acts.pop()
    if act not in native:
        return keep
    kind = ("W4A4" if act == "nvfp4" else "W4A8 (MXFP8 activations, modelled as fp8)"
            if narrow == ["mxfp4"] else "W8A8")
    named = "activation_dtype" if weight_only else "the default activation_dtype"
    why = (f"it has no weight-only {'/'.join(narrow)} path on a device with those tensor "
           "cores" if weight_only else "its default on a device with those tensor cores")
    note = (f"engine {eng} runs {'/'.join(narrow)} weights on {device.id} as {kind}: "
            f"{named} {activation_dtype} is replaced by {act} (the engine quantises "
            f"the GEMM inputs itself; {why}, engines/{eng}.yaml quantization.formats)")
    return EngineActivation(act, False, note)


def dense_linear_formats(model, weight_dtype: str, weight_formats) -> set[str]:
    """The formats of ``model``'s dense linear layers (the linear classes it has, ``has`` below): the
    attention projections always, the MLA down-projections with MLA, the dense MLP where a
    layer is dense, the shared experts where it has them; never the routed experts, which run
    the engine's MoE method (vLLM: Mxfp4MoEMethod / Fp8MoEMethod, engines/<id>.yaml ``moe``),
    nor the router, embeddings or LM head (16-bit unless named, ``KEPT_16BIT``)."""
    has = {"attention": True, "mla": model.mla is not None,
           "mlp": model.moe is None or model.num_dense_layers > 0,
           "shared_experts": model.moe is not None and model.moe.num_shared_experts > 0}
    return {class_dtype(weight_formats, cls, weight_dtype) for cls, on in has.items() if on}


def emulated_formats(device, engine: str | None, version: str | None, variant: str | None,
                     weight_dtype: str, weight_formats, model) -> frozenset[str]:
    """The narrow weight formats of ``model``'s dense linear layers (``weight_dtype`` and the
    classes of ``weight_formats``, ``dense_linear_formats``) that ``engine`` emulates on ``device``: the device has no tensor
    cores for the format and the engine's rule for its vendor is ``emulated``
    (engines/<id>.yaml ``quantization.formats.<fmt>.without_tensor_cores``, a rule of dense
    linear layers: vLLM's QuarkOCP_MX). Such a linear layer dequantises its whole weight to 16
    bit in a kernel of its own on every call, then runs a 16-bit GEMM that reads the
    dequantised weight (``inference._with_emulated_gemms``, which leaves routed experts to
    their MoE method); empty for ``generic`` (no rule) and every other rule. gpt-oss (MXFP4
    experts, bf16 attention, no dense MLP) has none on MI300X: vLLM runs its experts with
    Mxfp4MoEMethod (matmul_ogs W4A16 on gfx942) and its linear layers unquantised."""
    from .engines import format_rule

    eng = engine or "generic"
    narrow = dense_linear_formats(model, weight_dtype, weight_formats) & set(RULE_ACTIVATION)
    if not narrow or eng == "generic":
        return frozenset()
    native = native_formats(device)
    vendor = str(device.vendor).lower()
    out = set()
    for fmt in narrow:
        rule = format_rule(eng, fmt, version, variant)
        if (fmt not in native and rule is not None
                and rule.without_tensor_cores.get(vendor) == "emulated"):
            out.add(fmt)
    return frozenset(out)


def asks_weight_only(inference) -> bool:
    """Whether an InferenceConfig names a 16-bit activation dtype itself (a weight-only request:
    W8A16 / W4A16 for narrow weights); the default bf16 it does not name asks nothing."""
    return ("activation_dtype" in inference.model_fields_set
            and inference.activation_dtype in WIDE_ACTIVATIONS)


def engine_activation_warning(device, engine, inference) -> str | None:
    """The one-line note of a scenario whose explicit 16-bit ``activation_dtype`` its engine
    replaces on ``device`` (``engine_activation``; ``engine`` the scenario's EngineConfig,
    ``inference`` its InferenceConfig), else None: for a prediction's warnings beside
    ``activation_format_warning`` (resolve.format_warnings)."""
    asked = asks_weight_only(inference)
    if not asked and inference.activation_dtype not in WIDE_ACTIVATIONS:
        return None
    return engine_activation(device, engine.name, engine.version, engine.variant,
                             inference.weight_dtype, tuple(inference.weight_formats.items()),
                             inference.activation_dtype, asked).note


def weight_format_warning(device, inference, model, engine=None) -> str | None:
    """One line where the scenario's weights are in a narrow format with tensor-core GEMMs
    somewhere (``engines.RULE_FORMATS``, the formats ``RULE_ACTIVATION`` keys) that ``device``
    has no tensor cores for, run with 16-bit activations: the weights shrink memory and the
    bytes read, the GEMMs compute as 16-bit (prefill as bf16), the engines' weight-only path
    (``modelled_activation``). The weights are ``weight_dtype`` / ``weight_formats`` as set on
    the scenario, a checkpoint's own formats included (``Scenario`` fills them in as set,
    ``_checkpoint_defaults``: the DeepSeek-V3 preset's fp8_block on A100, gpt-oss's mxfp4
    experts from its config.json on H100 warn as if named); a 16-bit default left unset
    does not. None otherwise, and where
    ``activation_format_warning`` already speaks of a narrow activation dtype. Formats the
    scenario's ``engine`` (its EngineConfig; None: not named) emulates there
    (``emulated_formats``, among ``model``'s dense linear layers only: routed experts run the
    engine's MoE method, not the dense rule) are said as such: each call dequantises
    the whole weight."""
    from .engines import RULE_FORMATS

    if nbytes(inference.activation_dtype) < 2:
        return None
    named = set()
    if "weight_dtype" in inference.model_fields_set:
        named.add(inference.weight_dtype)
    if "weight_formats" in inference.model_fields_set:
        named |= set(dict(inference.weight_formats).values())
    native = native_formats(device)
    missing = sorted(f for f in named & set(RULE_FORMATS) if f not in native)
    if not missing:
        return None
    peaks = sorted({"fp4" if f in ("nvfp4", "mxfp4") else "fp8" for f in missing})
    why = ", ".join(f"its fp4 peak runs {'/'.join(device.fp4_formats)} only"
                    if device.peak_tflops.get(p) else f"peak_tflops.{p} is null" for p in peaks)
    arch = f" ({device.architecture})" if device.architecture else ""
    emulated = sorted(emulated_formats(
        device, engine.name, engine.version, engine.variant, inference.weight_dtype,
        tuple(inference.weight_formats.items()), model) & set(missing)) if engine is not None else []
    only = [f for f in missing if f not in emulated]
    said = []
    if emulated:
        said.append(
            f"engine {engine.name} emulates {'/'.join(emulated)} there: every call dequantises "
            f"the whole weight to 16 bit in a kernel of its own and runs a 16-bit GEMM that "
            f"reads it again (engines/{engine.name}.yaml quantization.formats): the weights "
            f"cut memory only, each step reads more bytes than 16-bit weights would")
    if only:
        bits = "4" if all(f in ("nvfp4", "mxfp4") for f in only) else (
            "8" if all(f not in ("nvfp4", "mxfp4") for f in only) else "4/8")
        said.append(
            f"{'/'.join(only)} weights run weight-only (W{bits}A16 GEMMs against dequantised "
            f"weights): they cut weight memory and the bytes decode reads, not the GEMM "
            f"compute (prefill as {inference.activation_dtype})")
    return f"{device.id}{arch} has no {'/'.join(missing)} tensor cores ({why}): " + "; ".join(said)


def activation_format_warning(device, activation_dtype: str) -> str | None:
    """One line where ``device`` has no tensor cores for ``activation_dtype`` (its peak is
    null): what is modelled instead (``modelled_activation``)."""
    wide = wide_activation(device)
    if modelled_activation(activation_dtype, native_formats(device), wide) == activation_dtype:
        return None
    peak = "fp4" if activation_dtype in ("nvfp4", "mxfp4") else activation_dtype.split("_")[0]
    why = (f"its fp4 peak runs {'/'.join(device.fp4_formats)} only"
           if device.peak_tflops.get(peak) else f"peak_tflops.{peak} is null")
    return (f"{device.id} has no {activation_dtype} tensor cores ({why}): activation_dtype "
            f"{activation_dtype} is modelled as {wide} activations against "
            f"dequantised weights (weight-only W{8 if nbytes(activation_dtype) >= 1 else 4}A16 "
            "GEMMs)")
