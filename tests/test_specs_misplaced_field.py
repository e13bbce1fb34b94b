"""A known field of a section given at the wrong level says which section it belongs to."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.specs.common import validate

BASE = {"kind": "training", "model": "llama-3-8b",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
        "training": {"seq_len": 2048, "global_batch": 8}}


def _error(data: dict) -> str:
    with pytest.raises(SpecError) as err:
        validate(pm.Scenario, data)
    return str(err.value)


def test_top_level_framework_names_training():
    msg = _error({**BASE, "framework": "megatron-core"})
    assert "framework: unknown field; it belongs under training: (training.framework)" in msg


def test_field_of_a_sibling_section_and_of_the_top_level():
    msg = _error({**BASE, "training": {**BASE["training"], "tp": 2, "engine": "vllm"}})
    assert "training.tp: unknown field; it belongs under parallelism: (parallelism.tp)" in msg
    assert "training.engine: unknown field; it belongs at the top level" in msg


def test_a_typo_still_says_check_the_spelling():
    assert "bogus: unknown field (check the spelling)" in _error({**BASE, "bogus": 1})


def test_scenario_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("kind: training\nmodel: llama-3-8b\nframework: megatron-core\n"
                    "system: {device: h100-sxm5-80gb, num_gpus: 8}\n"
                    "training: {seq_len: 2048, global_batch: 8}\n")
    with pytest.raises(SpecError, match=r"belongs under training: \(training.framework\)"):
        pm.load_scenario(path)
