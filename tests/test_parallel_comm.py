"""Per-dimension training communication against hand calculations and the papers' volumes."""

import numpy as np
import pytest

from perfmodel.comm import collective_time
from perfmodel.parallel_comm import (
    DataParallelWork,
    cp_allgather_comm,
    cp_kv_chunk_bytes,
    cp_ring_comm,
    dp_buckets,
    dp_step_comm,
    ep_layer_comm,
    tp_layer_comm,
    tp_overlap,
)
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan
from perfmodel.zoo import get_model

PROF = default_profile()
SYSTEM = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64,
                                     inter_node="ib-ndr-400x8"))
NODE8 = GroupSpan(size=8.0, local=8.0, nodes=1.0)
ONE = GroupSpan(1.0, 1.0, 1.0)


def test_tp_layer_is_two_all_reduces_each_way_shoeybi_sec_3():
    act = 1 * 4096 * 8192 * 2  # b s h bytes (Llama-3-70B hidden, bf16)
    ar = float(collective_time("all_reduce", act, NODE8, SYSTEM, PROF))
    fwd, bwd = tp_layer_comm(act, False, NODE8, SYSTEM, PROF, full_recompute=False)
    assert float(fwd) == pytest.approx(2 * ar) and float(bwd) == pytest.approx(2 * ar)
    # Korthikanti et al. 2022 Sec. 5: full recompute repeats the forward's communication
    _, bwd_full = tp_layer_comm(act, False, NODE8, SYSTEM, PROF, full_recompute=True)
    assert float(bwd_full) == pytest.approx(4 * ar)
    # sequence parallelism: all-gather + reduce-scatter in place of each all-reduce (Sec. 4.2.2)
    ag = float(collective_time("all_gather", act, NODE8, SYSTEM, PROF))
    rs = float(collective_time("reduce_scatter", act, NODE8, SYSTEM, PROF))
    fwd_sp, _ = tp_layer_comm(act, True, NODE8, SYSTEM, PROF, full_recompute=False)
    assert float(fwd_sp) == pytest.approx(2 * (ag + rs))
    hidden = tp_overlap(1.0, 1.0, 0.4, 3.0, overlap=True)
    assert hidden.exposed == pytest.approx(0.6)  # forward: 1.0 - 0.4; backward: all hidden
    assert (hidden.hidden_fwd, hidden.hidden_bwd) == (0.4, 1.0)  # compute the traffic takes
    assert tp_overlap(1.0, 1.0, 0.4, 3.0, overlap=False).exposed == 2.0


def test_ep_all_to_all_moves_tokens_over_tp_times_top_k_times_hidden():
    """Dispatch + combine each move T/tp x k x h activations (Lepikhin et al. 2020)."""
    tokens, tp, k, h = 4096, 2, 8, 7168  # DeepSeek-V3: top-8 of 256 experts, h 7168
    one = float(collective_time("all_to_all", tokens / tp * k * h * 2, NODE8, SYSTEM, PROF))
    fwd, bwd = ep_layer_comm(tokens, tp, k, h, 2.0, NODE8, SYSTEM, PROF, False)
    assert (float(fwd), float(bwd)) == pytest.approx((2 * one, 2 * one))


def test_cp_ring_steps_hide_behind_attention_liu_2023():
    model = get_model("llama-3-70b")
    chunk = cp_kv_chunk_bytes(model, 8192, 8, 2.0)
    assert chunk == 8192 * 2 * (8 / 8) * 128 * 2  # K and V of one KV head per TP rank
    ring = cp_ring_comm(chunk, 4, NODE8, attn_fwd=0.0, attn_bwd=0.0, system=SYSTEM,
                        profile=PROF)
    assert float(ring.exposed) == pytest.approx(float(ring.total)) and float(ring.total) > 0
    ring = cp_ring_comm(chunk, 4, NODE8, 10.0, 10.0, SYSTEM, PROF)
    assert float(ring.exposed) == 0.0  # all cp-1 steps behind 1/cp of a long attention each
    assert float(ring.hidden_fwd + ring.hidden_bwd) == pytest.approx(float(ring.total))
    none = cp_ring_comm(chunk, 1, NODE8, 0.0, 0.0, SYSTEM, PROF)
    assert (float(none.total), float(none.exposed)) == (0.0, 0.0)


