"""What a training framework adds to perfmodel's operator-level step (facts: frameworks/*.yaml,
read by ``frameworks``). Pure and array-friendly like the rest of the core; every term is zero
for ``megatron-core``, whose fused kernels are perfmodel's operator list, except the MoE
dispatcher's row copies and eager expert bias (``moe_dispatch_ops``), which Megatron-Core runs
and every framework file that states them adds.

* Unfused element-wise kernels: an eager chain (e.g. torchtitan's fp32 RMSNorm: 8 kernels,
  36 B per element instead of one 4 B kernel) adds its extra bytes and launches as a separate
  ``<op>.unfused`` memory-bound operator next to the fused one (roofline; Williams et al. 2009).
* Attention backend: a kernel with a published ceiling (FlashAttention-2 on Hopper: 370 of 989
  TFLOP/s, Shah et al. 2024 arXiv 2407.08608 Fig. 5) runs at most at that fraction of the peak.
* Host dispatch: each eager kernel costs the host ``dispatch_s`` (measured with the real torch
  dispatcher, benchmarks/framework_dispatch.py); the host runs ahead of the GPU, so per layer
  and pass only max(0, kernels x dispatch - GPU time) is exposed.
* CP load balance: ring attention over contiguous chunks with a causal mask gives rank r
  r + 1/2 chunk-pairs of work (the ring skips the rest, torch _attention.py
  _is_causal_behavior); the slowest rank does cp - 1/2 against a mean of cp/2: an imbalance
  of 2 - 1/cp that head-tail (2 cp chunk) load balancing removes.
* MoE token dispatch (Megatron-Core MoEAlltoAllTokenDispatcher, TEGroupedMLP): the permutation
  of each token's top_k rows before the all-to-all, the regrouping by local expert and back
  around the experts, and an eager per-expert output bias, as memory-bound row copies.
* fp8 recipes: the cast kernels of a GEMM's operands cost the recipe's bytes per element, as
  many times as the recipe casts each operand (rowwise and block scaling: both orientations);
  the GEMMs a framework's recipe does not convert (``fp8_scope``: the LM head, the MoE router)
  run in bf16 with no cast, megatron-core included.
* FSDP1 / Composer per-micro-batch and per-step kernels: the flat gradient's concatenation, the
  gradient pre/postdivide and the low-precision shard cast of each block (``fsdp_grad_ops``), the
  trainer's metrics over the logits (``train_metric_ops``) and an eager optimizer loop's bytes
  beyond the fused count (``optimizer_extra_ops``).
* Memory: the loss's buffers beyond the fp32 logits perfmodel counts, FSDP's all-gather output,
  unsharded-gradient and reduce-scatter buffers of one block and the root module's gathered
  parameters, and the all-gathered K/V of context parallelism.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from . import ops as O
from .dtypes import TENSOR_SCALE_BYTES, training_format_bytes
from .frameworks import Framework, block_scaled_recipe, framework_spec
from .roofline import OpTimes, Roofline, row_sum
from .specs.model import ModelSpec

Array = Any
UNFUSED = ".unfused"  # name suffix of the extra operators of an unfused chain
LAYOUT = "attn.layout"
BASE_LOSS_BYTES_PER_LOGIT = 4.0  # fp32 logits: what memory.embedding_and_head_activation_bytes counts


def _extra(op: O.Op, name: str, elems: Array, extra_bytes_per_elem: float,
           launches: float) -> O.Op:
    return O.Op(name=name, cls=O.ELEMENTWISE, flops=0.0,
                bytes=elems * np.maximum(extra_bytes_per_elem, 0.0), dtype="fp32", count=op.count,
                shape=(elems,), phase=op.phase, block=op.block, kernel="unfused",
                launches=float(launches))


def unfused_chains(fw: Framework | None, ops: list[O.Op]) -> list[O.Op]:
    """``ops`` with an extra operator after each kernel the framework runs as an eager chain:
    the chain's bytes beyond the fused kernel's and its other kernels (frameworks/_common.yaml
    decompositions)."""
    if fw is None or fw.baseline:
        return ops
    table = fw.unfused
    return _with_chains(ops, lambda op: table.get(op.kernel)
                        if op.cls == O.ELEMENTWISE and not op.fp8_cast else None)


def _with_chains(ops: list[O.Op], decomposition_of) -> list[O.Op]:
    """``ops`` with, after each op that ``decomposition_of`` gives an eager chain for, the
    chain's bytes beyond the fused kernel's and its other kernels."""
    out: list[O.Op] = []
    for op in ops:
        out.append(op)
        dec = decomposition_of(op)
        if dec is not None:
            elems = op.shape[0]
            fused_bpe = op.bytes / np.maximum(elems, 1e-30)
            out.append(_extra(op, op.name + UNFUSED, elems,
                              dec.bytes_per_element - fused_bpe, dec.kernels - 1))
    return out


def attention_layout_copies(fw: Framework | None, ops: list[O.Op], model: ModelSpec,
                            tp: Array, act_bytes: float) -> list[O.Op]:
    """The copies around an SDPA call written like torchtitan's Attention.forward: K and V
    expanded to every query head when GQA (repeat_kv: read kv, write n_heads widths) and the
    output made contiguous after its transpose (read and write n_heads widths)."""
    if fw is None or fw.baseline or not fw.spec.attention_layout_copies or model.mla:
        return ops
    qkv = next((op for op in ops if op.name == "attn.qkv"), None)
    sdpa = next((i for i, op in enumerate(ops) if op.cls == O.ATTENTION), None)
    if qkv is None or sdpa is None:  # no SDPA call: the unfused path's ops hold its own copy
        return ops
    tokens = qkv.shape[0]
    heads = model.num_heads / tp
    kv = np.maximum(model.kv_heads / tp, 1.0)
    gqa = model.num_heads > model.kv_heads
    per_token = 2.0 * model.hd * heads * act_bytes  # output: read + write
    launches = 1.0
    if gqa:
        per_token = per_token + 2.0 * model.hd * (kv + heads) * act_bytes  # K and V
        launches = 3.0
    layout = O.Op(name=LAYOUT + UNFUSED, cls=O.ELEMENTWISE, flops=0.0, bytes=tokens * per_token,
                  dtype="fp32", count=qkv.count, shape=(tokens * heads * model.hd,),
                  block="attn", kernel="copy", launches=launches)
    return [*ops[:sdpa + 1], layout, *ops[sdpa + 1:]]


BIAS_GRAD = ".bias_grad"  # name suffix (before UNFUSED) of a Linear's bias-gradient reduction
QKV_SPLIT_GRAD = "attn.qkv_split_grad"  # the split's backward: dq, dk, dv concatenated
ATTN_BWD_EXTRA = "attn.core.bwd_extra"  # the attention backend's own element-wise kernels


def _biased(op: O.Op, model: ModelSpec) -> bool:
    """Whether the model gives this GEMM a bias (MPT / GPT-2 style: qkv, out, mlp)."""
    if op.name == "attn.qkv":
        return model.qkv_bias
    if op.name == "attn.out":
        return model.attn_out_bias
    return op.block == "mlp" and model.mlp_bias


def backward_extra_ops(fw: Framework | None, fwd: list[O.Op], model: ModelSpec,
                       act_bytes: float) -> list[O.Op]:
    """Backward-only memory-bound kernels of one layer and micro-batch that ``ops.backward``
    of the forward operators ``fwd`` does not derive (frameworks/<id>.yaml ``eager_backward``,
    _common.yaml ``attention_backends.<backend>.bwd_extra``), each named ``...unfused`` so the
    breakdown reports it with the unfused element-wise kernels. With a GEMM's (m tokens, n
    output width) shape on this GPU and a activation bytes:

    * bias gradient (``bias_grad_reduction``): F.linear with a bias runs at::addmm(bias, x,
      W^T); addmm's gradient for the bias is the output gradient itself, which autograd sums
      to the bias's shape in a separate reduction: reads m n a, writes n a bytes, 1 kernel per
      biased Linear (not for fp8 GEMMs: Transformer Engine fuses it into its cast).
    * QKV split (``qkv_split_backward_copy``): Q, K, V are torch.split views of the fused QKV
      output; SplitBackward concatenates dq, dk, dv into the QKV gradient: reads and writes
      m n a bytes of the QKV GEMM, 1 kernel.
    * the attention backend's own kernels around its backward (``bwd_extra``): bytes per
      element of the local query, m x q width (the QKV GEMM's query share of n).
    """
    if fw is None or fw.baseline or model.mla is not None:
        return []
    eager = fw.spec.eager_backward
    extra = fw.attention_bwd_extra
    gemms = [op for op in fwd if op.cls == O.GEMM]
    out: list[O.Op] = []

    def op(name: str, src: O.Op, nbytes, elems, kind: str, launches: float) -> O.Op:
        return O.Op(name=name + UNFUSED, cls=O.ELEMENTWISE, flops=0.0, bytes=nbytes,
                    dtype="fp32", count=src.count, shape=(elems,), phase="bwd",
                    block=src.block, kernel=kind, launches=launches)

    if eager is not None and eager.bias_grad_reduction:
        for g in gemms:
            # fp8 GEMMs are Transformer Engine Linears (fc_type te), which compute the bias
            # gradient inside the output gradient's cast (base.py grad_output_preprocess:
            # fp8_cast_transpose_bgrad_fused): no separate reduction
            if _biased(g, model) and g.dtype != "fp8":
                m, n, _ = g.shape
                out.append(op(g.name + BIAS_GRAD, g, (m * n + n) * act_bytes, m * n, "reduce",
                              1.0))
    qkv = next((g for g in gemms if g.name == "attn.qkv"), None)
    has_attention = any(o.cls == O.ATTENTION and o.name == "attn.core" for o in fwd)
    if qkv is not None and has_attention:
        m, n, _ = qkv.shape
        if eager is not None and eager.qkv_split_backward_copy:
            out.append(op(QKV_SPLIT_GRAD, qkv, 2.0 * m * n * act_bytes, m * n, "copy", 1.0))
        if extra is not None:
            q_share = qkv.matmuls[0].share if qkv.matmuls else 1.0
            q_elems = m * n * q_share
            out.append(op(ATTN_BWD_EXTRA, qkv, q_elems * extra.bytes_per_q_element, q_elems,
                          "copy", float(extra.kernels)))
            out[-1].block = "attn"
    return out


CP_MERGE = "attn.cp_merge"  # name of the element-wise work around CP's sub-attention calls


def cp_merge_ops(fw: Framework | None, model: ModelSpec, tokens: Array, tp: Array,
                 cp: Array) -> tuple[list[O.Op], list[O.Op]]:
    """(forward, backward) element-wise operators of one layer and micro-batch that a
    framework's context parallelism runs around its sub-attention calls (torchtitan: the fp32
    merge of each step's output and LSE, the fp32 dQ / dK / dV accumulation and the buffers
    concatenated for each exchange; frameworks/torchtitan.yaml cp.merge, read in torch
    _attention.py). Bytes per element x (fixed + (cp - 1) x per step) over the local output
    (tokens x local heads x head dim) and the local K and V as the ring passes them."""
    if (fw is None or fw.baseline or fw.spec.cp.merge is None or not np.any(np.asarray(cp) > 1)
            or fw.cp_implementation != fw.spec.cp.implementation):
        return [], []
    f = fw.spec.cp.merge
    on = np.where(np.asarray(cp) > 1, 1.0, 0.0)
    later = np.maximum(np.asarray(cp, float) - 1.0, 0.0)
    q = tokens * model.num_heads / tp * model.hd
    kv_heads = model.num_heads if fw.spec.cp.kv_at_query_heads else model.kv_heads
    kv = tokens * 2.0 * np.maximum(kv_heads / tp, 1.0) * model.hd

    def op(name, q_fixed, q_step, kv_fixed, kv_step, kernels_step, phase):
        nbytes = on * (q * (q_fixed + later * q_step) + kv * (kv_fixed + later * kv_step))
        # count=on: a cp = 1 cell of a plan mesh runs no merge (no bytes, no element-rate
        # time, no launch), as the scalar path, which returns no operator at cp = 1
        return O.Op(name=name, cls=O.ELEMENTWISE, flops=0.0, bytes=nbytes, dtype="fp32",
                    shape=(q,), phase=phase, block="attn", kernel="cp_merge", count=on,
                    launches=np.maximum(1.0, later * kernels_step))

    return ([op(CP_MERGE, f.fwd_q_fixed, f.fwd_q_step, f.fwd_kv_fixed, f.fwd_kv_step,
                f.kernels_fwd_step, "fwd")],
            [op(CP_MERGE + ".bwd", f.bwd_q_fixed, f.bwd_q_step, f.bwd_kv_fixed, f.bwd_kv_step,
                f.kernels_bwd_step, "bwd")])


def cp_comm_facts(fw: Framework | None, act_bytes: float = 2.0) -> tuple[str, bool, float]:
    """(implementation, K/V at query heads, dK/dV bytes over the ``act_bytes`` of a K/V element)
    of the framework's context parallelism; without a framework, perfmodel's ring
    (megatron-core)."""
    if fw is None:
        return "p2p_ring", False, 1.0
    c = fw.spec.cp
    if fw.cp_implementation != c.implementation:  # a scenario's override: no file facts
        return fw.cp_implementation, False, 1.0
    return c.implementation, c.kv_at_query_heads, c.grad_kv_bytes / act_bytes


def per_expert_gemm(fw: Framework | None) -> bool:
    """Whether the framework runs a rank's experts as one dense GEMM each (frameworks/<id>.yaml
    ``moe.grouped_gemm: per_expert``); without a framework, megatron-core's facts."""
    spec = fw.spec if fw is not None else framework_spec("megatron-core")
    return spec.moe is not None and spec.moe.grouped_gemm == "per_expert"


