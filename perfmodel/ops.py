"""One transformer layer (and embedding, LM head, loss, optimizer) as a list of operators.

Each operator carries the FLOPs it executes, the HBM bytes it must read and write (the
compulsory traffic of a roofline model), its compute dtype, and how many times it runs per
step on one GPU. Quantities are numpy-friendly: token counts and parallel degrees may be
arrays (a sweep of plans), and every field then broadcasts.

FLOP conventions
----------------
``flops`` is what the hardware executes (causal attention skips masked blocks, FlashAttention's
backward recomputes QK^T: 2.5x the forward, Dao 2023 arXiv 2307.08691 Sec. 3.2), used for time.
``model_flops`` follows Megatron's convention (Narayanan et al. 2021 arXiv 2104.04473 Sec. 5.1,
Korthikanti et al. 2022 arXiv 2205.05198 eq. 7): GEMMs and attention matmuls only, attention
counted non-causally, backward = 2x forward, no recompute. Summed over a GPT training step it
equals 72*B*s*L*h^2*(1 + s/(6h) + V/(12*h*L)). Recompute adds ``flops`` but no ``model_flops``
(that difference is hardware FLOPs vs model FLOPs, Korthikanti eq. 8 vs eq. 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import nbytes, quantized_weight_bytes
from .specs.model import ModelSpec

Array = Any  # float or numpy array

GEMM, ATTENTION, ELEMENTWISE, OPTIMIZER = "gemm", "attention", "elementwise", "optimizer"
OP_CLASSES = (GEMM, ATTENTION, ELEMENTWISE, OPTIMIZER)


@dataclass(slots=True)
class Op:
    """One kernel (or fused group) per call, and how many calls per step."""

    name: str
    cls: str  # one of OP_CLASSES
    flops: Array  # executed, per call (tensor-core FLOPs for gemm/attention)
    bytes: Array  # HBM bytes read + written, per call
    dtype: str  # compute dtype (peak lookup)
    count: Array = 1.0  # calls per step on this GPU
    model_flops: Array = 0.0  # Megatron-convention FLOPs per call
    vector_flops: Array = 0.0  # non-tensor FLOPs (dequantisation, softmax), at the fp32 rate
    shape: tuple = ()  # gemm: (m, n, k); attention: (q_len, kv_len)
    phase: str = "fwd"  # fwd | bwd | recompute | decode | prefill | step
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Precision:
    """Bytes per element of activations and weights, and the GEMM compute dtype."""

    compute: str  # dtype whose peak the tensor cores run at
    act: float  # activation bytes
    weight: float  # weight bytes as read by a GEMM (incl. quantisation scales)
    kv: float = 2.0  # KV-cache bytes (inference)
    weight_dequant: bool = False  # weight-only quantisation: dequantise inside the GEMM
    kv_dequant: bool = False
    cast_inputs: bool = False  # separate kernels quantise GEMM inputs (fp8 training)

    @classmethod
    def training(cls, precision: str) -> Precision:
        """bf16/fp16: 16-bit everything; fp8: fp8 GEMM inputs (Transformer Engine keeps
        activations between kernels in bf16); fp32/tf32: 32-bit."""
        if precision == "fp8":
            return cls(compute="fp8", act=2.0, weight=1.0, cast_inputs=True)
        size = nbytes(precision)
        return cls(compute=precision, act=size, weight=size)

    @classmethod
    def inference(cls, weight_dtype: str, activation_dtype: str, kv_dtype: str,
                  group_size: int = 128) -> Precision:
        """W8A8 / fp8 run the tensor cores in the narrow type when activations are quantised
        too; otherwise weights are dequantised to the activation type (weight-only)."""
        same = weight_dtype == activation_dtype
        compute = weight_dtype if same else activation_dtype
        narrow_weights = nbytes(weight_dtype) < nbytes(activation_dtype)
        return cls(
            compute=compute,
            act=nbytes(activation_dtype),
            weight=quantized_weight_bytes(weight_dtype, group_size),
            kv=nbytes(kv_dtype),
            weight_dequant=narrow_weights and not same,
            kv_dequant=nbytes(kv_dtype) < nbytes(activation_dtype),
        )


@dataclass(frozen=True)
class Shard:
    """Parallel degrees that change one GPU's share of a layer (arrays allowed)."""

    tp: Array = 1
    sp: bool = False  # sequence parallel: norms/adds/dropout on tokens / tp
    ep: Array = 1
    etp: Array = 1


