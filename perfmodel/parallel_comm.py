"""Communication of each parallel dimension of a training step, and how much of it stays
exposed (not hidden behind compute). Times come from ``comm`` (collectives on the real
topology, NCCL bus-bandwidth convention); array-friendly in every numeric plan dimension.

* TP (+SP): per layer 2 all-reduces of the b*s*h activation in forward and 2 in backward, or
  with sequence parallelism an all-gather and a reduce-scatter in place of each, same bytes on
  the wire (Shoeybi et al. 2019 arXiv 1909.08053 Sec. 3; Korthikanti et al. 2022 arXiv
  2205.05198 Sec. 4.2.2).
* CP: ring attention passes K/V chunks around the cp ranks (cp-1 steps), each overlapped with
  one chunk of attention compute; backward passes K/V and dK/dV (Liu et al. 2023 arXiv
  2310.01889). All-to-all (Ulysses) CP re-partitions Q, K, V from sequence to heads and the
  attention output back: 4 all-to-alls per layer each way (Jacobs et al. 2023 arXiv 2309.14509
  Sec. 3).
* EP: all-to-all dispatch and combine around every MoE layer, forward and backward (Lepikhin
  et al. 2020 arXiv 2006.16668).
* PP: a send/recv of the activation per micro-batch and virtual chunk in each direction, 1/t of
  it per TP rank with the scatter-gather optimisation (Narayanan et al. 2021 Sec. 4.1).
* DP / ZeRO: gradient all-reduce; ZeRO-1/2 reduce-scatter + parameter all-gather; ZeRO-3 /
  FSDP per-layer parameter all-gathers in forward and backward plus gradient reduce-scatter
  (Rajbhandari et al. 2020 arXiv 1910.02054 Sec. 7), issued bucket by bucket and overlapped
  with compute as the framework does; DeepSpeed's full recompute gathers again
  (``recompute_regather_passes``), FSDP's does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from math import ceil, comb
from typing import Any

import numpy as np

from .comm import collective_time, p2p_time
from .profile import CalibrationProfile
from .specs.model import ModelSpec
from .specs.system import System
from .topology import GroupSpan

Array = Any
# Megatron-LM's DDP / distributed-optimizer bucket: max(40M, 1M x dp) parameters
# (megatron/core/distributed/param_and_grad_buffer.py); the dp term matters beyond 40 ranks
# only, the constant is what perfmodel uses.
MEGATRON_BUCKET_PARAMS = 40e6


def tp_layer_comm(act_bytes: Array, sequence_parallel: bool, span: GroupSpan, system: System,
                  profile: CalibrationProfile, full_recompute: bool) -> tuple[Array, Array]:
    """(forward, backward) TP communication of one layer and micro-batch; full recompute
    repeats the forward's in backward (Korthikanti et al. 2022 Sec. 5)."""
    if sequence_parallel:
        one = (collective_time("all_gather", act_bytes, span, system, profile)
               + collective_time("reduce_scatter", act_bytes, span, system, profile))
    else:
        one = collective_time("all_reduce", act_bytes, span, system, profile)
    fwd = 2.0 * one
    bwd = 2.0 * one + (fwd if full_recompute else 0.0)
    return fwd, bwd


@dataclass(frozen=True, repr=False, eq=False)  # holds arrays: no generated ==, repr
class Overlapped:
    """Communication of one layer and micro-batch beside the compute that hides it. The
    compute a stream hides behind is taken (``hidden_fwd`` / ``hidden_bwd``): another stream
    (the data-parallel one) can only hide behind what is left, so a faster GPU never makes a
    step slower (issue 12)."""

    total: Array
    exposed: Array
    hidden_fwd: Array = 0.0  # forward compute time the stream runs under
    hidden_bwd: Array = 0.0


def tp_overlap(fwd: Array, bwd: Array, gemm_fwd: Array, gemm_bwd: Array,
               overlap: bool) -> Overlapped:
    """TP communication left exposed: all of it, or with communication overlap (Transformer
    Engine userbuffers, async TP) what the GEMMs it is decomposed with cannot hide."""
    if overlap:
        hid_f, hid_b = np.minimum(fwd, gemm_fwd), np.minimum(bwd, gemm_bwd)
        return Overlapped(fwd + bwd, np.maximum(fwd - gemm_fwd, 0.0)
                          + np.maximum(bwd - gemm_bwd, 0.0), hid_f, hid_b)
    return Overlapped(fwd + bwd, fwd + bwd)


