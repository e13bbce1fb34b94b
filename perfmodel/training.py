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

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import frameworks_costs as FC
from . import ops as O
from .comm import collective_time
from .dtypes import nbytes
from .errors import SpecError
from .frameworks import common_facts
from .memory import (
    ActivationShape,
    embedding_and_head_activation_bytes,
    inflight_microbatches,
    layer_activation_bytes,
    model_state_bytes,
    overhead_bytes,
    state_bytes_per_param,
)
from .parallel_comm import (
    DataParallelWork,
    cp_a2a_bytes,
    cp_a2a_comm,
    cp_allgather_comm,
    cp_kv_chunk_bytes,
    cp_ring_comm,
    dp_contention,
    dp_step_comm,
    dualpipev_unpaired_share,
    ep_a2a_overlap,
    ep_layer_comm,
    etp_layer_comm,
    nccl_sm_share,
    pp_send_recv,
    sm_contention,
    tp_layer_comm,
    tp_overlap,
    unpaired_share,
    zero3_extra_gathers,
)
from .parameters import param_counts
from .pipeline import (
    StageTimes,
    dualpipev_bubble,
    layers_on_largest_stage,
    pipeline_time,
    slowest_stage,
    stage_times,
)
from .plan import TrainPlan
from .profile import CalibrationProfile
from .recompute import recomputed_ops
from .roofline import OpTimes, Roofline, moe_routing, op_times, row_sum
from .specs.model import ModelSpec
from .specs.system import System
from .stages import stage_params
from .topology import group_spans, pp_neighbours_cross_nodes

Array = Any
COMM_KINDS = ("tp", "cp", "ep", "pp", "dp")


@dataclass(repr=False, eq=False)  # holds arrays: no generated ==, repr (issue 10)
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
    # MoE parallel folding: one rank's experts get the rows of ep*etp/tp TP groups' tokens
    # (parallel_comm.expert_rows; = ep, EP carved out of data parallelism, when etp = tp)
    sources = np.asarray(plan.ep) * np.asarray(plan.etp) / np.asarray(plan.tp)
    shard = (O.Shard(plan.tp, plan.sequence_parallel, plan.ep, plan.etp, route_sources=sources)
             if sharded else O.Shard())
    ops = O.layer_forward_ops(model, moe_layer, plan.micro_batch, s / cp, s, pairs, shard,
                              prec, plan.flash_attention, "fwd",
                              attention_dropout=plan.dropout)
    return attention_in_bf16(ops) if prec.cast_inputs else ops


def attention_in_bf16(ops: list[O.Op]) -> list[O.Op]:
    """fp8 training runs its GEMMs in fp8 and the attention core in bf16: torchao Float8Linear
    swaps nn.Linear only (pytorch/torchtitan@9dec370 torchtitan/float8.py; SDPA is called on
    bf16 q, k, v in models/llama/model.py), and Transformer Engine's fp8 recipes leave
    DotProductAttention in bf16 unless ``fp8_dpa`` is set (transformer_engine/common/recipe
    DelayedScaling ``fp8_dpa: bool = False``; Megatron-LM has no flag that sets it by
    default). The attention kernels are therefore timed at the bf16 peak and curves. The same
    for mxfp8 / nvfp4 (MXFP8BlockScaling / NVFP4BlockScaling ``fp8_dpa: bool = False``,
    NVFP4's "Not applying quantization to attention for now": recipe/__init__.py:370, 571-572
    @d0067d0da6cb)."""
    return [replace(op, dtype="bf16")
            if op.cls == O.ATTENTION and op.dtype in O.QUANTISED_TRAINING_DTYPES else op
            for op in ops]


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
        again = recomputed_ops(plan.recompute, fwd, model, moe_layer,
                                plan.flash_attention, plan.recompute_modules)
        recompute = recompute + layers * sum(op.flops * op.count for op in again
                                             if op.cls != O.ELEMENTWISE)
    t = plan.micro_batch * plan.seq_len
    per_micro = per_micro + 2.0 * t * model.hidden_size * model.vocab_size  # LM head
    micro = plan.global_batch / plan.micro_batch
    model_flops = 3.0 * per_micro * micro
    return model_flops, model_flops + recompute * micro


@dataclass(repr=False, eq=False)  # holds arrays: no generated ==, repr (issue 10)
class StageOps:
    """The operators of one micro-batch on the largest stage, timed in one vectorised call,
    with labelled index groups: ``<kind>.fwd|bwd|rec`` per layer kind (dense, moe), ``embed``,
    ``head``, ``optimizer``."""

    ops: list[O.Op]
    groups: dict[str, list[int]]
    times: OpTimes
    weighted: list

    def total(self, label: str) -> Array:
        return row_sum(self.weighted, self.groups[label])

    def classes(self, *labels: str) -> dict[str, Array]:
        return _class_sums(self.ops, self.weighted, [i for lab in labels
                                                     for i in self.groups[lab]])

    def wgrad(self, label: str) -> Array:
        """Seconds of the weight-gradient GEMMs (``.wgrad``, ops.backward) of ``label``."""
        return row_sum(self.weighted, [i for i in self.groups[label]
                                       if self.ops[i].name.endswith(".wgrad")])

    def attention(self, label: str) -> Array:
        return row_sum(self.weighted, [i for i in self.groups[label]
                                       if self.ops[i].cls == O.ATTENTION])

    def linear_gemms(self, label: str) -> Array:
        """Seconds of the weight GEMMs of ``label``: what TP communication overlaps with
        (Transformer Engine's userbuffers run it behind the linear layers' GEMMs); the unfused
        attention's batched GEMMs (``attention_core``, ops.unfused_attention_ops) hold no
        weight and are not among them."""
        return row_sum(self.weighted, [i for i in self.groups[label]
                                       if self.ops[i].cls == O.GEMM
                                       and not self.ops[i].attention_core])


