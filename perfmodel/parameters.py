"""Exact parameter counts of a ModelSpec, by component.

Counts follow the weight shapes of the reference implementations (HF transformers modeling
files): e.g. Llama-2-7B = 32 x (4*4096^2 + 3*4096*11008 + 2*4096) + 2*32000*4096 + 4096
= 6,738,415,616 (Touvron et al. 2023, arXiv 2307.09288; HF model card). The per-component
split is what tensor/pipeline/expert parallelism shard.
"""

from __future__ import annotations

from dataclasses import dataclass

from .specs.model import ModelSpec


@dataclass(frozen=True)
class ParamCounts:
    """Parameters per component. Per-layer figures are for one layer of that kind."""

    word_embedding: int  # vocab x hidden (vocab-parallel under TP)
    position_embedding: int  # learned positions (replicated)
    embedding_norm: int
    attention: int  # per layer: projections and their biases (TP-sharded part)
    attention_replicated: int  # per layer: MLA down-projections and latent norms (not TP-sharded)
    layer_norms: int  # per layer
    dense_mlp: int  # per dense layer
    expert: int  # per routed expert
    shared_experts: int  # per MoE layer, all shared experts together
    router: int  # per MoE layer
    final_norm: int
    lm_head: int  # 0 when tied to the word embedding
    num_layers: int
    num_dense_layers: int
    num_moe_layers: int
    num_experts: int
    top_k: int
    # linear-attention layers (ModelSpec.linear_attention): what one such layer has more than a
    # full-attention layer (its mixer minus attention and q/k norms); 0 without them
    linear_attention_delta: int = 0
    num_linear_attention_layers: int = 0
    # Nemotron-H-style blocks (ModelSpec.mamba / "none" layers / no_mlp_layers): what those
    # layers have more (Mamba mixer) or less (no mixer, no MLP) than an attention + MLP layer
    hybrid_adjustment: int = 0
    # latent MoE (MoESpec.latent_size): fc1_latent_proj + fc2_latent_proj per MoE layer,
    # replicated like the router; 0 without
    moe_latent_proj: int = 0
    # layers that reuse another layer's sparse-attention indexer (MLASpec.indexer_layers):
    # minus their indexer weights, which ``attention_replicated`` counts in every layer
    indexer_adjustment: int = 0

    @property
    def per_dense_layer(self) -> int:
        return self.attention + self.attention_replicated + self.layer_norms + self.dense_mlp

    @property
    def per_moe_layer(self) -> int:
        return (
            self.attention + self.attention_replicated + self.layer_norms
            + self.num_experts * self.expert + self.shared_experts + self.router
            + self.moe_latent_proj
        )

    @property
    def per_moe_layer_active(self) -> int:
        return (
            self.attention + self.attention_replicated + self.layer_norms
            + self.top_k * self.expert + self.shared_experts + self.router
            + self.moe_latent_proj
        )

    @property
    def embeddings(self) -> int:
        return self.word_embedding + self.position_embedding + self.embedding_norm

    @property
    def head(self) -> int:
        return self.final_norm + self.lm_head

    @property
    def linear_attention_adjustment(self) -> int:
        return self.num_linear_attention_layers * self.linear_attention_delta + \
            self.hybrid_adjustment + self.indexer_adjustment

    @property
    def total(self) -> int:
        return (
            self.embeddings + self.head + self.num_dense_layers * self.per_dense_layer
            + self.num_moe_layers * self.per_moe_layer + self.linear_attention_adjustment
        )

    @property
    def active(self) -> int:
        """Parameters touched per token (MoE: top-k routed experts + shared experts)."""
        return (
            self.embeddings + self.head + self.num_dense_layers * self.per_dense_layer
            + self.num_moe_layers * self.per_moe_layer_active + self.linear_attention_adjustment
        )

    @property
    def active_without_input_embedding(self) -> int:
        """Active parameters without the input-embedding lookups (token and learned-position
        tables): the weights a token is multiplied by, LM head included. A lookup is a gather
        with no matmul FLOPs (ops.embedding_ops), so this N gives 2N forward FLOPs per token
        besides attention, as the Megatron model-FLOP count (the MFU perfmodel prints) does.
        It is the convention of DeepSeek (DeepSeek-V3 README_WEIGHTS.md: "36.6B (including 0.9B
        for the output Head)" of the 37B), Moonshot (Kimi K2) and OpenAI (gpt-oss model card,
        arXiv 2508.10925 Table 1: 5.13B / 3.61B active); Qwen, Mistral and Meta print
        ``active`` (tests/test_active_params.py checks each against its publisher)."""
        return self.active - self.word_embedding - self.position_embedding

    @property
    def non_embedding(self) -> int:
        return self.total - self.word_embedding - self.position_embedding - self.lm_head


