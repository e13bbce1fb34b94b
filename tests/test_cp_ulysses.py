"""All-to-all (DeepSpeed-Ulysses) context parallelism against hand calculations of the paper's
volumes (Jacobs et al. 2023 arXiv 2309.14509 Sec. 3, communication analysis) and its selection by the framework."""

import numpy as np
import pytest

from perfmodel.api import predict
from perfmodel.comm import collective_time, intra_bandwidth
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.parallel_comm import cp_a2a_bytes, cp_a2a_comm
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, profile_for
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan
from perfmodel.zoo import get_model

PROF = default_profile()
SYSTEM = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64,
                                     inter_node="ib-ndr-400x8"))
MiB = 2**20


def test_ulysses_bytes_are_the_papers_4Nh_over_P_for_multi_head_attention():
    """MHA (Llama-2-7B: h 4096, 32 heads of 128), N = 131072 tokens, P = 8, bf16: each rank
    holds N/P = 16384 tokens; Q, K, V and the output are each (N/P) x h x 2 B = 128 MiB, the
    paper's aggregate 3Nh + Nh over P ranks = 4 x 16384 x 4096 x 2 B = 512 MiB per GPU."""
    model = get_model("llama-2-7b")
    q, k, v, out = cp_a2a_bytes(model, 131072 / 8, 1, 8, 2.0)
    assert [float(x) for x in (q, k, v, out)] == [128 * MiB] * 4
    assert float(q + k + v + out) == 4 * 131072 * 4096 * 2 / 8


def test_ulysses_gqa_kv_replicated_up_to_the_sp_degree():
    """Llama-3-8B: 32 query heads, 8 K/V heads of 128. At P = 8 K and V keep their 8 heads:
    16384 tokens x 8 x 128 x 2 B = 32 MiB each. At P = 16 DeepSpeed's UlyssesSPAttentionHF
    repeats them to 16 heads (kv_replication_factor 2): 8192 x 16 x 128 x 2 B = 32 MiB, not
    the 16 MiB of 8 heads; Q at P = 16 is 8192 x 4096 x 2 B = 64 MiB. TP 2 halves every head
    count first (Q 16 heads, K/V max(4, 8) = 8 heads at P = 8)."""
    model = get_model("llama-3-8b")
    _, k8, v8, _ = cp_a2a_bytes(model, 16384, 1, 8, 2.0)
    assert (float(k8), float(v8)) == (32 * MiB, 32 * MiB)
    q16, k16, _, out16 = cp_a2a_bytes(model, 8192, 1, 16, 2.0)
    assert (float(q16), float(k16), float(out16)) == (64 * MiB, 32 * MiB, 64 * MiB)
    q_tp, k_tp, _, _ = cp_a2a_bytes(model, 16384, 2, 8, 2.0)
    assert (float(q_tp), float(k_tp)) == (16384 * 16 * 128 * 2, 16384 * 8 * 128 * 2)


def test_ulysses_comm_is_four_all_to_alls_each_way_all_exposed():
    """Forward: Q, K, V and output all-to-alls; backward: the same four transposed; nothing
    overlaps them (the paper's Fig. 2). One all-to-all of M bytes over 8 NVSwitch ranks puts
    M x 7/8 on each GPU's link (comm.collective_time)."""
    node8 = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    sizes = (128 * MiB, 32 * MiB, 32 * MiB, 128 * MiB)
    one = sum(float(collective_time("all_to_all", b, node8, SYSTEM, PROF)) for b in sizes)
    res = cp_a2a_comm(*sizes, 8, node8, SYSTEM, PROF)
    assert float(res.total) == pytest.approx(2 * one)
    assert float(res.exposed) == float(res.total)
    assert float(res.hidden_fwd) == 0.0 and float(res.hidden_bwd) == 0.0
    # full recompute runs the forward's four again
    rec = cp_a2a_comm(*sizes, 8, node8, SYSTEM, PROF, recompute=True)
    assert float(rec.total) == pytest.approx(3 * one)
    assert float(cp_a2a_comm(*sizes, 1, GroupSpan(1.0, 1.0, 1.0), SYSTEM, PROF).total) == 0.0
    # per-GPU wire bytes of the forward: (128 + 32 + 32 + 128) MiB x 7/8 = 280 MiB; NVLink4
    # carries 450 GB/s per direction: at most that rate, at least a quarter of it
    bw = float(intra_bandwidth(SYSTEM, 8.0))
    assert bw == pytest.approx(450e9, rel=0.01)
    assert 280 * MiB / bw < one < 4 * 280 * MiB / bw