def gemm(name: str, m, n, k, prec: Precision, count=1.0, tags=()) -> Op:
    """C[m,n] = A[m,k] B[k,n]: 2mnk FLOPs; reads A (activations) and B (weights), writes C."""
    flops = 2.0 * m * n * k
    dequant = 2.0 * k * n if prec.weight_dequant else 0.0
    return Op(name, GEMM, flops, m * k * prec.act + k * n * prec.weight + m * n * prec.act,
              prec.compute, count, flops, dequant, (m, n, k), "fwd", tags)


def elementwise(name: str, elems_in, elems_out, act_bytes: float, flops_per_elem=1.0,
                count=1.0, tags=(), kind: str = "other") -> Op:
    """A memory-bound kernel: reads ``elems_in`` and writes ``elems_out`` elements. ``kind``
    (layernorm, rmsnorm, gelu, silu_and_mul, add, softmax, rope, copy, cast, ...) selects the
    kernel's measured element rate in a calibration profile: transcendental kernels (GELU's
    erf, softmax's exp) can be compute-bound, on CPUs especially."""
    return Op(name, ELEMENTWISE, 0.0, (elems_in + elems_out) * act_bytes, "fp32", count, 0.0,
              flops_per_elem * elems_out, (elems_out,), "fwd", (*tags, f"ew:{kind}"))


def elementwise_kind(op: Op) -> str:
    return next((t[3:] for t in op.tags if isinstance(t, str) and t.startswith("ew:")),
                "other")


def attention_pairs(q_len, kv_len, causal: bool = True):
    """Query-key pairs one sequence attends: the last ``q_len`` of ``kv_len`` positions attend
    causally to all earlier ones: q*kv - q(q-1)/2 (= s(s+1)/2 for a prompt, kv for decode)."""
    if not causal:
        return q_len * kv_len
    return q_len * kv_len - q_len * (q_len - 1) / 2.0


def attention_curve_point(phase: str, b, q_len, kv_len, kv_heads) -> tuple:
    """Where an attention call sits on its efficiency curve: prefill-like kernels by
    (q_len, kv_len); decode kernels by (sequences x KV heads, kv_len), because a decode
    kernel's parallelism, and so the share of HBM bandwidth it reaches, grows with the
    independent (sequence, KV head) streams it reads (flash-decoding splits long ones)."""
    if phase == "decode":
        return (b * kv_heads, kv_len)
    return (q_len, kv_len)