#: what ``ParamCounts.active`` counts, as ``perfmodel models show`` prints it. mfu_6nd
#: (explain.py, validate flops_convention 6nd) takes N = ``active``: Hoffmann et al. 2022 count
#: total parameters, embeddings included (Kaplan et al. 2020 non-embedding ones; Pearce & Song
#: 2024, arXiv 2406.12907, Sec. 1); ``mfu`` (Megatron model FLOPs) has no FLOPs for the lookup.
ACTIVE_CONVENTION = ("active: every weight a token touches, input embedding and LM head "
                     "included (Qwen, Mistral, Meta; 6ND's N in mfu_6nd, Hoffmann et al. 2022); "
                     "active_without_input_embedding: minus the embedding lookup, which has no "
                     "matmul FLOPs (DeepSeek, Moonshot, OpenAI)")


def parameter_summary(counts: ParamCounts) -> dict[str, int | str]:
    """The parameter figures ``perfmodel models show`` prints, each convention named."""
    return {"total": counts.total, "active": counts.active,
            "active_without_input_embedding": counts.active_without_input_embedding,
            "non_embedding": counts.non_embedding, "convention": ACTIVE_CONVENTION}


def norm_params(model: ModelSpec, width: int) -> int:
    """LayerNorm has a scale and (usually) a bias; RMSNorm a scale only."""
    return 2 * width if (model.norm == "layernorm" and model.norm_bias) else width


def mlp_params(model: ModelSpec, ffn: int, width: int | None = None) -> int:
    """Gated MLP: gate, up (h x f) and down (f x h); plain MLP: up and down. ``width``: the
    width it reads and writes when not the hidden size (a latent MoE's experts)."""
    h = width or model.hidden_size
    mats = 3 if model.gated_mlp else 2
    bias = ((2 if model.gated_mlp else 1) * ffn + h) if model.mlp_bias else 0
    return mats * h * ffn + bias


def attention_params(model: ModelSpec) -> tuple[int, int]:
    """(TP-sharded, replicated) attention parameters of one layer: the sums of
    ``attention_projections``."""
    sharded, replicated = attention_projections(model)
    return sum(sharded.values()), sum(replicated.values())


