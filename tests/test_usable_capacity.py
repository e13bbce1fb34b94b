"""Every fit decision compares with the memory the driver reports (DeviceSpec.usable_memory_bytes,
memory.memory_capacity_bytes), not the label: an "80 GB" H100 SXM offers 79.22 GiB to CUDA
(vllm-project/vllm PR #10511, torch.cuda.mem_get_info; hardware_specs/devices/h100-sxm5-80gb.yaml
DM2). Hand numbers: 79.22 x 2^30 = 85,061,827,297 B; 81,559 MiB (nvidia-smi, A10: 23,028 MiB)."""

from __future__ import annotations

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.memory import capacity_basis, memory_capacity_bytes, memory_fits
from perfmodel.report import render_prediction
from perfmodel.specs.registry import get_device

GIB = 2**30


def test_h100_capacity_is_the_cuda_figure():
    h100 = get_device("h100-sxm5-80gb")
    assert memory_capacity_bytes(h100) == pytest.approx(85_061_827_297, abs=1)
    assert memory_capacity_bytes(h100) / GIB == pytest.approx(79.22)
    assert capacity_basis(h100) == "as CUDA reports it"


def test_fallbacks_nvidia_smi_then_nominal():
    a10 = get_device("a10")  # nvidia-smi's memory.total only
    assert memory_capacity_bytes(a10) == 23_028 * 2**20
    assert capacity_basis(a10) == "as nvidia-smi reports it"
    a10g = get_device("a10g")  # neither: the label, said so
    assert memory_capacity_bytes(a10g) == 24 * GIB
    assert capacity_basis(a10g).startswith("nominal")


def test_a_plan_of_79_5_gib_fitted_the_label_and_does_not_fit_the_device():
    h100 = get_device("h100-sxm5-80gb")
    need = 79.5 * GIB
    assert need <= h100.memory_bytes  # the old rule: fits in "80 GB"
    assert not memory_fits(need, h100)
    assert memory_fits(79.2 * GIB, h100)
    np.testing.assert_array_equal(memory_fits(np.array([79.2, 79.5]) * GIB, h100), [True, False])


def _l70(batch: int, **extra) -> pm.Prediction:
    return pm.predict({"kind": "inference", "model": "llama-3.1-70b",
                       "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
                       "parallelism": {"tp": 4}, **extra,
                       "inference": {"batch": batch, "prompt_len": 2048, "output_len": 256}})


def test_llama70b_tp4_batch128_needs_more_than_the_device_offers():
    p = _l70(128)
    assert 79.22 < p.memory_per_gpu_bytes / GIB < 80.0  # QA: 79.58 GiB
    assert not p.fits and p.runnable is False
    assert p.memory_capacity_bytes / GIB == pytest.approx(79.22)
    assert p.to_json_dict()["memory_capacity_basis"] == "as CUDA reports it"
    warning = next(w for w in p.warnings if w.startswith("does not fit"))
    assert "79.22 GiB available (as CUDA reports it)" in warning
    assert " GB " not in warning  # one unit
    assert p.not_runnable_reason == warning
    assert render_prediction(p).splitlines()[3].startswith("NOT RUNNABLE as specified: does not")


def test_a_plan_that_fits_is_runnable():
    p = _l70(8)
    assert p.fits and p.runnable is True and p.not_runnable_reason is None


def test_search_limits_plans_to_the_usable_capacity():
    from perfmodel.api import resolve_profile
    from perfmodel.search import search
    from perfmodel.specs.assemble import resolve_system

    sc = pm.Scenario(kind="training", model="llama-3-70b",
                     system={"device": "h100-sxm5-80gb", "num_gpus": 64},
                     parallelism={}, training={"seq_len": 8192, "global_batch": 64})
    result = search(sc, resolve_system(sc.system), resolve_profile(sc), top=50, headroom=0.0)
    assert result.plans
    for p in result.plans:
        assert p["memory_per_gpu_bytes"] <= 79.22 * GIB
        assert p["memory_headroom"] == pytest.approx(1 - p["memory_per_gpu_bytes"] / (79.22 * GIB))
