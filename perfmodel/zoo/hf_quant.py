"""Per-class weight formats of a HuggingFace checkpoint, read from its ``quantization_config``
or from the ModelOpt ``hf_quant_config.json`` beside it (``checkpoint_formats(config,
descriptor)``; MIXED_PRECISION ``quantized_layers`` read per module, ``_mixed_formats``), and
its KV-cache format (``kv_cache_format``). User-facing rules: docs/models.md.

What the config says (examples in tests/data/hf_configs/aiconfigurator-0.12.0):

* gpt-oss: ``{"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn",
  "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}``: MXFP4 experts, the rest
  bf16 (transformers ``Mxfp4HfQuantizer``).
* fp8 (transformers ``FineGrainedFP8``; DeepSeek-V3, Qwen3-FP8, GLM-5-FP8):
  ``{"quant_method": "fp8", "weight_block_size": [128, 128], "modules_to_not_convert": [...]}``:
  a block size means 128 x 128 block scales (``fp8_block``), none per-tensor ``fp8``.
* ``fbgemm_fp8`` (Meta-Llama-3.1-405B-Instruct-FP8): per-row fp8, ``modules_to_not_convert``.
* compressed-tensors (Neural Magic / llm-compressor): ``config_groups.*.weights``
  {``num_bits``, ``type``} and ``ignore``.
* ModelOpt (``quant_method: modelopt`` or an hf_quant_config.json ``quantization`` block):
  ``quant_algo`` FP8 / NVFP4 / W4A16_AWQ / W4A8_AWQ and ``exclude_modules``.
* AWQ / GPTQ: ``bits`` 4 or 8 (integer weight-only with group scales).

These quantizers replace ``nn.Linear`` modules only, so word embeddings stay in the
checkpoint dtype (bf16) whatever the lists say, and they keep the output projection in full
precision by default (transformers ``get_keys_to_not_convert``: the LM head "for numerical
stability"; huggingface/transformers src/transformers/quantizers/base.py), so ``lm_head`` is
bf16 too, unless a GPTQ config says ``lm_head: true`` (GPTQModel quantised it). Each listed module (or glob / ``re:`` regex) is read by the module it names
(``_module_class``): a MoE router is a bare ``gate`` module (``mlp.gate``,
``block_sparse_moe.gate``, ``mixer.gate``) or ``router``, a dense MLP's gate is ``gate_proj``,
so ``model.layers.*.mlp.gate`` (Qwen3-235B-A22B-NVFP4) is the router even in an
hf_quant_config.json that carries no shapes. A module pattern excludes its class when it
has a wildcard layer (``layers.*``) or names the class in at least half of the layers;
exclusions of a few layers (e.g. Llama-3.1-405B-FP8's first and last blocks) cannot be said
per class and are left out (the class keeps the quantised format). A pattern that names the
attention module as a whole (``self_attn*``) covers every projection in it, in whichever class
it lives: the TP-sharded ``attention`` class and the replicated ``mla`` one (MLA
down-projections, DSA indexer), weighed per module once the model is built
(``excluded_attention_projections``, ``resolve_attention_split``).

A quantization block is checked before it is read (``check_descriptor`` for
hf_quant_config.json, ``check_quantization_config`` for config.json): a field of the wrong
type or a method / algorithm this module does not know is a SpecError naming the field.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..errors import SpecError
from ..parameters import attention_projections
from ..specs.types import show

# module-name fragments -> weight class (perfmodel.formats.WEIGHT_CLASSES), first match wins
_MODULE_CLASSES: tuple[tuple[str, str], ...] = (
    ("lm_head", "lm_head"), ("embed_tokens", "embeddings"), ("wte", "embeddings"),
    ("embeddings", "embeddings"),  # Nemotron-H ``backbone.embeddings``
    ("q_a_proj", "mla"), ("kv_a_proj", "mla"), ("indexer", "mla"),
    ("self_attn", "attention"), ("attention", "attention"), ("attn", "attention"),
    ("shared_expert_gate", "router"), ("shared_expert", "shared_experts"),
    ("experts", "experts"),
    # a Nemotron-H block's mixer that is neither router nor experts: the Mamba in / out
    # projections or the attention of an attention block (ParamCounts counts both as attention)
    ("mixer", "attention"),
)
# DeepSeek-V4's own module names: ``head`` is the LM head, ``embed`` the word embedding
_BARE = {"head": "lm_head", "embed": "embeddings"}
# the module a MoE block's router is: Mixtral / MiniMax ``block_sparse_moe.gate``, DeepSeek /
# Qwen-MoE ``mlp.gate``, gpt-oss ``mlp.router``, Gemma-4 ``router``, Nemotron-H ``mixer.gate``
# (a dense MLP's gate is ``gate_proj`` / ``gate_up_proj``: never a bare "gate" module)
_ROUTER = re.compile(r"(^|[.*])(router|(mlp|block_sparse_moe|feed_forward|mixer|ffn)\.gate)"
                     r"(\.|\*|$)")
_LAYER = re.compile(r"layers\.(\d+|\*)\.")


def _module_class(name: str) -> str | None:
    """The weight class a module name (or ModelOpt / compressed-tensors glob) covers, by the
    module it names: the router by its own module name (``_ROUTER``), whatever the config
    says about the model (an hf_quant_config.json has no shapes), else the first fragment of
    ``_MODULE_CLASSES``, else ``mlp`` for a module under ``mlp``."""
    if _ROUTER.search(name):
        return "router"
    if name.rstrip("*.") in _BARE:
        return _BARE[name.rstrip("*.")]
    for frag, cls in _MODULE_CLASSES:
        if frag in name:
            return cls
    if re.search(r"(^|[.*])mlp(\.|\*|$)", name):
        return "mlp"
    return None


# a pattern that names a whole attention module rather than one projection in it
# (``model.layers.*.self_attn``, ``...self_attn*``, ``re:.*self_attn.*``, DeepSeek-V4 ``*.attn.*``)
_WHOLE_ATTENTION = re.compile(r"(^|[.*])(self_attn|linear_attn|self_attention|attention|attn)"
                              r"[.*]*$")
# what ``excluded_attention_projections`` answers for a whole-module pattern
WHOLE = "*"


def _covered(modules: list[Any], num_layers: int, keys: Any) -> set[str]:
    """The keys (``keys(name)``: classes or projections) a not-convert / ignore list covers
    across the model: a name with a wildcard layer (``layers.*``, a regex ``.*``) or none, or
    names of one key in at least half of the layers (module docstring)."""
    layers: dict[str, set[str]] = {}
    out: set[str] = set()
    for name in modules:
        if not isinstance(name, str):
            continue
        name = name.removeprefix("re:").replace("\\.", ".")  # a regex: its dots literal
        if "norm" in name or "conv1d" in name:  # not linears (Qwen3-FP8 lists its layernorms,
            continue  # Nemotron-H its Mamba conv1d)
        layer = _LAYER.search(name)
        for key in keys(name):
            if layer is None or layer.group(1) == "*" or ".*" in name:
                out.add(key)
            else:
                layers.setdefault(key, set()).add(layer.group(1))
    return out | {k for k, idx in layers.items() if len(idx) * 2 >= max(num_layers, 1)}


def _excluded_classes(modules: list[Any], num_layers: int) -> set[str]:
    """Classes a not-convert / ignore list keeps unquantised (see the module docstring)."""
    return _covered(modules, num_layers,
                    lambda name: (cls,) if (cls := _module_class(name)) else ())


# ModelOpt ``quant_algo`` (hf_quant_config.json, or config.json ``quantization_config`` of
# quant_method modelopt) -> the weight format this project stores it as. Names as ModelOpt
# writes them (tensorrt_llm/quantization/mode.py ``QuantAlgo``; the aiconfigurator-0.12.0
# descriptors): W4A16_NVFP4 / W4A8_NVFP4_FP8 keep NVFP4 weights (the activation half of the
# name is a run-time choice); MXFP8 (MiniMax-M3-NVFP4) is stored as fp8 here, i.e. without its
# e8m0 scale per 32 elements (1/32 B per weight, 3 % of those tensors' bytes: dtypes has no
# mxfp8); W4A16_AWQ / W4A8_AWQ are int4 with group scales (``quant_group_size``).
_MODELOPT_ALGOS = {
    "FP8": "fp8", "FP8_BLOCK_SCALES": "fp8_block", "FP8_PER_CHANNEL_PER_TOKEN": "fp8",
    "MXFP8": "fp8", "NVFP4": "nvfp4", "W4A16_NVFP4": "nvfp4", "W4A8_NVFP4_FP8": "nvfp4",
    "W4A16_AWQ": "int4", "W4A8_AWQ": "int4", "MXFP4": "mxfp4", "W4A8_MXFP4_FP8": "mxfp4",
    "W4A8_MXFP4_MXFP8": "mxfp4", "W4A16_MXFP4": "mxfp4", "W8A8_SQ_PER_CHANNEL": "int8",
}
# kv_cache_quant_algo -> KV-cache format (``InferenceConfig.kv_dtype``)
_KV_ALGOS = {"FP8": "fp8", "NVFP4": "nvfp4", "INT8": "int8"}
# moe_quant_algo -> the routed experts' format
_MOE_ALGOS = {"NVFP4": "nvfp4", "MXFP4": "mxfp4", "FP8": "fp8", "FP8_BLOCK_SCALES": "fp8_block"}
MIXED = "MIXED_PRECISION"


def _quantized_dtype(q: Mapping[str, Any]) -> tuple[str | None, list[Any]]:
    """(dtype of the quantised linears, not-convert list) of a quantization_config."""
    method = str(q.get("quant_method") or "").lower()
    skip = list(q.get("modules_to_not_convert") or q.get("ignored_layers") or q.get("ignore")
                or q.get("exclude_modules") or [])
    if method == "mxfp4":
        return "mxfp4", skip
    if method == "fp8":
        return ("fp8_block" if q.get("weight_block_size") else "fp8"), skip
    if method in ("fbgemm_fp8", "fp8_dynamic"):
        return "fp8", skip
    algo = str(q.get("quant_algo") or "").upper()
    if method == "modelopt" or algo:
        return _MODELOPT_ALGOS.get(algo), skip
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
        return {4: "int4", 8: "int8"}.get(q.get("bits") or q.get("w_bit")), skip
    if method == "compressed-tensors":
        for group in (q.get("config_groups") or {}).values():
            w = group.get("weights") if isinstance(group, Mapping) else None
            if isinstance(w, Mapping):
                bits, kind = w.get("num_bits"), str(w.get("type") or "")
                if kind == "float" and bits == 8:
                    return ("fp8_block" if w.get("strategy") == "block" else "fp8"), skip
                if kind == "float" and bits == 4:  # 32-element groups: MXFP4 (Kimi K3
                    # "mxfp4-pack-quantized", uint8 e8m0 scales), else NVFP4's 16
                    mx = w.get("group_size") == 32 or "mxfp4" in str(q.get("format") or "")
                    return ("mxfp4" if mx else "nvfp4"), skip
                if kind == "int":
                    return {4: "int4", 8: "int8"}.get(bits), skip
    return None, skip


def _base_formats(q: Mapping[str, Any] | None) -> dict[str, str]:
    """What a ModelOpt descriptor's excluded (and unlisted) modules stay at: the checkpoint
    the descriptor was applied to. A config.json whose ``quant_method`` is another method
    (DeepSeek-V4-*-NVFP4: ``fp8`` with 128 x 128 blocks, the released base checkpoint's
    format) keeps that format; otherwise the checkpoint dtype (bf16). Embeddings and LM
    head are bf16 in either (module docstring)."""
    dtype = None
    if isinstance(q, Mapping) and str(q.get("quant_method") or "").lower() not in (
            "", "modelopt"):
        dtype, _ = _quantized_dtype({"quant_method": q.get("quant_method"),
                                     "weight_block_size": q.get("weight_block_size"),
                                     "bits": q.get("bits"), "w_bit": q.get("w_bit"),
                                     "config_groups": q.get("config_groups"),
                                     "format": q.get("format")})
    return {"default": dtype or "bf16", "embeddings": "bf16", "lm_head": "bf16"}


def _mixed_formats(q: Mapping[str, Any], base: dict[str, str],
                   num_layers: int) -> dict[str, str]:
    """Per-class formats of a ModelOpt ``MIXED_PRECISION`` descriptor: ``quantized_layers``
    maps each quantised module (one per layer and projection, e.g.
    ``model.language_model.layers.3.linear_attn.in_proj_qkv: {quant_algo: FP8}``) to its
    algorithm. Every module is read by the class it names (``_module_class``); a class takes
    the format most of its listed modules have (the formats are per class, not per layer:
    e.g. Nemotron-3.5-Lightning lists its Mamba in / out projections FP8 and excludes the
    q/k/v/o of its 6 attention blocks, all ``attention`` here, which is then FP8). Classes
    neither listed nor excluded, and excluded ones, stay at ``base``."""
    votes: dict[str, Counter[str]] = {}
    for name, entry in (q.get("quantized_layers") or {}).items():
        if not isinstance(name, str) or not isinstance(entry, Mapping):
            continue
        dtype = _MODELOPT_ALGOS.get(str(entry.get("quant_algo") or "").upper())
        cls = _module_class(name)
        if dtype is not None and cls is not None:
            votes.setdefault(cls, Counter())[dtype] += 1
    formats = dict(base)
    for cls in _excluded_classes(list(q.get("exclude_modules") or q.get("ignore") or []),
                                 num_layers):
        formats[cls] = base.get(cls, base["default"])
    for cls, counts in votes.items():
        formats[cls] = counts.most_common(1)[0][0]
    return formats


def _quant_block(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A config.json's ``quantization_config`` (or its ``text_config``'s), or an
    hf_quant_config.json's ``quantization`` block."""
    q = config.get("quantization_config") or config.get("quantization")
    text = config.get("text_config")
    if not isinstance(q, Mapping) and isinstance(text, Mapping):
        q = text.get("quantization_config")
    return q if isinstance(q, Mapping) else None