def effective_zero_stage(plan: TrainPlan) -> int:
    """FSDP without resharding after forward (torchtitan's default under PP) keeps a stage's
    weights gathered and its gradients unsharded for the whole step: ZeRO-1 memory and one
    gather + one reduce-scatter per step."""
    if np.ndim(plan.zero_stage):  # stages as an array axis (a plan search)
        return np.where((np.asarray(plan.zero_stage) == 3) & np.logical_not(plan.resharded),
                        1, plan.zero_stage)
    return 1 if (plan.zero_stage == 3 and not plan.resharded) else plan.zero_stage


def by_stage(zero: Array, fn):
    """``fn(stage)`` for a scalar ZeRO stage; for an array of stages (a plan search's ZeRO
    axis), each distinct stage's result where that stage applies (np.where selection, so every
    cell holds exactly the number its stage alone gives). ``fn`` returns an array, a tuple or a
    dict of arrays."""
    if not np.ndim(zero):
        return fn(zero)
    zero = np.asarray(zero)
    stages = sorted(set(np.ravel(zero).tolist()))
    if len(stages) > 1 and zero.ndim > 1 and zero.shape[0] == zero.size:
        # a leading axis of stages before the mesh's axes (search.sweep); flat rows (1-D) and
        # other layouts take the np.where chain
        # each stage's rows copied from its result: the cells np.where would pick, one pass
        return _by_rows(zero, {s: fn(int(s)) for s in stages})
    out = None
    for s in stages:
        r, here = fn(int(s)), zero == s
        out = r if out is None else _where(here, r, out)
    return out


def _by_rows(zero: np.ndarray, results: dict):
    """``by_stage``'s result for a ZeRO-stage axis leading the mesh: every stage's result
    broadcast to the whole shape and its rows of the stage axis copied out (what the chain of
    np.where selects, cell for cell, with the dtype np.where gives)."""
    first = next(iter(results.values()))
    if isinstance(first, tuple):
        return tuple(_by_rows(zero, {s: r[i] for s, r in results.items()})
                     for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _by_rows(zero, {s: r[k] for s, r in results.items()}) for k in first}
    values = list(results.values())
    shape = np.broadcast_shapes(zero.shape, *(np.shape(v) for v in values))
    if len(shape) != zero.ndim:  # a result with more axes than the stage array: not rows of it
        out = None
        for s, r in results.items():
            out = r if out is None else np.where(zero == s, r, out)
        return out
    out = np.empty(shape, np.result_type(*values))
    for i, s in enumerate(np.ravel(zero).tolist()):
        out[i] = np.broadcast_to(results[s], shape)[i]
    return out