def distinct_groups(experts: int, top_k: int, groups: Array, n_group: int = 1,
                    topk_group: int | None = None) -> Array:
    """Expected number of distinct groups a token's ``top_k`` distinct experts fall in, when
    the ``experts`` are spread evenly over ``groups`` groups (E/G each, in expert order: the
    EP ranks, or the NVLink domains holding them) and routing is uniform:
    G (1 - C(E - E/G, k) / C(E, k)) (a group is missed when all k experts lie outside it;
    linearity of expectation over the G groups). G = 1 gives 1; G = E gives k.

    Group-limited routing (DeepSeek-V3 arXiv 2412.19437 Sec. 2.1.2 "Node-Limited Routing";
    config.json ``n_group`` / ``topk_group``, DeepSeek inference/model.py Gate): the E experts
    form ``n_group`` routing groups of s = E/n_group consecutive experts; a token keeps the
    ``topk_group`` = M groups with the highest sum of their top k/M expert scores, then its k
    experts among them. Taken uniform, the M groups are any of the C(n_group, M) sets alike
    and each selected group receives k/M of its s experts (the k mod M spare experts go to
    as many of the selected groups, any alike), as the group score is built to make it. A
    destination holding x_q experts of routing group q is then missed with probability
    prod over the selected q of C(s - x_q, k_q) / C(s, k_q) (``_miss_ratio``), averaged over
    the selections (``_group_limited_distinct``); the expectation sums 1 - that over the G
    destinations. Aligned (G divides n_group, n_group/G routing groups per destination) a
    destination is reached iff one of its groups is selected:
    G (1 - C(n_group - n_group/G, M) / C(n_group, M)); DeepSeek-V3 (8 groups, M = 4, k = 8):
    8 nodes 8 x 4/8 = 4 (uniform routing: 5.29), 4 nodes 4 (1 - 15/70) = 3.14 (3.61); DeepEP
    docs/legacy.md: "each token will be sent to at most 4 nodes". Within a routing group the
    ranks follow the k/M draws: 64 ranks of 4 experts, 64 x 4/8 x (1 - C(28, 2)/C(32, 2))
    = 7.61 (uniform: 7.68). The k/M-per-group rule is checked against DeepSeek's gate on
    i.i.d. scores (tests/test_group_limited_routing.py: within 6 %; drawing the k uniformly
    from the M s experts instead is 8 % low on 8 nodes). n_group 1 or topk_group >= n_group
    (Kimi K2, GLM-5: 1 / 1) is plain uniform routing. Destinations that cut a routing group
    (256 experts over 9 nodes: E/G = 28.4) take the overlap x_q as a real number in the same
    product form."""
    g = np.asarray(groups, float)
    e = float(experts)
    if n_group > 1 and topk_group is not None and topk_group < n_group:
        values, where = np.unique(g, return_inverse=True)  # a sweep holds few counts
        flat = np.asarray([_group_limited_distinct(int(experts), int(top_k), float(x),
                                                   int(n_group), int(topk_group))
                           for x in values], float)
        out = flat[where].reshape(g.shape)
        return out if out.ndim else out[()]
    miss = np.ones_like(g)
    for i in range(top_k):  # C(E - E/G, k) / C(E, k) as a product of k ratios
        miss = miss * np.maximum(e - e / g - i, 0.0) / (e - i)
    return g * (1.0 - miss)


def _miss_ratio(pool: float, held: float, draws: int) -> float:
    """C(pool - held, n) / C(pool, n) for n = ``draws``, as a product of n ratios: the chance
    that n distinct experts drawn uniformly from ``pool`` all miss the ``held`` ones (0 once
    the rest cannot hold them)."""
    out = 1.0
    for i in range(draws):
        out *= max(pool - held - i, 0.0) / (pool - i)
    return out


@lru_cache(maxsize=4096)
def _group_limited_distinct(experts: int, top_k: int, groups: float, n_group: int,
                            topk_group: int) -> float:
    """``distinct_groups`` under group-limited routing for one destination count ``groups``
    (its docstring): per destination, the selected-group sets S and the selected groups R of
    them that take one of the k mod M spare experts, summed by a table over the routing
    groups (``ways[j][i]``: j groups selected so far, i of them with a spare), each group
    contributing its miss ratio."""
    if groups <= 1.0:
        return 1.0
    size = experts / n_group  # experts per routing group
    width = experts / groups  # experts per destination
    per, spare = divmod(top_k, topk_group)
    norm = comb(n_group, topk_group) * comb(topk_group, spare)
    expected = 0.0
    for d in range(ceil(groups - 1e-9)):
        lo, hi = d * width, min((d + 1) * width, float(experts))
        ways = [[0.0] * (spare + 1) for _ in range(topk_group + 1)]
        ways[0][0] = 1.0
        for q in range(n_group):
            held = max(0.0, min(hi, (q + 1) * size) - max(lo, q * size))
            f0 = _miss_ratio(size, held, per)
            f1 = _miss_ratio(size, held, per + 1) if spare else 0.0
            for j in range(topk_group, 0, -1):
                for i in range(spare, -1, -1):
                    ways[j][i] += ways[j - 1][i] * f0 + (ways[j - 1][i - 1] * f1 if i else 0.0)
        expected += 1.0 - ways[topk_group][spare] / norm
    return expected


