"""Serving with a KV pool below one max_model_len request (engines/<id>.yaml memory.short_pool).

SGLang and TensorRT-LLM start and cap a request to the pool (``cap``; vLLM refuses to start,
``refuse``, and has no such limit). The serving simulation refuses and cuts requests at the
capped length, not at max_model_len, and says so (perfmodel/serving/limits.py, with the
engines' sources):

* SGLang 0.5.6 tp_worker.py L303-307: max_req_len = min(context_len - 1, max_total_num_tokens
  - 1), max_req_input_len = max_req_len - 5; a prompt >= max_req_input_len is aborted
  (utils.py validate_input_length, HTTP 400); otherwise max_new_tokens is capped at
  max_req_len - prompt - 1 (scheduler.py init_req_max_new_tokens).
* TensorRT-LLM: max_seq_len lowered to the pool's whole blocks; base_worker.py
  _deduce_max_tokens cuts max_tokens to max_seq_len - prompt, a prompt >= max_seq_len fails.
"""

import pytest

import perfmodel as pm
from perfmodel.errors import SpecError

GIB = 2**30

# The KV budget of SGLang on one RTX 4090 with llama-3.1-8b in bf16, by hand
# (engines/sglang.yaml memory.budget init_free_fraction: KV = f x (T - context - dist) - W):
#   T = 23.52 GiB (hardware_specs/devices/rtx-4090.yaml usable_memory_gib), CUDA context
#   0.7 GiB (calibration/default.json cuda_context_gib), no distributed init at TP1,
#   f = mem_fraction_static 0.8 (given), W = 8,030,261,248 parameters (Llama-3.1-8B's
#   safetensors total) x 2 bytes = 16,060,522,496 B;
#   KV = 0.8 x 22.82 GiB - W = 19,602,230,739 - 16,060,522,496 = 3,541,708,243 B;
#   one token: 32 layers x 2 (K, V) x 8 KV heads x 128 x 2 B = 131,072 B, page_size 1:
#   pool = floor(3,541,708,243 / 131,072) = 27,021 tokens < max_model_len 131,072.
POOL = 27_021
MAX_REQ_LEN = min(131_072 - 1, POOL - 1)  # 27,020
SERVED_TOTAL = MAX_REQ_LEN - 1  # prompt + max_new_tokens <= max_req_len - 1 = 27,019
REFUSED_PROMPT = MAX_REQ_LEN - 5  # a prompt of 27,015 tokens or more is aborted


def _sglang(tmp_path, rows, concurrency=2):
    trace = tmp_path / "trace.csv"
    trace.write_text("prompt_len,output_len\n" + "".join(f"{p},{o}\n" for p, o in rows))
    return pm.predict(dict(
        kind="serving", model="llama-3.1-8b",
        engine={"name": "sglang", "mem_fraction_static": 0.8},
        system={"device": "rtx-4090", "num_gpus": 1},
        inference={"prompt_len": 1000, "output_len": 100},
        serving={"arrival": {"process": "closed", "concurrency": concurrency,
                             "trace": str(trace)}, "seed": 0}))


def test_sglang_refuses_and_cuts_at_its_capped_length_not_at_max_model_len(tmp_path):
    rows = [(1000, 100),            # served as asked
            (27_014, 100),          # accepted (27,014 < 27,015); output cut to 27,019 - 27,014 = 5
            (27_015, 10),           # prompt >= max_req_len - 5: aborted (HTTP 400)
            (20_000, 10_000),       # output cut to 27,019 - 20,000 = 7,019
            (40_000, 10),           # below max_model_len, above the pool: aborted
            (130_000, 2_000)]       # above max_model_len 131,072: HTTP 400 (tokenizer manager)
    p = _sglang(tmp_path, rows)
    assert p.engine["kv_cache_tokens"] == POOL
    lim = p.serving["deployment"]["request_limit"]
    assert (lim["kv_pool_tokens"], lim["capped_len"]) == (POOL, MAX_REQ_LEN)
    assert lim["max_request_tokens"] == SERVED_TOTAL == 27_019
    assert lim["max_prompt_tokens"] == REFUSED_PROMPT - 1 == 27_014
    assert (lim["refused_requests"], lim["truncated_requests"]) == (2, 2)
    # three served: outputs 100, 5 and 7,019; three failed (two by the pool, one by the context)
    wl = p.serving["workload"]
    assert wl["num_requests"] == 3
    assert wl["output_len_mean"] == pytest.approx((100 + 5 + 7_019) / 3)
    assert wl["prompt_len_mean"] == pytest.approx((1000 + 27_014 + 20_000) / 3)
    assert p.serving["benchmark"]["failed"] == 3
    assert p.serving["benchmark"]["completed"] == 3
    note = [w for w in p.warnings if w.startswith("SGLang: the KV pool")]
    assert len(note) == 1
    assert "max_req_len = 27,020" in note[0] and "more than 27,014 tokens is refused" in note[0]
    assert "prompt + output <= 27,019" in note[0]
    assert "2 request(s) refused" in note[0] and "2 request(s) cut short" in note[0]
    context = [w for w in p.warnings if "than engine max_model_len" in w]
    assert len(context) == 1 and context[0].startswith("1 request(s)")


