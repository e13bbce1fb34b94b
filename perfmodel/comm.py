"""Collective communication time on a topology (alpha-beta, NCCL's bus-bandwidth convention).

For a collective over n ranks moving S bytes (the nccl-tests "size": the full buffer of an
all-reduce, the gathered output of an all-gather, the input of a reduce-scatter, one rank's
send buffer of an all-to-all), nccl-tests doc/PERFORMANCE.md defines

    busbw = S / t * factor,   factor = 2(n-1)/n (all-reduce), (n-1)/n (all-gather,
                                       reduce-scatter, all-to-all), 1 (send/recv, broadcast)

so that busbw is comparable to a link's bandwidth for any n. The model inverts it:

    t = alpha + S * factor / (link bandwidth * eff(S))

with eff(S) (achieved busbw / link bandwidth vs message size) and alpha from the calibration
profile. A group that spans k nodes with ``local`` members per node runs hierarchically:
ring/tree algorithms pipeline chunks through the intra-node and inter-node hops, so the slower
hop bounds the time. Inter-node, each GPU moves its 1/local share of the data over its share
of the node's NICs (rail-optimised), which reproduces the per-NIC rate nccl-tests users derive,
busbw * (k-1)/(n-1) (shared/reference C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA). Latency grows with
the steps of NCCL's algorithm, as NCCL's tuning model counts them (src/graph/tuning.cc): an
all-gather / reduce-scatter ring of n ranks on k nodes makes k-1 network steps and n-k steps on
the node's fabric, each protocol (Simple, LL128) with its own step latencies and bandwidth, the
fastest one taken (``ring_time``); the all-reduce a tree of 2 log2 k network steps; all-to-all
n-1 pair steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .profile import CalibrationProfile
from .specs.system import System
from .topology import GroupSpan

Array = Any


# MoE expert-parallel all-to-alls as DeepEP runs them (deepseek-ai/DeepEP README and
# docs/legacy.md): dispatch (tokens to their experts' ranks) and combine (expert outputs back,
# weighted sum), each in the normal (high-throughput, NVLink + RDMA forwarding; prefill) or
# the low-latency (pure RDMA / NVLink writes, CUDA-graph friendly; decode) kernels. Their
# time follows the all-to-all formula; a profile without a measured fit for one of them uses
# its plain all_to_all fit (NCCL), then the defaults.
EP_ALL_TO_ALL = ("ep_dispatch_ll", "ep_combine_ll", "ep_dispatch_normal", "ep_combine_normal")


# Engines' own tensor-parallel all-reduce kernels (vLLM / SGLang CustomAllreduce one-shot /
# two-shot, TensorRT-LLM's AUTO strategy), fitted from their measured tables (aiconfigurator
# custom_allreduce_perf); an all-reduce's cost formula (engine_comm picks them by size).
CUSTOM_ALL_REDUCE = ("custom_allreduce_vllm", "custom_allreduce_sglang",
                     "custom_allreduce_trtllm")


def is_all_to_all(collective: str) -> bool:
    """NCCL all_to_all and the MoE dispatch / combine kernels share one cost formula."""
    return collective == "all_to_all" or collective in EP_ALL_TO_ALL


def bus_factor(collective: str, n: Array) -> Array:
    """nccl-tests bus-bandwidth factor (PERFORMANCE.md)."""
    n = np.asarray(n, dtype=float)
    if collective == "all_reduce" or collective in CUSTOM_ALL_REDUCE:
        return 2.0 * (n - 1) / n
    if collective in ("all_gather", "reduce_scatter") or is_all_to_all(collective):
        return (n - 1) / n
    return np.ones_like(n)


def _fit(profile: CalibrationProfile, collective: str, scope: str, size: int):
    """The profile's fit of ``collective``; an EP dispatch / combine without one falls back
    to the plain all_to_all fit."""
    fit = profile.collective_fit(collective, scope, size)
    if fit is None and collective in EP_ALL_TO_ALL:
        fit = profile.collective_fit("all_to_all", scope, size)
    return fit


def _efficiency(profile: CalibrationProfile, collective: str, scope: str, n, nbytes):
    """(latency, efficiency) for a group of n ranks; vectorised over n and nbytes."""
    defaults = (profile.defaults.collective_latency_s, profile.defaults.collective)
    if not profile.collectives:
        return defaults
    n_arr = np.maximum(np.asarray(n, dtype=float), 2.0)
    if n_arr.ndim == 0:
        fit = _fit(profile, collective, scope, int(n_arr))
        return (fit.latency_s, fit.efficiency(nbytes)) if fit else defaults
    # the distinct group sizes, grouped by the fit they read (several sizes share the nearest
    # measured one, and a scope without fits gives None for all)
    by_fit: dict[int, tuple] = {}
    for size in sorted(set(n_arr.ravel().tolist())):
        fit = _fit(profile, collective, scope, int(size))
        by_fit.setdefault(id(fit), (fit, []))[1].append(size)
    if len(by_fit) == 1:  # one fit (or none) for every cell: no per-cell selection (a plan
        # search's mesh: the same numbers, over nbytes' own axes only)
        (fit, _), = by_fit.values()
        return (fit.latency_s, fit.efficiency(nbytes)) if fit else defaults
    shape = np.broadcast(n_arr, nbytes).shape
    lat = np.full(shape, defaults[0])
    eff = np.full(shape, defaults[1])
    sizes = np.broadcast_to(n_arr, shape)
    flat_bytes = np.broadcast_to(np.asarray(nbytes, dtype=float), shape)
    for fit, group in by_fit.values():
        if fit is None:
            continue
        # each fit on its own cells only (the curve is elementwise)
        mask = sizes == group[0]
        for size in group[1:]:
            mask |= sizes == size
        lat[mask] = fit.latency_s
        eff[mask] = fit.efficiency(flat_bytes[mask])
    return lat, eff


def network_steps(collective: str, n: Array, nodes: Array) -> Array:
    """Latency steps over the network: NCCL runs all-gather, reduce-scatter (and all-to-all
    pairs) as rings of n-1 steps, and large all-reduces as trees of 2 log2(nodes) steps
    (NCCL tuning model, src/graph/tuning.cc). DeepEP's dispatch / combine post their writes
    to every peer at once (IBGDA / NVLink stores, DeepEP docs/legacy.md): one step."""
    if collective in EP_ALL_TO_ALL:
        return np.ones_like(np.asarray(n, dtype=float))
    if collective == "all_reduce":
        return 2.0 * np.log2(np.maximum(nodes, 2))
    return np.maximum(n - 1, 1)


RING_COLLECTIVES = ("all_gather", "reduce_scatter")


def ring_time(wire: Array, n: Array, nodes: Array, system: System,
              profile: CalibrationProfile) -> Array | None:
    """Network part of an NCCL all-gather / reduce-scatter over ``nodes`` nodes of n ranks, as
    NCCL's own tuning model times it (src/graph/tuning.cc, ncclTopoTuneModel): a ring makes
    n-1 steps, of which nodes-1 cross the network and n-nodes stay on the node's fabric,
    latency (n - nodes) x intra step + (nodes - 1) x inter step (with one rank per node the
    network step is the tree's, "latencies are fully exposed"); PAT (one rank per node) adds
    n x its rank step + log2(nodes) x its node step. NCCL runs the algorithm / protocol of
    least lat + bytes/bw, so the time is the minimum over the profile's ``ring_protocols`` of
    that latency plus ``wire`` / the protocol's bandwidth share (``wire``: the Simple ring's
    transfer time). Each network step also pays the fabric's extra switch hops. None when the
    profile lists no protocols."""
    protocols = profile.defaults.ring_protocols
    if not protocols:
        return None
    extra = extra_hop_latency(system)
    n, nodes = np.asarray(n, dtype=float), np.asarray(nodes, dtype=float)
    one_per_node = n <= nodes
    on_node = np.maximum(n - nodes, 0.0)
    across = np.maximum(nodes - 1, 0.0)
    log_nodes = np.floor(np.log2(np.maximum(nodes, 1.0)))  # NCCL's log2i
    best = None
    for p in protocols:
        if p.intra_kinds is not None and system.intra.kind not in p.intra_kinds:
            continue
        inter = p.inter_step_s
        if p.inter_step_one_per_node_s is not None:
            inter = np.where(one_per_node, p.inter_step_one_per_node_s, inter)
        t = (on_node * p.intra_step_s + across * (inter + extra) + n * p.rank_step_s
             + log_nodes * p.log2_node_step_s + wire / p.bandwidth)
        if p.one_per_node_only:
            t = np.where(one_per_node, t, np.inf)
        best = t if best is None else np.minimum(best, t)
    return best


def network_time(collective: str, wire: Array, n: Array, nodes: Array, system: System,
                 profile: CalibrationProfile) -> Array:
    """Transfer plus step latency of a collective's network part: NCCL rings for all-gather
    and reduce-scatter (``ring_time``), else ``network_steps`` x (the profile's per-step
    network latency + the fabric's extra hops)."""
    if collective in RING_COLLECTIVES:
        ring = ring_time(wire, n, nodes, system, profile)
        if ring is not None:
            return ring
    return wire + network_steps(collective, n, nodes) * (
        (profile.defaults.network_step_latency_s or 0.0) + extra_hop_latency(system))


def extra_hop_latency(system: System) -> float:
    """Latency a network step pays beyond one switch hop: the extra switch traversals of a
    fabric that is not rail-optimised, at the network's per-hop latency (0 when unknown)."""
    if system.inter is None or system.inter.latency_us is None:
        return 0.0
    return (system.network_hops - 1) * system.inter.latency_us * 1e-6


def intra_bandwidth(system: System, local: Array) -> Array:
    """Per-GPU per-direction bandwidth a collective among ``local`` GPUs of one node can use.

    Switched fabrics give every GPU its full bandwidth to any peer. In a direct mesh each pair
    shares one link of ``peer_bandwidth_gbps`` (MI300X: 7 x 64 GB/s), so a group of ``local``
    GPUs can use at most (local - 1) links. A group that outgrows the fully-connected domain
    (NVLink bridge pairs) also crosses the host link, and that slower hop bounds a ring.
    """
    local = np.asarray(local, dtype=float)
    bw = np.full(local.shape, system.intra.bandwidth)
    peer = system.intra.peer_bandwidth_gbps
    if peer is not None:
        bw = np.minimum(bw, peer * 1e9 * np.maximum(local - 1, 1))
    domain = system.intra.domain_size
    if domain is not None and system.host_link is not None:
        bw = np.where(local > domain, np.minimum(bw, system.host_link.bandwidth), bw)
    return bw


def collective_time(collective: str, nbytes: Array, span: GroupSpan, system: System,
                    profile: CalibrationProfile) -> Array:
    """Seconds for one collective of ``nbytes`` over the group ``span`` (0 for one rank)."""
    n, local, nodes = (np.asarray(x, dtype=float) for x in (span.size, span.local, span.nodes))
    nbytes = np.asarray(nbytes, dtype=float)
    if collective == "send_recv":
        return p2p_time(nbytes, nodes > 1, system, profile) * (n > 1)
    # intra-node part: the group's members on one node
    lat_i, eff_i = _efficiency(profile, collective, "intra", local, nbytes)
    bw_i = intra_bandwidth(system, local)
    if is_all_to_all(collective):
        # each rank keeps 1/n, sends (local-1)/n over the fabric and (n-local)/n off-node
        t_intra = nbytes * (local - 1) / n / (bw_i * eff_i)
    else:
        t_intra = nbytes * bus_factor(collective, local) / (bw_i * eff_i)
    t_intra = np.where(local > 1, t_intra + lat_i, 0.0)
    # inter-node part: k nodes, each GPU carrying 1/local of the data over its NIC share
    if system.inter_bandwidth_per_gpu > 0:
        lat_o, eff_o = _efficiency(profile, collective, "inter", n, nbytes / local)
        bw_o = system.inter_bandwidth_per_gpu
        if is_all_to_all(collective):
            t_inter = nbytes * (n - local) / n / (bw_o * eff_o)
        else:
            t_inter = nbytes / local * bus_factor(collective, nodes) / (bw_o * eff_o)
        t_inter = lat_o + network_time(collective, t_inter, n, nodes, system, profile)
    else:
        t_inter = np.full(np.shape(t_intra), np.inf)
    total = np.where(nodes > 1, np.maximum(t_intra, t_inter), t_intra)
    return np.where((n > 1) & (nbytes > 0), total, 0.0)


def p2p_time(nbytes: Array, cross_node: Array, system: System,
             profile: CalibrationProfile) -> Array:
    """Point-to-point transfer between two GPUs (pipeline stages, ring attention)."""
    nbytes = np.asarray(nbytes, dtype=float)
    lat_i, eff_i = _efficiency(profile, "send_recv", "intra", 2, nbytes)
    t_intra = lat_i + nbytes / (system.intra.bandwidth * eff_i)
    if system.inter_bandwidth_per_gpu > 0:
        lat_o, eff_o = _efficiency(profile, "send_recv", "inter", 2, nbytes)
        t_inter = lat_o + nbytes / (system.inter_bandwidth_per_gpu * eff_o)
    else:
        t_inter = np.full(np.shape(t_intra), np.inf)
    return np.where(cross_node, t_inter, t_intra)
