"""calibration/gemm_kernels.yaml: every dense GEMM kernel an engine file or a shipped profile
names is one of its labels (as tests/test_moe_kernel_labels.py for the grouped GEMMs), and an
engine file naming another fails when it loads, with one line naming the field and the valid
labels. One loader reads both label files (perfmodel/calibrate/moe_kernels.py ``kernel_file``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfmodel import engines as E
from perfmodel.calibrate.moe_kernels import FILES, check_labels, kernel_file, kernel_labels
from perfmodel.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
GEMM_LABELS = {"aiter_v0.1.7.post1", "flashinfer_cutedsl",
               "trtllm_torch_flow"}  # calibration/gemm_kernels.yaml


def test_one_loader_for_both_files():
    assert FILES == {"moe": "moe_kernels.yaml", "gemm": "gemm_kernels.yaml"}
    assert set(kernel_file("gemm").labels) == GEMM_LABELS
    assert kernel_labels("gemm")["torch_flow"] == "trtllm_torch_flow"
    assert kernel_labels("moe")["moe_torch_flow_cutlass"] == "trtllm_cutlass"
    assert kernel_labels() is kernel_labels("moe")  # read once, moe by default
    assert kernel_file("gemm") is kernel_file("gemm")
    with pytest.raises(ValueError, match="kind must be one of"):
        kernel_file("attention")


def test_every_gemm_kernel_an_engine_or_profile_names_is_a_label():
    known = set(kernel_file("gemm").labels)
    for engine in E.ENGINE_IDS:
        for spec in E.families(engine):  # the current file and every version family
            for fmt, kernels in spec.gemm.kernels.items():
                assert set(kernels) <= known, (engine, spec.version, fmt)
    named_any = False
    for path in (ROOT / "calibration").glob("*.json"):
        named = set(json.loads(path.read_text()).get("gemm_kernel", {}).values())
        named_any |= bool(named)
        assert named <= known, (path.name, named - known)
    assert named_any  # the Blackwell profiles carry gemm_kernel
    assert E.gemm_kernels("trtllm", "nvfp4") == ("trtllm_torch_flow",)


def test_an_unknown_gemm_label_fails_when_the_engine_file_loads():
    spec = E.get_engine("vllm")
    bad = spec.model_copy(update={"gemm": E.GemmFacts(kernels={"nvfp4": ["flashinfer_cutdsl"]})})
    with pytest.raises(SpecError) as err:
        E._check_kernel_labels(bad, "engines/vllm.yaml")
    msg = str(err.value)
    assert msg.startswith("engines/vllm.yaml gemm.kernels.nvfp4: unknown gemm kernel label(s) "
                          "['flashinfer_cutdsl']; valid: ['aiter_v0.1.7.post1', "
                          "'flashinfer_cutedsl', 'trtllm_torch_flow']")
    assert "\n" not in msg


def test_an_unknown_moe_label_names_its_format_and_backend():
    spec = E.get_engine("sglang")
    kernels = {**spec.moe.kernels, "fp8_block": {"deepep": ["deepgem"]}}
    bad = spec.model_copy(update={"moe": spec.moe.model_copy(update={"kernels": kernels})})
    with pytest.raises(SpecError, match=r"^engines/sglang.yaml moe.kernels.fp8_block.deepep: "
                                        r"unknown moe kernel label\(s\) \['deepgem'\]; valid: "):
        E._check_kernel_labels(bad, "engines/sglang.yaml")


def test_check_labels_accepts_known_ones():
    check_labels("gemm", {"nvfp4": ["trtllm_torch_flow", "flashinfer_cutedsl"]}, "x")
    check_labels("gemm", {}, "x")
