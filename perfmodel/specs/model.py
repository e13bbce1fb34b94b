"""Model architecture schema: a HuggingFace-config-like description of a decoder-only LLM.

Exact enough to count every parameter of the released checkpoints (tests check published
totals): GQA/MQA through ``num_kv_heads``, MLA (DeepSeek-V2/V3) through ``mla``, gated MLPs
(SwiGLU/GeGLU), biases, tied embeddings, learned/rotary/ALiBi positions, and MoE (routed and
shared experts, dense leading layers).
"""


from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..dtypes import DType, nbytes
from ..errors import SpecError
from .common import Source, Strict
from .types import MAX_LAYERS, MAX_TOKENS, MAX_WIDTH, Bool, Float, Int


class MoESpec(Strict):
    """Mixture of experts (Shazeer et al. 2017; Fedus et al. 2021; DeepSeek-V3 arXiv 2412.19437)."""

    num_experts: Int = Field(ge=1, le=MAX_WIDTH)
    top_k: Int = Field(ge=1, le=MAX_WIDTH)
    expert_ffn_hidden_size: Int = Field(ge=1, le=MAX_WIDTH)
    num_shared_experts: Int = Field(default=0, ge=0, le=MAX_WIDTH)
    # per shared
    shared_expert_ffn_hidden_size: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    # leading dense layers (DeepSeek)
    first_dense_layers: Int = Field(default=0, ge=0, le=MAX_LAYERS)
    # every n-th layer after those is MoE
    layer_frequency: Int = Field(default=1, ge=1, le=MAX_LAYERS)
    router_bias: Bool = False  # per-expert routing bias (DeepSeek-V3 e_score_correction_bias)
    shared_expert_gate: Bool = False  # sigmoid gate h -> 1 on the shared expert (Qwen1.5/2-MoE)
    # Which layers are MoE, one entry per layer (True: MoE), when the config lists them
    # (mlp_only_layers, a per-layer moe_layer_freq list). None: first_dense_layers and
    # layer_frequency decide.
    layer_pattern: tuple[Bool, ...] | None = None
    # Latent MoE (Nemotron 3 Super / Ultra ``moe_latent_size``; NVIDIA LatentMoE): the router
    # reads the hidden state, fc1_latent_proj (hidden -> latent) feeds the routed experts,
    # which run latent -> expert_ffn -> latent, and fc2_latent_proj (latent -> hidden) brings
    # their sum back; shared experts stay at the hidden width. None: experts read the hidden
    # state.
    latent_size: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    # Gemma 4's MoE block (transformers Gemma4Router / Gemma4MoEBlock): a learned scale of
    # hidden width on the router input, a learned output scale per expert, and RMSNorms of
    # hidden width the MoE layer adds around its branches (3: pre_feedforward_layernorm_2,
    # post_feedforward_layernorm_1 / _2)
    router_input_scale: Bool = False
    expert_output_scale: Bool = False
    extra_norms: Int = Field(default=0, ge=0, le=8)
    # Hash-routed MoE layers (DeepSeek-V4 ``num_hash_layers``; DeepSeek inference/model.py
    # Gate: ``hash = layer_id < n_hash_layers``): the first this-many MoE layers pick their
    # experts from a learned token-id -> top_k table (vocab x top_k ``tid2eid``) instead of
    # the router's top-k, and have no routing bias; the router GEMM still scores the picked
    # experts (the same operators)
    hash_layers: Int = Field(default=0, ge=0, le=MAX_LAYERS)
    # an RMSNorm of the latent on the routed experts' combined output before the up
    # projection (Kimi K3 ``latent_moe_use_norm``: routed_expert_norm)
    latent_norm: Bool = False
    # Group-limited routing (DeepSeek-V3 arXiv 2412.19437 Sec. 2.1.2; config.json n_group /
    # topk_group, Kimi K3 num_expert_group): the experts form n_group groups of consecutive
    # experts and a token picks its top_k among the topk_group groups it selects first.
    # None: all groups (no limit). Read by the EP all-to-all volume
    # (parallel_comm.distinct_groups).
    n_group: Int = Field(default=1, ge=1, le=MAX_WIDTH)
    topk_group: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)

    @model_validator(mode="after")
    def _check(self) -> "MoESpec":
        if self.top_k > self.num_experts:
            raise SpecError(
                f"moe.top_k ({self.top_k}) must be <= moe.num_experts ({self.num_experts})"
            )
        if self.num_experts % self.n_group:
            raise SpecError(f"moe.n_group ({self.n_group}) must divide moe.num_experts "
                            f"({self.num_experts})")
        if self.topk_group is not None:
            if self.topk_group > self.n_group:
                raise SpecError(f"moe.topk_group ({self.topk_group}) must be <= moe.n_group "
                                f"({self.n_group})")
            if self.top_k > self.topk_group * self.num_experts // self.n_group:
                raise SpecError(f"moe.top_k ({self.top_k}) must fit in the experts of "
                                f"moe.topk_group ({self.topk_group}) groups of "
                                f"{self.num_experts // self.n_group}")
        return self

    @property
    def routing_groups(self) -> tuple[int, int | None]:
        """(n_group, topk_group): the group-limited routing the EP all-to-all volume follows
        (``parallel_comm.distinct_groups``)."""
        return self.n_group, self.topk_group

    @property
    def shared_ffn(self) -> int:
        return self.shared_expert_ffn_hidden_size or self.expert_ffn_hidden_size


