"""NCCL ring all-gather / reduce-scatter across nodes: latency as NCCL's own tuning model counts
it (NVIDIA/nccl v2.27.3-1 src/graph/tuning.cc, ncclTopoTuneModel), checked against hand
calculations written from that source, and single-node rings against aiconfigurator's measured
A100 NCCL 2.27.3 table (shared/reference/measured/aiconfigurator/csv/nccl/a100_sxm__nccl_2.27.3.csv).
"""

import numpy as np
import pytest

from perfmodel.comm import collective_time
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, profile_for
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan

# tuning.cc v2.27.3: hwLatencies NVLINK Ring {LL 0.6, LL128 1.9, Simple 3.4} us, NET Ring
# {2.7, 4.0, 14.0} us; across nodes intraLat = max(intraLat, netOverhead (1 us, x3 for Simple));
# LL128 bandwidth 0.92 x Simple's; ring latency (nsteps - nInterSteps) x intraLat +
# nInterSteps x interLat, nsteps = nRanks - 1, nInterSteps = nNodes - 1.
SIMPLE = (max(3.4, 3 * 1.0) * 1e-6, 14.0e-6, 1.0)
LL128 = (max(1.9, 1.0) * 1e-6, 4.0e-6, 0.92)


def dgx_a100(gpus):
    return resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=gpus, gpus_per_node=8,
                                       intra_node="nvlink3-nvswitch",
                                       inter_node="ib-hdr-200x8"))


def hand_ring(nbytes, n, nodes, system, prof, protocols=(SIMPLE, LL128)):
    """t = max(intra part, inter part); inter = latency + min over protocols of
    (n - nodes) x intra step + (nodes - 1) x inter step + wire / bandwidth share."""
    local = n / nodes
    d = prof.defaults
    t_intra = d.collective_latency_s + nbytes * (local - 1) / local / (300e9 * d.collective)
    wire = nbytes / local * (nodes - 1) / nodes / (system.inter_bandwidth_per_gpu * d.collective)
    ring = min((n - nodes) * a + (nodes - 1) * b + wire / f for a, b, f in protocols)
    return max(t_intra, d.collective_latency_s + ring)


def test_defaults_carry_nccl_tuning_constants():
    """The shipped constants are the tuning.cc entries (a typo there moves every large ring)."""
    rings = {p.protocol: p for p in default_profile().defaults.ring_protocols}
    assert (rings["simple"].intra_step_s, rings["simple"].inter_step_s) == (3.4e-6, 14.0e-6)
    assert (rings["ll128"].intra_step_s, rings["ll128"].inter_step_s) == (1.9e-6, 4.0e-6)
    assert rings["ll128"].bandwidth == 0.92 and rings["simple"].bandwidth == 1.0
    assert (rings["simple"].inter_step_one_per_node_s,
            rings["ll128"].inter_step_one_per_node_s) == (14.0e-6, 8.5e-6)
    pat = rings["pat"]
    assert (pat.rank_step_s, pat.log2_node_step_s, pat.bandwidth, pat.one_per_node_only) == (
        2.8e-6, 4.0e-6, 0.75, True)


@pytest.mark.parametrize("collective", ["all_gather", "reduce_scatter"])
@pytest.mark.parametrize("n, nbytes", [(16, 1 << 20), (1536, 100e6), (2240, 2e9), (64, 64e3)])
def test_ring_across_nodes_hand_calculation(collective, n, nbytes):
    """DGX A100 (8 x HDR 200, 25 GB/s per GPU), default profile: the core's time equals the
    hand formula from tuning.cc, for small and large groups and messages."""
    system, prof = dgx_a100(n), default_profile()
    span = GroupSpan(size=float(n), local=8.0, nodes=n / 8)
    got = float(collective_time(collective, nbytes, span, system, prof))
    assert got == pytest.approx(hand_ring(nbytes, n, n / 8, system, prof), rel=1e-9)


def test_1536_rank_ring_latency_counts_nodes_not_ranks():
    """100 MB over 192 DGX A100 nodes: 1344 NVLink steps + 191 network steps. LL128 (1344 x 1.9
    + 191 x 4.0 = 3317.6 us) beats Simple (1344 x 3.4 + 191 x 14 = 7243.6 us) at 0.92 of its
    bandwidth, as NCCL's tuner would pick; the old count, 1535 network steps x 6.6 us = 10.1 ms,
    is 2.6x NCCL's modelled latency."""
    system, prof = dgx_a100(1536), default_profile()
    span = GroupSpan(size=1536.0, local=8.0, nodes=192.0)
    wire = 100e6 / 8 * 191 / 192 / (25e9 * prof.defaults.collective)
    expected = prof.defaults.collective_latency_s + 3317.6e-6 + wire / 0.92
    got = float(collective_time("all_gather", 100e6, span, system, prof))
    assert got == pytest.approx(expected, rel=1e-6)
    assert got < 1535 * 6.6e-6  # below the old n-1 network steps


