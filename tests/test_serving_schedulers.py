"""Batching policies are a registry (name -> class, as Vidur's), and where a preempted sequence
goes is the engine's pool's business (DistServe: back to a prefill instance)."""

import typing

import pytest
from scheduler_engines import UnitCost, make_engine, run_step

import perfmodel as pm
from perfmodel.serving.schedulers import (
    SCHEDULERS,
    ContinuousBatching,
    Scheduler,
    make_scheduler,
    register,
)
from perfmodel.specs.scenario import SchedulerConfig


def test_every_scenario_scheduler_kind_has_its_schedulers():
    kinds = typing.get_args(SchedulerConfig.model_fields["kind"].annotation)
    for kind in kinds:
        names = ["prefill", "decode"] if kind == "disaggregated" else [kind]
        for name in names:
            s = make_scheduler(name, 512)
            assert isinstance(s, SCHEDULERS[name]) and s.name == name and s.budget == 512


def test_unknown_scheduler_names_the_registered_ones():
    with pytest.raises(ValueError, match="registered: chunked, continuous, decode"):
        make_scheduler("fcfs-magic", 1)


def test_register_adds_a_policy():
    @register("test-only")
    class Greedy(ContinuousBatching):
        pass

    try:
        assert isinstance(make_scheduler("test-only", 8), Greedy)
        assert issubclass(SCHEDULERS["test-only"], Scheduler)
    finally:
        del SCHEDULERS["test-only"]


def test_disaggregated_decode_preemption_recomputes_on_a_prefill_instance():
    """A decode instance that runs out of KV blocks preempts its latest sequence; the
    sequence is prefilled again (prompt + tokens so far) on the prefill pool, and every
    request still ends with its full output."""
    pred = pm.predict({
        "kind": "serving", "model": "llama-3-8b",
        "system": {"device": "a100-sxm4-40gb", "num_gpus": 2},
        "serving": {"arrival": {"process": "poisson", "rate_per_s": 20.0},
                    "num_requests": 300,
                    "prompt_len": {"kind": "uniform", "min": 1500, "max": 3000},
                    "output_len": {"kind": "uniform", "min": 800, "max": 1500},
                    "scheduler": {"kind": "disaggregated", "prefill_gpus": 1,
                                  "decode_gpus": 1},
                    "seed": 1}})
    s = pred.serving
    assert s["preemptions"] > 0  # only the decode pool preempts (prefill-only never decodes)
    assert s["throughput"]["requests_per_s"] > 0
    assert s["workload"]["num_requests"] == 300


# ---- engine schedulers: TensorRT-LLM in-flight batching, SGLang prefill-first -------------
def _engine(prompts, outputs, blocks=10_000, block=32, max_batch=256):
    return make_engine(UnitCost(), prompts, outputs, blocks, block, max_batch)




def test_inflight_runs_each_context_whole_while_max_num_tokens_lasts():
    """TensorRT-LLM microBatchScheduler.cpp without chunked context: 100 + 100 + 5000 = 5200
    <= 8192 tokens run together; the next 5000 would make 10200 and stops the scan, so it
    waits; in the next iteration 3 decodes + 5000 = 5003 fit."""
    e = _engine([100, 100, 5000, 5000], [50, 50, 10, 10])
    s = make_scheduler("inflight", 8192)
    first = run_step(s, e, 0.0)
    assert [c for _, c in first.chunks] == [100, 100, 5000] and list(e.waiting) == [3]
    step = run_step(s, e, first.end)
    assert [c for _, c in step.chunks] == [5000] and step.decode and not e.waiting


def test_inflight_reserves_the_whole_request_and_never_preempts():
    """GUARANTEED_NO_EVICT (executor.h default): a request starts only when the blocks of
    prompt + output fit: 10 blocks of 32 tokens hold one request of 200 + 100 tokens
    (ceil(300 / 32) = 10 blocks), so the second waits until the first has finished."""
    e = _engine([200, 200], [100, 100], blocks=10)
    s = make_scheduler("inflight", 8192)
    run_step(s, e, 0.0)
    assert e.n == 1 and list(e.waiting) == [1] and e.used == 10
    t = 1.0
    while e.waiting or e.n:
        t = run_step(s, e, t).end
    assert int(e.reqs.preemptions.sum()) == 0
    assert e.reqs.first[1] > e.reqs.finish[0] - 1e-9  # started after the first one ended


def test_inflight_chunked_context_cuts_to_whole_blocks():
    """With chunked context on (FIRST_COME_FIRST_SERVED), a context gets the tokens left,
    rounded down to the chunk unit (tokens_per_block 32): first iteration 1000 - 30 = 970 ->
    960; then 3 decodes leave 997 -> 992; the rest (5000 - 1952 = 3048) runs over the next
    iterations the same way."""
    from perfmodel.serving.schedulers import InflightBatching

    e = _engine([10, 10, 10, 5000], [50, 50, 50, 10])
    s = InflightBatching(1000)
    s.chunked = True
    first = run_step(s, e, 0.0)
    assert [c for _, c in first.chunks] == [10, 10, 10, 960]
    second = run_step(s, e, first.end)
    assert [c for _, c in second.chunks] == [992] and second.decode