def attention_ops(model: ModelSpec, b, q_len, kv_len, pairs, shard: Shard, prec: Precision,
                  flash: bool, phase: str, absorbed_mla: bool = False) -> list[Op]:
    """The attention core (softmax(QK^T)V) on one GPU's heads.

    FlashAttention IO (Dao et al. 2022 arXiv 2205.14135): tiling keeps the s x s scores in
    SRAM, so HBM sees the compulsory traffic: Q read and O written once, K and V read once per
    KV head. (Algorithm 1 re-reads K/V from HBM once per query block, Theorem 2; on GPUs with
    tens of MB of L2 the concurrently scheduled query blocks of a head, and the query heads
    of a GQA group, share those re-reads in L2, which is why measured prefill attention runs
    at the same FLOP rate for MHA and GQA, shared/reference measured H100 context kernels.)
    Decode therefore reads the KV cache once. Unfused attention also writes and re-reads the
    s x s scores and probabilities (Sec. 2.2 of the same paper). MLA decode with absorbed
    projections (DeepSeek-V2 arXiv 2405.04434 Sec. 2.1.2) attends over the compressed latent.
    """
    tp = shard.tp
    heads = model.num_heads / tp
    kv_heads = np.maximum(model.kv_heads / tp, 1.0)  # MQA/GQA heads replicate when tp > kv
    a, kvb = prec.act, prec.kv
    if model.mla and absorbed_mla:
        m = model.mla
        d_qk, d_v = m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank
        kv_heads, kv_width = 1.0, d_qk  # one shared latent "head"
    elif model.mla:
        d_qk, d_v = model.mla.qk_head_dim, model.mla.v_head_dim
        kv_width = d_qk + d_v  # K and V widths per head
    else:
        d_qk = d_v = model.hd
        kv_width = 2 * model.hd
    flops_pairs = 2.0 * (d_qk + d_v) * heads
    model_flops = flops_pairs * q_len * kv_len * b  # non-causal convention
    executed = flops_pairs * pairs * b
    q_bytes = b * q_len * heads * (d_qk + d_v) * a  # read Q, write O
    kv_read = b * kv_len * kv_heads * kv_width * kvb
    # FlashAttention's online softmax (exp, max, sum per score) runs fused inside the tiled
    # matmul loop; its cost is part of the kernel's measured efficiency (Dao 2023 Sec. 3.1),
    # so only the KV dequantisation is added as separate non-tensor work.
    kv_deq = 2.0 * b * kv_len * kv_heads * kv_width if prec.kv_dequant else 0.0
    point = attention_curve_point(phase, b, q_len, kv_len, kv_heads)
    if flash:
        op = Op("attn.core", ATTENTION, executed, q_bytes + kv_read, prec.compute,
                1.0, model_flops, kv_deq, point, phase,
                ("attention",))
        return [op]
    scores = b * heads * q_len * kv_len  # unfused computes the full (masked) matrix
    qk = Op("attn.qk", ATTENTION, 2.0 * d_qk * heads * q_len * kv_len * b,
            b * q_len * heads * d_qk * a + kv_read * d_qk / kv_width + scores * a,
            prec.compute, 1.0, model_flops * d_qk / (d_qk + d_v), kv_deq / 2, point,
            phase, ("attention",))
    softmax = elementwise("attn.softmax", scores, scores, a, 5.0, tags=("attention",),
                          kind="softmax")
    pv = Op("attn.pv", ATTENTION, 2.0 * d_v * heads * q_len * kv_len * b,
            scores * a + kv_read * (kv_width - d_qk) / kv_width + b * q_len * heads * d_v * a,
            prec.compute, 1.0, model_flops * d_v / (d_qk + d_v), kv_deq / 2, point,
            phase, ("attention",))
    return [qk, softmax, pv]


def projection_ops(model: ModelSpec, t, shard: Shard, prec: Precision
                   ) -> tuple[list[Op], list[Op]]:
    """(before the core, after it): QKV (or MLA down/up) projections and rotary embedding;
    the output projection."""
    h, tp = model.hidden_size, shard.tp
    nh = model.num_heads
    ops: list[Op] = []
    if model.mla:
        m = model.mla
        if m.q_lora_rank:
            ops.append(gemm("attn.q_down", t, m.q_lora_rank, h, prec))
            ops.append(gemm("attn.q_up", t, nh * m.qk_head_dim / tp, m.q_lora_rank, prec))
        else:
            ops.append(gemm("attn.q", t, nh * m.qk_head_dim / tp, h, prec))
        ops.append(gemm("attn.kv_down", t, m.kv_lora_rank + m.qk_rope_head_dim, h, prec))
        ops.append(gemm("attn.kv_up", t, nh * (m.qk_nope_head_dim + m.v_head_dim) / tp,
                        m.kv_lora_rank, prec))
        rope_elems = t * (nh / tp + 1) * m.qk_rope_head_dim
        out_k = nh * m.v_head_dim / tp
    else:
        hd, kv = model.hd, model.kv_heads
        ops.append(gemm("attn.qkv", t, (nh + 2 * kv) * hd / tp, h, prec))
        rope_elems = t * (nh + kv) * hd / tp
        out_k = nh * hd / tp
    if model.position_embedding == "rope":
        ops.append(elementwise("attn.rope", rope_elems, rope_elems, prec.act, 3.0, kind="rope"))
    return ops, [gemm("attn.out", t, h, out_k, prec)]


def mlp_ops(model: ModelSpec, t, ffn, tp, prec: Precision, prefix: str = "mlp",
            groups=1.0) -> list[Op]:
    """Up (gate+up fused when gated), activation, down. ``groups`` GEMMs of t/groups tokens
    each (grouped expert GEMMs)."""
    h = model.hidden_size
    up_n = (2 if model.gated_mlp else 1) * ffn / tp
    m = t / groups
    act_in = up_n * t
    act_out = ffn / tp * t
    return [
        gemm(f"{prefix}.up", m, up_n, h, prec, count=groups),
        elementwise(f"{prefix}.act", act_in, act_out, prec.act, 8.0,
                    kind=f"{'silu' if model.activation in ('silu', 'swiglu') else 'gelu'}"
                         f"{'_and_mul' if model.gated_mlp else ''}"
                    if model.activation != "relu" else "relu"),
        gemm(f"{prefix}.down", m, h, ffn / tp, prec, count=groups),
    ]


