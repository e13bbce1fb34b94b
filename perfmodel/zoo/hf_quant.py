"""Per-class weight formats of a HuggingFace checkpoint, read from its ``quantization_config``.

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
bf16 too. Each listed module (or glob / ``re:`` regex) is read by the module it names
(``_module_class``): a MoE router is a bare ``gate`` module (``mlp.gate``,
``block_sparse_moe.gate``, ``mixer.gate``) or ``router``, a dense MLP's gate is ``gate_proj``,
so ``model.layers.*.mlp.gate`` (Qwen3-235B-A22B-NVFP4) is the router even in an
hf_quant_config.json that carries no shapes. A module pattern excludes its class when it
has a wildcard layer (``layers.*``) or names the class in at least half of the layers;
exclusions of a few layers (e.g. Llama-3.1-405B-FP8's first and last blocks) cannot be said
per class and are left out (the class keeps the quantised format).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# module-name fragments -> weight class (perfmodel.formats.WEIGHT_CLASSES), first match wins
_MODULE_CLASSES: tuple[tuple[str, str], ...] = (
    ("lm_head", "lm_head"), ("embed_tokens", "embeddings"), ("wte", "embeddings"),
    ("q_a_proj", "mla"), ("kv_a_proj", "mla"), ("indexer", "mla"),
    ("self_attn", "attention"), ("attention", "attention"), ("attn", "attention"),
    ("shared_expert_gate", "router"), ("shared_expert", "shared_experts"),
    ("experts", "experts"),
)
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
    for frag, cls in _MODULE_CLASSES:
        if frag in name:
            return cls
    if re.search(r"(^|[.*])mlp(\.|\*|$)", name):
        return "mlp"
    return None


def _excluded_classes(modules: list[Any], num_layers: int) -> set[str]:
    """Classes a not-convert / ignore list keeps unquantised (see the module docstring)."""
    layers: dict[str, set[str]] = {}
    out: set[str] = set()
    for name in modules:
        if not isinstance(name, str):
            continue
        name = name.removeprefix("re:").replace("\\.", ".")  # a regex: its dots literal
        if "norm" in name:  # norms are not linears (Qwen3-FP8 lists its layernorms)
            continue
        cls = _module_class(name)
        if cls is None:
            continue
        layer = _LAYER.search(name)
        if layer is None or layer.group(1) == "*" or ".*" in name:
            out.add(cls)
        else:
            layers.setdefault(cls, set()).add(layer.group(1))
    out |= {c for c, idx in layers.items() if len(idx) * 2 >= max(num_layers, 1)}
    return out


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
        table = {"FP8": "fp8", "FP8_BLOCK_SCALES": "fp8_block", "NVFP4": "nvfp4",
                 "W4A16_AWQ": "int4", "W4A8_AWQ": "int4", "MXFP4": "mxfp4",
                 "W4A8_MXFP4_FP8": "mxfp4", "W4A16_MXFP4": "mxfp4"}
        return table.get(algo), skip
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


def checkpoint_formats(config: Mapping[str, Any]) -> dict[str, str] | None:
    """{"default": dtype, class: dtype, ...} of a checkpoint's weights from its
    ``quantization_config`` (or an hf_quant_config.json ``quantization`` block), None when
    the config has none or names a method this module does not know."""
    q = config.get("quantization_config") or config.get("quantization")
    text = config.get("text_config")
    if not isinstance(q, Mapping) and isinstance(text, Mapping):
        q = text.get("quantization_config")
    if not isinstance(q, Mapping):
        return None
    dtype, skip = _quantized_dtype(q)
    if dtype is None:
        return None
    cfg = text if isinstance(text, Mapping) and "num_hidden_layers" in text else config
    layers = int(cfg.get("num_hidden_layers") or 0)
    moe = any(k in cfg for k in ("num_local_experts", "num_experts", "n_routed_experts"))
    formats = {"default": dtype, "embeddings": "bf16", "lm_head": "bf16"}
    for cls in sorted(_excluded_classes(skip, layers)):
        formats[cls] = "bf16"
    # routed experts in their own format: a mixed-precision modelopt checkpoint's
    # ``moe_quant_algo`` (NVIDIA DeepSeek-V4 NVFP4: fp8 block elsewhere), or DeepSeek-V4's
    # ``expert_dtype`` "fp4" (its reference Expert runs fp4 weights with a ue8m0 scale per
    # 32, i.e. MXFP4: DeepSeek inference/model.py ``fp4_block_size = 32``)
    experts = _MOE_ALGOS.get(str(q.get("moe_quant_algo") or "").upper())
    if experts is None and cfg.get("expert_dtype") == "fp4":
        experts = "mxfp4"
    if moe and experts:
        formats["experts"] = experts
    return formats


_MOE_ALGOS = {"NVFP4": "nvfp4", "MXFP4": "mxfp4", "FP8": "fp8", "FP8_BLOCK_SCALES": "fp8_block"}
