"""The CLI end to end, in a subprocess as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if "serving" not in p.name)


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "perfmodel.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_at_least_six_examples():
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_predicts_as_json(path):
    out = json.loads(run("predict", str(path), "--json").stdout)
    keys = ({"step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu"} if out["kind"] == "training"
            else {"ttft_s", "tpot_s", "e2e_latency_s", "tokens_per_s"})
    assert keys | {"memory_per_gpu_bytes", "fits", "breakdown"} <= set(out)
    assert out["calibration"]["label"]


def test_predict_table_and_ops():
    out = run("predict", "examples/llama2-7b-decode-a100.yaml", "--ops").stdout
    assert "TPOT" in out and "memory-bound" in out and "attn.qkv" in out


def test_hardware_and_models_listing():
    assert "h100-sxm5-80gb" in run("hardware", "list").stdout
    assert "nvlink4-nvswitch" in run("hardware", "list", "--interconnects").stdout
    assert "dgx-h100" in run("hardware", "list", "--nodes").stdout
    shown = run("hardware", "show", "a100-sxm4-80gb").stdout
    assert "2039" in shown and "https://" in shown
    assert "llama-3-8b" in run("models", "list").stdout
    data = json.loads(run("models", "show", "llama-2-7b", "--json").stdout)
    assert data["parameters"]["total"] == 6_738_415_616


@pytest.mark.parametrize("args,needle", [
    (("hardware", "show", "h100-sxm"), "did you mean"),
    (("models", "show", "llama-2-7"), "did you mean 'llama-2-7b'"),
    (("predict", "no/such/file.yaml"), "not found"),
])
def test_user_errors_are_one_line_exit_2(args, needle):
    proc = run(*args, check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_scenario_names_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: training\nmodel: llama-2-7b\nsystem: {device: a100-sxm4-80gb, "
                   "num_gpus: 3}\nparallelism: {tp: 3}\ntraining: {seq_len: 2048, "
                   "global_batch: 8}\n")
    proc = run("predict", str(bad), check=False)
    assert proc.returncode == 2
    assert "parallelism.tp" in proc.stderr and "valid tp" in proc.stderr