def test_cp_ring_repeats_forward_under_full_recompute():
    """Full recompute re-runs the forward ring in backward: one more K/V pass of cp-1 steps."""
    chunk = cp_kv_chunk_bytes(get_model("llama-3-70b"), 8192, 8, 2.0)
    base = cp_ring_comm(chunk, 4, NODE8, 0.0, 0.0, SYSTEM, PROF)
    again = cp_ring_comm(chunk, 4, NODE8, 0.0, 0.0, SYSTEM, PROF, recompute=True)
    step = float(collective_time("send_recv", chunk, GroupSpan(2.0, 2.0, 1.0), SYSTEM, PROF))
    assert float(again.total - base.total) == pytest.approx(3 * step)


def test_cp_allgather_hides_only_behind_the_first_sub_attention():
    """torch _AllGatherRotater: one all-gather of every rank's K/V per forward pass, hidden
    behind the local (first) 1/cp of the attention; backward: the gather again and cp dK/dV
    ring exchanges (fp32: twice the K/V bytes), the last one exposed. By hand for Llama 3 8B,
    32768 tokens per rank, K/V repeated to all 32 heads (torchtitan repeat_kv)."""
    model = get_model("llama-3-8b")
    chunk = cp_kv_chunk_bytes(model, 32768, 1, 2.0, at_query_heads=True)
    assert chunk == 32768 * 2 * 32 * 128 * 2
    gather = float(collective_time("all_gather", 8 * chunk, NODE8, SYSTEM, PROF))
    dkv = float(collective_time("send_recv", 2 * chunk, GroupSpan(2.0, 2.0, 1.0), SYSTEM, PROF))
    # no compute to hide behind: everything exposed
    bare = cp_allgather_comm(chunk, 8, NODE8, 0.0, 0.0, SYSTEM, PROF, grad_ratio=2.0)
    assert float(bare.total) == pytest.approx(2 * gather + 8 * dkv)
    assert float(bare.exposed) == pytest.approx(float(bare.total))
    # a long attention: only the last dK/dV exchange stays exposed
    long = cp_allgather_comm(chunk, 8, NODE8, 10.0, 10.0, SYSTEM, PROF, grad_ratio=2.0)
    assert float(long.exposed) == pytest.approx(dkv)
    # the forward gather hides behind 1/cp of the forward attention only
    part = cp_allgather_comm(chunk, 8, NODE8, 8 * gather / 2, 10.0, SYSTEM, PROF,
                             grad_ratio=2.0)
    assert float(part.exposed) == pytest.approx(gather / 2 + dkv)
    rec = cp_allgather_comm(chunk, 8, NODE8, 0.0, 0.0, SYSTEM, PROF, grad_ratio=2.0,
                            recompute=True)
    assert float(rec.total - bare.total) == pytest.approx(gather)
    assert float(cp_allgather_comm(chunk, 1, NODE8, 0.0, 0.0, SYSTEM, PROF).total) == 0.0


def _work(zero: int, params: float, m: int = 4, **kw) -> DataParallelWork:
    base = dict(zero_stage=zero, dense_params=params, expert_params=0.0, layers=80,
                microbatches=m, grad_bytes=2.0, weight_bytes=2.0, bucket_params=None,
                overlap_grad_reduce=False, overlap_param_gather=False, fwd_compute=0.0,
                bwd_compute=0.0)
    return DataParallelWork(**{**base, **kw})


def test_dp_buckets_follow_megatron_and_fsdp_defaults():
    assert float(dp_buckets(_work(1, 100e6))) == 3  # ceil(100M / 40M)
    assert float(dp_buckets(_work(3, 100e6))) == 80  # one gather per layer
    assert float(dp_buckets(_work(1, 100e6, bucket_params=50e6))) == 2  # DeepSpeed 5e7


def test_zero3_moves_one_and_a_half_times_ddp_per_micro_batch_rajbhandari_sec_7():
    """ZeRO Sec. 7.2.2: stage 3 communicates 3 Psi (all-gather forward, all-gather backward,
    reduce-scatter) against 2 Psi for DDP's all-reduce; FSDP repeats it per micro-batch."""
    grad = GroupSpan(size=8.0, local=1.0, nodes=8.0)
    params, m = 8e9, 4  # bandwidth-bound sizes: latency is negligible
    one = {"bucket_params": params}  # one bucket each: volumes, not per-bucket latency
    ddp, _ = dp_step_comm(_work(0, params, m, **one), grad, ONE, SYSTEM, PROF)
    z3, _ = dp_step_comm(_work(3, params, m, **one), grad, ONE, SYSTEM, PROF)
    assert float(z3) / float(ddp) == pytest.approx(1.5 * m, rel=0.02)
    z1, _ = dp_step_comm(_work(1, params, m, **one), grad, ONE, SYSTEM, PROF)
    assert float(z1) / float(ddp) == pytest.approx(1.0, rel=0.02)  # RS + AG = AR (Sec. 7.2.1)


