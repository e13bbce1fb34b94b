"""TensorRT-LLM's start-up block prints what TensorRT-LLM logs for its KV cache, not vLLM's
lines (QA 12-05: "Available KV cache memory" / "GPU KV cache size" / "Maximum concurrency for"
were printed for trtllm scenarios). The wording is the C++ KVCacheManager::allocatePools'
(NVIDIA/TensorRT-LLM cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp at b35ac1b, v1.2.0rc2):
"Number of tokens per block: %d." and "[MemUsageChange] Allocated %0.2f GiB for max tokens in
paged KV cache (%d)."; the max concurrency, which TensorRT-LLM does not log, stays under a
neutral label. Expected numbers are worked by hand from llama-3.1-8b's config.json."""

from pathlib import Path

import perfmodel as pm
from perfmodel.report import render_prediction

VLLM_LINES = ("Available KV cache memory", "GPU KV cache size", "Maximum concurrency for")
# llama-3.1-8b: 32 layers x 8 KV heads x head_dim 128 x (K, V) x 2 bytes (bf16)
BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2


def _text(tmp_path: Path, engine: str) -> tuple[dict, str]:
    path = tmp_path / "trt.yaml"
    path.write_text("kind: inference\nmodel: llama-3.1-8b\nsystem: {device: h100-sxm5-80gb}\n"
                    f"engine: {engine}\ninference: {{prompt_len: 512, output_len: 16}}\n")
    p = pm.predict(path)
    return p.engine, render_prediction(p, scenario=path)


def test_trtllm_prints_its_own_kv_cache_lines(tmp_path):
    for engine in ("trtllm", "{name: trtllm, variant: tensorrt}"):  # both 1.x backends
        e, text = _text(tmp_path, engine)
        tokens = e["kv_cache_tokens"]
        assert BYTES_PER_TOKEN == 131072 and tokens % 32 == 0  # KvCacheConfig.tokens_per_block
        lines = text.splitlines()
        assert "Number of tokens per block: 32." in lines
        gib = tokens * 131072 / 2**30
        assert (f"[MemUsageChange] Allocated {gib:.2f} GiB for max tokens in paged KV cache "
                f"({tokens}).") in lines
        assert not [w for w in VLLM_LINES if w in text]
        # the fact TensorRT-LLM does not log, under a neutral label: tokens / 131,072 context
        assert (f"max concurrency (KV tokens / max_model_len 131,072): "
                f"{tokens / 131072:.2f}x") in lines


def test_trtllm_before_1_0_uses_neutral_labels(tmp_path):
    # 0.5 - 0.6's batch manager shipped as a binary: its wording is not read, so none is claimed
    e, text = _text(tmp_path, "{name: trtllm, version: '0.6.1'}")
    assert "[MemUsageChange]" not in text and not [w for w in VLLM_LINES if w in text]
    assert (f"KV cache: {e['kv_cache_bytes'] / 2**30:.2f} GiB, {e['kv_cache_tokens']:,} tokens "
            f"({e['kv_cache_blocks']:,} blocks of 64)") in text


def test_vllm_keeps_its_lines(tmp_path):
    _, text = _text(tmp_path, "vllm")
    assert all(w in text for w in VLLM_LINES) and "[MemUsageChange]" not in text
