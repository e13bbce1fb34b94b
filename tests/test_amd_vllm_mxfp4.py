"""vLLM's dense MXFP4 linear on AMD (AMD Quark OCP_MX checkpoints such as
amd/Llama-3.3-70B-Instruct-MXFP4-Preview), engines/vllm.yaml quantization.formats.mxfp4.

What the source says (sources vllmquarkocpmx, vllmrocmsupportsmx): QuarkOCP_MX runs the native
W4A4 GEMM (aiter gemm_a4w4 / gemm_afp4wfp4 after a per-call MXFP4 quantise of the activation)
only where ``current_platform.supports_mx()``, which on ROCm is gfx95x (MI350X / MI355X). On
gfx942 (MI300X) it emulates: the weight dequantised to bf16, the activation quantise-dequantised,
then a bf16 ``F.linear``: a 16-bit GEMM, the weight-only rule of the model. The hardware files
agree independently: CDNA 3 has no FP4 matrix cores (mi300x peak_tflops.fp4 null), CDNA 4 has
MXFP4 ones.
"""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engines import format_rule
from perfmodel.formats import engine_activation, native_formats
from perfmodel.specs.registry import get_device

MI300X, MI355X = "mi300x", "mi355x"


def test_vllm_states_the_amd_fallback_and_no_narrow_activation():
    rule = format_rule("vllm", "mxfp4")
    assert rule.without_tensor_cores == {"amd": "weight_only"}
    # Quark W4A4 quantises its activations to MXFP4 itself (not the fp8 W4A8 of TensorRT-LLM's
    # rule activation), and gpt-oss MXFP4 experts run with bf16 activations: no 'narrow' rule
    assert rule.with_tensor_cores is None
    # the release InferenceX ran on MI300X (v0.17.0) reads the same rule
    assert format_rule("vllm", "mxfp4", "0.17.0") == rule


def test_mi300x_runs_quark_mxfp4_as_bf16_gemms_mi355x_natively():
    mi300, mi355 = get_device(MI300X), get_device(MI355X)
    assert "mxfp4" not in native_formats(mi300) and "mxfp4" in native_formats(mi355)
    # the scenario's own W4A4 is kept where it runs (gfx950) ...
    kept = engine_activation(mi355, "vllm", None, None, "mxfp4", (), "mxfp4", False)
    assert (kept.activation_dtype, kept.note) == ("mxfp4", None)
    # ... and on gfx942 the engine neither refuses nor replaces it (the GEMM is modelled weight-only)
    emu = engine_activation(mi300, "vllm", None, None, "mxfp4", (), "mxfp4", False)
    assert emu.note is None


def _gemm_s(device, act, phase):
    inf = {"batch": 8, "prompt_len": 2048, "output_len": 16, "weight_dtype": "mxfp4",
           "activation_dtype": act, "kv_dtype": "fp8"}
    p = pm.predict(pm.Scenario(kind="inference", model="llama-3.1-70b", engine={"name": "vllm"},
                               system={"device": device, "num_gpus": 1}, parallelism={"tp": 1},
                               inference=inf))
    return sum(op.total_s for op in p.ops if op.cls == "gemm" and op.phase == phase)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_mi300x_emulation_is_the_bf16_activation_gemm(phase):
    """On MI300X the W4A4 checkpoint's GEMMs take exactly the time of the W4A16 ones (emulate:
    a bf16 F.linear), in prefill and decode alike."""
    assert _gemm_s(MI300X, "mxfp4", phase) == pytest.approx(_gemm_s(MI300X, "bf16", phase))


def test_mi355x_w4a4_prefill_beats_w4a16():
    """On MI355X the native MXFP4 GEMM (CDNA 4 datasheet: MXFP4 matrix peak 4x bf16's) makes a
    2048-token prefill's GEMMs faster than the bf16-activation GEMMs on the same weights."""
    assert _gemm_s(MI355X, "mxfp4", "prefill") < 0.75 * _gemm_s(MI355X, "bf16", "prefill")
