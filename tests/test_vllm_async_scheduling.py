"""vLLM's async scheduling (engines/versions/vllm-0.14.yaml scheduler.async_scheduling: on by
default from 0.14.0): EngineCore.step_with_batch_queue schedules the batch after the running
one when the running one starts, so the chunked scheduler sees a new request one step later
(IntervalReceiver, interval 1). Hand-counted on a cost model where every iteration takes 1 s."""

import numpy as np
import pytest
from scheduler_engines import UnitCost, closed_loop_llama3_8b, make_engine

from perfmodel.engines import get_engine
from perfmodel.errors import SpecError
from perfmodel.serving.deploy import scheduler_facts
from perfmodel.serving.schedulers import ChunkedPrefill, make_scheduler
from perfmodel.specs.scenario import EngineConfig, Parallelism


def _engine(arrivals, outputs=None):
    n = len(arrivals)
    out = np.full(n, 50) if outputs is None else np.asarray(outputs)
    return make_engine(UnitCost(), np.full(n, 100), out, blocks=100_000, block=1,
                       arrivals=arrivals, queue=False)


def _first_token(sched, late, outputs=None):
    """Requests 0 and 1 at t = 0 on an idle engine, request 2 at ``late``; the loop of the
    simulator (serving.sim): run a step, add the late request when a step spans it (an
    arrival at a step's end joins after the next step has been scheduled, as serving.sim
    orders ARRIVE after STEP) and let the scheduler cut the running decode run."""
    e = _engine([0.0, 0.0, late], outputs)
    e.waiting.extend([0, 1])
    now, added = 0.0, False
    while np.isnan(e.reqs.first[2]):
        st = sched.next(e, now)
        e.step = st
        if not added and st.end > late:
            e.waiting.append(2)
            added = True
            sched.truncate(e, late)
        e.complete(st.end)
        now = st.end
    return float(e.reqs.first[2])


@pytest.mark.parametrize("version, variant, on", [
    (None, None, True), ("0.10.2", None, False), ("0.13.0", None, False), ("0.10.1", "v1", False),
    ("0.14.0", None, True), ("0.15.1", "v1", True), ("0.20.0", None, True),
])
def test_async_scheduling_is_the_default_from_0_14(version, variant, on):
    assert get_engine("vllm", version, variant).scheduler.async_scheduling is on


def test_async_scheduling_admits_a_request_one_step_later():
    """Prefill of requests 0 and 1 at 0-1 (the idle engine core schedules at once), then
    a decode run from t = 1. Request 2 arrives at 1.5, during the run's first step.
    Sync (0.10 facts): schedule() at t = 2 sees it, its prefill runs 2-3, first token at 3.
    Async (0.14 facts): the schedule() at t = 2 decides the step after the one launched at
    t = 2 (3-4) and sees it, so the prefill runs 3-4, first token at 4: one step later."""
    sync = ChunkedPrefill(8192, get_engine("vllm", "0.10.2").scheduler)
    asyn = ChunkedPrefill(8192, get_engine("vllm", "0.14.0").scheduler)
    assert _first_token(sync, 1.5) == 3.0
    assert _first_token(asyn, 1.5) == 4.0


def test_a_closed_loop_request_sent_when_another_ends():
    """Request 0 has 3 output tokens: prefill 0-1 (token 1), decode run 1-3 (tokens 2, 3), so
    it ends at t = 3 and its client sends request 2 then, as the closed loop does. The step
    from t = 3 is scheduled before the request is queued (serving.sim). Sync: that step is
    cut after one iteration, prefill 4-5, first token 5. Async: the schedule() at t = 3 ran
    before the arrival and the one at t = 4 (start of step 4-5) takes it for 5-6: first token
    at 6, one step later (the step m + 2 rule: m = the step ending at 3)."""
    outs = [3, 50, 50]
    assert _first_token(ChunkedPrefill(8192, get_engine("vllm", "0.10.2").scheduler), 3.0,
                        outs) == 5.0
    assert _first_token(ChunkedPrefill(8192, get_engine("vllm", "0.14.0").scheduler), 3.0,
                        outs) == 6.0


def test_an_idle_engine_core_schedules_at_once():
    """Nothing runs: the engine core blocks on its input queue and schedules the arrival at
    once, async or not (request 0 at t = 0 on an idle engine: prefill 0-1, token at 1)."""
    e = _engine([0.0])
    e.waiting.append(0)
    st = ChunkedPrefill(8192, get_engine("vllm", "0.14.0").scheduler).next(e, 0.0)
    assert st is not None and st.chunks and (st.start, st.end) == (0.0, 1.0)


def test_the_override_and_its_owner():
    facts = get_engine("vllm", "0.14.0").scheduler
    assert make_scheduler("chunked", 8192, facts).recv is not None
    off = facts.model_copy(update={"async_scheduling": False})
    assert make_scheduler("chunked", 8192, off).recv is None
    assert make_scheduler("chunked", 8192, None).recv is None
    assert EngineConfig(name="vllm", async_scheduling=True).async_scheduling is True
    with pytest.raises(ValueError, match="async_scheduling is vLLM"):
        EngineConfig(name="sglang", async_scheduling=True)


def test_pipeline_parallelism_turns_the_default_off_and_refuses_an_explicit_on():
    """vLLM 0.14 (engine fact scheduler.async_scheduling_with_pp: false; VllmConfig.__post_init__):
    at pipeline_parallel_size > 1 the default resolves to off and --async-scheduling is an
    error; at PP 1 and in the 0.10 family (no such rule) nothing changes."""
    v14 = EngineConfig(name="vllm", version="0.14.0")
    assert scheduler_facts(v14, Parallelism(pp=1)).async_scheduling is True
    assert scheduler_facts(v14, Parallelism(pp=2)).async_scheduling is False
    explicit = EngineConfig(name="vllm", version="0.14.0", async_scheduling=True)
    with pytest.raises(SpecError, match=r"engine\.async_scheduling"):
        scheduler_facts(explicit, Parallelism(pp=2))
    old = EngineConfig(name="vllm", version="0.10.2", async_scheduling=True)
    assert scheduler_facts(old, Parallelism(pp=2)).async_scheduling is True


def test_a_closed_loop_at_0_14_waits_longer_for_its_first_token():
    """The scenario path: engine.version 0.14.0 (async on) against engine.async_scheduling
    false at the same version: the same workload, only when requests are seen differs, so
    the mean TTFT rises (by about one decode step per request that arrives while others
    decode) and the TPOT barely moves."""
    import perfmodel as pm

    sc = closed_loop_llama3_8b({"name": "vllm", "version": "0.14.0"}, 8)
    on = pm.predict(sc).serving
    sc["engine"]["async_scheduling"] = False
    off = pm.predict(sc).serving
    tpot = off["tpot_s"]["mean"]
    extra = on["ttft_s"]["mean"] - off["ttft_s"]["mean"]
    assert 0.5 * tpot < extra < 3.0 * tpot
    assert on["tpot_s"]["mean"] == pytest.approx(tpot, rel=0.05)
