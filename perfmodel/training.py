"""Training step time, FLOPs and memory per GPU for a 5-D parallel plan (TP/SP, CP, EP, PP, DP
with ZeRO), array-friendly in every numeric plan dimension.

Composition (Narayanan et al. 2021 arXiv 2104.04473, Sec. 2-3):

* A stage's time per micro-batch T_i = its layers' forward + backward (+ recompute) operator
  times, the exposed TP / CP / EP communication of those layers, the embedding (first stage)
  or LM head and loss (last stage), and the pipeline send/recv of its activations.
* Pipeline: m micro-batches through p stages; with v virtual chunks per rank the fill/drain
  bubble shrinks by v (Sec. 2.2.2): T = m * max_i T_i + (sum_i T_i - max_i T_i) / v, which for
  equal stages is (m + (p-1)/v) * T, i.e. bubble fraction (p-1)/(v m).
* Data parallel: gradient all-reduce (ZeRO-1/2: reduce-scatter + parameter all-gather; ZeRO-3:
  per-layer parameter all-gathers in forward and backward plus gradient reduce-scatter,
  Rajbhandari et al. 2020 Sec. 7), bucketed and overlapped with the last micro-batch's backward
  when ``overlap_grad_reduce`` (only the last bucket stays exposed).
* Optimizer step: memory-bound over the local (possibly ZeRO-sharded) parameters.

TP (Shoeybi et al. 2019 Sec. 3; Korthikanti et al. 2022 Sec. 4.2.2): per layer 2 all-reduces in
forward and 2 in backward of the b*s*h activation, or with sequence parallelism an all-gather
and a reduce-scatter in place of each (same bytes on the wire). CP: ring attention passes K/V
chunks around the cp ranks (cp-1 steps), each overlapped with one chunk of attention compute
(Liu et al. 2023 arXiv 2310.01889); backward passes K/V and dK/dV. EP: all-to-all dispatch and
combine around every MoE layer, forward and backward (Lepikhin et al. 2020 arXiv 2006.16668).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops as O
from .comm import collective_time, p2p_time
from .dtypes import nbytes
from .memory import (
    ActivationShape,
    embedding_and_head_activation_bytes,
    inflight_microbatches,
    layer_activation_bytes,
    model_state_bytes,
    overhead_bytes,
)
from .parameters import param_counts
from .plan import TrainPlan
from .profile import CalibrationProfile
from .recompute import recomputed_ops
from .roofline import OpTimes, Roofline, op_times, row_sum
from .specs.model import ModelSpec
from .specs.system import System
from .stages import stage_params
from .topology import group_spans, pp_neighbours_cross_nodes

Array = Any
COMM_KINDS = ("tp", "cp", "ep", "pp", "dp")


@dataclass
class TrainingResult:
    """Everything a training prediction reports; every field may be an array over plans."""

    step_time: Array
    time: dict[str, Array]  # components that add up to step_time
    comm_total: dict[str, Array]  # all communication per kind, overlapped or not
    comm_exposed: dict[str, Array]
    memory: dict[str, Array]  # bytes by kind on the most loaded GPU
    memory_total: Array
    model_flops: Array  # per step, whole system (Megatron convention)
    hardware_flops: Array  # model FLOPs + recompute (Korthikanti eq. 8 convention)
    tokens: Array  # per step
    num_microbatches: Array
    stage_times: dict[str, Array]  # per micro-batch: first, middle, last stage
    op_times: OpTimes | None = None  # first stage, one micro-batch (explanations)
    op_counts: list = field(default_factory=list)  # per-op calls per step on that stage
    groups: dict = field(default_factory=dict)  # parallel group spans (which links they cross)


def _class_sums(ops: list[O.Op], weighted: list, idx: list[int]) -> dict[str, Array]:
    out: dict[str, Array] = {c: 0.0 for c in O.OP_CLASSES}
    for i in idx:
        out[ops[i].cls] = out[ops[i].cls] + weighted[i]
    return out


def _layer_forward(model: ModelSpec, moe_layer: bool, plan: TrainPlan, prec: O.Precision,
                   sharded: bool = True) -> list[O.Op]:
    """Forward operators of one layer for one micro-batch (``sharded=False``: whole layer,
    whole sequence, as the FLOP convention counts it)."""
    s = plan.seq_len
    cp = plan.cp if sharded else 1
    pairs = O.attention_pairs(s, s, plan.causal) / cp
    shard = O.Shard(plan.tp, plan.sp, plan.ep, plan.etp) if sharded else O.Shard()
    return O.layer_forward_ops(model, moe_layer, plan.micro_batch, s / cp, s, pairs, shard,
                               prec, plan.flash, "prefill")


def _calls_per_step(ops: list[O.Op], groups: dict[str, list[int]], n_layers, share: dict,
                    m) -> list:
    """Calls of each operator per step on the largest (first) stage: layer operators run
    once per layer of their kind per micro-batch, embedding and head once per micro-batch,
    the optimizer once."""
    calls = [0.0] * len(ops)
    for label, idx in groups.items():
        kind = label.split(".")[0]
        times = (n_layers * share[kind] * m if kind in share
                 else 1.0 if label == "optimizer" else m)
        for i in idx:
            calls[i] = ops[i].count * times
    return calls


def layers_on_largest_stage(num_layers: int, pp: Array, vp: Array, uneven: bool) -> Array:
    """L/p, or with an uneven split (layers spread as evenly as possible over p*v chunks, as
    torchtitan and DeepSpeed do) the largest stage's ceil(L/(p v)) * v."""
    if not uneven:
        return num_layers / pp
    return np.ceil(num_layers / (np.asarray(pp) * vp)) * vp


