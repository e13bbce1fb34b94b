"""KV-cache capacity of vLLM on one MI300X under InferenceX #1053's launch (gpt-oss-120b,
--gpu-memory-utilization 0.95, --max-model-len 2248, --block-size 64): the highest
concurrency of those cases (256 requests of at most 1024 + 1024 tokens) fits more than twice
over, so no request is preempted and preemption cannot be what the closed-loop TPOT misses
(docs/calibration.md, AMD section). Hand numbers: KV bytes per token from config.json (36
layers x K and V x 8 KV heads x head_dim 64 x 2 B, bf16); the device's 192 GiB (AMD MI300X
datasheet)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel.api import predict

GPT_OSS = (Path(__file__).parent
           / "data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json")
KV_PER_TOKEN = 36 * 2 * 8 * 64 * 2  # 73,728 B
MAX_MODEL_LEN = 2248  # InferenceX: ISL + OSL + 200


def _serving(concurrency: int, requests: int) -> dict:
    return {"kind": "serving", "model": str(GPT_OSS),
            "system": {"device": "mi300x", "num_gpus": 1}, "parallelism": {"tp": 1},
            "engine": {"name": "vllm", "version": "0.17.0", "gpu_memory_utilization": 0.95,
                       "max_model_len": MAX_MODEL_LEN, "block_size": 64},
            "inference": {"prompt_len": 1024, "output_len": 1024, "activation_dtype": "bf16",
                          "kv_dtype": "bf16"},
            "serving": {"arrival": {"process": "closed", "concurrency": concurrency},
                        "num_requests": requests,
                        "prompt_len": {"kind": "uniform", "min": 819, "max": 1024},
                        "output_len": {"kind": "uniform", "min": 819, "max": 1024},
                        "scheduler": {"kind": "chunked", "token_budget": 8192,
                                      "max_batch": 1024}}}


@pytest.fixture(scope="module")
def c256():
    return predict(_serving(256, 256))


def test_kv_bytes_per_token_and_pool_by_hand(c256):
    eng = c256.engine
    assert eng["kv_bytes_per_token"] == KV_PER_TOKEN
    # the pool is whole 64-token blocks of the budget left after weights and activations
    assert eng["kv_cache_tokens"] % 64 == 0
    assert eng["kv_cache_tokens"] * KV_PER_TOKEN <= eng["kv_cache_bytes"]
    assert eng["kv_cache_bytes"] - eng["kv_cache_tokens"] * KV_PER_TOKEN < 64 * KV_PER_TOKEN
    # 0.95 x 192 GiB = 182.4 GiB, minus 69.5 GiB of padded weights (MXFP4 experts 56.7 GiB
    # x 1.155 + 4.3 GB bf16) and the profile run's activations: about 105 GiB of KV
    assert eng["kv_cache_gib"] == pytest.approx(105.5, abs=1.0)


def test_concurrency_256_fits_twice_over_and_is_never_preempted(c256):
    demand = 256 * MAX_MODEL_LEN  # every request at the longest length the engine allows
    assert c256.engine["kv_cache_tokens"] >= 2.5 * demand
    assert c256.serving["preemptions"] == 0
    assert c256.serving["kv_cache"]["peak_utilization"] < 0.4
