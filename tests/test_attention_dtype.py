"""Attention's dtype comes from the attention path, not the linear weights' format; an
explicit ``activation_dtype`` is honoured (QA 2026-12-03 (b) item 4). Llama-3-70B on 2 x H100
tp2, batch 32, prompt 1024 (the QA's /tmp/qa2 scenarios), against hand counts."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.specs.registry import get_device

H100_BF16 = get_device("h100-sxm5-80gb").peak_tflops["bf16"] * 1e12  # 989.4 TFLOP/s


def _ops(device="h100-sxm5-80gb", **inf) -> dict:
    sc = pm.as_scenario({"kind": "inference", "model": "llama-3-70b",
                         "system": {"device": device, "num_gpus": 2}, "parallelism": {"tp": 2},
                         "inference": {"batch": 32, "prompt_len": 1024, "output_len": 256,
                                       **inf}})
    return {(o.name, o.phase): o for o in pm.predict(sc).ops}


def test_prefill_attention_is_the_same_bf16_kernel_whatever_the_weights():
    """softmax(QK^T)V of 32 x 1024 causal tokens on 32 heads (64 / tp 2), head dim 128:
    2 x (128 + 128) x 32 x 524,800 pairs x 32 = 2.751e11 FLOPs; Q read and O written in bf16
    (32 x 1024 x 32 x 256 x 2 B) plus K, V of 4 KV heads (32 x 1024 x 4 x 256 x 2 B)."""
    runs = [_ops(weight_dtype="bf16"),
            _ops(weight_dtype="fp8", activation_dtype="bf16", kv_dtype="bf16"),
            _ops(weight_dtype="fp8", activation_dtype="fp8", kv_dtype="bf16"),
            _ops(weight_dtype="fp8", kv_dtype="bf16")]
    for ops in runs:
        core = ops[("attn.core", "prefill")]
        assert core.flops == pytest.approx(2 * 256 * 32 * 524_800 * 32)
        assert core.bytes == pytest.approx(32 * 1024 * 32 * 256 * 2 + 32 * 1024 * 4 * 256 * 2)
        assert core.time_s == pytest.approx(runs[0][("attn.core", "prefill")].time_s)


def test_an_fp8_kv_cache_runs_fp8_attention_where_the_device_has_fp8():
    """vLLM's FlashAttention backend quantises the query to the fp8 cache's dtype: the core
    reads fp8 bytes and is no slower than the bf16 kernel on H100, nor twice as fast (the
    profile's curve is fitted on bf16 kernels, so it runs at the bf16 peak:
    roofline.attention_peak_dtype; measured fp8 / bf16 FMHA at head dim 128 on H100, TensorRT-LLM
    1.3.0rc20: median 0.80, 10th percentile 0.72); A100 (no fp8 tensor cores) dequantises into
    bf16."""
    bf16 = _ops(weight_dtype="bf16", kv_dtype="bf16")[("attn.core", "prefill")]
    fp8 = _ops(weight_dtype="bf16", kv_dtype="fp8")[("attn.core", "prefill")]
    assert fp8.bytes < bf16.bytes
    assert 0.72 * bf16.time_s <= fp8.time_s <= bf16.time_s
    a100 = _ops("a100-sxm4-80gb", weight_dtype="bf16", kv_dtype="fp8")[("attn.core", "prefill")]
    a100_bf16 = _ops("a100-sxm4-80gb", weight_dtype="bf16")[("attn.core", "prefill")]
    assert a100.time_s >= a100_bf16.time_s


def test_explicit_bf16_activations_with_fp8_weights_run_weight_only():
    """mlp.up of 32,768 tokens: 2 x 32,768 x 28,672 x 8,192 = 1.539e13 FLOPs per GPU. Asked
    for bf16 activations, it runs a 16-bit GEMM (W8A16), so below H100's 989 TFLOP/s bf16
    peak; left unset, the engines' W8A8 fp8 GEMM (above it)."""
    flops = 2 * 32_768 * 28_672 * 8_192
    w8a16 = _ops(weight_dtype="fp8", activation_dtype="bf16")[("mlp.up", "prefill")]
    w8a8 = _ops(weight_dtype="fp8")[("mlp.up", "prefill")]
    bf16 = _ops(weight_dtype="bf16")[("mlp.up", "prefill")]
    assert w8a16.flops == w8a8.flops == pytest.approx(flops)
    assert flops / w8a16.time_s < H100_BF16
    assert flops / w8a8.time_s > H100_BF16
    # weight-only: the GEMM reads 1 B per fp8 weight (decode is weight-read bound)
    dec16 = _ops(weight_dtype="fp8", activation_dtype="bf16")[("mlp.up", "decode")]
    decbf = _ops(weight_dtype="bf16")[("mlp.up", "decode")]
    weights = 28_672 * 8_192  # up + gate on one GPU
    assert decbf.bytes - dec16.bytes == pytest.approx(weights * (2 - 1), rel=1e-6)
    assert bf16.time_s == pytest.approx(w8a16.time_s, rel=0.01)
