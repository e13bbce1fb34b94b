"""MoE layers across a serving instance: attention TP x attention DP, MoE TP x EP.

A serving instance (one pipeline stage of it) is ``tp * attention_dp`` GPUs. Attention runs
data parallel over ``attention_dp`` groups ("DP attention", SGLang ``--enable-dp-attention``,
TensorRT-LLM ``enable_attention_dp``), each group tensor parallel over ``tp`` GPUs and holding
its own requests and their KV cache. The routed experts are spread over all ``tp *
attention_dp`` GPUs: ``ep`` expert groups of ``moe_tp = tp * attention_dp / ep`` GPUs each.
Three ways move a MoE layer's tokens, by the layout (functions below, all array-friendly):

* ``attention_dp == 1`` (vLLM / TRT-LLM TP with experts spread over the TP ranks): every GPU
  sees every token; each keeps the rows of its local experts; one all-reduce sums the expert
  outputs (the MLP's all-reduce, Shoeybi et al. 2019 Sec. 3).
* ``attention_dp > 1`` and ``moe_tp == 1`` (wide EP, DeepEP): each GPU dispatches its own
  tokens' top-k copies to the experts' ranks and combines the outputs back (all-to-all,
  Lepikhin et al. 2020 arXiv 2006.16668 Sec. 2); DeepEP dispatches fp8 and combines bf16
  (deepseek-ai/DeepEP README at 0297fc801788b14b338a46554faca28d419e518a, "FP8 dispatching,
  and BF16 combining"). With attention TP > 1 the attention output is reduce-scattered over
  the attention TP group (each rank dispatches 1/tp of its group's tokens) and all-gathered
  after the combine: the gather/scatter between attention DP and MoE EP.
* ``attention_dp > 1`` and ``moe_tp > 1``: the tokens of all attention DP groups are
  all-gathered before the MoE layer and reduce-scattered after it (SGLang's DP-attention
  gather / scatter; TensorRT-LLM's allgather / reducescatter MoE communication). An engine
  whose ``moe.dp_gather`` says ``all_reduce`` for the phase instead all-reduces a zero-padded
  buffer of all groups' tokens before the layer and all-reduces the MLP output after it
  (SGLang extend batches: DpPaddingMode.SUM_LEN, engines/sglang.yaml).

DeepEP's two kernel families (DeepEP docs/legacy.md): normal (high throughput, prefill) and
low latency (decode); SGLang's ``--deepep-mode auto`` takes normal for batches that extend
(prefill) and low latency for decode (sgl-project/sglang python/sglang/srt/layers/moe/utils.py
``DeepEPMode.resolve`` at d8487bad06eb305bcb1f1efcd5d89072b15bf0ec). Their time is
``comm.collective_time`` with the fitted DeepEP tables (calibration/references.yaml).

Two-micro-batch overlap (``moe_overlap: two_batch``; SGLang ``--enable-two-batch-overlap``,
vLLM ``--enable-dbo``; both off by default): the batch splits in two micro-batches by tokens
and the all-to-all of one runs while the other computes, in the order of the engine's schedule
(engines/<id>.yaml ``moe.overlap``; ``two_batch_layer``). Each micro-batch's operators are
timed at their own (half) size on the calibrated curves, so smaller, less efficient GEMMs
can make the split slower than one batch when the all-to-all is short (LMSYS large-scale EP
blog, TBO ablation: -27 % at 32 tokens per device in decode, +25.5 % at 256).

Dense FFN layers and shared experts run data parallel like attention (sharded over the
attention TP group only), as SGLang's large-scale EP deployment does (``--moe-dense-tp-size 1``,
lmsys.org/blog/2025-05-05-large-scale-ep, "DP for dense FFN").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .comm import collective_time
from .engine_comm import dispatch_format, tp_all_reduce_time
from .engines import ENGINE_IDS, dp_gather_mode, moe_overlap_facts
from .errors import SpecError
from .formats import dispatch_elem_bytes as format_dispatch_bytes
from .ops import active_experts, routed_rows  # noqa: F401  (re-exported: the MoE layout's formulas)
from .parallel_comm import (  # noqa: F401  (comm_sm_slowdown re-exported: inference's TBO)
    comm_sm_slowdown,
    distinct_groups,
)
from .profile import CalibrationProfile
from .specs.model import ModelSpec
from .specs.system import System
from .topology import GroupSpan

Array = Any

# DeepEP's fp8 dispatch: one e4m3 byte per element plus one fp32 scale per 128 channels
# (per-token, per-128-channel scaling: DeepEP README / tests/test_low_latency.py
# ``hidden + hidden / 128 * 4`` bytes per token; vLLM deepep_*_prepare_finalize.py
# DEEPEP_QUANT_BLOCK_SIZE = 128): formats.dispatch_elem_bytes("fp8")
DEEPEP_FP8_BYTES = format_dispatch_bytes("fp8", 2.0)
COMBINE_BYTES = 2.0  # DeepEP combines in bf16
A2A_MODES = ("auto", "low_latency", "normal")


def moe_tp(tp: Array, attention_dp: Array, ep: Array) -> Array:
    """GPUs one expert is split over: the instance's tp * attention_dp GPUs per stage, in
    ep expert groups."""
    return np.asarray(tp) * np.asarray(attention_dp) / np.asarray(ep)


def all_to_all(tp: Array, attention_dp: Array, ep: Array) -> Array:
    """Where a MoE layer moves its tokens by dispatch / combine all-to-all (module docstring:
    attention DP with one GPU per expert group, ep > 1), as a bool (an array over a sweep).
    Elsewhere every GPU sees the tokens (MoE TP) or they are gathered. The engine's expert
    kernel may depend on it (``engines.MoeFacts.kernels``: the ``deepep`` list here, ``none``
    elsewhere)."""
    ep = np.asarray(ep)
    return (np.asarray(attention_dp) > 1) & (moe_tp(tp, attention_dp, ep) == 1) & (ep > 1)


def dispatch_elem_bytes(weight_dtype: str, activation_dtype: str, act_bytes: float,
                        engine: str = "generic", version: str | None = None,
                        variant: str | None = None) -> float:
    """Bytes per element a dispatch moves: the format ``engine`` dispatches these experts'
    inputs in (``engine_comm.dispatch_format``: DeepEP's fp8 for fp8 / fp4 experts unless the
    engine file says otherwise, e.g. NVFP4 for TensorRT-LLM's and SGLang's NVFP4 experts) at
    that format's bytes with its scales (``formats.dispatch_elem_bytes``)."""
    return format_dispatch_bytes(
        dispatch_format(engine, weight_dtype, activation_dtype, version, variant), act_bytes)