MOE_PERMUTE = "moe.permute"  # the dispatcher's Permutation 1 (tokens -> top_k rows)
MOE_SORT = "moe.sort"  # Permutation 2 / Unpermutation 2 (rows regrouped by local expert)
MOE_EXPERT_BIAS = "moe.expert.bias"  # eager per-expert fc2 bias (TEGroupedMLP._apply_bias)
MOE_FP8_PAD = "moe.fp8_pad"  # fp8 experts: rows padded per expert and the output unpadded
MOE_RECV_PERMUTE = "moe.recv_permute"  # flex / allgather: received tokens -> rows by expert
MOE_ACT_CLAMP = "moe.expert.act_clamp"  # eager clamp + concat ahead of the fused GLU kernel


def moe_dispatcher_facts(fw: Framework | None):
    """(dispatcher name, its frameworks/<id>.yaml facts or None) of a run: the scenario's
    ``training.framework.moe_dispatcher`` or the file's ``moe.dispatcher``; ``moe.permutation``
    holds the alltoall dispatcher's facts, ``moe.dispatchers`` the others'. Without a framework
    or MoE facts: perfmodel's all-to-all with no row copies."""
    if fw is None or fw.spec.moe is None:
        return "alltoall", None
    name = fw.moe_dispatcher
    facts = fw.spec.moe
    return name, (facts.permutation if name == "alltoall" else facts.dispatchers.get(name))


def moe_dispatch_volume(fw: Framework | None) -> str:
    """What one dispatch sends (parallel_comm.ep_layer_comm ``volume``): "top_k", "distinct"
    or "gather" (frameworks/<id>.yaml dispatcher facts; "top_k" without facts)."""
    _, facts = moe_dispatcher_facts(fw)
    return facts.volume if facts is not None else "top_k"


def moe_dispatch_measured_rdma(fw: Framework | None, device: str
                               ) -> dict[int, tuple[float, float]]:
    """The run's dispatcher's measured cross-domain (dispatch, combine) bandwidths in GB/s on
    ``device`` by NVLink domain count (frameworks/<id>.yaml ``measured_rdma``, or the table of
    the framework ``measured_rdma_from`` names; parallel_comm.ep_layer_comm); empty without
    them."""
    name, facts = moe_dispatcher_facts(fw)
    if facts is None:
        return {}
    if facts.measured_rdma_from is not None:  # another framework's table (one source)
        facts = framework_spec(facts.measured_rdma_from).moe.dispatchers[name]
    return {int(k): (float(v[0]), float(v[1])) for k, v in facts.measured_rdma.get(device, {}).items()}