# what each field of a quantization block this module reads must be (hf_quant_config.json
# ``quantization``, config.json ``quantization_config``)
_BLOCK_FIELDS: dict[str, tuple[type, str]] = {
    "quant_method": (str, "a method name (e.g. fp8, modelopt, compressed-tensors)"),
    "quant_algo": (str, "an algorithm name (e.g. NVFP4, FP8, MIXED_PRECISION)"),
    "kv_cache_quant_algo": (str, "an algorithm name (e.g. FP8)"),
    "moe_quant_algo": (str, "an algorithm name (e.g. NVFP4)"),
    "fmt": (str, "an fp8 element format (e.g. e4m3)"),
    "weight_block_size": (list, "a list of block sides (e.g. [128, 128])"),
    "modules_to_not_convert": (list, "a list of module names"),
    "ignored_layers": (list, "a list of module names"),
    "exclude_modules": (list, "a list of module names"),
    "ignore": (list, "a list of module names"),
    "config_groups": (Mapping, "a mapping of group name -> {weights: ...}"),
    "quantized_layers": (Mapping, "a mapping of module name -> {quant_algo: ...}"),
}
# the methods ``_quantized_dtype`` reads (transformers quantizer names, lower case)
_METHODS = ("mxfp4", "fp8", "fbgemm_fp8", "fp8_dynamic", "modelopt", "awq", "gptq",
            "awq_marlin", "gptq_marlin", "compressed-tensors")
