"""NVFP4 weights on a device without NVFP4 tensor cores, as each engine runs them (issue 13
item 3): one mechanism, ``formats.engine_activation`` over engines/<id>.yaml
``quantization.formats.nvfp4.without_tensor_cores`` (the rule of every narrow format:
tests/test_engine_weight_formats.py for fp8).

- vLLM (ModelOptNvFp4LinearMethod: no FlashInfer / CUTLASS fp4 -> Marlin FP4, W4A16 with the
  "Your GPU does not have native support for FP4 computation" warning) and SGLang 0.5.14
  (``--fp4-gemm-backend auto`` -> marlin on CUDA SM80-SM9x) run the checkpoint weight-only:
  16-bit activations, the 4.5-bit weights (e2m1 + one e4m3 scale per 16) dequantised inside a
  bf16 GEMM, no activation quantise.
- TensorRT-LLM refuses (its FP4 GEMMs need SM100; Hopper's Marlin NVFP4 is opt-in only), and so
  does SGLang 0.5.14 on ROCm (no dense NVFP4 GEMM backend there): a one-line error naming the
  device, engine and format.
"""

from __future__ import annotations

import pytest
from fused_norm_hand import fusion_s

import perfmodel as pm
from perfmodel.engines import format_rule
from perfmodel.profile import CalibrationProfile
from perfmodel.specs import registry

K, N = 4096, 6144  # Llama-3.1-8B q (4096) + k, v (2 x 1024) outputs over hidden 4096


def _scenario(device, engine=None, act="nvfp4", weight="nvfp4", n=1, model="llama-3.1-8b",
              formats=None):
    inf = {"batch": 1, "prompt_len": 1024, "output_len": 256, "weight_dtype": weight,
           "activation_dtype": act}
    if formats:
        inf["weight_formats"] = formats
    kw = dict(kind="inference", model=model, system={"device": device, "num_gpus": n},
              parallelism={"tp": n}, inference=inf)
    if engine:
        kw["engine"] = {"name": engine}
    return pm.Scenario(**kw)


def _h100_profile() -> CalibrationProfile:
    return registry.load_file(CalibrationProfile, "calibration/h100-sxm5-80gb.reference.json")


def _predict(*a, **k):
    return pm.predict(_scenario(*a, **k))


def nvfp4_without_fp4(engine, version, variant, vendor):
    rule = format_rule(engine, "nvfp4", version, variant)
    return None if rule is None else rule.without_tensor_cores.get(vendor.lower())


def test_engine_facts():
    assert nvfp4_without_fp4("vllm", None, None, "NVIDIA") == "weight_only"
    assert nvfp4_without_fp4("vllm", None, None, "AMD") is None  # ROCm: not stated
    assert nvfp4_without_fp4("vllm", "0.14", None, "NVIDIA") == "weight_only"  # overlays inherit
    assert nvfp4_without_fp4("sglang", None, None, "NVIDIA") == "weight_only"
    assert nvfp4_without_fp4("sglang", None, None, "AMD") == "refuse"
    assert nvfp4_without_fp4("trtllm", None, None, "NVIDIA") == "refuse"
    assert nvfp4_without_fp4("trtllm", None, None, "AMD") == "refuse"
    assert nvfp4_without_fp4("generic", None, None, "NVIDIA") is None


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_h100_runs_nvfp4_weight_only_by_hand(engine):
    """Llama-3.1-8B decode at batch 1 on one H100: the qkv GEMM reads K x N weights at 0.5 B +
    one 1-byte e4m3 scale per 16 elements (0.5625 B each), the bf16 input row (2K B) and writes
    the bf16 output row (2N B); its compute is 2KN at the bf16 tensor-core peak (989.4 TFLOP/s,
    H100 SXM datasheet) plus the in-GEMM dequantise, 2KN vector operations at the fp32 peak (67
    TFLOP/s), as the W4A16 path charges it. No NVFP4 quantise kernel is added: the decode step
    equals the generic engine's and the one of a scenario that asks for bf16 activations itself
    (W4A16)."""
    pred = _predict("h100-sxm5-80gb", engine)
    qkv = next(op for op in pred.ops if op.name == "attn.qkv" and op.phase == "decode")
    assert qkv.bytes == pytest.approx(K * N * (0.5 + 1 / 16) + 2 * K + 2 * N, rel=1e-12)
    assert qkv.compute_s == pytest.approx(2 * K * N / 989.4e12 + 2 * K * N / 67e12, rel=1e-9)
    assert qkv.memory_s == pytest.approx(qkv.bytes / 3.35e12, rel=1e-9)
    step = pred.breakdown["decode_step"]
    w4a16 = _predict("h100-sxm5-80gb", engine, act="bf16").breakdown["decode_step"]
    generic = _predict("h100-sxm5-80gb").breakdown["decode_step"]
    fusion = fusion_s(_h100_profile(), "h100-sxm5-80gb", 1, 4096, 32)  # fused add + RMSNorm
    for part in ("gemm", "elementwise", "total_s"):
        assert step[part] == pytest.approx(w4a16[part], rel=1e-12)
        assert step[part] == pytest.approx(generic[part] + (part != "gemm") * fusion,
                                           rel=1e-9)


