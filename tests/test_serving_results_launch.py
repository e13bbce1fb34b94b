"""When a batch's first tokens leave an SGLang server (engines/sglang.yaml
overheads.results_after_next_launch; serving.engine.Engine.launched): SGLang 0.5.7's
Scheduler.event_loop_overlap launches the next batch (run_batch) before it processes the last
batch's result and streams its tokens (process_batch_result), so a prefill's first tokens wait
for the next batch's host issue: the eager host time when the next batch is an extend, nothing
counted when it is a decode replayed from a CUDA graph. Checked by hand against the step ends
and the engine's eager host time."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from perfmodel.engines import get_engine
from perfmodel.paths import data_dir
from perfmodel.resolve import resolve
from perfmodel.serving.engine import Engine
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.serving.requests import Requests


def _instance(engine: str, prompt: int = 512):
    sc = {"kind": "serving", "name": "results", "model": "llama-3.1-8b", "engine": engine,
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": prompt, "output_len": 16},
          "serving": {"arrival": {"process": "closed", "concurrency": 3}, "num_requests": 3}}
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    return dep.instances[0], wl


def _engine(engine: str) -> Engine:
    inst, wl = _instance(engine)
    e = Engine(0, inst.cost, inst.kv, 16, Requests(wl), host=inst.host)
    e.waiting.extend([0, 1, 2])
    return e


def _prefill(e: Engine, now: float, tokens: int = 512):
    slot = e.admit_head(now, tokens)
    st = e.iteration(now, [(slot, tokens)], decode=False)
    e.launched(st)
    e.step = st
    return st


def _finish(e: Engine, st) -> None:
    e.complete(st.end)


def test_the_engine_file_states_it():
    with open(data_dir("engines") / "sglang.yaml") as f:
        raw = yaml.safe_load(f)
    assert raw["overheads"]["results_after_next_launch"] is True
    assert "sglresults" in raw["field_sources"]["overheads.results_after_next_launch"]
    assert get_engine("sglang").overheads.results_after_next_launch
    assert not get_engine("vllm").overheads.results_after_next_launch


def test_first_token_waits_for_the_next_extend_launch():
    """Prefill A (request 0), then prefill B (request 1) at once: request 0's first token
    leaves at B's start + the eager host time (end of A + host), not at the end of A."""
    e = _engine("sglang")
    host = e.host.seconds
    assert host > 0 and e.host.results_after_next_launch
    a = _prefill(e, 0.0)
    _finish(e, a)
    assert e.reqs.first[0] == a.end  # stamped at the step's end ...
    b = _prefill(e, a.end)
    assert e.reqs.first[0] == pytest.approx(a.end + host)  # ... sent after B's issue
    assert b.end >= a.end + host  # B lasts at least its own host issue (overlapped rule)
    _finish(e, b)
    e.launched(None)  # the instance goes idle: the last batch is processed at once
    assert e.reqs.first[1] == b.end


def test_first_token_after_a_graph_decode_is_not_delayed():
    """Prefill of request 0, then a decode batch (CUDA graph: no eager host issue counted):
    the first token leaves when the prefill ends."""
    e = _engine("sglang")
    a = _prefill(e, 0.0)
    _finish(e, a)
    d = e.iteration(a.end, [], decode=True)
    assert not e.host.eager(False, 1, 1)
    e.launched(d)
    assert e.reqs.first[0] == a.end


def test_engine_without_the_fact_stamps_at_the_step_end():
    """vLLM's file states no such loop (its host floor, where any, leaves tokens at the step's
    end): request 0's first token is the end of its prefill whatever runs next."""
    e = _engine("vllm")
    a = _prefill(e, 0.0)
    _finish(e, a)
    _prefill(e, a.end)
    assert e.reqs.first[0] == a.end


def test_closed_loop_first_wave_by_hand():
    """Three clients at t = 0 on an idle SGLang server: the idle loop takes request 0 alone
    (serving.sim._notify), the next loop requests 1 and 2 together, launched as request 0's
    prefill ends. Request 0's TTFT is that start + the second prefill's eager host time. The
    prompts go as token ids: no tokenising on the way in (test_serving_tokenizer_queue)."""
    sc = {"kind": "serving", "model": "llama-3.1-8b",
          "engine": {"name": "sglang", "prompt_input": "tokens"},
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 512, "output_len": 16},
          "serving": {"arrival": {"process": "closed", "concurrency": 3}, "num_requests": 3}}
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    host = dep.instances[0].host.seconds
    reqs = dep.simulate(wl).reqs
    start = reqs.start
    assert start[0] == 0.0 and start[1] == start[2] > 0
    assert reqs.first[0] == pytest.approx(start[1] + host)
    assert reqs.first[1] == reqs.first[2] >= start[1] + host
    assert np.all(reqs.first >= reqs.start)
