"""The flex-hybridep dispatcher's cross-node floor from HybridEP's published H100 micro-benchmark
(frameworks/megatron-core.yaml ``measured_rdma``, which nemo.yaml reads; DeepEP docs/README_Hybrid-EP.md
@5fbafce2, 'H100 Platform', Torch API BF16 dispatch / combine; bandwidth = tokens x destination
domains, the sender's included, x hidden x 2 B per call, DeepEP tests/test_hybrid_ep.py),
checked by hand on Qwen3-30B-A3B's shape (128 experts, top-8, hidden 2048) over 2 DGX H100."""

from __future__ import annotations

import math

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel import parallel_comm as PC
from perfmodel.frameworks import MoePermutation, resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.resolve import resolve
from perfmodel.topology import GroupSpan

README_H100 = {2: (57.74, 56.96), 4: (47.36, 52.53), 8: (41.46, 47.68)}


def _system(ranks: int):
    rs = resolve(pm.Scenario(kind="training", model="llama-3-8b",
                             system={"device": "h100-sxm5-80gb", "num_gpus": ranks,
                                     "node": "dgx-h100"},
                             training={"seq_len": 4096, "global_batch": ranks}))
    return rs.system, rs.profile


def _span(ranks: int, nodes: int) -> GroupSpan:
    return GroupSpan(size=float(ranks), local=float(ranks // nodes), nodes=float(nodes))


def test_the_framework_files_carry_the_readme_rows():
    for name in ("megatron-core", "nemo"):
        fw = resolve_framework(FrameworkConfig(name=name, moe_dispatcher="flex-hybridep"))
        assert FC.moe_dispatch_measured_rdma(fw, "h100-sxm5-80gb") == README_H100
        assert FC.moe_dispatch_measured_rdma(fw, "b200") == {}
        # the other dispatchers have no measured floor
        deepep = resolve_framework(FrameworkConfig(name=name, moe_dispatcher="flex-deepep"))
        assert FC.moe_dispatch_measured_rdma(deepep, "h100-sxm5-80gb") == {}


def test_two_node_floor_by_hand():
    """EP 16 over 2 DGX H100, 4096 tokens, hidden 2048, bf16: the destination domains per token
    are 2 (1 - C(64, 8) / C(128, 8)) = 1.99381; 4096 x 1.99381 x 2048 x 2 B = 33.45 MB per call,
    at 57.74 / 56.96 GB/s 0.5794 + 0.5873 ms a layer's forward (the all-to-all fit alone gives
    0.876 ms)."""
    system, profile = _system(16)
    p_none = math.comb(64, 8) / math.comb(128, 8)
    domains = 2.0 * (1.0 - p_none)
    assert domains == pytest.approx(1.99381, abs=1e-5)
    nbytes = 4096 * domains * 2048 * 2.0
    by_hand = nbytes / 57.74e9 + nbytes / 56.96e9
    assert by_hand == pytest.approx(1.1667e-3, rel=1e-3)
    args = (4096, 1, 8, 2048, 2.0, _span(16, 2), system, profile, False)
    fit, _ = PC.ep_layer_comm(*args, volume="distinct", experts=128)
    fwd, bwd = PC.ep_layer_comm(*args, volume="distinct", experts=128, measured_rdma=README_H100)
    assert float(fit) < by_hand  # the fit alone was faster than the benchmark
    assert float(fwd) == pytest.approx(by_hand, rel=1e-9)
    assert float(bwd) == pytest.approx(by_hand, rel=1e-9)


def test_no_floor_on_one_domain_or_without_a_table():
    """A single NVLink domain or no table: the fit as it was, to the bit; arrays of domain
    counts pick the row of each (3 domains read 2's, below)."""
    system, profile = _system(48)
    args = (4096, 1, 8, 2048, 2.0, _span(8, 1), system, profile, False)
    fit = PC.ep_layer_comm(*args, volume="distinct", experts=128)
    floored = PC.ep_layer_comm(*args, volume="distinct", experts=128, measured_rdma=README_H100)
    assert [float(x) for x in floored] == [float(x) for x in fit]
    nodes = np.array([2.0, 3.0])
    span = GroupSpan(size=nodes * 8, local=np.array([8.0, 8.0]), nodes=nodes)
    both, _ = PC.ep_layer_comm(4096, 1, 8, 2048, 2.0, span, system, profile, False,
                               volume="distinct", experts=128, measured_rdma=README_H100)
    two, _ = PC.ep_layer_comm(4096, 1, 8, 2048, 2.0, _span(16, 2), system, profile, False,
                              volume="distinct", experts=128, measured_rdma=README_H100)
    three, _ = PC.ep_layer_comm(4096, 1, 8, 2048, 2.0, _span(24, 3), system, profile, False,
                                volume="distinct", experts=128, measured_rdma=README_H100)
    assert np.allclose(both, [float(two), float(three)], rtol=1e-12)


def _distinct_by_hand(experts: int, nodes: int) -> float:
    """Destination domains per token, top-8 uniform: nodes x (1 - C(E - E/nodes, 8) / C(E, 8))."""
    return nodes * (1.0 - math.comb(experts - experts // nodes, 8) / math.comb(experts, 8))


@pytest.mark.parametrize(("ranks", "nodes", "row", "experts"),
                         [(24, 3, 2, 96), (128, 16, 8, 128)])
def test_unmeasured_domain_counts_read_the_largest_measured_below(ranks, nodes, row, experts):
    """3 domains (EP 24) and 16 domains (EP 128 over 16 DGX H100) are not in the README: the
    floor takes the bandwidth of the largest measured count below (2: 57.74 / 56.96 GB/s; 8:
    41.46 / 47.68), the faster one (bandwidth falls with the count), so the floor stays a lower
    bound instead of vanishing: Qwen3-30B-A3B's shape (hidden 2048, bf16; 128 experts, 96 over
    3 domains so each holds whole experts), 4096 tokens: 4096 x domains x 2048 x 2 B per call at those rates, each call the slower of the
    fit and the floor."""
    system, profile = _system(ranks)
    nbytes = 4096 * _distinct_by_hand(experts, nodes) * 2048 * 2.0
    by_hand = nbytes / (README_H100[row][0] * 1e9) + nbytes / (README_H100[row][1] * 1e9)
    args = (4096, 1, 8, 2048, 2.0, _span(ranks, nodes), system, profile, False)
    fit, _ = PC.ep_layer_comm(*args, volume="distinct", experts=experts)
    fwd, _ = PC.ep_layer_comm(*args, volume="distinct", experts=experts,
                              measured_rdma=README_H100)
    half = float(fit) / 2  # the fit's time per call, max(NVLink, RDMA)
    with_floor = (max(half, nbytes / (README_H100[row][0] * 1e9))
                  + max(half, nbytes / (README_H100[row][1] * 1e9)))
    assert float(fwd) == pytest.approx(with_floor, rel=1e-6)
    assert float(fwd) >= by_hand * (1 - 1e-9)
    assert float(PC._measured_bw(README_H100, np.array([float(nodes)]), 0)[0]) == \
        README_H100[row][0] * 1e9


@pytest.mark.parametrize(("ranks", "nodes"), [(16, 2), (32, 4), (64, 8)])
def test_the_readme_points_come_out_at_most_as_fast_as_measured(ranks, nodes):
    """The README's own shape (hidden 7168, 8 local experts per rank): the floored dispatch +
    combine is never faster than the two measured calls."""
    system, profile = _system(ranks)
    experts = 8 * ranks
    fwd, _ = PC.ep_layer_comm(4096, 1, 8, 7168, 2.0, _span(ranks, nodes), system, profile,
                              False, volume="distinct", experts=experts,
                              measured_rdma=README_H100)
    nbytes = 4096 * float(PC.distinct_groups(experts, 8, nodes)) * 7168 * 2.0
    measured = nbytes / (README_H100[nodes][0] * 1e9) + nbytes / (README_H100[nodes][1] * 1e9)
    assert float(fwd) >= measured * (1 - 1e-12)
    assert float(fwd) == pytest.approx(measured, rel=0.2)


def test_the_step_charges_the_floor(monkeypatch):
    """Megatron-Bridge 26.04.01 Qwen3-30B-A3B on 16 H100 (HybridEP, no EP overlap): the exposed
    EP time grows by micro-batches x layers x (forward + backward) x the floor's increase."""
    from perfmodel.api import predict
    from perfmodel.validate.cases import case_scenario, load_cases

    sc = case_scenario(load_cases(match="mbridge_260401_h100_qwen3_30b_a3b_fp8cs_16gpu")[0])
    floored = predict(sc)
    monkeypatch.setattr(FC, "moe_dispatch_measured_rdma", lambda *a: {})
    fit = predict(sc)
    system, profile = _system(16)
    args = (4096, 1, 8, 2048, 2.0, _span(16, 2), system, profile, False)
    step = (float(PC.ep_layer_comm(*args, volume="distinct", experts=128,
                                   measured_rdma=README_H100)[0])
            - float(PC.ep_layer_comm(*args, volume="distinct", experts=128)[0]))
    extra = 64 * 48 * 2 * step  # GBS 1024 / (MBS 1 x DP 16) micro-batches, 48 layers
    grown = floored.breakdown["time"]["ep_comm"] - fit.breakdown["time"]["ep_comm"]
    assert grown == pytest.approx(extra, rel=1e-6)
    assert floored.step_time_s - fit.step_time_s == pytest.approx(extra, rel=1e-6)


def test_bad_measured_rows_are_refused():
    with pytest.raises(ValueError, match=r"measured_rdma\.h100-sxm5-80gb\.1"):
        MoePermutation(input_permute=False, local_sort=False, volume="distinct", source="x",
                       measured_rdma={"h100-sxm5-80gb": {1: (50.0, 50.0)}})
    with pytest.raises(ValueError, match=r"measured_rdma\.h100-sxm5-80gb\.2"):
        MoePermutation(input_permute=False, local_sort=False, volume="distinct", source="x",
                       measured_rdma={"h100-sxm5-80gb": {2: (50.0, 0.0)}})
