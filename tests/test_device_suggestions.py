"""One suggestion rule (errors.closest) for every unknown id: the same id up to separators,
then ids starting with what was typed (a whole family: ``h100`` -> the four h100-* devices),
then the same family and ids containing it, edit distance last (issue 13 QA: ``h100`` used
to suggest gh200, a10, b300)."""

import subprocess
import sys

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError, closest
from perfmodel.specs import registry
from perfmodel.zoo import resolve_model

H100 = ["h100-nvl-94gb", "h100-pcie-80gb", "h100-sxm5-80gb", "h100-sxm5-96gb"]


def test_h100_lists_the_h100_family():
    assert sorted(closest("h100", registry.ids("device"))) == H100


@pytest.mark.parametrize("given,first", [
    ("h100-80gb", {"h100-pcie-80gb", "h100-sxm5-80gb"}),  # family, closest first
    ("a100", {"a100-pcie-80gb", "a100-sxm4-40gb", "a100-sxm4-80gb"}),
    ("rtx4090", {"rtx-4090"}),  # separators do not matter
    ("4090", {"rtx-4090"}),  # contained
    ("mi300", {"mi300x"}),
    ("h200", {"h200-sxm-141gb"}),
])
def test_device_hints(given, first):
    assert closest(given, registry.ids("device"))[0] in first


def test_model_hints():
    models = registry.ids("model")
    assert closest("llama3-8b", models) == ["llama-3-8b"]
    assert closest("llama-2-7", models)[0] == "llama-2-7b"
    assert sorted(closest("mixtral", models)) == ["mixtral-8x22b", "mixtral-8x7b"]
    assert closest("gpt-175", models)[0] == "gpt-175b"


def test_edit_distance_when_no_family():
    assert closest("mistrall-7b", registry.ids("model"))[0] == "mistral-7b"
    assert closest("zzzz", registry.ids("model")) == []


def test_scenario_device_error_lists_the_family():
    data = {"kind": "inference", "model": "llama-3-8b",
            "system": {"device": "h100", "num_gpus": 1},
            "inference": {"prompt_len": 128, "output_len": 16}}
    with pytest.raises(SpecError) as err:
        pm.predict(data)
    msg = str(err.value)
    assert "unknown device 'h100'; did you mean" in msg
    assert all(repr(d) in msg for d in H100) and "gh200" not in msg


def test_hardware_show_uses_the_same_rule():
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "hardware", "show", "h100"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert all(repr(d) in out.stderr for d in H100) and "gh200" not in out.stderr
    # an interconnect or node id is looked for too
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "hardware", "show", "nvlink4"],
                         capture_output=True, text=True)
    assert "did you mean 'nvlink4-bridge', 'nvlink4-nvswitch', 'nvlink4-nvswitch-h800'?" in out.stderr


def test_models_and_engines_use_the_same_rule():
    with pytest.raises(SpecError, match=r"did you mean 'llama-3-8b'\?"):
        resolve_model("llama3-8b")
    with pytest.raises(SpecError, match=r"did you mean 'vllm'"):
        get_engine("vlm")


def test_hardware_list_shows_each_dtype_s_own_peak():
    """bf16 '-' where the device has no bf16 tensor cores (T4, V100: fp16 only), not the fp16
    figure; a device without sourced peaks (A10G) shows '-', not 0."""
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "hardware", "list"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    header = lines[0].split()
    assert header[6:11] == ["bf16", "TFLOP/s", "fp16", "fp8", "fp4"]
    row = {line.split()[0]: line.split()[4:8] for line in lines[2:]}
    assert row["t4"] == ["-", "65", "-", "-"]
    assert row["v100-sxm2-32gb"] == ["-", "125", "-", "-"]
    assert row["a10g"] == ["-", "-", "-", "-"]
    assert row["b200"] == ["2250", "2250", "4500", "9000"]


def test_fp4_formats_only_where_there_are_fp4_tensor_cores():
    """Turing / Volta (and every other pre-Blackwell, pre-CDNA 4 device) list no fp4 format;
    each device file says so itself, with its source (FP4ISA / FP4CDNA)."""
    for d in registry.devices().values():
        has_fp4 = d.peak_tflops.get("fp4") is not None
        assert bool(d.fp4_formats) == has_fp4, d.id
        assert "fp4_formats" in d.field_sources, d.id
    devices = registry.devices()
    assert devices["t4"].fp4_formats == [] and devices["v100-sxm2-32gb"].fp4_formats == []
    assert devices["b200"].fp4_formats == ["nvfp4", "mxfp4"]
    assert devices["mi355x"].fp4_formats == ["mxfp4"]


@pytest.mark.parametrize("argv,needle", [
    (["plan-training", "--model", "llama-3-8b", "--framework", "torchtitn"],
     "did you mean 'torchtitan'?"),
    (["plan-serving", "--engine", "vlm"], "did you mean 'vllm'"),
    (["hardware", "lst"], "did you mean 'list'?"),
])
def test_command_line_choices_use_the_same_rule(argv, needle):
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", *argv],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice" in out.stderr and needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
