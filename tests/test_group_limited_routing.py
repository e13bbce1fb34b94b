"""Group-limited (node-limited) routing in the expert all-to-all volume: DeepSeek-V3's 8
routing groups, each token within its top 4 (arXiv 2412.19437 Sec. 2.1.2; config.json n_group /
topk_group), carried by MoESpec, read from config.json, and followed by the distinct
destination counts of parallel_comm.distinct_groups (training's flex dispatchers) and
moe_parallel.copies_per_token (DeepEP normal mode in serving). Hand calculations, an
enumeration written apart from the code's table, and DeepSeek's gate on random scores."""

from __future__ import annotations

import itertools
import json
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import parallel_comm as PC
from perfmodel.moe_parallel import copies_per_token
from perfmodel.specs.model import MoESpec
from perfmodel.topology import GroupSpan
from perfmodel.zoo import resolve_model
from perfmodel.zoo.hf import model_from_hf_config

E, K, NG, M = 256, 8, 8, 4  # DeepSeek-V3: 256 experts top-8, 8 groups, top-4 groups
CONFIGS = "tests/data/hf_configs/aiconfigurator-0.12.0/"


def _enumerated(nodes: int) -> float:
    """Expected distinct nodes, straight from the rule: every one of the C(8, 4) = 70 group
    selections alike, 2 experts drawn uniformly inside each selected group of 32; node d
    holds experts [256 d / nodes, 256 (d + 1) / nodes), x_q of group q; a node is missed when
    every selected group's 2 draws avoid its x_q: (32 - x)(31 - x) / (32 x 31)."""
    width = E / nodes
    total = 0.0
    for d in range(nodes):
        lo, hi = d * width, (d + 1) * width
        held = [max(0.0, min(hi, 32.0 * (q + 1)) - max(lo, 32.0 * q)) for q in range(NG)]
        miss = 0.0
        for sel in itertools.combinations(range(NG), M):
            p = 1.0
            for q in sel:
                p *= max(32 - held[q], 0) * max(31 - held[q], 0) / (32 * 31)
            miss += p
        total += 1 - miss / comb(NG, M)
    return total


def test_deepseek_v3_distinct_nodes_by_hand():
    """8 nodes (one group each): a node is reached iff its group is selected, 8 x 4/8 = 4
    (DeepEP docs/legacy.md: 'at most 4 nodes'; uniform routing 8 (1 - C(224, 8)/C(256, 8))
    = 5.29). 4 nodes (two groups each): missed iff neither is selected, C(6, 4)/C(8, 4) =
    15/70, 4 x 55/70 = 3.143 (uniform 3.614). 9 nodes (28.4 experts each, straddling the
    groups): the enumeration, 4.99 (uniform 5.54)."""
    assert float(PC.distinct_groups(E, K, 8, NG, M)) == pytest.approx(4.0)
    assert float(PC.distinct_groups(E, K, 4, NG, M)) == pytest.approx(4 * 55 / 70)
    assert float(PC.distinct_groups(E, K, 9, NG, M)) == pytest.approx(_enumerated(9))
    assert _enumerated(9) == pytest.approx(4.988, abs=1e-3)
    for nodes in (4, 8):
        assert _enumerated(nodes) == pytest.approx(float(PC.distinct_groups(E, K, nodes, NG, M)))
    assert float(PC.distinct_groups(E, K, 8)) == pytest.approx(8 * (1 - comb(224, 8) / comb(256, 8)))
    assert float(PC.distinct_groups(E, K, 4)) == pytest.approx(4 * (1 - comb(192, 8) / comb(256, 8)))
    # ranks of 4 experts (EP 64): reached iff the group is selected and a draw lands on it
    ranks = 64 * 0.5 * (1 - comb(28, 2) / comb(32, 2))
    assert float(PC.distinct_groups(E, K, 64, NG, M)) == pytest.approx(ranks)
    # array-friendly, one node and no limit unchanged
    got = PC.distinct_groups(E, K, np.array([1.0, 4.0, 8.0]), NG, M)
    assert got.tolist() == pytest.approx([1.0, 4 * 55 / 70, 4.0])
    assert float(PC.distinct_groups(E, K, 8, 1, 1)) == float(PC.distinct_groups(E, K, 8))
    assert float(PC.distinct_groups(E, K, 8, 8, 8)) == float(PC.distinct_groups(E, K, 8))