def test_prefill_first_pauses_the_decodes_and_continues_the_chunked_request():
    """SGLang get_next_batch_to_run: while requests wait, the batch is prefill-only (the two
    running sequences do not advance); a 6000-token prompt with chunked_prefill_size 4096 runs
    as 4096 then 1904 (the chunked request first), then everything decodes."""
    e = _engine([100, 100, 6000], [50, 50, 10])
    s = make_scheduler("prefill_first", 4096)
    e.waiting.pop()  # the long request arrives later
    step = run_step(s, e, 0.0)
    assert [c for _, c in step.chunks] == [100, 100] and not step.decode
    gen_before = e.gen[:2].copy()
    e.waiting.append(2)
    step = run_step(s, e, step.end)
    assert [c for _, c in step.chunks] == [4096] and not step.decode
    step = run_step(s, e, step.end)
    assert [c for _, c in step.chunks] == [1904] and not step.decode
    assert (e.gen[:2] == gen_before).all()  # decodes waited for both prefill batches
    step = run_step(s, e, step.end)
    assert step.kind == "run"  # nothing waits: every running request decodes


@pytest.mark.parametrize("engine,kind,budget", [
    ("trtllm", "inflight", 8192), ("sglang", "prefill_first", 8192), ("vllm", "chunked", 8192)])
def test_a_named_engine_runs_its_own_scheduler_unless_the_scenario_names_one(engine, kind,
                                                                               budget):
    """engines/<id>.yaml scheduler.policy and max_num_batched_tokens (TensorRT-LLM
    max_num_tokens; SGLang chunked_prefill_size on an 80 GB GPU) fill what the scenario
    leaves unset; a scenario's kind and token_budget are kept."""
    sc = {"kind": "serving", "model": "llama-3-8b", "engine": engine,
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
          "inference": {"prompt_len": 512, "output_len": 16},
          "serving": {"arrival": {"process": "closed", "concurrency": 4}, "num_requests": 8}}
    dep = pm.predict(sc).serving["deployment"]
    assert (dep["scheduler"], dep["token_budget"]) == (kind, budget)
    sc["serving"]["scheduler"] = {"kind": "continuous", "token_budget": 4096}
    dep = pm.predict(sc).serving["deployment"]
    assert (dep["scheduler"], dep["token_budget"]) == ("continuous", 4096)


def test_plan_serving_names_the_engines_scheduler():
    """plan-serving with --engine and no --scheduler simulates (and reports) the engine's own
    policy; a given --scheduler is kept."""
    from perfmodel.serving.capacity import PlanInputs, _scheduler_kind
    from perfmodel.specs.scenario import EngineConfig, LengthDistribution
    from perfmodel.zoo import get_model

    base = dict(model=get_model("llama-3-8b"), rate_per_s=1.0, slo=pm.specs.scenario.SLOConfig(),
                prompt_len=LengthDistribution(kind="fixed", value=64),
                output_len=LengthDistribution(kind="fixed", value=8))
    assert _scheduler_kind(PlanInputs(**base, engine=EngineConfig(name="trtllm"))) == "inflight"
    assert _scheduler_kind(PlanInputs(**base)) == "continuous"
    given = SchedulerConfig(kind="chunked")
    assert _scheduler_kind(PlanInputs(**base, scheduler=given,
                                      engine=EngineConfig(name="sglang"))) == "chunked"


def test_prefill_first_reserves_future_tokens_by_sglangs_new_token_ratio():
    """SGLang PrefillAdder with engines/sglang.yaml's facts, page size 1, 2000 free tokens.
    Idle: request 0 needs 100 + 600 + 1 < 2000 and reserves 700, leaving 1300; request 1
    needs 300 + 1000 + 1 = 1301 >= 1300 and waits. Next batch: request 0 runs with 599
    tokens to go, reserved x 0.7 = 419.3, and 2000 - 100 - 419.3 = 1480.7 > 1301 admits
    request 1. A decode run of k batches lowers the ratio by k x (0.7 - 0.098) / 600; an
    idle instance resets it to 0.7."""
    from perfmodel.engines import get_engine
    from perfmodel.serving.schedulers import PrefillFirst

    facts = get_engine("sglang").scheduler
    e = _engine([100, 300], [600, 1000], blocks=2000, block=1)
    s = PrefillFirst(8192, facts)
    step = run_step(s, e, 0.0)
    assert [c for _, c in step.chunks] == [100] and list(e.waiting) == [1]
    step = run_step(s, e, step.end)
    assert [c for _, c in step.chunks] == [300] and not e.waiting
    assert s.ratio == pytest.approx(0.7)  # prefill batches do not decay it
    run = run_step(s, e, step.end)
    assert run.kind == "run"
    s.next(e, run.end)  # applies the run's decode batches
    assert s.ratio == pytest.approx(max(0.098, 0.7 - run.steps * (0.7 - 0.098) / 600))
    empty = _engine([], [], blocks=10, block=1)
    assert s.next(empty, 0.0) is None and s.ratio == 0.7


def test_prefill_first_without_engine_facts_keeps_the_watermark():
    """No engine named: no SGLang reserve, both requests start in the first batch."""
    e = _engine([100, 300], [600, 1000], blocks=2000, block=1)
    step = run_step(make_scheduler("prefill_first", 8192), e, 0.0)
    assert [c for _, c in step.chunks] == [100, 300]
