"""A calibration profile measured on another device than the scenario's is used, but every
command that takes --calibration says so in one line naming both devices (resolve.device_mismatch):
predict, search and plan-training."""

from __future__ import annotations

import subprocess
import sys

import perfmodel as pm
from perfmodel.paths import data_dir
from perfmodel.resolve import device_mismatch
from perfmodel.specs.registry import load_profile

A100_PROFILE = data_dir("calibration") / "a100-sxm4-80gb.reference.json"
H100 = "h100-sxm5-80gb"


def _scenario() -> dict:
    return {"kind": "training", "model": "llama-3-8b",
            "system": {"device": H100, "num_gpus": 8},
            "parallelism": {"tp": 1, "pp": 1, "zero_stage": 1},
            "training": {"seq_len": 4096, "global_batch": 8, "micro_batch": 1}}


def _one_line_naming_both(lines: list[str]) -> None:
    hits = [w for w in lines if "a100-sxm4-80gb" in w and H100 in w and "measured on" in w]
    assert len(hits) == 1 and "\n" not in hits[0], lines


def test_device_mismatch_is_one_line_and_silent_on_the_same_device():
    profile = load_profile(A100_PROFILE)
    _one_line_naming_both(device_mismatch(profile, H100))
    assert device_mismatch(profile, "a100-sxm4-80gb") == []


def test_predict_warns():
    _one_line_naming_both(pm.predict(_scenario(), calibration=A100_PROFILE).warnings)
    assert not any("measured on" in w for w in pm.predict(_scenario()).warnings)


def test_search_cli_warns(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text("kind: training\nmodel: llama-3-8b\n"
                    f"system: {{device: {H100}, num_gpus: 8}}\n"
                    "training: {seq_len: 4096, global_batch: 8}\n")
    proc = subprocess.run([sys.executable, "-m", "perfmodel.cli", "search", str(path), "--top",
                           "1", "--json", "--calibration", str(A100_PROFILE)],
                          capture_output=True, text=True, timeout=300)
    _one_line_naming_both(proc.stderr.strip().splitlines())


def test_plan_training_warns():
    result = pm.plan_training(model="llama-3-8b", tokens="1T", devices=[H100], max_gpus=16,
                              calibration=A100_PROFILE)
    _one_line_naming_both(result.warnings)