def attention_projections(model: ModelSpec) -> tuple[dict[str, int], dict[str, int]]:
    """(TP-sharded, replicated) parameters of one layer's attention by the module that holds
    them, named as the checkpoint names it (a module's bias counted with its weight), so a
    quantisation exclusion list that names single projections can be weighed
    (zoo.hf_quant.resolve_attention_split). The sharded part is the ``attention`` weight
    class, the replicated part the ``mla`` class (formats.weight_byte_counts).

    MLA (transformers DeepseekV3Attention): sharded ``q_b_proj`` (or ``q_proj`` without a
    query LoRA), ``kv_b_proj``, ``o_proj`` and Kimi K3's output gate ``g_proj`` (hidden ->
    heads x v_head_dim); replicated ``q_a_proj``, ``q_a_layernorm``, ``kv_a_proj_with_mqa``,
    ``kv_a_layernorm`` and a sparse-attention ``indexer``. GQA (LlamaAttention): ``q_proj``
    (twice as wide with Qwen3-Next's ``attn_output_gate``), ``k_proj``, ``v_proj`` (0 when
    V is K's projection: Gemma 4 ``attention_k_eq_v``), ``o_proj`` and gpt-oss's per-head
    ``sinks``; replicated a block-sparse ``indexer``. DeepSeek-V4 compressed attention:
    ``compressed_attention_projections``."""
    h, nh = model.hidden_size, model.num_heads
    if model.compressed_attention is not None:
        return compressed_attention_projections(model)
    if model.mla:
        m = model.mla
        sharded: dict[str, int] = {}
        replicated: dict[str, int] = {}
        if m.q_lora_rank:
            replicated["q_a_proj"] = h * m.q_lora_rank
            replicated["q_a_layernorm"] = norm_params(model, m.q_lora_rank)
            sharded["q_b_proj"] = m.q_lora_rank * nh * m.qk_head_dim
        else:
            sharded["q_proj"] = h * nh * m.qk_head_dim
        replicated["kv_a_proj_with_mqa"] = h * (m.kv_lora_rank + m.qk_rope_head_dim)
        replicated["kv_a_layernorm"] = norm_params(model, m.kv_lora_rank)
        sharded["kv_b_proj"] = m.kv_lora_rank * nh * (m.qk_nope_head_dim + m.v_head_dim)
        sharded["o_proj"] = nh * m.v_head_dim * h + (h if model.attn_out_bias else 0)
        if model.attention_output_gate:  # g_proj hidden -> heads x v_head_dim (Kimi K3)
            sharded["g_proj"] = h * nh * m.v_head_dim
        if indexer_params(model):
            replicated["indexer"] = indexer_params(model)
        return sharded, replicated
    hd, kv = model.hd, model.kv_heads
    q, k, v = nh * hd, kv * hd, 0 if model.shared_kv_projection else kv * model.vd
    q_out = 2 * q if model.attention_output_gate else q  # the gate rides in q_proj
    bias = model.qkv_bias
    sharded = {"q_proj": h * q_out + (q_out if bias else 0), "k_proj": h * k + (k if bias else 0),
               "v_proj": h * v + (v if bias else 0),
               "o_proj": nh * model.vd * h + (h if model.attn_out_bias else 0)}
    if model.attention_sinks:
        sharded["sinks"] = nh
    # MiniMax Sparse Attention's index queries / key (fused into qkv_proj) and their norms,
    # counted with the replicated part like the DSA indexer
    replicated = {"indexer": indexer_params(model)} if model.block_sparse is not None else {}
    return sharded, replicated


def indexer_params(model: ModelSpec) -> int:
    """One DeepSeek-sparse-attention lightning indexer (DeepSeek-V3.2 arXiv 2512.02556
    Sec. 2.1; transformers DeepseekV32Indexer): wq_b q_lora_rank x heads x head_dim (it reads
    the query latent, or the hidden state without a query LoRA), wk hidden x head_dim, a
    LayerNorm (scale and bias) on the key and weights_proj hidden x heads; 0 without one."""
    bs = model.block_sparse
    if bs is not None:  # MiniMax Sparse Attention: index_q (one per KV head) and index_k
        # in the fused qkv_proj, index_q_norm and index_k_norm (vLLM MiniMaxM3SparseAttention)
        d = bs.index_head_dim
        return model.hidden_size * (bs.index_heads + 1) * d + 2 * d
    m = model.mla
    if m is None or not (m.indexer_heads and m.indexer_head_dim):
        return 0
    h, n, d = model.hidden_size, m.indexer_heads, m.indexer_head_dim
    return (m.q_lora_rank or h) * n * d + h * d + 2 * d + h * n


def indexer_owner_share(model: ModelSpec, moe_layer: bool | None = None) -> float:
    """Share of the layers (of one MLP kind, or all with None) that own an indexer
    (``MLASpec.indexer_layers``); 1.0 when every layer does, 0.0 without an indexer."""
    if not indexer_params(model):
        return 0.0
    owners = (model.block_sparse.layers if model.block_sparse is not None
              else model.mla.indexer_layers)
    if owners is None:
        return 1.0
    if moe_layer is None:
        return sum(owners) / len(owners)
    from .attention_variants import layer_kinds

    mine = [o for o, (_, m) in zip(owners, layer_kinds(model), strict=True) if m == moe_layer]
    return sum(mine) / len(mine) if mine else 1.0