def moe_dispatch_ops(fw: Framework | None, model: ModelSpec, tokens: Array, tp: Array,
                     sequence_parallel: bool, ep: Array, etp: Array, act_bytes: float,
                     fp8: bool = False) -> tuple[list[O.Op], list[O.Op]]:
    """(forward, backward) memory-bound operators of one MoE layer and micro-batch that the
    framework's token dispatcher and expert module add beyond perfmodel's ``moe.combine``
    (frameworks/<id>.yaml ``moe.permutation`` / ``moe.dispatchers`` of the run's dispatcher,
    ``moe_dispatcher_facts``, and ``moe.expert_bias``; Megatron-Core MoEAlltoAllTokenDispatcher,
    MoEAllGatherTokenDispatcher, MoEFlexTokenDispatcher (DeepEP / HybridEP) and TEGroupedMLP,
    read in token_dispatcher.py / fused_a2a.py / experts.py).

    With ``t`` tokens entering the rank's dispatcher (``tokens / tp`` under sequence
    parallelism), top_k = k, hidden h, activation bytes a and R the rank's routed rows
    (``ops.routed_rows`` of the ``tokens x ep etp / tp`` routed to its EP group, as the expert
    GEMMs see them):

    * Permutation 1 (gather of each token's k copies): reads t h a, writes t k h a bytes;
      its backward (a scatter-add of the row gradients) moves the same.
    * Permutation 2 and Unpermutation 2 (only with E / ep > 1 local experts): each reads and
      writes R h a bytes, forward and backward alike.
    * Received permute (fact ``received_permute``; the flex dispatchers' permute of the
      received tokens into rows by local expert, in HybridEP its own permute kernel; the
      allgather dispatcher's permute of the gathered tokens): a gather of R rows, R h a read
      and R h a written; backward its scatter mirror, the same bytes. Its inverse before the
      combine is perfmodel's ``moe.combine``.
    * fp8 padding (``fp8`` experts, framework fact ``fp8_padding``; TEGroupedMLP with
      Transformer Engine's Fp8Padding / Fp8Unpadding, fused_multi_row_padding): the rows copied
      into per-expert segments padded to the fp8 alignment before the expert GEMMs and the
      output copied back after them: two calls of R h a read + R h a written, forward and
      backward alike (uniform random routing leaves per-expert counts unaligned, so the
      copies run; Fp8Padding returns its input only when every count is already aligned).
    * Eager expert bias (models with MLP biases): per local expert ``b * p`` (write R h a),
      ``t + (b * p)`` (read 2, write 1) and the concatenation (read 1, write 1): 6 R h a
      bytes in 2 E/ep + 1 kernels; backward: d(b) = sum(g p) and d(p) = sum(g b), each a
      product (read 1, write 1) and a reduction (read 1): 6 R h a bytes in 4 E/ep kernels.
      The router's probabilities are in the activation dtype (Megatron-Core router.py
      gating: ``router_dtype = input.dtype`` unless moe_router_dtype is set).
    * Clamped GLU (``moe.clamped_glu``, models of the families listed there; Megatron-Core
      fused_bias_geglu.weighted_bias_quick_geglu_impl with a clamp value): with X = R I_p
      elements in each half of the fc1 output (I_p the expert intermediate size per expert-TP
      rank), forward ``x_glu.clamp(max)`` and ``x_linear.clamp(min, max)`` (each X a read,
      X a written) and ``torch.cat`` of the halves (2X read, 2X written): 8 X a bytes, 3
      kernels. Backward (PyTorch autograd): cat's backward is two views; clamp_backward
      (torch/csrc/autograd/FunctionsManual.cpp) of the linear half is
      ``where((self >= min).logical_and_(self <= max), grad, 0)``: ge and le (X a read, X
      one-byte masks written each), logical_and_ (2X read, X written) and where (X mask + X a
      read, X a written), 4a + 6 bytes per element; of the gate half ``where(self <= max,
      grad, 0)``, 3a + 2; chunk's backward concatenates the two half gradients (2X a read,
      2X a written): (11 a + 8) X bytes, 7 kernels and 2 one-element fills (scalar_tensor).
      Re-run with the activation under recompute_modules moe_act (recompute.MODULES).
    """
    moe = model.moe
    facts = fw.spec.moe if fw is not None else None
    if moe is None or facts is None:
        return [], []
    _, perm = moe_dispatcher_facts(fw)
    h, k = model.hidden_size, moe.top_k
    t = tokens / tp if sequence_parallel else tokens
    routed = O.routed_rows(tokens * np.asarray(ep) * np.asarray(etp) / np.asarray(tp), k, ep)
    local = moe.num_experts / np.asarray(ep, float)
    fwd: list[O.Op] = []
    bwd: list[O.Op] = []

    def op(name: str, nbytes, elems, launches, phase: str, count=1.0) -> O.Op:
        return O.Op(name=name, cls=O.ELEMENTWISE, flops=0.0, bytes=nbytes, dtype="fp32",
                    count=count, shape=(elems,), phase=phase, block="moe", kernel="copy",
                    launches=launches)

    if perm is not None:
        gathered = (t + t * k) * h * act_bytes  # Permutation 1: t h a read, t k h a written
        rows = 2.0 * routed * h * act_bytes  # a copy of R rows: R h a read, R h a written
        copies = (  # (the dispatcher's fact turns it on, operator, bytes, elements, calls)
            (perm.input_permute, MOE_PERMUTE, gathered, t * k * h, 1.0),
            (perm.local_sort, MOE_SORT, rows, routed * h,
             np.where(local > 1, 2.0, 0.0)),  # sort before the experts, unsort after
            (perm.received_permute, MOE_RECV_PERMUTE, rows, routed * h, 1.0),
            (perm.fp8_padding and fp8, MOE_FP8_PAD, rows, routed * h, 2.0),  # pad, unpad
        )
        for runs, name, nbytes, elems, calls in copies:
            if runs:
                fwd.append(op(name, nbytes, elems, 1.0, "fwd", count=calls))
                bwd.append(op(name + ".bwd", nbytes, elems, 1.0, "bwd", count=calls))
    if model.mlp_bias and facts.expert_bias == "per_expert_eager":
        nbytes = 6.0 * routed * h * act_bytes
        fwd.append(op(MOE_EXPERT_BIAS, nbytes, routed * h, 2.0 * local + 1.0, "fwd"))
        bwd.append(op(MOE_EXPERT_BIAS + ".bwd", nbytes, routed * h, 4.0 * local, "bwd"))
    clamp = facts.clamped_glu
    if clamp is not None and model.gated_mlp and model.family in clamp.families:
        half = routed * moe.expert_ffn_hidden_size / np.asarray(etp, float)  # X per half
        fwd.append(op(MOE_ACT_CLAMP, 8.0 * half * act_bytes, 2.0 * half, 3.0, "fwd"))
        bwd.append(op(MOE_ACT_CLAMP + ".bwd", (11.0 * act_bytes + 8.0) * half, 2.0 * half,
                      9.0, "bwd"))
    return fwd, bwd


ROPE_UNFUSED = "attn.rope.unfused"  # the eager RoPE's bytes and kernels beyond the fused op's


def rope_unfused_ops(fw: Framework | None, model: ModelSpec, fwd: list[O.Op],
                     act_bytes: float) -> tuple[list[O.Op], list[O.Op]]:
    """(forward, backward) extra operators of the RoPE a framework runs unfused for this model
    (frameworks/<id>.yaml ``rope_unfused``): one per ``attn.rope`` operator of ``fwd``, with
    the eager chain's bytes and kernels beyond perfmodel's fused kernel (forward 2 E a bytes,
    backward twice that, ops.backward).

    Megatron-Core _apply_rotary_pos_emb_bshd (rope_utils.py @92c8482e and @44151194), per
    element of q and k (E in all, a bytes each; rot_dim = head_dim, so ``t[..., :rot_dim]`` is
    t itself and ``t_pass`` is empty): forward ``t * cos_`` (2 E a), ``_rotate_half``'s neg of
    one half (E a) and cat (2 E a), ``* sin_`` (2 E a), the add (3 E a) and the final
    ``torch.cat((t, t_pass))`` (2 E a): 12 E a bytes; per call (q, k) those 6 kernels and 6
    small ones on the [s, 1, 1, d] fp32 freqs (cos, sin, * mscale, .to): 24 kernels.
    Backward (autograd): ``g * sin_`` (2 E a), the neg (E a), chunk's cat of the half
    gradients (2 E a), ``g * cos_`` (2 E a), the sum of t's two gradients (3 E a), the empty
    ``t_pass`` slice's gradient (slice_backward: a full-size ``zeros``, E a written; its copy_
    of 0 elements launches nothing) and the add of that gradient into t's (3 E a): 14 E a bytes
    in 7 kernels per tensor, 14 per call (a torch.profiler / dispatch-mode count of the
    backward on CPU, torch 2.13, bf16: mul, neg, cat, mul, add, slice_backward -> zero_, add).
    Extra: forward 10 E a bytes and 24 - 1 kernels, backward 10 E a and 14 - 1."""
    facts = fw.spec.rope_unfused if fw is not None else None
    if facts is None or facts.mscale == 1.0 or model.family not in facts.families:
        return [], []
    f: list[O.Op] = []
    b: list[O.Op] = []
    for op in fwd:
        if op.name != "attn.rope":
            continue
        e = op.shape[0]
        f.append(_extra(op, ROPE_UNFUSED, e, 10.0 * act_bytes, 23.0))
        b.append(replace(_extra(op, ROPE_UNFUSED + ".bwd", e, 10.0 * act_bytes, 13.0),
                         phase="bwd"))
    return f, b


EAGER_SCORES = "attn.score_chain"  # name (before UNFUSED) of the scores' eager passes
BIAS_ADD = ".bias_add"  # name suffix (before UNFUSED) of a Linear's separate bias add
RESIDUAL_DROPOUT = ".dropout"  # name suffix (before UNFUSED) of a residual's hidden dropout


