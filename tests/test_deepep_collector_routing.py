"""The multi-node DeepEP normal tables are sized with the routing their collector drew
(converters.aic_deepep): ai-dynamo/aiconfigurator collector/deep_collector/test_internode.py
(at 97c28ba6fcc0a1e29987f4848df5ba786d71653e, run with its defaults) groups the experts by
node (``scores.view(num_tokens, num_nodes, -1)``), keeps the ``min(num_nodes, 4)`` groups of
highest max score and takes the top-k among their experts; test_intranode.py (one node) takes
the plain top-k. Hand numbers for DeepSeek-V3's shapes (256 experts, top 8, hidden 7168)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from perfmodel.calibrate import converters as C
from perfmodel.calibrate.reference import sources_dir
from perfmodel.moe_parallel import COMBINE_BYTES, DEEPEP_FP8_BYTES

E, K, HIDDEN = 256, 8, 7168
TABLES = "aiconfigurator/systems/data/{dev}/comm/sglang/0.5.6.post2/wideep_deepep_{mode}_perf.parquet"


def _uniform(groups: int) -> float:
    """Expected distinct groups of E/groups experts hit by K distinct uniform experts."""
    return groups * (1 - comb(E - E // groups, K) / comb(E, K))


def _records(dev: str, mode: str) -> dict[tuple, dict]:
    path = sources_dir() / TABLES.format(dev=dev, mode=mode)
    return {(r["params"]["collective"], r["params"]["group_size"], r["params"]["tokens"]):
            r["params"] for r in C.aic_deepep(path, mode, nodes=[2, 4, 8])}


@pytest.mark.parametrize("dev", ["h100_sxm", "h200_sxm"])
def test_normal_rows_sized_with_the_collectors_node_limited_routing(dev):
    recs = _records(dev, "normal")
    # 8 nodes, top 4 node groups: 4 of 8 nodes reached (8 x 4/8), not uniform routing's 5.29;
    # the per-rank unit (64 ranks of 4 experts, 7.68 uniform) scaled by 4 / 5.29
    d_r64, d_n8 = _uniform(64), _uniform(8)
    assert d_n8 == pytest.approx(5.2947, abs=1e-4)
    copies8 = d_r64 * 4 / d_n8
    assert copies8 == pytest.approx(5.7989, abs=1e-4)
    # 2 and 4 nodes: every node a selected group, uniform routing (6.52 / 7.27 ranks)
    for nodes, copies in ((2, _uniform(16)), (4, _uniform(32)), (8, copies8)):
        n = 8 * nodes
        rows = [(k, p) for k, p in recs.items() if k[1] == n]
        assert len(rows) == 2 * 23  # dispatch + combine at 23 token counts
        for (coll, _, tokens), p in rows:
            elem = DEEPEP_FP8_BYTES if coll == "ep_dispatch_normal" else COMBINE_BYTES
            assert p["bytes"] == pytest.approx(tokens * copies * HIDDEN * elem, rel=1e-12)
            assert (p["topk"], p["experts"], p["hidden"]) == (K, E, HIDDEN)


def test_low_latency_rows_stay_top_k_copies():
    for (coll, n, tokens), p in _records("h100_sxm", "ll").items():
        elem = DEEPEP_FP8_BYTES if coll == "ep_dispatch_ll" else COMBINE_BYTES
        assert p["bytes"] == pytest.approx(tokens * K * HIDDEN * elem, rel=1e-12), (coll, n)


def test_collector_gate_reaches_about_four_of_eight_nodes():
    """The collector's gate (group score = max expert score, top 4 of 8 node groups, top 8 of
    their 128 experts) on its i.i.d. |N(0,1)| + 1 scores reaches 3.98 nodes on average: the
    k/M-per-group rule's 4.0 (parallel_comm.distinct_groups) within 1 %, where plain top-8 of
    the 128 experts would give 4 (1 - C(96, 8) / C(128, 8)) = 3.62."""
    rng = np.random.default_rng(0)
    tokens, nodes, top_groups = 20000, 8, 4
    scores = np.abs(rng.standard_normal((tokens, E))) + 1
    group = scores.reshape(tokens, nodes, -1).max(-1)
    keep = np.argsort(-group, axis=1)[:, :top_groups]
    mask = np.zeros((tokens, nodes), bool)
    np.put_along_axis(mask, keep, True, axis=1)
    masked = np.where(np.repeat(mask, E // nodes, axis=1), scores, 0.0)
    node = np.sort(np.argsort(-masked, axis=1)[:, :K] // (E // nodes), axis=1)
    distinct = 1 + (np.diff(node, axis=1) != 0).sum(axis=1)
    assert distinct.mean() == pytest.approx(4.0, rel=0.01)
    assert 4 * (1 - comb(96, 8) / comb(128, 8)) == pytest.approx(3.62, abs=0.01)
    assert abs(distinct.mean() - 4.0) < abs(distinct.mean() - 3.62)