# fp8 element formats a ``quant_method: fp8`` config names (DeepSeek-V3 "e4m3", transformers
# FineGrainedFP8 "float8_e4m3fn"; torch.float8_e5m2 the other 1-byte fp8): all 1 byte here
_FP8_FMTS = ("e4m3", "float8_e4m3fn", "e5m2", "float8_e5m2")
# names a ``kv_cache_quant_algo`` may take beside _KV_ALGOS: no KV quantisation
_KV_NONE = ("AUTO",)


def _one_of(where: str, field: str, value: str, valid: Any) -> None:
    if value not in valid:
        raise SpecError(f"{where}: '{field}' is {value!r}, not one this project knows; valid: "
                        f"{', '.join(valid)}")


def _check_block(q: Any, where: str, prefix: str) -> None:
    """SpecError naming ``prefix.field`` when a quantization block is not what
    ``checkpoint_formats`` / ``kv_cache_format`` read: ``_BLOCK_FIELDS`` null or of their
    type, module lists of names (a string would be read one character at a time), methods
    and algorithms this module knows (an unknown one gave no formats, i.e. bf16, silently)
    and ``quantized_layers`` entries that are mappings with a known ``quant_algo``."""
    if not isinstance(q, Mapping):
        raise SpecError(f"{where}: '{prefix}' must be a mapping (quant_method / quant_algo, "
                        f"...), got {show(q)}")
    for key, (kind, what) in _BLOCK_FIELDS.items():
        value = q.get(key)
        if value is not None and not isinstance(value, kind):
            raise SpecError(f"{where}: '{prefix}.{key}' must be {what}, got {show(value)}")
    for key in ("modules_to_not_convert", "ignored_layers", "exclude_modules", "ignore"):
        for name in q.get(key) or ():
            if not isinstance(name, str):
                raise SpecError(f"{where}: '{prefix}.{key}' must list module names "
                                f"(strings), got {show(name)}")
    method = q.get("quant_method")
    if method is not None:
        _one_of(where, f"{prefix}.quant_method", method.lower(), _METHODS)
        if method.lower() == "fp8" and q.get("fmt") is not None:
            _one_of(where, f"{prefix}.fmt", q["fmt"], _FP8_FMTS)
    if q.get("quant_algo") is not None:
        _one_of(where, f"{prefix}.quant_algo", q["quant_algo"].upper(),
                (*_MODELOPT_ALGOS, MIXED))
    if q.get("kv_cache_quant_algo") is not None:
        _one_of(where, f"{prefix}.kv_cache_quant_algo", q["kv_cache_quant_algo"].upper(),
                (*_KV_ALGOS, *_KV_NONE))
    if q.get("moe_quant_algo") is not None:
        _one_of(where, f"{prefix}.moe_quant_algo", q["moe_quant_algo"].upper(), _MOE_ALGOS)
    for name, entry in (q.get("quantized_layers") or {}).items():
        if not (isinstance(entry, Mapping) and isinstance(entry.get("quant_algo"), str)):
            raise SpecError(f"{where}: '{prefix}.quantized_layers.{name}' must be a "
                            f"mapping with a string quant_algo, got {show(entry)}")
        _one_of(where, f"{prefix}.quantized_layers.{name}.quant_algo",
                entry["quant_algo"].upper(), tuple(_MODELOPT_ALGOS))