class MLASpec(Strict):
    """Multi-head latent attention (DeepSeek-V2 arXiv 2405.04434 Sec. 2.1)."""

    # None: direct query projection
    q_lora_rank: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    kv_lora_rank: Int = Field(ge=1, le=MAX_WIDTH)
    qk_nope_head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    qk_rope_head_dim: Int = Field(ge=0, le=MAX_WIDTH)
    v_head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    # DeepSeek sparse attention's lightning indexer (DeepSeek-V3.2, GLM-5): per layer wq_b
    # (q_lora_rank -> heads x head_dim), wk (hidden -> head_dim), a LayerNorm on the key and
    # weights_proj (hidden -> heads). None: no indexer. Each query then attends to the
    # ``indexer_topk`` keys the indexer selects (ops.mixer_ops; memory: the indexer's key
    # cache, ops.indexer_key_bytes).
    indexer_heads: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    indexer_head_dim: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    # keys each query attends to (HF ``index_topk``; DeepSeek-V3.2 / GLM-5: 2048)
    indexer_topk: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    # which layers own an indexer (True), one entry per layer; the others reuse the top-k
    # indices of the last layer that has one and hold no indexer weights or index keys
    # (GLM-5.2 IndexShare, HF ``indexer_types`` "full" / "shared"). None: every layer.
    indexer_layers: tuple[Bool, ...] | None = None

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim


#: dtypes a recurrent (SSM / linear-attention) state is kept in (HF ``mamba_ssm_dtype``
#: "float32" / "bfloat16" / "float16", in perfmodel's names)
SsmDType = Literal["fp32", "bf16", "fp16"]
#: the model dtype, the one a state "in the model dtype" has (vLLM's mamba_cache_dtype "auto"
#: = model_config.dtype): perfmodel reads no per-model dtype (HF ``torch_dtype`` is skipped
#: on import) and models every checkpoint's activations in bf16
MODEL_DTYPE = "bf16"


