"""Fuzzing the training model over many random plans at once (the vectorised core: one code
path serves a plan and a million), checking what must hold for every valid plan:

* finite, positive step time and memory; the time breakdown adds up; MFU <= 1;
* 2x FLOP/s or 2x HBM bandwidth is never slower; 2x the global batch never takes less time
  per step (issue 12).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from perfmodel.plan import TrainPlan, training_rules, valid_mask
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, get_model, reference_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.training import flops_utilization, training_step

PLANS_PER_GROUP = 700
MODELS = ["llama-3-8b", "mixtral-8x7b", "gpt-22b", "deepseek-v3", "llama-2-70b"]
SYSTEMS = [("h100-sxm5-80gb", 64, "ib-ndr-400x8"), ("a100-sxm4-80gb", 32, None),
           ("b200", 128, None)]
CATEGORICAL = list(itertools.product(
    ["none", "selective", "full"], [0, 1, 3], [False, True], [False, True]))
GROUPS = [(m, s, c) for i, (m, s) in enumerate(itertools.product(MODELS, SYSTEMS))
          for c in CATEGORICAL[i % len(CATEGORICAL)::len(CATEGORICAL) // 2][:2]]


def _random_plans(rng, model, num_gpus, cat) -> TrainPlan:
    recompute, zero, sp, overlap = cat
    n = PLANS_PER_GROUP
    pick = lambda *v: rng.choice(np.array(v, dtype=float), n)  # noqa: E731
    tp, pp, cp = pick(1, 2, 4, 8), pick(1, 2, 4), pick(1, 1, 2)
    ep = pick(1, 2, 4, 8) if model.moe else np.ones(n)
    dp = num_gpus / (tp * pp * cp)
    mb = pick(1, 2)
    return TrainPlan(
        tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, etp=tp, vp=pick(1, 1, 2), micro_batch=mb,
        seq_len=pick(1024, 2048, 4096, 8192), global_batch=dp * mb * pick(1, 2, 8, 32),
        sequence_parallel=sp, zero_stage=zero, recompute=recompute,
        schedule="interleaved", tp_comm_overlap=overlap, overlap_param_gather=True,
        overlap_grad_reduce=True)


def _cases():
    rng = np.random.default_rng(12)
    for model_id, (device, gpus, inter), cat in GROUPS:
        model = get_model(model_id)
        system = resolve_system(SystemConfig(device=device, num_gpus=gpus, inter_node=inter))
        plan = _random_plans(rng, model, gpus, cat)
        mask = valid_mask(training_rules(model, gpus), plan) & ((plan.tp > 1)
                                                               | (not plan.sequence_parallel))
        yield pytest.param(model, system, plan, mask, id=f"{model_id}-{device}-{cat}")


CASES = list(_cases())


def test_the_fuzz_covers_over_ten_thousand_valid_plans():
    assert sum(int(np.asarray(c.values[3]).sum()) for c in CASES) >= 10_000


def _step(model, system, plan, profile):
    return training_step(model, system, plan, profile)


@pytest.mark.parametrize("model, system, plan, mask", CASES)
def test_every_valid_plan_is_finite_and_adds_up(model, system, plan, mask):
    r = _step(model, system, plan, default_profile())
    step = np.broadcast_to(r.step_time, mask.shape)[mask]
    assert np.all(np.isfinite(step)) and np.all(step > 0)
    mem = np.broadcast_to(r.memory_total, mask.shape)[mask]
    assert np.all(np.isfinite(mem)) and np.all(mem > 0)
    parts = sum(np.broadcast_to(v, mask.shape) for v in r.time.values())[mask]
    np.testing.assert_allclose(parts, step, rtol=1e-9)
    mfu = np.broadcast_to(flops_utilization(r.model_flops, r.step_time, system.num_gpus,
                                            system.device.peak_flops(plan.precision)),
                          mask.shape)[mask]
    assert np.all(mfu <= 1.0), f"MFU up to {mfu.max():.3f}"


_BASE: dict[int, np.ndarray] = {}


def _base_step_time(model, system, plan, profile) -> np.ndarray:
    """The case's step times on its device's profile, once per case (the three changes below
    hold against the same base); keyed by the plan object, which CASES keeps alive."""
    if id(plan) not in _BASE:
        _BASE[id(plan)] = _step(model, system, plan, profile).step_time
    return _BASE[id(plan)]


def _faster(system, flops: float = 1.0, hbm: float = 1.0):
    dev = system.device
    peaks = {k: (v * flops if v else v) for k, v in dev.peak_tflops.items()}
    return dataclasses.replace(system, device=dev.model_copy(update={
        "peak_tflops": peaks, "memory_bandwidth_gbps": dev.memory_bandwidth_gbps * hbm}))


@pytest.mark.parametrize("model, system, plan, mask", CASES)
@pytest.mark.parametrize("change", ["2x FLOP/s", "2x HBM bandwidth", "2x global batch"])
def test_monotone_invariants(model, system, plan, mask, change):
    profile = reference_profile(system.device.id) or default_profile()
    base = np.broadcast_to(_base_step_time(model, system, plan, profile), mask.shape)
    if change == "2x global batch":
        other = _step(model, system, dataclasses.replace(plan, global_batch=2 * plan.global_batch),
                      profile).step_time
        bad = mask & (np.broadcast_to(other, mask.shape) < base * (1 - 1e-9))
    else:
        faster = _faster(system, **({"flops": 2.0} if "FLOP" in change else {"hbm": 2.0}))
        other = _step(model, faster, plan, profile).step_time
        bad = mask & (np.broadcast_to(other, mask.shape) > base * (1 + 1e-9))
    assert not bad.any(), f"{int(bad.sum())} of {int(mask.sum())} plans violate {change}"
