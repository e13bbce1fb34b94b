"""Sliding-window, sink and linear-attention layers: which layers have which attention, the
keys a windowed query reaches, and the fixed recurrent state of a linear-attention layer.

* Sliding window W (HF ``layer_types`` "sliding_attention" + ``sliding_window``): query at
  position q sees keys kv with q - W < kv <= q, i.e. W keys including itself
  (transformers ``masking_utils.sliding_window_overlay``, huggingface/transformers
  src/transformers/masking_utils.py @ 2ccc6cae21faaf11631efa5fb9054687ae5dc931). Such a layer
  keeps only the last W tokens of K/V (vLLM's sliding-window KV manager frees the older
  blocks), so its cache and its decode reads stop growing at W.
* Attention sinks (gpt-oss ``sinks``): one learned logit per head concatenated to each query
  row's scores before the softmax and dropped after it (transformers
  models/gpt_oss/modeling_gpt_oss.py ``eager_attention_forward`` @
  00d4b3d2142cb4ced2f51b90614b5d26bc045015; gpt-oss model card arXiv 2508.10925 Sec. 2.1).
  No key or value is stored: no KV bytes, one extra softmax element per query row and head.
* Gated delta net (Yang et al. 2024, arXiv 2412.06464; Qwen3-Next Qwen3NextGatedDeltaNet,
  transformers models/qwen3_next/modeling_qwen3_next.py @
  7515843b617551b008901620ca58f1208bbc330d): a per-sequence recurrent state of
  num_value_heads x key_head_dim x value_head_dim (``last_recurrent_state``) plus the causal
  conv1d's last conv_kernel - 1 inputs of 2 key_dim + value_dim channels, whatever the
  context length. Kimi delta attention (kind "kda") keeps the same state.
* DeepSeek-V4 compressed attention (layer type "compressed_attention"; DeepSeek reference
  inference/model.py): a window of K = V entries plus one compressed entry per ratio tokens
  and the compressors' fp32 state (``compressed_layer_bytes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import nbytes
from .specs.model import MODEL_DTYPE, ModelSpec

# Bytes per token of the DSA indexer's key cache: head_dim fp8 values plus one fp32 scale
# per 128 (vLLM DeepseekV32IndexerCache: index_head_dim + index_head_dim // 128 * 4)
INDEX_SCALE_BLOCK = 128


def fp8_index_key_bytes(d: Any) -> Any:
    """Bytes of one fp8 index key of ``d`` elements with its fp32 scale per INDEX_SCALE_BLOCK."""
    return d + 4.0 * np.ceil(d / INDEX_SCALE_BLOCK)

Array = Any
FULL, SLIDING, LINEAR = "full_attention", "sliding_attention", "linear_attention"
MAMBA, NO_MIXER = "mamba", "none"
COMPRESSED = "compressed_attention"
KINDS = (FULL, SLIDING, LINEAR, MAMBA, NO_MIXER, COMPRESSED)
# Chunk length of the chunked gated-delta-rule kernel (fla ``chunk_gated_delta_rule`` and the
# transformers torch fallback use 64; Yang et al. 2024 Sec. 3.3)
GDN_CHUNK = 64
# A recurrent / conv state is never kept in the KV-cache dtype, so an fp8 KV cache does not
# shrink it; the dtype each engine keeps it in is its ``memory.state_dtype`` rule
# (with_state_dtypes), its bytes dtypes.nbytes of that dtype.
#: perfmodel's own (generic engine) rule: the checkpoint config's stated SSM dtype (Qwen3.5
#: ``mamba_ssm_dtype``, Nemotron ``mamba_ssm_cache_dtype``), else the model dtype; the conv
#: state in the model dtype
GENERIC_STATE_RULE = {"ssm": {"gated_delta_net": "config_or_model", "kda": "config_or_model",
                              "mamba": "config_or_model"}, "conv": "model"}


def kind_model(model: ModelSpec, kind: str) -> ModelSpec:
    """``model`` with the attention shape of its ``kind`` layers: the sliding-window layers'
    own heads, head sizes and sinks (ModelSpec.sliding_attention), else ``model`` itself."""
    s = model.sliding_attention
    if kind != SLIDING or s is None:
        return model
    update = {"num_heads": s.num_heads, "num_kv_heads": s.num_kv_heads,
              "head_dim": s.head_dim, "value_head_dim": s.value_head_dim,
              "attention_sinks": s.attention_sinks,
              "shared_kv_projection": s.shared_kv_projection}
    return model.model_copy(update={k: v for k, v in update.items() if v is not None}
                            | {"sliding_attention": None})


def layer_kinds(model: ModelSpec) -> list[tuple[str, bool]]:
    """(attention kind, MoE layer?) of every layer, in order. MoE layers without a listed
    pattern: after ``first_dense_layers``, every ``layer_frequency``-th layer (HF
    ``(layer_idx + 1) % decoder_sparse_step == 0``), which gives ``num_moe_layers`` of them."""
    n = model.num_layers
    kinds = list(model.layer_types) if model.layer_types else [FULL] * n
    moe = model.moe
    if moe is None:
        flags = [False] * n
    elif moe.layer_pattern is not None:
        flags = list(moe.layer_pattern)
    else:
        f0, freq = moe.first_dense_layers, moe.layer_frequency
        flags = [i >= f0 and (i - f0 + 1) % freq == 0 for i in range(n)]
    return list(zip(kinds, flags, strict=True))


def attention_mix(model: ModelSpec, moe_layer: bool) -> list[tuple[str, float]]:
    """(attention kind, share) over the layers of one MLP kind (dense or MoE): the share of
    those layers whose mixer is that kind. A model without ``layer_types``: [(full, 1.0)]."""
    if not model.layer_types:
        return [(FULL, 1.0)]
    kinds = [k for k, m in layer_kinds(model) if m == moe_layer]
    if not kinds:
        return [(FULL, 1.0)]
    return [(k, kinds.count(k) / len(kinds)) for k in KINDS if k in kinds]


def mlp_share(model: ModelSpec, moe_layer: bool) -> float:
    """Share of the layers of one MLP kind that have an MLP (``no_mlp_layers``: Nemotron-H's
    attention and Mamba blocks have none); 1.0 without the field."""
    if model.no_mlp_layers is None or moe_layer:
        return 1.0
    dense = [no for (_, m), no in zip(layer_kinds(model), model.no_mlp_layers, strict=True)
             if not m]
    return (len(dense) - sum(dense)) / len(dense) if dense else 1.0


def dense_mlp_widths(model: ModelSpec) -> list[tuple[int, float]]:
    """(width, share) of the dense layers that have an MLP (``ffn_layer_sizes``: NAS blocks
    of different widths); [(ffn_hidden_size, 1.0)] without per-layer widths."""
    if model.ffn_layer_sizes is None:
        return [(model.ffn_hidden_size, 1.0)]
    no_mlp = model.no_mlp_layers or (False,) * model.num_layers
    widths = [w for (_, moe), none, w in zip(layer_kinds(model), no_mlp,
                                              model.ffn_layer_sizes, strict=True)
              if not moe and not none]
    if not widths:
        return [(model.ffn_hidden_size, 1.0)]
    return [(w, widths.count(w) / len(widths)) for w in sorted(set(widths))]


def _window_prefix(n: Array, w: float) -> Array:
    """sum_{j=1..n} min(j, w): key-query pairs of the first n positions of a causal window."""
    n = np.maximum(np.asarray(n, float), 0.0)
    return np.where(n <= w, n * (n + 1) / 2.0, w * (w + 1) / 2.0 + (n - w) * w)


def windowed_pairs(q_len: Array, kv_len: Array, window: float, causal: bool = True) -> Array:
    """Query-key pairs of the last ``q_len`` of ``kv_len`` positions with a causal window of
    ``window`` keys: sum over positions j of min(j, W) = f(kv) - f(kv - q). Without a window
    limit (W >= kv) this is ``ops.attention_pairs``: q kv - q (q - 1) / 2. Non-causal: each
    query sees min(kv, W) keys."""
    if not causal:
        return np.asarray(q_len, float) * np.minimum(kv_len, window)
    kv = np.asarray(kv_len, float)
    return _window_prefix(kv, window) - _window_prefix(kv - np.asarray(q_len, float), window)


def windowed_keys(q_len: Array, kv_len: Array, window: float) -> Array:
    """Distinct keys ``q_len`` new queries reach, i.e. the K/V a windowed kernel reads:
    min(kv, q + W - 1) (decode: min(kv, W))."""
    return np.minimum(np.asarray(kv_len, float), np.asarray(q_len, float) + window - 1.0)


def linear_state_bytes(model: ModelSpec, tp: Array = 1) -> Array:
    """Per-sequence state of one linear-attention layer on one GPU: recurrent state
    num_value_heads x key_head_dim x value_head_dim at the spec's ``state_bytes`` plus the conv
    state (conv_kernel - 1) x (2 key_dim + value_dim) channels at its ``conv_bytes`` (vLLM
    MambaStateShapeCalculator.gated_delta_net_state_shape; SGLang Mamba2StateShape.create with
    conv_dim = value_dim + 2 key heads x key_head_dim), heads and channels split over TP
    (replicated when tp exceeds the heads)."""
    la = model.linear_attention
    if la is None:
        return 0.0 * np.asarray(tp, float)
    share = np.maximum(la.num_value_heads / np.asarray(tp, float), 1.0) / la.num_value_heads
    recurrent = la.num_value_heads * la.key_head_dim * la.value_head_dim
    conv_dim = 2 * la.num_key_heads * la.key_head_dim + la.num_value_heads * la.value_head_dim
    conv = (la.conv_kernel - 1) * conv_dim
    return (recurrent * la.state_bytes + conv * la.conv_bytes) * share


def mamba_state_bytes(model: ModelSpec, tp: Array = 1) -> Array:
    """Per-sequence state of one Mamba-2 layer on one GPU: the SSM state num_heads x head_dim
    x state_size in the SSM cache dtype (Nemotron-H: mamba_ssm_cache_dtype float32) plus the
    conv state (conv_kernel - 1) x (d_inner + 2 groups x state) at its ``conv_bytes`` (vLLM
    MambaStateShapeCalculator.mamba2_state_shape), heads split over TP."""
    m = model.mamba
    if m is None:
        return 0.0 * np.asarray(tp, float)
    share = np.maximum(m.num_heads / np.asarray(tp, float), 1.0) / m.num_heads
    ssm = m.num_heads * m.head_dim * m.state_size * m.state_bytes
    conv = (m.conv_kernel - 1) * m.conv_dim * m.conv_bytes
    return (ssm + conv) * share


def state_rule_bytes(rule: str, config_dtype: str | None, model_dtype: str = MODEL_DTYPE
                     ) -> float:
    """Bytes per element of a recurrent state under one engine rule (engines.StateRule):
    ``config_or_*`` the checkpoint config's stated dtype when there is one, else fp32 / the
    model dtype; a dtype name (``model``: ``model_dtype``) whatever it says."""
    if rule.startswith("config_or_"):
        if config_dtype is not None:
            return nbytes(config_dtype)
        rule = rule.removeprefix("config_or_")
    return nbytes(model_dtype if rule == "model" else rule)


def with_state_dtypes(model: ModelSpec, rule: dict | None = None,
                      override: str | None = None, model_dtype: str = MODEL_DTYPE
                      ) -> ModelSpec:
    """``model`` with its linear-attention / Mamba state bytes as an engine keeps them:
    ``rule`` the engine's ``memory.state_dtype`` (``ssm`` per mixer kind, ``conv``;
    GENERIC_STATE_RULE when None), ``override`` a launch option's SSM dtype (SGLang
    --mamba-ssm-dtype, vLLM --mamba-ssm-cache-dtype: the scenario's
    ``inference.ssm_state_dtype``), which wins over the rule and the config; ``model_dtype``
    the dtype ``model`` stands for (specs.model.MODEL_DTYPE). The bytes are derived fields
    (their only inputs are ``ssm_dtype``, the rule and the override), so they are always set
    here. A model without such layers is returned as it is."""
    rule = GENERIC_STATE_RULE if rule is None else rule
    conv = nbytes(model_dtype if rule["conv"] == "model" else rule["conv"])
    update: dict[str, Any] = {}
    for field, spec in (("linear_attention", model.linear_attention),
                        ("mamba", model.mamba)):
        if spec is None:
            continue
        kind = getattr(spec, "kind", "mamba")
        ssm = nbytes(override) if override is not None else state_rule_bytes(
            rule["ssm"].get(kind, GENERIC_STATE_RULE["ssm"][kind]), spec.ssm_dtype,
            model_dtype)
        if (spec.state_bytes, spec.conv_bytes) != (ssm, conv):
            update[field] = spec.model_copy(update={"state_bytes": ssm, "conv_bytes": conv})
    return model.model_copy(update=update) if update else model


def engine_state_model(model: ModelSpec, engine: str, version: str | None = None,
                       variant: str | None = None, override: str | None = None) -> ModelSpec:
    """``model`` with the state dtypes of ``engine`` at that release (engines/<id>.yaml
    ``memory.state_dtype``; the generic rule for ``generic`` and engines that state none)."""
    from .engines import engine_facts

    facts = engine_facts(engine, version, variant)
    sd = None if facts is None else facts.memory.state_dtype
    rule = None if sd is None else {"ssm": dict(sd.ssm), "conv": sd.conv}
    return with_state_dtypes(model, rule, override)


def kv_layer_counts(model: ModelSpec) -> dict[str, int]:
    """Layers of each mixer kind (full, sliding, linear, mamba, none)."""
    kinds = [k for k, _ in layer_kinds(model)]
    return {k: kinds.count(k) for k in KINDS}


# DeepSeek-V4 compressed attention (ModelSpec.compressed_attention; DeepSeek
# inference/model.py Attention / Compressor / Indexer). The Compressor keeps, per sequence,
# the not yet compressed tokens' kv and gate scores in fp32: kv_state and score_state of
# coff x ratio rows of coff x head_dim each (coff = 2 for overlapping windows)
COMPRESSOR_STATE_BYTES = 4.0


def compressed_ratio_counts(model: ModelSpec) -> dict[int, int]:
    """Layers of each compress ratio (0: window only) among the compressed-attention layers."""
    ca = model.compressed_attention
    if ca is None:
        return {}
    out: dict[int, int] = {}
    for r in ca.ratios:
        out[r] = out.get(r, 0) + 1
    return out


def compressor_state_bytes(model: ModelSpec, ratio: int, head_dim: int) -> float:
    """kv_state + score_state of one Compressor for one sequence (fp32)."""
    coff = model.compressed_attention.coff(ratio)
    return 2.0 * coff * ratio * coff * head_dim * COMPRESSOR_STATE_BYTES


def compressed_layer_bytes(model: ModelSpec, ratio: int, kv_bytes: float, context: Array
                           ) -> Array:
    """Cache of one compressed-attention layer for one sequence of ``context`` tokens (one
    K = V head, not split by TP): the last min(context, window) tokens' entries, one
    compressed entry per ``ratio`` tokens (floor), at ``kv_bytes`` per element; a
    ``sparse_ratio`` layer adds its indexer's compressed keys (fp8 + fp32 scale per 128, as
    the DSA index cache, INDEX_SCALE_BLOCK) and every compressing layer its compressors'
    fp32 state (the reference's kv_state / score_state buffers)."""
    ca = model.compressed_attention
    ctx = np.asarray(context, float)
    d = ca.head_dim
    total = np.minimum(ctx, ca.window) * d * kv_bytes
    if ratio:
        entries = np.floor(ctx / ratio)
        total = total + entries * d * kv_bytes + compressor_state_bytes(model, ratio, d)
        if ratio == ca.sparse_ratio:
            di = ca.indexer_head_dim
            total = total + entries * fp8_index_key_bytes(di) \
                + compressor_state_bytes(model, ratio, di)
    return total


def compressed_bytes_per_sequence(model: ModelSpec, kv_bytes: float, context: Array) -> Array:
    """All compressed-attention layers' cache for one sequence (compressed_layer_bytes)."""
    total = 0.0 * np.asarray(context, float)
    for r, n in compressed_ratio_counts(model).items():
        total = total + n * compressed_layer_bytes(model, r, kv_bytes, context)
    return total


def compressed_growth_per_token(model: ModelSpec, kv_bytes: float) -> float:
    """Bytes one more token adds to a long sequence over all compressed-attention layers:
    head_dim x kv_bytes / ratio per compressing layer (+ the indexer keys / ratio)."""
    ca = model.compressed_attention
    total = 0.0
    for r, n in compressed_ratio_counts(model).items():
        if r:
            per = ca.head_dim * kv_bytes
            if r == ca.sparse_ratio:
                di = ca.indexer_head_dim
                per += fp8_index_key_bytes(di)
            total += n * per / r
    return total
