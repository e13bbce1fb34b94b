"""Import a HuggingFace ``config.json`` as a ModelSpec.

Each supported ``model_type`` maps the config keys onto the weight shapes that the matching
transformers modeling file builds, so the imported spec counts exactly the parameters of the
released checkpoint (tests/data/hf_configs/ holds real configs with their expected counts).
Keys the count does not depend on (dropout, token ids, RoPE scaling, ...) are ignored, and so
is the ``_source`` citation that the test fixtures carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..specs.common import validate
from ..specs.model import ModelSpec
from ..specs.registry import read_mapping
from ..specs.types import show

_MISSING = object()


class _Config:
    """Read access to one config.json that names the key and model_type when one is missing."""

    def __init__(self, data: Mapping[str, Any], model_type: str) -> None:
        self.data = data
        self.model_type = model_type

    def get(self, *keys: str, default: Any = None) -> Any:
        """First key (aliases in order) present with a non-null value, else ``default``; the
        value must have the key's JSON type (``JSON_TYPES``)."""
        for key in keys:
            if self.data.get(key) is not None:
                return check_json_type(key, self.data[key])
        return default

    def req(self, *keys: str) -> Any:
        value = self.get(*keys, default=_MISSING)
        if value is _MISSING:
            alias = f" (or {', '.join(repr(k) for k in keys[1:])})" if len(keys) > 1 else ""
            raise SpecError(
                f"HF config of model_type {self.model_type!r} is missing the key "
                f"{keys[0]!r}{alias}"
            )
        return value


# The JSON type of every config key the builders read: a config with ``"n_embd": "768"`` or
# ``"tie_word_embeddings": "false"`` is an error naming the key, never 768768768768 or True.
_INT_KEYS = (
    "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
    "head_dim", "intermediate_size", "vocab_size", "max_position_embeddings",
    "num_local_experts", "num_experts_per_tok", "shared_expert_intermediate_size",
    "num_experts", "moe_intermediate_size", "decoder_sparse_step", "q_lora_rank",
    "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
    "n_shared_experts", "first_k_dense_replace", "moe_layer_freq", "n_embd", "n_layer",
    "n_head", "n_inner", "n_positions", "n_ctx", "ffn_dim", "word_embed_proj_dim", "n_embed",
    "seq_length", "num_kv_heads", "n_head_kv", "num_ln_in_parallel_attn", "ffn_hidden_size",
    "d_model", "n_layers", "n_heads", "max_seq_len",
)
_BOOL_KEYS = (
    "tie_word_embeddings", "attention_bias", "mlp_bias", "do_layer_norm_before",
    "_remove_final_layer_norm", "enable_bias", "new_decoder_architecture", "parallel_attn",
    "multi_query", "bias", "alibi", "use_parallel_residual", "learned_pos_emb", "no_bias",
    "rope",
)
_STR_KEYS = ("model_type", "_name_or_path", "hidden_act", "activation_function", "topk_method")
JSON_TYPES: dict[str, str] = {
    **dict.fromkeys(_INT_KEYS, "integer"), **dict.fromkeys(_BOOL_KEYS, "boolean"),
    **dict.fromkeys(_STR_KEYS, "string"), "expansion_ratio": "number",
    "attn_config": "object", "mlp_only_layers": "array",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def check_json_type(key: str, value: Any) -> Any:
    """``value`` if it has the JSON type of ``key`` (an integer is also a number), else a
    SpecError naming the key, the type expected and the value given."""
    want = JSON_TYPES.get(key)
    got = _json_type(value)
    if want is None or got == want or (want == "number" and got == "integer"):
        return value
    raise SpecError(f"HF config key {key!r} must be a JSON {want}, got {show(value)}")


def _activation(name: str | None, default: str = "gelu") -> str:
    """transformers' ``hidden_act`` names (gelu_new, gelu_fast, swish, ...) to our four."""
    name = (name or default).lower()
    if name in ("silu", "swish"):
        return "silu"
    if name.startswith("relu"):
        return "relu"
    return "gelu"


def _llama_like(c: _Config) -> dict[str, Any]:
    """Llama / Mistral / Qwen2 layout: RMSNorm, RoPE, gated SiLU MLP, GQA, untied by default."""
    return {
        "num_layers": c.req("num_hidden_layers"),
        "hidden_size": c.req("hidden_size"),
        "num_heads": c.req("num_attention_heads"),
        "num_kv_heads": c.get("num_key_value_heads"),
        "head_dim": c.get("head_dim"),
        "ffn_hidden_size": c.req("intermediate_size"),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.get("max_position_embeddings", default=2048),
        "gated_mlp": True,
        "activation": _activation(c.get("hidden_act"), "silu"),
        "norm": "rmsnorm",
        "position_embedding": "rope",
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=False)),
        # LlamaConfig.attention_bias puts a bias on q, k, v and o; mlp_bias on all three MLP
        # projections (both absent in the released Llama checkpoints).
        "qkv_bias": bool(c.get("attention_bias", default=False)),
        "attn_out_bias": bool(c.get("attention_bias", default=False)),
        "mlp_bias": bool(c.get("mlp_bias", default=False)),
    }


