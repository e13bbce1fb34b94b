"""The report's compute- vs memory-bound line (QA 2026-12-03 item 5): a request is one prefill
and many decode steps, so inference states each phase's share; a training step's add up."""

from __future__ import annotations

import re

import pytest

import perfmodel as pm
from perfmodel.report import render_prediction


def test_batch_one_decode_reads_memory_bound_and_prefill_compute_bound():
    line = next(x for x in render_prediction(pm.predict("examples/llama2-7b-decode-a100.yaml"))
                .splitlines() if x.startswith("operator time:"))
    prefill, decode = (int(v) for v in re.findall(
        r"(?:prefill|each decode step) (\d+)% compute-bound", line))
    assert prefill > 50  # 512 prompt tokens through 7B GEMMs: compute-bound (Williams roofline)
    assert decode <= 5  # batch 1 reads every weight for one token: memory-bound


def test_training_states_one_share_for_the_step():
    line = next(x for x in render_prediction(pm.predict("examples/llama3-70b-train-h100.yaml"))
                .splitlines() if x.startswith("operator time:"))
    assert re.fullmatch(r"operator time: \d+% compute-bound, \d+% memory-bound", line)


def test_bound_summary_splits_a_request_by_phase_and_adds_up_per_phase():
    p = pm.predict("examples/llama2-7b-decode-a100.yaml")
    bounds = p.bound_summary
    assert set(bounds) == {"prefill", "decode"}
    for phase, split in bounds.items():
        assert sum(split.values()) == pytest.approx(sum(o.total_s for o in p.ops
                                                        if o.phase == phase))