def test_array_dimensions_broadcast():
    model = get_model("llama-3-8b")
    cp = np.array([2.0, 4.0, 8.0])
    q, k, _, _ = cp_a2a_bytes(model, 65536 / cp, 1, cp, 2.0)
    assert np.allclose(q, 65536 / cp * 4096 * 2)
    assert np.allclose(k, 65536 / cp * np.maximum(8, cp) * 128 * 2)


def test_framework_selects_ulysses_and_a_scenario_may_override():
    assert resolve_framework(FrameworkConfig(name="deepspeed")).cp_implementation == "a2a"
    assert resolve_framework(FrameworkConfig(name="torchtitan")).cp_implementation == "allgather"
    assert resolve_framework(FrameworkConfig(name="fsdp")).cp_implementation == "none"
    over = resolve_framework(FrameworkConfig(name="torchtitan", cp_implementation="a2a"))
    assert over.cp_implementation == "a2a" and over.describe()["cp_implementation"] == "a2a"


def _scenario(cp_impl: str | None) -> dict:
    framework = {"name": "torchtitan"}
    if cp_impl:
        framework["cp_implementation"] = cp_impl
    return {"kind": "training", "model": "llama-3.1-8b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
            "parallelism": {"tp": 1, "pp": 1, "dp": 1, "cp": 8, "zero_stage": 3},
            "training": {"seq_len": 131072, "global_batch": 1, "micro_batch": 1,
                         "precision": "bf16", "recompute": "full", "framework": framework}}


def test_prediction_uses_the_a2a_cost_for_cp():
    """Through the whole step: the CP traffic of an a2a run is 32 layers x (2 + 1 recompute)
    passes of the four all-to-alls, all exposed; the all-gather run's is another number."""
    a2a = predict(_scenario("a2a"))
    ag = predict(_scenario(None))
    node8 = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    model = get_model("llama-3.1-8b")
    system = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=8))
    per_layer = float(cp_a2a_comm(*cp_a2a_bytes(model, 16384, 1, 8, 2.0), 8, node8, system,
                                  profile_for("h100-sxm5-80gb"), recompute=True).total)
    cp = a2a.breakdown["communication"]["cp"]
    assert cp["total_s"] == pytest.approx(32 * per_layer, rel=1e-6)
    assert cp["exposed_s"] == pytest.approx(cp["total_s"])
    assert ag.breakdown["communication"]["cp"]["total_s"] != pytest.approx(cp["total_s"])


def test_ulysses_has_no_causal_imbalance():
    """Every Ulysses rank attends over the whole sequence with H/P heads: the same causal work
    on every rank, unlike an unbalanced ring (2 - 1/cp = 1.875 at cp 8)."""
    from perfmodel.frameworks_costs import cp_imbalance_factor

    a2a = resolve_framework(FrameworkConfig(name="deepspeed"))
    assert a2a.cp_load_balance is False
    assert float(cp_imbalance_factor(a2a, 8, causal=True)) == 1.0
    ring = resolve_framework(FrameworkConfig(name="deepspeed", cp_implementation="p2p_ring"))
    assert float(cp_imbalance_factor(ring, 8, causal=True)) == pytest.approx(1.875)