def check_descriptor(descriptor: Any) -> None:
    """SpecError naming the field when a ModelOpt hf_quant_config.json is not what
    ``checkpoint_formats`` / ``kv_cache_format`` read (``_check_block`` of its
    ``quantization`` mapping)."""
    where = "the quantisation descriptor (hf_quant_config.json)"
    if not (isinstance(descriptor, Mapping) and isinstance(descriptor.get("quantization"),
                                                            Mapping)):
        raise SpecError(f"{where} has no 'quantization' mapping (quant_algo, "
                        "exclude_modules, ...)")
    _check_block(descriptor["quantization"], where, "quantization")


def check_quantization_config(config: Mapping[str, Any]) -> None:
    """SpecError naming the field when a config.json's own ``quantization_config`` (or its
    ``text_config``'s) is not what this module reads: the checks hf_quant_config.json gets
    (``_check_block``)."""
    where = "the config's quantization_config"
    text = config.get("text_config")
    for prefix, block in (("quantization_config", config.get("quantization_config")),
                          ("text_config.quantization_config",
                           text.get("quantization_config") if isinstance(text, Mapping)
                           else None)):
        if block is not None:
            _check_block(block, where, prefix)


def checkpoint_formats(config: Mapping[str, Any],
                       descriptor: Mapping[str, Any] | None = None) -> dict[str, str] | None:
    """{"default": dtype, class: dtype, ...} of a checkpoint's weights from its
    ``quantization_config`` (or an hf_quant_config.json ``quantization`` block), None when
    the config has none or names a method this module does not know.

    ``descriptor``: the checkpoint's hf_quant_config.json (ModelOpt) beside ``config``; its
    ``quantization`` block then says how the checkpoint is quantised, and the modules it
    excludes stay at what the config.json's own format is (``_base_formats``)."""
    own = _quant_block(config)
    q = _quant_block(descriptor) if descriptor is not None else own
    if q is None:
        return None
    text = config.get("text_config")
    cfg = text if isinstance(text, Mapping) and "num_hidden_layers" in text else config
    layers = int(cfg.get("num_hidden_layers") or 0)
    if str(q.get("quant_algo") or "").upper() == MIXED:
        formats = _mixed_formats(q, _base_formats(own), layers)
    else:
        dtype, skip = _quantized_dtype(q)
        if dtype is None:
            return None
        base = _base_formats(own if q is not own else None)
        formats = {**base, "default": dtype}
        if (str(q.get("quant_method") or "").lower() in ("gptq", "gptq_marlin")
                and q.get("lm_head") is True):
            # GPTQModel quantises the LM head too when asked (ModelCloud/GPTQModel
            # gptqmodel/quantization/config.py ``BaseQuantizeConfig.lm_head: bool =
            # field(default=False)`` @ 007b79308764, saved into quantization_config)
            formats["lm_head"] = dtype
        for cls in sorted(_excluded_classes(skip, layers)):
            formats[cls] = base.get(cls, base["default"])
    moe = any(k in cfg for k in ("num_local_experts", "num_experts", "n_routed_experts"))
    # routed experts in their own format: a mixed-precision modelopt checkpoint's
    # ``moe_quant_algo`` (NVIDIA DeepSeek-V4 NVFP4: fp8 block elsewhere), or DeepSeek-V4's
    # ``expert_dtype`` "fp4" (its reference Expert runs fp4 weights with a ue8m0 scale per
    # 32, i.e. MXFP4: DeepSeek inference/model.py ``fp4_block_size = 32``)
    experts = _MOE_ALGOS.get(str(q.get("moe_quant_algo") or "").upper())
    if experts is None and cfg.get("expert_dtype") == "fp4" and "experts" not in formats:
        experts = "mxfp4"
    if moe and experts:
        formats["experts"] = experts
    default = formats["default"]
    return {"default": default, **{c: d for c, d in sorted(formats.items())
                                   if c != "default" and (d != default or c in
                                                          ("embeddings", "lm_head"))}}


