"""The measured end-to-end loop runs real torch workloads on this CPU and compares them with
predictions from a profile calibrated on the same CPU (a real quick calibration, no mocks)."""

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from perfmodel.parameters import param_counts
from perfmodel.specs.registry import load_profile
from perfmodel.validate import measured

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpu_profile(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "cpu.measured.json"
    proc = subprocess.run(
        [sys.executable, "-m", "perfmodel.cli", "calibrate", "--device", "cpu", "--quick",
         "--budget-s", "30", "--only", "gemm,memory,attention,elementwise,launch",
         "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_workloads_describe_the_torch_model_exactly():
    """The perfmodel spec and the torch module have the same parameter count."""
    torch = pytest.importorskip("torch")
    w = measured.load_workloads("cpu")
    module = measured.build_gpt(torch, w.model, "cpu", torch.float32)
    assert sum(p.numel() for p in module.parameters()) == param_counts(w.model).total


def test_measured_loop_end_to_end(cpu_profile):
    proc = subprocess.run(
        [sys.executable, "-m", "perfmodel.cli", "validate", "--measure", "cpu",
         "--calibration", str(cpu_profile), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {c["metric"] for c in data["cases"]} == {"training_step_s", "prefill_s", "tpot_s"}
    for case in data["cases"]:
        assert case["measured"] > 0 and case["predicted"] > 0
        assert math.isfinite(case["ape"])
        assert case["measured_p10"] <= case["measured"] <= case["measured_p90"]
    assert data["median_ape"] <= data["max_ape"]
    assert data["calibration"]["kind"] == "measured"


def test_predictions_use_the_profile(cpu_profile):
    """Predicted times come from the profile: a profile with twice the measured peaks and
    bandwidth predicts faster workloads."""
    w = measured.load_workloads("cpu")
    profile = load_profile(cpu_profile)
    base = measured.predict(w, profile)
    faster = profile.model_copy(update={
        "peak_tflops": {k: 2 * v for k, v in profile.peak_tflops.items()},
        "memory_bandwidth_gbps": 2 * profile.memory_bandwidth_gbps})
    quick = measured.predict(w, faster)
    assert all(quick[k] < base[k] for k in base)


def test_missing_profile_is_a_clear_error(tmp_path):
    args = argparse.Namespace(measure="cpu", calibration=str(tmp_path / "none.json"), json=True)
    with pytest.raises(Exception, match="not found"):
        measured.resolve_profile(args)