def test_b200_charges_the_quantise_h100_does_not():
    """The same vLLM scenario on B200 runs W4A4 (a scaled_fp4_quant kernel per GEMM: more
    elementwise time than the generic engine), on H100 Marlin W4A16 (none)."""
    b200 = _predict("b200", "vllm").breakdown["decode_step"]["elementwise"]
    b200_gen = _predict("b200").breakdown["decode_step"]["elementwise"]
    assert b200 > b200_gen
    h100 = _predict("h100-sxm5-80gb", "vllm").breakdown["decode_step"]["elementwise"]
    h100_gen = _predict("h100-sxm5-80gb").breakdown["decode_step"]["elementwise"]
    fusion = fusion_s(_h100_profile(), "h100-sxm5-80gb", 1, 4096, 32)  # fused add + RMSNorm
    assert h100 == pytest.approx(h100_gen + fusion, rel=1e-9)


@pytest.mark.parametrize("act", ["nvfp4", "bf16"])
@pytest.mark.parametrize("device", ["h100-sxm5-80gb", "h200-sxm-141gb", "a100-sxm4-80gb",
                                    "mi300x", "mi355x"])
def test_trtllm_refuses_nvfp4_without_fp4_tensor_cores(device, act):
    with pytest.raises(pm.SpecError) as err:
        _predict(device, "trtllm", act=act)
    msg = str(err.value)
    assert "trtllm" in msg and device in msg and "nvfp4" in msg
    assert "\n" not in msg


def test_trtllm_refuses_nvfp4_experts_of_a_mixed_checkpoint():
    """A checkpoint with only its experts in NVFP4 (bf16 attention) is refused too."""
    with pytest.raises(pm.SpecError, match=r"trtllm.*nvfp4.*h200-sxm-141gb"):
        _predict("h200-sxm-141gb", "trtllm", act="bf16", weight="bf16", n=8,
                 model="mixtral-8x7b", formats={"experts": "nvfp4"})


def test_trtllm_runs_nvfp4_on_blackwell_and_other_formats_on_hopper():
    assert _predict("b200", "trtllm").tpot_s > 0
    assert _predict("h100-sxm5-80gb", "trtllm", act="fp8", weight="fp8").tpot_s > 0


def test_sglang_refuses_nvfp4_on_rocm_vllm_runs_it():
    """SGLang 0.5.14 on MI300X: auto picks flashinfer_cutlass off CUDA, and the dense NVFP4 layer
    raises ('ModelOpt NVFP4 native dense GEMM backends require SM100+'). vLLM's file does not
    state ROCm: modelled weight-only as before."""
    with pytest.raises(pm.SpecError, match=r"sglang.*mi300x.*AMD"):
        _predict("mi300x", "sglang")
    assert _predict("mi300x", "vllm").tpot_s > 0
