"""The request path reported apart from queueing, per vLLM version and prompt input (issue 9).

Hand numbers come from engines/vllm.yaml as read here: tokenizer.batch_wait_s = 2 ms
(AsyncMicrobatchTokenizer batch_wait_timeout_s, first released in vLLM 0.10.0), and from
engines/tokenizers.yaml's o200k table: points (1024, 1.904 ms) and (8192, 24.34 ms); a longer
prompt is extrapolated at 24.34 ms / 8192 tokens."""

import numpy as np
import pytest

from perfmodel.errors import SpecError
from perfmodel.resolve import resolve
from perfmodel.serving.predict import deployment_for, serving_inputs, simulate_serving
from perfmodel.serving.report import render_serving

WAIT = 0.002  # engines/vllm.yaml overheads.tokenizer.batch_wait_s
TOK_1024 = 0.001904  # engines/tokenizers.yaml o200k tokenize_s at 1024 tokens
TOK_8192 = 0.024340  # ... at 8192 tokens (its last point)


def _scenario(engine, prompt: int = 1024, conc: int = 1, n: int = 3) -> dict:
    return {"kind": "serving", "name": "request-path", "model": "gpt-oss-20b",
            "engine": engine, "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
            "parallelism": {"tp": 1}, "inference": {"prompt_len": prompt, "output_len": 8},
            "serving": {"arrival": {"process": "closed", "concurrency": conc},
                        "num_requests": n}}


def _path(engine, prompt: int = 1024) -> float:
    rs = resolve(_scenario(engine, prompt))
    inf, wl = serving_inputs(rs.scenario)
    inst = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl).instances[0]
    return 0.0 if inst.path is None else inst.path.delay(prompt)


def test_closed_loop_of_one_has_a_request_path_and_no_queueing():
    """C = 1: every request meets an idle engine core, so it waits nowhere; the 3.904 ms the
    API server takes is the request path, not queueing, and the zero-load line (one request
    alone) counts it in its TTFT as the run does."""
    pred, reqs = simulate_serving(resolve(_scenario("vllm")))
    s = pred.serving
    for q in ("p50", "p99", "mean"):
        assert s["request_path_s"][q] == pytest.approx(WAIT + TOK_1024)  # 3.904 ms
        assert s["queue_s"][q] == pytest.approx(0.0, abs=1e-12)
    assert max(s["series"]["queued"]) == 0.0
    assert max(s["series"]["request_path"]) > 0.0
    z = s["zero_load"]
    assert z["request_path_s"] == pytest.approx(WAIT + TOK_1024)
    # the simulated request alone: TTFT = path + its prefill = the zero-load TTFT
    assert s["ttft_s"]["p50"] == pytest.approx(z["ttft_s"], rel=1e-6)
    np.testing.assert_allclose(reqs.ready - reqs.arrival, WAIT + TOK_1024, rtol=1e-9)
    text = render_serving(pred)
    assert "request path (before the engine core)" in text
    assert "queueing (at the engine core)" in text
    assert "TTFT incl. 3.904 ms request path" in text


def test_generic_engine_reports_no_request_path():
    pred, _ = simulate_serving(resolve(_scenario("generic")))
    assert pred.serving["request_path_s"]["p50"] == 0.0
    assert "request path" not in render_serving(pred)
    assert "request_path_s" not in pred.serving["zero_load"] or \
        pred.serving["zero_load"]["request_path_s"] == 0.0