def test_the_rule_against_deepseeks_gate_on_random_scores():
    """DeepSeek-V3's gate (inference/model.py Gate with a bias: group score = sum of the
    group's top-2 scores, top-4 groups, top-8 experts among them) on i.i.d. scores: the
    distinct destinations of the k/M-per-group rule within 7 % at 2-64 destinations (Monte
    Carlo, 4000 tokens)."""
    rng = np.random.default_rng(0)
    scores = rng.random((4000, E))
    groups = scores.reshape(-1, NG, E // NG)
    group_score = np.sort(groups, axis=-1)[:, :, -2:].sum(-1)
    keep = np.argsort(-group_score, axis=1)[:, :M]
    mask = np.full((len(scores), NG), -np.inf)
    np.put_along_axis(mask, keep, 0.0, axis=1)
    top = np.argsort(-(groups + mask[:, :, None]).reshape(len(scores), E), axis=1)[:, :K]
    for dest in (2, 4, 8, 16, 32, 64):
        seen = np.mean([len(set(row)) for row in top // (E // dest)])
        assert float(PC.distinct_groups(E, K, dest, NG, M)) == pytest.approx(seen, rel=0.07)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([2, 4, 8, 16]), st.integers(1, 32), st.data())
def test_dedup_never_raises_traffic(n_group, size, data):
    """For any group-limited routing and destinations nested in larger ones (ranks in
    nodes): 1 <= nodes <= ranks <= min(top_k, ranks count) (a destination count never above
    the per-expert copies, a coarser de-duplication never above a finer one), at most
    topk_group nodes when nodes align with the routing groups, and the serving copies never
    above top_k nor, for DeepSeek-like limits, above uniform routing's."""
    experts = n_group * size
    topk_group = data.draw(st.integers(1, n_group))
    top_k = data.draw(st.integers(1, min(topk_group * size, 16)))
    divisors = [d for d in range(1, experts + 1) if experts % d == 0]
    nodes = data.draw(st.sampled_from(divisors))
    ranks = data.draw(st.sampled_from([d for d in divisors if d % nodes == 0]))
    dn = float(PC.distinct_groups(experts, top_k, nodes, n_group, topk_group))
    dr = float(PC.distinct_groups(experts, top_k, ranks, n_group, topk_group))
    assert 1 - 1e-9 <= dn <= dr + 1e-9
    assert dr <= min(top_k, ranks) + 1e-9
    if n_group % nodes == 0:
        assert dn <= topk_group + 1e-9
    for domains in (1.0, float(nodes)):
        c = float(copies_per_token("normal", top_k, experts, ranks, domains, n_group,
                                   topk_group))
        assert c <= top_k + 1e-9
    assert copies_per_token("ll", top_k, experts, ranks, nodes, n_group, topk_group) == top_k


@pytest.mark.parametrize(("ep", "nodes"), [(8, 1), (32, 4), (64, 8), (72, 9), (72, 1)])
def test_deepseek_v3_serving_copies(ep, nodes):
    """DeepEP normal mode: one NVLink domain (an 8-GPU node, or a GB200 NVL72 rack holding
    EP 72: the domain is the topology's, not 8 GPUs) sends one copy per destination rank
    under the limited routing; across nodes the tables' per-rank unit scaled by the
    routing's share of destination nodes; low latency top_k always. Never above uniform
    routing here."""
    uniform = float(copies_per_token("normal", K, E, ep, nodes))
    got = float(copies_per_token("normal", K, E, ep, nodes, NG, M))
    if nodes == 1:
        assert got == pytest.approx(float(PC.distinct_groups(E, K, ep, NG, M)))
    else:
        scale = float(PC.distinct_groups(E, K, nodes, NG, M)) / float(
            PC.distinct_groups(E, K, nodes))
        assert got == pytest.approx(uniform * scale)
    assert got <= uniform
    assert uniform == float(PC.distinct_groups(E, K, ep))  # the tables' own sizing
    # 4 nodes: 13 % smaller, 8 nodes: 24 % (docstring)
    if nodes == 4:
        assert got / uniform == pytest.approx((4 * 55 / 70) / 3.6142, rel=1e-3)
    assert float(copies_per_token("ll", K, E, ep, nodes, NG, M)) == K


def test_training_distinct_dispatch_follows_the_groups():
    """ep_layer_comm 'distinct' with a stand-in collective time (1 ns per byte): the RDMA
    part of DeepSeek-V3 on 8 nodes x 8 GPUs sends t x 4 nodes instead of t x 5.29."""
    from perfmodel import parallel_comm

    sent = []

    def fake(kind, nbytes, span, system, profile):
        sent.append((float(np.asarray(span.size)), float(np.asarray(nbytes))))
        return np.asarray(nbytes, float) * 1e-9

    span = GroupSpan(size=64.0, local=8.0, nodes=8.0)
    orig = parallel_comm.collective_time
    parallel_comm.collective_time = fake
    try:
        PC.ep_layer_comm(4096, 1, K, 7168, 2.0, span, None, None, False, volume="distinct",
                         experts=E, n_group=NG, topk_group=M)
    finally:
        parallel_comm.collective_time = orig
    t_bytes = 4096 * 7168 * 2.0
    nvl, rdma = sent
    assert nvl == (8.0, pytest.approx(t_bytes * float(PC.distinct_groups(E, K, 64, NG, M))))
    assert rdma == (8.0, pytest.approx(t_bytes * 4.0))


def test_spec_and_hf_import_carry_the_groups():
    """DeepSeek-V3 / R1 / V3.2 configs: 8 / 4 (and the preset, from the same config.json);
    Kimi K2, GLM-5: 1 / 1; DeepSeek-V2-Lite (topk_method greedy): no limit; bad values name
    the field."""
    dsv3 = resolve_model("deepseek-v3").moe
    assert (dsv3.n_group, dsv3.topk_group) == (8, 4)
    for name, want in (("deepseek-ai--DeepSeek-V3_config.json", (8, 4)),
                       ("deepseek-ai--DeepSeek-R1_config.json", (8, 4)),
                       ("deepseek-ai--DeepSeek-V3.2_config.json", (8, 4)),
                       ("moonshotai--Kimi-K2-Instruct_config.json", (1, 1)),
                       ("zai-org--GLM-5_config.json", (1, 1))):
        with open(CONFIGS + name) as f:
            moe = model_from_hf_config(json.load(f)).moe
        assert moe.routing_groups == want, name
    with open("tests/data/hf_configs/deepseek-v3.json") as f:
        assert model_from_hf_config(json.load(f)).moe.routing_groups == (8, 4)
    with open("tests/data/hf_configs/deepseek-v2-lite.json") as f:
        assert model_from_hf_config(json.load(f)).moe.routing_groups == (1, None)
    base = {"num_experts": 256, "top_k": 8, "expert_ffn_hidden_size": 2048}
    with pytest.raises(ValueError, match=r"moe\.topk_group"):
        MoESpec(**base, n_group=8, topk_group=9)
    with pytest.raises(ValueError, match=r"moe\.n_group"):
        MoESpec(**base, n_group=7, topk_group=4)
    with pytest.raises(ValueError, match=r"moe\.top_k"):
        MoESpec(**base, n_group=64, topk_group=1)


def test_an_nvl72_rack_is_one_domain_for_the_normal_dispatch():
    """DeepSeek-V3 wide EP 72 on a GB200 NVL72 rack: the EP group is one NVLink domain (the
    node file's 72 GPUs, not 9 groups of 8), so the normal dispatch sends the limited
    distinct-rank count (7.67 per token), not the multi-node scaling; on 9 H100 nodes the same
    EP 72 takes the per-node scaling. Checked through stage_comm's dispatch bytes (1 ns per
    byte stand-in)."""
    import perfmodel as pm
    from perfmodel import moe_parallel
    from perfmodel.moe_parallel import stage_comm
    from perfmodel.resolve import inference_inputs, resolve

    sent = {}

    def fake(kind, nbytes, span, system, profile):
        if kind.startswith("ep_dispatch"):
            sent["nodes"] = float(np.asarray(span.nodes))
            sent["bytes"] = float(np.asarray(nbytes))
        return np.asarray(nbytes, float) * 1e-9

    for device, node, domains in (("gb200", "gb200-nvl72", 1.0), ("h100-sxm5-80gb", "dgx-h100", 9.0)):
        rs = resolve(pm.Scenario(
            kind="inference", model="deepseek-v3",
            system={"device": device, "num_gpus": 72, "node": node},
            parallelism={"tp": 1, "attention_dp": 72, "ep": 72, "a2a_mode": "normal",
                         "redundant_experts": 32},
            inference={"batch": 72, "prompt_len": 1024, "output_len": 1, "weight_dtype": "fp8",
                       "activation_dtype": "fp8"}))
        model = rs.scenario.model
        plan = inference_inputs(rs.scenario, rs.system, rs.profile).plan
        orig = moe_parallel.collective_time
        moe_parallel.collective_time = fake
        try:
            stage_comm(model, plan, 72 * 1024.0, "prefill", 2.0, rs.system, rs.profile)
        finally:
            moe_parallel.collective_time = orig
        assert sent["nodes"] == domains
        copies = copies_per_token("normal", K, E, 72, domains, NG, M)
        per_rank_bytes = 1024 * 7168 * (1 + 4 / 128)  # one rank's tokens, fp8 + scales
        assert sent["bytes"] == pytest.approx(per_rank_bytes * float(copies))
    assert float(copies_per_token("normal", K, E, 72, 1.0, NG, M)) == pytest.approx(7.6703, abs=1e-4)
