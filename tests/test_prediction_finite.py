"""No NaN or infinity reaches a Prediction: the validator names the first one by its path
(field, dict keys, list indices, an operator report's field), as written by hand below."""

import math

import pytest

from perfmodel.prediction import InternalError, OpReport, Prediction, _non_finite


def _op(**kw):
    base = dict(name="qkv", cls="gemm", phase="fwd", calls=2.0, flops=1e9, bytes=1e6,
                intensity=1e3, compute_s=1e-3, memory_s=1e-4, time_s=1e-3, total_s=2e-3,
                bound="compute")
    return OpReport(**{**base, **kw})


def _prediction(**kw):
    base = dict(kind="training", model="m", device="d", num_gpus=8, calibration={},
                step_time_s=1.0, tokens_per_s=1e5, memory_per_gpu_bytes=1e9,
                memory_capacity_bytes=8e10, fits=True,
                breakdown={"time": {"fwd": 0.3, "bwd": 0.6}, "groups": {"tp": {"size": 8.0}},
                           "list": [1.0, [2.0, 3.0]]},
                ops=[_op(), _op(name="o")])
    return Prediction(**{**base, **kw})


def test_finite_prediction_passes():
    assert _prediction().step_time_s == 1.0


@pytest.mark.parametrize("kw, path", [
    ({"step_time_s": math.nan}, "step_time_s"),
    ({"breakdown": {"time": {"fwd": 0.3, "bwd": math.inf}}}, "breakdown.time.bwd"),
    ({"breakdown": {"a": [1.0, {"b": [0.0, -math.inf]}]}}, "breakdown.a[1].b[1]"),
    ({"ops": [_op(), _op(time_s=math.nan)]}, "ops[1].time_s"),
    ({"ranges": {"step_time_s": [0.9, math.inf]}}, "ranges.step_time_s[1]"),
    ({"breakdown": {"x": (1.0, math.nan)}, "step_time_s": math.nan}, "step_time_s"),
])
def test_first_non_finite_named(kw, path):
    with pytest.raises(InternalError) as err:
        _prediction(**kw)
    assert f"the prediction's {path} is not a finite number" in str(err.value)


def test_non_finite_walk():
    assert _non_finite({"a": 1, "b": "x", "c": None, "d": [1.0, (2.0,)]}, "r") is None
    assert _non_finite(math.nan, "r") == "r"
    assert _non_finite({"a": {"b": [1.0, 2.0, math.nan, math.inf]}}, "r") == "r.a.b[2]"
    assert _non_finite([{"k": 1.0}, {"k": math.inf}], "r") == "r[1].k"
