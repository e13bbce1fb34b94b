"""Closed-loop causality: a client sends its next request only once its previous request has
ended as delivered to the client. An engine that hands an iteration's first tokens out only
after launching the next batch (engines/<id>.yaml overheads.results_after_next_launch: SGLang's
event_loop_overlap, TensorRT-LLM's PyTorch overlap loop; serving.engine.Engine.launched) moves
a one-token request's finish later by the next batch's host issue time, so the request that
replaces it is sent then, not at the GPU step's end (review of 04a6264)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel.resolve import resolve
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.serving.workload import Workload


def _scenario(engine, prompt=512, output=1, concurrency=2, n=6):
    return {"kind": "serving", "model": "llama-3.1-8b", "engine": engine,
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
            "inference": {"prompt_len": prompt, "output_len": output},
            "serving": {"arrival": {"process": "closed", "concurrency": concurrency},
                        "num_requests": n}}


@lru_cache(maxsize=16)
def _deployment(engine):
    sc = _scenario(engine, prompt=1024, output=8, n=64)  # tables up to 1032 positions
    if isinstance(engine, tuple):
        sc["engine"] = {"name": engine[0], "variant": engine[1]}
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    return deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)


def test_sglang_one_token_requests_by_hand():
    """SGLang, 512-token prompts, output 1, two clients, six requests, one H100. Request 0
    starts alone (an idle instance takes the first request it receives); request 1 waits. Each
    prefill takes g seconds on the GPU; the next prefill's eager host issue h delays the first
    (= last) token of the previous one: finish[k] = (k + 1) g + h for k < 5, and the last
    request, with nothing launched after it, ends at its step's end 6 g. h is the eager host
    time of the dense forward: 355 kernels of the generic op list (engines/sglang.yaml
    eager_layer_s comment, PR #1401's Llama-3-8B pass) less SGLang's fused residual add +
    RMSNorm (kernels.fused_residual_norm: 4 -> 2 kernels per layer, 32 layers; the first
    layer's input norm takes the final norm's place), 291, x 3.3 us (frameworks/_common.yaml
    dispatch.forward_s) = 0.9603 ms.
    Request k + 2 is sent when request k ended as its client sees it: arrival[k + 2] =
    finish[k] (was finish[k] - h: each client sent before its request had ended). The prompts
    go as token ids, which the TokenizerManager does not tokenise (no request path here;
    test_serving_tokenizer_queue times a text prompt's)."""
    sc = _scenario({"name": "sglang", "prompt_input": "tokens"})
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    r = dep.simulate(wl).reqs
    h = (355 - 2 * 32) * 3.3e-6
    g = r.finish[1] - r.finish[0]
    assert r.finish[0] == pytest.approx(g + h, rel=1e-9)
    for k in range(5):
        assert r.finish[k] == pytest.approx((k + 1) * g + h, rel=1e-9)
    assert r.finish[5] == pytest.approx(6 * g, rel=1e-9)
    assert (r.arrival[:2] == 0.0).all()
    for k in range(4):
        assert r.arrival[k + 2] == pytest.approx((k + 1) * g + h, rel=1e-12)
        assert r.arrival[k + 2] == r.finish[k]
        assert r.sent_after[k + 2] == k


ENGINES = ["sglang", "vllm", "trtllm", ("trtllm", "tensorrt"), "llamacpp", "generic"]


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_client_sends_before_its_request_ended(engine, data):
    """Every closed-loop arrival after the first wave is at or after the finish of the request
    whose end triggered it, and never more than C requests are in the system, for engines
    that hand first tokens out after the next launch (sglang, trtllm) and those that do not
    (vllm, trtllm's TensorRT variant, llamacpp, generic)."""
    dep = _deployment(engine)
    c = data.draw(st.integers(1, 4), label="concurrency")
    n = data.draw(st.integers(c + 1, 14), label="requests")
    prompt = np.array(data.draw(st.lists(st.integers(16, 1024), min_size=n, max_size=n)),
                      np.int64)
    output = np.array(data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)),
                      np.int64)
    reqs = dep.simulate(Workload(np.full(n, np.nan), prompt, output, c)).reqs
    assert (reqs.arrival[:c] == 0.0).all()
    assert (reqs.sent_after[:c] == -1).all()
    later = np.arange(c, n)
    by = reqs.sent_after[later]
    assert (by >= 0).all()
    assert np.unique(by).size == by.size  # one request sends one
    assert (reqs.arrival[later] >= reqs.finish[by]).all()
    # independently of who sent whom: request k may leave only once k - C + 1 have ended
    ends = np.sort(reqs.finish)
    assert (reqs.arrival[later] >= ends[later - c]).all()
    # a request is in the system on [arrival, finish): at most C at any event time
    events = np.unique(np.concatenate([reqs.arrival, reqs.finish]))
    inside = (np.searchsorted(np.sort(reqs.arrival), events, side="right")
              - np.searchsorted(ends, events, side="right"))
    assert inside.max() <= c


def test_length_grid_has_no_twin_top_point():
    """The cost tables' length grid ends at ``top`` once: 997 = 16 x 2^5.961..., and
    16 x exp2(log2(997 / 16)) is not 997 to the last bit, which left two points one ulp
    apart, equal in log, and a division by zero for a chunk of exactly ``top`` tokens."""
    from perfmodel.serving.cost import _grid
    for top in (49, 997, 8192, 131072):
        g = _grid(top, 16, 16)
        assert g[-1] == top
        assert (np.diff(np.log(g)) > 0).all()