def qk_norm_params(model: ModelSpec) -> int:
    """Query and key RMSNorm scales of one layer (``ModelSpec.qk_norm``)."""
    if model.qk_norm == "per_head":
        return 2 * model.hd
    if model.qk_norm == "per_layer":
        return (model.num_heads + model.kv_heads) * model.hd
    return 0


def linear_attention_params(model: ModelSpec) -> int:
    """One gated-delta-net mixer (transformers Qwen3NextGatedDeltaNet): in_proj_qkvz
    h x (2 key_dim + 2 value_dim), in_proj_ba h x 2 value heads, depthwise conv1d over q, k, v
    without bias, dt_bias and A_log per value head, gated RMSNorm over a value head, out_proj."""
    la = model.linear_attention
    if la is None:
        return 0
    h = model.hidden_size
    key_dim, value_dim = la.num_key_heads * la.key_head_dim, la.num_value_heads * la.value_head_dim
    if la.kind == "kda":  # Kimi delta attention (LinearAttentionSpec; NeMo KimiDeltaAttention)
        d = la.key_head_dim
        gate = h * value_dim if la.full_rank_gate else h * d + d * value_dim
        return (
            h * (2 * key_dim + value_dim) + (2 * key_dim + value_dim) * la.conv_kernel
            + la.num_value_heads + value_dim + h * d + d * value_dim + h * la.num_value_heads
            + gate + la.value_head_dim + value_dim * h
        )
    return (
        h * (2 * key_dim + 2 * value_dim) + h * 2 * la.num_value_heads
        + (2 * key_dim + value_dim) * la.conv_kernel + 2 * la.num_value_heads
        + la.value_head_dim + value_dim * h
    )


def mamba_params(model: ModelSpec) -> int:
    """One Mamba-2 mixer (transformers NemotronHMamba2Mixer): in_proj h x (d_inner + conv_dim
    + heads) without bias, depthwise conv1d conv_dim x kernel (+ bias), dt_bias, A_log and D
    per head, the gated RMSNorm over d_inner, out_proj d_inner x h."""
    m = model.mamba
    if m is None:
        return 0
    h = model.hidden_size
    return (
        h * (m.d_inner + m.conv_dim + m.num_heads) + m.conv_dim * m.conv_kernel
        + (m.conv_dim if m.conv_bias else 0) + 3 * m.num_heads + m.d_inner + m.d_inner * h
    )


def hybrid_adjustment(model: ModelSpec, attention_full: int, dense_mlp: int) -> int:
    """Parameters of Mamba / mixer-less / MLP-less layers relative to the attention + MLP
    layer that ``ParamCounts`` counts for every layer of their MLP kind."""
    if model.mamba is None and model.no_mlp_layers is None and not (
            model.layer_types and "none" in model.layer_types) and \
            model.sliding_attention is None and model.ffn_layer_sizes is None:
        return 0
    from .attention_variants import SLIDING, kind_model, layer_kinds

    sliding = 0
    if model.sliding_attention is not None:  # their own attention shape (kind_model)
        km = kind_model(model, SLIDING)
        sliding = sum(attention_params(km)) + qk_norm_params(km) - attention_full
    no_mlp = model.no_mlp_layers or (False,) * model.num_layers
    sizes = model.ffn_layer_sizes or (model.ffn_hidden_size,) * model.num_layers
    # with a norm before each half (norms_per_layer 2: DeciLM input_layernorm /
    # post_attention_layernorm exist only for a present half); Nemotron-H's one norm per
    # block belongs to whichever half it has
    half_norm = norm_params(model, model.hidden_size) if model.norms_per_layer >= 2 else 0
    adj = 0
    for (kind, moe), none, size in zip(layer_kinds(model), no_mlp, sizes, strict=True):
        if kind == SLIDING:
            adj += sliding
        elif kind == "mamba":
            adj += mamba_params(model) - attention_full
        elif kind == "none":
            adj -= attention_full + half_norm
        if none and not moe:
            adj -= dense_mlp + half_norm
        elif not moe and size != model.ffn_hidden_size:  # a NAS block's own MLP width
            adj += mlp_params(model, size) - dense_mlp
    return adj


