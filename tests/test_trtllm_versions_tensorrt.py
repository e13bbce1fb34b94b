"""TensorRT-LLM's TensorRT-engine variant (engines/versions/trtllm-tensorrt.yaml): the C++
executor's request loop, checked against a hand-computed closed loop (issue 9).

Executor::Impl::executionLoop (executorImpl.cpp at 1.2.0rc2) runs forwardSync (batch j - 1),
enqueueNewResponses, fetchNewRequests, forwardAsync (batch j): a request sent on batch j - 1's
token joins batch j + 1 at the earliest. Unit cost (every iteration 1 s, tests/scheduler_engines.py),
prompts of 5000 tokens with max_num_tokens 8192 (two contexts never share an iteration), two
closed-loop clients, outputs [3, 8, 3, 3]:
0-1 context r0 (r1 reaches the idle executor after it started); 1-2 context r1 + decode r0;
2-3 decode both, r0's 3rd token, r0 ends, r2 sent at 3; 3-4 decode r1 (decided at 3 before r2
arrived); 4-5 context r2 + decode r1: r2's first token at 5 (with the PyTorch overlap loop of
engines/trtllm.yaml: 6); 5-7 decode both, r2 ends at 7, r3 sent; 7-8 decode r1; 8-9 context r3 +
decode r1 (its 8th token, ends at 9); 9-11 decode r3.
"""

from __future__ import annotations

import numpy as np
import pytest
from scheduler_engines import UnitCost

from perfmodel.engines import engine_for, get_engine
from perfmodel.errors import SpecError
from perfmodel.serving.cost import KVCapacity
from perfmodel.serving.engine import Engine
from perfmodel.serving.requests import Requests
from perfmodel.serving.schedulers import make_scheduler
from perfmodel.serving.sim import Pool, Simulation
from perfmodel.serving.workload import Workload
from perfmodel.specs.scenario import EngineConfig


def _tensorrt():
    return engine_for(EngineConfig(name="trtllm", variant="tensorrt"))


def test_variant_states_the_cpp_executor_loop():
    spec = _tensorrt()
    assert spec.version == "tensorrt"
    assert spec.scheduler.async_scheduling is False
    assert spec.scheduler.async_scheduling_with_pp is False
    assert spec.overheads.results_after_next_launch is False
    assert spec.overheads.eager_host is None  # the built engine is enqueued whole (enqueueV3)
    # the loop facts are cited by the family's own sources
    assert spec.field_sources["scheduler.async_scheduling"] == ["cppexecloop"]
    assert spec.field_sources["overheads.eager_host"] == ["tllmexec"]


def test_variant_keeps_the_facts_it_does_not_state():
    """Everything the family leaves alone is the 1.0 file's, with the 1.0 file's citation."""
    base, spec = get_engine("trtllm"), _tensorrt()
    assert spec.scheduler.max_num_batched_tokens == base.scheduler.max_num_batched_tokens == 8192
    assert spec.scheduler.policy == base.scheduler.policy == "inflight"
    assert spec.memory.fraction == base.memory.fraction == 0.9
    assert spec.field_sources["scheduler.policy"] == base.field_sources["scheduler.policy"]
    # the default (no variant) is still the PyTorch backend's overlap loop
    assert base.scheduler.async_scheduling is True


def test_variant_is_refused_outside_its_range():
    with pytest.raises(SpecError, match="tensorrt"):
        get_engine("trtllm", "0.9.0", "tensorrt")


def test_closed_loop_under_the_variant_by_hand():
    outputs = [3, 8, 3, 3]
    n = len(outputs)
    wl = Workload(np.full(n, np.nan), np.full(n, 5000), np.asarray(outputs), 2)
    reqs = Requests(wl)
    kv = KVCapacity(bytes_per_token=1.0, block_tokens=32, num_blocks=10_000, memory={})
    e = Engine(0, UnitCost(), kv, 256, reqs)
    facts = _tensorrt().scheduler
    Simulation(reqs, [Pool("mixed", [e])], [make_scheduler("inflight", 8192, facts)],
               concurrency=2).run()
    assert reqs.arrival.tolist() == [0.0, 0.0, 3.0, 7.0]
    assert reqs.first.tolist() == [1.0, 2.0, 5.0, 9.0]
    assert reqs.finish.tolist() == [3.0, 9.0, 7.0, 11.0]