def norm_op(name: str, model: ModelSpec, tokens, prec: Precision) -> Op:
    return elementwise(name, tokens * model.hidden_size, tokens * model.hidden_size, prec.act,
                       7.0 if model.norm == "layernorm" else 4.0, kind=model.norm)


def layer_forward_ops(model: ModelSpec, moe_layer: bool, b, q_len, kv_len, pairs,
                      shard: Shard, prec: Precision, flash: bool = True,
                      attn_phase: str = "prefill", absorbed_mla: bool = False) -> list[Op]:
    """Forward operators of one layer on one GPU for ``b`` sequences of ``q_len`` new tokens
    (attending to ``kv_len`` positions, ``pairs`` query-key pairs per sequence)."""
    h, tp = model.hidden_size, shard.tp
    t = b * q_len  # tokens in GEMMs (TP ranks all see every token)
    t_seq = t / tp if shard.sp else t  # tokens in norms/adds (sequence parallel shards them)
    before, after = projection_ops(model, t, shard, prec)
    ops = [norm_op("attn.norm", model, t_seq, prec), *before]
    ops += attention_ops(model, b, q_len, kv_len, pairs, shard, prec, flash, attn_phase,
                         absorbed_mla)
    ops += after
    ops.append(elementwise("attn.residual", 2 * t_seq * h, t_seq * h, prec.act, kind="add"))
    ops.append(norm_op("mlp.norm", model, t_seq, prec))
    if moe_layer and model.moe:
        moe = model.moe
        ops.append(gemm("moe.router", t_seq, moe.num_experts, h, prec))
        ops.append(elementwise("moe.topk", t_seq * moe.num_experts, t_seq * moe.top_k, prec.act,
                               4.0, kind="softmax"))
        local_experts = moe.num_experts / shard.ep
        routed = t * moe.top_k  # token-expert assignments processed on this GPU (balanced)
        ops += mlp_ops(model, routed, moe.expert_ffn_hidden_size, shard.etp, prec,
                       "moe.expert", groups=local_experts)
        if moe.num_shared_experts:
            ops += mlp_ops(model, t, moe.num_shared_experts * moe.shared_ffn, tp, prec,
                           "moe.shared")
        ops.append(elementwise("moe.combine", routed * h, t * h, prec.act, kind="add"))
    else:
        ops += mlp_ops(model, t, model.ffn_hidden_size, tp, prec)
    ops.append(elementwise("mlp.residual", 2 * t_seq * h, t_seq * h, prec.act, kind="add"))
    if prec.cast_inputs:
        ops = [x for op in ops for x in ([op, fp8_cast(op)] if op.cls == GEMM else [op])]
    return ops


# Dynamic (tensorwise) fp8 scaling reads a bf16 tensor twice (amax, then cast) and writes it
# in fp8: 2 + 2 + 1 bytes per element (Micikevicius et al. 2022 arXiv 2209.05433 Sec. 3;
# Transformer Engine / torchao float8 training). Forward casts a GEMM's activation and weight,
# backward the output gradient (fp8 copies of the inputs are reused).
FP8_CAST_BYTES = 5.0


def fp8_cast(gemm_op: Op) -> Op:
    m, n, k = gemm_op.shape
    return Op(gemm_op.name + ".fp8cast", ELEMENTWISE, 0.0, (m * k + k * n) * FP8_CAST_BYTES,
              "fp32", gemm_op.count, 0.0, 2.0 * (m * k + k * n), (m * k + k * n, m * n),
              "fwd", ("fp8cast", "ew:cast"))