def copies_per_token(mode: str, top_k: int, experts: int, ep: Array, domains: Array = 1.0,
                     n_group: int = 1, topk_group: int | None = None) -> Array:
    """Copies of a token a dispatch sends (and a combine receives back), the unit the DeepEP
    tables are sized in (calibrate.converters.aic_deepep calls this with the routing each
    table's collector drew).

    * Low latency: one per routed expert, top_k, whatever the routing: the kernel writes each
      (token, top-k slot) to its expert's receive buffer on the expert's rank, no
      de-duplication (deepseek-ai/DeepEP csrc/kernels/legacy/internode_ll.cu dispatch,
      ``dst_rank = dst_expert_idx / num_local_experts`` per slot, at
      dd758caf451848bd150e1046af3d0a73e5fff38d; docs/legacy.md per-expert buffers).
    * Normal, one NVLink domain (``domains`` <= 1): one per destination rank
      (``is_token_in_rank``, layout.cu ``get_dispatch_layout``), the expected number of
      distinct ranks among ep holding E/ep experts each: ep (1 - C(E - E/ep, k) / C(E, k))
      under uniform routing (parallel_comm.distinct_groups, shared with training's flex
      dispatchers), and under the model's group-limited routing (``n_group`` /
      ``topk_group``, DeepSeek-V3 8 / 4) the same function's limited count.
    * Normal, over several NVLink domains (the internode kernels): a token crosses the
      network once per destination domain (``num_tokens_per_rdma_rank``; one RDMA put per
      destination node, then NVLink forwarding to the ranks there, internode.cu), so the
      time follows D_n, the distinct destination domains, at the NIC's rate. The copies keep
      the tables' per-rank unit at uniform routing and scale it by the routing's share of
      domains: D_r(uniform) x D_n(routing) / D_n(uniform); exactly D_r(uniform) without a
      group limit (the tables' own sizing), and never above top_k (a limit that spreads a
      token over more nodes than uniform routing, k <= topk_group, cannot make the kernel
      send more than one copy per expert). DeepSeek-V3 on 4 nodes (EP 32): D_n 3.14 of
      uniform routing's 3.61, the dispatch 13 % smaller; on 8 nodes 4.0 of 5.29 (-24 %).
      The multi-node tables themselves were measured under node-limited routing (the
      collector routes with groups = nodes, top min(nodes, 4): ai-dynamo/aiconfigurator
      collector/deep_collector/test_internode.py, DeepEP's tests/legacy/test_internode.py),
      so the converter sizes those rows with the collector's routing (``n_group`` = nodes,
      ``topk_group`` = min(nodes, 4): on 8 nodes 4 destination nodes, not uniform routing's
      5.29; on 2 and 4 nodes, where min(nodes, 4) = nodes, uniform).
      ``domains``: the EP group's NVLink domains (system.gpus_per_node: one per GB200 / GB300
      NVL72 rack, not one per 8 GPUs)."""
    if mode == "ll":
        return np.full(np.shape(ep), float(top_k)) if np.ndim(ep) else float(top_k)
    ranks = distinct_groups(experts, top_k, ep)
    if n_group <= 1 or topk_group is None or topk_group >= n_group:
        return ranks
    d = np.asarray(domains, float)
    scale = (distinct_groups(experts, top_k, d, n_group, topk_group)
             / distinct_groups(experts, top_k, d))
    return np.where(d > 1, np.minimum(ranks * scale, float(top_k)),
                    distinct_groups(experts, top_k, ep, n_group, topk_group))