def param_counts(model: ModelSpec) -> ParamCounts:
    h, v = model.hidden_size, model.vocab_size
    attn, attn_rep = attention_params(model)
    moe = model.moe
    positions = 0
    if model.position_embedding == "learned":
        positions = (model.position_embedding_size or model.max_position_embeddings) * h
    return ParamCounts(
        word_embedding=v * h,
        position_embedding=positions,
        embedding_norm=norm_params(model, h) if model.embedding_norm else 0,
        attention=attn,
        attention_replicated=attn_rep,
        layer_norms=model.norms_per_layer * norm_params(model, h) + qk_norm_params(model)
        + hyper_connection_params(model)
        + (2 * (norm_params(model, h) + h) if model.attention_residual_block else 0),
        dense_mlp=mlp_params(model, model.ffn_hidden_size),
        expert=mlp_params(model, moe.expert_ffn_hidden_size, moe.latent_size) if moe else 0,
        shared_experts=(moe.num_shared_experts * mlp_params(model, moe.shared_ffn)) if moe else 0,
        router=(
            h * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
            + (h if moe.shared_expert_gate else 0) + (h if moe.router_input_scale else 0)
            + (moe.num_experts if moe.expert_output_scale else 0)
            + moe.extra_norms * norm_params(model, h)
        ) if moe else 0,
        final_norm=(norm_params(model, h) if model.final_norm else 0)
        + hyper_connection_head_params(model)
        + (norm_params(model, h) + h if model.attention_residual_block else 0),
        lm_head=0 if model.tie_embeddings else v * h + (v if model.lm_head_bias else 0),
        num_layers=model.num_layers,
        num_dense_layers=model.num_dense_layers,
        num_moe_layers=model.num_moe_layers,
        num_experts=moe.num_experts if moe else 0,
        top_k=moe.top_k if moe else 0,
        linear_attention_delta=(
            linear_attention_params(model) - attn - attn_rep - qk_norm_params(model)
        ) if model.linear_attention else 0,
        num_linear_attention_layers=model.num_linear_attention_layers,
        hybrid_adjustment=hybrid_adjustment(model, attn + attn_rep + qk_norm_params(model),
                                            mlp_params(model, model.ffn_hidden_size)),
        moe_latent_proj=latent_proj_params(model),
        indexer_adjustment=-indexer_params(model) * _layers_without_indexer(model)
        + compressed_adjustment(model) + hash_routing_adjustment(model),
    )


def compressed_base_attention_params(model: ModelSpec) -> tuple[int, int]:
    """(TP-sharded, replicated) parameters of a DeepSeek-V4 attention layer without its
    compressor: the sums of ``compressed_attention_projections``."""
    sharded, replicated = compressed_attention_projections(model)
    return sum(sharded.values()), sum(replicated.values())


def compressed_attention_projections(model: ModelSpec) -> tuple[dict[str, int], dict[str, int]]:
    """(TP-sharded, replicated) parameters of a DeepSeek-V4 attention layer without its
    compressor by module (ModelSpec.compressed_attention; DeepSeek inference/model.py
    ``Attention``): sharded wq_b q_lora x heads x head_dim, wo_a (heads x head_dim / groups)
    x (groups x o_lora), wo_b groups x o_lora x hidden and attn_sink, one per head;
    replicated wq_a hidden x q_lora, q_norm, wkv hidden x head_dim (the one K = V head) and
    kv_norm."""
    ca = model.compressed_attention
    h, nh, d = model.hidden_size, model.num_heads, ca.head_dim
    sharded = {"wq_b": ca.q_lora_rank * nh * d, "wo_a": nh * d * ca.o_lora_rank,
               "wo_b": ca.o_groups * ca.o_lora_rank * h, "attn_sink": nh}
    replicated = {"wq_a": h * ca.q_lora_rank, "q_norm": norm_params(model, ca.q_lora_rank),
                  "wkv": h * d, "kv_norm": norm_params(model, d)}
    return sharded, replicated