def ep_layer_comm(tokens: Array, tp: Array, top_k: int, hidden: int, act_bytes: float,
                  span: GroupSpan, system: System, profile: CalibrationProfile,
                  full_recompute: bool, volume: str = "top_k",
                  experts: int | None = None, n_group: int = 1,
                  topk_group: int | None = None,
                  measured_rdma: dict[int, tuple[float, float]] | None = None
                  ) -> tuple[Array, Array]:
    """(forward, backward) expert dispatch and combine of one MoE layer and micro-batch.
    ``tokens``: one TP group's tokens (b*s/cp); each TP rank sends its t = tokens/tp
    sequence-parallel share (Megatron-Core requires sequence parallelism with TP and EP; the
    dispatchers take the rank's [s/tp, b, h] hidden states). ``volume`` (the dispatcher's
    facts, frameworks_costs.moe_dispatch_volume):

    * "top_k" (MoEAlltoAllTokenDispatcher): an all-to-all of t x top_k x hidden each way, one
      copy per routed expert (Lepikhin et al. 2020 Sec. 2).
    * "distinct" (flex dispatcher, DeepEP normal / HybridEP kernels): one copy per destination
      rank, and across NVLink domains one per destination domain over RDMA, forwarded to the
      domain's ranks over NVLink. With the EP group over G = ``span.nodes`` domains of
      ``span.local`` ranks, D_r = ``distinct_groups(E, k, ep)`` ranks and D_G =
      ``distinct_groups(E, k, G)`` domains per token: the NVLink part is an all-to-all among
      the domain's ranks of t x D_r x hidden (each destination rank written once; the
      sender's own share stays local), the RDMA part t x D_G (G - 1) / G x hidden per GPU (the
      remote domains), sent as an all-to-all over the G domains one GPU each; the two run
      concurrently (separate warp groups, pipelined by chunk), the slower one counts.
      Single-domain groups: t x D_r among the ep ranks. ``measured_rdma``: the dispatcher's
      measured (dispatch, combine) algorithm bandwidths in GB/s by domain count
      (frameworks_costs.moe_dispatch_measured_rdma; HybridEP's published micro-benchmark),
      t x D_G x hidden bytes (the sender's domain included, the benchmark's convention) per
      call: at a measured domain count the cross-domain part of the dispatch and of the
      combine each takes at least that long. ``n_group`` / ``topk_group``: the
      model's group-limited routing (DeepSeek-V3: 8 / 4), which both counts follow
      (``distinct_groups``); the ranks and domains are NVLink domains of the topology
      (``span.local`` ranks each: 72 on a GB200 NVL72, not 8).
    * "gather" (MoEAllGatherTokenDispatcher): an all-gather of every rank's t tokens over the
      group (gathered size ep x t x hidden) in the dispatch and a reduce-scatter of the same
      size in the combine; backward the conjugates.
    Each is forward dispatch + combine, backward the same again (plus the forward's under
    full recompute)."""
    t_bytes = np.asarray(tokens, float) / tp * hidden * act_bytes
    if volume == "gather":
        gathered = t_bytes * np.asarray(span.size, float)
        fwd = (collective_time("all_gather", gathered, span, system, profile)
               + collective_time("reduce_scatter", gathered, span, system, profile))
    elif volume == "distinct":
        if experts is None:
            raise ValueError("ep_layer_comm: the 'distinct' volume needs the expert count")
        size, local, nodes = (np.asarray(x, float) for x in (span.size, span.local, span.nodes))
        nvl_span = GroupSpan(size=local, local=local, nodes=np.ones_like(local))
        route = (n_group, topk_group)
        t_nvl = collective_time("all_to_all",
                                t_bytes * distinct_groups(experts, top_k, size, *route),
                                nvl_span, system, profile)
        rdma_span = GroupSpan(size=nodes, local=np.ones_like(nodes), nodes=nodes)
        domain_bytes = t_bytes * distinct_groups(experts, top_k, nodes, *route)
        t_rdma = collective_time("all_to_all", domain_bytes, rdma_span, system, profile)
        if measured_rdma:
            t_disp, t_comb = (np.maximum(t_rdma, domain_bytes / _measured_bw(
                measured_rdma, nodes, i)) for i in (0, 1))
            fwd = np.where(nodes > 1, np.maximum(t_nvl, t_disp) + np.maximum(t_nvl, t_comb),
                           2.0 * t_nvl)
        else:
            fwd = 2.0 * np.where(nodes > 1, np.maximum(t_nvl, t_rdma), t_nvl)
    else:  # the product in this order, so the default's floats stay bit-identical
        a2a_bytes = tokens / tp * top_k * hidden * act_bytes
        fwd = 2.0 * collective_time("all_to_all", a2a_bytes, span, system, profile)
    bwd = fwd + (fwd if full_recompute else 0.0)
    return fwd, bwd


def _measured_bw(table: dict[int, tuple[float, float]], domains: Array, which: int) -> Array:
    """Bytes per second of ``table`` (GB/s by domain count; ``which``: 0 dispatch, 1 combine)
    at each domain count: the bandwidth of the largest measured count <= n (16 domains, EP 128
    on DGX H100, reads 8's; 3 reads 2's). HybridEP's measured bandwidth falls with the count
    (H100 dispatch 57.7 -> 47.4 -> 41.5 GB/s at 2 / 4 / 8), so a smaller count's is at least
    the true one and the floor it gives stays a lower bound on the time. Infinite (no floor)
    below the smallest measured count."""
    keys = sorted(table)

    def one(n: float) -> float:
        below = [k for k in keys if k <= n]
        return table[below[-1]][which] * 1e9 if below else np.inf
    return np.vectorize(one, otypes=[float])(np.asarray(domains, float))


def expert_rows(tokens: Array, top_k: int, tp: Array, etp: Array) -> Array:
    """Token-expert rows one expert-TP group computes per micro-batch under MoE parallel
    folding (uniform routing): a stage's tp*cp*dp ranks route dp x (b*s) tokens x top_k rows
    over the tp*cp*dp/etp expert-TP groups, tokens x top_k x etp / tp each (``tokens`` = b*s/cp,
    one TP group's; Liu et al. 2025 arXiv 2504.14960 Sec. 3; = tokens x top_k when etp = tp,
    EP carved out of data parallelism)."""
    return np.asarray(tokens, float) * top_k * np.asarray(etp, float) / np.asarray(tp, float)


def etp_layer_comm(tokens: Array, tp: Array, etp: Array, top_k: int, hidden: int,
                   act_bytes: float, span: GroupSpan, system: System,
                   profile: CalibrationProfile, full_recompute: bool) -> tuple[Array, Array]:
    """(forward, backward) expert-TP traffic of one MoE layer and micro-batch with expert
    parallelism: after the dispatch the received rows are all-gathered over the etp ranks and
    reduce-scattered before the combine (Megatron-Core MoEAlltoAllTokenDispatcher:
    ``gather_from_sequence_parallel_region`` / ``reduce_scatter_to_sequence_parallel_region``
    over the expert-TP group), the gathered size ``expert_rows`` x hidden; backward runs the
    conjugates (reduce-scatter / all-gather), same bytes. Nothing when etp = 1."""
    rows_bytes = expert_rows(tokens, top_k, tp, etp) * hidden * act_bytes
    one = (collective_time("all_gather", rows_bytes, span, system, profile)
           + collective_time("reduce_scatter", rows_bytes, span, system, profile))
    one = np.where(np.asarray(etp) > 1, one, 0.0)
    fwd = one
    bwd = one + (fwd if full_recompute else 0.0)
    return fwd, bwd


