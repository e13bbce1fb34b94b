"""Pipeline activations in flight on the first rank under the interleaved schedule, checked
against PyTorch's own warm-up rule (torch/distributed/pipelining/schedules.py v2.6.0,
ScheduleInterleaved1F1B.get_rank_warmup_ops), counted here by hand in chunks of 1/v stage."""

import pytest

from perfmodel.memory import inflight_microbatches


def _torch_rank0_stage_loads(p: int, v: int, m: int) -> float:
    """Rank 0 of torch's interleaved 1F1B: warm-up forwards (v-1) * p + 2 (p-1), capped at the
    m * v chunk forwards of the step; the first steady-state forward adds one more chunk unless
    every forward already ran. A chunk is 1/v of the rank's layers."""
    warmup = min((v - 1) * p + 2 * (p - 1), m * v)
    chunks = warmup + (1 if warmup < m * v else 0)
    return chunks / v


@pytest.mark.parametrize("m", [8, 16, 64])
def test_interleaved_inflight_matches_torch_warmup(m):
    # torchtitan Table 5 (Dec 2024): pp 8, 2 stages per rank, m = pp degree = 8: every forward
    # runs before the first backward, so rank 0 holds m = 8 stage-loads, not 8 (1 + 7/16) = 11.5
    assert inflight_microbatches(8, 2, m, "interleaved") == pytest.approx(
        _torch_rank0_stage_loads(8, 2, m))


def test_interleaved_never_holds_more_than_the_step():
    assert inflight_microbatches(4, 4, 2, "interleaved") == 2
    assert inflight_microbatches(8, 2, 8, "interleaved") <= inflight_microbatches(8, 1, 8, "1f1b")
