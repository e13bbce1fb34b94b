"""torchtitan's memory terms beyond the activations, by hand from the torch v2.6.0 source the
facts in frameworks/torchtitan.yaml cite: pipeline stage buffers (pipelining stage.py /
schedules.py), loss_parallel's backward peak (tensor/parallel/loss.py) and all-gather CP's
backward buffers (tensor/experimental/_attention.py). Shapes of the Dec-2024 H100 benchmark's
Llama 3.1 405B rows (Tables 5 and 6) and 70B row (Table 4)."""

import numpy as np
import pytest

from perfmodel import frameworks_costs as FC
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.plan import TrainPlan
from perfmodel.specs.registry import get_model

GIB = 2**30
TT = resolve_framework(FrameworkConfig(name="torchtitan", compile=True))
L405 = get_model("llama-3.1-405b")
L70 = get_model("llama-3.1-70b")


def _plan(**kw) -> TrainPlan:
    base = dict(tp=8, pp=8, dp=8, cp=1, ep=1, etp=1, vp=1, micro_batch=4, seq_len=8192,
                global_batch=256, sequence_parallel=True, zero_stage=3, recompute="full",
                framework=TT)
    base.update(kw)
    return TrainPlan(**base)


def _terms(plan, model, is_first, is_last, activations=0.0):
    return FC.memory_terms(TT, model, plan, 3, 0.0, 0.0, np.bool_(is_first), np.bool_(is_last),
                           2.0, activations)


def test_pipeline_buffers_first_and_last_stage_table5_1f1b():
    """pp 8, 8 micro-batches of 4 x 8192 tokens, TP 8 with SP: the stage boundary is the local
    (4, 1024, 16384) bf16 shard, 128 MiB. The first stage keeps 8 outputs and 8 gradient
    receive buffers: 2 GiB. The last keeps 8 forward receive buffers (1 GiB) and 8 micro-batches'
    vocab-sharded bf16 logits, 4 x 8192 x 16032 x 2 B each: 7.83 GiB."""
    plan = _plan()
    assert plan.num_microbatches == 8
    boundary = 4 * 8192 / 8 * 16384 * 2
    assert boundary == 128 * 2**20
    logits = 4 * 8192 * (128256 / 8) * 2
    first = _terms(plan, L405, True, False)["pipeline_buffers"]
    last = _terms(plan, L405, False, True)["pipeline_buffers"]
    assert first == pytest.approx(2 * 8 * boundary) and first == pytest.approx(2.0 * GIB)
    assert last == pytest.approx(8 * logits + 8 * boundary)
    assert 8 * logits / GIB == pytest.approx(7.83, abs=0.01)


def test_pipeline_buffers_interleaved_middle_stage():
    """vp 2 (looped): rank 0 holds stage 0 (outputs + gradient receive buffers) and stage 8, a
    middle stage (outputs, forward and gradient receive buffers): 2 + 3 = 5 x m boundaries."""
    plan = _plan(vp=2)
    boundary = 4 * 8192 / 8 * 16384 * 2
    first = _terms(plan, L405, True, False)["pipeline_buffers"]
    last = _terms(plan, L405, False, True)["pipeline_buffers"]
    assert first == pytest.approx(5 * 8 * boundary)
    assert last == pytest.approx(8 * 4 * 8192 * 16032 * 2 + 4 * 8 * boundary)
    # a rank holding neither end (e.g. rank 3: stages 3 and 11) keeps two middle stages
    middle = _terms(plan, L405, False, False)["pipeline_buffers"]
    assert middle == pytest.approx(2 * 3 * 8 * boundary)