class _RecurrentState(Strict):
    """The state dtype fields of a linear-attention / Mamba mixer. ``ssm_dtype`` is the input
    (the checkpoint config's); ``state_bytes`` / ``conv_bytes`` are derived: perfmodel's
    generic rule on loading (the config's dtype, else the model dtype), the engine's
    ``memory.state_dtype`` rule on resolving a scenario (attention_variants.with_state_dtypes).
    Giving them is an error (a value the engine's rule would overwrite), and they are left out
    of dumps, so a dumped spec loads again."""

    _SECTION: ClassVar[str] = ""  # the ModelSpec field a subclass is, for messages
    # the checkpoint config's state dtype (``mamba_ssm_dtype``, Nemotron's
    # ``mamba_ssm_cache_dtype``; None: not stated)
    ssm_dtype: SsmDType | None = None
    # bytes per element of the recurrent / SSM state and of the conv state (derived, above)
    state_bytes: Float = Field(default=nbytes(MODEL_DTYPE), gt=0, le=8, exclude=True)
    conv_bytes: Float = Field(default=nbytes(MODEL_DTYPE), gt=0, le=8, exclude=True)

    @field_validator("state_bytes", "conv_bytes", mode="before")
    @classmethod
    def _derived(cls, value: object, info: ValidationInfo) -> object:
        if info.field_name == "conv_bytes":
            raise SpecError("derived, not an input: the conv state is kept in the engine's "
                            "dtype (engines/<id>.yaml memory.state_dtype.conv)")
        raise SpecError(f"derived from the state dtype, not an input: set {cls._SECTION}."
                        "ssm_dtype (the checkpoint's, fp32 / bf16 / fp16) or the scenario's "
                        "inference.ssm_state_dtype (the engine's launch option); the bytes "
                        "follow the engine's memory.state_dtype rule")

    @model_validator(mode="after")
    def _generic_state(self) -> "_RecurrentState":
        # perfmodel's generic rule until an engine's replaces it (the fields are derived)
        object.__setattr__(self, "state_bytes", nbytes(self.ssm_dtype or MODEL_DTYPE))
        return self


class LinearAttentionSpec(_RecurrentState):
    """The linear-attention mixer of the ``linear_attention`` layers in ``layer_types``:
    gated delta net (Yang et al. 2024, arXiv 2412.06464; Qwen3-Next / Qwen3.5
    Qwen3NextGatedDeltaNet): in_proj_qkvz, in_proj_ba, a depthwise causal conv1d over q, k, v,
    dt_bias, A_log, a gated RMSNorm over the value head and out_proj. Counted in parameters;
    its fixed per-sequence state replaces the KV cache (memory.kv_cache_bytes_per_sequence)
    and its chunked / recurrent kernel has its own FLOPs and bytes (ops.linear_attention_ops)."""

    # "kda": Kimi delta attention (Kimi Linear, arXiv 2510.26692 Sec. 3; NVIDIA NeMo
    # AutoModel kimi_k3 KimiDeltaAttention): q_proj, k_proj, v_proj (heads x head_dim each),
    # a short causal conv (no bias) on each, the per-channel decay gate f_b(f_a(x))
    # (hidden -> head_dim -> value_dim) with A_log per head and dt_bias per channel, b_proj
    # (hidden -> heads) for beta, the output gate g_proj (hidden -> value_dim; low-rank
    # g_a / g_b without ``full_rank_gate``), a gated RMSNorm of head_dim and o_proj
    kind: Literal["gated_delta_net", "kda"] = "gated_delta_net"
    num_key_heads: Int = Field(ge=1, le=MAX_WIDTH)
    num_value_heads: Int = Field(ge=1, le=MAX_WIDTH)
    key_head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    value_head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    conv_kernel: Int = Field(default=4, ge=1, le=MAX_WIDTH)
    full_rank_gate: Bool = False  # KDA: g_proj hidden x value_dim (else g_a / g_b)
    # ssm_dtype, state_bytes, conv_bytes: _RecurrentState

    _SECTION: ClassVar[str] = "linear_attention"