def _llama(c: _Config) -> dict[str, Any]:
    return {**_llama_like(c), "family": "llama"}


def _mistral(c: _Config) -> dict[str, Any]:
    return {**_llama_like(c), "family": "mistral"}


def _mixtral(c: _Config) -> dict[str, Any]:
    """Every layer is MoE: num_local_experts SwiGLU experts of intermediate_size, top-k router."""
    return {
        **_llama_like(c),
        "family": "mixtral",
        "moe": {
            "num_experts": c.req("num_local_experts"),
            "top_k": c.req("num_experts_per_tok"),
            "expert_ffn_hidden_size": c.req("intermediate_size"),
        },
    }


def _qwen2(c: _Config) -> dict[str, Any]:
    """Qwen2/2.5: Llama layout with a bias on q, k, v (not o)."""
    return {**_llama_like(c), "family": "qwen", "qkv_bias": True, "attn_out_bias": False}


def _qwen2_moe(c: _Config) -> dict[str, Any]:
    """Qwen1.5/2-MoE: routed experts plus one gated shared expert in every decoder_sparse_step-th
    layer (Qwen2MoeSparseMoeBlock)."""
    if c.get("mlp_only_layers"):
        raise SpecError("HF config key 'mlp_only_layers' (dense layers inside a qwen2_moe "
                        "model) is not supported")
    shared = c.get("shared_expert_intermediate_size", default=0)
    return {
        **_qwen2(c),
        "moe": {
            "num_experts": c.req("num_experts"),
            "top_k": c.req("num_experts_per_tok"),
            "expert_ffn_hidden_size": c.req("moe_intermediate_size"),
            "num_shared_experts": 1 if shared else 0,
            "shared_expert_ffn_hidden_size": shared or None,
            "layer_frequency": c.get("decoder_sparse_step", default=1),
            "shared_expert_gate": bool(shared),
        },
    }


def _deepseek(c: _Config) -> dict[str, Any]:
    """DeepSeek-V2/V3: MLA attention (arXiv 2405.04434) and DeepSeekMoE with leading dense
    layers. The multi-token-prediction layers (num_nextn_predict_layers) are not part of the
    main model and are not counted (DeepSeek-V3 README_WEIGHTS: 671B main + 11.5B MTP)."""
    spec = _llama_like(c)
    spec.update(num_kv_heads=None, head_dim=None, family="deepseek")
    spec["mla"] = {
        "q_lora_rank": c.get("q_lora_rank"),
        "kv_lora_rank": c.req("kv_lora_rank"),
        "qk_nope_head_dim": c.req("qk_nope_head_dim"),
        "qk_rope_head_dim": c.req("qk_rope_head_dim"),
        "v_head_dim": c.req("v_head_dim"),
    }
    if c.get("n_routed_experts"):
        moe_ffn = c.req("moe_intermediate_size")
        spec["moe"] = {
            "num_experts": c.req("n_routed_experts"),
            "top_k": c.req("num_experts_per_tok"),
            "expert_ffn_hidden_size": moe_ffn,
            "num_shared_experts": c.get("n_shared_experts", default=0),
            "shared_expert_ffn_hidden_size": moe_ffn,
            "first_dense_layers": c.get("first_k_dense_replace", default=0),
            "layer_frequency": c.get("moe_layer_freq", default=1),
            # noaux_tc routing (V3) keeps a learned per-expert bias in the checkpoint.
            "router_bias": c.get("topk_method") == "noaux_tc",
        }
    return spec


def _gpt2(c: _Config) -> dict[str, Any]:
    """GPT-2 (Radford et al. 2019): learned positions, pre-LN, biases everywhere, tied head."""
    h = c.req("n_embd", "hidden_size")
    return {
        "family": "gpt",
        "num_layers": c.req("n_layer", "num_hidden_layers"),
        "hidden_size": h,
        "num_heads": c.req("n_head", "num_attention_heads"),
        "ffn_hidden_size": c.get("n_inner", default=4 * h),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.req("n_positions", "n_ctx", "max_position_embeddings"),
        "activation": _activation(c.get("activation_function")),
        "position_embedding": "learned",
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=True)),
        "qkv_bias": True,
        "attn_out_bias": True,
        "mlp_bias": True,
    }


