"""A prediction says when narrow weights run weight-only because the device has no tensor
cores for them (QA4 item 10: nvfp4 weights on an H100 ran with prefill as bf16, unsaid)."""

from __future__ import annotations

import pytest

import perfmodel as pm


def _scenario(device: str, **inference) -> pm.Scenario:
    return pm.Scenario(kind="inference", model="llama-3-8b",
                       system={"device": device, "num_gpus": 1},
                       inference={"batch": 8, "prompt_len": 2048, "output_len": 64,
                                  **inference})


def _weight_warnings(pred: pm.Prediction) -> list[str]:
    return [w for w in pred.warnings if "weights run weight-only" in w]


@pytest.mark.parametrize("device, dtype, says", [
    ("h100-sxm5-80gb", "nvfp4", ["(Hopper) has no nvfp4 tensor cores", "peak_tflops.fp4 is null",
                                 "W4A16", "prefill as bf16"]),
    ("a100-sxm4-80gb", "fp8", ["no fp8 tensor cores", "peak_tflops.fp8 is null", "W8A16"]),
])
def test_narrow_weights_without_tensor_cores_are_named(device, dtype, says):
    pred = pm.predict(_scenario(device, weight_dtype=dtype))
    [line] = _weight_warnings(pred)
    assert all(s in line for s in says), line
    # what the warning states: prefill computes as with bf16 weights (the same 16-bit peak)
    bf16 = pm.predict(_scenario(device, weight_dtype="bf16"))
    assert pred.prefill_time_s == pytest.approx(bf16.prefill_time_s, rel=0.1)


@pytest.mark.parametrize("device, dtype", [
    ("b200", "nvfp4"),            # fp4 tensor cores: nothing to say
    ("h100-sxm5-80gb", "fp8"),    # fp8 tensor cores
    ("h100-sxm5-80gb", "bf16"),
])
def test_no_warning_where_the_device_runs_them(device, dtype):
    assert not _weight_warnings(pm.predict(_scenario(device, weight_dtype=dtype)))


def test_a_narrow_activation_dtype_is_said_once():
    pred = pm.predict(_scenario("h100-sxm5-80gb", weight_dtype="nvfp4",
                                activation_dtype="nvfp4"))
    assert not _weight_warnings(pred)
    assert sum("nvfp4 tensor cores" in w for w in pred.warnings) == 1
