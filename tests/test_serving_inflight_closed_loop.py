"""A closed loop through TensorRT-LLM's in-flight batching, computed by hand (issue 9).

The rules (engines/trtllm.yaml): micro-batch scheduler without chunked context, a context
runs whole with the decodes while max_num_tokens lasts (microBatchScheduler.cpp), and the
first token comes out of the context iteration. The client (serving/sim.py closed loop)
sends C requests at t = 0 and the next one when a request ends; a request sent at a step end
joins at the next iteration boundary (the iteration starting then was scheduled without it).

Unit cost: every iteration, prefill, mixed or decode, takes 1 s (tests/scheduler_engines.py).
Prompts of 5000 tokens with max_num_tokens 8192: two contexts never share an iteration.
"""

from __future__ import annotations

import numpy as np
import pytest
from scheduler_engines import UnitCost

from perfmodel.serving.bench import benchmark_metrics
from perfmodel.serving.cost import KVCapacity
from perfmodel.serving.engine import Engine
from perfmodel.serving.metrics import latencies
from perfmodel.serving.requests import Requests
from perfmodel.serving.schedulers import make_scheduler
from perfmodel.serving.sim import Pool, Simulation
from perfmodel.serving.workload import Workload


def _closed_run(concurrency: int, n: int, prompt: int, output: int) -> Requests:
    """``n`` equal requests through one in-flight-batching instance (max_num_tokens 8192,
    KV for all of them) driven by ``concurrency`` closed-loop clients."""
    wl = Workload(np.full(n, np.nan), np.full(n, prompt), np.full(n, output), concurrency)
    reqs = Requests(wl)
    kv = KVCapacity(bytes_per_token=1.0, block_tokens=32, num_blocks=10_000, memory={})
    e = Engine(0, UnitCost(), kv, 256, reqs)
    Simulation(reqs, [Pool("mixed", [e])], [make_scheduler("inflight", 8192)],
               concurrency=concurrency).run()
    return reqs


def test_two_clients_5000_token_prompts_by_hand():
    """C = 2, 4 requests of 5000 prompt + 3 output tokens, 1 s per iteration.
    0-1: context of r0 (its token 1 at 1; r1 does not fit: 10000 > 8192).
    1-2: context of r1 + decode of r0 (5001 tokens): r1 token 1, r0 token 2 at 2.
    2-3: decode both: r0 token 3, ends at 3 -> r2 sent at 3; r1 token 2.
    3-4: decode r1 (scheduled before r2 arrived): r1 token 3, ends at 4 -> r3 sent at 4.
    4-5: context of r2: token 1 at 5 (TTFT 2: it waited one iteration, then its own).
    5-6: context of r3 + decode r2: r3 token 1 at 6 (TTFT 2), r2 token 2.
    6-7: decode both: r2 ends at 7; 7-8: decode r3: ends at 8."""
    r = _closed_run(2, 4, 5000, 3)
    assert r.arrival.tolist() == [0.0, 0.0, 3.0, 4.0]
    assert r.first.tolist() == [1.0, 2.0, 5.0, 6.0]
    assert r.finish.tolist() == [3.0, 4.0, 7.0, 8.0]
    lat = latencies(r)
    assert lat["ttft"].tolist() == [1.0, 2.0, 2.0, 2.0]
    assert lat["tpot"].tolist() == [1.0, 1.0, 1.0, 1.0]  # (E2E - TTFT) / (3 - 1)
    b = benchmark_metrics(r, num_gpus=1, concurrency=2)
    assert b["mean_ttft_first_wave_ms"] == pytest.approx(1500.0)  # (1 + 2) / 2 s
    assert b["mean_ttft_after_first_wave_ms"] == pytest.approx(2000.0)


def test_a_wave_of_c_contexts_runs_one_per_iteration():
    """C = 4 prompts of 5000 at t = 0, 100 output tokens: iteration k (k = 0..3) holds the
    k-th context (and the k decodes of those before it), so the k-th first token comes at
    k + 1 s and the wave's mean TTFT is (1 + 2 + 3 + 4) / 4 = 2.5 s = P (C + 1) / 2."""
    r = _closed_run(4, 4, 5000, 100)
    assert r.first.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert float(np.mean(latencies(r)["ttft"])) == pytest.approx(2.5)


def test_contexts_that_fit_together_share_the_iteration():
    """Three prompts of 4000 sent at t = 0. TensorRT-LLM's idle executor blocks on its request
    queue and returns the first request alone (executor_request_queue.py
    _get_from_request_queue @007a750: a blocking get() on an empty queue, batch_wait_timeout_ms
    0 = no wait for more); the others, sent at the same instant, reach the queue after that
    iteration started. 0-1: r0's context alone. 1-2: the queue is drained (get_nowait until
    empty): 1 decode + 4000 + 4000 = 8001 <= max_num_tokens 8192, whole contexts in arrival
    order, so r1's and r2's first tokens both come at 2."""
    r = _closed_run(3, 3, 4000, 5)
    assert r.first.tolist() == [1.0, 2.0, 2.0]