def eager_forward_ops(fw: Framework | None, model: ModelSpec, fwd: list[O.Op],
                      act_bytes: float, dropout: bool) -> tuple[list[O.Op], list[O.Op]]:
    """(forward, backward) extra operators of one layer and micro-batch for the forward kernels
    an eager stack runs beyond perfmodel's fused list (frameworks/<id>.yaml ``eager_forward``).
    The forward ones are re-run by a recompute policy like the layer's own (the scores' passes
    are attention-core work, as selective recompute re-runs it); each is named ``...unfused``.

    * ``score_chain``: on the unfused attention's ``attn.softmax`` (S scores written, K kept
      read, a bytes each: its forward moves (S + K) a, its backward (S + 2K) a,
      ops._unfused_backward), the chain moves ``fwd_passes`` x S x a forward and
      ``bwd_passes`` x S x a backward; the difference, with the chain's other kernels.
    * ``bias_add``: per biased GEMM (m tokens, n output width on this GPU; not fp8), a read
      and a write of its output, m n a x 2 bytes, one kernel; no backward beyond the bias
      gradient's reduction (``eager_backward.bias_grad_reduction``): the add passes the
      gradient through. ``act_bytes``: the run's activation bytes per element.
    * ``residual_dropout`` (with dropout): per residual add of E elements, the dropout kernel
      before it reads and writes E a and writes a 1-byte mask (ops.DROPOUT_MASK_BYTES); its
      backward reads the gradient and the mask and writes the gradient, the same bytes."""
    eager = fw.spec.eager_forward if fw is not None and not fw.baseline else None
    if eager is None or model.mla is not None:
        return [], []
    f: list[O.Op] = []
    b: list[O.Op] = []

    def bwd(op: O.Op, name: str, nbytes, launches: float) -> O.Op:
        return replace(op, name=name + UNFUSED, bytes=nbytes, phase="bwd",
                       launches=float(launches))

    chain = eager.score_chain
    for op in fwd:
        if chain is not None and op.name == "attn.softmax":
            written, read = op.shape
            a = op.bytes / np.maximum(written + read, 1e-30)
            base_bwd = (written + 2.0 * read) * a
            ex = replace(_extra(op, EAGER_SCORES + UNFUSED, written, 0.0,
                                chain.fwd_kernels - 1),
                         bytes=np.maximum(chain.fwd_passes * written * a - op.bytes, 0.0),
                         attention_core=True)
            f.append(ex)
            b.append(bwd(ex, EAGER_SCORES + ".bwd",
                         np.maximum(chain.bwd_passes * written * a - base_bwd, 0.0),
                         chain.bwd_kernels - 1))
        elif eager.bias_add and op.cls == O.GEMM and _biased(op, model) and op.dtype != "fp8":
            m, n, _ = op.shape
            f.append(_extra(op, op.name + BIAS_ADD + UNFUSED, m * n, 2.0 * act_bytes, 1.0))
        elif eager.residual_dropout and dropout and op.name.endswith(".residual"):
            elems = op.shape[0]
            nbytes = elems * (2.0 * act_bytes + O.DROPOUT_MASK_BYTES)
            ex = replace(_extra(op, op.name + RESIDUAL_DROPOUT + UNFUSED, elems, 0.0, 1.0),
                         bytes=nbytes, kernel="dropout")
            f.append(ex)
            b.append(bwd(ex, op.name + RESIDUAL_DROPOUT + ".bwd", nbytes, 1.0))
    return f, b


def loss_chain(fw: Framework | None, head: list[O.Op]) -> list[O.Op]:
    """The loss run as an eager chain (torchtitan: .float() then log_softmax, outside the
    compiled region)."""
    if fw is None or fw.baseline:
        return head
    dec = fw.loss_decomposition
    return _with_chains(head, lambda op: dec if op.name == "head.loss" else None)


def chain_backward(fw: Framework | None, ops: list[O.Op], prec: O.Precision) -> list[O.Op]:
    """Backward operators of forward operators ``ops`` (a layer's, or the head's after
    ``loss_chain``): ``ops.backward`` of each, except an eager chain's extra operator
    (``unfused_chains`` / ``loss_chain``: ``<op>.unfused`` right after ``<op>``) whose
    decomposition states its own backward (``backward_bytes_per_element``,
    ``backward_kernels``): then that backward's bytes per element beyond ``ops.backward`` of
    the fused kernel, with its other kernels (not the 2x-forward rule)."""
    if fw is None or fw.baseline:
        return [b for op in ops for b in O.backward(op, prec)]
    out: list[O.Op] = []
    prev: O.Op | None = None
    for op in ops:
        dec = None
        if prev is not None and op.name == prev.name + UNFUSED:
            dec = (fw.loss_decomposition if prev.name == "head.loss"
                   else fw.unfused.get(prev.kernel))
        if dec is None or dec.backward_bytes_per_element is None:
            out += O.backward(op, prec)
        else:
            base_bwd = sum(b.bytes for b in O.backward(prev, prec))
            out.append(replace(op, name=op.name + ".bwd", phase="bwd",
                               bytes=np.maximum(op.shape[0] * dec.backward_bytes_per_element
                                                - base_bwd, 0.0),
                               launches=float(dec.backward_kernels - 1)))
        prev = op
    return out


TRAIN_METRIC = "head.train_metric"  # name (before UNFUSED) of a trainer metric's logit pass


def train_metric_ops(fw: Framework | None, head: list[O.Op]) -> list[O.Op]:
    """The trainer's metrics over each micro-batch's logits (frameworks/<id>.yaml
    ``loss.train_metrics``): Composer runs every train metric after the backward, under
    no_grad (trainer.py ``_eval_train_metrics``), so each is a forward-only eager pass of its
    decomposition's bytes per logit and kernels, with no backward. One operator per metric,
    sized by the loss operator's logits (local vocabulary share under TP)."""
    if fw is None or fw.baseline:
        return []
    loss = next((op for op in head if op.name == "head.loss"), None)
    if loss is None:
        return []
    elems = loss.shape[0]
    return [O.Op(name=f"{TRAIN_METRIC}{i}{UNFUSED}", cls=O.ELEMENTWISE, flops=0.0,
                 bytes=elems * dec.bytes_per_element, dtype="fp32", count=loss.count,
                 shape=(elems,), phase="bwd", block=loss.block, kernel="unfused",
                 launches=float(dec.kernels))
            for i, dec in enumerate(fw.train_metric_decompositions)]


#: kernel kind of a recipe's cast without an amax pass of its own (frameworks/_common.yaml
#: ``fp8_recipes.<name>.amax_pass`` false): no profile measures its element rate and no
#: fallback names it (profile.elementwise_elements_per_s), so roofline times it by its bytes on
#: the memory curve; ops.fp8_cast's kind ``cast`` is the measured dynamic quantise
FP8_ONE_PASS_CAST = "cast_one_pass"


def fp8_recipe_costs(fw: Framework | None, ops: list[O.Op],
                     architecture: str | None = None, sp_tp: Array = 1.0,
                     precision: str = "fp8") -> list[O.Op]:
    """Cast operators at the recipe's bytes per element (ops.FP8_CAST_BYTES is the dynamic
    tensorwise cast), repeated per orientation the recipe needs: bytes, elements (the element
    count the measured cast rate is charged on, ``shape[0]``), vector FLOPs and launches x
    ``casts_per_operand``. A recipe whose casts run no amax pass of their own (``amax_pass``
    false: delayed scaling, blockwise, MXFP8) is timed by its bytes on the memory curve
    (FP8_ONE_PASS_CAST), not at the measured two-pass rate. Then the framework's quantiser
    facts for the recipe (``fp8_quantise``, ``_quantiser_costs``). megatron-core (the baseline)
    keeps the base's casts under ``precision`` fp8.
    ``precision`` mxfp8 / nvfp4 (training.precision) selects the block-scaled recipe of that
    name (frameworks/_common.yaml ``block_scaled_recipes``, frameworks.block_scaled_recipe) for
    every framework, the baseline and none included (the base's cast is the per-tensor one,
    which these recipes do not run): its bytes per element (the bf16 read, an amax pass where
    one runs, both orientations in the stored format with block scales) plus the per-tensor
    fp32 scales of each quantised tensor (dtypes.TENSOR_SCALE_BYTES: nvfp4, 4 B per tensor and
    orientation; a forward cast quantises a GEMM's input and weight, per problem of a grouped
    GEMM, a backward one its output gradient). A framework whose quantiser writes each
    orientation in a kernel of its own (``fp8_quantise.<recipe>.separate_orientations``:
    torchao's MXFP8 dim0 / dim1 casts) runs ``orientations`` casts per operand, each reading
    the 16-bit tensor and writing one copy.
    ``architecture``: the device's (DeviceSpec.architecture), for ``transpose_on``; ``sp_tp``:
    the TP degree under sequence parallelism (1 without), for ``sp_quantise_before_gather``.
    First, every framework (megatron-core too): the GEMMs its fp8 recipe leaves in 16 bit
    (``fp8_scope.high_precision``: the LM head, the MoE router) at their 16-bit bytes and
    peak, their casts charged nothing (ops.sixteen_bit_gemms)."""
    if fw is not None and fw.spec.fp8_scope is not None:
        ops = O.sixteen_bit_gemms(ops, fw.spec.fp8_scope.high_precision,
                                  O.Precision.training("bf16"))
    block = block_scaled_recipe(precision)
    if block is None and (fw is None or fw.baseline):
        return ops
    name, recipe = (precision, block) if block is not None else (fw.float8_recipe, fw.fp8)
    q = None if fw is None or fw.baseline else fw.spec.fp8_quantise.get(name)
    n = recipe.casts_per_operand
    per_cast = recipe.cast_bytes_per_element
    if q is not None and q.separate_orientations and recipe.format:
        # one kernel per orientation, each reading the 16-bit tensor (and its amax pass): the
        # recipe's copies written once each, the reads repeated
        n = recipe.orientations
        per_cast = (2.0 if recipe.amax_pass else 0.0) + 2.0 + training_format_bytes(recipe.format)
    scale = per_cast / O.FP8_CAST_BYTES * n
    # fp32 scales per quantised tensor, all its copies
    per_tensor = (recipe.orientations * recipe.casts_per_operand
                  * TENSOR_SCALE_BYTES[recipe.format] if recipe.format else 0.0)
    if scale == 1.0 and n == 1 and recipe.amax_pass and q is None and not per_tensor:
        return ops
    kernel = None if recipe.amax_pass else FP8_ONE_PASS_CAST

    # a cast's GEMM (its forward pass, by name: "<gemm>.fp8cast[.recompute][.bwd]") and its
    # problems (a grouped GEMM quantises each expert's operands)
    groups = {op.name: op.groups for op in ops if op.cls == O.GEMM}

    def tensors(op: O.Op) -> Array:  # quantised tensors of one cast operator
        bwd = op.name.replace(".recompute", "").endswith(".bwd")
        return groups.get(op.name.split(_CAST, 1)[0], 1.0) * (1.0 if bwd else 2.0)

    out = [replace(op, bytes=op.bytes * scale + per_tensor * tensors(op),
                   vector_flops=op.vector_flops * n,
                   launches=op.launches * n, shape=(op.shape[0] * n, *op.shape[1:]),
                   kernel=kernel or op.kernel)
           if op.fp8_cast else op for op in ops]
    return out if q is None else _quantiser_costs(q, out, n, recipe.amax_pass, architecture,
                                                  sp_tp)


