"""MoE training: the token dispatcher a run uses (training.framework.moe_dispatcher; the
framework file's moe.dispatcher / moe.dispatchers), its row copies (frameworks_costs.
moe_dispatch_ops) and what its dispatch sends (parallel_comm.ep_layer_comm volume, with the
distinct-rank / distinct-domain count parallel_comm.distinct_groups). Hand calculations from
Megatron-LM token_dispatcher.py / fused_a2a.py @44151194 and DeepEP hybrid-ep."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel import parallel_comm as PC
from perfmodel.errors import SpecError
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.resolve import resolve, training_plan
from perfmodel.topology import GroupSpan
from perfmodel.training import training_step

QWEN3_30B = "tests/data/hf_configs/aiconfigurator-0.12.0/Qwen--Qwen3-30B-A3B_config.json"


def _scenario(model=QWEN3_30B, dispatcher=None, num_gpus=16, ep=16, name="nemo"):
    fw = {"name": name} | ({"moe_dispatcher": dispatcher} if dispatcher else {})
    return pm.Scenario(
        kind="training", model=model,
        system={"device": "h100-sxm5-80gb", "num_gpus": num_gpus, "node": "dgx-h100"},
        parallelism={"tp": 1, "pp": 1, "dp": num_gpus, "ep": ep, "etp": 1, "zero_stage": 1},
        training={"framework": fw, "seq_len": 4096, "global_batch": 64, "micro_batch": 1,
                  "precision": "bf16", "recompute": "none"})


def _model():
    return resolve(_scenario()).scenario.model


def _names(ops):
    return {op.name: op for op in ops}


def test_distinct_groups_by_enumeration():
    """Every 2-of-8 expert pair (28) with 4 groups of 2 experts: 4 pairs fall in one group,
    24 in two, mean (4 x 1 + 24 x 2) / 28 = 52/28; the formula gives 4 (1 - C(6,2)/C(8,2))
    = 4 x 13/28 = 52/28. One group: 1; a group per expert: k."""
    pairs = list(itertools.combinations(range(8), 2))
    mean = sum(len({e // 2 for e in p}) for p in pairs) / len(pairs)
    assert mean == pytest.approx(52 / 28)
    assert float(PC.distinct_groups(8, 2, 4)) == pytest.approx(52 / 28)
    assert float(PC.distinct_groups(128, 8, 1)) == pytest.approx(1.0)
    assert float(PC.distinct_groups(128, 8, 128)) == pytest.approx(8.0)
    # array-friendly
    assert PC.distinct_groups(8, 2, np.array([1.0, 4.0])).tolist() == pytest.approx([1, 52 / 28])


def test_distinct_groups_qwen3_30b_two_nodes():
    """Qwen3-30B-A3B, 128 experts top-8, EP 16 over 2 nodes: per token
    16 (1 - C(120,8)/C(128,8)) = 6.5965 destination ranks and 2 (1 - C(64,8)/C(128,8))
    = 1.9938 destination nodes (math.comb, independently of the product form)."""
    ranks = 16 * (1 - comb(120, 8) / comb(128, 8))
    nodes = 2 * (1 - comb(64, 8) / comb(128, 8))
    assert ranks == pytest.approx(6.5965, abs=1e-4) and nodes == pytest.approx(1.9938, abs=1e-4)
    assert float(PC.distinct_groups(128, 8, 16)) == pytest.approx(ranks)
    assert float(PC.distinct_groups(128, 8, 2)) == pytest.approx(nodes)


def test_ep_comm_volumes_by_hand(monkeypatch):
    """ep_layer_comm with a stand-in collective time (1 ns per byte, recorded): 4096 tokens,
    h 2048, bf16, 128 experts top-8, EP 16 = 2 nodes x 8.
    top_k: one all-to-all of 4096 x 8 x 2048 x 2 = 134,217,728 B over the 16 ranks.
    distinct: NVLink 4096 x 6.5965 x 2048 x 2 B among the node's 8 ranks and RDMA
    4096 x 1.9938 x 2048 x 2 B over the 2 nodes (one GPU each); the larger one counts.
    gather: all-gather + reduce-scatter of 16 x 4096 x 2048 x 2 = 268,435,456 B.
    Forward = dispatch + combine (x2 for the all-to-alls), backward the same."""
    calls = []

    def fake(collective, nbytes, span, system, profile):
        calls.append((collective, float(nbytes), float(span.size), float(span.local),
                      float(span.nodes)))
        return np.asarray(nbytes, float) * 1e-9

    monkeypatch.setattr(PC, "collective_time", fake)
    span = GroupSpan(size=16.0, local=8.0, nodes=2.0)
    args = (4096, 1, 8, 2048, 2.0, span, None, None, False)
    fwd, bwd = PC.ep_layer_comm(*args)
    assert calls == [("all_to_all", 134_217_728.0, 16.0, 8.0, 2.0)]
    assert float(fwd) == pytest.approx(2 * 134_217_728e-9) and float(bwd) == float(fwd)

    calls.clear()
    fwd, _ = PC.ep_layer_comm(*args, volume="distinct", experts=128)
    nvl = 4096 * 16 * (1 - comb(120, 8) / comb(128, 8)) * 2048 * 2
    rdma = 4096 * 2 * (1 - comb(64, 8) / comb(128, 8)) * 2048 * 2
    assert calls[0][0] == "all_to_all" and calls[0][1] == pytest.approx(nvl)
    assert calls[0][2:] == (8.0, 8.0, 1.0)
    assert calls[1][1] == pytest.approx(rdma) and calls[1][2:] == (2.0, 1.0, 2.0)
    assert float(fwd) == pytest.approx(2 * max(nvl, rdma) * 1e-9)

    calls.clear()
    fwd, _ = PC.ep_layer_comm(*args, volume="gather")
    assert [c[0] for c in calls] == ["all_gather", "reduce_scatter"]
    assert all(c[1] == pytest.approx(268_435_456) for c in calls)
    assert float(fwd) == pytest.approx(2 * 268_435_456e-9)


def test_distinct_volume_on_a_real_topology_is_below_top_k():
    """On 2 x DGX-H100 the cross-node part dominates: one copy per remote node (0.997 of a
    token) instead of 8 x 8/16 = 4 copies per token over the NICs."""
    rs = resolve(_scenario())
    plan = training_plan(rs.scenario, rs.system)
    span = GroupSpan(size=16.0, local=8.0, nodes=2.0)
    top_k, _ = PC.ep_layer_comm(4096, 1, 8, 2048, 2.0, span, rs.system, rs.profile, False)
    distinct, _ = PC.ep_layer_comm(4096, 1, 8, 2048, 2.0, span, rs.system, rs.profile, False,
                                   volume="distinct", experts=128)
    assert plan.ep == 16
    assert 0.0 < float(distinct) < float(top_k) / 2.5


def test_each_dispatcher_runs_its_copies():
    """Qwen3-30B-A3B (h 2048, top-8), 4096 tokens, EP 16 (8 local experts): R = 32768 rows.
    alltoall: Permutation 1, sort / unsort, fp8 pad (fp8 experts). flex-deepep and allgather:
    the received-token permute, 2 x 32768 x 2048 x 2 = 268,435,456 B each way, and the fp8 pad
    (TEGroupedMLP pads). flex-hybridep: the permute (its own kernel) and no fp8 pad
    (moe_utils.skip_routed_expert_padding)."""
    model = _model()
    rows_bytes = 2 * 32768 * 2048 * 2

    def ops(dispatcher):
        fw = resolve_framework(FrameworkConfig(name="nemo", moe_dispatcher=dispatcher))
        fwd, bwd = FC.moe_dispatch_ops(fw, model, 4096, 1, False, 16, 1, 2.0, fp8=True)
        return _names(fwd), _names(bwd)

    f, _ = ops("alltoall")
    assert set(f) == {"moe.permute", "moe.sort", "moe.fp8_pad"}
    for name in ("flex-deepep", "allgather"):
        f, b = ops(name)
        assert set(f) == {"moe.recv_permute", "moe.fp8_pad"}
        assert float(f["moe.recv_permute"].bytes) == pytest.approx(rows_bytes)
        assert float(b["moe.recv_permute.bwd"].bytes) == pytest.approx(rows_bytes)
    f, b = ops("flex-hybridep")
    assert set(f) == {"moe.recv_permute"} and set(b) == {"moe.recv_permute.bwd"}


def test_dispatcher_defaults_overrides_and_errors():
    """megatron-core and nemo default to alltoall (the recipes' and perf scripts' choice);
    the override is said in the breakdown's framework settings; a framework without the facts
    refuses a flex dispatcher, naming the field."""
    for name in ("megatron-core", "nemo"):
        fw = resolve_framework(FrameworkConfig(name=name))
        assert fw.moe_dispatcher == "alltoall" and FC.moe_dispatch_volume(fw) == "top_k"
    fw = resolve_framework(FrameworkConfig(name="nemo", moe_dispatcher="flex-hybridep"))
    assert FC.moe_dispatch_volume(fw) == "distinct"
    assert fw.describe()["moe_dispatcher"] == "flex-hybridep"
    assert FC.moe_dispatch_volume(resolve_framework(
        FrameworkConfig(name="nemo", moe_dispatcher="allgather"))) == "gather"
    with pytest.raises(SpecError, match=r"training\.framework\.moe_dispatcher"):
        resolve_framework(FrameworkConfig(name="torchtitan", moe_dispatcher="flex-deepep"))


def test_step_ep_comm_drops_and_dense_does_not_move():
    """The whole step: HybridEP's per-node dispatch cuts the 2-node EP time; a dense model's
    step is the same whatever dispatcher is named."""
    def step(sc):
        rs = resolve(sc)
        return training_step(rs.scenario.model, rs.system, training_plan(rs.scenario, rs.system),
                             rs.profile)

    a2a, hyb = step(_scenario()), step(_scenario(dispatcher="flex-hybridep"))
    assert float(hyb.step_time) < float(a2a.step_time)
    dense = [step(_scenario(model="llama-3-8b", dispatcher=d, ep=1)) for d in
             (None, "flex-hybridep", "allgather")]
    assert len({float(r.step_time) for r in dense}) == 1


# DeepEP hybrid-ep docs/README_Hybrid-EP.md (@5fbafce2), "Torch API" dispatch (BF16), 4096
# tokens, hidden 7168, top-8, 8 local experts per rank, uniform random routing, 16 SMs; the
# bandwidth is tests/test_hybrid_ep.py's: single domain the received tokens x hidden x 2 B
# (t x D_ranks), across domains count_rdma_send_from_routing_map x hidden x 2 B (t x D_domains,
# the local domain included), over the call's time.
HYBRID_EP_README = [
    ("gb200", "gb200-nvl72", 8, 1, 550.10), ("gb200", "gb200-nvl72", 16, 1, 472.84),
    ("gb200", "gb200-nvl72", 32, 1, 484.22), ("gb200", "gb200-nvl72", 36, 1, 469.96),
    ("b200", "dgx-b200", 8, 1, 535.94),
    ("h100-sxm5-80gb", "dgx-h100", 16, 2, 54.47), ("h100-sxm5-80gb", "dgx-h100", 32, 4, 47.36),
    ("h100-sxm5-80gb", "dgx-h100", 64, 8, 41.24),
]


@pytest.mark.parametrize(("device", "node", "ranks", "domains", "measured"), HYBRID_EP_README)
def test_distinct_dispatch_against_the_hybrid_ep_readme(device, node, ranks, domains, measured):
    """The 'distinct' dispatch time on the shipped profiles, in the README's bandwidth
    convention, against HybridEP's published micro-benchmark: within 20 % on GB200 NVL72
    (8-36 ranks, -1..+9 %), B200 (+16 %) and 4 / 8 H100 nodes (+14 %, +12 %); 2 H100 nodes
    are 47 % faster than measured (the RDMA part there runs at half the NIC rate in the README,
    which the all-to-all fit does not know): a known gap, bounded at 60 %."""
    rs = resolve(pm.Scenario(kind="training", model="llama-3-8b",
                             system={"device": device, "num_gpus": ranks, "node": node},
                             training={"seq_len": 4096, "global_batch": ranks}))
    span = GroupSpan(size=float(ranks), local=float(ranks // domains), nodes=float(domains))
    experts = 8 * ranks
    fwd, _ = PC.ep_layer_comm(4096, 1, 8, 7168, 2.0, span, rs.system, rs.profile, False,
                              volume="distinct", experts=experts)
    copies = PC.distinct_groups(experts, 8, domains if domains > 1 else ranks)
    predicted = 4096 * float(copies) * 7168 * 2 / (float(fwd) / 2) / 1e9
    tolerance = 0.6 if (device, ranks) == ("h100-sxm5-80gb", 16) else 0.2
    assert predicted == pytest.approx(measured, rel=tolerance)