def kv_cache_format(config: Mapping[str, Any],
                    descriptor: Mapping[str, Any] | None = None) -> str | None:
    """The KV-cache format a checkpoint is calibrated for: ModelOpt ``kv_cache_quant_algo``
    (FP8 / NVFP4 / INT8, in hf_quant_config.json or a modelopt quantization_config) or
    compressed-tensors ``kv_cache_scheme`` {num_bits 8, type float}; None when it names none
    (``null``, ``"auto"`` or absent: the KV cache stays at the activation dtype)."""
    for source in (descriptor, config):
        q = _quant_block(source) if source is not None else None
        if q is None:
            continue
        algo = str(q.get("kv_cache_quant_algo") or "").upper()
        if algo in _KV_ALGOS:
            return _KV_ALGOS[algo]
        scheme = q.get("kv_cache_scheme")
        if isinstance(scheme, Mapping) and scheme.get("num_bits") == 8:
            return "fp8" if scheme.get("type") == "float" else "int8"
        if descriptor is not None and source is descriptor:
            return None  # the descriptor says how the checkpoint is quantised
    return None



# attention projections an exclusion list may name one by one (``...self_attn.q_b_proj``),
# by their parameters.attention_projections names: the TP-sharded ``attention`` class (Kimi
# K3's MLA output gate g_proj) and the replicated ``mla`` class (down-projections, indexer)
_ATTN_PROJ = re.compile(r"[.*](q_proj|k_proj|v_proj|o_proj|q_b_proj|kv_b_proj|g_proj|q_a_proj"
                        r"|kv_a_proj_with_mqa|indexer)\*?$")