def _gptj(c: _Config) -> dict[str, Any]:
    """GPT-J (Wang & Komatsuzaki 2021): one shared LayerNorm feeding parallel attention and
    MLP, bias-free attention, MLP and LM head with biases, partial rotary (rotary_dim)."""
    h = c.req("n_embd", "hidden_size")
    return {
        "family": "gpt-j",
        "num_layers": c.req("n_layer", "num_hidden_layers"),
        "hidden_size": h,
        "num_heads": c.req("n_head", "num_attention_heads"),
        "ffn_hidden_size": c.get("n_inner", default=4 * h),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.get("n_positions", default=2048),
        "activation": _activation(c.get("activation_function")),
        "norms_per_layer": 1,
        "parallel_attention": True,
        "position_embedding": "rope",
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=False)),
        "mlp_bias": True,
        "lm_head_bias": True,
    }


def _opt(c: _Config) -> dict[str, Any]:
    """OPT (Zhang et al. 2022): learned positions with 2 extra rows (OPTLearnedPositionalEmbedding
    offset), biases everywhere, ReLU, tied head."""
    h = c.req("hidden_size")
    if c.get("word_embed_proj_dim", default=h) != h:
        raise SpecError("HF config key 'word_embed_proj_dim' != hidden_size (OPT-350m's "
                        "project_in/project_out) is not supported")
    max_pos = c.get("max_position_embeddings", default=2048)
    pre_ln = bool(c.get("do_layer_norm_before", default=True))
    return {
        "family": "opt",
        "num_layers": c.req("num_hidden_layers"),
        "hidden_size": h,
        "num_heads": c.req("num_attention_heads"),
        "ffn_hidden_size": c.req("ffn_dim"),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": max_pos,
        "position_embedding": "learned",
        "position_embedding_size": max_pos + 2,
        "activation": _activation(c.get("activation_function"), "relu"),
        "norm_bias": True,
        "final_norm": pre_ln and not c.get("_remove_final_layer_norm", default=False),
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=True)),
        "qkv_bias": bool(c.get("enable_bias", default=True)),
        "attn_out_bias": bool(c.get("enable_bias", default=True)),
        "mlp_bias": bool(c.get("enable_bias", default=True)),
    }


def _bloom(c: _Config) -> dict[str, Any]:
    """BLOOM (BigScience 2022): ALiBi, LayerNorm after the word embedding, 4h GELU MLP,
    biases everywhere, tied head. Older configs spell the keys n_embed / num_attention_heads."""
    h = c.req("hidden_size", "n_embed")
    return {
        "family": "bloom",
        "num_layers": c.req("n_layer", "num_hidden_layers"),
        "hidden_size": h,
        "num_heads": c.req("n_head", "num_attention_heads"),
        "ffn_hidden_size": 4 * h,
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.get("seq_length", default=2048),
        "position_embedding": "alibi",
        "embedding_norm": True,
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=True)),
        "qkv_bias": True,
        "attn_out_bias": True,
        "mlp_bias": True,
    }


def _falcon(c: _Config) -> dict[str, Any]:
    """Falcon (Almazrouei et al. 2023): fused QKV with multi-query (7B) or grouped KV heads
    (new_decoder_architecture: 40B/180B, one LayerNorm each for attention and MLP), parallel
    attention/MLP, no linear biases by default, tied head."""
    h = c.req("hidden_size")
    heads = c.req("num_attention_heads", "n_head")
    # Remote-code "RefinedWeb" configs (Falcon-40B) are the new decoder architecture.
    new_arch = bool(c.get("new_decoder_architecture", default=c.model_type == "RefinedWeb"))
    parallel = bool(c.get("parallel_attn", default=True))
    if new_arch:
        kv = c.req("num_kv_heads", "n_head_kv")
        norms = c.get("num_ln_in_parallel_attn", default=2)
    else:
        kv = 1 if c.get("multi_query", default=True) else heads
        norms = 1 if parallel else 2
    bias = bool(c.get("bias", default=False))
    return {
        "family": "falcon",
        "num_layers": c.req("num_hidden_layers", "n_layer"),
        "hidden_size": h,
        "num_heads": heads,
        "num_kv_heads": kv,
        "ffn_hidden_size": c.get("ffn_hidden_size", default=4 * h),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.get("max_position_embeddings", default=2048),
        "norms_per_layer": norms,
        "parallel_attention": parallel or new_arch,
        "position_embedding": "alibi" if c.get("alibi", default=False) else "rope",
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=True)),
        "qkv_bias": bias,
        "attn_out_bias": bias,
        "mlp_bias": bias,
    }