class MambaSpec(_RecurrentState):
    """The Mamba-2 mixer of the ``mamba`` layers in ``layer_types`` (Dao & Gu 2024, arXiv
    2405.21060; transformers NemotronHMamba2Mixer): in_proj h -> 2 d_inner + 2 groups x state
    + heads, a depthwise conv1d over x, B, C, dt_bias / A_log / D per head, a gated RMSNorm
    over d_inner and out_proj; d_inner = num_heads x head_dim."""

    num_heads: Int = Field(ge=1, le=MAX_WIDTH)
    head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    state_size: Int = Field(ge=1, le=MAX_WIDTH)
    n_groups: Int = Field(default=1, ge=1, le=MAX_WIDTH)
    conv_kernel: Int = Field(default=4, ge=1, le=MAX_WIDTH)
    conv_bias: Bool = True
    chunk_size: Int = Field(default=128, ge=1, le=MAX_TOKENS)  # SSD chunk length
    # ssm_dtype, state_bytes, conv_bytes: _RecurrentState

    _SECTION: ClassVar[str] = "mamba"

    @property
    def d_inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.state_size


class BlockSparseSpec(Strict):
    """Block-sparse attention with its own index heads (MiniMax Sparse Attention, MiniMax-M3
    ``sparse_attention_config``; vLLM MiniMaxM3SparseAttention): the fused QKV projection
    also yields ``index_heads`` index queries (one per KV head) and one index key of
    ``index_head_dim``, each RMS-normed; the index queries score every earlier key, each KV
    head keeps the ``topk_blocks`` blocks of ``block_size`` keys with the highest (max) score
    and attends only to them. The index key is cached per token (bf16). ``layers``: which
    layers are sparse (True); the others attend densely and have no index branch."""

    index_heads: Int = Field(ge=1, le=MAX_WIDTH)
    index_head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    block_size: Int = Field(ge=1, le=MAX_TOKENS)
    topk_blocks: Int = Field(ge=1, le=MAX_TOKENS)
    layers: tuple[Bool, ...] | None = None

    @property
    def topk(self) -> int:
        """Keys each query attends."""
        return self.block_size * self.topk_blocks


class CompressedAttentionSpec(Strict):
    """DeepSeek-V4 hybrid attention (layer type ``compressed_attention``; DeepSeek
    inference/model.py ``Attention`` / ``Compressor`` / ``Indexer``, mirrored in vLLM
    deepseek_v4): one shared K = V head of ``head_dim`` (RMS-normed, the last
    ``rope_head_dim`` rotated) per token; queries from a low-rank path (wq_a -> q_norm ->
    wq_b, ``num_heads`` heads of head_dim); every layer attends its last ``window`` tokens
    and a learned per-head sink; a layer with ratio r > 0 also attends one compressed entry
    per r tokens (a Compressor: wkv and wgate of coff x head_dim, a softmax over the r
    (coff = 2: 2r overlapping) tokens weighted by a learned position bias ``ape``, RMSNorm);
    a layer with ratio ``sparse_ratio`` overlaps its windows (coff 2) and attends only the
    ``indexer_topk`` compressed entries a lightning indexer selects (wq_b on the query
    latent, weights_proj, its own compressor of ``indexer_head_dim``), the others attend all
    of theirs. The output projection is grouped low-rank: ``o_groups`` groups of heads each
    projected to ``o_lora_rank`` (wo_a), then wo_b (o_groups x o_lora_rank -> hidden)."""

    head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    rope_head_dim: Int = Field(ge=0, le=MAX_WIDTH)
    q_lora_rank: Int = Field(ge=1, le=MAX_WIDTH)
    o_lora_rank: Int = Field(ge=1, le=MAX_WIDTH)
    o_groups: Int = Field(ge=1, le=MAX_WIDTH)
    window: Int = Field(ge=1, le=MAX_TOKENS)
    ratios: tuple[Int, ...]  # compress ratio per layer (0: the window only)
    sparse_ratio: Int = Field(default=4, ge=1, le=MAX_TOKENS)
    indexer_heads: Int = Field(ge=1, le=MAX_WIDTH)
    indexer_head_dim: Int = Field(ge=1, le=MAX_WIDTH)
    indexer_topk: Int = Field(ge=1, le=MAX_TOKENS)

    def coff(self, ratio: int) -> int:
        """Compressor width factor of a ratio-``ratio`` layer: 2 when its windows overlap
        (``sparse_ratio``; reference ``overlap = compress_ratio == 4``), else 1."""
        return 2 if ratio == self.sparse_ratio else 1

    @model_validator(mode="after")
    def _check(self) -> "CompressedAttentionSpec":
        if any(r < 0 for r in self.ratios):
            raise SpecError("compressed_attention.ratios must be >= 0 (0: window only)")
        return self


