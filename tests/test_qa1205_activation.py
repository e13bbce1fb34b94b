"""QA 1205c D11: an HF config's activation is read by its transformers name; an unknown one is
refused naming the key and the known activations, never silently counted as GELU."""

import json
import re
from pathlib import Path

import pytest

from perfmodel.errors import SpecError
from perfmodel.zoo import resolve_model

CONFIGS = "tests/data/hf_configs"


def _with(tmp_path, source: str, **changes):
    data = json.loads(Path(CONFIGS, source).read_text())
    data.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_an_unknown_hidden_act_is_refused_naming_the_key(tmp_path):
    path = _with(tmp_path, "llama-3-8b.json", hidden_act="totally_unknown_act")
    with pytest.raises(SpecError) as info:
        resolve_model(path)
    message = str(info.value)
    assert "HF config key 'hidden_act': activation 'totally_unknown_act'" in message
    assert "not modelled" in message
    assert re.search(r"known activations: .*\bsilu\b", message)
    assert "gelu*" in message and "relu*" in message


def test_an_unknown_activation_function_is_refused_too(tmp_path):
    path = _with(tmp_path, "gpt2.json", activation_function="mish")
    with pytest.raises(SpecError, match="HF config key 'activation_function': activation "
                                        "'mish'"):
        resolve_model(path)


@pytest.mark.parametrize(("source", "key", "name", "expected"), [
    ("llama-3-8b.json", "hidden_act", "swish", "silu"),            # torch nn.SiLU
    ("llama-3-8b.json", "hidden_act", "gelu_pytorch_tanh", "gelu"),  # Gemma
    ("llama-3-8b.json", "hidden_act", "relu2", "relu"),            # squared ReLU (Nemotron)
    ("gpt2.json", "activation_function", "quick_gelu", "gelu"),    # x sigmoid(1.702 x)
    ("gpt2.json", "activation_function", "gelu_new", "gelu"),      # GPT-2's own
    ("opt-125m.json", "activation_function", "relu", "relu"),
])
def test_known_names_map_to_their_family(tmp_path, source, key, name, expected):
    assert resolve_model(_with(tmp_path, source, **{key: name})).activation == expected


def test_a_missing_key_keeps_the_architectures_default(tmp_path):
    data = json.loads(Path(CONFIGS, "llama-3-8b.json").read_text())
    data.pop("hidden_act", None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    assert resolve_model(str(path)).activation == "silu"  # LlamaConfig's default