def excluded_attention_projections(config: Mapping[str, Any],
                                   descriptor: Mapping[str, Any] | None = None
                                   ) -> set[str] | None:
    """The attention modules an exclusion list keeps unquantised, by the projection each
    pattern names (nvidia/DeepSeek-V3.1-NVFP4: every layer's ``q_a_proj``,
    ``kv_a_proj_with_mqa``, ``q_b_proj`` and ``kv_b_proj``, not ``o_proj``), ``WHOLE`` for a
    pattern naming the whole module (``self_attn*``: every projection in it, whichever class
    holds it), with the layer rule of ``_excluded_classes``. None when it names no attention
    module, names one this module cannot weigh (Nemotron-H's Mamba ``in_proj``: the class
    decision stands), or the file is MIXED_PRECISION (its list is per module already)."""
    q = _quant_block(descriptor) if descriptor is not None else _quant_block(config)
    if q is None or str(q.get("quant_algo") or "").upper() == MIXED:
        return None
    _, skip = _quantized_dtype(q)
    unweighable = False

    def target(name: str) -> tuple[str, ...]:
        nonlocal unweighable
        if _module_class(name) not in ("attention", "mla"):
            return ()
        if _WHOLE_ATTENTION.search(name):
            return (WHOLE,)
        match = _ATTN_PROJ.search(name)
        unweighable |= match is None
        return (match.group(1),) if match else ()

    text = config.get("text_config")
    cfg = text if isinstance(text, Mapping) and "num_hidden_layers" in text else config
    projections = _covered(skip, int(cfg.get("num_hidden_layers") or 0), target)
    return None if unweighable or not projections else projections


