"""A closed loop's start-up ramp reported apart (serving.bench.first_wave): the first C
requests are sent at once to an idle server, so the k-th of them waits for k - 1 prefills;
their mean TTFT and the mean of the later requests, against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.serving.bench import benchmark_metrics
from perfmodel.serving.requests import Requests
from perfmodel.serving.workload import Workload


def test_first_wave_by_hand():
    wl = Workload(np.array([0.0, 0.0, 0.0, 2.0]), np.array([10, 10, 10, 10]),
                  np.array([2, 2, 2, 2]), 3)
    r = Requests(wl)
    r.first[:] = [0.1, 0.2, 0.3, 2.05]
    r.finish[:] = [0.5, 0.6, 0.7, 2.5]
    b = benchmark_metrics(r, num_gpus=1, concurrency=3)
    assert b["first_wave_requests"] == 3
    assert b["mean_ttft_first_wave_ms"] == pytest.approx(200.0)  # (100 + 200 + 300) / 3
    assert b["mean_ttft_after_first_wave_ms"] == pytest.approx(50.0)
    assert b["mean_ttft_ms"] == pytest.approx((3 * 200.0 + 50.0) / 4)


def test_open_loop_has_no_first_wave():
    wl = Workload(np.array([0.0, 1.0]), np.array([10, 20]), np.array([3, 1]), None)
    r = Requests(wl)
    r.first[:] = [0.5, 1.2]
    r.finish[:] = [0.9, 1.2]
    assert "first_wave_requests" not in benchmark_metrics(r, num_gpus=1, concurrency=None)


def _closed(concurrency: int, num_requests: int) -> dict:
    sc = pm.as_scenario({
        "kind": "serving", "model": "llama-3-8b",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
        "inference": {"prompt_len": 512, "output_len": 64},
        "serving": {"arrival": {"process": "closed", "concurrency": concurrency},
                    "num_requests": num_requests,
                    # one 512-token prompt per prefill iteration
                    "scheduler": {"kind": "continuous", "token_budget": 512}}})
    return pm.predict(sc).serving


def test_first_wave_queues_behind_its_own_prefills():
    """C equal prompts at once, one prefill per iteration: the k-th first token comes after
    k prefills of P (the zero-load TTFT), so the wave's mean is P (C + 1) / 2."""
    s = _closed(concurrency=4, num_requests=40)
    b, p_ms = s["benchmark"], 1e3 * s["zero_load"]["ttft_s"]
    assert b["first_wave_requests"] == 4
    assert b["mean_ttft_first_wave_ms"] == pytest.approx(2.5 * p_ms, rel=1e-9)
    # the published mean is the two parts weighted by their request counts
    assert b["mean_ttft_ms"] == pytest.approx(
        (4 * b["mean_ttft_first_wave_ms"] + 36 * b["mean_ttft_after_first_wave_ms"]) / 40)
    # later requests arrive one at a time, as earlier ones end: no wave to wait behind
    assert b["mean_ttft_after_first_wave_ms"] < b["mean_ttft_first_wave_ms"]


def test_one_client_has_no_ramp():
    b = _closed(concurrency=1, num_requests=10)["benchmark"]
    assert b["first_wave_requests"] == 1
    assert b["mean_ttft_first_wave_ms"] == pytest.approx(b["mean_ttft_after_first_wave_ms"],
                                                         rel=1e-9)


def test_a_separate_warmup_phase_leaves_the_ramp_measured():
    """serving.warmup_requests W run as the client's separate phase, awaited before the
    measured run (clients/*.yaml ``warmup: separate_phase``): the measured run still starts
    on an idle server with C requests at once, so all C of its first wave are measured."""
    sc = pm.as_scenario({
        "kind": "serving", "model": "llama-3-8b",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
        "inference": {"prompt_len": 512, "output_len": 64},
        "serving": {"arrival": {"process": "closed", "concurrency": 4}, "num_requests": 40,
                    "warmup_requests": 4,
                    "scheduler": {"kind": "continuous", "token_budget": 512}}})
    b = pm.predict(sc).serving["benchmark"]
    assert b["completed"] == 40 and b["first_wave_requests"] == 4
    assert b["warmup_requests"] == 4