def a2a_bytes(tokens_per_rank: Array, copies: Array, hidden: int, elem_bytes: float) -> Array:
    """One rank's send buffer of a dispatch (or a combine): ``copies`` of each of its tokens'
    hidden vector (tokens x copies x hidden x bytes; copies = top_k for the low-latency
    kernels), the all-to-all's nccl-tests "size"."""
    return np.asarray(tokens_per_rank, float) * copies * hidden * elem_bytes


def resolved_mode(mode: str, phase: str) -> str:
    """DeepEP kernel family of a pass: ``auto`` takes normal for prefill (an extend batch)
    and low latency for decode / verification (SGLang DeepEPMode.resolve)."""
    if mode == "auto":
        return "normal" if phase == "prefill" else "ll"
    return "ll" if mode == "low_latency" else "normal"


def contiguous_span(size: Array, gpus_per_node: int) -> GroupSpan:
    """A group of ``size`` consecutive ranks (the instance's innermost dimensions)."""
    size = np.asarray(size, float)
    local = np.minimum(size, gpus_per_node)
    return GroupSpan(size=size, local=local, nodes=size / local)


@dataclass
class MoeComm:
    """Communication of one forward pass on one stage, seconds (per stage, all its layers)."""

    tp: Array  # attention-TP all-reduces / reduce-scatter + all-gather, and MoE-TP all-reduces
    ep: Array  # dispatch + combine all-to-alls, or the DP gather / scatter of the MoE tokens
    dispatch: Array = 0.0  # of ``ep``: the dispatches
    combine: Array = 0.0  # of ``ep``: the combines
    mode: str = ""  # DeepEP kernel family ("ll" / "normal"), "" without all-to-all


