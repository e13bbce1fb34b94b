"""Bad input: clear messages that name the field and the valid choices."""

import pytest

import perfmodel as pm
from perfmodel.errors import SpecError


def train(**over):
    data = {"kind": "training", "model": "llama-2-7b",
            "system": {"device": "a100-sxm4-80gb", "num_gpus": 8},
            "training": {"seq_len": 2048, "global_batch": 16}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("over,needle", [
    ({"system": {"device": "h100-80gb"}}, "unknown device 'h100-80gb'; did you mean"),
    ({"model": "llama-7b"}, "unknown model 'llama-7b'"),
    ({"parallelism": {"tp": 3}}, "parallelism.tp"),
    ({"parallelism": {"tp": 2, "pp": 2, "dp": 4}}, "must equal system.num_gpus (8)"),
    ({"parallelism": {"pp": 3, "dp": 1}, "system": {"num_gpus": 3}}, "num_layers (32)"),
    ({"training": {"global_batch": 12}}, "global_batch (12) must be a multiple"),
    ({"training": {"seq_len": -5}}, "training.seq_len"),
    ({"training": {"precision": "fp12"}}, "training.precision"),
    ({"training": {"recompute": "some"}}, "training.recompute"),
    ({"parallelism": {"ep": 2}}, "mixture-of-experts"),
    ({"parallelism": {"placement": "tp-dp"}}, "placement"),
    ({"kind": "inference"}, "needs an 'inference' section"),
    ({"system": {"num_gpus": 0}}, "system.num_gpus"),
    ({"trainng": {}}, "trainng: unknown field"),
])
def test_bad_scenarios(over, needle):
    with pytest.raises(SpecError) as err:
        pm.predict(train(**over))
    assert needle in str(err.value)


def test_multi_node_without_network():
    with pytest.raises(SpecError, match="inter_node"):
        pm.predict(train(system={"device": "t4", "num_gpus": 16}))


def test_unknown_network_suggests():
    with pytest.raises(SpecError, match="did you mean"):
        pm.predict(train(system={"num_gpus": 16, "inter_node": "ib-ndr"}))


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("kind: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        pm.predict(path)


def test_relative_model_path_resolves_against_scenario(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "id: tiny\nname: tiny\nnum_layers: 2\nhidden_size: 64\nnum_heads: 4\n"
        "ffn_hidden_size: 256\nvocab_size: 1000\n")
    sc = tmp_path / "s.yaml"
    sc.write_text("kind: inference\nmodel: m.yaml\nsystem: {device: l4}\n"
                  "inference: {prompt_len: 16}\n")
    assert pm.predict(sc).model == "tiny"