@pytest.mark.parametrize(("engine", "hand"), [
    ({"name": "vllm"}, WAIT + TOK_1024),                                # text, 0.11 - 0.13
    ({"name": "vllm", "prompt_input": "text"}, WAIT + TOK_1024),
    ({"name": "vllm", "prompt_input": "tokens"}, 0.0),                  # renderer skips it
    ({"name": "vllm", "version": "0.13.0", "prompt_input": "tokens"}, 0.0),
    ({"name": "vllm", "version": "0.10.1", "prompt_input": "text"}, WAIT + TOK_1024),
    ({"name": "vllm", "version": "0.10.1", "prompt_input": "tokens"}, WAIT),  # decode queue
    ({"name": "vllm", "version": "0.10.0", "prompt_input": "tokens"}, WAIT),
    ({"name": "vllm", "version": "0.9.2"}, TOK_1024),                   # no micro-batch wait
    ({"name": "vllm", "version": "0.8.0", "variant": "v1"}, TOK_1024),
    ({"name": "vllm", "version": "0.9.2", "prompt_input": "tokens"}, 0.0),
    ({"name": "vllm", "version": "0.7.3"}, TOK_1024),       # API server tokenises, no wait
    ({"name": "vllm", "version": "0.7.3", "variant": "v1"}, TOK_1024),
    ({"name": "vllm", "version": "0.6.3+pr9352"}, TOK_1024),
    ({"name": "vllm", "version": "0.5.0"}, 0.0),  # engine in the server's process: not stated
])
def test_request_path_by_version_and_prompt_input(engine, hand):
    assert _path(engine) == pytest.approx(hand, abs=1e-12)


def test_a_prompt_past_the_measured_table_is_extrapolated_and_said_so():
    """16384 tokens: twice the last point at its mean rate, 2 x 24.34 ms, plus the 2 ms wait
    (the last segment's slope, 3.6 us/token, would give 53.7 ms)."""
    assert _path("vllm", 16384) == pytest.approx(WAIT + 2 * TOK_8192)
    assert _path("vllm", 8192) == pytest.approx(WAIT + TOK_8192)  # the point itself
    pred, _ = simulate_serving(resolve(_scenario("vllm", prompt=16384, n=2)))
    rp = pred.serving["request_path_s"]
    assert rp["tokenize_measured_tokens"] == 8192
    assert rp["tokenize_extrapolated_requests"] == 2
    assert "extrapolated" in render_serving(pred)


def test_no_extrapolation_note_inside_the_table():
    pred, _ = simulate_serving(resolve(_scenario("vllm", prompt=1024, n=2)))
    assert pred.serving["request_path_s"]["tokenize_extrapolated_requests"] == 0
    assert "extrapolated" not in render_serving(pred)


def test_a_proxy_tokenizer_is_said():
    """gpt-oss reads its own (o200k) table: no proxy note; Qwen3 has no table of its own
    (engines/tokenizers.yaml lists gpt-oss, DeepSeek-V3 and Llama-3), so the o200k table
    stands in and the summary says so."""
    own, _ = simulate_serving(resolve(_scenario("vllm", n=2)))
    assert own.serving["request_path_s"]["tokenizer_proxy"] is False
    assert "a proxy" not in render_serving(own)
    other, _ = simulate_serving(resolve(_scenario("vllm", n=2) | {"model": "qwen3-8b"}))
    assert other.serving["request_path_s"]["tokenizer"] == "o200k"
    assert other.serving["request_path_s"]["tokenizer_proxy"] is True
    assert "o200k tokenizer's measured cost, a proxy" in render_serving(other)


@pytest.mark.parametrize(("engine", "words"), [
    ({"name": "vllm", "prompt_input": "ids"}, ["prompt_input", "text", "tokens"]),
    ({"name": "generic", "prompt_input": "tokens"}, ["prompt_input", "generic"]),
])
def test_a_bad_prompt_input_is_refused_by_name(engine, words):
    with pytest.raises((SpecError, ValueError)) as err:
        resolve(_scenario(engine))
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize(("model", "family", "at_1024"), [
    ("llama-3.1-8b", "llama3", 0.001370),   # engines/tokenizers.yaml llama3 at 1024 tokens
    ("deepseek-v3", "deepseek-v3", 0.002874),  # deepseek-v3 at 1024 tokens
    ("gpt-oss-20b", "o200k", TOK_1024),
])
def test_each_model_reads_its_own_tokenizer_table(model, family, at_1024):
    """A model whose (family, vocab_size) a tokenizer family lists reads that family's
    measured table, no proxy: on SGLang (one prompt at a time, no wait) a lone 1,024-token
    text prompt reaches the engine core after exactly that table's 1,024-token point."""
    from perfmodel.engines import get_engine
    from perfmodel.serving.engine import request_path
    from perfmodel.zoo import get_model

    path = request_path(get_engine("sglang"), "text", get_model(model))
    assert path.tokenizer == family and not path.proxy
    assert path.delay(1024) == pytest.approx(at_1024)