def unpaired_share(microbatches: Array, pp: Array, vp: Array) -> Array:
    """Share of a stage's layer passes that have no other micro-batch's pass beside them in
    Megatron-Core's combined 1F1B schedule: the warm-up forwards (and as many cool-down
    backwards) of the interleaved schedule, (pp - 1) * 2 + (vp - 1) * pp model chunks on the
    first stage plus the one extra forward the overlap schedules (Megatron-Core
    pipeline_parallel/schedules.py get_pp_rank_microbatches, ``if
    overlap_moe_expert_parallel_comm: num_warmup_microbatches + 1``), of m * vp; at least one
    micro-batch (the first forward and the last backward, pp = 1). The
    plain 1F1B (vp = 1, pp > 1; warm-up pp - 1) never runs it: Megatron-Core requires virtual
    pipeline stages for the overlap when pp > 1 (transformer_config.py __post_init__), and
    plan.training_rules refuses that combination (parallelism.moe_a2a_overlap)."""
    m, pp, vp = (np.asarray(x, float) for x in (microbatches, pp, vp))
    warm = np.maximum((pp - 1.0) * 2.0 + (vp - 1.0) * pp + (pp > 1), vp)
    return np.minimum(warm / (m * vp), 1.0)


def dualpipev_unpaired_share(microbatches: Array, pp: Array) -> Array:
    """Share of a rank's forward chunks that DeepSeek's DualPipeV runs without a backward chunk
    beside them, on rank 0 (the fewest pairs): of its 2 m forward chunks, step 4 of the schedule
    ("nF0B1F1B0", m - 2 pp + rank + 1 iterations of two overlapped forward-backward pairs) and
    step 5 ("nB1F1B0", pp - rank - 1 iterations of one pair) pair 2 m - 3 pp + 1 at rank 0, so
    (3 pp - 1) / (2 m) are unpaired (deepseek-ai/DualPipe dualpipe/dualpipev.py @3da1bbe
    ``step``; torch.distributed.pipelining ScheduleDualPipeV builds the same steps)."""
    m, pp = np.asarray(microbatches, float), np.asarray(pp, float)
    return np.minimum((3.0 * pp - 1.0) / (2.0 * m), 1.0)


def ep_a2a_overlap(fwd: Array, bwd: Array, compute_fwd: Array, compute_bwd: Array,
                   unpaired: Array) -> Overlapped:
    """Expert all-to-all of one MoE layer and micro-batch under Megatron-Core's combined 1F1B
    EP overlap (``--overlap-moe-expert-parallel-comm``; Megatron-Bridge ``moe_a2a_overlap``):
    the schedule runs the forward of one micro-batch beside the backward of another, sub-module
    by sub-module (attention, MLP, dispatch, combine on a communication stream), so the forward's
    dispatch / combine hide behind the other's backward compute and the backward's behind the
    other's forward (Megatron-Core pipeline_parallel/combined_1f1b.py; docs "EP A2A overlap").
    What each compute cannot cover stays exposed, and the ``unpaired`` share of passes
    (warm-up / cool-down, ``unpaired_share``; DualPipeV's ``dualpipev_unpaired_share``) hides
    nothing. The compute beside a hidden all-to-all loses its kernel's SMs: the caller adds
    ``sm_contention`` of ``hidden_fwd`` / ``hidden_bwd`` (training._layer_costs)."""
    paired = (np.maximum(fwd - compute_bwd, 0.0) + np.maximum(bwd - compute_fwd, 0.0))
    exposed = unpaired * (fwd + bwd) + (1.0 - unpaired) * paired
    hid = (1.0 - unpaired)
    return Overlapped(fwd + bwd, exposed, hid * np.minimum(bwd, compute_fwd),
                      hid * np.minimum(fwd, compute_bwd))


def cp_kv_chunk_bytes(model: ModelSpec, tokens: Array, tp: Array, act_bytes: float,
                      at_query_heads: bool = False) -> Array:
    """K and V of one rank's sequence chunk on one TP rank: the message of one ring step (MLA
    passes the up-projected keys and values of every local head; ``at_query_heads``: GQA's K
    and V already repeated to every query head before the attention call, as torchtitan's
    repeat_kv does)."""
    if model.mla:
        width = (model.mla.qk_head_dim + model.mla.v_head_dim) * model.num_heads / tp
    else:
        heads = model.num_heads if at_query_heads else model.kv_heads
        width = 2 * np.maximum(heads / tp, 1.0) * model.hd
    return tokens * width * act_bytes


def cp_ring_comm(kv_chunk: Array, cp: Array, span: GroupSpan, attn_fwd: Array,
                 attn_bwd: Array, system: System, profile: CalibrationProfile,
                 attn_rec: Array = 0.0, recompute: bool = False) -> Overlapped:
    """Ring-attention traffic of one layer and micro-batch: cp-1 steps each way, each hidden
    behind 1/cp of the attention compute (Liu et al. 2023 Sec. 3); full recompute runs the
    forward ring again in backward, hidden behind the recomputed attention."""
    cross = np.asarray(span.nodes) > 1
    step = p2p_time(kv_chunk, cross, system, profile)
    step_bwd = p2p_time(2 * kv_chunk, cross, system, profile)
    on = np.asarray(cp) > 1
    again = 1.0 if recompute else 0.0
    total = np.where(on, (cp - 1) * ((1.0 + again) * step + step_bwd), 0.0)
    exposed = np.where(on, (cp - 1) * (np.maximum(step - attn_fwd / cp, 0.0)
                                       + again * np.maximum(step - attn_rec / cp, 0.0)
                                       + np.maximum(step_bwd - attn_bwd / cp, 0.0)), 0.0)
    hid_f = np.where(on, (cp - 1) * np.minimum(step, attn_fwd / cp), 0.0)
    hid_b = np.where(on, (cp - 1) * (np.minimum(step_bwd, attn_bwd / cp)
                                     + again * np.minimum(step, attn_rec / cp)), 0.0)
    return Overlapped(total, exposed, hid_f, hid_b)