def test_more_ranks_per_node_add_only_nvlink_steps():
    """Same 64 nodes, 4 vs 8 ranks per node (100 KB, latency-bound): the 256 extra ring steps
    stay on NVLink, 256 x 1.9 us (LL128), not 256 network steps."""
    prof = default_profile()
    four = float(collective_time("all_gather", 100e3, GroupSpan(256.0, 4.0, 64.0),
                                 dgx_a100(512), prof))
    eight = float(collective_time("all_gather", 100e3, GroupSpan(512.0, 8.0, 64.0),
                                  dgx_a100(512), prof))
    wire4 = 100e3 / 4 * 63 / 64 / (25e9 * prof.defaults.collective) / 0.92
    wire8 = wire4 / 2
    assert eight - four == pytest.approx(256 * 1.9e-6 + wire8 - wire4, rel=1e-6)


@pytest.mark.parametrize("nbytes, winner", [(100e3, "pat"), (1e6, "pat"), (1e9, "simple")])
def test_one_rank_per_node_tree_latency_and_pat(nbytes, winner):
    """64 nodes x 1 rank (a DP group beside TP 8): NCCL times ring steps at the tree's network
    latency (LL128 8.5, Simple 14 us) and offers PAT (64 x 2.8 + log2 64 x 14/3.5 = 203.2 us,
    0.75 of the bandwidth); small messages take PAT, 1 GB the Simple ring."""
    prof = default_profile()
    wire = nbytes * 63 / 64 / (25e9 * prof.defaults.collective)
    lat = {"pat": 64 * 2.8e-6 + 6 * 4.0e-6 + wire / 0.75,
           "ll128": 63 * 8.5e-6 + wire / 0.92, "simple": 63 * 14e-6 + wire}
    assert min(lat, key=lat.get) == winner
    got = float(collective_time("reduce_scatter", nbytes, GroupSpan(64.0, 1.0, 64.0),
                                dgx_a100(512), prof))
    assert got == pytest.approx(prof.defaults.collective_latency_s + lat[winner], rel=1e-9)


def test_ll128_only_on_nvlink_nodes():
    """NCCL enables LL128 by default only over NVLink: a PCIe node's ring runs Simple."""
    prof = default_profile()
    pcie = resolve_system(SystemConfig(device="a100-pcie-80gb", num_gpus=512, gpus_per_node=8,
                                       intra_node="pcie-gen4-x16", inter_node="ib-hdr-200"))
    span = GroupSpan(size=512.0, local=8.0, nodes=64.0)
    t = float(collective_time("all_gather", 100e3, span, pcie, prof))
    simple_lat = 448 * 3.4e-6 + 63 * 14e-6
    assert t > prof.defaults.collective_latency_s + simple_lat


def test_profile_without_ring_protocols_keeps_step_count():
    """A profile that lists no protocols times the ring as n-1 network steps (the old rule)."""
    prof = default_profile()
    bare = prof.model_copy(update={"defaults": prof.defaults.model_copy(
        update={"ring_protocols": None})})
    system = dgx_a100(64)
    span = GroupSpan(size=64.0, local=8.0, nodes=8.0)
    d = prof.defaults
    wire = 1e6 / 8 * 7 / 8 / (25e9 * d.collective)
    expected = d.collective_latency_s + wire + 63 * d.network_step_latency_s
    assert float(collective_time("all_gather", 1e6, span, system, bare)) == pytest.approx(
        expected, rel=1e-9)


# aiconfigurator a100_sxm NCCL 2.27.3 (fp16, 8 GPUs, one DGX A100): message elements, ms
MEASURED_A100_8 = {
    "all_gather": [(16777216, 0.2176), (67108864, 0.6603), (268435456, 2.288)],
    "reduce_scatter": [(16777216, 0.21), (67108864, 0.624), (268435456, 2.2071)],
}


@pytest.mark.parametrize("collective", sorted(MEASURED_A100_8))
def test_single_node_rings_unchanged_and_match_measured(collective):
    """One node: the network ring term never applies, so the A100 reference profile's fit of
    the measured table holds (within 10 %) with or without the ring protocols."""
    prof = profile_for("a100-sxm4-80gb")
    bare = prof.model_copy(update={"defaults": prof.defaults.model_copy(
        update={"ring_protocols": None})})
    system = dgx_a100(8)
    span = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    for elements, ms in MEASURED_A100_8[collective]:
        nbytes = 2.0 * elements
        t = float(collective_time(collective, nbytes, span, system, prof))
        assert t == float(collective_time(collective, nbytes, span, system, bare))
        assert t == pytest.approx(ms * 1e-3, rel=0.10), elements


def test_ring_time_broadcasts_over_groups():
    """Array-friendly: a sweep over group sizes equals the one-by-one times."""
    prof = default_profile()
    system = dgx_a100(2048)
    sizes = np.array([16.0, 128.0, 1024.0, 2048.0])
    span = GroupSpan(size=sizes, local=np.full(4, 8.0), nodes=sizes / 8)
    many = collective_time("reduce_scatter", 50e6, span, system, prof)
    one = [float(collective_time("reduce_scatter", 50e6, GroupSpan(s, 8.0, s / 8), system,
                                 prof)) for s in sizes]
    assert np.allclose(many, one)
    assert np.all(np.diff(many) > 0)  # more nodes, more steps