def compressor_params(model: ModelSpec, ratio: int, head_dim: int) -> int:
    """One Compressor (DeepSeek inference/model.py): ape ratio x coff head_dim, wkv and wgate
    hidden x coff head_dim, RMSNorm of head_dim; coff = 2 when its windows overlap (ratio ==
    ``sparse_ratio``: ``overlap = compress_ratio == 4``), else 1."""
    coff = model.compressed_attention.coff(ratio)
    return ratio * coff * head_dim + 2 * model.hidden_size * coff * head_dim \
        + norm_params(model, head_dim)


def compressed_layer_extra_params(model: ModelSpec, ratio: int) -> int:
    """A DeepSeek-V4 layer's compressor and, at ``sparse_ratio``, its lightning indexer (wq_b
    q_lora x heads x head_dim, weights_proj hidden x heads, its own compressor of the
    indexer head size); 0 for ratio 0 (window only)."""
    ca = model.compressed_attention
    if not ratio:
        return 0
    extra = compressor_params(model, ratio, ca.head_dim)
    if ratio == ca.sparse_ratio:
        n, d = ca.indexer_heads, ca.indexer_head_dim
        extra += ca.q_lora_rank * n * d + model.hidden_size * n + compressor_params(
            model, ratio, d)
    return extra


def compressed_adjustment(model: ModelSpec) -> int:
    """Compressors and indexers of all DeepSeek-V4 layers (replicated over TP: every rank
    compresses all tokens); 0 without compressed attention."""
    ca = model.compressed_attention
    if ca is None:
        return 0
    return sum(compressed_layer_extra_params(model, r) for r in ca.ratios)


def hash_routing_adjustment(model: ModelSpec) -> int:
    """Hash-routed MoE layers (MoESpec.hash_layers): a vocab x top_k token -> expert table
    instead of the per-expert routing bias (DeepSeek inference/model.py Gate ``tid2eid``)."""
    moe = model.moe
    if moe is None or not moe.hash_layers:
        return 0
    bias = moe.num_experts if moe.router_bias else 0
    return moe.hash_layers * (model.vocab_size * moe.top_k - bias)


def hyper_connection_params(model: ModelSpec) -> int:
    """Hyper-connection weights of one layer (ModelSpec.hyper_connections = n; DeepSeek
    inference/model.py Block): for the attention and the FFN sublayer each hc_fn
    (2 + n) n x n hidden, hc_base (2 + n) n and hc_scale 3; 0 for a plain residual."""
    n = model.hyper_connections
    if n == 1:
        return 0
    mix = (2 + n) * n
    return 2 * (mix * n * model.hidden_size + mix + 3)


def hyper_connection_head_params(model: ModelSpec) -> int:
    """hc_head_fn n x n hidden, hc_head_base n and hc_head_scale 1 (Transformer.hc_head)."""
    n = model.hyper_connections
    return 0 if n == 1 else n * n * model.hidden_size + n + 1


def _layers_without_indexer(model: ModelSpec) -> int:
    """Layers whose attention has no indexer although the layer kind counts one."""
    if model.block_sparse is not None and model.block_sparse.layers is not None:
        return model.block_sparse.layers.count(False)
    if model.mla and model.mla.indexer_layers:
        return model.mla.indexer_layers.count(False)
    return 0


def latent_proj_params(model: ModelSpec) -> int:
    """fc1_latent_proj (hidden x latent) and fc2_latent_proj (latent x hidden) of one latent
    MoE layer, biased with the MLP bias (NVIDIA LatentMoE; vLLM / TensorRT-LLM NemotronH
    ``fc1_latent_proj`` / ``fc2_latent_proj``); 0 without a latent."""
    moe = model.moe
    if moe is None or moe.latent_size is None:
        return 0
    h, lat = model.hidden_size, moe.latent_size
    return 2 * h * lat + ((lat + h) if model.mlp_bias else 0) + (
        norm_params(model, lat) if moe.latent_norm else 0)
