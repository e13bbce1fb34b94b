"""vLLM's MXFP4 MoE backends as engine facts (engines/vllm.yaml moe.mxfp4): the padding
Mxfp4MoEMethod.create_weights applies per backend and the scale copy the Triton backend keeps,
checked against hand sums of gpt-oss-120b's expert tensors (hidden 2880, 128 experts of
intermediate 2880, 36 layers)."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engine_memory import EngineShape, mxfp4_expert_factor
from perfmodel.engines import Mxfp4Facts, get_engine
from perfmodel.specs.registry import get_device

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
GIB = 2**30


def _engine(device: str, engine: dict, tp: int = 1) -> dict:
    sc = {"kind": "inference", "model": GPT_OSS, "system": {"device": device, "num_gpus": tp},
          "parallelism": {"tp": tp}, "engine": engine,
          "inference": {"batch": 1, "prompt_len": 1, "output_len": 1}}
    return pm.predict(sc).engine


def _expert_bytes(h: int, i: int, scale_copies: int = 1) -> int:
    """One layer's 128 experts by hand: w13 (2I x H/2 bytes + 2I x H/32 scales), w2 (H x I/2 +
    H x I/32) (vllm mxfp4.py create_weights); biases left out (bf16 2I + H per expert)."""
    w13 = 2 * i * h // 2 + scale_copies * 2 * i * h // 32
    w2 = h * i // 2 + scale_copies * h * i // 32
    return 128 * (w13 + w2)


def test_marlin_pads_hidden_to_256_and_intermediate_to_128_on_hopper_0_10():
    plain = _engine("h100-sxm5-80gb", {"name": "vllm", "version": "0.10.1"})
    assert plain["mxfp4_backend"] == "marlin"
    # 2880 -> 3072 (256 x 12), 2880 -> 2944 (128 x 23)
    extra = 36 * (_expert_bytes(3072, 2944) - _expert_bytes(2880, 2880))
    assert plain["mxfp4_extra_bytes"] == pytest.approx(extra, rel=1e-3)  # biases not padded here
    assert extra / GIB == pytest.approx(5.12, abs=0.01)


def test_triton_on_hopper_from_0_14_keeps_the_scales_and_pads_nothing_for_gpt_oss():
    e = _engine("h100-sxm5-80gb", {"name": "vllm", "version": "0.14.1"})
    assert e["mxfp4_backend"] == "triton_ogs"
    # 2880 is a multiple of 64: no padding; the checkpoint's e8m0 scales stay (1/32 B per weight)
    extra = 36 * (_expert_bytes(2880, 2880, scale_copies=2) - _expert_bytes(2880, 2880))
    assert e["mxfp4_extra_bytes"] == pytest.approx(extra, rel=1e-3)
    assert extra / GIB == pytest.approx(3.34, abs=0.01)


def test_blackwell_flashinfer_pads_both_to_256():
    e = _engine("b200", {"name": "vllm"})
    assert e["mxfp4_backend"] == "flashinfer_trtllm"
    extra = 36 * (_expert_bytes(3072, 3072) - _expert_bytes(2880, 2880))
    assert e["mxfp4_extra_bytes"] == pytest.approx(extra, rel=1e-3)


def test_rocm_gfx942_pads_hidden_to_256_and_keeps_the_scales():
    """FusedMoE rounds H to 256 for mxfp4 on ROCm; Mxfp4MoEMethod pads I_p to 128 on gfx942;
    the Triton branch keeps the checkpoint scales: 2880 -> 3072, 2880 -> 2944, two scale
    copies."""
    e = _engine("mi300x", {"name": "vllm", "version": "0.17.0"})
    assert e["mxfp4_backend"] == "triton_ogs_rocm"
    extra = 36 * (_expert_bytes(3072, 2944, scale_copies=2) - _expert_bytes(2880, 2880))
    assert e["mxfp4_extra_bytes"] == pytest.approx(extra, rel=1e-3)


def test_the_partition_is_padded_not_the_whole_intermediate():
    """TP 4 over the experts: I_p = 720, Marlin pads it to 768 (128 x 6): the factor per GPU
    is 3072 x 768 / (2880 x 720) = 1.1378, not 3072 x 2944 / 2880**2."""
    spec = get_engine("vllm", "0.10.1")
    model = pm.get_model(GPT_OSS)
    dev = get_device("h100-sxm5-80gb")
    shape = EngineShape(tp=4, weight_dtype="mxfp4")
    backend, factor = mxfp4_expert_factor(spec, model, shape, dev, (("experts", "mxfp4"),))
    assert backend == "marlin"
    assert factor == pytest.approx(3072 * 768 / (2880 * 720))


def test_other_formats_engines_and_unlisted_devices_are_unchanged():
    assert _engine("h100-sxm5-80gb", {"name": "sglang"})["mxfp4_backend"] is None
    assert get_engine("trtllm").moe.mxfp4 is None
    dense = pm.predict({"kind": "inference", "model": "llama-3.1-8b",
                        "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
                        "engine": "vllm", "inference": {"batch": 1, "prompt_len": 1,
                                                        "output_len": 1}}).engine
    assert dense["mxfp4_backend"] is None and dense["mxfp4_extra_bytes"] == 0.0


def test_a_backend_must_be_described():
    with pytest.raises(ValueError, match=r"moe\.mxfp4\.backend names \['nope'\]"):
        Mxfp4Facts(backend={"9.0": "nope"}, backends={})


def test_issue_23278_budget_is_negative_as_logged():
    """vLLM 0.10.1 on an H100 PCIe with the defaults logged 'Available KV cache memory: -2.14
    GiB' (issue #23278): with Marlin's padding perfmodel's budget is negative too (no KV)."""
    e = _engine("h100-pcie-80gb", {"name": "vllm", "version": "0.10.1"})
    assert e["kv_cache_bytes"] == 0.0
    assert any("no memory left for the KV cache" in p for p in e["problems"])


@pytest.mark.parametrize("device,version,backend,table", [
    ("h100-sxm5-80gb", "0.10.1", "marlin", "moe.w4a16_mxfp4@marlin"),
    ("h100-sxm5-80gb", "0.14.1", "triton_ogs", "moe.w4a16_mxfp4@triton_ogs"),
    ("b200", "0.10.1", "flashinfer_trtllm", "moe.w4a16_mxfp4@flashinfer_trtllm")])
def test_the_experts_are_timed_by_the_backend_their_weights_are_laid_out_for(
        device, version, backend, table):
    """One rule (moe.mxfp4.backend by compute capability) picks the backend for both the
    padded expert layout and the grouped-GEMM table: vLLM 0.10 - 0.13 on Hopper lays out and
    times Marlin, 0.14+ Triton matmul_ogs, Blackwell FlashInfer TRT-LLM-gen."""
    sc = {"kind": "inference", "model": GPT_OSS, "system": {"device": device, "num_gpus": 1},
          "parallelism": {"tp": 1}, "engine": {"name": "vllm", "version": version},
          "inference": {"batch": 8, "prompt_len": 128, "output_len": 2}}
    p = pm.predict(sc)
    assert p.engine["mxfp4_backend"] == backend
    assert p.breakdown["moe"]["decode_step"]["grouped_gemm_table"] == table


def test_every_mxfp4_backend_names_a_timing_kernel_label():
    from perfmodel.calibrate.moe_kernels import kernel_labels

    labels = set(kernel_labels().values())
    for version in (None, "0.14.1"):
        facts = get_engine("vllm", version).moe.mxfp4
        for name, b in facts.backends.items():
            assert (b.kernel or name) in labels, name
