"""NVFP4 decode on Blackwell (QA 2026-12-03 b, item 1; issue 13 item 3).

The engines' NVFP4 activation quantise (``quantization.nvfp4_activation``) is charged where it
runs, as the fp8 one is, now that the nvfp4 GEMM tables are net of it
(tests/test_nvfp4_net_quantize.py): SGLang runs ``scaled_fp4_quant`` before every NVFP4 GEMM
(``ModelOptFp4LinearMethod.apply``), TensorRT-LLM fuses it into the TP all-reduce + RMSNorm
(``RESIDUAL_RMS_NORM_QUANT_NVFP4``, TP >= 2, hidden > 4096, no attention DP) and runs
``fp4_quantize`` otherwise; vLLM runs ``scaled_fp4_quant`` before every W4A4 GEMM
(``ModelOptNvFp4LinearMethod.apply``; its V1 releases before -O2 leave the SiluMul+NVFP4 fusion
pass off, engines/vllm.yaml ``vllmnvfp4linear``).

Weight-bytes-bound decode at batch 1 on a B200 should order nvfp4 <= fp8 <= bf16. The dense
nvfp4 GEMM is the kernel the engine runs (profile.gemm_table, engines/<id>.yaml gemm.kernels):
the B200 profile's reference ``gemm.nvfp4`` is vLLM 0.24.0's FlashInfer CuTe DSL rows (the kernel
vLLM and SGLang 0.5.14 select, and what the generic engine reads: calibration/references.yaml),
``gemm.nvfp4@trtllm_torch_flow`` TensorRT-LLM 1.3.0rc20's own rows (tests/test_nvfp4_gemm_kernels.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from fused_norm_hand import elementwise_s, fusion_s

import perfmodel as pm
from perfmodel.engines import fp8_activation_kernels
from perfmodel.inference import FP4_QUANT_PASS_BYTES
from perfmodel.profile import CalibrationProfile
from perfmodel.specs import registry

CASES = [("llama-3.1-8b", 1), ("llama-3-70b", 2)]


def _tpot(model, n, fmt, engine=None, device="b200"):
    kw = dict(kind="inference", model=model, system={"device": device, "num_gpus": n},
              parallelism={"tp": n},
              inference={"batch": 1, "prompt_len": 1024, "output_len": 256,
                         "weight_dtype": fmt, "activation_dtype": fmt})
    if engine:
        kw["engine"] = {"name": engine}
    return pm.predict(pm.Scenario(**kw)).tpot_s


@pytest.mark.parametrize(("model", "n"), CASES)
def test_fp8_decodes_no_slower_than_bf16_on_b200(model, n):
    assert _tpot(model, n, "fp8") <= _tpot(model, n, "bf16")


@pytest.mark.parametrize(("model", "n"), CASES)
def test_nvfp4_decodes_no_slower_than_fp8_on_b200(model, n):
    assert _tpot(model, n, "nvfp4") <= _tpot(model, n, "fp8")


def test_engine_nvfp4_quantise_facts():
    """TRT-LLM: fused at TP >= 2 with hidden 8192, fp4_quantize kernel at TP 1; SGLang and
    vLLM: a kernel at every TP; generic: not stated."""
    mode, on = fp8_activation_kernels("trtllm", None, None, 8192, [1, 2, 8], 1, fmt="nvfp4")
    assert mode == "static_kernel" and list(on) == [1.0, 0.0, 0.0]
    _, on = fp8_activation_kernels("trtllm", None, None, 4096, 2, 1, fmt="nvfp4")
    assert float(on) == 1.0  # hidden 4096: no fusion
    assert fp8_activation_kernels("sglang", None, None, 8192, 8, 1, fmt="nvfp4") == \
        ("static_kernel", 1.0)
    assert fp8_activation_kernels("vllm", None, None, 8192, 8, 1, fmt="nvfp4") == \
        ("static_kernel", 1.0)
    assert fp8_activation_kernels("generic", None, None, 8192, 8, 1, fmt="nvfp4") == (None, 0.0)
    with pytest.raises(ValueError, match="fmt"):
        fp8_activation_kernels("sglang", None, None, 8192, 8, 1, fmt="mxfp4")


def _decode(engine, model, n):
    kw = dict(kind="inference", model=model, system={"device": "b200", "num_gpus": n},
              parallelism={"tp": n},
              inference={"batch": 1, "prompt_len": 1024, "output_len": 256,
                         "weight_dtype": "nvfp4", "activation_dtype": "nvfp4"})
    if engine:
        kw["engine"] = {"name": engine}
    return pm.predict(pm.Scenario(**kw)).breakdown["decode_step"]


def _quant_s(prof: CalibrationProfile, elems: float) -> float:
    """Hand: the profile's kernel floor + the larger of the measured static quantise rate's
    time and the pass's bytes (2.5625 B per element) at B200's 7.7 TB/s x the profile's memory
    efficiency at that size."""
    nbytes = 2.5625 * elems
    eff = float(prof.memory_efficiency(np.array(nbytes)))
    return prof.kernel_overhead_s + max(elems / prof.elementwise_rate["fp8_quant"],
                                        nbytes / (7.7e12 * eff))


def test_sglang_charges_one_fp4_quantise_per_nvfp4_gemm_by_hand():
    """Llama-3.1-8B on 1 x B200, batch 1 decode: 4 NVFP4 GEMMs a layer (qkv, out, gate-up: k
    4096; down: k 14336) x 32 layers = 128 quantise kernels (the LM head stays bf16:
    formats.KEPT_16BIT, as ModelOpt NVFP4 checkpoints exclude lm_head), 96 of 4096 elements
    and 32 of 14336, each one pass at the measured static quantise rate plus the
    kernel floor, beside the fused residual add + RMSNorm; GEMMs and attention as the
    generic engine. TRT-LLM at TP 1 has no all-reduce
    to fuse into and runs the same kernels; so does vLLM (scaled_fp4_quant per GEMM)."""
    assert pytest.approx(2 + 0.5 + 1 / 16) == FP4_QUANT_PASS_BYTES
    prof = registry.load_file(CalibrationProfile, "calibration/b200.reference.json")
    sgl, gen = _decode("sglang", "llama-3.1-8b", 1), _decode(None, "llama-3.1-8b", 1)
    # and each engine's fused residual add + RMSNorm (fused_norm_hand.fusion_s)
    hand = 96 * _quant_s(prof, 4096) + 32 * _quant_s(prof, 14336) + fusion_s(
        prof, "b200", 1, 4096, 32)
    assert sgl["elementwise"] - gen["elementwise"] == pytest.approx(hand, rel=1e-9)
    assert sgl["gemm"] == pytest.approx(gen["gemm"])
    trt = _decode("trtllm", "llama-3.1-8b", 1)
    # TensorRT-LLM's attention op applies RoPE (engines/trtllm.yaml kernels.rope_in_attention):
    # 32 RoPE kernels of (32 + 8) heads x 128 fewer
    rope = 32 * elementwise_s(prof, "b200", (32 + 8) * 128, 2 * 2.0, "rope")
    assert trt["elementwise"] - gen["elementwise"] == pytest.approx(hand - rope, rel=1e-9)
    vll = _decode("vllm", "llama-3.1-8b", 1)
    assert vll["elementwise"] - gen["elementwise"] == pytest.approx(hand, rel=1e-9)
    assert vll["gemm"] == pytest.approx(gen["gemm"])