def cp_allgather_comm(kv_chunk: Array, cp: Array, span: GroupSpan, attn_fwd: Array,
                      attn_bwd: Array, system: System, profile: CalibrationProfile,
                      grad_ratio: float = 1.0, attn_rec: Array = 0.0,
                      recompute: bool = False) -> Overlapped:
    """All-gather context parallelism (torch.distributed.tensor.experimental._attention,
    _AllGatherRotater), one layer and micro-batch: each forward pass all-gathers every rank's
    K/V chunk once, issued before the local (first) sub-attention and waited after it, so only
    1/cp of the attention hides it; the backward all-gathers K/V again the same way and passes
    dK/dV (``grad_ratio`` x the K/V bytes: fp32 accumulation is 2) around the ring, cp
    exchanges each hidden behind the next step's 1/cp of the attention backward, the last one
    waited after the loop (exposed). Full recompute repeats the forward's all-gather."""
    cross = np.asarray(span.nodes) > 1
    on = np.asarray(cp) > 1
    gather = collective_time("all_gather", cp * kv_chunk, span, system, profile)
    dkv = p2p_time(grad_ratio * kv_chunk, cross, system, profile)
    again = 1.0 if recompute else 0.0
    total = np.where(on, (2.0 + again) * gather + cp * dkv, 0.0)
    exposed = np.where(on, np.maximum(gather - attn_fwd / cp, 0.0)
                       + again * np.maximum(gather - attn_rec / cp, 0.0)
                       + np.maximum(gather - attn_bwd / cp, 0.0)
                       + (cp - 1) * np.maximum(dkv - attn_bwd / cp, 0.0) + dkv, 0.0)
    hid_f = np.where(on, np.minimum(gather, attn_fwd / cp), 0.0)
    hid_b = np.where(on, np.minimum(gather, attn_bwd / cp) + again * np.minimum(
        gather, attn_rec / cp) + (cp - 1) * np.minimum(dkv, attn_bwd / cp), 0.0)
    return Overlapped(total, exposed, hid_f, hid_b)


def cp_a2a_bytes(model: ModelSpec, tokens: Array, tp: Array, cp: Array,
                 act_bytes: float) -> tuple[Array, Array, Array, Array]:
    """Per-GPU send buffers (bytes) of the four all-to-alls of Ulysses context parallelism in one
    layer's forward: Q, K, V (each rank's ``tokens`` = N/P of the sequence, its TP share of the
    heads) and the attention output (Jacobs et al. 2023 arXiv 2309.14509 Sec. 3 and Fig. 2:
    "all-to-all for QKV projections with aggregate message size 3Nh ... and another all-to-all
    for output context projection with size Nh"; DeepSpeed deepspeed/sequence/layer.py
    DistributedAttention issues one _SeqAllToAll per q, k, v and one on the output). GQA: K and V at their own head count,
    but at least ``cp`` heads: DeepSpeed's UlyssesSPAttentionHF repeats the K/V heads up to the
    sequence-parallel degree before the all-to-all when there are fewer ("if we have 4 kv heads
    and sp 8, we need to replicate kv heads 2x", deepspeedai/DeepSpeed@5db0c45
    deepspeed/runtime/sequence_parallel/ulysses_sp.py, _combine_local_sequences; ALST, arXiv
    2506.13996). MLA: the up-projected per-head Q/K (qk_head_dim) and V (v_head_dim)."""
    if model.mla:
        heads = model.num_heads / tp
        q = k = heads * model.mla.qk_head_dim
        v = out = heads * model.mla.v_head_dim
    else:
        q = out = model.num_heads / tp * model.hd
        k = v = np.maximum(model.kv_heads / tp, cp) * model.hd
    return tuple(tokens * w * act_bytes for w in (q, k, v, out))


def cp_a2a_comm(q_bytes: Array, k_bytes: Array, v_bytes: Array, out_bytes: Array, cp: Array,
                span: GroupSpan, system: System, profile: CalibrationProfile,
                recompute: bool = False) -> Overlapped:
    """All-to-all (DeepSpeed-Ulysses) context parallelism, one layer and micro-batch (Jacobs et
    al. 2023 arXiv 2309.14509 Sec. 3): forward all-to-alls of Q, K, V (sequence-sharded
    to head-sharded) before the local attention over the whole sequence and one of the output
    after it (head- to sequence-sharded); the backward runs the transposed four on the output
    gradient and dQ, dK, dV, same sizes. Each all-to-all moves (P-1)/P of its per-GPU buffer,
    so a layer's forward puts 4Nh/P per GPU on the wire for multi-head attention (the paper's
    per-link volume; ``comm.collective_time`` 'all_to_all'). The all-to-alls sit on the
    critical path between the projections and the attention (the paper's Fig. 2): all exposed,
    as DistributedAttention runs them by default (its dq/dk overlap path needs an ``sp_stream``,
    None by default). Full recompute runs the forward four again in backward."""
    calls = [collective_time("all_to_all", b, span, system, profile)
             for b in (q_bytes, k_bytes, v_bytes, out_bytes)]
    one_pass = calls[0] + calls[1] + calls[2] + calls[3]
    again = 1.0 if recompute else 0.0
    total = np.where(np.asarray(cp) > 1, (2.0 + again) * one_pass, 0.0)
    zero = np.zeros(np.shape(total))
    return Overlapped(total, total, zero, zero)


def pp_send_recv(act_bytes: Array, tp: Array, pp: Array, vp: Array, cross_node: Array,
                 system: System, profile: CalibrationProfile) -> Array:
    """Pipeline sends of one micro-batch on one stage: forward activation and backward
    gradient per virtual chunk, 1/t of the activation per TP rank (scatter-gather, Narayanan
    et al. 2021 Sec. 4.1); 0 without pipelining."""
    p2p = p2p_time(act_bytes / tp, cross_node, system, profile)
    return np.where(np.asarray(pp) > 1, 2.0 * vp * p2p, 0.0)


