"""plan-training builds its training Scenario from validated sections without building the
Scenario validator (``planning.training.training_scenario``, issue 10 item 5): the same
scenario as the validating constructor, the same error for one it refuses, and the validators
it runs by hand are all the Scenario has."""

import pytest

from perfmodel.errors import SpecError
from perfmodel.planning.training import training_scenario
from perfmodel.specs.scenario import Scenario, SystemConfig, TrainingConfig
from perfmodel.zoo import resolve_model


def test_the_scenario_validators_are_the_ones_the_fast_path_runs():
    """A new validator on Scenario must be run by training_scenario too (or this fails)."""
    d = Scenario.__pydantic_decorators__
    assert set(d.model_validators) == {"_resolve_model", "_check_sections"}
    assert d.model_validators["_resolve_model"].info.mode == "before"
    assert d.model_validators["_check_sections"].info.mode == "after"
    assert not (d.field_validators or d.validators or d.root_validators)


def test_same_scenario_as_the_validating_constructor():
    model = resolve_model("llama-3-70b")
    system = SystemConfig(device="h100-sxm5-80gb", num_gpus=1024)
    training = TrainingConfig(seq_len=8192, global_batch=512, framework="torchtitan")
    fast = training_scenario(model, system, training)
    slow = Scenario(kind="training", model=model, system=system, training=training)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump() == slow.model_dump()


def test_a_refused_scenario_raises_the_constructors_error():
    model = resolve_model("llama-3-70b")  # 8,192 positions
    system = SystemConfig(device="h100-sxm5-80gb", num_gpus=8)
    training = TrainingConfig(seq_len=65536, global_batch=8)
    with pytest.raises(SpecError) as slow:
        Scenario(kind="training", model=model, system=system, training=training)
    with pytest.raises(SpecError) as fast:
        training_scenario(model, system, training)
    assert str(fast.value) == str(slow.value)
    assert "max_position_embeddings" in str(fast.value)
