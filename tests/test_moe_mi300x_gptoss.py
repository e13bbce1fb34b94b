"""gpt-oss-120b's MXFP4 experts on one MI300X under vLLM (issue 13, InferenceX #1053 cases):
the kernel vLLM runs there (triton_kernels matmul_ogs, engines/vllm.yaml source
vllmrocmmxfp4), the weights a decode step reads, and the proxy table that times them (the
MI300X profile has no MXFP4 weight-only grouped-GEMM table: docs/calibration.md, AMD section)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel.api import predict
from perfmodel.engines import engine_facts, moe_kernels

GPT_OSS = (Path(__file__).parent
           / "data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json")


def _scenario(batch: int) -> dict:
    return {"kind": "inference", "model": str(GPT_OSS),
            "system": {"device": "mi300x", "num_gpus": 1}, "parallelism": {"tp": 1},
            "engine": "vllm",
            "inference": {"batch": batch, "prompt_len": 1024, "output_len": 1024,
                          "activation_dtype": "bf16", "kv_dtype": "bf16"}}


def test_vllm_runs_matmul_ogs_for_mxfp4_experts_and_cites_the_rocm_path():
    for version in (None, "0.14"):  # the 0.17 release falls in the 0.14 family
        kernels, proxy = moe_kernels("vllm", "w4a16_mxfp4", version)
        assert kernels[0] == "triton_ogs" and proxy is None
    spec = engine_facts("vllm", "0.14")
    assert "vllmrocmmxfp4" in spec.field_sources["moe.kernels"]
    assert "vllmrocmmxfp4" in {s.id for s in spec.sources}


def test_decode_reads_the_experts_that_receive_a_token():
    # 64 sequences x top-4 of 128 experts: 128 (1 - (1 - 4/128)^64) = 111.2 experts receive a
    # token; each holds up (2 x 2880 x 2880) and down (2880 x 2880) MXFP4 weights at 4 bits plus
    # one e8m0 scale per 32 (0.53125 B per weight), in 36 layers
    p = predict(_scenario(64))
    active = 128 * (1 - (1 - 4 / 128) ** 64)
    per_expert = (2 * 2880 * 2880 + 2880 * 2880) * (0.5 + 1 / 32) * 36
    got = p.breakdown["moe"]["decode_step"]["routed_expert_weight_bytes_per_gpu"]
    assert active == pytest.approx(111.2, abs=0.05)
    assert got == pytest.approx(active * per_expert, rel=1e-6)


def test_the_experts_read_a_proxy_table_and_say_so():
    p = predict(_scenario(256))
    why = p.breakdown["moe"]["decode_step"]["grouped_gemm_table"]
    assert why.startswith("moe.bf16 ")
    assert "as proxy for triton_ogs" in why and "w4a16_mxfp4" in why