@dataclass(frozen=True, repr=False, eq=False)  # holds arrays: no generated ==, repr
class DataParallelWork:
    """What the data-parallel collectives of one stage move and the compute that may hide
    them (per micro-batch, largest stage)."""

    zero_stage: int
    dense_params: Array  # on one GPU, replicated over the ``grad`` group
    expert_params: Array  # on one GPU, replicated over the ``egrad`` group
    layers: Array  # on the stage (FSDP gathers one layer at a time)
    microbatches: Array
    grad_bytes: float  # per parameter on the wire
    weight_bytes: float
    bucket_params: float | None  # None: the framework default
    overlap_grad_reduce: bool
    overlap_param_gather: bool
    fwd_compute: Array  # one micro-batch's forward on the stage not hiding TP / CP traffic
    bwd_compute: Array  # ... and backward (the last one hides the gradient reduction)
    # ZeRO-3: parameter all-gathers per micro-batch beyond forward + backward (the recompute's
    # re-gather, ``recompute_regather_passes``)
    regather: Array = 0.0
    # of ``fwd_compute`` / ``bwd_compute``: the compute-bound GEMM + attention seconds, the
    # part an NCCL kernel's SMs slow down (``dp_contention``); 0: none charged
    fwd_bound: Array = 0.0
    bwd_bound: Array = 0.0
    # ZeRO stages (of 1 / 2) that reduce-scatter after every micro-batch's backward rather than
    # once a step (the framework's capabilities ``grad_reduction: microbatch``)
    microbatch_reduction_stages: tuple[int, ...] = ()


def recompute_regather_passes(layer_weights: list, max_reuse_params: float) -> Array:
    """Extra parameter all-gather passes per micro-batch of ZeRO-3 under full activation
    recompute in DeepSpeed, as a share of the layer's parameters (0 to 1).

    DeepSpeed gathers a submodule's parameters in its pre-forward hook, which fires again in
    the recomputed forward (parameter_offload.py pre_sub_module_forward_function ->
    partitioned_param_coordinator.py fetch_sub_module, which all-gathers every parameter not
    AVAILABLE), and releases them after each use unless they recur within
    stage3_max_reuse_distance parameters of the module trace (__params_to_release walks the
    trace from the next module, stopping once the parameters traversed reach the distance).
    A layer's forward runs once (one gather, released: its recompute is a whole step of later
    layers away), the recompute gathers every weight again, and the backward, which follows
    the layer's recompute and runs its submodules in reverse, finds weight j still gathered
    iff 2 x (the weights after j in forward order) < ``max_reuse_params``: the recompute of
    the later weights and their backward come in between. Weight passes: 1 + 1 + the share
    not kept, i.e. that share beyond perfmodel's forward + backward. ``layer_weights``: the
    layer's weight sizes in forward order (parameters; arrays broadcast)."""
    regathered, total = _regathered_params(layer_weights, max_reuse_params)
    return _share(regathered, total)


def _regathered_params(layer_weights: list, max_reuse_params: float) -> tuple[Array, Array]:
    """(parameters gathered again for the backward, all parameters) of one layer
    (``recompute_regather_passes``)."""
    sizes = [np.asarray(w, dtype=float) for w in layer_weights]
    after = np.zeros(())  # the weights after the current one in forward order
    regathered = np.zeros(())
    for w in reversed(sizes):
        regathered = regathered + np.where(2.0 * after >= max_reuse_params, w, 0.0)
        after = after + w
    return regathered, sum(sizes, np.zeros(()))


def _share(part: Array, whole: Array) -> Array:
    """part / whole, 0 where there is no whole."""
    return np.where(whole > 0, part / np.where(whole > 0, whole, 1.0), 0.0)


def zero3_extra_gathers(fsdp: Any, recompute: str,
                        layer_weights: dict[str, list] | Callable[[], dict[str, list]],
                        share: dict[str, float]) -> Array:
    """``DataParallelWork.regather`` of a run: the framework's ZeRO-3 facts (frameworks
    FsdpFacts ``recompute_regathers``, ``max_reuse_distance_params``) under full recompute,
    ``recompute_regather_passes`` averaged over the layer kinds by their parameters
    (``share``: each kind's share of the layers); 0 otherwise (FSDP1 / FSDP2 skip the
    recomputed forward's unshard, the pre-backward hook's gather serving both).
    ``layer_weights`` may be a function returning them: called only when they are needed
    (on a search mesh they are arrays, built for nothing otherwise)."""
    if fsdp is None or not fsdp.recompute_regathers or recompute != "full":
        return 0.0
    if callable(layer_weights):
        layer_weights = layer_weights()
    num, den = 0.0, 0.0  # the kinds' passes weighted by their parameters
    for kind, weights in layer_weights.items():
        regathered, total = _regathered_params(weights, fsdp.max_reuse_distance_params)
        size = share[kind] * total
        num = num + size * _share(regathered, total)
        den = den + size
    return _share(num, den)


def dp_buckets(w: DataParallelWork) -> Array:
    """Collectives per pass over the stage's parameters: DDP / distributed-optimizer buckets
    of 40M parameters (Megatron's default), ZeRO-3 / FSDP one gather per layer (FSDP wraps
    each transformer block) unless a bucket size is given (DeepSpeed: 5e7)."""
    stage_p = np.maximum(w.dense_params + w.expert_params, 1.0)
    bucket_params = w.bucket_params or (stage_p / w.layers if w.zero_stage == 3
                                        else MEGATRON_BUCKET_PARAMS)
    return np.maximum(np.ceil(stage_p / bucket_params), 1.0)


