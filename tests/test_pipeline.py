"""Pipeline schedule time and stage layout (Narayanan et al. 2021, arXiv 2104.04473, Sec. 2.2)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfmodel.pipeline import layers_on_largest_stage, pipeline_time, stage_times


def test_equal_stages_give_the_bubble_fraction_p_minus_1_over_v_m_sec_2_2():
    """Sec. 2.2.1: bubble time fraction (p-1)/m; Sec. 2.2.2: (p-1)/(v m) when interleaved."""
    t, p, m = 0.1, 4, 8
    stages = stage_times(body=t, body_avg=t, embed=0.0, head=0.0, pp=p)
    total, bubble = pipeline_time(stages, m, 1)
    assert float(total) == pytest.approx((m + p - 1) * t)  # (m + p - 1) t_stage
    assert float(bubble) / (m * t) == pytest.approx((p - 1) / m)
    total, bubble = pipeline_time(stages, m, 2)
    assert float(bubble) / (m * t) == pytest.approx((p - 1) / (2 * m))


def test_embedding_and_head_sit_on_the_first_and_last_stage():
    s = stage_times(body=1.0, body_avg=1.0, embed=0.2, head=0.5, pp=np.array([1, 2, 4]))
    assert s.first.tolist() == [1.7, 1.2, 1.2]  # no pipeline: one stage does everything
    assert s.last.tolist() == [1.7, 1.5, 1.5]
    assert s.middle.tolist() == [0.0, 0.0, 1.0]  # a middle stage exists from pp = 3
    assert s.total.tolist() == pytest.approx([1.7, 2.7, 4.7])  # every layer once + both ends
    total, _ = pipeline_time(s, 8, 1)
    assert total.tolist() == pytest.approx([8 * 1.7, 8 * 1.5 + 1.2, 8 * 1.5 + 3.2])


def test_uneven_split_puts_ceil_l_over_p_v_chunks_on_the_largest_stage():
    """Llama-3.1-405B: 126 layers over 8 stages -> 16 on the largest (torchtitan's split)."""
    assert layers_on_largest_stage(126, 8, 1, True) == 16
    assert layers_on_largest_stage(126, 8, 2, True) == 16  # ceil(126 / 16) * 2
    assert layers_on_largest_stage(128, 8, 1, False) == 16


@given(st.floats(1e-4, 1.0), st.integers(1, 16), st.integers(1, 64), st.integers(1, 4))
def test_pipeline_never_beats_the_slowest_stage_times_m(t, p, m, v):
    stages = stage_times(body=t, body_avg=t, embed=0.0, head=0.0, pp=p)
    total, bubble = pipeline_time(stages, m, v)
    assert float(bubble) >= 0 and float(total) >= m * t * (1 - 1e-12)