def model_flops_per_step(model: ModelSpec, plan: TrainPlan) -> tuple[Array, Array]:
    """(model FLOPs, hardware FLOPs incl. recompute) per step for the whole system, summed
    from the operator list of an unsharded layer (Megatron convention, see ops.py)."""
    prec = O.Precision.training(plan.precision)
    per_micro, recompute = 0.0, 0.0
    for moe_layer, layers in ((False, model.num_dense_layers), (True, model.num_moe_layers)):
        if not layers:
            continue
        fwd = _layer_forward(model, moe_layer, plan, prec, sharded=False)
        per_micro = per_micro + layers * sum(op.model_flops * op.count for op in fwd)
        again = recomputed_ops(plan.recompute, fwd, model, moe_layer, plan.flash)
        recompute = recompute + layers * sum(op.flops * op.count for op in again
                                             if op.cls != O.ELEMENTWISE)
    t = plan.micro_batch * plan.seq_len
    per_micro = per_micro + 2.0 * t * model.hidden_size * model.vocab_size  # LM head
    micro = plan.global_batch / plan.micro_batch
    model_flops = 3.0 * per_micro * micro
    return model_flops, model_flops + recompute * micro


def training_step(model: ModelSpec, system: System, plan: TrainPlan,
                  profile: CalibrationProfile, keep_ops: bool = False) -> TrainingResult:
    roof = Roofline(system.device, profile)
    prec = O.Precision.training(plan.precision)
    pc = param_counts(model)
    h = model.hidden_size
    tp, pp, cp, vp = plan.tp, plan.pp, plan.cp, plan.vp
    b, s = plan.micro_batch, plan.seq_len
    s_loc = s / cp
    m = plan.num_microbatches
    spans = group_spans(system.gpus_per_node, plan.placement, tp=tp, cp=cp, ep=plan.ep,
                        dp=plan.dp, pp=pp)

    # ---- operators, one vectorised timing call ---------------------------------------------
    all_ops: list[O.Op] = []
    groups: dict[str, list[int]] = {}

    def add(label: str, items: list[O.Op]) -> None:
        groups[label] = list(range(len(all_ops), len(all_ops) + len(items)))
        all_ops.extend(items)

    kinds = [k for k, n in (("dense", model.num_dense_layers), ("moe", model.num_moe_layers))
             if n]
    attn_core: dict[str, tuple[list[int], list[int]]] = {}
    for kind in kinds:
        fwd = _layer_forward(model, kind == "moe", plan, prec)
        add(f"{kind}.fwd", fwd)
        add(f"{kind}.bwd", [b for op in fwd for b in O.backward(op, prec)])
        add(f"{kind}.rec", recomputed_ops(plan.recompute, fwd, model, kind == "moe", plan.flash))
        attn_core[kind] = (
            [i for i in groups[f"{kind}.fwd"] if all_ops[i].cls == O.ATTENTION],
            [i for i in groups[f"{kind}.bwd"] if all_ops[i].cls == O.ATTENTION],
        )
    t_tok = b * s_loc
    emb = O.embedding_ops(model, t_tok, tp, prec)
    add("embed", emb + [o for op in emb for o in O.backward(op, prec)])
    head = O.head_ops(model, t_tok, tp, prec)
    add("head", head + [o for op in head for o in O.backward(op, prec)])

    # FSDP without resharding after forward (torchtitan's default under PP) keeps a stage's
    # weights gathered and its gradients unsharded for the whole step: ZeRO-1 memory and
    # one gather + one reduce-scatter per step
    zero = 1 if (plan.zero_stage == 3 and not plan.reshard_after_forward) else plan.zero_stage
    sp_first = stage_params(pc, tp, pp, plan.ep, plan.etp, model.tie_embeddings,
                            layers=layers_on_largest_stage(model.num_layers, pp, vp,
                                                           plan.uneven_pp))
    dp_grad = np.asarray(spans["grad"].size, float)
    dp_expert = np.asarray(spans["egrad"].size, float)
    if zero >= 1:
        opt_params = sp_first.dense_first / dp_grad + sp_first.expert / dp_expert
    else:
        opt_params = sp_first.first
    add("optimizer", [O.optimizer_op(opt_params, plan.optimizer,
                                     mixed_precision=prec.act < 4 and plan.master_weights)])

    times = op_times(all_ops, roof)
    weighted = times.weighted()

    def total(label: str) -> Array:
        return row_sum(weighted, groups[label])

    def classes(*labels: str) -> dict[str, Array]:
        return _class_sums(all_ops, weighted, [i for lab in labels for i in groups[lab]])

    # ---- communication per layer -------------------------------------------------------------
    a = prec.act
    act_bytes = t_tok * h * a
    if plan.sp:
        tp_one = (collective_time("all_gather", act_bytes, spans["tp"], system, profile)
                  + collective_time("reduce_scatter", act_bytes, spans["tp"], system, profile))
    else:
        tp_one = collective_time("all_reduce", act_bytes, spans["tp"], system, profile)
    tp_fwd = 2.0 * tp_one
    tp_bwd = 2.0 * tp_one + (tp_fwd if plan.recompute == "full" else 0.0)

    ep_fwd = ep_bwd = 0.0
    if model.moe:
        a2a_bytes = t_tok / tp * model.moe.top_k * h * a
        ep_one = collective_time("all_to_all", a2a_bytes, spans["ep"], system, profile)
        ep_fwd = 2.0 * ep_one
        ep_bwd = 2.0 * ep_one + (ep_fwd if plan.recompute == "full" else 0.0)

    kv_width = (model.mla.qk_head_dim + model.mla.v_head_dim) * model.num_heads / tp \
        if model.mla else 2 * np.maximum(model.kv_heads / tp, 1.0) * model.hd
    kv_chunk = t_tok * kv_width * a
    cp_step = p2p_time(kv_chunk, np.asarray(spans["cp"].nodes) > 1, system, profile)
    cp_step_bwd = p2p_time(2 * kv_chunk, np.asarray(spans["cp"].nodes) > 1, system, profile)
    cp_on = np.asarray(cp) > 1

    layer_f, layer_b, layer_cls = {}, {}, {}
    comm_layer_total = {k: {} for k in ("tp", "cp", "ep")}
    comm_layer_exp = {k: {} for k in ("tp", "cp", "ep")}
    for kind in kinds:
        f = total(f"{kind}.fwd")
        bk = total(f"{kind}.bwd") + total(f"{kind}.rec")
        gemm_f = classes(f"{kind}.fwd")[O.GEMM]
        gemm_b = classes(f"{kind}.bwd")[O.GEMM]
        if plan.tp_comm_overlap:  # hidden behind the GEMMs it is decomposed with
            tp_exp = np.maximum(tp_fwd - gemm_f, 0.0) + np.maximum(tp_bwd - gemm_b, 0.0)
        else:
            tp_exp = tp_fwd + tp_bwd
        attn_f = row_sum(weighted, attn_core[kind][0])
        attn_b = row_sum(weighted, attn_core[kind][1])
        cp_total = np.where(cp_on, (cp - 1) * (cp_step + cp_step_bwd), 0.0)
        cp_exp = np.where(cp_on, (cp - 1) * (np.maximum(cp_step - attn_f / cp, 0.0)
                                             + np.maximum(cp_step_bwd - attn_b / cp, 0.0)), 0.0)
        ep_total = (ep_fwd + ep_bwd) if kind == "moe" else 0.0
        layer_f[kind] = f
        layer_b[kind] = bk
        comm_layer_total["tp"][kind] = tp_fwd + tp_bwd
        comm_layer_exp["tp"][kind] = tp_exp
        comm_layer_total["cp"][kind] = cp_total
        comm_layer_exp["cp"][kind] = cp_exp
        comm_layer_total["ep"][kind] = ep_total
        comm_layer_exp["ep"][kind] = ep_total
        layer_cls[kind] = classes(f"{kind}.fwd", f"{kind}.bwd", f"{kind}.rec")

    n_layers = layers_on_largest_stage(model.num_layers, pp, vp, plan.uneven_pp)
    n_avg = model.num_layers / pp
    share = {"dense": model.num_dense_layers / model.num_layers,
             "moe": model.num_moe_layers / model.num_layers}

    def per_stage(values: dict[str, Array]) -> Array:
        return n_layers * sum(share[k] * values[k] for k in kinds)

    body_compute = per_stage({k: layer_f[k] + layer_b[k] for k in kinds})
    body_comm = {c: per_stage(comm_layer_exp[c]) for c in ("tp", "cp", "ep")}
    body_comm_total = {c: per_stage(comm_layer_total[c]) for c in ("tp", "cp", "ep")}
    embed_t = total("embed") + collective_time("all_reduce", act_bytes, spans["tp"], system,
                                               profile)
    head_t = total("head")

    # pipeline send/recv: scatter-gather sends 1/t of the activation per TP rank (Sec. 4.1)
    pp_on = np.asarray(pp) > 1
    pp_cross = pp_neighbours_cross_nodes(system.gpus_per_node, plan.placement, tp, cp, plan.ep,
                                         plan.dp)
    p2p = p2p_time(act_bytes / tp, pp_cross, system, profile)
    p2p_micro = np.where(pp_on, 2.0 * vp * p2p, 0.0)

    body = body_compute + sum(body_comm.values()) + p2p_micro
    t_first = body + embed_t + np.where(pp_on, 0.0, head_t)
    t_last = np.where(pp_on, body + head_t, t_first)
    t_mid = np.where(np.asarray(pp) > 2, body, 0.0)
    t_max = np.maximum(np.maximum(t_first, t_last), t_mid)
    # all stages together hold every layer once (uneven splits: the largest stage bounds t_max)
    body_avg = (body - p2p_micro) * (n_avg / n_layers) + p2p_micro
    sum_t = np.where(pp_on, pp * body_avg + embed_t + head_t, t_first)
    bubble = (sum_t - t_max) / vp
    pipeline = m * t_max + bubble

    # ---- data parallel / ZeRO ---------------------------------------------------------------
    gbytes = nbytes(plan.grad_dtype) if prec.act < 4 else 4.0
    wbytes = 2.0 if prec.act < 4 else 4.0
    dense_p = np.maximum(sp_first.dense_first, sp_first.dense_last)
    expert_p = sp_first.expert

    # collectives are issued per bucket: DDP / distributed optimizer buckets of
    # ``dp_bucket_params`` (Megatron's default 40M), ZeRO-3 / FSDP one gather per layer (FSDP
    # wraps each transformer block) unless a bucket size is given (DeepSpeed: 5e7)
    stage_p = np.maximum(dense_p + expert_p, 1.0)
    bucket_params = plan.dp_bucket_params or (stage_p / n_layers if zero == 3
                                              else 40e6)
    calls = np.maximum(np.ceil(stage_p / bucket_params), 1.0)
    bucket = 1.0 / calls  # share of the traffic in one bucket

    def dp_coll(kind: str, per_param_bytes: float) -> Array:
        """One pass of ``kind`` over the stage's parameters, issued bucket by bucket."""
        return calls * (
            collective_time(kind, dense_p * per_param_bytes / calls, spans["grad"], system,
                            profile)
            + collective_time(kind, expert_p * per_param_bytes / calls, spans["egrad"],
                              system, profile))

    bwd_window = per_stage({k: layer_b[k] for k in kinds})  # last micro-batch's backward
    if zero == 0:
        dp_total = dp_coll("all_reduce", gbytes)
        grad_exposed = dp_total
        gather_exposed = 0.0
    elif zero in (1, 2):
        rs = dp_coll("reduce_scatter", gbytes)
        ag = dp_coll("all_gather", wbytes)
        dp_total = rs + ag
        grad_exposed = rs
        gather_exposed = ag * (bucket if plan.overlap_param_gather else 1.0)
    else:  # ZeRO-3 / FSDP: gather weights for forward and backward of every micro-batch
        ag = dp_coll("all_gather", wbytes)
        rs = dp_coll("reduce_scatter", gbytes)
        dp_total = (2.0 * ag + rs) * m
        if plan.overlap_param_gather:
            # prefetch hides the next layer's gather behind this layer's compute: forward
            # gathers behind forward compute, backward gathers + gradient reduce-scatters
            # behind backward compute; the first bucket of each pass cannot be prefetched
            fwd_c = per_stage({k: layer_f[k] for k in kinds})
            bwd_c = per_stage({k: layer_b[k] for k in kinds})
            exposed_micro = (np.maximum(ag * (1 - bucket) - fwd_c, 0.0)
                             + np.maximum((ag + rs) * (1 - bucket) - bwd_c, 0.0)
                             + (2.0 * ag + rs) * bucket)
        else:
            exposed_micro = 2.0 * ag + rs
        grad_exposed = exposed_micro * m
        gather_exposed = 0.0
    if zero < 3 and plan.overlap_grad_reduce:
        hidden = np.minimum(grad_exposed * (1 - bucket), bwd_window)
        grad_exposed = grad_exposed - hidden
    single_replica = np.asarray(spans["grad"].size) * 1.0 <= 1
    dp_exposed = np.where(single_replica & (np.asarray(spans["egrad"].size) <= 1), 0.0,
                          grad_exposed + gather_exposed)
    dp_total = np.where(single_replica & (np.asarray(spans["egrad"].size) <= 1), 0.0, dp_total)
    optimizer_t = total("optimizer")

    step = pipeline + dp_exposed + optimizer_t

    # ---- breakdown that adds up to the step ---------------------------------------------------
    stage_cls = {c: per_stage({k: layer_cls[k][c] for k in kinds}) for c in O.OP_CLASSES}
    embed_cls = classes("embed")
    head_cls = classes("head")
    # the stage that bounds the pipeline: last if it is the slowest, else first
    last_is_max = np.asarray(t_last) >= np.asarray(t_first)
    time_parts: dict[str, Array] = {}
    for c in (O.GEMM, O.ATTENTION, O.ELEMENTWISE):
        ends = np.where(pp_on, np.where(last_is_max, head_cls[c], embed_cls[c]),
                        head_cls[c] + embed_cls[c])
        time_parts[c] = m * (stage_cls[c] + ends)
    time_parts["tp_comm"] = m * (body_comm["tp"] + np.where(pp_on & last_is_max, 0.0, embed_t
                                                              - total("embed")))
    time_parts["cp_comm"] = m * body_comm["cp"]
    time_parts["ep_comm"] = m * body_comm["ep"]
    time_parts["pp_comm"] = m * p2p_micro
    time_parts["pipeline_bubble"] = bubble
    time_parts["dp_comm"] = dp_exposed
    time_parts["optimizer"] = optimizer_t
    # whatever the max-stage choice leaves (middle stage slowest) goes to the bubble term
    time_parts["pipeline_bubble"] = bubble + (step - sum(time_parts.values()))

    comm_total = {
        "tp": m * (body_comm_total["tp"]),
        "cp": m * body_comm_total["cp"],
        "ep": m * body_comm_total["ep"],
        "pp": m * p2p_micro,
        "dp": dp_total,
    }
    comm_exposed = {
        "tp": time_parts["tp_comm"], "cp": time_parts["cp_comm"], "ep": time_parts["ep_comm"],
        "pp": time_parts["pp_comm"], "dp": dp_exposed,
    }

    # ---- memory per GPU ---------------------------------------------------------------------
    shape_a = ActivationShape(b=b, s=s_loc, s_kv=s, tp=tp, sp=plan.sp, act_bytes=a,
                              dropout=plan.dropout, flash=plan.flash)
    top_k = model.moe.top_k if model.moe else 1
    act_layer = {k: layer_activation_bytes(model, shape_a, plan.recompute, k == "moe", top_k,
                                           plan.etp) for k in kinds}
    act_stage = per_stage(act_layer)
    working = 0.0
    if plan.recompute == "full":  # one layer's activations exist while it is recomputed
        for k in kinds:
            working = np.maximum(working, layer_activation_bytes(model, shape_a, "none",
                                                                 k == "moe", top_k, plan.etp))
    inflight = inflight_microbatches(pp, vp, m, plan.schedule)
    emb_act = embedding_and_head_activation_bytes(model, shape_a, first=True, last=False)
    head_act = embedding_and_head_activation_bytes(model, shape_a, first=False, last=True)
    act_first = act_stage * inflight + working + emb_act + np.where(pp_on, 0.0, head_act)
    last_inflight = m if plan.schedule == "gpipe" else 1.0
    act_last = act_stage * last_inflight + working + head_act
    states_first = model_state_bytes(sp_first.first, sp_first.dense_first, sp_first.expert,
                                     dp_grad, dp_expert, zero, plan.precision,
                                     plan.optimizer, plan.master_weights, plan.grad_dtype)
    states_last = model_state_bytes(sp_first.last, sp_first.dense_last, sp_first.expert,
                                    dp_grad, dp_expert, zero, plan.precision,
                                    plan.optimizer, plan.master_weights, plan.grad_dtype)
    comm_buffers = np.where(np.asarray(tp) > 1, 2.0 * act_bytes, 0.0)
    if zero == 3:  # gathered weights of the layer in use and the prefetched one
        comm_buffers = comm_buffers + 2.0 * wbytes * (pc.per_dense_layer / tp)
    first_total = sum(states_first.values()) + act_first + comm_buffers
    last_total = sum(states_last.values()) + act_last + comm_buffers
    use_last = np.where(pp_on, last_total > first_total, False)
    memory = {k: np.where(use_last, states_last[k], states_first[k]) for k in states_first}
    memory["activations"] = np.where(use_last, act_last, act_first)
    memory["communication_buffers"] = comm_buffers
    allocated = sum(memory.values())
    memory.update(overhead_bytes(allocated, profile.memory_overheads))
    memory_total = sum(memory.values())

    mflops, hflops = model_flops_per_step(model, plan)
    return TrainingResult(
        step_time=step, time=time_parts, comm_total=comm_total, comm_exposed=comm_exposed,
        memory=memory, memory_total=memory_total, model_flops=mflops, hardware_flops=hflops,
        tokens=plan.global_batch * s, num_microbatches=m,
        stage_times={"first": t_first, "middle": t_mid, "last": t_last},
        op_times=times if keep_ops else None,
        op_counts=_calls_per_step(all_ops, groups, n_layers, share, m) if keep_ops else [],
        groups=spans,
    )