_CAST = ".fp8cast"


def _gemm_base(name: str) -> str:
    """A GEMM's forward name from any of its passes' names."""
    return O.gemm_pass(name)[0]


def _sp_side(gemm: O.Op) -> str:
    """"col" / "row": an ungrouped TE Linear whose matmuls are all column-parallel / none
    (sequence parallelism gathers its input / its output gradient); "" otherwise (the MoE
    router, a plain linear outside Transformer Engine, grouped experts, mixed GEMMs)."""
    if gemm.name == "moe.router" or np.any(np.asarray(gemm.groups) > 1) or not gemm.matmuls:
        return ""
    if all(mm.column_parallel for mm in gemm.matmuls):
        return "col"
    return "" if any(mm.column_parallel for mm in gemm.matmuls) else "row"


def _quantiser_costs(q, ops: list[O.Op], n: int, amax_pass: bool,
                     architecture: str | None, sp_tp: Array = 1.0) -> list[O.Op]:
    """Each cast operator (after ``fp8_recipe_costs``' recipe scaling) as the framework's
    quantiser runs it (frameworks/<id>.yaml ``fp8_quantise.<recipe>``; Transformer Engine
    Float8CurrentScalingQuantizer for tensorwise). For a GEMM of one problem's shape (m, n, k)
    and G problems (a grouped GEMM's experts), the forward cast stands for the input quantise
    (G m k elements) and the weight's (G k n, times the share a micro-batch pays,
    ``fp8_weight_casts``), the backward one for the output gradient's (G m n):

    * launches: ``kernels`` per quantised tensor, per expert when ``per_expert`` (else one
      tensor per operand), x the recipe's casts per operand; a forward input whose amax the
      preceding norm kernel computed (``norm_fused_inputs``, dense GEMMs) runs
      ``norm_fused_kernels`` and no amax pass of its own: its 2 B per element read
      (ops.FP8_AMAX_PASS_BYTES) is dropped and its elements leave the measured two-pass
      rate (timed by bytes, as a one-pass cast).
    * transpose copy (``transpose_on`` holds the device's architecture): each cast also
      writes the fp8 transpose the backward GEMMs read, 1 B per element cast; where the cast
      is timed at the measured two-pass rate (an achieved bandwidth over FP8_CAST_BYTES per
      element, roofline._elementwise_rate_time), its rate-charged elements grow by the same
      1 / FP8_CAST_BYTES.
    * quantise before the SP all-gather (``sp_quantise_before_gather``, ``sp_tp`` > 1): the
      gathered tensor (a column-parallel GEMM's input, a row-parallel one's output gradient,
      E elements) is quantised on this rank's E / sp_tp rows with no transpose, and on a
      transposing architecture the gathered fp8 tensor is transposed by one more kernel (read
      1 B, write 1 B per element, _create_transpose): its bytes b E (+ E) become b E / sp_tp
      (+ 2 E), its rate-charged elements E / sp_tp. An input's transpose runs in the backward,
      where the wgrad GEMM needs it after a second fp8 gather (charged on the backward cast)."""
    # an entry names an architecture as hardware_specs spells it; GH200's 'Hopper (+ Grace ...)'
    transposed = architecture is not None and any(architecture.startswith(a) for a in q.transpose_on)
    forward: dict[str, O.Op] = {}  # latest forward GEMM by name (fwd and recompute passes)
    out: list[O.Op] = []
    for op in ops:
        if op.cls == O.GEMM and not op.name.endswith((".dgrad", ".wgrad")):
            forward[_gemm_base(op.name)] = op
        if not op.fp8_cast:
            out.append(op)
            continue
        base = op.name.replace(".recompute", "").replace(".bwd", "")
        gemm = forward.get(base[: -len(_CAST)]) if base.endswith(_CAST) else None
        if gemm is None:
            out.append(op)
            continue
        m, n_out, k = gemm.shape
        g = gemm.groups
        tensors = g if q.per_expert else 1.0
        nbytes, elems = op.bytes, op.shape[0]
        side = _sp_side(gemm) if q.sp_quantise_before_gather else ""
        sp = np.asarray(sp_tp, dtype=float)
        gathered = 0.0  # elements of the tensor SP gathers in fp8 (quantised on 1 / sp of them)
        fused = False
        if op.name.replace(".recompute", "").endswith(".bwd"):
            launches = n * q.kernels * tensors  # the output gradient
            if side == "row":
                gathered = n * g * m * n_out
            elif side == "col" and transposed:
                # the forward's fp8 input, kept on this rank's rows, gathered again for the
                # wgrad GEMM and transposed (layernorm_linear.py / linear.py backward
                # ln_out_needs_gather: 'we compute FP8 transposes manually')
                split = sp > 1
                nbytes = nbytes + np.where(split, 2.0 * n * g * m * k, 0.0)
                launches = launches + np.where(split, n * tensors, 0.0)
        else:
            inputs = g * m * k
            # the weight's quantises per micro-batch: its share of the cast's elements
            per_mb = np.maximum(op.shape[0] / n - inputs, 0.0) / np.maximum(g * k * n_out, 1e-30)
            fused = q.norm_fused_kernels is not None and _gemm_base(gemm.name) in \
                q.norm_fused_inputs and np.all(np.asarray(g) == 1)
            k_in = q.norm_fused_kernels if fused else q.kernels
            launches = n * tensors * (k_in + q.kernels * per_mb)
            if fused and amax_pass:
                nbytes = nbytes - n * inputs * O.FP8_AMAX_PASS_BYTES
                elems = elems - n * inputs
            if side == "col":
                gathered = n * inputs
        # the gathered tensor: its cast's bytes per element b (the recipe's, less the amax pass
        # when the norm computed it) and whether its elements are charged at the two-pass rate
        b = op.bytes / np.maximum(op.shape[0], 1e-30) - (
            O.FP8_AMAX_PASS_BYTES if side == "col" and fused and amax_pass else 0.0)
        rated = amax_pass and not (side == "col" and fused)
        grow = 1.0 + 1.0 / O.FP8_CAST_BYTES if transposed and amax_pass else 1.0
        if transposed:
            nbytes = nbytes + op.shape[0]  # 1 B per element cast
            elems = elems * grow  # the measured rate is an achieved bandwidth at FP8_CAST_BYTES
        if gathered and np.any(sp > 1):
            # on 1 / sp of the rows without the transpose; an output gradient's gathered fp8
            # tensor is then transposed by one more kernel (1 B read + 1 B written per
            # element), an input's in the backward (above): the forward GEMM reads rows only
            t = 1.0 if transposed else 0.0
            t_after = t if side == "row" else 0.0
            split = sp > 1
            nbytes = nbytes + np.where(split, gathered * (b / sp + 2.0 * t_after - b - t), 0.0)
            if rated:
                elems = elems + np.where(split, gathered * (1.0 / sp - grow), 0.0)
            launches = launches + np.where(split, n * tensors * t_after, 0.0)
        out.append(replace(op, bytes=nbytes, shape=(elems, *op.shape[1:]),
                           launches=launches * op.launches / n))
    return out


