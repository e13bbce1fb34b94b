"""TensorRT-LLM's overlap scheduler: when the in-flight batching scheduler sees a new request
(issue 9), computed by hand.

PyTorch backend (engines/trtllm.yaml scheduler.async_scheduling, source trtoverlap):
``_executor_loop_overlap`` fetches new requests, schedules and launches batch j, and only then
waits for batch j - 1 and sends its tokens. So a client that sends its next request when its
previous one's last token comes out of batch m is first seen by the loop that schedules batch
m + 3 (the loop scheduling m + 2 fetched microseconds after the token was sent, before the
request could arrive); an engine deciding at the iteration boundary (the C++ executor's
executionLoop: forwardSync, responses, fetchNewRequests, forwardAsync) puts it in batch m + 2.
An idle executor blocks on its queue and takes a request at once in both.

Unit cost: every iteration takes 1 s (tests/scheduler_engines.py). Prompts of 5000 tokens with
max_num_tokens 8192: two contexts never share an iteration.
"""

from __future__ import annotations

import numpy as np
import pytest
from scheduler_engines import UnitCost

from perfmodel.engines import SchedulerFacts
from perfmodel.serving.cost import KVCapacity
from perfmodel.serving.engine import Engine
from perfmodel.serving.requests import Requests
from perfmodel.serving.schedulers import make_scheduler
from perfmodel.serving.sim import Pool, Simulation
from perfmodel.serving.workload import Workload

PROMPT = 5000
OUTPUTS = [3, 8, 3, 3]  # r1 keeps decoding while r2 and r3 are sent


def _closed_run(overlap: bool) -> Requests:
    """Two closed-loop clients, four requests, one in-flight-batching instance."""
    n = len(OUTPUTS)
    wl = Workload(np.full(n, np.nan), np.full(n, PROMPT), np.asarray(OUTPUTS), 2)
    reqs = Requests(wl)
    kv = KVCapacity(bytes_per_token=1.0, block_tokens=32, num_blocks=10_000, memory={})
    e = Engine(0, UnitCost(), kv, 256, reqs)
    facts = SchedulerFacts(policy="inflight", async_scheduling=overlap)
    Simulation(reqs, [Pool("mixed", [e])], [make_scheduler("inflight", 8192, facts)],
               concurrency=2).run()
    return reqs


def test_boundary_scheduler_by_hand():
    """No overlap. 0-1 context r0 (r1, sent at 0 too, reaches the idle executor after it
    started); 1-2 context r1 + decode r0; 2-3 decode both: r0's 3rd token, r0 ends, r2 sent
    at 3; 3-4 decode r1 (decided at 3 without r2); 4-5 context r2 + decode r1: r2's first
    token at 5; 5-6, 6-7 decode: r2 ends at 7, r3 sent; 7-8 decode r1; 8-9 context r3 +
    decode r1 (its 8th token, ends at 9); 9-11 decode r3."""
    r = _closed_run(overlap=False)
    assert r.arrival.tolist() == [0.0, 0.0, 3.0, 7.0]
    assert r.first.tolist() == [1.0, 2.0, 5.0, 9.0]
    assert r.finish.tolist() == [3.0, 9.0, 7.0, 11.0]


def test_overlap_scheduler_sees_a_request_one_step_later():
    """Overlap. Up to 3 as above (the loop of an idle executor takes r1 with r0's batch
    still to launch: both were queued before the loop that scheduled batch 1-2 fetched).
    r2, sent at 3 on r0's last token (batch 2-3), is fetched by the loop that schedules
    batch 5-6 (that loop runs when batch 3-4 ends): 3-4 and 4-5 decode r1, 5-6 context r2 +
    decode r1, r2's first token at 6 (TTFT 3, one step more). 6-8 decode both: r2 ends at 8,
    r3 sent; 8-9 decode r1 (scheduled at 7, before r3 was sent), r1 ends at 9 and the
    executor is idle: it takes r3 at once, 9-10 its context, first token at 10; 10-12 decode."""
    r = _closed_run(overlap=True)
    assert r.arrival.tolist() == [0.0, 0.0, 3.0, 8.0]
    assert r.first.tolist() == [1.0, 2.0, 6.0, 10.0]
    assert r.finish.tolist() == [3.0, 9.0, 8.0, 12.0]


@pytest.mark.parametrize("version,on", [(None, True), ("0.6.1", False)])
def test_the_engine_files_say_which_loop_runs(version, on):
    """engines/trtllm.yaml (PyTorch backend, 1.0 on): the overlap loop by default, not with
    pipeline parallelism (_executor_loop_pp), and its tokens leave after the next launch; the
    0.5 - 0.6 family (GptSession, no request loop) states neither."""
    from perfmodel.engines import engine_for
    from perfmodel.specs.scenario import EngineConfig

    cfg = EngineConfig(name="trtllm") if version is None else EngineConfig(name="trtllm",
                                                                          version=version)
    spec = engine_for(cfg)
    facts = spec.scheduler
    assert bool(facts.async_scheduling) is on
    # the same loop sends batch j - 1's tokens after batch j's launch (_process_previous_batch)
    assert bool(spec.overheads.results_after_next_launch) is on
    if on:
        assert facts.async_scheduling_with_pp is False
