"""calibration/moe_kernels.yaml: the kernel labels of the measured MoE tables, as data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfmodel.calibrate.moe_kernels import MoeKernels, kernel_file, kernel_labels
from perfmodel.engines import ENGINE_IDS, get_engine
from perfmodel.errors import SpecError
from perfmodel.specs.common import validate

ROOT = Path(__file__).resolve().parents[1]


def test_labels_read_from_the_file():
    labels = kernel_labels()
    assert labels["moe_torch_flow_cutlass"] == "trtllm_cutlass"
    assert labels["vllm_gptossmxfp4moe_triton_oaitritonmxfp4expertsmonolithic"] == "triton_ogs"
    assert labels["sglang_marlin_moe_situ_as_silu"] == "marlin"
    assert labels["aiter_v0.1.7.post1_fmoe_default_gfx942"] == "aiter_v0.1.7.post1"
    assert len(labels) == 29
    assert kernel_labels() is labels  # read once


def test_every_kernel_an_engine_or_profile_names_is_a_label():
    known = set(kernel_file("moe").labels)
    for engine in ENGINE_IDS:
        for fmt, kernels in get_engine(engine).moe.kernels.items():
            todo, named = [kernels], set()
            while todo:  # per all-to-all backend and / or EP case (ep1 / ep_gt1)
                ks = todo.pop()
                if isinstance(ks, dict):
                    todo += list(ks.values())
                else:
                    named |= set(ks)
            assert named <= known, (engine, fmt, named - known)
    for path in (ROOT / "calibration").glob("*.json"):
        named = set(json.loads(path.read_text()).get("moe_kernel", {}).values())
        assert named <= known, (path.name, named - known)


def _file(**labels):
    return {"sources": [{"id": "s", "title": "a source", "url": "https://example.org"}],
            "labels": labels}


def test_a_kernel_source_has_one_label_and_sources_are_cited():
    one = {"what": "kernel a", "sources": ["s"], "kernel_sources": ["k1"]}
    assert validate(MoeKernels, _file(a=one)).table() == {"k1": "a"}
    with pytest.raises(SpecError, match="already labelled"):
        validate(MoeKernels, _file(a=one, b={**one, "what": "kernel b"}))
    with pytest.raises(SpecError, match="unknown source id"):
        validate(MoeKernels, _file(a={**one, "sources": ["nope"]}))
