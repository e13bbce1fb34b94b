"""With a named engine the top-level memory, the memory table and ``fits`` are the engine's own
start-up accounting (engine_memory), one story in text, JSON and API; a deployment the engine
cannot start is reported as not runnable with what would make it start. Hand numbers:
gpt-oss-120b (36 layers alternating sliding-128 / full, 8 KV heads x 64, bf16 KV = 2,048 B per
token and layer) on one H100 (79.22 GiB as CUDA reports it) under vLLM 0.10 (gpu_memory_utilization
0.9, max_num_batched_tokens 8,192, blocks of 16)."""

from __future__ import annotations

import math

import pytest

import perfmodel as pm
from perfmodel.report import render_prediction

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
DSR1 = "tests/data/hf_configs/aiconfigurator-0.12.0/deepseek-ai--DeepSeek-R1_config.json"
GIB = 2**30
T = 79.22 * GIB


def _oss(**engine) -> pm.Prediction:
    return pm.predict({"kind": "inference", "model": GPT_OSS,
                       "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
                       "parallelism": {"tp": 1},
                       "engine": {"name": "vllm", "version": "0.19.1", **engine},
                       "inference": {"batch": 1, "prompt_len": 1024, "output_len": 1024}})


def test_memory_and_table_are_the_engines_when_it_cannot_start():
    p = _oss()
    e = p.engine
    assert not e["starts"] and e["kv_cache_tokens"] == 0
    # weights as vLLM allocates them (MXFP4 padding), its profiling peak and non-torch memory
    held = e["weights_bytes"] + e["activation_peak_bytes"] + e["non_torch_bytes"]
    assert p.memory_per_gpu_bytes == pytest.approx(held)
    assert p.breakdown["memory"]["weights"] == pytest.approx(e["weights_bytes"])
    assert sum(p.breakdown["memory"].values()) == pytest.approx(p.memory_per_gpu_bytes)
    assert "outside_budget" not in p.breakdown["memory"]
    assert held > 0.9 * T  # above vLLM's budget, below the device: the budget decides
    assert e["budget_bytes"] == pytest.approx(0.9 * T)
    assert not p.fits and p.runnable is False
    d = p.to_json_dict()
    assert d["memory_per_gpu_bytes"] == p.memory_per_gpu_bytes and d["runnable"] is False


def test_what_would_make_it_start():
    p = _oss()
    e = p.engine
    # one request of max_model_len 131,072 (vLLM check_enough_kv_cache_memory), hybrid:
    # 18 full layers x 131,072 tokens; 18 sliding layers x (127 + 8,192 -> 8,320 in blocks
    # of 16, + one block = 8,336) tokens; 2,048 B per token and layer
    request = 18 * 131_072 * 2048 + 18 * 8_336 * 2048
    need = (e["weights_bytes"] + e["activation_peak_bytes"] + e["non_torch_bytes"] + request) / T
    assert need < 1
    reason = p.not_runnable_reason
    assert reason.startswith("vllm fails to start: no memory left for the KV cache")
    assert f"engine.gpu_memory_utilization >= {math.ceil(need * 1000) / 1000:.3f}" in reason
    assert "with parallelism.tp 2 (2 GPUs per instance) it starts" in reason
    text = render_prediction(p)
    assert text.splitlines()[3].startswith("NOT RUNNABLE as specified: vllm fails to start")
    # and the fraction it names does start it
    q = _oss(gpu_memory_utilization=math.ceil(need * 1000) / 1000)
    assert q.engine["starts"] and q.engine["max_concurrency"] >= 1 and q.runnable


def test_a_starting_vllm_fills_its_budget():
    p = pm.predict({"kind": "inference", "model": "llama-3.1-70b",
                    "engine": {"name": "vllm", "version": "0.19.1"},
                    "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
                    "parallelism": {"tp": 4},
                    "inference": {"batch": 8, "prompt_len": 1024, "output_len": 256}})
    # vLLM allocates gpu_memory_utilization x the memory CUDA reports: 0.9 x 79.22 GiB
    assert p.memory_per_gpu_bytes / GIB == pytest.approx(0.9 * 79.22, rel=1e-3)
    assert p.breakdown["memory"]["kv_cache"] == pytest.approx(p.engine["kv_cache_bytes"])
    assert sum(p.breakdown["memory"].values()) == pytest.approx(p.memory_per_gpu_bytes)
    assert p.fits and p.runnable is True
    text = render_prediction(p)
    assert "vllm budget per GPU" not in text or "71.30 GiB" in text
    assert "\nmemory   " not in text and "\nvllm memory" in text  # one memory table: the engine's


def test_sglang_negative_fraction_names_the_least_that_starts():
    """SGLang's default reserve at dp_size 72 on GB200 leaves mem_fraction_static < 0
    (test_engine_fit); the least fraction that holds one request of max_model_len is
    (W + request) / (T - CUDA context - distributed init): model_runner.profile_max_num_token's
    KV = f x M - W with M the free memory after the distributed init."""
    p = pm.predict({"kind": "inference", "model": DSR1, "engine": "sglang",
                    "system": {"device": "gb200", "num_gpus": 72},
                    "parallelism": {"tp": 1, "attention_dp": 72, "ep": 72,
                                    "redundant_experts": 32},
                    "inference": {"batch": 72, "prompt_len": 2000, "output_len": 100,
                                  "weight_dtype": "fp8_block", "kv_dtype": "bf16"}})
    e = p.engine
    request = e["kv_bytes_per_token"] * math.ceil(e["max_model_len"] / e["kv_block_size"]) \
        * e["kv_block_size"]
    least = (e["weights_bytes"] + request) / (e["device_memory_bytes"] - e["non_torch_bytes"])
    assert p.runnable is False
    assert f"engine.mem_fraction_static >= {math.ceil(least * 1000) / 1000:.3f}" in \
        p.not_runnable_reason
