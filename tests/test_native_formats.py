"""Low-precision GEMMs as the device runs them (issue 13 item 3): W8A8 / W4A4 never decode
slower than the same weights with 16-bit activations where the tensor cores exist, activation
formats a device lacks are modelled weight-only with a warning, and fp8 training plans skip
devices without fp8 tensor cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel import ops as O
from perfmodel.api import predict
from perfmodel.formats import native_formats
from perfmodel.planning.training import plan_training, precision_skip
from perfmodel.resolve import resolve
from perfmodel.specs.registry import get_device

MODEL_CONFIGS = Path("/work/shared/reference/measured/aiconfigurator-core-0.12.0/model_configs")


def _decode(device: str, weights: str, acts: str | None, batch: int,
            model="llama-3.1-8b", engine="generic", gpus=1):
    inf = {"batch": batch, "prompt_len": 512, "output_len": 16, "weight_dtype": weights}
    if acts:
        inf["activation_dtype"] = acts
    return predict({"kind": "inference", "model": model, "engine": engine,
                    "system": {"device": device, "num_gpus": gpus},
                    "parallelism": {"tp": gpus}, "inference": inf})


@pytest.mark.parametrize("device", ["b200", "gb300", "h100-sxm5-80gb", "h200-sxm-141gb",
                                    "mi355x"])
@pytest.mark.parametrize("weights, acts", [("fp8", "fp8"), ("fp8_block", "fp8"),
                                           ("nvfp4", "nvfp4")])
def test_quantised_activations_never_decode_slower(device, weights, acts):
    """Activation quantisation is fused into the producing norm / SwiGLU kernel (no cast
    kernel per GEMM), and fp8 / NVFP4 weights run the low-precision kernel with 16-bit
    activations too (ops.Precision.inference): W8A8 / W4A4 is never slower at decode batch
    sizes. Documented exception, not tested here: MXFP4 W4A4 vs MXFP4 W4A16 dense GEMMs. The
    W4A16 path streams 4-bit weights at the measured bf16 GEMM's efficiency (no dense weight-only
    fp4 kernel is measured; the MoE W4A16 MXFP4 tables ran ~3x slower than that assumption,
    docs/calibration.md), while W4A4 MXFP4 borrows the measured NVFP4 curve, whose kernels reach
    0.7-4.4 TB/s at M = 1 on B200 (aiconfigurator 0.12.0 TRT-LLM gemm_perf: 8192 x 8192 22.3 us,
    16384 x 8192 27.2 us, 65536 x 8192 68.4 us vs bf16 27.4 / 45.9 / 182.1 us)."""
    for batch in (1, 64):
        low = _decode(device, weights, acts, batch).tpot_s
        wide = _decode(device, weights, None, batch).tpot_s
        assert low <= wide * (1 + 1e-9), (device, weights, acts, batch, low, wide)


def test_nvfp4_weights_run_w4a4_where_fp4_tensor_cores_exist():
    b200, h100, mi355x = (native_formats(get_device(d)) for d in ("b200", "h100-sxm5-80gb",
                                                                  "mi355x"))
    assert "nvfp4" in b200 and "mxfp4" in b200
    assert "nvfp4" not in h100 and "fp8" in h100
    assert "mxfp4" in mi355x and "nvfp4" not in mi355x  # CDNA 4: OCP MX block scaling only
    # TensorRT-LLM / vLLM ModelOpt NVFP4 on Blackwell: the fp4 kernel, whatever the scenario
    # gives as activation_dtype
    w4 = O.Precision.inference("nvfp4", "bf16", "bf16", native=b200)
    assert w4.compute == "nvfp4" and not w4.weight_dequant
    # its GEMMs count the activations the fused producer quantised, as the measured nvfp4
    # tables were fitted (W4A4 bytes); the residual stream stays 16-bit
    w4a4 = O.Precision.inference("nvfp4", "nvfp4", "bf16", native=b200)
    assert O.gemm("mlp.up", 64, 512, 256, w4).bytes == O.gemm("mlp.up", 64, 512, 256,
                                                                w4a4).bytes
    assert w4.hidden == 2.0
    # MXFP4 keeps the weight-only path (gpt-oss W4A16 on Blackwell)
    mx = O.Precision.inference("mxfp4", "bf16", "bf16", native=b200)
    assert mx.compute == "bf16" and mx.weight_dequant and mx.weight_format == "mxfp4"
    # W4A8 (TRT-LLM W4A8_NVFP4_FP8) stays W4A8
    assert O.Precision.inference("nvfp4", "fp8", "bf16", native=b200).compute == "fp8"
    # no fp4 tensor cores: NVFP4 activations fall back to Marlin-style W4A16
    for native in (h100, mi355x):
        p = O.Precision.inference("nvfp4", "nvfp4", "bf16", native=native)
        assert p.compute == "bf16" and p.weight_dequant and p.act == 2.0
    a100 = native_formats(get_device("a100-sxm4-80gb"))
    p = O.Precision.inference("fp8", "fp8", "bf16", native=a100)
    assert p.compute == "bf16" and p.weight_dequant


@pytest.mark.parametrize("device, acts, needle", [
    ("h100-sxm5-80gb", "nvfp4", "peak_tflops.fp4 is null"),
    ("a100-sxm4-80gb", "nvfp4", "peak_tflops.fp4 is null"),
    ("a100-sxm4-80gb", "fp8", "peak_tflops.fp8 is null"),
    ("mi355x", "nvfp4", "fp4 peak runs mxfp4 only"),
])
def test_activation_format_without_tensor_cores_warns(device, acts, needle):
    sc = {"kind": "inference", "model": "llama-3.1-8b", "system": {"device": device},
          "inference": {"prompt_len": 8, "weight_dtype": acts, "activation_dtype": acts}}
    lines = [w for w in resolve(sc).warnings if "tensor cores" in w]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert device in lines[0] and acts in lines[0] and needle in lines[0]
    assert "weight-only" in lines[0]


@pytest.mark.parametrize("device, acts", [("b200", "nvfp4"), ("mi355x", "mxfp4"),
                                          ("h100-sxm5-80gb", "fp8")])
def test_supported_activation_format_does_not_warn(device, acts):
    sc = {"kind": "inference", "model": "llama-3.1-8b", "system": {"device": device},
          "inference": {"prompt_len": 8, "weight_dtype": acts, "activation_dtype": acts}}
    assert not [w for w in resolve(sc).warnings if "tensor cores" in w]


@pytest.mark.skipif(not MODEL_CONFIGS.is_dir(), reason="shared reference configs not present")
def test_nvfp4_moe_checkpoint_times_experts_on_the_nvfp4_table():
    """An NVFP4 checkpoint without activation_dtype on B200 runs its experts W4A4 (as the
    engines run ModelOpt NVFP4 MoE there), so they read the measured moe.nvfp4 table, not a
    bf16 proxy."""
    model = str(MODEL_CONFIGS / "nvidia--Qwen3-235B-A22B-NVFP4_config.json")
    p = predict({"kind": "inference", "model": model, "engine": "trtllm",
                 "system": {"device": "b200", "num_gpus": 4}, "parallelism": {"tp": 4},
                 "inference": {"batch": 1, "prompt_len": 512, "output_len": 16}})
    table = p.breakdown["moe"]["decode_step"]["grouped_gemm_table"]
    assert table.startswith("moe.nvfp4"), table


def test_fp8_training_plan_skips_devices_without_fp8():
    assert precision_skip("h100-sxm5-80gb", "fp8") is None
    assert precision_skip("a100-sxm4-80gb", "bf16") is None
    reason = precision_skip("a100-sxm4-80gb", "fp8")
    assert reason and "a100-sxm4-80gb" in reason and "skipped" in reason
    result = plan_training(model="llama-3-8b", tokens=1e11, devices=["a100-sxm4-80gb",
                                                                     "h100-sxm5-80gb"],
                           precision="fp8", max_gpus=16)
    assert {r.device for r in result.rows} == {"h100-sxm5-80gb"}
    assert any("a100-sxm4-80gb: skipped for precision=fp8" in w for w in result.warnings)


def test_nvfp4_weight_only_experts_read_the_w4a16_table():
    """Without fp4 tensor cores NVFP4 experts run weight-only (vLLM Marlin): their nearest
    measured grouped GEMM is W4A16 MXFP4 (same e2m1 elements dequantised into a bf16 GEMM), not
    the bf16 table with 4-bit bytes."""
    from perfmodel.specs.registry import reference_profile

    h100 = reference_profile("h100-sxm5-80gb")
    key, why = h100.moe_table("bf16", "nvfp4")
    assert key == "w4a16_mxfp4" and "proxy for w_nvfp4_bf16" in why
    assert h100.moe_table("bf16", "int4")[0] == "bf16"  # other mixes as before
    assert h100.moe_table("bf16")[0] == "bf16"  # a bf16 expert never reads it