def _dp_pass(w: DataParallelWork, kind: str, per_param_bytes: float, grad: GroupSpan,
             egrad: GroupSpan, system: System, profile: CalibrationProfile,
             passes: dict | None) -> tuple[Array, Array]:
    """(dense, expert) seconds of one collective pass over the stage's parameters, bucket by
    bucket (``dp_buckets``); memoised in ``passes`` (``dp_step_comm``)."""
    calls = dp_buckets(w)
    key = (kind, per_param_bytes, not w.bucket_params and w.zero_stage == 3)
    if passes is not None and key in passes:
        return passes[key]
    times = (calls * collective_time(kind, w.dense_params * per_param_bytes / calls, grad,
                                     system, profile),
             calls * collective_time(kind, w.expert_params * per_param_bytes / calls, egrad,
                                     system, profile))
    if passes is not None:
        passes[key] = times
    return times


def chained_exposed(comm: Array, compute: Array, bucket: Array) -> Array:
    """Exposed seconds of ``comm`` split into n = 1/bucket equal buckets that run as a chain
    beside ``compute`` split into the same n parts, each bucket hidden only behind the compute
    of one neighbouring part (a gather behind the previous bucket's forward; a gradient
    reduction behind the backward of the layers after it): the chain's end bucket is exposed,
    and each other bucket shows what it exceeds of its part,
    comm / n + max(comm - compute, 0) x (1 - 1/n)."""
    return comm * bucket + np.maximum(comm - compute, 0.0) * (1 - bucket)


def grad_reductions(w: DataParallelWork) -> Array:
    """Gradient reductions a step: one (ZeRO-0/1, and ZeRO-2 where the gradients accumulate
    whole), or one per micro-batch where the framework's ZeRO-2 keeps only its shard and
    reduces after every backward (DeepSpeed stage 2, Megatron-FSDP optim_grads), each hidden
    behind its own backward."""
    return w.microbatches if (w.zero_stage in (1, 2)
                              and w.zero_stage in w.microbatch_reduction_stages) else 1.0


def dp_step_comm(w: DataParallelWork, grad: GroupSpan, egrad: GroupSpan, system: System,
                 profile: CalibrationProfile, passes: dict | None = None
                 ) -> tuple[Array, Array]:
    """(total, exposed) data-parallel communication of one step (module docstring).

    Overlap, bucket by bucket (``chained_exposed``): gradient reductions hide behind the last
    micro-batch's backward (ZeRO-0/1/2; behind each backward where they run every micro-batch,
    ``grad_reductions``); the parameter all-gather of ZeRO-1/2 behind the next
    step's first micro-batch forward (no more of it: the chain of bucket gathers runs in its
    pre-hooks); ZeRO-3 prefetch hides the next layer's gather behind this layer's
    compute, the first bucket of each pass excepted. The compute those hidden collectives slow
    down is ``dp_contention``'s.

    ``passes``: a dict shared by calls on the same work at several ZeRO stages (a plan
    search's ZeRO axis), so a collective pass the stages share is timed once (the bucket
    count differs only for ZeRO-3 without a bucket size).
    """
    calls = dp_buckets(w)
    bucket = 1.0 / calls  # share of the traffic in one bucket
    m = w.microbatches

    def one_pass(kind: str, per_param_bytes: float) -> Array:
        dense, expert = _dp_pass(w, kind, per_param_bytes, grad, egrad, system, profile, passes)
        return dense + expert

    reductions = grad_reductions(w)
    if w.zero_stage == 0:
        total = one_pass("all_reduce", w.grad_bytes)
        grad_exposed, gather_exposed = total, 0.0
    elif w.zero_stage in (1, 2):
        rs = one_pass("reduce_scatter", w.grad_bytes)
        ag = one_pass("all_gather", w.weight_bytes)
        total = rs * reductions + ag
        grad_exposed = rs
        # the gathers chain bucket by bucket from the optimizer step through the first
        # micro-batch's forward pre-hooks (each finish_param_sync dispatches the next bucket
        # group: Megatron-LM d98e8a64 distributed_data_parallel.py _make_forward_pre_hook,
        # param_and_grad_buffer.py finish_param_sync), so only that forward hides them
        gather_exposed = (chained_exposed(ag, w.fwd_compute, bucket)
                          if w.overlap_param_gather else ag)
    else:
        ag = one_pass("all_gather", w.weight_bytes)
        rs = one_pass("reduce_scatter", w.grad_bytes)
        bwd_ag = (1.0 + w.regather) * ag  # the backward's gathers (incl. the recompute's)
        total = (ag + bwd_ag + rs) * m
        if w.overlap_param_gather:
            exposed_micro = (chained_exposed(ag, w.fwd_compute, bucket)
                             + chained_exposed(bwd_ag + rs, w.bwd_compute, bucket))
        else:
            exposed_micro = ag + bwd_ag + rs
        grad_exposed, gather_exposed = exposed_micro * m, 0.0
    if w.zero_stage < 3 and w.overlap_grad_reduce:
        grad_exposed = chained_exposed(grad_exposed, w.bwd_compute, bucket)
    grad_exposed = grad_exposed * reductions
    alone = (np.asarray(grad.size) * 1.0 <= 1) & (np.asarray(egrad.size) <= 1)
    return np.where(alone, 0.0, total), np.where(alone, 0.0, grad_exposed + gather_exposed)


def comm_sm_slowdown(comm_sms: Array, sm_count: int | None) -> Array:
    """Factor on compute-bound kernels that run beside communication kernels holding
    ``comm_sms`` of the device's ``sm_count`` SMs: they run on the rest, so their time scales
    as sm_count / (sm_count - comm_sms). Used for SGLang's prefill TBO (DeepGEMM gets SMs -
    DeepEP's, operations_strategy.py ``deep_gemm_num_sms``; moe_parallel) and for training
    compute beside NCCL kernels (``nccl_sm_share``). 1 when either is unknown or 0."""
    if comm_sms is None or not sm_count:
        return 1.0
    k = np.asarray(comm_sms, dtype=float)
    ok = (k > 0) & (k < sm_count)
    factor = np.where(ok, sm_count / (sm_count - np.where(ok, k, 0.0)), 1.0)
    return float(factor) if factor.ndim == 0 else factor


