"""ZeRO-3 parameter passes under full activation recompute, per framework (frameworks/*.yaml
fsdp.recompute_regathers / max_reuse_distance_params): DeepSpeed's recomputed forward gathers
the parameters again and its backward gathers again the share of each layer whose reuse
distance reaches stage3_max_reuse_distance; FSDP1 / FSDP2 gather once for recompute and
backward. Hand calculations on GPT-3 175B / 530B layers (Narayanan et al. 2021 Table 2)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

import perfmodel.training as T
from perfmodel.api import predict
from perfmodel.comm import collective_time
from perfmodel.frameworks import FsdpFacts
from perfmodel.parallel_comm import (
    DataParallelWork,
    dp_step_comm,
    recompute_regather_passes,
    zero3_extra_gathers,
)
from perfmodel.paths import data_dir
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan


def layer(h: float) -> list[float]:
    """A GPT layer's weights in forward order: fused QKV 3h^2, output h^2, MLP 4h^2 and 4h^2."""
    return [3 * h * h, h * h, 4 * h * h, 4 * h * h]


def test_reuse_distance_rule_by_hand():
    """Weight j stays gathered from its recompute to its backward iff 2 x (weights after it)
    < the distance: 175B (h = 12288, h^2 = 151M): after QKV 9h^2, after the output 8h^2,
    after the MLP's first 4h^2 = 604M, x2 = 1.21e9; after the last 0."""
    h = 12288.0
    assert recompute_regather_passes(layer(h), 1e9) == pytest.approx(8 / 12)  # 2 x 4h^2 >= 1e9
    assert recompute_regather_passes(layer(h), 3e9) == 0.0  # 2 x 9h^2 = 2.72e9 < 3e9
    assert recompute_regather_passes(layer(h), 0.0) == 1.0  # released after every use
    # 530B (h = 20480): 2 x 4h^2 = 3.36e9 >= 3e9, so the same 8/12 at either distance
    assert recompute_regather_passes(layer(20480.0), 3e9) == pytest.approx(8 / 12)
    # two weights a, b: a is re-gathered iff 2b >= R; arrays broadcast
    got = recompute_regather_passes([np.array([1.0, 1.0]), np.array([3.0, 5.0])], 8.0)
    assert np.allclose(got, [0.0, 1 / 6])


FACTS = {name: yaml.safe_load((data_dir("frameworks") / f"{name}.yaml").read_text())["fsdp"]
         for name in ("deepspeed", "megatron-deepspeed", "torchtitan", "fsdp")}


@pytest.mark.parametrize("name,expected", [("deepspeed", 8 / 12), ("megatron-deepspeed", 0.0),
                                           ("torchtitan", 0.0), ("fsdp", 0.0)])
def test_each_framework_states_its_recompute_gathers(name, expected):
    """175B layers: DeepSpeed's default distance (1e9) re-gathers 2/3 of each layer in
    backward; the Azure Megatron-DeepSpeed recipe (3e9) keeps all; FSDP never re-gathers."""
    facts = FsdpFacts.model_validate(FACTS[name])
    w = {"dense": layer(12288.0)}
    assert float(zero3_extra_gathers(facts, "full", w, {"dense": 1.0})) == pytest.approx(expected)
    assert float(zero3_extra_gathers(facts, "selective", w, {"dense": 1.0})) == 0.0
    assert float(zero3_extra_gathers(None, "full", w, {"dense": 1.0})) == 0.0


PROF = default_profile()
SYSTEM = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64,
                                     inter_node="ib-ndr-400x8"))


def test_regather_adds_its_share_of_a_gather_pass_per_micro_batch():
    """ZeRO-3 total = (forward AG + (1 + s) backward AG + RS) x m: s = 1 adds exactly one
    all-gather pass per micro-batch, s = 2/3 two thirds of it."""
    grad = GroupSpan(size=8.0, local=1.0, nodes=8.0)
    params, m = 8e9, 4
    w = DataParallelWork(zero_stage=3, dense_params=params, expert_params=0.0, layers=80,
                         microbatches=m, grad_bytes=2.0, weight_bytes=2.0,
                         bucket_params=params, overlap_grad_reduce=False,
                         overlap_param_gather=False, fwd_compute=0.0, bwd_compute=0.0)
    one = GroupSpan(1.0, 1.0, 1.0)
    base, _ = dp_step_comm(w, grad, one, SYSTEM, PROF)
    full, _ = dp_step_comm(replace(w, regather=1.0), grad, one, SYSTEM, PROF)
    part, exposed = dp_step_comm(replace(w, regather=2 / 3), grad, one, SYSTEM, PROF)
    z1, _ = dp_step_comm(replace(w, zero_stage=1), grad, one, SYSTEM, PROF)  # RS + AG once
    ag = float(collective_time("all_gather", params * 2.0, grad, SYSTEM, PROF))
    assert float(full - base) == pytest.approx(ag * m, rel=1e-9)
    assert float(part - base) == pytest.approx(2 / 3 * ag * m, rel=1e-9)
    assert float(exposed) == pytest.approx(float(part))  # nothing overlaps here
    assert float(base) == pytest.approx(float(z1) * m + ag * m, rel=1e-9)


def test_narayanan_530b_zero3_run_pays_two_thirds_of_a_gather_more():
    """End to end on the Table 2 530B ZeRO-3 scenario (megatron-deepspeed, full recompute):
    the DP traffic grows by 2/3 of the one-pass difference (h = 20480, 3e9 distance)."""
    cases = yaml.safe_load((data_dir("validation") / "training" /
                            "narayanan2021_table2.yaml").read_text())["cases"]
    (case,) = [c for c in cases if c["id"] == "narayanan2021_t2_zero3_530B_1120gpu"]

    def dp_total(regather):
        original = T.zero3_extra_gathers
        try:
            if regather is not None:
                T.zero3_extra_gathers = lambda *a, **k: regather
            bd = predict(case["scenario"]).breakdown
        finally:
            T.zero3_extra_gathers = original
        return bd["communication"]["dp"]["total_s"]

    none, one, actual = dp_total(0.0), dp_total(1.0), dp_total(None)
    assert one > none
    assert (actual - none) / (one - none) == pytest.approx(8 / 12, rel=1e-3)
