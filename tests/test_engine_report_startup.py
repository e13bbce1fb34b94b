"""The text of a prediction states what its numbers are: SGLang's start-up line follows one rule
in both scenario kinds (the scenario's chunk, else the engine's default, // dp_size as sglang
v0.5.14 server_args.py ``_handle_data_parallelism`` divides it), and "max concurrent
sequences" and "KV cache per sequence" are taken at the same stated context. Expected values
are worked by hand from the model configs and the engine's source."""

from pathlib import Path

import perfmodel as pm
from perfmodel.engine_report import render_engine, sglang_startup
from perfmodel.report import render_prediction

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GIB = 2**30


def _engine(**kw) -> dict:
    e = {"engine": "sglang", "version": "0.5", "budget": "init_free_fraction",
         "fraction_name": "mem_fraction_static",
         "fraction": 0.769, "device_memory_bytes": 140 * GIB, "device_memory_source": "cuda",
         "kv_cache_tokens": 182904, "kv_cache_bytes": 12 * GIB, "max_model_len": 163840,
         "max_num_batched_tokens": 8192, "breakdown": {"weights": 90 * GIB}}
    return e | kw


def test_sglang_divides_the_chunk_it_was_given_or_its_default_by_dp_size():
    # default 8192 (H200 bucket), DP 8: 8192 // 8 = 1024; no override, no note
    out = sglang_startup(_engine(), 8, None, 2048 * 8)
    assert out["chunked_prefill_size"] == 1024 and out["max_running_requests"] == 2048
    assert "reserve_chunk" not in out
    # --chunked-prefill-size 16384 is divided too: 16384 // 8 = 2048; the reserve was the
    # default's 8192, so the start-up block says so
    out = sglang_startup(_engine(), 8, 16384)
    assert out["chunked_prefill_size"] == 2048 and out["reserve_chunk"] == 8192
    assert "note: mem_fraction_static 0.769 is SGLang's rule at chunked_prefill_size 8192" \
        in render_engine(out)
    # a given mem_fraction_static: no rule ran, nothing to note
    assert "reserve_chunk" not in sglang_startup(_engine(), 8, 16384, fraction_given=True)
    # no attention DP: undivided; other engines untouched
    assert sglang_startup(_engine(), 1)["chunked_prefill_size"] == 8192
    vllm = _engine(engine="vllm")
    assert sglang_startup(vllm, 8, 16384) is vllm


def test_inference_and_serving_dp8_examples_print_the_same_rule():
    # serving: SGLang's default 8192 // 8 = 1024 per rank
    serving = EXAMPLES / "sglang-dp-attention-deepseek-r1-h200.yaml"
    text = render_prediction(pm.predict(serving), scenario=serving)
    assert "chunked_prefill_size=1024, max_running_requests=2048" in text
    # inference: the scenario's prefill_chunk_tokens 16384 // 8 = 2048; max_running_requests
    # by SGLang's rule per rank (pool T = 182,904 tokens, context 163,840):
    # min(T // 2, min(max(int(T / 163840 x 512), 2048), 4096)) = min(91452, 2048) = 2048
    inference = EXAMPLES / "deepseek-r1-wide-ep-h200.yaml"
    p = pm.predict(inference)
    assert p.engine["kv_cache_tokens"] == 182904 and p.engine["max_model_len"] == 163840
    text = render_prediction(p, scenario=inference)
    assert "chunked_prefill_size=2048, max_running_requests=2048, context_len=163840" in text
    assert "chunked_prefill_size 8192 (the engine's)" in text  # the reserve's chunk, noted


def test_prefill_chunk_does_not_change_the_prefill_time():
    # scenario.py: "prefill time is the same work either way"
    sc = pm.load_scenario(EXAMPLES / "deepseek-r1-wide-ep-h200.yaml")
    whole = sc.model_copy(update={"inference": sc.inference.model_copy(
        update={"prefill_chunk_tokens": None})})
    a, b = pm.predict(sc), pm.predict(whole)
    assert a.ttft_s == b.ttft_s and a.memory_per_gpu_bytes == b.memory_per_gpu_bytes


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(label))


def test_serving_kv_rows_use_the_mean_request_context():
    # Llama-3-70B TP4: 80 layers x 8 KV heads x 128 x 2 (K, V) x 2 B / 4 GPUs = 81,920 B per
    # token per GPU; the simulated requests' mean prompt + output is the context
    path = EXAMPLES / "serving-llama3-70b-h100-disaggregated.yaml"
    p = pm.predict(path)
    wl = p.serving["workload"]
    ctx = wl["prompt_len_mean"] + wl["output_len_mean"]
    assert 2200 < ctx < 2400
    per_seq = ctx * 80 * 8 * 128 * 2 * 2 / 4
    pool_tokens = p.serving["deployment"]["instances"][-1]["kv_tokens"]
    assert p.max_concurrent_sequences == pool_tokens // ctx  # 235
    text = render_prediction(p)
    at = f"(at {ctx:,.0f} tokens: mean prompt + output)"
    assert _row(text, "max concurrent sequences").endswith(
        f"{p.max_concurrent_sequences:,.0f} {at}")
    assert _row(text, "KV cache per sequence (per GPU)").endswith(
        f"{per_seq / GIB:.2f} GiB {at}")
    # the pool on one GPU over that sequence: the count beside it
    pool = p.breakdown["memory"]["kv_cache"]
    assert int(pool / per_seq) == p.max_concurrent_sequences


def test_inference_kv_rows_state_prompt_plus_output():
    # DeepSeek-R1 MLA: (512 latent + 64 rope) x 2 B x 61 layers = 70,272 B per token per GPU
    # (not split under attention DP); 1024 + 1024 tokens
    path = EXAMPLES / "deepseek-r1-wide-ep-h200.yaml"
    p = pm.predict(path)
    text = render_prediction(p, scenario=path)
    at = "(at 2,048 tokens: prompt_len + output_len)"
    assert _row(text, "KV cache per sequence (per GPU)").endswith(
        f"{2048 * 70272 / GIB:.2f} GiB {at}")
    assert _row(text, "max concurrent sequences").endswith(f"712 {at}")
    # per rank: floor(182,904 / 2,048) = 89 requests, x 8 ranks
    assert 182904 // 2048 * 8 == 712


def test_the_start_up_line_names_the_release_asked_and_the_family_that_answers():
    """engine.version 0.6.3 is answered by the vLLM family whose ranges hold it
    (engines/versions/vllm-0.3.0-pr2863.yaml); the line names both, so a user sees the
    version was honoured. A release that is the family's own label prints once."""
    vllm = dict(engine="vllm", kv_cache_blocks=11431, kv_block_size=16, max_concurrency=1.4,
                kv_bytes_per_token=128 * 1024)
    e = _engine(**vllm, version="0.3.0+pr2863", budget="total_fraction",
                fraction_name="gpu_memory_utilization",
                fraction=0.9, asked_version="0.6.3")
    head = render_engine(e).splitlines()[0]
    assert head.startswith("engine: vllm 0.6.3 (gpu_memory_utilization 0.9")
    assert head.endswith("; the facts of its version family 0.3.0+pr2863")
    own = render_engine(_engine(**vllm, version="0.10", asked_version="0.10"))
    assert own.splitlines()[0].startswith("engine: vllm 0.10 (") and "family" not in own