def nccl_sm_share(span: GroupSpan, system: System) -> Array:
    """Share of the device's SMs an NCCL collective over ``span`` holds while it runs: its
    kernel keeps one CTA, i.e. one SM, per channel for its whole duration (NCCL CTAs do not
    share an SM with compute kernels: NVIDIA/nccl#1656 citing #689), and the channels are
    the communicator's, set by the fabric it crosses: the scale-out network's
    ``nccl_channels`` when the group spans nodes, else the node fabric's (hardware_specs/
    interconnects, from NCCL logs). 1 - 1 / ``comm_sm_slowdown``; 0 where the count is not
    known."""
    sms = system.device.sm_count
    inter = system.inter.nccl_channels if system.inter is not None else None
    shares = [1.0 - 1.0 / np.asarray(comm_sm_slowdown(k, sms))
              for k in (system.intra.nccl_channels, inter)]
    return np.where(np.asarray(span.nodes) > 1, shares[1], shares[0])


def sm_contention(comm: Array, compute: Array, bound: Array, sm_share: Array) -> Array:
    """Seconds a collective of ``comm`` seconds adds to the ``compute`` seconds it overlaps
    (both starting together), when its kernel holds ``sm_share`` of the SMs and ``bound`` of
    the compute is compute-bound (GEMM, attention: their time scales as ``comm_sm_slowdown``;
    memory-bound kernels are taken as unaffected).

    While the collective runs, compute advances at 1 - s of its own pace, s = sm_share x
    bound / compute, so the pair takes C + c s if the compute outlasts the collective
    (C >= c (1 - s)), else c: beyond perfmodel's max(c, C) that is min(c s, C - c (1 - s)),
    at least 0. The slowdown lasts the overlapped duration only: no collective (c = 0) or no
    compute adds nothing, and a longer collective adds at most C s / (1 - s)."""
    s = np.asarray(sm_share) * _share(np.minimum(bound, compute), compute)
    c = np.asarray(comm, dtype=float)
    return np.maximum(np.minimum(c * s, np.asarray(compute) - c * (1.0 - s)), 0.0)


def dp_contention(w: DataParallelWork, grad: GroupSpan, egrad: GroupSpan, system: System,
                  profile: CalibrationProfile, passes: dict | None = None) -> Array:
    """Seconds of one step that the overlapped data-parallel collectives of ``dp_step_comm``
    add to the compute they hide behind (``sm_contention``, the SM share of
    ``nccl_sm_share``): the gradient reduction of all buckets but the last beside the last
    micro-batch's backward (ZeRO-0/1/2 with ``overlap_grad_reduce``), the ZeRO-1/2 parameter
    all-gather beside the first forward and the ZeRO-3 prefetched gathers (and reduce-scatters)
    beside every micro-batch's forward and backward (``overlap_param_gather``). Only the
    hidden part of each collective runs beside compute (the first bucket's waits); a
    collective that outlasts the compute is charged as exposed communication by
    ``dp_step_comm``, not here. Where the groups span no other GPU, 0."""
    bucket = 1.0 / dp_buckets(w)
    # the groups' SM shares read the spans only: shared like the passes (same groups)
    share = passes.get("sm_share") if passes is not None else None
    if share is None:
        share = {"grad": nccl_sm_share(grad, system), "egrad": nccl_sm_share(egrad, system)}
        if passes is not None:
            passes["sm_share"] = share

    def hidden(kind: str, per_param_bytes: float) -> tuple[Array, Array]:
        """(seconds beside compute, SM share weighted by the dense / expert time); memoised
        with the passes (it reads the pass, its bucket count and the spans only)."""
        key = ("hidden", kind, per_param_bytes, not w.bucket_params and w.zero_stage == 3)
        if passes is not None and key in passes:
            return passes[key]
        dense, expert = _dp_pass(w, kind, per_param_bytes, grad, egrad, system, profile, passes)
        total = dense + expert
        out = (total * (1 - bucket),
               _share(dense * share["grad"] + expert * share["egrad"], total))
        if passes is not None:
            passes[key] = out
        return out

    extra: Array = 0.0
    if w.zero_stage < 3:
        if w.overlap_grad_reduce:
            red, s = hidden("all_reduce" if w.zero_stage == 0 else "reduce_scatter",
                            w.grad_bytes)
            extra = extra + grad_reductions(w) * sm_contention(red, w.bwd_compute,
                                                                w.bwd_bound, s)
        if w.zero_stage > 0 and w.overlap_param_gather:
            ag, s = hidden("all_gather", w.weight_bytes)
            extra = extra + sm_contention(ag, w.fwd_compute, w.fwd_bound, s)
    elif w.overlap_param_gather:
        ag, s_ag = hidden("all_gather", w.weight_bytes)
        rs, s_rs = hidden("reduce_scatter", w.grad_bytes)
        bwd_ag = (1.0 + w.regather) * ag
        s_bwd = _share(bwd_ag * s_ag + rs * s_rs, bwd_ag + rs)
        extra = w.microbatches * (sm_contention(ag, w.fwd_compute, w.fwd_bound, s_ag)
                                  + sm_contention(bwd_ag + rs, w.bwd_compute, w.bwd_bound,
                                                  s_bwd))
    alone = (np.asarray(grad.size) * 1.0 <= 1) & (np.asarray(egrad.size) <= 1)
    return np.where(alone, 0.0, extra)
