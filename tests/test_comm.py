"""Collective times against hand calculations and published nccl-tests sweeps.

The published sweeps (tests/data/published_nccl.json, copied with their citations from the
project's reference facts) are independent of the profiles used here: the A100 and H200
profiles are fitted on aiconfigurator's NCCL tables, not on these runs.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from perfmodel.comm import bus_factor, collective_time, p2p_time
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, profile_for
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan, group_spans

PUBLISHED = {r["id"]: r for r in json.loads(
    (Path(__file__).parent / "data" / "published_nccl.json").read_text())}


def busbw(collective, nbytes, t, n):
    return nbytes * float(bus_factor(collective, n)) / t / 1e9


def test_bus_factors_follow_nccl_tests():
    """nccl-tests doc/PERFORMANCE.md: all-reduce 2(n-1)/n, all-gather/reduce-scatter (n-1)/n."""
    assert bus_factor("all_reduce", 8) == pytest.approx(1.75)
    assert bus_factor("all_gather", 8) == pytest.approx(0.875)
    assert bus_factor("send_recv", 2) == 1


def test_ring_all_reduce_hand_calculation():
    """One node, default profile: t = alpha + 2(n-1)/n * S / (B * eff)."""
    system = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=8))
    prof = default_profile()
    span = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    s = 1 << 30
    expected = prof.defaults.collective_latency_s + 1.75 * s / (300e9 * prof.defaults.collective)
    assert float(collective_time("all_reduce", s, span, system, prof)) == pytest.approx(expected)
    assert float(collective_time("all_reduce", s, GroupSpan(1.0, 1.0, 1.0), system, prof)) == 0


def test_a100_8gpu_all_reduce_plateau_matches_nccl_tests():
    """nccl-tests on 8 x A100 NVLink: busbw 229.0 GB/s at 1 GiB, 234.9 at 16 GiB (Bekman's
    book); the A100 reference profile (aiconfigurator NCCL 2.27 tables) within 10 %."""
    rec = PUBLISHED["C-NCCL-ALLREDUCE-A100x8-NVLINK3-SWEEP"]["measured"]
    system = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=8))
    prof = profile_for("a100-sxm4-80gb")
    span = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    for size, measured in zip(rec["size_bytes"], rec["busbw_GBps"], strict=True):
        if size < 1 << 30:  # the plateau (smaller sizes: different NCCL versions)
            continue
        t = float(collective_time("all_reduce", size, span, system, prof))
        assert busbw("all_reduce", size, t, 8) == pytest.approx(measured, rel=0.10), size


def test_h200_8gpu_nvls_all_reduce_matches_measured():
    """8 x H200 all-reduce with NVLink SHARP: 450.3 GB/s at 512 MiB, 482.3 at 16 GiB busbw."""
    rec = PUBLISHED["C-NCCL-ALLREDUCE-H200x8-NVLS-SWEEP"]["measured"]
    system = resolve_system(SystemConfig(device="h200-sxm-141gb", num_gpus=8))
    prof = profile_for("h200-sxm-141gb")
    span = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    sizes = {"512MiB": 512 << 20, "1GiB": 1 << 30, "16GiB": 16 << 30}
    for label, size in sizes.items():
        measured = rec["busbw_GBps"][rec["payload"].index(label)]
        t = float(collective_time("all_reduce", size, span, system, prof))
        assert busbw("all_reduce", size, t, 8) == pytest.approx(measured, rel=0.12), label


def test_b200_four_node_all_reduce_with_default_efficiencies():
    """32 B200 on 4 nodes over 8 x 400 Gb/s EFA per node: 381.8 GB/s busbw at 16 GiB. The
    hierarchical model with the default (uncalibrated) efficiencies lands within 15 %; the
    B200 reference profile is not used because its inter-node fit is this very sweep."""
    rec = PUBLISHED["C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA"]["measured"]
    system = resolve_system(SystemConfig(device="b200", num_gpus=32, inter_node="roce-400x8"))
    span = group_spans(8, "tp-cp-ep-dp-pp", dp=32)["dp"]
    assert (float(span.local), float(span.nodes)) == (8.0, 4.0)
    size = 16 << 30
    t = float(collective_time("all_reduce", size, span, system, default_profile()))
    measured = rec["busbw_GBps_4nodes"][rec["payload"].index("16GiB")]
    assert busbw("all_reduce", size, t, 32) == pytest.approx(measured, rel=0.15)


def test_more_nodes_never_faster_and_arrays_work():
    system = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=1024))
    prof = profile_for("h100-sxm5-80gb")
    dps = np.array([8, 16, 64, 128])
    spans = group_spans(8, "tp-cp-ep-dp-pp", tp=8, dp=dps)["dp"]
    t = collective_time("all_reduce", 1 << 28, spans, system, prof)
    assert t.shape == (4,) and np.all(np.diff(t) >= 0)
    one = p2p_time(1 << 20, False, system, prof)
    cross = p2p_time(1 << 20, True, system, prof)
    assert cross > one > 0