def test_step_end_merge_counts_only_beyond_the_backward_peak():
    """schedules.py step(): the last stage concatenates its 8 logits chunks after the backward:
    another 7.83 GiB while the activations and the loss's buffers are freed."""
    plan = _plan()
    logits8 = 8 * 4 * 8192 * 16032 * 2
    loss = _terms(plan, L405, False, True)["loss_buffers"]
    assert _terms(plan, L405, False, True, activations=0.0)["pipeline_output_merge"] == \
        pytest.approx(logits8 - loss)
    assert _terms(plan, L405, False, True, activations=logits8)["pipeline_output_merge"] == 0.0
    assert _terms(plan, L405, True, False)["pipeline_output_merge"] == 0.0


def test_no_pipeline_buffers_without_pp():
    terms = _terms(_plan(pp=1, dp=64, global_batch=64, micro_batch=1), L405, True, True)
    assert terms["pipeline_buffers"] == 0.0 and terms["pipeline_output_merge"] == 0.0


def test_loss_parallel_peaks_at_16_bytes_per_local_logit():
    """Table 4 (70B, TP 8, local batch 16 x 8192): loss_parallel's backward holds x, zeros,
    the sum and the product, 16 B per local logit, 12 B beyond perfmodel's 4 B fp32 logits:
    12 x 16 x 8192 x 16032 = 25.2 GB (23.48 GiB); TP 1 keeps the plain path's 12 B."""
    tokens = 16 * 8192
    tp8 = FC.loss_buffer_bytes(TT, L70, tokens, 8)
    assert tp8 == pytest.approx(12 * tokens * 128256 / 8)
    assert tp8 / GIB == pytest.approx(23.48, abs=0.01)
    assert FC.loss_buffer_bytes(TT, L70, tokens, 1) == pytest.approx(8 * tokens * 128256)
    # array-friendly: one call over TP degrees
    both = FC.loss_buffer_bytes(TT, L70, tokens, np.array([1.0, 8.0]))
    assert both[0] == pytest.approx(8 * tokens * 128256)
    assert both[1] == pytest.approx(tp8)


def test_cp_backward_buffers_table6_cp8():
    """405B, cp 8, seq 262144, TP 8: local 32768 queries x 16 heads x 128 (K/V repeated to the
    query heads). Gathered K/V: 262144 x 2 x 16 x 128 x 2 B = 2 GiB. Backward: 6 B per query
    element + 20 B per K and V element (2 x 16 x 128 per token) = 46 B x 67,108,864 =
    2.875 GiB, larger than the forward's 4 B fp32 output (0.25 GiB)."""
    q = 32768 * 16 * 128
    assert q == 67_108_864
    got = FC.cp_buffer_bytes(TT, L405, 262144, 32768, 8, 8, 2.0)
    assert got == pytest.approx(2 * GIB + 46 * q)
    assert (got - 2 * GIB) / GIB == pytest.approx(2.875)
    assert FC.cp_buffer_bytes(TT, L405, 32768, 32768, 1, 8, 2.0) == 0.0


def test_cp_and_loss_phases_are_not_added():
    """On the rank that computes the loss, CP's buffers (inside a layer's attention) and the
    loss's (at the loss's backward) are alive at different times: the larger phase counts.
    Table 2's 8B cp 8 row: loss phase 31.3 GiB > CP phase, so CP adds nothing."""
    l8 = get_model("llama-3.1-8b")
    plan = _plan(tp=1, pp=1, dp=1, cp=8, micro_batch=1, seq_len=262144, global_batch=1,
                 sequence_parallel=False)
    terms = _terms(plan, l8, True, True)
    assert terms["loss_buffers"] == pytest.approx(8 * 32768 * 128256)
    cp_phase = FC.cp_buffer_bytes(TT, l8, 262144, 32768, 8, 1, 2.0)
    assert 0 < cp_phase < terms["loss_buffers"]
    assert terms["cp_buffers"] == 0.0
    # a rank without the loss (first pipeline stage) pays the CP phase in full
    assert _terms(_plan(cp=8, seq_len=262144, micro_batch=1, global_batch=8, dp=1), L405,
                  True, False)["cp_buffers"] == pytest.approx(
        FC.cp_buffer_bytes(TT, L405, 262144, 32768, 8, 8, 2.0))
