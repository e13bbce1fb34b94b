"""Tokenising a text prompt is the tokenizer's cost, paid on every engine whose API server
tokenises (issue 9): engines/tokenizers.yaml holds the cost, engines/<id>.yaml
overheads.tokenizer how the engine serialises its calls, and the simulator queues prompts for
them. Hand numbers:

* the o200k table (engines/tokenizers.yaml): 1.904 ms at 1024 tokens;
* SGLang 0.5.6 (engines/sglang.yaml): the TokenizerManager's event loop tokenises one prompt at
  a time, no wait: C prompts sent together reach the engine core at k x 1.904 ms, k = 1..C;
* TensorRT-LLM 1.2 (engines/trtllm.yaml): trtllm-serve tokenises each prompt in
  asyncio.to_thread, 32 threads: up to 32 prompts sent together are ready at 1.904 ms, the
  33rd - 40th wait for a free thread and are ready at 2 x 1.904 ms;
* vLLM 0.11 - 0.13 (engines/vllm.yaml): one thread, micro-batches of up to 32 collected for
  2 ms after the first: of 40 prompts sent together the first 32 are one call (no wait: the
  batch is full at once), ready at 1.904 ms; the other 8 open a window when that call ends,
  wait its 2 ms (fewer than 32 come) and are ready at 1.904 + 2 + 1.904 ms.
"""

import numpy as np
import pytest

from perfmodel.resolve import resolve
from perfmodel.serving.engine import RequestPath
from perfmodel.serving.predict import deployment_for, serving_inputs, simulate_serving
from perfmodel.specs.registry import get_model

TOK_1024 = 0.001904  # engines/tokenizers.yaml o200k, 1024 tokens
WAIT = 0.002  # engines/vllm.yaml overheads.tokenizer.batch_wait_s


def _scenario(engine, conc: int, n: int | None = None, prompt: int = 1024) -> dict:
    return {"kind": "serving", "name": "tokenizer-queue", "model": "gpt-oss-20b",
            "engine": engine, "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
            "parallelism": {"tp": 1}, "inference": {"prompt_len": prompt, "output_len": 4},
            "serving": {"arrival": {"process": "closed", "concurrency": conc},
                        "num_requests": n or conc}}


def _request_path(engine, conc: int) -> np.ndarray:
    """Each request's time from its send to its engine core, in request order."""
    _, reqs = simulate_serving(resolve(_scenario(engine, conc)))
    return reqs.ready - reqs.arrival


def test_sglang_tokenises_one_prompt_at_a_time():
    path = _request_path("sglang", 4)
    np.testing.assert_allclose(path, TOK_1024 * np.arange(1, 5), rtol=1e-9)


def test_trtllm_tokenises_up_to_32_prompts_side_by_side():
    path = _request_path("trtllm", 40)
    np.testing.assert_allclose(path[:32], TOK_1024, rtol=1e-9)
    np.testing.assert_allclose(path[32:], 2 * TOK_1024, rtol=1e-9)


def test_vllm_micro_batches_on_one_thread():
    path = _request_path("vllm", 40)
    np.testing.assert_allclose(path[:32], TOK_1024, rtol=1e-9)
    np.testing.assert_allclose(path[32:], TOK_1024 + WAIT + TOK_1024, rtol=1e-9)


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_a_lone_prompt_pays_the_tokenizer_and_no_wait(engine):
    """Concurrency 1: one tokenising call, no micro-batch wait on these engines; the zero-load
    line counts the same path."""
    pred, reqs = simulate_serving(resolve(_scenario(engine, 1, n=3)))
    np.testing.assert_allclose(reqs.ready - reqs.arrival, TOK_1024, rtol=1e-9)
    assert pred.serving["zero_load"]["request_path_s"] == pytest.approx(TOK_1024)


@pytest.mark.parametrize("engine", ["sglang", "trtllm", "vllm"])
def test_token_id_prompts_skip_the_tokenizer(engine):
    """engine.prompt_input: tokens: SGLang's input_ids, trtllm-serve's TokensPrompt and vLLM
    0.10.2+'s renderer never call the tokenizer: no request path at all."""
    rs = resolve(_scenario({"name": engine, "prompt_input": "tokens"}, 4))
    inf, wl = serving_inputs(rs.scenario)
    assert deployment_for(rs.scenario, rs.system, rs.profile, inf, wl).instances[0].path is None
    _, reqs = simulate_serving(rs)
    np.testing.assert_allclose(reqs.ready - reqs.arrival, 0.0, atol=1e-12)


def test_the_tokenizer_family_and_its_proxy_are_said():
    """A model is matched by (family, vocab_size): gpt-oss reads its own o200k table; a model
    with no table of its own (Llama-2's 32k SentencePiece vocabulary) reads o200k as a proxy,
    and the serving summary says so."""
    path = RequestPath(tokenize=((1, 0.0),))
    gpt_oss = get_model("gpt-oss-20b")
    assert path.for_model(gpt_oss).tokenizer == "o200k"
    assert path.for_model(gpt_oss).proxy is False
    assert path.for_model(gpt_oss).tokenize_s(1024) == pytest.approx(TOK_1024)
    llama2 = get_model("llama-2-7b")
    assert path.for_model(llama2).tokenizer == "o200k" and path.for_model(llama2).proxy
    sc = _scenario("sglang", 1, n=2) | {"model": "llama-2-7b"}
    rp = simulate_serving(resolve(sc))[0].serving["request_path_s"]
    assert rp["tokenizer"] == "o200k" and rp["tokenizer_proxy"] is True


def test_batch_time_is_the_longest_prompt_of_the_call():
    p = RequestPath(tokenize=((1000, 0.002), (2000, 0.006)), max_batch=4, batch_wait_s=0.001)
    assert p.batch_time([500, 1500, 1000]) == pytest.approx(0.004)  # 1500 tokens: 2 + 2 ms
    assert p.delay(1000) == pytest.approx(0.001 + 0.002)  # alone: the wait, then its call


def test_a_tokenizer_family_citing_an_unknown_source_is_refused():
    """engines/tokenizers.yaml: every family cites sources of the file (specs.common.
    check_source_ids), named by the field."""
    from perfmodel.engines import TokenizerFacts
    from perfmodel.errors import SpecError
    from perfmodel.specs.common import validate

    fam = {"name": "x", "tokenize_s": [[128, 0.001]], "sources": ["nowhere"]}
    src = [{"id": "tokmeas", "title": "measured", "url": "https://example.org/x"}]
    with pytest.raises(SpecError, match=r"families\.x\.sources: unknown source id"):
        validate(TokenizerFacts, {"default": "x", "default_note": "n", "families": {"x": fam},
                                  "sources": src})
