"""Devices without bf16 tensor cores (V100: fp16 125 TFLOP/s, fp32 15.7; T4: fp16 65, fp32 8.1;
their peak_tflops.bf16 is null) compute in fp16: inference defaults follow (vLLM casts a bf16
checkpoint to float16 there), an explicit bf16 is refused, and bf16 training is refused as
PyTorch autocast refuses it ("Current CUDA Device does not support bfloat16. Please switch
dtype to float16.")."""

from __future__ import annotations

import pytest

from perfmodel.api import predict
from perfmodel.errors import SpecError
from perfmodel.planning.training import precision_skip

V100_FP32_TFLOPS = 15.7  # NVIDIA V100 datasheet: the CUDA-core peak a bf16 GEMM would fall to
T4_FP32_TFLOPS = 8.1


def _inference(device: str, **inf) -> dict:
    return {"kind": "inference", "model": "llama-2-7b",
            "system": {"device": device, "num_gpus": 1},
            "inference": {"batch": 1, "prompt_len": 2048, "output_len": 8, **inf}}


def _gemm_tflops(p) -> float:
    """Achieved TFLOP/s of the prefill's largest GEMM, from the operator list."""
    ops = [o for o in p.ops if o.phase == "prefill" and o.cls == "gemm"]
    top = max(ops, key=lambda o: o.flops)
    return top.flops / top.time_s / 1e12


@pytest.mark.parametrize("device,fp32", [("v100-sxm2-32gb", V100_FP32_TFLOPS),
                                         ("t4", T4_FP32_TFLOPS)])
def test_default_activations_run_on_the_fp16_tensor_cores(device, fp32):
    p = predict(_inference(device))
    assert _gemm_tflops(p) > 2 * fp32  # a 2048-row GEMM on fp16 tensor cores, not CUDA cores
    assert any("no bf16 tensor cores" in w and "fp16" in w for w in p.warnings)
    explicit = predict(_inference(device, activation_dtype="fp16", kv_dtype="fp16"))
    assert p.ttft_s == pytest.approx(explicit.ttft_s)


def test_weight_only_fp8_on_t4_dequantises_to_fp16():
    """T4 has no fp8 tensor cores: fp8 weights run W8A16 (Marlin) with fp16 activations."""
    p = predict(_inference("t4", weight_dtype="fp8", activation_dtype="fp8"))
    assert _gemm_tflops(p) > 2 * T4_FP32_TFLOPS
    assert any("modelled as fp16 activations" in w for w in p.warnings)


def test_explicit_bf16_inference_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"^inference\.activation_dtype: bf16 on t4: no bf16 "
                                        r"tensor cores .*; use fp16$"):
        predict(_inference("t4", activation_dtype="bf16"))


def test_bf16_training_is_refused_and_skipped_with_fp16_offered():
    sc = {"kind": "training", "model": "llama-3-8b",
          "system": {"device": "v100-sxm2-32gb", "num_gpus": 8},
          "parallelism": {"tp": 1, "dp": 8, "zero_stage": 3},
          "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1,
                       "recompute": "full"}}
    with pytest.raises(SpecError, match=r"^training\.precision: bf16 on v100-sxm2-32gb: .*"
                                        r"use fp16 on v100-sxm2-32gb$"):
        predict(sc)
    assert predict({**sc, "training": {**sc["training"], "precision": "fp16"}}).step_time_s > 0
    reason = precision_skip("v100-sxm2-32gb", "bf16")
    assert reason and reason.endswith("plan it with --precision fp16")
    assert precision_skip("a100-sxm4-80gb", "bf16") is None


def test_replaced_defaults_stay_defaults():
    """The fp16 the device imposes is still a default, not a dtype the scenario named
    (formats.asks_weight_only reads what the scenario set)."""
    from perfmodel.formats import asks_weight_only
    from perfmodel.resolve import resolve

    rs = resolve(_inference("t4"))
    inf = rs.scenario.inference
    assert (inf.activation_dtype, inf.kv_dtype) == ("fp16", "fp16")
    assert not {"activation_dtype", "kv_dtype"} & inf.model_fields_set
    assert not asks_weight_only(inf)
    assert rs.device_notes and "no bf16 tensor cores" in rs.device_notes[0]
