"""MoE dispatch bytes per token come from the format the engine dispatches in (issue 13):
formats.dispatch_elem_bytes (bytes with scales), engine_comm.dispatch_format (engines/<id>.yaml
``moe.dispatch``), moe_parallel.dispatch_elem_bytes / a2a_bytes. Hand calculations."""

from __future__ import annotations

import pytest

from perfmodel.engine_comm import dispatch_format
from perfmodel.errors import SpecError
from perfmodel.formats import dispatch_elem_bytes
from perfmodel.moe_parallel import DEEPEP_FP8_BYTES, a2a_bytes
from perfmodel.moe_parallel import dispatch_elem_bytes as engine_dispatch_bytes

H = 7168  # DeepSeek-V3 hidden size


def test_bytes_per_token_by_hand():
    """One DeepSeek-V3 token (7168 channels) as each format sends it."""
    # NVFP4: 7168 e2m1 values = 3584 B, one e4m3 scale per 16 = 448 B
    assert H * dispatch_elem_bytes("nvfp4", 2.0) == 3584 + 448 == 4032
    # MXFP4: 3584 B + one e8m0 scale per 32 = 224 B
    assert H * dispatch_elem_bytes("mxfp4", 2.0) == 3584 + 224
    # DeepEP fp8: 7168 e4m3 bytes + one fp32 scale per 128 channels = 56 x 4 = 224 B
    assert H * dispatch_elem_bytes("fp8", 2.0) == 7168 + 224 == 7392
    assert dispatch_elem_bytes("fp8", 2.0) == DEEPEP_FP8_BYTES
    # unquantised: the activations' own bytes
    assert dispatch_elem_bytes("bf16", 2.0) == 2.0
    assert dispatch_elem_bytes("bf16", 4.0) == 4.0
    with pytest.raises(SpecError, match="dispatch format 'int4'"):
        dispatch_elem_bytes("int4", 2.0)


def test_each_engine_dispatches_what_its_source_says():
    # NVFP4 experts: TensorRT-LLM post-quant all-to-all, SGLang DeepEP NVFP4, vLLM bf16
    assert dispatch_format("trtllm", "nvfp4", "nvfp4") == "nvfp4"
    assert dispatch_format("sglang", "nvfp4", "nvfp4") == "nvfp4"
    assert dispatch_format("vllm", "nvfp4", "nvfp4") == "bf16"
    # fp8 block-scaled experts: SGLang / vLLM DeepEP fp8, TensorRT-LLM quantises after
    assert dispatch_format("sglang", "fp8_block", "fp8") == "fp8"
    assert dispatch_format("vllm", "fp8_block", "fp8") == "fp8"
    assert dispatch_format("trtllm", "fp8_block", "fp8") == "bf16"
    # generic (no engine file): DeepEP fp8 for fp8 / fp4 experts, bf16 activations otherwise
    assert dispatch_format("generic", "nvfp4", "nvfp4") == "fp8"
    assert dispatch_format("generic", "bf16", "bf16") == "bf16"
    assert dispatch_format("sglang", "bf16", "bf16") == "bf16"


def test_a2a_send_buffer_of_an_nvfp4_low_latency_dispatch_by_hand():
    """SGLang GB200 decode (LMSYS Part II): 1408 tokens per rank, top-8 copies (low latency),
    hidden 7168, NVFP4: 1408 x 8 x 4032 B = 45,416,448 B; the fp8 dispatch it replaces sends
    1408 x 8 x 7392 = 83,263,488 B (1.83x)."""
    nvfp4 = engine_dispatch_bytes("nvfp4", "nvfp4", 2.0, "sglang")
    fp8 = engine_dispatch_bytes("nvfp4", "nvfp4", 2.0, "generic")
    assert a2a_bytes(1408, 8, H, nvfp4) == 45_416_448
    assert a2a_bytes(1408, 8, H, fp8) == 83_263_488
    # vLLM's default bf16 dispatch of the same tokens: 1408 x 8 x 14336
    assert a2a_bytes(1408, 8, H, engine_dispatch_bytes("nvfp4", "nvfp4", 2.0, "vllm")) == \
        1408 * 8 * 14336
