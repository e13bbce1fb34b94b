"""When SGLang's scheduler sees a new request (perfmodel/serving/schedulers.py IntervalReceiver):
the overlap scheduler decides a batch while the one before it runs, and
--scheduler-recv-interval N takes in requests only every N decode batches. Hand-counted
loops on a cost model where every iteration takes 1 s."""

import numpy as np
import pytest
from scheduler_engines import UnitCost, closed_loop_llama3_8b, make_engine

import perfmodel as pm
from perfmodel.engines import get_engine
from perfmodel.serving.engine import Step
from perfmodel.serving.schedulers import IntervalReceiver, PrefillFirst, make_scheduler


def _engine(prompts, outputs, arrivals=None):
    return make_engine(UnitCost(), prompts, outputs, blocks=100_000, block=1,
                       arrivals=arrivals, queue=False)


def _run(k, start=0.0):
    cum = start + np.arange(1.0, k + 1)
    return Step("run", float(cum[-1]), start, cum=cum, step_times=np.ones(k), steps=k,
                interruptible=True)


def test_the_counter_receives_every_n_decode_batches():
    """N = 3, counter 0: the loops at the starts of a 7-step run count 1, 2, 3 (receives at
    t = 2), 1, 2, 3 (receives at t = 5), 1; so the counter ends at 1 and the latest receive
    is the loop at t = 5. A prefill batch (weight 1000) makes its loop receive at once."""
    r = IntervalReceiver(3)
    r.account(_run(7))
    assert (r.counter, r.fire_t, r.fire_incl) == (1, 5.0, False)
    r.account(_run(1, start=7.0))  # counter 2: no receive
    assert (r.counter, r.fire_t) == (2, 5.0)
    r.account(Step("iteration", 9.0, 8.0, chunks=[(0, 100)]))
    assert (r.counter, r.fire_t) == (0, 8.0)


def test_a_run_ends_after_the_step_whose_loop_receives():
    """N = 3, counter 0, a request arriving at t = 0.5 during a 7-step run from t = 0: the
    loops strictly after 0.5 are at t = 1..6; the first that receives is the one at t = 2
    (counter 3), which decides the step after it, so the run keeps 3 steps (ends at t = 3)."""
    r = IntervalReceiver(3)
    st = _run(7)
    assert r.cut(st, 0.5) and (st.steps, st.end) == (3, 3.0)
    # N = 1 (no skipper), the overlap alone: a request sent at the boundary t = 0 (its
    # predecessor's last token came out there) misses the loop at t = 0, is received by
    # the loop at t = 1, and its prefill follows step 2: two steps, not one
    r1 = IntervalReceiver(1)
    st = _run(7)
    assert r1.cut(st, 0.0) and (st.steps, st.end) == (2, 2.0)
    # a receive that falls after the run's last step leaves it as it is
    st = _run(2)
    assert not IntervalReceiver(30).cut(st, 0.5) and st.steps == 2


def test_prefill_first_with_sglang_facts_sees_a_late_request_one_step_later():
    """Requests 0 and 1 start at t = 0 from an idle server (both seen: the idle loop receives
    at once; prefill at 0-1). Request 2 arrives at t = 1.5, during the first decode run: the
    loop at t = 2 (start of the run's 2nd step) receives it and decides the 3rd batch, so the
    run keeps 2 steps and request 2's prefill is t = 3-4 (first token at 4). Without engine
    facts (generic) the run is cut at the first boundary after 1.5, prefill at 2-3."""
    def first_token(sched):
        e = _engine([100, 100, 100], [50, 50, 50], arrivals=[0.0, 0.0, 1.5])
        e.waiting.extend([0, 1])
        now, added = 0.0, False
        while np.isnan(e.reqs.first[2]):
            st = sched.next(e, now)
            e.step = st
            if not added and st.end > 1.5:
                e.waiting.append(2)
                added = True
                sched.truncate(e, 1.5)
            e.complete(st.end)
            now = st.end
        return float(e.reqs.first[2])

    assert first_token(PrefillFirst(8192, get_engine("sglang").scheduler)) == 4.0
    assert first_token(PrefillFirst(8192)) == 3.0


def test_recv_interval_is_sglangs_only():
    with pytest.raises(ValueError, match="scheduler-recv-interval"):
        make_scheduler("chunked", 8192, None, 10)
    with pytest.raises(ValueError, match="engine: sglang"):
        make_scheduler("prefill_first", 8192, None, 10)
    with pytest.raises(ValueError, match=">= 1"):
        IntervalReceiver(0)


def test_recv_interval_raises_ttft_by_about_half_an_interval_of_decode_steps():
    """Closed loop of 4 clients, SGLang: with --scheduler-recv-interval 10 a new request waits
    on average for about half of the 10 decode batches between receives (4.5 steps: the one
    it lands in is uniform over the interval), so the mean TTFT rises by about 4.5 TPOT."""
    sc = closed_loop_llama3_8b("sglang", 4)
    base = pm.predict(sc).serving
    sc["serving"]["scheduler"] = {"recv_interval": 10}
    slow = pm.predict(sc).serving
    tpot = base["tpot_s"]["mean"]
    extra = slow["ttft_s"]["mean"] - base["ttft_s"]["mean"]
    assert 3.0 * tpot < extra < 6.0 * tpot