def fp8_amax_reductions(fw: Framework | None, fwd: list[O.Op], sequence_parallel: bool,
                        full_recompute: bool, precision: str = "fp8") -> tuple[Array, Array]:
    """(forward, backward) amax all-reduces over the TP group per layer and micro-batch that the
    framework's quantiser runs before its casts under sequence parallelism (``fp8_quantise.
    <recipe>.amax_reduction``; Transformer Engine current scaling: the input quantiser of each
    column-parallel Linear in forward, the output-gradient quantiser of each row-parallel one in
    backward, ``with_amax_reduction`` / ``amax_reduction_group = tp_group``). ``fwd``: one
    layer's forward operators; the column- / row-parallel fp8 GEMMs are its ungrouped GEMMs with
    a cast whose matmuls are all column-parallel / none (the MoE router, a plain linear outside
    Transformer Engine, and grouped expert GEMMs, whose GroupedLinear sets no reduction, are
    left out). Full recompute repeats the forward's in backward."""
    if fw is None or fw.baseline or not sequence_parallel:
        return 0.0, 0.0
    q = fw.spec.fp8_quantise.get(fw.recipe_for(precision)[0])
    if q is None or not q.amax_reduction:
        return 0.0, 0.0
    cast = {op.name[: -len(_CAST)] for op in fwd if op.fp8_cast and op.name.endswith(_CAST)}
    col = row = 0.0
    for op in fwd:
        if op.cls != O.GEMM or op.name not in cast:
            continue
        side = _sp_side(op)
        if side == "col":
            col = col + op.count
        elif side == "row":
            row = row + op.count
    return col, row + (col if full_recompute else 0.0)


def fp8_weight_casts(fw: Framework | None, fwd: list[O.Op], microbatches) -> list[O.Op]:
    """A framework that keeps the fp8 copy of its weights across a step's micro-batches
    (``fp8_weight_cast.when: per_step``) casts each GEMM weight once per step: of a forward
    cast's elements (ops.fp8_cast: the GEMM's input, m k, and weight, k n, per problem), the
    weight's are charged 1 / ``microbatches`` of the time, so over the step they add up to one
    cast. ``fwd``: one layer's forward, each cast right after its GEMM (ops.layer_forward_ops);
    the backward casts (output gradients) are untouched. A recomputed forward copies these
    casts, weight share included (TE's recompute reads the cached copy: a small over-charge)."""
    if fw is None or fw.spec.fp8_weight_cast is None or \
            fw.spec.fp8_weight_cast.when != "per_step":
        return fwd
    out = list(fwd)
    for i in range(1, len(fwd)):
        op, gemm = fwd[i], fwd[i - 1]
        if not (op.fp8_cast and gemm.cls == O.GEMM and op.name == gemm.name + ".fp8cast"):
            continue
        _, n, k = gemm.shape
        weight = gemm.groups * k * n
        kept = 1.0 - weight * (1.0 - 1.0 / np.asarray(microbatches, float)) / op.shape[0]
        out[i] = replace(op, bytes=op.bytes * kept, vector_flops=op.vector_flops * kept,
                         shape=(op.shape[0] * kept, *op.shape[1:]))
    return out


def apply_backend(fw: Framework | None, times: OpTimes, roof: Roofline) -> OpTimes:
    """Attention kernels no faster than the backend's ceiling, and each operator's extra
    launches at the profile's fixed cost per kernel."""
    if fw is None or fw.baseline:
        return times
    ceiling = fw.attention_ceiling(roof.device.architecture)
    overhead = roof.profile.kernel_overhead_s
    for i, op in enumerate(times.ops):
        if op.cls == O.ATTENTION:
            c = ceiling.fraction(op.phase, op.shape[0] if op.shape else 0.0)
            if c is not None:
                times.time[i] = np.maximum(times.time[i], op.flops / (roof.peak(op.dtype) * c))
        if np.any(np.asarray(op.launches) > 1):
            times.time[i] = times.time[i] + (op.launches - 1.0) * overhead
    return times


def exposed_dispatch(fw: Framework | None, ops: list[O.Op], weighted: list,
                     rows: list[int], backward: bool) -> Array:
    """Host time of one pass over ``rows`` (a layer's forward, backward or recompute) that
    the GPU waits for: max(0, kernels x dispatch - GPU time)."""
    if fw is None:
        return 0.0
    fwd_s, bwd_s = fw.dispatch_s
    per_kernel = bwd_s if backward else fwd_s
    kernels = row_sum([ops[i].count * ops[i].launches for i in range(len(ops))], rows)
    return np.maximum(kernels * per_kernel - row_sum(weighted, rows), 0.0)


def cp_imbalance_factor(fw: Framework | None, cp: Array, causal: bool) -> Array:
    """Slowest rank's causal ring-attention work over the mean: 2 - 1/cp without load
    balancing (module docstring), 1 with it or without a causal mask, and 1 for all-to-all
    (Ulysses) CP, whose ranks each attend over the whole sequence with their share of the
    heads."""
    cp = np.asarray(cp, float)
    if fw is None or fw.cp_load_balance or not causal or fw.cp_implementation == "a2a":
        return np.ones_like(cp)
    return np.where(cp > 1, 2.0 - 1.0 / cp, 1.0)


def op_recompute_tp_collectives(fw: Framework | None, recompute: str,
                                sequence_parallel: bool) -> dict[str, float]:
    """TP collectives per layer that per-op selective checkpointing runs again in the
    backward's recompute: the layer's forward has two of each kind (attention and MLP: with
    sequence parallelism an all-gather before the column-parallel GEMMs and a reduce-scatter
    after the row-parallel ones; without it two all-reduces), and the policy saves only the
    outputs of ``activation_checkpointing.op_saved_collectives`` (torchtitan _save_list:
    reduce_scatter_tensor, not all_gather_into_tensor). A collective whose output the
    recomputed ops need (the gathered norm output feeds the saved / recomputed GEMMs) runs
    again."""
    if fw is None or fw.baseline or recompute != "op":
        return {}
    saved = fw.spec.activation_checkpointing.op_saved_collectives
    if saved is None:
        return {}
    kinds = ("all_gather", "reduce_scatter") if sequence_parallel else ("all_reduce",)
    return {k: 2.0 for k in kinds if k not in saved}


def tp_overlap_unfused_backward(fw: Framework | None, overlap: bool,
                                sequence_parallel: bool) -> dict[str, float]:
    """TP collectives per layer of the backward that the framework's TP overlap does not
    hide (``tp_overlap.backward_unfused``, two of each named kind under sequence
    parallelism): they stay exposed while the rest hides behind the GEMMs."""
    if fw is None or fw.baseline or not overlap or not sequence_parallel:
        return {}
    return {k: 2.0 for k in fw.spec.tp_overlap.backward_unfused}


def unfused_time(ops: list[O.Op], weighted: list, rows: list[int]) -> Array:
    """Time of the unfused chains' extra operators among ``rows``."""
    return row_sum(weighted, [i for i in rows if ops[i].name.endswith(UNFUSED)])


# -- memory -----------------------------------------------------------------------------------


def loss_buffer_bytes(fw: Framework | None, model: ModelSpec, tokens: Array, tp: Array) -> Array:
    """Loss buffers alive at the loss's backward beyond the 4 B/logit fp32 logits perfmodel
    counts (torchtitan: fp32 log_softmax output, its gradient and the input gradient, 12 B;
    under TP torch's loss_parallel backward, 16 B per local logit: ``loss.tp_peak_bytes_per_logit``)."""
    if fw is None or fw.baseline or fw.loss_decomposition is None:
        # a fused or compiled loss keeps its 16-bit input and writes the 16-bit gradient
        # (Inductor fuses .float() and log_softmax into the kernels that read the logits):
        # within perfmodel's 4 B per logit
        return 0.0
    loss = fw.spec.loss
    peak = loss.peak_bytes_per_logit
    if loss.tp_peak_bytes_per_logit is not None:
        peak = np.where(np.asarray(tp) > 1, loss.tp_peak_bytes_per_logit, peak)
    extra = np.maximum(peak - BASE_LOSS_BYTES_PER_LOGIT, 0.0)
    return extra * tokens * model.vocab_size / tp


def fsdp_buffer_bytes(fw: Framework | None, layer_params: Array, root_params: Array,
                      zero_stage: int, pp: Array) -> Array:
    """FSDP's buffers beyond the two gathered blocks perfmodel counts: one block's all-gather
    output, its unsharded gradients and the reduce-scatter input in the reduce dtype
    (torch fsdp/_fully_shard/_fsdp_collectives.py foreach_reduce), and the root module's
    parameters (embedding, output layer) gathered through the forward without PP."""
    if fw is None or fw.baseline or fw.spec.fsdp is None or zero_stage != 3:
        return 0.0
    f = fw.spec.fsdp
    per_param = (f.all_gather_output_bytes_per_param + f.unsharded_grad_bytes_per_param
                 + f.reduce_bytes_per_param)
    root = np.where(np.asarray(pp) > 1, 0.0, 2.0 * root_params) if f.root_gathered_in_forward \
        else 0.0
    return per_param * layer_params + root