def test_a_workload_within_the_pool_is_served_unchanged(tmp_path):
    """The limit is reported, nothing is refused or cut."""
    p = _sglang(tmp_path, [(1000, 100), (2000, 200)] * 2)
    lim = p.serving["deployment"]["request_limit"]
    assert (lim["refused_requests"], lim["truncated_requests"]) == (0, 0)
    assert p.serving["workload"]["num_requests"] == 4
    assert p.serving["workload"]["output_len_mean"] == pytest.approx(150)
    assert p.serving["benchmark"]["failed"] == 0


def test_every_prompt_beyond_the_cap_is_an_error_naming_the_limit(tmp_path):
    with pytest.raises(SpecError, match="longer than the 27,014 tokens SGLang accepts"):
        _sglang(tmp_path, [(30_000, 10), (28_000, 10)])


def _trtllm_engine():
    """TensorRT-LLM's pool for the QA repro (Llama-3.1-70B int4, 2 x RTX 4090, TP2)."""
    p = pm.predict(dict(
        kind="inference", model="llama-3.1-70b", engine="trtllm",
        system={"device": "rtx-4090", "num_gpus": 2}, parallelism={"tp": 2},
        inference={"batch": 1, "prompt_len": 512, "output_len": 128, "weight_dtype": "int4"}))
    return p.engine


def test_trtllm_caps_max_seq_len_at_the_pools_whole_blocks(tmp_path):
    eng = _trtllm_engine()
    seq = eng["kv_cache_blocks"] * 32  # tokens_per_block 32, beam 1: whole blocks of the pool
    assert eng["kv_cache_tokens"] == seq < 131_072
    rows = [(seq - 100, 1000),  # output cut to max_seq_len - prompt = 100
            (seq - 1, 50),      # default_max_tokens = 1: one token
            (seq, 10),          # default_max_tokens = 0: the request fails
            (500, 100)]
    trace = tmp_path / "trace.csv"
    trace.write_text("prompt_len,output_len\n" + "".join(f"{a},{b}\n" for a, b in rows))
    p = pm.predict(dict(
        kind="serving", model="llama-3.1-70b", engine="trtllm",
        system={"device": "rtx-4090", "num_gpus": 2}, parallelism={"tp": 2},
        inference={"prompt_len": 512, "output_len": 128, "weight_dtype": "int4"},
        serving={"arrival": {"process": "closed", "concurrency": 1, "trace": str(trace)},
                 "seed": 0}))
    lim = p.serving["deployment"]["request_limit"]
    assert lim["limit_name"] == "max_seq_len"
    assert lim["capped_len"] == lim["max_request_tokens"] == seq
    assert lim["max_prompt_tokens"] == seq - 1
    assert (lim["refused_requests"], lim["truncated_requests"]) == (1, 2)
    assert p.serving["workload"]["output_len_mean"] == pytest.approx((100 + 1 + 100) / 3)
    assert p.serving["benchmark"]["failed"] == 1


def test_an_engine_without_a_short_pool_has_no_request_limit():
    """A pool that holds max_model_len: no limit, nothing reported."""
    p = pm.predict(dict(
        kind="serving", model="llama-3.1-8b", engine={"name": "sglang", "max_model_len": 8192},
        system={"device": "h100-sxm5-80gb", "num_gpus": 1},
        inference={"prompt_len": 1000, "output_len": 100},
        serving={"arrival": {"process": "closed", "concurrency": 2}, "num_requests": 4,
                 "seed": 0}))
    assert "request_limit" not in p.serving["deployment"]
    assert not any("caps a request" in w for w in p.warnings)