class SlidingAttentionSpec(Strict):
    """The attention shape of the ``sliding_attention`` layers where it differs from the
    model's (MiMo-V2-Flash ``swa_num_key_value_heads`` / ``swa_head_dim`` /
    ``swa_v_head_dim`` / ``add_swa_attention_sink_bias``). A None field: the model's value.
    Parameters, KV cache and operators of those layers use it
    (attention_variants.kind_model)."""

    num_heads: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    num_kv_heads: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    head_dim: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    value_head_dim: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    attention_sinks: Bool | None = None
    shared_kv_projection: Bool | None = None


class ModelSpec(Strict):
    """A decoder-only transformer."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-_]*$")
    name: str
    family: str = "gpt"
    num_layers: Int = Field(ge=1, le=MAX_LAYERS)
    hidden_size: Int = Field(ge=1, le=MAX_WIDTH)
    num_heads: Int = Field(ge=1, le=MAX_WIDTH)
    num_kv_heads: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)  # None: = num_heads (MHA)
    head_dim: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)  # None: hidden_size // num_heads
    # width of a value head when it differs from the query/key head (MiMo-V2-Flash
    # v_head_dim 128 against head_dim 192): v_proj, the KV cache's V and o_proj use it
    value_head_dim: Int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    # V is the K projection's output (Gemma 4 ``attention_k_eq_v``): no v_proj weights and
    # no V GEMM; K (normed, rotated) and V (its own norm) are still cached separately
    shared_kv_projection: Bool = False
    # dense MLP width (per gate/up projection if gated)
    ffn_hidden_size: Int = Field(ge=1, le=MAX_WIDTH)
    vocab_size: Int = Field(ge=1, le=MAX_WIDTH)
    max_position_embeddings: Int = Field(default=2048, ge=1, le=MAX_TOKENS)
    # the context a RoPE scaling stretches it to, as vLLM derives max_model_len from config.json
    # (zoo/hf.py rope_scaled_context); None: no scaling stated (max_position_embeddings holds)
    rope_scaled_context: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    gated_mlp: Bool = False  # SwiGLU / GeGLU: gate and up projections, then down
    activation: Literal["gelu", "silu", "relu", "swiglu", "geglu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_bias: Bool = True  # layernorm with a bias (ignored for rmsnorm)
    norms_per_layer: Int = Field(default=2, ge=1, le=8)  # GPT-J's shared pre-norm: 1
    position_embedding: Literal["rope", "learned", "alibi", "none"] = "rope"
    # learned table rows
    position_embedding_size: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    tie_embeddings: Bool = False
    parallel_attention: Bool = False  # attention and MLP read the same input (GPT-J, Falcon)
    qkv_bias: Bool = False
    attn_out_bias: Bool = False
    mlp_bias: Bool = False
    lm_head_bias: Bool = False
    embedding_norm: Bool = False  # BLOOM's word_embeddings_layernorm
    final_norm: Bool = True
    # RMSNorm on queries and keys before RoPE: "per_head" = one scale of head_dim shared by
    # every head (Qwen3 q_norm / k_norm), "per_layer" = one scale over all heads' width
    # (MiniMax-M2 qk_norm_type: per_layer). Counted in parameters; no FLOPs modelled.
    qk_norm: Literal["none", "per_head", "per_layer"] = "none"
    # one learned softmax-sink logit per attention head per layer (gpt-oss `sinks`)
    attention_sinks: Bool = False
    # Per-layer attention kinds (HF `layer_types`) and the sliding window of the
    # "sliding_attention" layers: a sliding layer caches and attends min(context, W) keys,
    # a linear_attention layer holds a fixed state (attention_variants.py); parameters are
    # those of a full-attention layer (plus the linear mixer's difference).
    layer_types: tuple[
        Literal["full_attention", "sliding_attention", "linear_attention", "mamba", "none",
                "compressed_attention"],
        ...] | None = None
    # Nemotron-H-style blocks of one mixer or one MLP: "mamba" layers run ``mamba`` instead of
    # attention, "none" layers have no token mixer, and ``no_mlp_layers`` marks layers
    # without an MLP (True) - an attention or Mamba block.
    mamba: MambaSpec | None = None
    no_mlp_layers: tuple[Bool, ...] | None = None
    # NAS-style blocks (DeciLM / Llama-Nemotron ``block_configs``): each layer's dense MLP
    # width, one entry per layer (entries of MoE or MLP-less layers are not used); None:
    # every dense layer has ffn_hidden_size
    ffn_layer_sizes: tuple[Int, ...] | None = None
    sliding_window: Int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    sliding_attention: SlidingAttentionSpec | None = None  # their own shape, if different
    block_sparse: BlockSparseSpec | None = None  # MiniMax Sparse Attention's index branch
    linear_attention: LinearAttentionSpec | None = None  # the linear_attention layers' mixer
    # the compressed_attention layers' mixer (DeepSeek-V4 CSA / HCA)
    compressed_attention: CompressedAttentionSpec | None = None
    # Hyper-connections (DeepSeek-V4 ``hc_mult``; Zhu et al. 2024 arXiv 2409.19606,
    # manifold-constrained mHC): the residual stream is this many copies of the hidden
    # state; before each sublayer a mix (hc_fn: (2 + n) n x n hidden, base, scale) gives the
    # pre weights that sum the copies into the sublayer input, the post weights and the
    # Sinkhorn-normalised n x n combination that write its output back (DeepSeek
    # inference/model.py Block.hc_pre / hc_post; the head reduces the copies with hc_head).
    # 1: a plain residual.
    hyper_connections: Int = Field(default=1, ge=1, le=64)
    # Block attention residuals (Kimi K3 ``attn_res_block_size``; Attention Residuals,
    # Moonshot 2026; NeMo AutoModel kimi_k3 KimiDecoderLayer._forward_attn_residual): the
    # input of each sublayer is a softmax over the completed blocks' outputs (one every this
    # many layers) and the running partial sum, scored against a learned query vector
    # (res_proj, hidden -> 1) through an RMSNorm (res_norm); per layer two of each, and one
    # pair for the final output. None: a plain residual.
    attention_residual_block: Int | None = Field(default=None, ge=1, le=MAX_LAYERS)
    # the query projection also yields a per-channel sigmoid gate on the attention output
    # (Qwen3-Next / Qwen3.5 attn_output_gate): q_proj is 2 x num_heads x head_dim wide
    attention_output_gate: Bool = False
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    # total, as published (for tests / display)
    published_params: Float | None = Field(default=None, gt=0)
    published_active_params: Float | None = Field(default=None, gt=0)
    # the checkpoint's weight formats by tensor class ({"default": ..., class: ...}, from a HF
    # quantization_config: perfmodel.zoo.hf_quant); an inference scenario without its own
    # weight_dtype uses them (perfmodel.formats)
    checkpoint_formats: dict[str, DType] | None = None
    # the KV-cache format the checkpoint is calibrated for (ModelOpt kv_cache_quant_algo,
    # compressed-tensors kv_cache_scheme: perfmodel.zoo.hf_quant.kv_cache_format); an
    # inference scenario without its own kv_dtype uses it
    checkpoint_kv_dtype: Literal["fp8", "int8", "nvfp4"] | None = None
    source: Source | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        kv = self.kv_heads
        if self.num_heads % kv:
            raise SpecError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})"
            )
        if self.head_dim is None and self.hidden_size % self.num_heads and self.mla is None:
            raise SpecError(
                f"hidden_size ({self.hidden_size}) is not divisible by num_heads "
                f"({self.num_heads}); give head_dim explicitly"
            )
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise SpecError("moe.first_dense_layers must be <= num_layers")
        pattern = self.moe.layer_pattern if self.moe else None
        if pattern is not None and len(pattern) != self.num_layers:
            raise SpecError(
                f"moe.layer_pattern has {len(pattern)} entries; it needs one per layer "
                f"(num_layers = {self.num_layers})"
            )
        if self.layer_types is not None and len(self.layer_types) != self.num_layers:
            raise SpecError(
                f"layer_types has {len(self.layer_types)} entries; it needs one per layer "
                f"(num_layers = {self.num_layers})"
            )
        if (self.layer_types and "sliding_attention" in self.layer_types
                and self.sliding_window is None):
            raise SpecError("layer_types has sliding_attention layers; give sliding_window")
        if (self.layer_types and "linear_attention" in self.layer_types
                and self.linear_attention is None):
            raise SpecError("layer_types has linear_attention layers; give linear_attention")
        if (self.layer_types and "compressed_attention" in self.layer_types
                and self.compressed_attention is None):
            raise SpecError("layer_types has compressed_attention layers; give "
                            "compressed_attention")
        ca = self.compressed_attention
        if ca is not None and len(ca.ratios) != self.num_layers:
            raise SpecError(f"compressed_attention.ratios has {len(ca.ratios)} entries; it "
                            f"needs one per layer (num_layers = {self.num_layers})")
        if self.layer_types and "mamba" in self.layer_types and self.mamba is None:
            raise SpecError("layer_types has mamba layers; give mamba")
        sparse = self.block_sparse.layers if self.block_sparse else None
        if sparse is not None and len(sparse) != self.num_layers:
            raise SpecError(
                f"block_sparse.layers has {len(sparse)} entries; it needs one per layer "
                f"(num_layers = {self.num_layers})")
        owners = self.mla.indexer_layers if self.mla else None
        if owners is not None and len(owners) != self.num_layers:
            raise SpecError(
                f"mla.indexer_layers has {len(owners)} entries; it needs one per layer "
                f"(num_layers = {self.num_layers})")
        if owners is not None and not self.mla.indexer_heads:
            raise SpecError("mla.indexer_layers needs mla.indexer_heads (an indexer)")
        if self.ffn_layer_sizes is not None and len(self.ffn_layer_sizes) != self.num_layers:
            raise SpecError(
                f"ffn_layer_sizes has {len(self.ffn_layer_sizes)} entries; it needs one per "
                f"layer (num_layers = {self.num_layers})")
        if self.no_mlp_layers is not None:
            if len(self.no_mlp_layers) != self.num_layers:
                raise SpecError(
                    f"no_mlp_layers has {len(self.no_mlp_layers)} entries; it needs one per "
                    f"layer (num_layers = {self.num_layers})")
            if pattern is not None and any(a and b for a, b in zip(
                    self.no_mlp_layers, pattern, strict=True)):
                raise SpecError("a layer cannot be both MoE (moe.layer_pattern) and without "
                                "MLP (no_mlp_layers)")
        return self

    # --- derived sizes -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def hd(self) -> int:
        """Head dimension of standard attention (query/key; value unless value_head_dim)."""
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def vd(self) -> int:
        """Value head dimension of standard attention."""
        return self.value_head_dim or self.hd

    @property
    def attention_kind(self) -> str:
        if self.mla:
            return "mla"
        if self.kv_heads == self.num_heads:
            return "mha"
        return "mqa" if self.kv_heads == 1 else "gqa"

    @property
    def num_moe_layers(self) -> int:
        if not self.moe:
            return 0
        if self.moe.layer_pattern is not None:
            return sum(self.moe.layer_pattern)
        rest = self.num_layers - self.moe.first_dense_layers
        return rest // self.moe.layer_frequency

    @property
    def num_linear_attention_layers(self) -> int:
        return self.layer_types.count("linear_attention") if self.layer_types else 0

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers
