"""QA 1205c D13: a KV pool below one request of max_model_len is each engine's own rule
(engines/<id>.yaml memory.short_pool). vLLM refuses to start (v1/core/kv_cache_utils.py
check_enough_kv_cache_memory raises ValueError); SGLang starts with max_req_len = min(context_len
- 1, max_total_num_tokens - 1) (tp_worker.py, 0.5.5.post3 - 0.5.14); TensorRT-LLM reduces
max_seq_len to the pool's whole blocks and starts (KVCacheManager). The QA repro: Llama-3.1-70B
int4 on 2 x RTX 4090 at TP2, batch 1, 512 + 128 tokens, max_model_len the model's 131,072."""

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine

#: SGLang 0.5.14: from 0.5.20 a 20-35 GiB card reserves more (chunked prefill 4096, CUDA-graph
#: batch 48 / 160: engines/versions/sglang-0.5.20.yaml), leaving this pool no tokens at all
SGLANG_0514 = {"name": "sglang", "version": "0.5.14"}


def _predict(engine):
    engine = SGLANG_0514 if engine == "sglang" else engine
    return pm.predict(pm.Scenario(
        kind="inference", model="llama-3.1-70b", engine=engine,
        system={"device": "rtx-4090", "num_gpus": 2}, parallelism={"tp": 2},
        inference={"batch": 1, "prompt_len": 512, "output_len": 128, "weight_dtype": "int4"}))


def test_the_files_state_each_engines_rule():
    assert get_engine("vllm").memory.short_pool == "refuse"
    assert get_engine("vllm", "0.2.0").memory.short_pool == "refuse"  # the overlay inherits
    assert get_engine("sglang").memory.short_pool == "cap"
    assert get_engine("trtllm").memory.short_pool == "cap"
    assert get_engine("trtllm", "0.6.1").memory.short_pool is None  # binary batch manager


def _short_pool_warning(p, engine):
    hits = [w for w in p.warnings if w.startswith(f"{engine}: the KV cache holds")]
    assert len(hits) == 1
    return hits[0]


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_capping_engines_start_and_say_so(engine):
    """The pool (a few thousand tokens: 70B int4 weights leave ~2-4 GiB of a 24 GiB card per
    GPU) holds the 640-token request but not 131,072: the engine starts, the request fits, and
    no text says it refuses to start."""
    p = _predict(engine)
    tokens = p.engine["kv_cache_tokens"]
    assert 640 < tokens < 131_072
    assert p.fits and p.runnable and p.engine["starts"]
    w = _short_pool_warning(p, engine)
    assert "refuses to start" not in w and "fails to start" not in w
    assert "starts and limits a request" in w and "memory.short_pool" in w
    assert not any("fails to start" in x or "refuses to start" in x for x in p.warnings)


def test_vllm_still_refuses():
    p = _predict("vllm")
    assert not p.fits and not p.runnable and not p.engine["starts"]
    assert "the engine refuses to start" in _short_pool_warning(p, "vllm")


def test_a_request_longer_than_a_capped_pool_is_not_held():
    """SGLang starts with the short pool, but a request beyond it is refused (prompt >=
    max_req_input_len) or cut short (max_new_tokens capped): the scenario does not fit."""
    p = pm.predict(pm.Scenario(
        kind="inference", model="llama-3.1-70b", engine=SGLANG_0514,
        system={"device": "rtx-4090", "num_gpus": 2}, parallelism={"tp": 2},
        inference={"batch": 1, "prompt_len": 16_000, "output_len": 128,
                   "weight_dtype": "int4"}))
    assert p.engine["starts"] and not p.engine["holds_request"] and not p.fits
