"""The measured end-to-end loop (`perfmodel validate --measure cpu`): its workloads and its
errors. The loop itself, real torch workloads on this CPU compared with predictions from a
profile calibrated on the same CPU (a real quick calibration, no mocks), runs in
tests/test_calibrate_measure.py on the profile that file's quick calibration has just measured
(one calibration of this CPU per test run instead of two)."""

import argparse

import pytest

pytest.importorskip("torch")

from perfmodel.parameters import param_counts
from perfmodel.validate import measured


def test_workloads_describe_the_torch_model_exactly():
    """The perfmodel spec and the torch module have the same parameter count."""
    torch = pytest.importorskip("torch")
    w = measured.load_workloads("cpu")
    module = measured.build_gpt(torch, w.model, "cpu", torch.float32)
    assert sum(p.numel() for p in module.parameters()) == param_counts(w.model).total


def test_missing_profile_is_a_clear_error(tmp_path):
    args = argparse.Namespace(measure="cpu", calibration=str(tmp_path / "none.json"), json=True)
    with pytest.raises(Exception, match="not found"):
        measured.resolve_profile(args)
