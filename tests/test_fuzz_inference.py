"""Fuzzing the inference model over many random requests at once (vectorised InferPlans):
finite positive TTFT / TPOT / memory for every valid plan; 2x FLOP/s or 2x HBM bandwidth is
never slower (issue 12)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from perfmodel.inference import inference
from perfmodel.plan import InferPlan, inference_rules, valid_mask
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, get_model, reference_profile
from perfmodel.specs.scenario import SystemConfig

N = 800
GROUPS = list(itertools.product(
    ["llama-3-8b", "mixtral-8x7b", "deepseek-v3", "llama-2-70b", "qwen2.5-7b"],
    [("h100-sxm5-80gb", 8), ("a100-sxm4-80gb", 8), ("b200", 8), ("rtx-4090", 2)],
    [("bf16", "bf16"), ("fp8", "fp8"), ("int4", "bf16")]))[::2]


def _plans(rng, model, gpus, dtypes) -> InferPlan:
    pick = lambda *v: rng.choice(np.array(v, dtype=float), N)  # noqa: E731
    tp = pick(*[t for t in (1, 2, 4, 8) if t <= gpus])
    return InferPlan(tp=tp, pp=np.ones(N), replicas=gpus / tp, batch=pick(1, 2, 8, 32, 128),
                     prompt_len=rng.integers(1, 8192, N).astype(float),
                     output_len=rng.integers(1, 2048, N).astype(float),
                     weight_dtype=dtypes[0], kv_dtype=dtypes[1],
                     ep=np.ones(N) if not model.moe else tp)


def _cases():
    rng = np.random.default_rng(7)
    for model_id, (device, gpus), dtypes in GROUPS:
        model = get_model(model_id)
        system = resolve_system(SystemConfig(device=device, num_gpus=gpus))
        plan = _plans(rng, model, gpus, dtypes)
        mask = valid_mask(inference_rules(model, gpus), plan)
        yield pytest.param(model, system, plan, mask, id=f"{model_id}-{device}-{dtypes[0]}")


CASES = list(_cases())


def test_the_fuzz_covers_thousands_of_valid_requests():
    assert sum(int(np.asarray(c.values[3]).sum()) for c in CASES) >= 5_000


def _profile(system):
    return reference_profile(system.device.id) or default_profile()


@pytest.mark.parametrize("model, system, plan, mask", CASES)
def test_every_valid_request_is_finite(model, system, plan, mask):
    r = inference(model, system, plan, _profile(system))
    for name in ("ttft", "tpot", "e2e", "memory_total", "tokens_per_s"):
        v = np.broadcast_to(getattr(r, name), mask.shape)[mask]
        assert np.all(np.isfinite(v)) and np.all(v > 0), name


def _scaled(system, flops=1.0, hbm=1.0):
    dev = system.device
    return dataclasses.replace(system, device=dev.model_copy(update={
        "peak_tflops": {k: (v * flops if v else v) for k, v in dev.peak_tflops.items()},
        "memory_bandwidth_gbps": dev.memory_bandwidth_gbps * hbm}))


@pytest.mark.parametrize("model, system, plan, mask", CASES)
@pytest.mark.parametrize("change", ["2x FLOP/s", "2x HBM bandwidth"])
def test_monotone_invariants(model, system, plan, mask, change):
    prof = _profile(system)
    base = inference(model, system, plan, prof)
    faster = _scaled(system, **({"flops": 2.0} if "FLOP" in change else {"hbm": 2.0}))
    other = inference(model, faster, plan, prof)
    bad = mask & np.any([np.broadcast_to(a > b * (1 + 1e-9), mask.shape) for a, b in
                         [(other.tpot, base.tpot), (other.ttft, base.ttft)]], axis=0)
    assert not bad.any(), f"{int(bad.sum())} of {int(mask.sum())} requests violate {change}"
