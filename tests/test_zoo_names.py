"""pm.get_model reads a config.json path as a scenario's model field does; an unknown id says
a path is accepted; an imported config without _name_or_path is named after its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.zoo.hf import name_from_path

HF = Path(__file__).parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"


def test_get_model_accepts_a_config_path():
    path = HF / "openai--gpt-oss-120b_config.json"
    for given in (path, str(path)):
        spec = pm.get_model(given)
        assert spec.num_layers == 36 and spec.checkpoint_formats["default"] == "mxfp4"
    assert pm.get_model("llama-3-8b").id == "llama-3-8b"


def test_unknown_model_says_a_path_is_accepted():
    with pytest.raises(SpecError, match=r"a path to a HuggingFace config\.json"):
        pm.get_model("glm-5.1")


@pytest.mark.parametrize(("file", "id_", "name", "family"), [
    ("openai--gpt-oss-120b_config.json", "gpt-oss-120b", "openai/gpt-oss-120b", "gpt-oss"),
    ("openai--gpt-oss-20b_config.json", "gpt-oss-20b", "openai/gpt-oss-20b", "gpt-oss"),
    ("deepseek-ai--DeepSeek-R1_config.json", "deepseek-r1", "deepseek-ai/DeepSeek-R1",
     "deepseek"),
    ("Qwen--Qwen3-30B-A3B_config.json", "qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", "qwen3-moe"),
    ("Qwen--Qwen3-235B-A22B_config.json", "qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B",
     "qwen3-moe"),
])
def test_imported_configs_are_named_after_their_file(file, id_, name, family):
    spec = pm.get_model(HF / file)
    assert (spec.id, spec.name, spec.family) == (id_, name, family)


def test_name_from_folders(tmp_path):
    assert name_from_path(Path("a/gpt-oss-120b/config.json")) == "gpt-oss-120b"
    cache = Path("hub/models--openai--gpt-oss-120b/snapshots/abc123/config.json")
    assert name_from_path(cache) == "openai/gpt-oss-120b"
    folder = tmp_path / "my-model"
    folder.mkdir()
    data = json.loads((HF / "openai--gpt-oss-20b_config.json").read_text())
    (folder / "config.json").write_text(json.dumps(data))
    assert pm.get_model(folder).id == "my-model"
    # a config's own _name_or_path wins over its location
    (folder / "config.json").write_text(json.dumps({**data, "_name_or_path": "org/other"}))
    assert pm.get_model(folder).id == "other"