def _gpt_neox(c: _Config) -> dict[str, Any]:
    """GPT-NeoX (Black et al. 2022): partial rotary (rotary_pct), parallel residual, biases
    everywhere, untied head."""
    bias = bool(c.get("attention_bias", default=True))
    return {
        "family": "gpt-neox",
        "num_layers": c.req("num_hidden_layers"),
        "hidden_size": c.req("hidden_size"),
        "num_heads": c.req("num_attention_heads"),
        "ffn_hidden_size": c.req("intermediate_size"),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.get("max_position_embeddings", default=2048),
        "activation": _activation(c.get("hidden_act")),
        "parallel_attention": bool(c.get("use_parallel_residual", default=True)),
        "position_embedding": "rope",
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=False)),
        "qkv_bias": bias,
        "attn_out_bias": bias,
        "mlp_bias": True,
    }


def _mpt(c: _Config) -> dict[str, Any]:
    """MosaicML MPT (llm-foundry MPTConfig): no_bias removes linear and LayerNorm biases; a
    learned position table exists only without ALiBi/RoPE; the head is tied."""
    d = c.req("d_model")
    attn = c.get("attn_config", default={}) or {}
    alibi = bool(check_json_type("alibi", attn.get("alibi", False)))
    rope = bool(check_json_type("rope", attn.get("rope", False)))
    learned = bool(c.get("learned_pos_emb", default=True)) and not (alibi or rope)
    bias = not c.get("no_bias", default=False)
    return {
        "family": "mpt",
        "num_layers": c.req("n_layers"),
        "hidden_size": d,
        "num_heads": c.req("n_heads"),
        "ffn_hidden_size": int(c.get("expansion_ratio", default=4) * d),
        "vocab_size": c.req("vocab_size"),
        "max_position_embeddings": c.get("max_seq_len", default=2048),
        "position_embedding": "learned" if learned else ("alibi" if alibi else "rope"),
        "norm_bias": bias,
        "tie_embeddings": bool(c.get("tie_word_embeddings", default=True)),
        "qkv_bias": bias,
        "attn_out_bias": bias,
        "mlp_bias": bias,
    }


_BUILDERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "mixtral": _mixtral,
    "qwen2": _qwen2,
    "qwen2_moe": _qwen2_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "gpt2": _gpt2,
    "gptj": _gptj,
    "opt": _opt,
    "bloom": _bloom,
    "falcon": _falcon,
    "RefinedWebModel": _falcon,  # Falcon's pre-transformers remote-code configs
    "RefinedWeb": _falcon,
    "gpt_neox": _gpt_neox,
    "mpt": _mpt,
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def _default_id(config: Mapping[str, Any], model_type: str) -> str:
    """``meta-llama/Llama-2-7b-hf`` -> ``llama-2-7b-hf``; ``hf-<model_type>`` without a name."""
    name = str(config.get("_name_or_path") or "").rstrip("/").split("/")[-1]
    slug = re.sub(r"[^a-z0-9.\-_]+", "-", name.lower()).strip("-._")
    return slug or f"hf-{model_type.lower().replace('_', '-')}"


def model_from_hf_config(config: Mapping[str, Any], id: str | None = None) -> ModelSpec:
    """A ModelSpec from the contents of a HuggingFace ``config.json``.

    Raises SpecError for a config that is not a mapping, an unsupported ``model_type`` (the
    message lists the supported ones) or a missing shape key (the message names it).
    """
    if not isinstance(config, Mapping):
        raise SpecError(f"a HF config must be a mapping, got {type(config).__name__}")
    supported = ", ".join(SUPPORTED_MODEL_TYPES)
    model_type = config.get("model_type")
    if model_type is not None:
        check_json_type("model_type", model_type)
    if config.get("_name_or_path") is not None:
        check_json_type("_name_or_path", config["_name_or_path"])
    if not model_type:
        raise SpecError(f"HF config has no 'model_type' key; supported model types: {supported}")
    builder = _BUILDERS.get(str(model_type))
    if builder is None:
        raise SpecError(f"unsupported HF model_type {model_type!r}; supported: {supported}")
    fields = builder(_Config(config, str(model_type)))
    fields = {k: v for k, v in fields.items() if v is not None}
    model_id = id or _default_id(config, str(model_type))
    fields.setdefault("name", str(config.get("_name_or_path") or model_id))
    fields["id"] = model_id
    return validate(ModelSpec, fields, what=f"model from HF config ({model_type})")


def load_hf_config(path: str | Path, id: str | None = None) -> ModelSpec:
    """Read a HuggingFace ``config.json`` (or a model folder holding one) into a ModelSpec."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    config = read_mapping(path)
    try:
        return model_from_hf_config(config, id=id)
    except SpecError as err:  # name the file the problem is in
        raise SpecError(f"{path}: {err}") from None
