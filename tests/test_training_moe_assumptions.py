"""A MoE training prediction names the settings it assumed (QA 1205d D8): the dispatcher, the
EP all-to-all overlap, the gradient-reduce dtype and the recompute policy, each with where the
value came from, read from the framework's own facts file for every framework."""

from pathlib import Path

import pytest
import yaml

from perfmodel.api import predict
from perfmodel.report import render_prediction

ROOT = Path(__file__).resolve().parents[1]
MOE = str(ROOT / "tests/data/hf_configs/deepseek-v2-lite.json")


def _scenario(framework="nemo", model=MOE, parallelism=None, **training):
    return {
        "kind": "training", "model": model,
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
        "parallelism": {"tp": 1, "pp": 1, "ep": 8, "zero_stage": 1, **(parallelism or {})},
        "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1,
                     "precision": "bf16", "framework": framework, **training},
    }


def _facts(framework: str) -> dict:
    return yaml.safe_load((ROOT / "frameworks" / f"{framework}.yaml").read_text())


@pytest.mark.parametrize("framework", ["nemo", "megatron-core"])
def test_defaults_name_the_facts_file(framework):
    """Nothing set: the dispatcher is the file's moe.dispatcher (read here from the yaml), and
    each line says it is a default and where from."""
    p = predict(_scenario(framework))
    lines = p.assumptions
    dispatcher = _facts(framework)["moe"]["dispatcher"]
    assert lines[0].startswith(f"moe_dispatcher {dispatcher} (frameworks/{framework}.yaml "
                               "moe.dispatcher default")
    assert lines[1].startswith("moe_a2a_overlap off")
    assert "parallelism.moe_a2a_overlap default" in lines[1]
    assert lines[2].startswith("grad_reduce_dtype fp32 (training.grad_reduce_dtype default")
    assert lines[3].startswith("recompute selective [core_attn]")
    text = render_prediction(p)
    assert f"assumed: moe_dispatcher {dispatcher} (frameworks/{framework}.yaml" in text
    assert p.to_json_dict()["assumptions"] == lines


def test_set_values_say_so():
    p = predict(_scenario({"name": "nemo", "moe_dispatcher": "flex-hybridep"},
                          recompute="selective", recompute_modules=["mla_up_proj"],
                          grad_reduce_dtype="bf16"))
    assert p.assumptions == [
        "moe_dispatcher flex-hybridep (training.framework.moe_dispatcher as set)",
        p.assumptions[1],
        "grad_reduce_dtype bf16 (training.grad_reduce_dtype as set)",
        "recompute selective [mla_up_proj] (training.recompute as set)",
    ]
    assert p.assumptions[1].startswith("moe_a2a_overlap off")


def test_overlap_set_on():
    p = predict(_scenario("nemo", parallelism={"moe_a2a_overlap": True}))
    assert p.assumptions[1] == "moe_a2a_overlap on (parallelism.moe_a2a_overlap as set)"


def test_a_framework_without_moe_facts_says_so():
    """torchtitan's file states no MoE dispatcher: the line says the value is perfmodel's own
    default, not the file's (the one rule, from the facts)."""
    if "moe" in _facts("torchtitan"):
        pytest.skip("torchtitan.yaml now states a dispatcher")
    p = predict(_scenario("torchtitan", parallelism={"ep": 1, "zero_stage": 3}))
    assert p.assumptions[0] == ("moe_dispatcher alltoall (perfmodel's default: "
                                "frameworks/torchtitan.yaml states no MoE dispatcher)")


def test_dense_model_has_none():
    p = predict(_scenario("nemo", model="llama-3-8b", parallelism={"ep": 1}))
    assert p.assumptions is None
    assert "assumed:" not in render_prediction(p)
