"""plan_training takes the model first, as the CLI does (QA: ``pm.plan_training("llama-3-70b",
tokens=15e12)`` raised AttributeError 'str' object has no attribute 'model'): a preset id, a
path or a ModelSpec positionally gives the same answer as ``model=``; anything else, or the
model twice, is one TypeError saying how to call it."""

from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.planning.training import TrainingPlanInputs

ARGS = {"tokens": "100B", "devices": "h100-sxm5-80gb", "max_gpus": 8}


def _key(res):
    return [(r.device, r.gpus, r.days) for r in res.rows]


@pytest.fixture(scope="module")
def by_keyword():
    return pm.plan_training(model="llama-3-8b", **ARGS)


def test_model_positionally_as_id_path_or_spec(by_keyword):
    assert by_keyword.rows
    spec = pm.plan_training("llama-3-8b", **ARGS)
    assert _key(spec) == _key(by_keyword)
    from perfmodel.zoo import resolve_model

    assert _key(pm.plan_training(resolve_model("llama-3-8b"), **ARGS)) == _key(by_keyword)
    path = Path(__file__).resolve().parents[1] / "models" / "llama-3-8b.yaml"
    assert _key(pm.plan_training(path, **ARGS)) == _key(by_keyword)
    assert _key(pm.plan_training(str(path), **ARGS)) == _key(by_keyword)

def test_inputs_object_still_works(by_keyword):
    res = pm.plan_training(TrainingPlanInputs(model="llama-3-8b", **ARGS))
    assert _key(res) == _key(by_keyword)


@pytest.mark.parametrize("call, words", [
    (lambda: pm.plan_training(42, tokens="1T"), "the first argument is the model"),
    (lambda: pm.plan_training("llama-3-8b", model="llama-3-8b", tokens="1T"), "given twice"),
    (lambda: pm.plan_training(TrainingPlanInputs(model="llama-3-8b", tokens="1T"), days=3),
     "not both"),
])
def test_wrong_calls_say_how_to_call(call, words):
    with pytest.raises(TypeError, match=words):
        call()
