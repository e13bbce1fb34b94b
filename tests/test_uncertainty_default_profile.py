"""Bands of uncalibrated predictions (docs/uncertainty.md, "Uncalibrated predictions"): a
prediction made with the default profile (calibration/default.json) reads the groups of every
published case re-predicted with that profile (``default/kind/...``), not the calibrated
cases' groups; the re-predictions make only those groups and leave with their source in the
cross-validated check."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.cli import main
from perfmodel.uncertainty import group_keys, prediction_ranges
from perfmodel.validate.bands import build_groups, coverage, coverage_document, default_rows
from perfmodel.validate.cases import load_cases
from perfmodel.validate.run import run_case

ROOT = Path(__file__).resolve().parents[1]


def _row(source, i, error, profile="reference", repredicted=False, kind="training",
         metric="step_time_s", device=None):
    row = {"id": f"{source}-{i}", "source": source, "kind": kind, "metric": metric,
           "status": "ok", "measured": math.exp(error), "predicted": 1.0, "device": device,
           "profile": profile}
    return row | ({"repredicted": True} if repredicted else {})


def test_default_profile_reads_its_own_chain_first_for_times():
    keys = group_keys("training", "step_time_s", "megatron-core", "volta", "default")
    calibrated = ["training/step_time_s/megatron-core/volta", "training/step_time_s/*/volta",
                  "training/step_time_s/*/*", "training/time/*/*", "*/time/*/*"]
    assert keys == ["default/" + k for k in calibrated] + calibrated
    # a calibrated profile (reference, measured) reads the calibrated chain only
    assert group_keys("training", "step_time_s", "megatron-core", "volta", "reference") \
        == calibrated == group_keys("training", "step_time_s", "megatron-core", "volta")
    # memory: one chain whatever the profile
    assert group_keys("inference", "memory_per_gpu_bytes", "vllm", "ada", "default") \
        == group_keys("inference", "memory_per_gpu_bytes", "vllm", "ada") \
        == ["inference/memory_per_gpu_bytes/vllm/ada", "inference/memory_per_gpu_bytes/*/ada",
            "inference/memory_per_gpu_bytes/*/*", "inference/memory/*/*"]


def test_groups_keep_calibrated_and_default_errors_apart():
    """Calibrated rows make only kind/... groups, re-predictions only default/... groups; a
    case whose device has no calibrated profile (its shipped row already used the default
    profile) counts once, in the default groups."""
    shipped = [_row(s, i, 0.01 * i) for s in ("a", "b") for i in range(10)]
    again = [_row(s, i, 0.5 + 0.01 * i, "default", True) for s in ("a", "b") for i in range(10)]
    native = [_row("c", i, 0.3, "default") for i in range(3)]
    native_again = [_row("c", i, 0.3, "default", True) for i in range(3)]
    g = build_groups(shipped + again + native + native_again)
    assert g["training/step_time_s/*/*"]["n"] == 20
    assert g["training/step_time_s/*/*"]["q_hi"] == pytest.approx(0.09)  # the 19th of 0..0.19
    assert g["default/training/step_time_s/*/*"]["n"] == 23
    assert g["default/training/step_time_s/*/*"]["sources"] == ["a", "b", "c"]
    # without re-predictions the natively uncalibrated rows still make the default groups
    g2 = build_groups(shipped + native)
    assert g2["training/step_time_s/*/*"]["n"] == 20
    assert g2["default/training/step_time_s/*/*"]["n"] == 3
    assert len(default_rows(shipped + again + native + native_again)) == 23
    # memory rows: as shipped, in the one memory chain, whatever the profile (once each)
    mem = [_row(s, i, 0.02, p, metric="peak_memory_gib") for s, p in (("a", "reference"),
                                                                        ("c", "default"))
           for i in range(5)]
    mem_again = [{**r, "profile": "default", "repredicted": True} for r in mem]
    g3 = build_groups(mem + mem_again)
    assert g3["training/memory_per_gpu_bytes/*/*"]["n"] == 10
    assert not any(k.startswith("default/") for k in g3)


def test_default_check_judges_re_predictions_by_the_default_groups_left_out_by_source():
    """Calibrated errors near 0, default-profile errors near +0.5 (the defaults too fast):
    judged by the calibrated groups the re-predictions would all be missed; by their own
    groups, built without their source, they are covered like the calibrated ones."""
    shipped = [_row(f"s{j}", i, 0.02 * (i - 5)) for j in range(4) for i in range(10)]
    again = [_row(f"s{j}", i, 0.5 + 0.02 * (i - 5), "default", True)
             for j in range(4) for i in range(10)]
    doc = coverage_document(shipped + again)
    assert doc["cases"] == 40 and doc["default_profile"]["cases"] == 40
    d = doc["default_profile"]["leave_one_source_out"]
    assert d["judged"] == "default" and d["overall"]["stated"] == 40
    assert d["overall"]["combined"] >= 0.8
    assert set(d["by_level"]) == {"default profile: kind, quantity"}
    assert doc["leave_one_source_out"]["overall"]["combined"] >= 0.8
    # the shipped check is the same with or without the re-predictions
    assert coverage(shipped, "source")["overall"] == doc["leave_one_source_out"]["overall"]
    # a default group of a single other source does not qualify: the calibrated chain is read
    two = [r for r in again if r["source"] in ("s0", "s1")]
    d2 = coverage(shipped + two, "source", "default")
    assert d2["overall"]["stated"] == 20 and set(d2["by_level"]) == {"kind, quantity"}
    assert d2["overall"]["combined"] == 0.0


def _groups(q_default, q_calibrated):
    def g(lo, hi):
        return {"n": 30, "q_lo": lo, "q_median": (lo + hi) / 2, "q_hi": hi,
                "sources": ["x", "y", "z"]}
    return {"training/step_time_s/*/*": g(*q_calibrated),
            "training/memory_per_gpu_bytes/*/*": g(-0.05, 0.05),
            "default/training/step_time_s/*/*": g(*q_default)}


def test_a_v100_prediction_reads_the_default_group():
    """V100 has no calibrated profile: its step time's band is the default group's,
    point x exp(q) (hand value); its memory, with no default memory group, the calibrated
    one's. An H100 prediction with its reference profile reads the calibrated group."""
    sc = {"kind": "training", "model": "llama-2-7b",
          "system": {"device": "v100-sxm2-32gb", "num_gpus": 8},
          "parallelism": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3},
          "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1,
                       "precision": "fp16", "recompute": "full"}}
    p = pm.predict(sc)
    profile = resolve_profile(pm.as_scenario(sc))
    assert profile.kind == "default" and p.calibration["kind"] == "default"
    groups = _groups((-0.1, 0.9), (-0.1, 0.2))
    ranges, basis = prediction_ranges(p, profile, pm.as_scenario(sc), groups=groups)
    lo, hi = ranges["step_time_s"]
    assert lo == pytest.approx(p.step_time_s * math.exp(-0.1))
    assert hi == pytest.approx(p.step_time_s * math.exp(0.9))
    assert "default/training/step_time_s/*/*" in basis["step_time_s"]
    assert "re-predicted with the default profile" in basis["step_time_s"]
    # memory per GPU does not read the efficiencies: one chain for every profile
    assert "validation group training/memory_per_gpu_bytes/*/*" in basis["memory_per_gpu_bytes"]
    # without a default group a time falls back to the calibrated chain, and says so
    _, fallback = prediction_ranges(p, profile, pm.as_scenario(sc),
                                    groups=_groups((-0.1, 0.9), (-0.1, 0.2)) | {
                                        "default/training/step_time_s/*/*": {"n": 3}})
    assert "validation group training/step_time_s/*/*" in fallback["step_time_s"]
    assert "no validation group of the default profile" in fallback["step_time_s"]
    # tokens/s is the inverse: its upper end is the point / exp(-0.1)
    assert ranges["tokens_per_s"][0] == pytest.approx(p.tokens_per_s / math.exp(0.9))
    # a calibrated prediction reads the calibrated group
    h100 = pm.predict(ROOT / "examples" / "llama3-70b-train-h100.yaml")
    h_ranges, h_basis = prediction_ranges(
        h100, pm.load_profile(h100.calibration["path"]),
        pm.as_scenario(ROOT / "examples" / "llama3-70b-train-h100.yaml"), groups=groups)
    assert "default/" not in h_basis["step_time_s"]
    assert h_ranges["step_time_s"][1] >= h100.step_time_s * math.exp(0.2) * (1 - 1e-9)


def test_a_case_predicted_with_another_profile():
    """``run_case(..., calibration=...)`` (``perfmodel validate --calibration FILE``) predicts
    a case with that profile instead of its device's."""
    lc = next(c for c in load_cases(None, "training") if c.case.id.startswith("narayanan"))
    default = pm.load_profile(ROOT / "calibration" / "default.json")
    keep: dict = {}
    row = run_case(lc, keep, default)
    assert row.status == "ok" and row.calibration == "default"
    assert keep[lc.case.id][1].calibration["kind"] == "default"
    assert run_case(lc).calibration != "default"  # its own: the A100 reference profile


def test_calibration_is_refused_with_the_band_commands(capsys):
    for flag in ("--write-bands", "--band-coverage", "--write"):
        assert main(["validate", flag, "--calibration",
                     str(ROOT / "calibration" / "default.json")]) == 2
        assert "drop --calibration" in capsys.readouterr().err
    assert main(["validate", "--calibration", "no/such/profile.json", "--case", "x"]) == 2
    assert "not found" in capsys.readouterr().err
