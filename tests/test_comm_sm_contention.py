"""Compute beside overlapped NCCL collectives (parallel_comm.sm_contention / dp_contention):
hand calculations, the shared SM rule with the inference TBO, and its properties."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import moe_parallel
from perfmodel.comm import collective_time
from perfmodel.parallel_comm import (
    DataParallelWork,
    comm_sm_slowdown,
    dp_contention,
    nccl_sm_share,
    sm_contention,
)
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan

PROF = default_profile()
H100 = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64,
                                   inter_node="ib-ndr-400x8"))
A100 = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=64,
                                   inter_node="ib-hdr-200x8"))
NODE8 = GroupSpan(size=8.0, local=8.0, nodes=1.0)
NODES8 = GroupSpan(size=8.0, local=1.0, nodes=8.0)
ONE = GroupSpan(1.0, 1.0, 1.0)


def test_one_rule_for_inference_tbo_and_training():
    assert moe_parallel.comm_sm_slowdown is comm_sm_slowdown
    assert comm_sm_slowdown(20, 132) == pytest.approx(132 / 112)
    assert comm_sm_slowdown(None, 132) == 1.0 and comm_sm_slowdown(24, None) == 1.0
    assert comm_sm_slowdown(132, 132) == 1.0  # no SM left: unknown, not infinite


def test_sm_share_from_the_fabric_the_group_crosses():
    """NCCL logs: 24 channels on an 8-GPU HGX A100 (nccl-tests#100), 24 CTAs of an H100
    all-gather (forum 337991), 16 on a multi-node H100 ring over 400G NICs (nccl#1453)."""
    assert float(nccl_sm_share(NODE8, A100)) == pytest.approx(24 / 108)
    assert float(nccl_sm_share(NODE8, H100)) == pytest.approx(24 / 132)
    assert float(nccl_sm_share(NODES8, H100)) == pytest.approx(16 / 132)
    assert float(nccl_sm_share(NODES8, A100)) == 0.0  # HDR: no channel count sourced
    spans = GroupSpan(size=np.array([8.0, 16.0]), local=8.0, nodes=np.array([1.0, 2.0]))
    assert np.allclose(nccl_sm_share(spans, H100), [24 / 132, 16 / 132])


def test_contention_by_hand():
    # collective shorter than the compute: its whole duration runs at 1 - s, s = share x bound
    s = 24 / 108 * 0.8
    assert float(sm_contention(0.1, 1.0, 0.8, 24 / 108)) == pytest.approx(0.1 * s)
    # collective a little longer than the compute (c = 0.55, C = 0.5, all compute-bound, share
    # 1/4): after 0.55 s the compute has done 0.4125 s of work, 0.0875 s remains at full speed
    assert float(sm_contention(0.55, 0.5, 0.5, 0.25)) == pytest.approx(0.0875)
    # compute finishes under the collective even slowed: the exposed collective bounds the pair
    assert float(sm_contention(1.0, 0.5, 0.5, 0.25)) == 0.0
    # memory-bound compute (bound 0) is not slowed
    assert float(sm_contention(0.1, 1.0, 0.0, 0.25)) == 0.0


def test_no_overlap_no_slowdown_and_more_sms_never_slower():
    assert float(sm_contention(0.0, 1.0, 1.0, 0.2)) == 0.0
    assert float(sm_contention(0.3, 0.0, 0.0, 0.2)) == 0.0
    comm = np.linspace(0.0, 2.0, 41)[:, None]
    extras = [sm_contention(comm, 1.0, 0.7, 1.0 - 1.0 / comm_sm_slowdown(24, sms))
              for sms in (48, 80, 108, 132, 148, 264)]
    for fewer, more in itertools.pairwise(extras):
        assert np.all(more <= fewer + 1e-15)
    assert np.all(extras[0] >= 0.0)


def _work(zero: int, **kw) -> DataParallelWork:
    base = dict(zero_stage=zero, dense_params=400e6, expert_params=0.0, layers=80,
                microbatches=4, grad_bytes=2.0, weight_bytes=2.0, bucket_params=None,
                overlap_grad_reduce=True, overlap_param_gather=True, fwd_compute=1.0,
                bwd_compute=2.0, fwd_bound=0.8, bwd_bound=1.6)
    return DataParallelWork(**{**base, **kw})


def test_dp_contention_by_hand():
    """400M parameters in 10 Megatron buckets of 40M, intra-node H100 (24 of 132 SMs): the
    nine hidden buckets of each overlapped collective slow the compute they run beside by
    their duration x 24/132 x the compute-bound share (0.8 here)."""
    s = 24 / 132 * 0.8
    ar = 10 * collective_time("all_reduce", 40e6 * 2.0, NODE8, H100, PROF)
    rs = 10 * collective_time("reduce_scatter", 40e6 * 2.0, NODE8, H100, PROF)
    ag = 10 * collective_time("all_gather", 40e6 * 2.0, NODE8, H100, PROF)
    assert float(dp_contention(_work(0), NODE8, ONE, H100, PROF)) == pytest.approx(0.9 * ar * s)
    assert float(dp_contention(_work(1), NODE8, ONE, H100, PROF)) == pytest.approx(
        0.9 * (rs + ag) * s)
    assert float(dp_contention(_work(1, overlap_param_gather=False), NODE8, ONE, H100,
                               PROF)) == pytest.approx(0.9 * rs * s)
    # ZeRO-3 / FSDP: one gather per layer (80), every micro-batch: forward gathers beside the
    # forward, backward gathers + reduce-scatters beside the backward
    ag3 = 80 * collective_time("all_gather", 5e6 * 2.0, NODE8, H100, PROF)
    rs3 = 80 * collective_time("reduce_scatter", 5e6 * 2.0, NODE8, H100, PROF)
    z3 = 4 * (79 / 80) * (ag3 + ag3 + rs3) * s
    assert float(dp_contention(_work(3), NODE8, ONE, H100, PROF)) == pytest.approx(z3)


def test_dp_contention_zero_without_overlap_or_peers():
    w = _work(1, overlap_grad_reduce=False, overlap_param_gather=False)
    assert float(dp_contention(w, NODE8, ONE, H100, PROF)) == 0.0
    assert float(dp_contention(_work(0), ONE, ONE, H100, PROF)) == 0.0  # one replica
    assert float(dp_contention(_work(3, fwd_bound=0.0, bwd_bound=0.0), NODE8, ONE, H100,
                               PROF)) == 0.0
    assert float(dp_contention(_work(0), NODES8, ONE, A100, PROF)) == 0.0  # no count sourced
    unknown = replace(H100, device=H100.device.model_copy(update={"sm_count": None}))
    assert float(dp_contention(_work(0), NODE8, ONE, unknown, PROF)) == 0.0


def _fsdp_8gpu(**par):
    p = {"tp": 1, "pp": 1, "zero_stage": 3, "overlap_grad_reduce": True,
         "overlap_param_gather": True}
    p.update(par)
    return pm.Scenario(
        kind="training", model="llama-3-8b",
        system={"device": "h100-sxm5-80gb", "num_gpus": 8},
        parallelism=p,
        training={"seq_len": 4096, "global_batch": 16, "micro_batch": 1,
                  "recompute": "full"})


def test_training_step_charges_it_as_its_own_part():
    """The step carries the contention as ``comm_contention`` (the breakdown still sums to the
    step); FSDP without prefetch overlaps nothing and is charged none."""
    pred = pm.predict(_fsdp_8gpu())
    t = pred.breakdown["time"]
    assert sum(t.values()) == pytest.approx(pred.step_time_s)
    assert 0 < t["comm_contention"] < 0.1 * pred.step_time_s
    serial = pm.predict(_fsdp_8gpu(overlap_param_gather=False))
    assert serial.breakdown["time"]["comm_contention"] == 0.0