def stage_comm(model: ModelSpec, plan, tokens: Array, phase: str, hidden_bytes: float,
               system: System, profile: CalibrationProfile) -> MoeComm:
    """Communication of one pass of ``tokens`` tokens (the whole instance's) through one
    pipeline stage's layers (module docstring; ``plan`` an InferPlan). ``hidden_bytes``:
    bytes per element of the hidden states the collectives move (``Precision.hidden``: the
    model's 16-bit dtype also with quantised activations)."""
    tp = np.asarray(plan.tp, float)
    dp = np.asarray(plan.attention_dp, float)
    ep = np.asarray(plan.ep, float)
    G = system.gpus_per_node
    h = model.hidden_size
    per_stage = 1.0 / np.asarray(plan.pp, float)
    dense_layers = model.num_dense_layers * per_stage
    moe_layers = model.num_moe_layers * per_stage
    t_group = np.asarray(tokens, float) / dp  # tokens of one attention DP group
    tp_span = contiguous_span(tp, G)
    group_bytes = t_group * h * hidden_bytes
    ar = tp_all_reduce_time(plan.tp_all_reduce, group_bytes, tp_span, system, profile,
                            plan.engine_version, plan.engine_variant)
    dense = 2.0 * dense_layers * ar
    if model.moe is None or not np.any(dp > 1):
        return MoeComm(tp=dense + 2.0 * moe_layers * ar, ep=0.0 * dense)
    k = model.moe.top_k
    n_span = contiguous_span(tp * dp, G)
    a2a = all_to_all(tp, dp, ep)
    # wide EP: reduce-scatter + all-gather over attention TP, dispatch + combine over EP
    mode = resolved_mode(plan.a2a_mode, phase)
    per_rank = t_group / tp
    elem = dispatch_elem_bytes(plan.weight_dtype, plan.activation_dtype, hidden_bytes,
                               plan.tp_all_reduce, plan.engine_version, plan.engine_variant)
    copies = copies_per_token(mode, k, model.moe.num_experts, ep, n_span.nodes,
                              *model.moe.routing_groups)
    w = model.moe.latent_size or h  # a latent MoE dispatches the latent (MoESpec)
    disp = collective_time(f"ep_dispatch_{mode}", a2a_bytes(per_rank, copies, w, elem),
                           n_span, system, profile)
    comb = collective_time(f"ep_combine_{mode}", a2a_bytes(per_rank, copies, w, COMBINE_BYTES),
                           n_span, system, profile)
    rs_ag = (collective_time("reduce_scatter", group_bytes, tp_span, system, profile)
             + collective_time("all_gather", group_bytes, tp_span, system, profile))
    # MoE TP: all-reduce after attention, all-gather / reduce-scatter of all tokens over N
    all_bytes = np.asarray(tokens, float) * h * hidden_bytes
    if dp_gather_mode(plan.tp_all_reduce, phase, plan.engine_version,
                      plan.engine_variant) == "all_reduce":
        # SGLang extend batches: sum-length padding, gather by all-reduce, MLP all-reduce
        gather = 2.0 * collective_time("all_reduce", all_bytes, n_span, system, profile)
    else:
        gather = (collective_time("all_gather", all_bytes, n_span, system, profile)
                  + collective_time("reduce_scatter", all_bytes, n_span, system, profile))
    tp_moe = np.where(a2a, rs_ag, ar)
    ep_moe = np.where(a2a, disp + comb, gather)
    on = np.asarray(dp > 1)
    return MoeComm(
        tp=dense + moe_layers * np.where(on, tp_moe, 2.0 * ar),
        ep=moe_layers * np.where(on, ep_moe, 0.0),
        dispatch=moe_layers * np.where(on & a2a, disp, 0.0),
        combine=moe_layers * np.where(on & a2a, comb, 0.0),
        mode=mode if bool(np.any(on & a2a)) else "")


