"""Batching policies are a registry (name -> class, as Vidur's), and where a preempted sequence
goes is the engine's pool's business (DistServe: back to a prefill instance)."""

import typing

import pytest

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