def test_dp_overlap_leaves_one_bucket_exposed_and_one_replica_costs_nothing():
    grad = GroupSpan(size=8.0, local=1.0, nodes=8.0)
    total, exposed = dp_step_comm(_work(0, 400e6, overlap_grad_reduce=True, bwd_compute=1e3),
                                  grad, ONE, SYSTEM, PROF)
    assert float(exposed) == pytest.approx(float(total) / 10)  # 10 buckets, the last exposed
    assert dp_step_comm(_work(0, 400e6), ONE, ONE, SYSTEM, PROF) == (0.0, 0.0)
    assert np.all(np.asarray(dp_step_comm(_work(1, np.array([1e8, 1e9])), grad, ONE, SYSTEM,
                                          PROF)[0]) > 0)


def test_zero1_param_gather_hides_only_behind_the_first_micro_batch_forward():
    """Megatron's overlapped param all-gather chains bucket by bucket through the first
    micro-batch's forward pre-hooks: by hand, exposed = reduce-scatter + first bucket of the
    gather + what the rest of the gather exceeds of that forward (10 buckets of 40M)."""
    grad = GroupSpan(size=8.0, local=1.0, nodes=8.0)
    rs = 10 * collective_time("reduce_scatter", 40e6 * 2.0, grad, SYSTEM, PROF)
    ag = 10 * collective_time("all_gather", 40e6 * 2.0, grad, SYSTEM, PROF)
    total, exposed = dp_step_comm(_work(1, 400e6), grad, ONE, SYSTEM, PROF)
    assert float(total) == pytest.approx(rs + ag) and float(exposed) == pytest.approx(rs + ag)
    # bucket i + 1's gather hides behind bucket i's forward only: at most 9/10 of either
    for fwd, hidden in ((1e3, 0.9 * ag), (0.3 * ag, 0.9 * 0.3 * ag)):
        _, exposed = dp_step_comm(_work(1, 400e6, overlap_param_gather=True, fwd_compute=fwd),
                                  grad, ONE, SYSTEM, PROF)
        assert float(exposed) == pytest.approx(rs + ag - hidden)


def test_zero2_reduces_every_micro_batch_where_the_framework_says_so():
    """DeepSpeed#2252 / Megatron-FSDP no_sync: a ZeRO-2 that keeps only its gradient shard
    reduce-scatters after every backward (m reductions, each hidden behind its own backward);
    one that accumulates whole gradients reduces once a step, as ZeRO-1."""
    grad = GroupSpan(size=8.0, local=1.0, nodes=8.0)
    rs = 10 * collective_time("reduce_scatter", 40e6 * 2.0, grad, SYSTEM, PROF)
    ag = 10 * collective_time("all_gather", 40e6 * 2.0, grad, SYSTEM, PROF)
    each = {"microbatch_reduction_stages": (2,)}
    once, _ = dp_step_comm(_work(2, 400e6, m=4), grad, ONE, SYSTEM, PROF)
    every, exposed = dp_step_comm(_work(2, 400e6, m=4, **each), grad, ONE, SYSTEM, PROF)
    assert float(once) == pytest.approx(rs + ag) and float(every) == pytest.approx(4 * rs + ag)
    assert float(exposed) == pytest.approx(4 * rs + ag)  # no overlap asked
    _, hidden = dp_step_comm(_work(2, 400e6, m=4, overlap_grad_reduce=True, bwd_compute=1e3,
                                   **each), grad, ONE, SYSTEM, PROF)
    assert float(hidden) == pytest.approx(4 * rs / 10 + ag)  # each backward hides 9 of 10
    z1, _ = dp_step_comm(_work(1, 400e6, m=4, **each), grad, ONE, SYSTEM, PROF)
    assert float(z1) == pytest.approx(rs + ag)  # ZeRO-1 never does
