"""Which grouped-GEMM kernel an engine runs for its MoE experts, per device (QA tour 4, items
1 and 3): vLLM's block-fp8 experts on Blackwell run FlashInfer's TensorRT-LLM-gen MoE (its FP8
oracle's CUDA order; the aiconfigurator vLLM 0.24.0 B200 rows), not TensorRT-LLM's DeepGEMM
backend; SGLang's gpt-oss MXFP4 experts on Hopper run OpenAI triton_kernels matmul_ogs
(SGLang's GPT-OSS override at EP 1), the kernel vLLM's Triton table measured."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engines import moe_kernels
from perfmodel.paths import data_dir
from perfmodel.specs.registry import load_profile

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"


def _profile(device: str):
    return load_profile(data_dir("calibration") / f"{device}.reference.json")


@pytest.mark.parametrize("device", ["b200", "b300", "gb200", "gb300"])
def test_vllm_block_fp8_experts_on_blackwell_read_flashinfer_trtllm(device):
    prof = _profile(device)
    key, _ = prof.moe_table("fp8_block", "", *moe_kernels("vllm", "fp8_block"))
    assert key == "fp8_block@flashinfer_trtllm"
    assert prof.moe_kernel[key] == "flashinfer_trtllm"
    # under a DeepEP all-to-all vLLM keeps DeepGEMM: TensorRT-LLM's DeepGEMM table
    key, _ = prof.moe_table("fp8_block", "", *moe_kernels("vllm", "fp8_block", a2a="deepep"))
    assert prof.moe_kernel[key] == "deepgemm"


@pytest.mark.parametrize("device", ["h100-sxm5-80gb", "h200-sxm-141gb"])
def test_vllm_block_fp8_experts_on_hopper_read_vllms_measured_kernels(device):
    # no FlashInfer TRT-LLM-gen kernel before SM100: Triton at EP 1, FlashInfer CUTLASS at EP > 1
    # (vLLM 0.24.0's own rows, kernel_source vllm_fp8moe_triton_tritonexperts /
    # vllm_fp8moe_flashinfer_cutlass_flashinferexperts); DeepGEMM under DeepEP: the fp8 proxy
    prof = _profile(device)
    key, _ = prof.moe_table("fp8_block", "", *moe_kernels("vllm", "fp8_block"))
    assert key == "fp8_block@vllm_triton" and prof.moe_kernel[key] == "vllm_triton"
    key, _ = prof.moe_table("fp8_block", "", *moe_kernels("vllm", "fp8_block", ep=8))
    assert key == "fp8_block@flashinfer_cutlass" and prof.moe_kernel[key] == "flashinfer_cutlass"
    key, _ = prof.moe_table("fp8_block", "", *moe_kernels("vllm", "fp8_block", a2a="deepep", ep=8))
    assert key == "fp8"


def _decode(device: str, engine: str, batch: int, model=None, gpus=8, **inf):
    sc = pm.Scenario(kind="inference", model=model or "deepseek-v3", engine=engine,
                     system={"device": device, "num_gpus": gpus}, parallelism={"tp": gpus},
                     inference=dict(batch=batch, prompt_len=1024, output_len=1024, **inf))
    return pm.predict(sc)


DSV3 = dict(weight_dtype="fp8_block", activation_dtype="fp8", kv_dtype="bf16")


def _op(pred, name: str, phase: str = "decode") -> dict:
    rows = [o for o in pred.to_json_dict(include_ops=True)["ops"]
            if o["name"] == name and o["phase"] == phase]
    assert len(rows) == 1
    return rows[0]


def test_deepseek_v3_vllm_experts_on_b200_not_slower_than_h200():
    """QA: DeepSeek-V3 TP 8 fp8_block under vLLM decoded slower on B200 (11.35 ms) than on
    H200 (9.24 ms): the B200 read TensorRT-LLM's DeepGEMM table (105.5 us per MoE layer at one
    token, TP 8, balanced) where vLLM runs FlashInfer TRT-LLM-gen (39.9 us, the same rows)."""
    b200, h200 = _decode("b200", "vllm", 1, **DSV3), _decode("h200-sxm-141gb", "vllm", 1, **DSV3)
    assert b200.tpot_s < h200.tpot_s
    up = _op(b200, "moe.expert.up")
    # by hand: 8 routed experts x (2 x 2048 / 8) x 7168 fp8 weights (+ one fp32 scale per
    # 128 x 128 block) = 29.36 MB, at 8.0 TB/s (hardware_specs b200) 3.67 us: the kernel is
    # no faster than streaming them, and no slower than the H200's call
    weights = 8 * (2 * 2048 // 8) * 7168 * (1 + 4 / 128**2)
    assert up["time_s"] >= weights / 8.0e12
    assert up["time_s"] <= _op(h200, "moe.expert.up")["time_s"]
    for batch in (32, 256):
        assert (_decode("b200", "vllm", batch, **DSV3).tpot_s
                < _decode("h200-sxm-141gb", "vllm", batch, **DSV3).tpot_s)


@pytest.mark.parametrize("device", ["h100-sxm5-80gb", "h200-sxm-141gb"])
def test_sglang_gpt_oss_experts_on_hopper_read_matmul_ogs(device):
    prof = _profile(device)
    kernels = moe_kernels("sglang", "w4a16_mxfp4")
    assert prof.moe_table("bf16", "mxfp4", *kernels)[0] == "w4a16_mxfp4@triton_ogs"


def test_sglang_gpt_oss_on_h200_runs_vllms_kernel():
    """QA: gpt-oss-120b on one H200 at batch 256, SGLang 89.6 ms vs vLLM 32.0: SGLang read its
    fused_moe_triton table (1.51 ms per layer at 32 tokens vs matmul_ogs 0.66 ms in the measured
    rows). Same kernel now: the experts' per-call time near vLLM's (vLLM keeps the checkpoint's
    MXFP4 scales beside the swizzled ones, engines/vllm.yaml moe.mxfp4: more bytes), TPOT within
    15 %. vLLM from 0.14, which runs matmul_ogs on Hopper (engines/versions/vllm-0.14.yaml
    moe.mxfp4.backend; 0.10 - 0.13 run Marlin there, the base file)."""
    path = str(data_dir("calibration").parent / GPT_OSS)
    sgl = _decode("h200-sxm-141gb", "sglang", 256, model=path, gpus=1, kv_dtype="fp8")
    vll = _decode("h200-sxm-141gb", {"name": "vllm", "version": "0.14.1"}, 256, model=path,
                  gpus=1, kv_dtype="fp8")
    assert _op(sgl, "moe.expert.up")["time_s"] == pytest.approx(
        _op(vll, "moe.expert.up")["time_s"], rel=0.15)
    assert sgl.tpot_s < 1.15 * vll.tpot_s


# -- the kernel an engine runs depends on expert parallelism (moe.kernels ep1 / ep_gt1) --------

def _h200_table(engine: str, model: str, ep: int, **inf) -> str:
    par = {"tp": 8, "ep": ep} if ep > 1 else {"tp": 8}
    sc = pm.Scenario(kind="inference", model=model, engine=engine,
                     system={"device": "h200-sxm-141gb", "num_gpus": 8}, parallelism=par,
                     inference=dict(batch=32, prompt_len=1024, output_len=1024, **inf))
    return pm.predict(sc).breakdown["moe"]["decode_step"]["grouped_gemm_table"]


def test_sglang_gpt_oss_kernel_by_ep_on_h200():
    """SGLang's GPT-OSS override: triton_kernel (matmul_ogs) at ep_size 1 only ("Triton kernel
    MoE is only supported when ep_size == 1"); at EP 8 moe_runner_backend stays auto:
    fused_moe_triton, SGLang 0.5.14's own measured table (engines/sglang.yaml sglgptossmoe)."""
    assert moe_kernels("sglang", "w4a16_mxfp4", ep=1)[0] == (
        "flashinfer_trtllm", "triton_ogs", "sglang_triton")
    assert moe_kernels("sglang", "w4a16_mxfp4", ep=8)[0] == ("flashinfer_trtllm", "sglang_triton")
    path = str(data_dir("calibration").parent / GPT_OSS)
    assert _h200_table("sglang", path, 1, kv_dtype="fp8") == "moe.w4a16_mxfp4@triton_ogs"
    assert _h200_table("sglang", path, 8, kv_dtype="fp8") == "moe.w4a16_mxfp4@sglang_triton"
    # Blackwell: flashinfer_mxfp4 at any EP (the SM100 branch comes first)
    prof = _profile("b200")
    for ep in (1, 8):
        kernels = moe_kernels("sglang", "w4a16_mxfp4", ep=ep)
        assert prof.moe_table("bf16", "mxfp4", *kernels)[0] == "w4a16_mxfp4@flashinfer_trtllm"