def routed_expert_weight_bytes(ops, weight_bytes: float) -> Array:
    """Weight bytes one GPU reads for its routed experts in one pass through a stage (of the
    operators ``inference._pass_ops`` builds): per grouped GEMM, its active experts' k x n
    matrices at ``weight_bytes`` per element (scales included)."""
    total = 0.0
    for op in ops:
        if op.name.startswith("moe.expert.") and op.cls == "gemm":
            _, n, k = op.shape
            total = total + op.groups * k * n * weight_bytes * op.count
    return total


def moe_overlap_mode(requested: str | None, engine: str, version: str | None = None,
                     variant: str | None = None) -> str:
    """The overlap a plan runs: the scenario's ``parallelism.moe_overlap``, else the engine's
    default (engines/<id>.yaml ``moe.overlap.default``; none without one). ``two_batch`` needs
    an engine whose file gives the schedule."""
    facts = moe_overlap_facts(engine, version, variant)
    mode = requested if requested is not None else (facts.default if facts else "none")
    if mode == "two_batch" and (facts is None or not (facts.decode or facts.prefill)):
        have = [e for e in ENGINE_IDS if moe_overlap_facts(e) is not None]
        raise SpecError(f"parallelism.moe_overlap: two_batch runs the engine's two-micro-batch "
                        f"schedule; engine {engine!r} has none (engines with one: {have})")
    return mode


def overlap_groups(ops, moe_index) -> dict[str, list[int]]:
    """Indices of one pass's MoE-layer operators (``moe_index``, of ``inference._pass_ops``) by
    the groups a two-micro-batch schedule names: ``experts`` (routed grouped GEMMs and their
    activation), ``shared`` (shared experts), ``attn_in`` (the layer's operators before its
    attention kernel: norm, q / kv projections, rope; vLLM's A0, SGLang's
    ``self_attn.op_prepare``) and ``attn_core`` (the attention kernel onward: output
    projection, residuals, norm, router and top-k; vLLM's A1, SGLang's ``op_core`` + gate)."""
    out: dict[str, list[int]] = {"attn_in": [], "attn_core": [], "shared": [], "experts": []}
    seen_attention = False
    for i in moe_index:
        op = ops[i]
        if op.name.startswith("moe.expert."):
            out["experts"].append(i)
        elif op.name.startswith("moe.shared."):
            out["shared"].append(i)
        else:
            seen_attention = seen_attention or op.cls == "attention"
            out["attn_core" if seen_attention else "attn_in"].append(i)
    return out


def two_batch_layer(segments, compute: dict[str, Array], dispatch: Array,
                    combine: Array) -> tuple[Array, Array]:
    """(time, exposed all-to-all) of MoE layers run as two micro-batches.

    ``segments`` (engines/<id>.yaml ``moe.overlap.<phase>.segments``, each with ``compute``
    groups and the ``comm`` in flight) walk one layer of both micro-batches: a segment lasts
    max(its compute, its all-to-all), so the all-to-all exposed in it is max(0, comm - compute
    of the other micro-batch it hides behind) (DeepSeek's dual micro-batch overlap,
    deepseek-ai/profile-data; SGLang operations_strategy.py; vLLM docs/design/dbo.md).
    ``compute[g]``: one micro-batch's time in group g (``overlap_groups``; ``attention`` =
    ``attn_in`` + ``attn_core``); ``dispatch`` / ``combine``: one micro-batch's. Every layer
    being alike, stage totals may stand for one layer's (a sum of maxima of proportional
    terms). time = compute of both micro-batches + exposed; 0 <= exposed <= 2 (dispatch +
    combine)."""
    compute = dict(compute)
    compute.setdefault("attention", compute.get("attn_in", 0.0) + compute.get("attn_core", 0.0))
    comm = {"dispatch": dispatch, "combine": combine}
    time = exposed = 0.0
    for seg in segments:
        c = sum((compute[g] for g in seg.compute), 0.0)
        a = comm[seg.comm] if seg.comm else 0.0
        time = time + np.maximum(c, a)
        exposed = exposed + np.maximum(np.asarray(a) - c, 0.0)
    return time, exposed
