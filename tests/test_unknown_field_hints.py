"""An unknown field names the closest valid fields of its section and lists them (issue 13 QA):
one mechanism (specs.common.describe_validation_error) for every section of every schema."""

import pytest

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.specs.common import validate
from perfmodel.specs.scenario import EngineConfig


def scenario(kind: str, **over) -> dict:
    data = {"kind": kind, "model": "llama-3-8b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}}
    if kind == "training":
        data["training"] = {"seq_len": 2048, "global_batch": 8}
    else:
        data["inference"] = {"prompt_len": 128, "output_len": 16}
    if kind == "serving":
        data["serving"] = {"arrival": {"process": "poisson", "rate_per_s": 2},
                           "num_requests": 10}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def error(data: dict) -> str:
    with pytest.raises(SpecError) as err:
        pm.predict(data)
    return str(err.value)


@pytest.mark.parametrize("data,where,hint", [
    # QA's three: serving.arrival.rate, inference.weight_dtyp, engine.gpu_mem_util
    (scenario("serving", serving={"arrival": {"process": "poisson", "rate": 2},
                                  "num_requests": 10}),
     "serving.arrival.rate", "did you mean rate_per_s?"),
    (scenario("inference", inference={"weight_dtyp": "bf16"}),
     "inference.weight_dtyp", "did you mean weight_dtype"),
    (scenario("inference", engine={"name": "vllm", "gpu_mem_util": 0.9}),
     "engine.gpu_mem_util", "did you mean gpu_memory_utilization?"),
    (scenario("training", training={"framework": {"name": "torchtitan", "compil": True}}),
     "training.framework.compil", "did you mean compile?"),
    (scenario("inference", system={"num_gpu": 1}), "system.num_gpu", "did you mean num_gpus?"),
    (scenario("training", parallelism={"tpp": 1}), "parallelism.tpp", "did you mean tp"),
    (scenario("inference", inferenc={}), "inferenc", "did you mean inference?"),
])
def test_unknown_field_names_the_closest_and_the_valid_ones(data, where, hint):
    msg = error(data)
    assert f"{where}: unknown field; {hint}" in msg
    assert " valid: " in msg and "\n" not in msg


def test_the_valid_list_is_the_section_s_fields():
    msg = error(scenario("serving", serving={"arrival": {"process": "poisson", "rate": 2},
                                             "num_requests": 10}))
    assert msg.endswith("valid: process, rate_per_s, cv, trace, concurrency")


def test_a_loader_field_is_not_offered():
    # base_dir is filled in by the scenario loader (exclude=True), not written by a user
    msg = error(scenario("inference", bogus=1))
    assert "bogus: unknown field (check the spelling); valid: kind, model" in msg
    assert "base_dir" not in msg


def test_engine_overrides_directly():
    with pytest.raises(SpecError, match=r"max_num_seq: unknown field; did you mean max_num_seqs"):
        validate(EngineConfig, {"name": "vllm", "max_num_seq": 8})


def test_several_problems_stay_one_short_line():
    msg = error(scenario("inference", inference={"weight_dtyp": "bf16", "kv_dtyp": "bf16"}))
    assert "weight_dtyp: unknown field; did you mean weight_dtype" in msg
    assert "kv_dtyp: unknown field; did you mean kv_dtype" in msg
    assert " valid: " not in msg  # listed only for a single problem


def test_misplaced_field_still_says_where_it_belongs():
    msg = error(scenario("training", training={"seq_len": 2048, "global_batch": 8, "tp": 1}))
    assert "it belongs under parallelism" in msg


@pytest.mark.parametrize("data,needle", [
    (scenario("inference", engine="vlm"), "did you mean 'vllm'"),
    (scenario("training", training={"framework": "torchtitn"}), "did you mean 'torchtitan'?"),
    (scenario("inference", inference={"weight_dtype": "bf61"}), "did you mean 'bf16'"),
])
def test_a_value_outside_a_choice_suggests_the_closest(data, needle):
    msg = error(data)
    assert "must be one of:" in msg and needle in msg