def resolve_attention_split(formats: dict[str, str], projections: set[str] | None,
                            spec: Any) -> dict[str, str]:
    """``formats`` with each attention class (``attention``: the TP-sharded projections,
    ``mla``: the replicated ones; ``parameters.attention_projections``) at the format of the
    larger share of its weights, from the projections an exclusion list names
    (``excluded_attention_projections``; ``WHOLE``: all of them). DeepSeek-V3.1-NVFP4 keeps
    q_b / kv_b (32 % of the attention class) bf16 and quantises o_proj (68 %), so that class
    is NVFP4 (per class, not per projection: docs/models.md "Known limits"); a ``self_attn*``
    pattern keeps both classes at the base format (Kimi-K2.5-NVFP4: its q_a_proj,
    kv_a_proj_with_mqa are bf16 in the checkpoint); a class the model has no weights in is
    dropped (gpt-oss: no ``mla``). A name the model has no module for leaves ``formats``."""
    if not projections:
        return formats
    sharded, replicated = attention_projections(spec)
    modules = set(sharded) | set(replicated)
    named = modules if WHOLE in projections else set(projections)
    if not named <= modules:
        return formats
    # what the exclusion keeps: the attention class's format (checkpoint_formats excludes it
    # for any pattern under self_attn), at the base checkpoint's format
    excluded = formats.get("attention", formats["default"])
    out = dict(formats)
    for cls, params in (("attention", sharded), ("mla", replicated)):
        kept = sum(params[p] for p in named & set(params))
        if 2 * kept < sum(params.values()) or not kept:
            out.pop(cls, None)  # the class follows the quantised default
        elif excluded != formats["default"]:
            out.setdefault(cls, excluded)
    return out