def backward(op: Op, prec: Precision) -> list[Op]:
    """Backward of a forward operator.

    GEMM: data gradient (m x k from m x n times n x k) and weight gradient (k x n from k x m
    times m x n), each 2mnk. FlashAttention: 2.5x the forward FLOPs (recomputes S; Dao 2023
    Sec. 3.2) with 2x the model FLOPs; IO taken as 2.5x forward. Elementwise: reads the output
    gradient and saved input, writes the input gradient: 2x the forward bytes.
    """
    if op.cls == GEMM:
        m, n, k = op.shape
        a, w = prec.act, prec.weight
        dgrad = Op(op.name + ".dgrad", GEMM, op.flops, m * n * a + n * k * w + m * k * a,
                   op.dtype, op.count, op.model_flops, op.vector_flops, (m, k, n), "bwd", op.tags)
        wgrad = Op(op.name + ".wgrad", GEMM, op.flops, m * k * a + m * n * a + k * n * w,
                   op.dtype, op.count, op.model_flops, 0.0, (k, n, m), "bwd", op.tags)
        return [dgrad, wgrad]
    if op.cls == ATTENTION:
        return [Op(op.name + ".bwd", ATTENTION, 2.5 * op.flops, 2.5 * op.bytes, op.dtype,
                   op.count, 2.0 * op.model_flops, 2.0 * op.vector_flops, op.shape, "bwd",
                   op.tags)]
    if "fp8cast" in op.tags:  # cast the output gradient of the GEMM (m x n elements)
        grad = op.shape[1]
        return [Op(op.name + ".bwd", op.cls, 0.0, grad * FP8_CAST_BYTES, op.dtype, op.count,
                   0.0, 2.0 * grad, (grad, grad), "bwd", op.tags)]
    # elementwise backward: read the output gradient and saved input, write the input
    # gradient; the kernel does about twice the forward's per-element work
    shape = tuple(2.0 * x for x in op.shape)
    return [Op(op.name + ".bwd", op.cls, op.flops, 2.0 * op.bytes, op.dtype, op.count,
               op.model_flops, 2.0 * op.vector_flops, shape, "bwd", op.tags)]


def embedding_ops(model: ModelSpec, t, tp, prec: Precision) -> list[Op]:
    """Token (and learned position) embedding lookup: a gather of t rows of width h
    (vocab-parallel under TP: each rank gathers its rows, then an all-reduce combines)."""
    h = model.hidden_size
    rows = 2 if model.position_embedding == "learned" else 1
    ops = [elementwise("embed.lookup", rows * t * h, t * h, prec.act, kind="copy")]
    if model.embedding_norm:
        ops.append(norm_op("embed.norm", model, t, prec))
    return ops


def head_ops(model: ModelSpec, t, tp, prec: Precision, loss: bool = True) -> list[Op]:
    """Final norm, LM head GEMM (vocab-parallel) and the cross-entropy over fp32 logits."""
    h, v = model.hidden_size, model.vocab_size
    ops = [norm_op("head.norm", model, t, prec)] if model.final_norm else []
    ops.append(gemm("head.lm", t, v / tp, h, prec))
    if loss:
        ops.append(elementwise("head.loss", t * v / tp, t * v / tp, 3.0, 6.0, kind="softmax"))
    return ops


# Optimizer HBM traffic per parameter (Rajbhandari et al. 2020 arXiv 1910.02054 Sec. 3.1:
# fp32 master weights and states). Mixed-precision Adam reads master, m, v and the fp32
# gradient and writes master, m, v and the 16-bit model copy: 4*4 + 3*4 + 2 = 30 B; in plain
# fp32 the weights are the master (4*4 + 3*4 = 28 B). SGD with momentum: 3*4 read, 2*4 (+2)
# written = 22 B (20 B). FLOPs per parameter ~ 12 (Adam), 4 (SGD), at the vector rate.
OPTIMIZER_BYTES = {("adam", True): 30.0, ("adam", False): 28.0, ("adamw", True): 30.0,
                   ("adamw", False): 28.0, ("sgd", True): 22.0, ("sgd", False): 20.0}
OPTIMIZER_FLOPS = {"adam": 12.0, "adamw": 13.0, "sgd": 4.0}


def optimizer_op(local_params, optimizer: str, mixed_precision: bool = True) -> Op:
    return Op("optimizer.step", OPTIMIZER, 0.0,
              local_params * OPTIMIZER_BYTES[(optimizer, mixed_precision)], "fp32", 1.0, 0.0,
              local_params * OPTIMIZER_FLOPS[optimizer], (), "step")
