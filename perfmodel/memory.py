"""Memory per GPU for training and inference, by kind.

Training model states follow ZeRO (Rajbhandari et al. 2020, arXiv 1910.02054, Sec. 3.1 and
5.1): 16-bit weights and gradients plus K bytes of optimizer state per parameter (K = 12 for
mixed-precision Adam: fp32 master, momentum, variance), each sharded over the data-parallel
ranks from stage 1 (optimizer), 2 (+gradients) and 3 (+weights). Megatron keeps gradients in
fp32 by default (``grad_reduce_dtype``), i.e. 18 B/param without sharding.

Activations follow Korthikanti et al. 2022 (arXiv 2205.05198) Sec. 4, written per tensor so
that GQA, gated MLPs, FlashAttention, MoE and dropout-free models are exact; for a GPT with
dropout it reduces to eq. 1-6: sbh(34 + 5as/h) per layer without parallelism,
sbh(10 + 24/t + 5as/(ht)) with TP, sbh/t (34 + 5as/h) with TP+SP, 34 sbh/t with selective
recompute, and 2sbh/t per layer with full recompute.

All functions are pure and array-friendly (plan dimensions may be numpy arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .dtypes import nbytes, quantized_weight_bytes
from .profile import MemoryOverheads
from .specs.hardware import DeviceSpec
from .specs.model import ModelSpec

Array = Any
GIB = 2**30

OPTIMIZER_STATE_BYTES = {  # per parameter, fp32 states (ZeRO Sec. 3.1)
    ("adam", True): 12.0, ("adam", False): 8.0,
    ("adamw", True): 12.0, ("adamw", False): 8.0,
    ("sgd", True): 8.0, ("sgd", False): 4.0,  # SGD with momentum
}


@dataclass(frozen=True, repr=False, eq=False)  # holds arrays: no generated ==, repr
class ActivationShape:
    """Per-GPU activation geometry of one micro-batch."""

    b: Array  # micro-batch (sequences)
    s: Array  # tokens per sequence on this GPU (seq_len / cp)
    s_kv: Array  # keys each query may attend (seq_len)
    tp: Array = 1
    sequence_parallel: bool = False
    act_bytes: float = 2.0
    dropout: bool = False
    flash_attention: bool = True


def layer_activation_bytes(model: ModelSpec, shape: ActivationShape, recompute: str,
                           moe_layer: bool = False, top_k: int = 1, etp: Array = 1,
                           modules: tuple[str, ...] | None = None) -> Array:
    """Bytes one layer keeps for backward, per micro-batch (Korthikanti et al. 2022 Sec. 4.1).
    ``modules`` (selective recompute, Megatron-Core recompute_modules): ``layernorm`` keeps no
    norm outputs (the GEMM inputs after each norm, re-made from the kept norm inputs),
    ``moe_act`` no expert activation outputs (re-made from the kept fc1 outputs),
    ``mla_up_proj`` no MLA query / key / value (Megatron-Core multi_latent_attention.py @d98e8a64:
    ``qkv_up_checkpoint = CheckpointWithoutOutput``, the up projections' and rope's outputs are
    discarded after the core attention, ``discard_output_and_register_recompute``, and re-made
    from the kept latents); the other modules' savings are not modelled.

    MLA layers also keep their latents (``_mla_latent_width``): the q / kv latents before and
    after their norms (the norm's input and the up projection's input; Megatron-Core's TE spec
    fuses each latent norm into its up projection, TELayerNormColumnParallelLinear, which saves
    both) and the rope key, on the local sequence shard like the other ``seq`` tensors.

    Tensors are split by where they live: ``seq`` ones (layer-norm inputs, GEMM inputs after
    the norm, dropout masks) are sharded only by sequence parallelism; ``tp`` ones (Q, K, V,
    attention output, MLP intermediates, s x s scores) by tensor parallelism. Hybrid models
    weight each token-mixer kind by its share of the layers of this MLP kind (sliding windows
    cap unfused scores at W; gated-delta-net and Mamba-2 mixers keep ``_gdn_saved_width`` /
    ``_mamba_saved_width`` elements per token; mixer-less layers none) and the MLP by the
    share of layers that have one (NAS blocks: each width its share).
    """
    b, s, t, a = shape.b, shape.s, shape.tp, shape.act_bytes
    h = model.hidden_size
    sbh = s * b * h
    seq_div = t if shape.sequence_parallel else 1
    # hyper-connections (ModelSpec.hyper_connections = n): the residual stream is n copies
    # wide, so the layer input and each sublayer's hc_pre input keep n h per token
    hc_extra = (model.hyper_connections - 1) * a * sbh
    if recompute == "full":
        return (a * sbh + hc_extra) / seq_div  # only the layer input (Korthikanti eq. 4)
    if recompute == "op":  # layer input + saved matmul outputs + attention output
        from .recompute import op_policy_split

        saved, _ = op_policy_split(model, moe_layer)
        kept = sum(a * s * b * mm.width / (t if mm.column_parallel else 1) for _, mm in saved)
        attn_out = model.num_heads * (model.mla.v_head_dim if model.mla else model.vd)
        return (a * sbh + hc_extra) / seq_div + kept + (a * s * b * attn_out + 4.0 * b * model.num_heads * s) / t
    from .attention_variants import (
        LINEAR,
        MAMBA,
        NO_MIXER,
        attention_mix,
        dense_mlp_widths,
        mlp_share,
    )

    mask = 1.0 if shape.dropout else 0.0  # one byte per element
    modules = modules if recompute == "selective" and modules else ()
    # the token mixer of each kind, weighted by its share of this MLP kind's layers (Mamba,
    # gated-delta-net and mixer-less layers of hybrid models keep other tensors)
    seq, tp_part = 0.0, 0.0
    for kind, share in attention_mix(model, moe_layer):
        if kind == NO_MIXER:
            continue
        # mixer norm input, projection input, attention dropout mask
        seq = seq + share * (2 * a * sbh + mask * sbh)
        if kind == LINEAR:
            tp_part = tp_part + share * a * s * b * _gdn_saved_width(model)
        elif kind == MAMBA:
            tp_part = tp_part + share * a * s * b * _mamba_saved_width(model)
        else:
            tp_part = tp_part + share * _attention_saved_bytes(
                model, kind, shape, recompute, up_proj="mla_up_proj" in modules)
            if model.mla:
                seq = seq + share * a * s * b * _mla_latent_width(model)
    # (sums written out, not +=: the terms broadcast over different plan axes in a search)
    with_mlp = mlp_share(model, moe_layer)
    seq = seq + with_mlp * (2 * a * sbh + mask * sbh)  # MLP norm input, MLP input, mask
    seq = seq + 2 * hc_extra  # the n-wide inputs of both sublayers' hc_pre
    if "layernorm" in modules:  # the norm outputs (each sublayer's GEMM input) not kept
        mixers = sum(share for kind, share in attention_mix(model, moe_layer)
                     if kind != NO_MIXER)
        seq = seq - (mixers + with_mlp) * a * sbh
    if moe_layer and model.moe:
        moe = model.moe
        f = moe.expert_ffn_hidden_size
        w = moe.latent_size or h  # a latent MoE's experts read the latent
        # token copies dispatched to experts: under MoE parallel folding one expert-TP group
        # computes top_k*s*b*etp/tp rows (parallel_comm.expert_rows; ops' routed rows). The
        # dispatcher all-gathers them over the etp ranks, so every GPU keeps all of them as
        # the (column-parallel) fc1 input at width w; fc1 / activation outputs are split etp
        # ways, top_k*s*b/tp rows' worth per GPU whatever etp (tp_part is divided by t below)
        routed = top_k * s * b
        act_in = (2 if model.gated_mlp else 1) * f
        tp_part = tp_part + a * routed * w * etp  # permuted expert inputs (gathered)
        kept_act = 0.0 if "moe_act" in modules else f  # moe_act: re-made from fc1's output
        tp_part = tp_part + a * routed * (act_in + kept_act)
        if moe.num_shared_experts:
            fs = moe.num_shared_experts * moe.shared_ffn
            tp_part = tp_part + a * s * b * ((2 if model.gated_mlp else 1) * fs + fs)
    else:
        for f, share in dense_mlp_widths(model):
            tp_part = tp_part + with_mlp * share * a * s * b * (
                (2 if model.gated_mlp else 1) * f + f)
    return seq / seq_div + tp_part / t


def _mla_latent_width(model: ModelSpec) -> float:
    """Elements per token an MLA layer keeps of its latents (layer_activation_bytes): the q
    latent (when the query is low-rank) and the kv latent, each before and after its norm, and
    the rope key."""
    mla = model.mla
    return 2.0 * ((mla.q_lora_rank or 0) + mla.kv_lora_rank) + mla.qk_rope_head_dim


def _attention_saved_bytes(model: ModelSpec, kind: str, shape: ActivationShape,
                           recompute: str, up_proj: bool = False) -> Array:
    """TP-split bytes one attention layer of ``kind`` keeps (Korthikanti Sec. 4.1): Q, K, V
    and the attention output at that kind's shape (attention_variants.kind_model), the
    FlashAttention log-sum-exp, or (unfused, no selective recompute) the scores, softmax and
    dropout mask over the keys in reach (a sliding window's min(s_kv, W))."""
    from .attention_variants import SLIDING, kind_model

    m = kind_model(model, kind)
    b, s, a = shape.b, shape.s, shape.act_bytes
    hq = m.num_heads * (m.mla.qk_head_dim if m.mla else m.hd)
    hk = m.kv_heads * (m.mla.qk_head_dim if m.mla else m.hd)
    hv = m.num_heads * m.mla.v_head_dim if m.mla else m.kv_heads * m.vd
    ho = m.num_heads * (m.mla.v_head_dim if m.mla else m.vd)
    # Q, K, V, attention output; MLA up projections recomputed (``up_proj``): the output only
    out = a * s * b * (ho if (up_proj and m.mla) else hq + hk + hv + ho)
    if shape.flash_attention:
        return out + 4.0 * b * m.num_heads * s  # fp32 log-sum-exp per query row
    if recompute == "selective":
        return out
    s_kv = np.minimum(shape.s_kv, m.sliding_window) if kind == SLIDING else shape.s_kv
    scores = b * m.num_heads * s * s_kv
    mask = 1.0 if shape.dropout else 0.0
    return out + a * scores + mask * scores + (a * scores if shape.dropout else 0.0)


def _gdn_saved_width(model: ModelSpec) -> float:
    """Elements per token a gated-delta-net mixer keeps for backward (before TP): the
    in_proj_qkvz / in_proj_ba outputs (2 key_dim + 2 value_dim + 2 value heads: the conv1d
    input, the gate z and the decay / beta inputs), the conv output (q, k, v: 2 key_dim +
    value_dim), the delta-rule output and the gated-norm output (out_proj input), value_dim
    each. fla's chunk_gated_delta_rule saves q, k, v, g and beta and recomputes its chunk
    states in backward (fla-org/flash-linear-attention fla/ops/gated_delta_rule/chunk.py
    ``ChunkGatedDeltaRuleFunction``), so no per-chunk state is kept."""
    la = model.linear_attention
    kd, vd = la.num_key_heads * la.key_head_dim, la.num_value_heads * la.value_head_dim
    if la.kind == "kda":  # q, k, v; decay gate; beta; output gate (NeMo KimiDeltaAttention)
        return (2 * kd + vd + vd + la.num_value_heads + vd) + (2 * kd + vd) + 2 * vd
    return (2 * kd + 2 * vd + 2 * la.num_value_heads) + (2 * kd + vd) + 2 * vd


def _mamba_saved_width(model: ModelSpec) -> float:
    """Elements per token a Mamba-2 mixer keeps for backward (before TP): the in_proj output
    (z, x B C, dt: 2 d_inner + 2 groups x state + heads), the conv output (d_inner + 2 groups
    x state), the SSD output y and the gated-norm output (out_proj input), d_inner each. The
    chunked scan recomputes its chunk states in backward (mamba_ssm
    ``MambaChunkScanCombinedFn`` saves its inputs and output)."""
    m = model.mamba
    return (2 * m.d_inner + 2 * m.n_groups * m.state_size + m.num_heads) + m.conv_dim \
        + 2 * m.d_inner


def embedding_and_head_activation_bytes(model: ModelSpec, shape: ActivationShape,
                                        first: bool, last: bool) -> Array:
    """Korthikanti Sec. 4.3: embedding dropout mask on the first stage; final norm input,
    LM-head input and fp32 logits (4 sbv/t) on the last."""
    b, s, t, a = shape.b, shape.s, shape.tp, shape.act_bytes
    h, v = model.hidden_size, model.vocab_size
    seq_div = t if shape.sequence_parallel else 1
    out = 0.0
    if first and shape.dropout:
        out = out + s * b * h / seq_div
    if last:
        out = out + 2 * a * s * b * h / seq_div + 4.0 * s * b * v / t
    return out


def inflight_microbatches(pp: Array, vp: Array, num_micro: Array, schedule: str) -> Array:
    """Micro-batches whose activations the first stage holds at its peak, in units of one
    micro-batch through one stage's layers.

    GPipe: all m. 1F1B: min(p, m) (Narayanan et al. 2021 Sec. 2.2.1). Interleaved 1F1B holds
    p (1 + (p-1)/(p v)) stage-loads (Korthikanti et al. 2022 Sec. 4.2.3), at most the m
    micro-batches there are: the first rank's warm-up forwards ((v-1) p + 2 (p-1) chunks of
    1/v stage) are capped at the m v chunks of the step (PyTorch
    torch/distributed/pipelining/schedules.py v2.6.0 ScheduleInterleaved1F1B
    get_rank_warmup_ops: ``min(warmup_ops, self._n_microbatches * self.n_local_stages)``;
    Megatron-LM megatron/core/pipeline_parallel/schedules.py (main, d98e8a64), interleaved warm-up:
    ``if num_warmup_microbatches >= total_num_microbatches: num_warmup_microbatches =
    total_num_microbatches``), so with m <= p every forward runs before the first backward.
    """
    if schedule == "gpipe":
        return num_micro
    base = np.minimum(pp, num_micro)
    if schedule == "interleaved":  # with vp = 1 the schedule is plain 1F1B
        held = np.minimum(pp * (1.0 + (pp - 1) / (pp * vp)), num_micro)
        return np.where(np.asarray(vp) > 1, held, base)
    return base


#: training precisions whose GEMMs run quantised on a 16-bit model (Transformer Engine): the
#: model's parameters, gradients and master copy are those of bf16 training
QUANTISED_PRECISIONS = ("fp8", "mxfp8", "nvfp4")


def state_bytes_per_param(precision: str, grad_dtype: str) -> tuple[float, float]:
    """(weight, gradient) bytes per parameter of mixed-precision training: 16-bit weights
    (fp8 training keeps bf16 weights, Transformer Engine), gradients in ``grad_dtype``
    (Megatron's default fp32 reduction); fp32 training keeps both in fp32. mxfp8 / nvfp4: the
    parameters outside the recipe's GEMMs are bf16 as here; ``model_state_bytes``' ``quantised``
    counts the GEMM weights at their stored format."""
    w = nbytes(precision if precision not in QUANTISED_PRECISIONS else "bf16")
    return w, (nbytes(grad_dtype) if w < 4 else 4.0)


def quantised_weight_bytes_per_param(fmt: str, orientations: int) -> float:
    """Bytes per parameter of a GEMM weight a block-scaled training recipe stores as quantised
    parameters (``fmt`` one of dtypes.TRAINING_BLOCK_SCALED, ``orientations`` copies: rowwise
    for the forward GEMM, columnwise for the data-gradient GEMM), block scales included; the
    per-tensor fp32 scales (nvfp4) are a few bytes per tensor and left out.

    Megatron-Bridge's recipes keep the compute parameters quantised: bf16_with_mxfp8_mixed sets
    fp8_param_gather and reuse_grad_buf_for_mxfp8_param_ag, bf16_with_nvfp4_mixed
    fp4_param_gather (src/megatron/bridge/training/mixed_precision.py:255-266, 405-418
    @067f987df03b); Megatron-Core then keeps no 16-bit parameter buffer for those weights (the
    all-gather goes through the gradient buffer, megatron/core/distributed/
    param_and_grad_buffer.py:1245-1263 @d98e8a64ddf3; fp4_param_gather "keep the compute param
    in fp4", distributed_data_parallel_config.py:82-84) and the fp32 main copy lives in the
    distributed optimizer (``OPTIMIZER_STATE_BYTES`` with a master copy). Without
    fp8_param_gather (Megatron-Core's default) the bf16 parameter stays and Transformer Engine
    caches the quantised weight for the step besides (an extra ~2 B per parameter not modelled)."""
    from .dtypes import training_format_bytes

    return orientations * training_format_bytes(fmt)


def model_state_bytes(params: Array, dense_params: Array, expert_params: Array,
                      dp_dense: Array, dp_expert: Array, zero_stage: int, precision: str,
                      optimizer: str, master_weights: bool, grad_dtype: str,
                      quantised_params: Array = 0.0,
                      quantised_bytes: float = 0.0) -> dict[str, Array]:
    """Weights, gradients and optimizer states on one GPU (ZeRO Sec. 5.1 sharding).

    Dense parameters are sharded over ``dp_dense`` ranks, expert parameters over their own
    replicas ``dp_expert`` (GPUs / (pp * ep * etp)). ``quantised_params`` of the ``params``
    (block-scaled training: the GEMM weights of the recipe) are stored at ``quantised_bytes``
    per parameter (``quantised_weight_bytes_per_param``) instead of the 16-bit weight bytes,
    sharded like the rest (as their share of ``params``).
    """
    w, g = state_bytes_per_param(precision, grad_dtype)
    master = master_weights and w < 4
    k = OPTIMIZER_STATE_BYTES[(optimizer, master)]

    shard = None  # the ZeRO-sharded count, computed once for the three states

    def sharded(stage_min: int):
        nonlocal shard
        if np.ndim(zero_stage) or zero_stage >= stage_min:
            if shard is None:
                shard = dense_params / dp_dense + expert_params / dp_expert
            if np.ndim(zero_stage):  # stages as an array axis (a plan search): per cell
                return np.where(np.asarray(zero_stage) >= stage_min, shard, params)
            return shard
        return params

    weights = w * sharded(3)
    if quantised_bytes:
        weights = weights + (quantised_bytes - w) * quantised_params * sharded(3) / params
    return {
        "weights": weights,
        "gradients": g * sharded(2),
        "optimizer": k * sharded(1),
    }


def inference_weight_bytes(params: Array, weight_dtype: str, group_size: int = 128) -> Array:
    return params * quantized_weight_bytes(weight_dtype, group_size)


def kv_cache_bytes_per_token(model: ModelSpec, kv_dtype: str, tp: Array = 1) -> Array:
    """K and V of one token in one attention layer on one GPU (Pope et al. 2022 arXiv 2211.05102
    Sec. 3.1): 2 * kv_heads * head_dim * bytes, KV heads split over TP (replicated when
    tp > kv_heads). MLA caches the compressed latent plus the rotary key, shared by all heads
    (DeepSeek-V2 Sec. 2.1.2), so it is not split by TP."""
    b = nbytes(kv_dtype)
    if model.compressed_attention is not None:  # DeepSeek-V4: growth per layer, averaged
        from .attention_variants import compressed_growth_per_token

        return compressed_growth_per_token(model, b) / model.num_layers * np.ones_like(
            np.asarray(tp, float))
    if model.mla:
        latent = (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * b
        return (latent + _index_bytes_per_token(model)) * np.ones_like(np.asarray(tp, float))
    kv_local = np.maximum(model.kv_heads / np.asarray(tp, float), 1.0)
    return kv_local * (model.hd + model.vd) * b + _index_bytes_per_token(model)


def _index_bytes_per_token(model: ModelSpec) -> float:
    """A sparse-attention indexer's key cache per token (DSA's fp8 keys, MSA's bf16 index
    key: ops.indexer_key_bytes), averaged over the layers that own one
    (parameters.indexer_owner_share); 0 without an indexer."""
    from .ops import indexer_key_bytes
    from .parameters import indexer_owner_share

    share = indexer_owner_share(model)
    return share * indexer_key_bytes(model) if share else 0.0


def _sliding_per_token(model: ModelSpec, kv_dtype: str, tp: Array) -> Array:
    """kv_cache_bytes_per_token of a sliding-window layer (its own shape, if any)."""
    from .attention_variants import SLIDING, kind_model

    return kv_cache_bytes_per_token(kind_model(model, SLIDING), kv_dtype, tp)


def paged_tokens(context: Array, block: int) -> Array:
    """Tokens of KV storage a sequence occupies with paged blocks (Kwon et al. 2023, vLLM)."""
    return np.ceil(np.asarray(context, float) / block) * block


def kv_cache_bytes_per_sequence(model: ModelSpec, kv_dtype: str, tp: Array, context: Array,
                                block: int = 1, layers: Array | None = None) -> Array:
    """KV (and recurrent state) bytes of one sequence of ``context`` tokens on one GPU,
    summed over layers (attention_variants.py): full-attention layers hold every token,
    sliding-window layers the last min(context, W), linear-attention and Mamba layers a
    fixed state;
    token counts rounded up to ``block``-token pages. ``layers``: this GPU's share of the
    layers (a pipeline stage), the kinds in the model's proportions; default all layers.
    Without layer_types this is kv_cache_bytes_per_token x num_layers x paged context."""
    from .attention_variants import (
        COMPRESSED,
        FULL,
        LINEAR,
        MAMBA,
        SLIDING,
        kv_layer_counts,
        linear_state_bytes,
        mamba_state_bytes,
    )

    per_tok = kv_cache_bytes_per_token(model, kv_dtype, tp)
    n = kv_layer_counts(model)
    ctx = np.asarray(context, float)
    total = n[FULL] * per_tok * paged_tokens(ctx, block)
    if n[SLIDING]:  # with their own head shape, if any (attention_variants.kind_model)
        total = total + n[SLIDING] * _sliding_per_token(model, kv_dtype, tp) * paged_tokens(
            np.minimum(ctx, model.sliding_window), block)
    if n[LINEAR]:
        total = total + n[LINEAR] * linear_state_bytes(model, tp) * np.ones_like(ctx)
    if n[MAMBA]:
        total = total + n[MAMBA] * mamba_state_bytes(model, tp) * np.ones_like(ctx)
    if n[COMPRESSED]:  # window + compressed entries + compressor state (not TP-split)
        from .attention_variants import compressed_bytes_per_sequence

        total = total + compressed_bytes_per_sequence(model, nbytes(kv_dtype), ctx) \
            * np.ones_like(np.asarray(tp, float))
    if layers is not None:
        total = total * np.asarray(layers, float) / model.num_layers
    return total


def kv_growth_bytes_per_token(model: ModelSpec, kv_dtype: str, tp: Array = 1) -> Array:
    """Bytes one more token of context adds to a long sequence on one GPU, all layers: the
    full-attention layers' KV (sliding and linear layers stop growing). A model of sliding
    layers only grows by its sliding layers' KV up to W tokens: that rate is returned then."""
    from .attention_variants import FULL, SLIDING, kv_layer_counts

    n = kv_layer_counts(model)
    if model.compressed_attention is not None:  # one entry per ratio tokens per layer
        return kv_cache_bytes_per_token(model, kv_dtype, tp) * model.num_layers
    if not n[FULL]:
        return _sliding_per_token(model, kv_dtype, tp) * n[SLIDING]
    return kv_cache_bytes_per_token(model, kv_dtype, tp) * n[FULL]


def kv_fixed_bytes_per_sequence(model: ModelSpec, kv_dtype: str, tp: Array = 1,
                                block: int = 1) -> Array:
    """What a long sequence holds on one GPU besides ``kv_growth_bytes_per_token`` x context:
    its sliding layers' last W tokens (when full layers set the growth) and its linear layers'
    states. 0 for a model of full-attention layers only."""
    from .attention_variants import FULL, SLIDING, kv_layer_counts

    n = kv_layer_counts(model)
    if model.compressed_attention is not None:  # the window and the compressors' state
        long = float(model.compressed_attention.window) + block
        return kv_cache_bytes_per_sequence(model, kv_dtype, tp, long, block) \
            - kv_growth_bytes_per_token(model, kv_dtype, tp) * long
    long = float(model.sliding_window or 1) + block  # past the window: sliding layers capped
    full = n[FULL] * kv_cache_bytes_per_token(model, kv_dtype, tp) * paged_tokens(long, block)
    if not n[FULL] and n[SLIDING]:
        full = n[SLIDING] * _sliding_per_token(model, kv_dtype, tp) * paged_tokens(long, block)
    return kv_cache_bytes_per_sequence(model, kv_dtype, tp, long, block) - full


def inference_workspace_bytes(model: ModelSpec, tokens: Array, batch: Array, tp: Array,
                              act_bytes: float) -> Array:
    """Transient activations of the widest layer step for ``tokens`` tokens in flight:
    residual stream (fp32 accumulation), QKV output and MLP intermediate, plus fp32 logits of
    the last position of each sequence."""
    h = model.hidden_size
    ffn = model.moe.expert_ffn_hidden_size * model.moe.top_k if model.moe else model.ffn_hidden_size
    width = 4 * h + act_bytes * ((2 if model.gated_mlp else 1) * ffn + ffn) / tp
    width = width + act_bytes * (model.num_heads + 2 * model.kv_heads) * model.hd / tp
    return tokens * width + 4.0 * batch * model.vocab_size / tp


def memory_capacity_bytes(device: DeviceSpec) -> float:
    """The memory a process can have on ``device``: what the driver reports to CUDA
    (``DeviceSpec.usable_memory_bytes``: the sourced cudaMemGetInfo total, else nvidia-smi's
    memory.total, else the nominal capacity), e.g. 79.22 GiB on an "80 GB" H100 SXM. Every fit
    decision compares with it, not with the label."""
    return float(device.usable_memory_bytes)


def capacity_basis(device: DeviceSpec) -> str:
    """How ``memory_capacity_bytes`` was obtained, for output: "as CUDA reports it",
    "as nvidia-smi reports it" or "nominal; the driver's figure is not sourced"."""
    return {"cuda": "as CUDA reports it", "nvidia-smi": "as nvidia-smi reports it"}.get(
        device.usable_memory_source, "nominal; the driver's figure is not sourced")


def memory_fits(total_bytes: Array, device: DeviceSpec) -> Array:
    """Whether ``total_bytes`` per GPU fit in the device's usable memory
    (``memory_capacity_bytes``; array-friendly): the one rule predictions, serving and the plan
    search share."""
    return total_bytes <= memory_capacity_bytes(device)


def overhead_bytes(allocated: Array, overheads: MemoryOverheads) -> dict[str, Array]:
    """CUDA context (driver, cuBLAS/cuDNN handles and workspaces) and the caching allocator's
    fragmentation reserve, as explicit terms (PyTorch CUDA semantics: reserved > allocated)."""
    return {
        "cuda_context": overheads.cuda_context_gib * GIB * np.ones_like(np.asarray(allocated,
                                                                                  float)),
        "allocator_overhead": overheads.allocator_fraction * allocated,
    }
