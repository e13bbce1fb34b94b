"""Model files given where a model is expected (QA, helper H9): a scenario file is named as
such, a preset-format model file without id / name is named after its file (as a HF
config.json without _name_or_path is), and a wrapper config whose text_config carries an
empty _name_or_path takes its name from the wrapper / file, not from model_type."""

from pathlib import Path

import pytest
import yaml

from perfmodel.cli import main
from perfmodel.errors import SpecError
from perfmodel.zoo import resolve_model

ROOT = Path(__file__).resolve().parent.parent
KIMI = ROOT / "tests/data/hf_configs/aiconfigurator-0.12.0/nvidia--Kimi-K2.5-NVFP4_config.json"

SMALL = {"num_layers": 4, "hidden_size": 512, "num_heads": 8, "ffn_hidden_size": 2048,
         "vocab_size": 32000, "max_position_embeddings": 2048}


def test_kimi_k25_nvfp4_named_after_its_file():
    # its text_config has "_name_or_path": "" and the wrapper none: the file name
    # nvidia--Kimi-K2.5-NVFP4_config.json is the repo id nvidia/Kimi-K2.5-NVFP4
    spec = resolve_model(str(KIMI))
    assert spec.id == "kimi-k2.5-nvfp4"
    assert spec.name == "nvidia/Kimi-K2.5-NVFP4"


def test_wrapper_name_fills_an_empty_inner_name():
    from perfmodel.zoo.hf import model_from_hf_config

    data = yaml.safe_load(KIMI.read_text())
    data["_name_or_path"] = "moonshotai/Kimi-K2.5"
    assert data["text_config"]["_name_or_path"] == ""
    spec = model_from_hf_config(data)
    assert (spec.id, spec.name) == ("kimi-k2.5", "moonshotai/Kimi-K2.5")


def test_model_yaml_without_id_is_named_after_its_file(tmp_path):
    path = tmp_path / "My Model-1B.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    spec = resolve_model(str(path))
    assert (spec.id, spec.name) == ("my-model-1b", "My Model-1B")
    assert spec.num_layers == 4
    # a given id / name is kept
    path.write_text(yaml.safe_dump({**SMALL, "id": "tiny", "name": "Tiny"}))
    assert (resolve_model(str(path)).id, resolve_model(str(path)).name) == ("tiny", "Tiny")


@pytest.mark.parametrize("example, command", [
    ("examples/llama3-70b-train-h100.yaml", "perfmodel search"),
    ("examples/serving-llama3-8b-h100-chunked.yaml", "perfmodel plan-serving"),
    ("examples/llama2-7b-decode-a100.yaml", "perfmodel predict"),
])
def test_scenario_given_as_model_is_named(example, command):
    with pytest.raises(SpecError) as err:
        resolve_model(str(ROOT / example))
    text = str(err.value)
    assert "a scenario file (kind:" in text and "not a model" in text
    assert command in text
    assert "unknown field" not in text


def test_plan_training_with_a_scenario_file(capsys):
    code = main(["plan-training", str(ROOT / "examples/llama3-70b-train-h100.yaml"),
                 "--tokens", "1T"])
    err = capsys.readouterr().err
    assert code != 0
    assert "a scenario file (kind: training)" in err and "perfmodel search" in err
    assert "belongs under" not in err