def test_vllm_hopper_block_fp8_kernel_by_ep_on_h200():
    """vLLM oracle/fp8.py _get_priority_backends at 001a058b: on Hopper block fp8 TRITON first
    at ep_size 1, FLASHINFER_CUTLASS at ep_size > 1. The H200 DeepSeek-V3 prediction reads
    vLLM 0.24.0's measured table of each (calibration/references.yaml: the aiconfigurator
    H200 vLLM rows, Triton at EP 1, FlashInfer CUTLASS at EP 2-256)."""
    assert moe_kernels("vllm", "fp8_block", ep=1)[0] == (
        "flashinfer_trtllm", "vllm_triton", "flashinfer_cutlass", "deepgemm")
    assert moe_kernels("vllm", "fp8_block", ep=8)[0] == (
        "flashinfer_trtllm", "flashinfer_cutlass", "deepgemm")
    assert moe_kernels("vllm", "fp8_block", a2a="deepep", ep=8)[0] == ("deepgemm",)
    ep1 = _h200_table("vllm", "deepseek-v3", 1, **DSV3)
    ep8 = _h200_table("vllm", "deepseek-v3", 8, **DSV3)
    assert ep1.startswith("moe.fp8_block@vllm_triton"), ep1
    assert ep8.startswith("moe.fp8_block@flashinfer_cutlass"), ep8
    # Blackwell: FlashInfer TRT-LLM-gen first at any EP
    prof = _profile("b200")
    for ep in (1, 8):
        key, _ = prof.moe_table("fp8_block", "", *moe_kernels("vllm", "fp8_block", ep=ep))
        assert key == "fp8_block@flashinfer_trtllm"


@pytest.mark.parametrize("kernels, where", [
    ({"fp8_block": {"ep1": ["deepgemm"]}}, "moe.kernels.fp8_block"),
    ({"fp8_block": {"none": {"deepep": ["deepgemm"], "none": []}, "deepep": []}},
     "moe.kernels.fp8_block.none"),
    ({"fp8_block": {"ep1": {"ep1": [], "ep_gt1": []}, "ep_gt1": []}},
     "moe.kernels.fp8_block.ep1"),
    ({"fp8_block": {"ep1": "deepgemm", "ep_gt1": []}}, "moe.kernels.fp8_block.ep1"),
])
def test_moe_kernels_bad_ep_entry_names_the_field(kernels, where):
    from perfmodel.engines import MoeFacts
    from perfmodel.errors import SpecError

    with pytest.raises((SpecError, ValueError), match=where.replace(".", r"\.") + ":"):
        MoeFacts(kernels=kernels)