def _where(cond, a, b):
    if isinstance(a, tuple):
        return tuple(_where(cond, x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return {k: _where(cond, a[k], b[k]) for k in a}
    return np.where(cond, a, b)


def _stage_ops(model: ModelSpec, plan: TrainPlan, prec: O.Precision, kinds: list[str],
               optimizer_params: Array, roof: Roofline, memo: dict | None = None) -> StageOps:
    ops: list[O.Op] = []
    groups: dict[str, list[int]] = {}

    def add(label: str, items: list[O.Op]) -> None:
        groups[label] = list(range(len(ops), len(ops) + len(items)))
        ops.extend(items)

    fw = plan.framework
    zero = effective_zero_stage(plan)
    # all but the recompute passes read no recompute policy: built once per mesh and ZeRO
    # stage(s) for a plan search's calls (training_step ``mesh_memo``)
    key = ("stage_ops", tuple(np.ravel(zero).tolist()))
    built = memo.get(key) if memo is not None else None
    if built is None:
        built = _stage_ops_built(model, plan, prec, kinds, optimizer_params, zero)
        if memo is not None:
            memo[key] = built
    per_kind, rest = built
    for kind in kinds:
        fwd, bwd, source = per_kind[kind]
        add(f"{kind}.fwd", fwd)
        add(f"{kind}.bwd", bwd)
        add(f"{kind}.rec", recomputed_ops(plan.recompute, source, model, kind == "moe",
                                           plan.flash_attention, plan.recompute_modules))
    for label, items in rest.items():
        add(label, items)
    ops = FC.fp8_recipe_costs(fw, ops, roof.device.architecture,
                              plan.tp if plan.sequence_parallel else 1.0, plan.precision)
    if memo is None:
        times = FC.apply_backend(fw, op_times(ops, roof), roof)
    else:
        times = _shared_op_times(ops, groups, kinds, roof, fw, memo,
                                 tuple(np.ravel(zero).tolist()))
    return StageOps(ops, groups, times, times.weighted())


def _stage_ops_built(model: ModelSpec, plan: TrainPlan, prec: O.Precision, kinds: list[str],
                     optimizer_params: Array, zero: Array) -> tuple[dict, dict]:
    """``_stage_ops``' operators other than the recompute passes: per layer kind its forward
    and backward groups and the forward operators a recompute policy re-runs; then the
    embedding, head and optimizer groups."""
    fw = plan.framework
    per_kind = {}
    for kind in kinds:
        fwd = FC.fp8_weight_casts(fw, _layer_forward(model, kind == "moe", plan, prec),
                                  plan.num_microbatches)
        fwd = FC.attention_layout_copies(fw, FC.unfused_chains(fw, fwd), model, plan.tp, prec.act)
        block = param_counts(model).per_dense_layer / plan.tp if kind == "dense" else 0.0
        merge_f, merge_b = FC.cp_merge_ops(fw, model, plan.micro_batch * plan.seq_len / plan.cp,
                                           plan.tp, plan.cp)
        rope_f, rope_b = FC.rope_unfused_ops(fw, model, fwd, prec.act)  # eager YaRN RoPE
        merge_f, merge_b = merge_f + rope_f, merge_b + rope_b
        # an eager stack's own forward kernels (separate bias adds, hidden dropout, the scores'
        # scale / mask / softmax passes) and their backward
        eager_f, eager_b = FC.eager_forward_ops(fw, model, fwd, prec.act, plan.dropout)
        merge_f, merge_b = merge_f + eager_f, merge_b + eager_b
        if kind == "moe":  # the dispatcher's row copies and an eager expert bias
            perm_f, perm_b = FC.moe_dispatch_ops(
                fw, model, plan.micro_batch * plan.seq_len / plan.cp, plan.tp,
                plan.sequence_parallel, plan.ep, plan.etp, prec.act, fp8=prec.cast_inputs)
            merge_f, merge_b = merge_f + perm_f, merge_b + perm_b
        per_kind[kind] = (
            fwd + merge_f + FC.fsdp_copies(fw, zero, block, backward=False),
            FC.chain_backward(fw, fwd, prec) + merge_b
            + FC.backward_extra_ops(fw, fwd, model, prec.act)
            + FC.fsdp_copies(fw, zero, block, backward=True,
                             grad_cast=nbytes(plan.grad_dtype) != prec.act)
            + FC.fsdp_grad_ops(fw, zero, block, nbytes(plan.grad_dtype), plan.dp,
                               plan.resharded)
            + FC.grad_accumulation_ops(fw, zero, block, plan.num_microbatches),
            fwd + merge_f)
    tokens = plan.micro_batch * (plan.seq_len / plan.cp)
    emb = O.embedding_ops(model, tokens, plan.tp, prec)
    head = FC.loss_chain(fw, O.head_ops(model, tokens, plan.tp, prec))
    step = O.optimizer_op(optimizer_params, plan.optimizer,
                          mixed_precision=prec.act < 4 and plan.master_weights)
    rest = {"embed": emb + [o for op in emb for o in O.backward(op, prec)],
            "head": head + FC.chain_backward(fw, head, prec)
            + FC.train_metric_ops(fw, head),
            "optimizer": [step, *FC.optimizer_extra_ops(fw, step, plan.optimizer,
                                                        optimizer_params),
                          *FC.grad_step_ops(fw, zero, optimizer_params, plan.dp)]}
    return per_kind, rest


def _shared_op_times(ops: list[O.Op], groups: dict[str, list[int]], kinds: list[str],
                     roof: Roofline, fw, memo: dict, zero: tuple) -> OpTimes:
    """``op_times`` of a plan search's calls on one mesh (``training_step``'s ``mesh_memo``):
    every operator but the recompute passes' reads no recompute policy, so those are timed
    once per ZeRO stage(s) ``zero`` (the FSDP copies and the optimizer read it) and only the
    recomputed ones per call. Each operator's time is elementwise in its own inputs (op_times
    evaluates its groups cell by cell; the fp8 casts read their GEMM's shape, which a
    recompute copy shares), so the times equal those of one call on the whole list."""
    again = sorted(i for k in kinds for i in groups[f"{k}.rec"])
    skip = set(again)
    rest = [i for i in range(len(ops)) if i not in skip]
    key = ("op_times", zero)
    if key not in memo:
        memo[key] = FC.apply_backend(fw, op_times([ops[i] for i in rest], roof), roof)
    base = memo[key]
    time, compute, memory = [None] * len(ops), [None] * len(ops), [None] * len(ops)
    tables, curves = dict(base.moe_tables), dict(base.moe_curves)
    parts = [(rest, base)]
    if again:
        parts.append((again, FC.apply_backend(fw, op_times([ops[i] for i in again], roof),
                                              roof)))
    for idx, t in parts:
        for j, i in enumerate(idx):
            time[i], compute[i], memory[i] = t.time[j], t.compute[j], t.memory[j]
        tables.update(t.moe_tables)
        curves.update(t.moe_curves)
    return OpTimes(ops, time, compute, memory, tables, curves)


@dataclass(repr=False, eq=False)  # holds arrays: no generated ==, repr (issue 10)
class LayerCosts:
    """Per layer kind, one layer and one micro-batch: compute (forward, backward incl.
    recompute), operator classes, each parallel dimension's communication, and the compute
    that TP / CP traffic hides behind (not free to hide the data-parallel traffic)."""

    fwd: dict[str, Array]
    bwd: dict[str, Array]
    classes: dict[str, dict[str, Array]]
    comm_total: dict[str, dict[str, Array]]  # tp | cp | ep -> kind -> seconds
    comm_exposed: dict[str, dict[str, Array]]
    busy_fwd: dict[str, Array] = field(default_factory=dict)
    busy_bwd: dict[str, Array] = field(default_factory=dict)


def _layer_costs(model: ModelSpec, system: System, plan: TrainPlan, profile: CalibrationProfile,
                 st: StageOps, kinds: list[str], spans: dict, act_bytes: Array, a: float
                 ) -> LayerCosts:
    full = plan.recompute == "full"
    tokens = plan.micro_batch * (plan.seq_len / plan.cp)
    tp_fwd, tp_bwd = tp_layer_comm(act_bytes, plan.sequence_parallel, spans["tp"], system, profile, full)
    # per-op selective checkpointing repeats the TP collectives whose outputs it does not save
    for kind, n in FC.op_recompute_tp_collectives(plan.framework, plan.recompute,
                                                  plan.sequence_parallel).items():
        tp_bwd = tp_bwd + n * collective_time(kind, act_bytes, spans["tp"], system, profile)
    # backward collectives the TP overlap leaves unfused: exposed, taken out of what it hides
    tp_unfused = sum((n * collective_time(kind, act_bytes, spans["tp"], system, profile)
                      for kind, n in FC.tp_overlap_unfused_backward(
                          plan.framework, plan.tp_comm_overlap, plan.sequence_parallel).items()),
                     0.0)
    tp_bwd = tp_bwd - tp_unfused
    ep_fwd = ep_bwd = 0.0
    moe_tp_fwd, moe_tp_bwd, moe_tp_unfused = tp_fwd, tp_bwd, tp_unfused
    if model.moe:
        ep_fwd, ep_bwd = ep_layer_comm(tokens, plan.tp, model.moe.top_k, model.hidden_size, a,
                                       spans["ep"], system, profile, full,
                                       volume=FC.moe_dispatch_volume(plan.framework),
                                       measured_rdma=FC.moe_dispatch_measured_rdma(
                                           plan.framework, system.device.id),
                                       experts=model.moe.num_experts,
                                       n_group=model.moe.n_group,
                                       topk_group=model.moe.topk_group)
        # with EP the MoE MLP's TP collectives are the dispatcher's expert-TP all-gather /
        # reduce-scatter of the routed rows (none at etp = 1); attention keeps its half
        etp_fwd, etp_bwd = etp_layer_comm(tokens, plan.tp, plan.etp, model.moe.top_k,
                                          model.hidden_size, a, spans["etp"], system, profile,
                                          full)
        folded = np.asarray(plan.ep) > 1
        moe_tp_fwd = np.where(folded, tp_fwd / 2.0, tp_fwd)
        moe_tp_bwd = np.where(folded, tp_bwd / 2.0, tp_bwd)
        moe_tp_unfused = np.where(folded, tp_unfused / 2.0, tp_unfused)
        ep_fwd = ep_fwd + np.where(folded, etp_fwd, 0.0)
        ep_bwd = ep_bwd + np.where(folded, etp_bwd, 0.0)
    sync, sync_comm = moe_dispatch_sync(model, plan, spans["ep"], system, profile)
    cp_impl, kv_at_q, grad_ratio = FC.cp_comm_facts(plan.framework, a)
    kv_chunk = cp_kv_chunk_bytes(model, tokens, plan.tp, a, at_query_heads=kv_at_q)
    cp_comm = cp_allgather_comm if cp_impl == "allgather" else cp_ring_comm
    cp_extra = {"grad_ratio": grad_ratio} if cp_impl == "allgather" else {}
    c = LayerCosts({}, {}, {}, {k: {} for k in ("tp", "cp", "ep")},
                   {k: {} for k in ("tp", "cp", "ep")})
    for kind in kinds:
        c.fwd[kind] = st.total(f"{kind}.fwd")
        c.bwd[kind] = st.total(f"{kind}.bwd") + st.total(f"{kind}.rec")
        c.classes[kind] = st.classes(f"{kind}.fwd", f"{kind}.bwd", f"{kind}.rec")
        tp = tp_overlap(*((moe_tp_fwd, moe_tp_bwd) if kind == "moe" else (tp_fwd, tp_bwd)),
                        st.linear_gemms(f"{kind}.fwd"),
                        st.linear_gemms(f"{kind}.bwd"), plan.tp_comm_overlap)
        if cp_impl == "a2a":
            cp = cp_a2a_comm(*cp_a2a_bytes(model, tokens, plan.tp, plan.cp, a), plan.cp,
                             spans["cp"], system, profile, recompute=full)
        else:
            cp = cp_comm(kv_chunk, plan.cp, spans["cp"], st.attention(f"{kind}.fwd"),
                         st.attention(f"{kind}.bwd"), system, profile,
                         attn_rec=st.attention(f"{kind}.rec"), recompute=full, **cp_extra)
        # fp8 current scaling under SP: each amax all-reduce (4 B) stalls the cast that waits
        # for it (FC.fp8_amax_reductions): latency-bound, never hidden
        amax_f, amax_b = FC.fp8_amax_reductions(
            plan.framework, [st.ops[i] for i in st.groups[f"{kind}.fwd"]],
            plan.sequence_parallel, full, plan.precision)
        amax = (amax_f + amax_b) * collective_time("all_reduce", 4.0, spans["tp"], system,
                                                   profile)
        amax = amax + (moe_tp_unfused if kind == "moe" else tp_unfused)
        c.comm_total["tp"][kind], c.comm_exposed["tp"][kind] = tp.total + amax, tp.exposed + amax
        c.comm_total["cp"][kind], c.comm_exposed["cp"][kind] = cp.total, cp.exposed
        c.busy_fwd[kind] = tp.hidden_fwd + cp.hidden_fwd
        c.busy_bwd[kind] = tp.hidden_bwd + cp.hidden_bwd
        overlap = np.asarray(plan.moe_a2a_overlap, bool)  # an array in a plan search
        if kind == "moe" and overlap.any():
            free_f, free_b = c.fwd[kind] - c.busy_fwd[kind], c.bwd[kind] - c.busy_bwd[kind]
            unpaired = (dualpipev_unpaired_share(plan.num_microbatches, plan.pp)
                        if plan.schedule == "dualpipev"
                        else unpaired_share(plan.num_microbatches, plan.pp, plan.vp))
            ep = ep_a2a_overlap(ep_fwd, ep_bwd, free_f, free_b, unpaired)
            # the compute beside a hidden all-to-all runs without the NCCL kernel's SMs
            # (sm_contention; hidden_fwd: the backward's all-to-all under forward compute)
            share = nccl_sm_share(spans["ep"], system)
            contention = (sm_contention(ep.hidden_fwd, free_f, _bound(st, f"{kind}.fwd"), share)
                          + sm_contention(ep.hidden_bwd, free_b,
                                          _bound(st, f"{kind}.bwd", f"{kind}.rec"), share))
            c.comm_total["ep"][kind] = ep.total
            c.comm_exposed["ep"][kind] = np.where(overlap, ep.exposed + contention, ep.total)
            c.busy_fwd[kind] = c.busy_fwd[kind] + np.where(overlap, ep.hidden_fwd, 0.0)
            c.busy_bwd[kind] = c.busy_bwd[kind] + np.where(overlap, ep.hidden_bwd, 0.0)
        else:
            ep = (ep_fwd + ep_bwd) if kind == "moe" else 0.0
            c.comm_total["ep"][kind] = c.comm_exposed["ep"][kind] = ep
        if kind == "moe":  # the dispatch's serial metadata and host sync: never hidden
            c.comm_total["ep"][kind] = c.comm_total["ep"][kind] + sync_comm
            c.comm_exposed["ep"][kind] = c.comm_exposed["ep"][kind] + sync
    return c


def _bound(st: StageOps, *labels: str) -> Array:
    """Compute-bound seconds of a layer's passes: its GEMMs and attention cores (the kernels
    whose time scales with the SMs they get, parallel_comm.sm_contention)."""
    cls = st.classes(*labels)
    return cls[O.GEMM] + cls[O.ATTENTION]


def moe_dispatch_sync(model: ModelSpec, plan: TrainPlan, span, system: System,
                      profile: CalibrationProfile) -> tuple[Array, Array]:
    """(exposed seconds, of which collective) per MoE layer and micro-batch that Megatron-Core's
    token dispatch serialises on the host, beyond the all-to-all volume (``ep_layer_comm``).

    Read at Megatron-LM 44151194 (the Megatron-Core of Megatron-Bridge 26.04.01; the same steps
    at 92c8482e, its 25.11):

    * The all-to-all dispatcher's ``preprocess`` all-gathers each rank's int64 token count per
      expert over the tensor x expert parallel group (``gather_from_sequence_parallel_region(
      num_local_tokens_per_expert, group=self.tp_ep_group)``, token_dispatcher.py), on the
      compute stream before the dispatch: one small all-gather of ep x E x 8 bytes per layer
      forward whenever ep x tp > 1 (latency-bound: the profile's collective latency).
    * Every dispatcher makes the host wait for the GPU once per MoE layer forward: the
      all-to-all one copies the split sizes to the host and synchronises at ``cuda_sync_point``
      ("before_ep_alltoall" with EP, ``_maybe_dtoh_and_synchronize``: ``d2h_event.synchronize()``)
      because ``all_to_all_single`` takes host split sizes; under the flex dispatchers
      (DeepEP, HybridEP) TEGroupedMLP.forward's ``tokens_per_expert.tolist()`` (experts.py)
      reads the device counts. The stream then drains: the GPU idles until the host has issued
      the next kernel, i.e. one eager call through the torch dispatcher (``dispatch.forward_s``,
      measured by benchmarks/framework_dispatch.py) plus one kernel launch (the profile's
      ``kernel_overhead_s``). Backward passes reuse the host split sizes (no sync); full
      recompute re-runs the forward and pays both again.

    Only for frameworks whose file states the sync (``moe.host_sync: per_layer_forward``);
    0 otherwise.
    Tensor x expert group approximated by the EP group's span (the counts' all-gather is
    latency-bound)."""
    fw = plan.framework
    if fw is None or fw.spec.moe is None or fw.spec.moe.host_sync == "none" or not model.moe:
        return 0.0, 0.0
    passes = 2.0 if plan.recompute == "full" else 1.0
    name, _ = FC.moe_dispatcher_facts(fw)
    gather = 0.0
    if name == "alltoall":
        group = np.asarray(plan.ep, float) * np.asarray(plan.tp, float)
        counts = np.asarray(span.size, float) * model.moe.num_experts * 8.0
        gather = np.where(group > 1, collective_time("all_gather", counts, span, system,
                                                     profile), 0.0)
    host = common_facts().dispatch.forward_s + profile.kernel_overhead_s
    return passes * (gather + host), passes * gather


def flops_utilization(flops: Array, step_time: Array, num_gpus: Array, peak: float) -> Array:
    """Achieved FLOP/s per GPU over the dense peak of the training dtype: MFU with model FLOPs,
    HFU with hardware FLOPs incl. recompute (Korthikanti et al. 2022 Sec. 6.1, eq. 7 vs 8;
    Chowdhery et al. 2022 App. B)."""
    return flops / step_time / num_gpus / peak


def training_step(model: ModelSpec, system: System, plan: TrainPlan,
                  profile: CalibrationProfile, keep_ops: bool = False,
                  breakdown: bool = True, mesh_memo: dict | None = None) -> TrainingResult:
    """One optimizer step of ``plan`` (module docstring): operators -> per-layer costs ->
    stage times -> pipeline -> data parallel + optimizer; breakdown and memory alongside.
    ``breakdown=False`` (a plan search, which ranks by step time and memory): the step time,
    memory total and stage times only; ``time``, ``comm_total`` and ``comm_exposed`` are left
    empty, ``memory`` too where that saves work (``_memory``), and the FLOPs None (the step
    time and memory total are the same numbers).
    ``mesh_memo``: a dict the caller keeps across calls on one mesh whose plans differ only in
    the recompute policy or ZeRO stage (search.sweep): what reads neither is computed once for
    all of them -- the data-parallel collective passes (``parallel_comm._dp_pass``), the
    times of the operators other than the recompute passes (``_shared_op_times``) and the
    model states and communication buffers in memory (``_memory``)."""
    prec = O.Precision.training(plan.precision)
    tp, pp, vp, m = plan.tp, plan.pp, plan.vp, plan.num_microbatches
    spans = group_spans(system.gpus_per_node, plan.placement, tp=tp, cp=plan.cp, ep=plan.ep,
                        dp=plan.dp, pp=pp, etp=plan.etp)
    zero = effective_zero_stage(plan)
    n_layers = layers_on_largest_stage(model.num_layers, pp, vp, plan.uneven_pp)
    # DualPipeV's V puts the first and the last chunk, embedding and LM head, on rank 0
    # (one copy of tied embeddings, as one stage holds both ends at pp = 1)
    v_shape = plan.schedule == "dualpipev"
    stage_p = stage_params(param_counts(model), tp, 1 if v_shape else pp, plan.ep, plan.etp,
                           model.tie_embeddings, layers=n_layers)
    dp_grad = np.asarray(spans["grad"].size, float)
    dp_expert = np.asarray(spans["egrad"].size, float)
    if np.ndim(zero):  # a ZeRO-stage axis: only stage-free framework terms (FC.zero_stage_free)
        if not FC.zero_stage_free(plan.framework):
            raise SpecError(f"parallelism.zero_stage: an array of ZeRO stages needs a framework "
                            f"with no FSDP terms; {plan.framework.id!r} has them (evaluate "
                            "one stage at a time, as search.sweep does)")
        opt_params = np.where(np.asarray(zero) >= 1,
                              stage_p.dense_first / dp_grad + stage_p.expert / dp_expert,
                              stage_p.first)
    else:
        opt_params = (stage_p.dense_first / dp_grad + stage_p.expert / dp_expert if zero >= 1
                      else stage_p.first)
    kinds = [k for k, n in (("dense", model.num_dense_layers), ("moe", model.num_moe_layers))
             if n]
    # the model's routing picks a measured MoE curve exactly, as inference's does
    roof = replace(Roofline.for_system(system, profile, moe_routing=moe_routing(model)),
                   per_expert_gemm=FC.per_expert_gemm(plan.framework))
    st = _stage_ops(model, plan, prec, kinds, opt_params, roof, mesh_memo)
    a = prec.act
    act_bytes = plan.micro_batch * (plan.seq_len / plan.cp) * model.hidden_size * a
    lc = _layer_costs(model, system, plan, profile, st, kinds, spans, act_bytes, a)
    share = {"dense": model.num_dense_layers / model.num_layers,
             "moe": model.num_moe_layers / model.num_layers}

    def per_stage(values: dict[str, Array]) -> Array:
        # n_layers x sum of share x value; a share of 1 (one layer kind) and the sum's
        # leading 0 are left out: the same numbers without two passes over mesh arrays
        total = None
        for k in kinds:
            term = values[k] if share[k] == 1.0 else share[k] * values[k]
            total = term if total is None else total + term
        return n_layers * total

    fx = {k: FC.layer_terms(plan.framework, st, k, plan.cp, plan.causal) for k in kinds}
    body_compute = per_stage({k: lc.fwd[k] + lc.bwd[k] + fx[k].dispatch + fx[k].cp_imbalance
                              for k in kinds})
    body_comm = {c: per_stage(lc.comm_exposed[c]) for c in ("tp", "cp", "ep")}
    embed_t = st.total("embed") + collective_time("all_reduce", act_bytes, spans["tp"], system,
                                                  profile)
    pp_cross = pp_neighbours_cross_nodes(system.gpus_per_node, plan.placement, tp, plan.cp,
                                         plan.ep, plan.dp)
    # hyper-connections / attention residuals: the stage passes a wider residual stream
    p2p_micro = pp_send_recv(act_bytes * O.residual_stream_width(model), tp, pp, vp, pp_cross,
                             system, profile)
    body = body_compute + sum(body_comm.values()) + p2p_micro
    # all stages together hold every layer once (uneven splits: the largest stage bounds t_max)
    body_avg = (body - p2p_micro) * ((model.num_layers / pp) / n_layers) + p2p_micro
    stages = stage_times(body, body_avg, embed_t, st.total("head"), pp)
    if v_shape:  # rank 0 runs both ends; DualPipeV's bubble (pipeline.dualpipev_bubble)
        stages = replace(stages, first=body + embed_t + st.total("head"), last=body)
        t_max = slowest_stage(stages)
        bubble = dualpipev_bubble(
            t_max, per_stage({k: lc.bwd[k] for k in kinds}),  # the layers' B and W
            per_stage({k: st.wgrad(f"{k}.bwd") for k in kinds}), pp)
        pipeline = m * t_max + bubble
    else:
        pipeline, bubble = pipeline_time(stages, m, vp)

    wbytes, gbytes = state_bytes_per_param(plan.precision, plan.grad_dtype)
    dp_work = DataParallelWork(
        zero_stage=zero, dense_params=np.maximum(stage_p.dense_first, stage_p.dense_last),
        expert_params=stage_p.expert, layers=n_layers, microbatches=m, grad_bytes=gbytes,
        weight_bytes=wbytes, bucket_params=plan.dp_bucket_params,
        overlap_grad_reduce=plan.overlap_grad_reduce,
        overlap_param_gather=plan.overlap_param_gather,
        fwd_compute=per_stage({k: lc.fwd[k] - lc.busy_fwd[k] for k in kinds}),
        bwd_compute=per_stage({k: lc.bwd[k] - lc.busy_bwd[k] for k in kinds}),
        fwd_bound=per_stage({k: _bound(st, f"{k}.fwd") for k in kinds}),
        bwd_bound=per_stage({k: _bound(st, f"{k}.bwd", f"{k}.rec") for k in kinds}),
        regather=zero3_extra_gathers(
            plan.framework.spec.fsdp, plan.recompute,
            lambda: {k: [st.ops[i].shape[1] * st.ops[i].shape[2] * st.ops[i].groups
                         for i in st.groups[f"{k}.fwd"]
                         if st.ops[i].cls == O.GEMM and not st.ops[i].attention_core]
                     for k in kinds},
            share),
        microbatch_reduction_stages=tuple(
            z for z, stage in plan.framework.spec.capabilities.zero_stages.items()
            if stage.grad_reduction == "microbatch"))
    # collective passes the stages (and the caller's other calls) share, timed once
    passes: dict = {} if mesh_memo is None else mesh_memo.setdefault("dp_passes", {})
    def dp_comm(z):
        return dp_step_comm(replace(dp_work, zero_stage=z), spans["grad"], spans["egrad"],
                            system, profile, passes)

    if breakdown:
        dp_total, dp_exposed = by_stage(zero, dp_comm)
    else:  # a plan search reads the exposed part only: only its stage rows are assembled
        dp_exposed = by_stage(zero, lambda z: dp_comm(z)[1])
    # the compute those hidden collectives run beside loses their NCCL kernels' SMs
    contention = by_stage(zero, lambda z: dp_contention(
        replace(dp_work, zero_stage=z), spans["grad"], spans["egrad"], system, profile,
        passes))
    optimizer_t = st.total("optimizer")
    step = pipeline + dp_exposed + contention + optimizer_t
    quant_p = quantised_stage_params(model, plan, 1 if v_shape else pp, n_layers)
    memory, memory_total = _memory(model, plan, stage_p, kinds, per_stage, zero, dp_grad,
                                   dp_expert, act_bytes, wbytes, a, m, profile,
                                   by_kind=breakdown, memo=mesh_memo, quant_p=quant_p)
    stage_t = {"first": stages.first, "middle": stages.middle, "last": stages.last}
    groups = spans if model.moe else {k: v for k, v in spans.items() if k != "etp"}
    if not breakdown:
        return TrainingResult(
            step_time=step, time={}, comm_total={}, comm_exposed={}, memory=memory,
            memory_total=memory_total, model_flops=None, hardware_flops=None,
            tokens=plan.global_batch * plan.seq_len, num_microbatches=m, stage_times=stage_t,
            op_times=st.times if keep_ops else None,
            op_counts=_calls_per_step(st.ops, st.groups, n_layers, share, m) if keep_ops else [],
            groups=groups)

    ends_pp = 1 if v_shape else pp  # DualPipeV's rank 0 holds both ends, as one stage does
    time_parts = _time_breakdown(st, stages, m, per_stage, kinds, lc, body_comm, embed_t,
                                 p2p_micro, bubble, dp_exposed, optimizer_t, ends_pp)
    time_parts = FC.split_time(plan.framework, time_parts, fx, per_stage, m,
                               FC.unfused_time(st.ops, st.weighted, st.groups["head"]), ends_pp)
    time_parts["comm_contention"] = contention
    time_parts["pipeline_bubble"] = bubble + (step - sum(time_parts.values()))
    comm_total = {c: m * per_stage(lc.comm_total[c]) for c in ("tp", "cp", "ep")}
    comm_total.update(pp=m * p2p_micro, dp=dp_total)
    comm_exposed = {c: time_parts[f"{c}_comm"] for c in ("tp", "cp", "ep", "pp")}
    comm_exposed["dp"] = dp_exposed

    mflops, hflops = model_flops_per_step(model, plan)
    return TrainingResult(
        step_time=step, time=time_parts, comm_total=comm_total, comm_exposed=comm_exposed,
        memory=memory, memory_total=memory_total, model_flops=mflops,
        hardware_flops=hflops, tokens=plan.global_batch * plan.seq_len, num_microbatches=m,
        stage_times=stage_t,
        op_times=st.times if keep_ops else None,
        op_counts=_calls_per_step(st.ops, st.groups, n_layers, share, m) if keep_ops else [],
        groups=groups,
    )


def _time_breakdown(st: StageOps, stages: StageTimes, m: Array, per_stage, kinds: list[str],
                    lc: LayerCosts, body_comm: dict, embed_t: Array, p2p_micro: Array,
                    bubble: Array, dp_exposed: Array, optimizer_t: Array, pp: Array
                    ) -> dict[str, Array]:
    """Step time by component, on the stage that bounds the pipeline: the last if it is the
    slowest, else the first (a slower middle stage leaves a remainder the caller adds to the
    bubble)."""
    pp_on = np.asarray(pp) > 1
    stage_cls = {c: per_stage({k: lc.classes[k][c] for k in kinds}) for c in O.OP_CLASSES}
    embed_cls, head_cls = st.classes("embed"), st.classes("head")
    last_is_max = np.asarray(stages.last) >= np.asarray(stages.first)
    parts: dict[str, Array] = {}
    for c in (O.GEMM, O.ATTENTION, O.ELEMENTWISE):
        ends = np.where(pp_on, np.where(last_is_max, head_cls[c], embed_cls[c]),
                        head_cls[c] + embed_cls[c])
        parts[c] = m * (stage_cls[c] + ends)
    parts["tp_comm"] = m * (body_comm["tp"] + np.where(pp_on & last_is_max, 0.0,
                                                       embed_t - st.total("embed")))
    parts["cp_comm"] = m * body_comm["cp"]
    parts["ep_comm"] = m * body_comm["ep"]
    parts["pp_comm"] = m * p2p_micro
    parts["pipeline_bubble"] = bubble
    parts["dp_comm"] = dp_exposed
    parts["optimizer"] = optimizer_t
    return parts


def quantised_stage_params(model: ModelSpec, plan: TrainPlan, pp: Array,
                           n_layers: Array) -> tuple | None:
    """(first stage, last stage, bytes per parameter) of the GEMM weights a block-scaled
    training recipe (training.precision mxfp8 / nvfp4, frameworks.block_scaled_recipe) keeps as
    quantised parameters, both orientations (memory.quantised_weight_bytes_per_param); None
    for every other precision. The weights are those of the linear layers of the transformer
    blocks (attention projections incl. MLA's, dense MLP, routed and shared experts, latent
    MoE projections, linear-attention / Mamba mixers): ``stage_params`` of the model's
    parameter counts without the embeddings, LM head, norms and MoE router, which stay bf16
    (outside Transformer Engine's quantised modules: frameworks/<id>.yaml ``fp8_scope``)."""
    from .frameworks import block_scaled_recipe
    from .memory import quantised_weight_bytes_per_param

    recipe = block_scaled_recipe(plan.precision)
    if recipe is None:
        return None
    linear = replace(param_counts(model), word_embedding=0, position_embedding=0,
                     embedding_norm=0, layer_norms=0, router=0, final_norm=0, lm_head=0)
    q = stage_params(linear, plan.tp, pp, plan.ep, plan.etp, model.tie_embeddings,
                     layers=n_layers)
    return q.first, q.last, quantised_weight_bytes_per_param(recipe.format, recipe.orientations)


def _memory(model: ModelSpec, plan: TrainPlan, stage_p, kinds: list[str], per_stage,
            zero: int, dp_grad: Array, dp_expert: Array, act_bytes: Array, wbytes: float,
            a: float, m: Array, profile: CalibrationProfile, by_kind: bool = True,
            memo: dict | None = None,
            quant_p: tuple | None = None) -> tuple[dict[str, Array], Array]:
    """Memory by kind on the most loaded GPU: the first stage (most micro-batches in flight)
    or the last (LM head, logits), whichever holds more (Korthikanti et al. 2022 Sec. 4;
    ZeRO Sec. 5.1); and its total, the sum of the kinds. ``by_kind=False`` (a plan search):
    the total only, the kinds left out where that saves work ({}); ``memo``: training_step's
    ``mesh_memo``, where the model states and buffers, which read no recompute policy, are
    kept per ZeRO stage(s). ``quant_p`` (``quantised_stage_params``): the recipe's quantised
    GEMM weights on the first and last stage and their bytes per parameter (block-scaled
    training), None otherwise."""
    tp, pp = plan.tp, plan.pp
    pp_on = np.asarray(pp) > 1
    shape_a = ActivationShape(b=plan.micro_batch, s=plan.seq_len / plan.cp, s_kv=plan.seq_len,
                              tp=tp, sequence_parallel=plan.sequence_parallel, act_bytes=a,
                              dropout=plan.dropout, flash_attention=plan.flash_attention)
    top_k = model.moe.top_k if model.moe else 1
    act_stage = per_stage({k: layer_activation_bytes(model, shape_a, plan.recompute,
                                                     k == "moe", top_k, plan.etp,
                                                     plan.recompute_modules)
                           for k in kinds})
    working = 0.0
    if plan.recompute == "full":  # one layer's activations exist while it is recomputed
        for k in kinds:
            working = np.maximum(working, layer_activation_bytes(model, shape_a, "none",
                                                                 k == "moe", top_k, plan.etp))
    v_shape = plan.schedule == "dualpipev"
    # DualPipeV: PP + 1 chunk-loads of 1/2 a rank's layers over 2 pp stages, pp + 1/2 rank-loads
    # (deepseek-ai/DualPipe README @3da1bbe, "Activation Per Device"); rank 0 holds both ends
    inflight = (np.minimum(pp + 0.5, m) if v_shape
                else inflight_microbatches(pp, plan.vp, m, plan.schedule))
    emb_act = embedding_and_head_activation_bytes(model, shape_a, first=True, last=False)
    head_act = embedding_and_head_activation_bytes(model, shape_a, first=False, last=True)
    act_first = (act_stage * inflight + working + emb_act
                 + np.where(pp_on & (not v_shape), 0.0, head_act))
    last_inflight = m if plan.schedule == "gpipe" else 1.0
    act_last = act_stage * last_inflight + working + head_act

    def states(params, dense, quantised=0.0):
        return model_state_bytes(params, dense, stage_p.expert, dp_grad, dp_expert, zero,
                                 plan.precision, plan.optimizer, plan.master_weights,
                                 plan.grad_dtype, quantised_params=quantised,
                                 quantised_bytes=quant_p[2] if quant_p else 0.0)

    tp_buffers = np.where(np.asarray(tp) > 1, 2.0 * act_bytes, 0.0)

    def buffers(z):
        if z == 3:  # gathered weights of the layer in use and the prefetched one
            return tp_buffers + 2.0 * wbytes * (param_counts(model).per_dense_layer / tp)
        return tp_buffers

    key = ("states", tuple(np.ravel(zero).tolist()))
    held = memo.get(key) if memo is not None else None
    if held is None:
        q_first, q_last = (quant_p[0], quant_p[1]) if quant_p else (0.0, 0.0)
        held = (states(stage_p.first, stage_p.dense_first, q_first),
                states(stage_p.last, stage_p.dense_last, q_last), by_stage(zero, buffers))
        if memo is not None:
            memo[key] = held
    states_first, states_last, comm_buffers = held
    counts = param_counts(model)

    def framework(is_first, is_last, act):  # the framework's terms on the first / last rank
        return FC.memory_terms(plan.framework, model, plan, zero, counts.per_dense_layer,
                               counts.embeddings + counts.head, is_first, is_last, a, act)

    fw_first = framework(True, ~pp_on | v_shape, act_first)
    fw_last = framework(~pp_on, True, act_last)
    first_total = (sum(states_first.values()) + act_first + comm_buffers
                   + sum(fw_first.values()))
    last_total = sum(states_last.values()) + act_last + comm_buffers + sum(fw_last.values())
    use_last = np.where(pp_on & (not v_shape), last_total > first_total, False)
    if (not by_kind and len(fw_first) <= 1 and list(fw_first) == list(fw_last)
            and list(states_first) == list(states_last)):
        # each rank's total above is its kinds summed left to right in the order of the
        # memory dict below (states, activations, buffers, the one framework term; + 0 for
        # none), so selecting the rank's total once gives the dict's sum cell for cell,
        # without a selection per kind over the (stage x mesh) arrays
        allocated = np.where(use_last, last_total, first_total)
        overheads = overhead_bytes(allocated, profile.memory_overheads)
        kinds_of = {*states_first, "activations", "communication_buffers", *fw_first}
        if not overheads.keys() & kinds_of:
            total = allocated
            for value in overheads.values():
                total = total + value
            return {}, total
    memory = {k: np.where(use_last, states_last[k], states_first[k]) for k in states_first}
    memory["activations"] = np.where(use_last, act_last, act_first)
    memory["communication_buffers"] = comm_buffers
    memory.update({k: np.where(use_last, fw_last[k], fw_first[k]) for k in fw_first})
    allocated = sum(memory.values())
    overheads = overhead_bytes(allocated, profile.memory_overheads)
    if overheads.keys() & memory.keys():  # a term replaced in place: sum the dict itself
        memory.update(overheads)
        return memory, sum(memory.values())
    memory.update(overheads)
    # sum(memory.values()) runs left to right, so it is ``allocated`` plus the overheads in
    # their order: the same additions, without repeating the first ones over the mesh
    total = allocated
    for value in overheads.values():
        total = total + value
    return memory, total