def cp_buffer_bytes(fw: Framework | None, model: ModelSpec, seq_len: Array, tokens: Array,
                    cp: Array, tp: Array, act_bytes: float) -> Array:
    """All-gather CP (torchtitan): one layer's K and V of the whole sequence gathered on each
    rank (forward, and again in the backward), and beside it the larger of the forward's
    output accumulated in fp32 (torch _ContextParallelOptions.convert_to_f32) and the
    backward's buffers (``cp.bwd_bytes_q`` per local query element, ``cp.bwd_bytes_kv`` per
    local K and V element: torch _templated_ring_attention_backward's fp32 dQ / dK / dV, the
    rotated dK/dV and their receive buffer, the step's 16-bit gradients, the K/V cat). The
    forward's and the backward's buffers are never alive together (each lives inside one
    attention call)."""
    if fw is None or fw.baseline or fw.cp_implementation != "allgather":
        return 0.0
    c = fw.spec.cp
    heads = model.num_heads if c.kv_at_query_heads else model.kv_heads
    kv = 2.0 * np.maximum(heads / tp, 1.0) * model.hd
    gathered = seq_len * kv * act_bytes
    q = tokens * model.num_heads / tp * model.hd
    accum = q * 4.0 if c.accumulate_fp32 else 0.0
    bwd = q * c.bwd_bytes_q + tokens * kv * c.bwd_bytes_kv
    return np.where(np.asarray(cp) > 1, gathered + np.maximum(accum, bwd), 0.0)


def pipeline_buffer_bytes(fw: Framework | None, plan: Any, boundary: Array, logits: Array,
                          is_first: Array, is_last: Array) -> tuple[Array, Array]:
    """(buffers kept for the whole step, the last stage's step-end merge) on one pipeline
    rank, from the framework's ``pipeline`` facts (torch.distributed.pipelining v2.6.0): each
    of the rank's ``vp`` stages keeps its m micro-batches' outputs (``boundary`` bytes each, the
    logits on the last stage) and one forward (non-first stage) and one gradient (non-last
    stage) receive buffer per micro-batch; the last stage concatenates its m outputs once more
    at the step's end, after the backward (``merge``). 0 without pipeline parallelism."""
    if fw is None or fw.baseline or fw.spec.pipeline is None:
        return 0.0, 0.0
    f = fw.spec.pipeline
    m, vp = plan.num_microbatches, plan.vp
    pp_on = np.asarray(plan.pp) > 1
    out, recv = float(f.outputs_kept_all_step), float(f.recv_buffers_per_microbatch)
    # middle stages: all the rank's vp stages but the model's first / last one where it holds
    # them (under pp > 1 no rank holds both)
    n_middle = vp - np.where(is_first, 1.0, 0.0) - np.where(is_last, 1.0, 0.0)
    middle = n_middle * m * boundary * (out + 2.0 * recv)
    first = m * boundary * (out + recv)
    last = m * (logits * out + boundary * recv)
    kept = np.where(is_first, first, 0.0) + np.where(is_last, last, 0.0) + middle
    merge = np.where(is_last, m * logits, 0.0) if f.merge_outputs else 0.0
    return np.where(pp_on, kept, 0.0), np.where(pp_on, merge, 0.0)


# -- per layer and step (glue for training.py) ------------------------------------------------


class LayerTerms:
    """One layer kind's framework terms for one micro-batch: exposed host dispatch, the
    causal CP imbalance (extra attention time of the slowest rank) and the unfused chains'
    time (already inside the operator times; reported apart)."""

    def __init__(self, dispatch: Array = 0.0, cp_imbalance: Array = 0.0,
                 unfused: Array = 0.0, fsdp_copies: Array = 0.0) -> None:
        self.dispatch, self.cp_imbalance, self.unfused = dispatch, cp_imbalance, unfused
        self.fsdp_copies = fsdp_copies


def layer_terms(fw: Framework | None, st: Any, kind: str, cp: Array, causal: bool) -> LayerTerms:
    """``st``: training.StageOps (ops, weighted, groups, attention(label))."""
    if fw is None or fw.baseline:
        return LayerTerms()
    labels = (f"{kind}.fwd", f"{kind}.bwd", f"{kind}.rec")
    dispatch = sum(exposed_dispatch(fw, st.ops, st.weighted, st.groups[lab], lab.endswith("bwd"))
                   for lab in labels)
    attention = sum(st.attention(lab) for lab in labels)
    extra = (cp_imbalance_factor(fw, cp, causal) - 1.0) * attention
    unfused = sum(unfused_time(st.ops, st.weighted, st.groups[lab]) for lab in labels)
    copies = sum(fsdp_copy_time(st.ops, st.weighted, st.groups[lab]) for lab in labels)
    return LayerTerms(dispatch, extra, unfused, copies)


def split_time(fw: Framework | None, parts: dict, terms: dict[str, LayerTerms], per_stage,
               m: Array, head_unfused: Array, pp: Array) -> dict:
    """Name the framework's terms in the step-time breakdown: exposed dispatch and CP
    imbalance (added to the step) and the unfused chains (moved out of ``elementwise``)."""
    if fw is None or fw.baseline:
        return parts
    kinds = list(terms)
    unfused = m * (per_stage({k: terms[k].unfused for k in kinds})
                   + np.where(np.asarray(pp) > 1, 0.0, head_unfused))
    copies = m * per_stage({k: terms[k].fsdp_copies for k in kinds})
    parts[O.ELEMENTWISE] = parts[O.ELEMENTWISE] - unfused - copies
    parts["unfused_elementwise"] = unfused
    parts["fsdp_copies"] = copies
    parts["dispatch"] = m * per_stage({k: terms[k].dispatch for k in kinds})
    parts["cp_imbalance"] = m * per_stage({k: terms[k].cp_imbalance for k in kinds})
    return parts


def memory_terms(fw: Framework | None, model: ModelSpec, plan: Any, zero_stage: int,
                 layer_params: Array, root_params: Array, is_first: Array, is_last: Array,
                 act_bytes: float, activations: Array = 0.0) -> dict[str, Array]:
    """The framework's memory terms on one pipeline rank (``plan``: TrainPlan; ``is_first`` /
    ``is_last``: the rank holds the first / the last stage, both without PP;
    ``activations``: the rank's activation bytes at its backward peak).

    The loss's buffers (alive at the loss's backward) and CP's (inside a layer's attention)
    are never alive together: on the rank that computes the loss ``cp_buffers`` is what the
    CP phase needs beyond ``loss_buffers``. The last stage's step-end merge of its outputs
    runs after the backward has freed the activations and both phases:
    ``pipeline_output_merge`` is what it needs beyond them."""
    if fw is None or fw.baseline:
        return {}
    tp, cp = plan.tp, plan.cp
    ones = np.ones_like(np.asarray(tp, float))
    tokens = plan.micro_batch * plan.seq_len / cp
    loss = np.where(is_last, loss_buffer_bytes(fw, model, tokens, tp), 0.0) * ones
    cp_phase = cp_buffer_bytes(fw, model, plan.seq_len, tokens, cp, tp, act_bytes) * ones
    seq_div = np.where(plan.sequence_parallel, tp, 1.0)
    boundary = tokens * model.hidden_size * act_bytes / seq_div
    logits = tokens * model.vocab_size / tp * act_bytes
    kept, merge = pipeline_buffer_bytes(fw, plan, boundary, logits, is_first, is_last)
    return {
        "loss_buffers": loss,
        "fsdp_buffers": fsdp_buffer_bytes(fw, layer_params / tp, root_params / tp, zero_stage,
                                          plan.pp) * ones,
        "cp_buffers": np.maximum(cp_phase - loss, 0.0),
        "pipeline_buffers": kept * ones,
        "pipeline_output_merge": np.maximum(merge - activations - np.maximum(loss, cp_phase),
                                            0.0) * ones,
    }


def framework_breakdown(fw: Framework | None, zero_stage: int, dp_exposed: float) -> dict:
    """The settings in force and, under FSDP / ZeRO-3, the exposed parameter all-gathers and
    gradient reduce-scatters (data-parallel time the compute did not hide; FSDP prefetches
    one block ahead, parallel_comm.dp_step_comm)."""
    if fw is None:
        return {}
    out = fw.describe()
    if zero_stage == 3 and fw.spec.fsdp is not None:
        out["exposed_fsdp_comm_s"] = dp_exposed
        out["fsdp_prefetch"] = {"forward": fw.spec.fsdp.prefetch_forward,
                                "backward": fw.spec.fsdp.prefetch_backward}
    return out


FSDP_COPY = "fsdp.copy"  # name prefix of the copy kernels around FSDP's collectives


def zero_stage_free(fw: Framework | None) -> bool:
    """Whether none of the framework's terms depends on the ZeRO stage (no FSDP terms:
    ``fsdp_copies`` and ``fsdp_buffer_bytes`` are empty at every stage), so a plan search
    may evaluate the stages as one array axis."""
    return fw is None or fw.baseline or fw.spec.fsdp is None


