"""``training.by_stage``: each cell holds the result of its own ZeRO stage, whatever the layout
of the stage array (a leading search axis, flat rows, or broadcast against more axes)."""

import numpy as np

from perfmodel.training import by_stage


def _times_stage(values):
    return lambda s: np.asarray(values, float) * s


def test_flat_rows_select_per_row():
    """Stages [1, 3] broadcast along the last axis of a (3, 1) result: column j is stage j's
    (hand: 10 x 1, 10 x 3 ...); the former fast path copied rows here and left garbage."""
    out = by_stage(np.array([1.0, 3.0]), _times_stage([[10.0], [20.0], [30.0]]))
    np.testing.assert_array_equal(out, [[10, 30], [20, 60], [30, 90]])


def test_a_leading_stage_axis_copies_rows():
    out = by_stage(np.array([1.0, 3.0]).reshape(2, 1), _times_stage([[10.0, 20.0]]))
    np.testing.assert_array_equal(out, [[10, 20], [30, 60]])


def test_tuples_and_dicts_follow_the_same_rule():
    zero = np.array([2.0, 3.0]).reshape(2, 1)
    out = by_stage(zero, lambda s: ({"a": np.array([[1.0, 2.0]]) * s}, np.array([[s]])))
    np.testing.assert_array_equal(out[0]["a"], [[2, 4], [3, 6]])
    np.testing.assert_array_equal(out[1], [[2], [3]])