def fsdp_copies(fw: Framework | None, zero_stage: int, layer_params: Array,
                backward: bool, grad_cast: bool = True) -> list[O.Op]:
    """The copy kernels FSDP runs around one block's collectives per micro-batch (ZeRO-3 /
    FSDP with resharding): forward, the all-gather output copied out to the parameters;
    backward, the re-gather's copy-out and the gradients copied into the reduce-scatter input
    (torch fsdp/_fully_shard/_fsdp_collectives.py split_with_sizes_copy, chunk_cat).
    ``layer_params``: the block's parameters on this GPU before sharding (after TP).
    ``grad_cast``: the gradients are reduced in another dtype than they are computed in; a
    framework whose only reduce copy is that cast (FSDP1, ``reduce_copy_in_cast_only``) runs
    none without it."""
    if fw is None or fw.baseline or fw.spec.fsdp is None or zero_stage != 3:
        return []
    f = fw.spec.fsdp
    reduce_in = 0.0 if f.reduce_copy_in_cast_only and not grad_cast else \
        f.reduce_copy_in_bytes_per_param
    per_param = f.copy_out_bytes_per_param + (reduce_in if backward else 0.0)
    if per_param == 0 or not np.any(np.asarray(layer_params) > 0):
        return []
    launches = (1.0 if f.copy_out_bytes_per_param else 0.0) + (
        1.0 if backward and reduce_in else 0.0)
    return [O.Op(name=FSDP_COPY + (".bwd" if backward else ""), cls=O.ELEMENTWISE, flops=0.0,
                 bytes=layer_params * per_param, dtype="fp32", shape=(layer_params,),
                 phase="bwd" if backward else "fwd", block="fsdp", kernel="copy",
                 launches=max(launches, 1.0))]


FSDP1_GRAD_FLATTEN = "fsdp.flat_grad_concat"  # FSDP1's split-view gradients concatenated
FSDP1_GRAD_PREDIVIDE = "fsdp.grad_predivide"  # FSDP1's in-place divide before reduce-scatter
FSDP1_GRAD_POSTDIVIDE = "fsdp.grad_postdivide"  # ... and of the shard after it
FSDP1_MP_SHARD_CAST = "fsdp.mp_shard_cast"  # FSDP1's fp32 shard cast before each all-gather


def _predivide_factor(world: float) -> float:
    """torch fsdp _comm_hooks/default_hooks.py DefaultState._get_gradient_predivide_factor."""
    factor = 1
    while world % factor == 0 and world / factor > factor:
        factor *= 2
    return float(factor)


def fsdp1_divide_factors(world: Array) -> tuple[Array, Array]:
    """FSDP1's (predivide, postdivide) factors of a sharding group of ``world`` ranks
    (_init_utils.py _init_process_group_state: post = world / pre)."""
    pre = np.vectorize(_predivide_factor, otypes=[float])(np.asarray(world, dtype=float))
    return pre, np.asarray(world, dtype=float) / pre


def fsdp_grad_ops(fw: Framework | None, zero_stage: int, layer_params: Array,
                  reduce_bytes: float, shard_group: Array, resharded: bool = True
                  ) -> list[O.Op]:
    """FSDP1's kernels on one block's parameters and gradient per micro-batch that
    ``fsdp_copies`` does not name (frameworks/<id>.yaml ``fsdp``), each reported as an
    unfused element-wise kernel of the backward; ZeRO-3 plans like ``fsdp_copies``:

    * ``grad_flatten_bytes_per_param``: the original parameters are ``torch.split`` views of
      the flat parameter, so autograd's split backward (an eager ``cat``) writes the flat
      gradient that the post-backward hook then casts and reduce-scatters.
    * ``grad_divides``: ``_reduce_grad`` divides the padded unsharded gradient in place by
      the predivide factor before the reduce-scatter and the 1/group shard by the postdivide
      factor after it, each read and written in the reduce dtype (``reduce_bytes``) when its
      factor is > 1 (``fsdp1_divide_factors``).
    * ``mp_shard_cast_bytes_per_param``: ``pre_unshard`` casts the fp32 local shard into the
      low-precision shard before each all-gather: twice per micro-batch when the plan
      reshards after forward (FULL_SHARD: forward, and the backward's re-gather; the
      recompute reuses the backward's), once when it keeps the gathered weights
      (``resharded`` false), all charged here.

    Accumulating the shard across micro-batches (``_saved_grad_shard +=``, 1/group of the
    block) is left out. ``layer_params``: the block's parameters on this GPU before sharding
    (after TP); ``shard_group``: the ranks the block is sharded over."""
    if fw is None or fw.baseline or fw.spec.fsdp is None or zero_stage != 3:
        return []
    f = fw.spec.fsdp
    if not np.any(np.asarray(layer_params) > 0):
        return []
    out: list[O.Op] = []
    group = np.maximum(np.asarray(shard_group, dtype=float), 1.0)

    def op(name: str, elems, nbytes, launches: float = 1.0) -> O.Op:
        return O.Op(name=name + UNFUSED, cls=O.ELEMENTWISE, flops=0.0, bytes=nbytes,
                    dtype="fp32", shape=(elems,), phase="bwd", block="fsdp", kernel="copy",
                    launches=launches)

    shard = layer_params / group  # the block's elements on this rank after sharding
    if f.grad_flatten_bytes_per_param:
        out.append(op(FSDP1_GRAD_FLATTEN, layer_params,
                      layer_params * f.grad_flatten_bytes_per_param))
    if f.grad_divides:
        pre, post = fsdp1_divide_factors(group)
        out.append(op(FSDP1_GRAD_PREDIVIDE, layer_params,
                      np.where(pre > 1, 2.0 * reduce_bytes, 0.0) * layer_params))
        out.append(op(FSDP1_GRAD_POSTDIVIDE, shard,
                      np.where(post > 1, 2.0 * reduce_bytes, 0.0) * shard))
    if f.mp_shard_cast_bytes_per_param:
        gathers = 2.0 if resharded else 1.0
        out.append(op(FSDP1_MP_SHARD_CAST, gathers * shard,
                      gathers * f.mp_shard_cast_bytes_per_param * shard, launches=gathers))
    return out


OPTIMIZER_EAGER = "optimizer.eager"  # an eager optimizer's bytes beyond the fused count


def optimizer_extra_ops(fw: Framework | None, step: O.Op, optimizer: str,
                        local_params: Array) -> list[O.Op]:
    """The optimizer step's HBM bytes beyond perfmodel's fused-Adam count ``step``
    (ops.optimizer_op) when the framework runs an eager per-parameter loop (frameworks/<id>.yaml
    ``optimizer.adam_bytes_per_param``), as one more operator of the optimizer group; Adam
    family only."""
    if fw is None or fw.baseline or optimizer not in ("adam", "adamw"):
        return []
    total = fw.spec.optimizer.adam_bytes_per_param
    if total is None or not np.any(np.asarray(local_params) > 0):
        return []
    base = step.bytes / np.maximum(local_params, 1e-30)
    return [O.Op(name=OPTIMIZER_EAGER, cls=O.OPTIMIZER, flops=0.0,
                 bytes=local_params * np.maximum(total - base, 0.0), dtype="fp32",
                 phase="step")]


GRAD_ACCUMULATE = "grad.accumulate"  # name (before UNFUSED) of autograd's gradient add
GRAD_DDP_STEP = "grad.ddp_flatten"  # name of an unbucketed all-reduce's per-step copies


def grad_accumulation_ops(fw: Framework | None, zero_stage: Array, layer_params: Array,
                          microbatches: Array) -> list[O.Op]:
    """Per layer and micro-batch (backward): autograd adds every micro-batch's weight gradient
    but the first into the parameter's ``.grad`` in place (frameworks/<id>.yaml
    ``grad_accumulation.bytes_per_param``), (m - 1) / m of a pass over the layer's parameters on
    this GPU (``layer_params``, after TP) on average, every micro-batch's when the gradients
    were zeroed rather than freed (``accumulates_first``); ZeRO-0 only (sharded stages reduce
    otherwise)."""
    facts = fw.spec.grad_accumulation if fw is not None and not fw.baseline else None
    if facts is None or not facts.bytes_per_param:
        return []
    m = np.maximum(np.asarray(microbatches, dtype=float), 1.0)
    later = np.ones_like(m) if facts.accumulates_first else (m - 1.0) / m
    share = np.where(np.asarray(zero_stage) == 0, later, 0.0)  # zero: an array axis too
    return [O.Op(name=GRAD_ACCUMULATE + UNFUSED, cls=O.ELEMENTWISE, flops=0.0,
                 bytes=layer_params * facts.bytes_per_param * share, dtype="fp32",
                 shape=(layer_params,), phase="bwd", block="grad", kernel="add",
                 launches=share)]


def grad_step_ops(fw: Framework | None, zero_stage: Array, local_params: Array,
                  dp: Array) -> list[O.Op]:
    """Per step: an unbucketed gradient all-reduce's flatten, divide and copy back over the
    parameters on this GPU (``grad_accumulation.step_bytes_per_param``), with data parallelism
    on and ZeRO-0; in the optimizer group (they run between the backward and the step)."""
    facts = fw.spec.grad_accumulation if fw is not None and not fw.baseline else None
    if facts is None or not facts.step_bytes_per_param:
        return []
    on = (np.asarray(dp, dtype=float) > 1) & (np.asarray(zero_stage) == 0)
    return [O.Op(name=GRAD_DDP_STEP, cls=O.OPTIMIZER, flops=0.0,
                 bytes=np.where(on, local_params * facts.step_bytes_per_param, 0.0),
                 dtype="fp32", phase="step")]


def fsdp_copy_time(ops: list[O.Op], weighted: list, rows: list[int]) -> Array:
    return row_sum(weighted, [i for i in rows if ops[i].name.startswith(FSDP_COPY)])
