"""A scenario section's default (``specs.scenario.defaults``) is made with ``model_construct``
so that no validator is built for a section a scenario does not use: each default must be
the same object, field for field, as the validated ``section()``, and building a training
scenario must not build the serving / engine sections' validators."""

import subprocess
import sys

import pytest

from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.specs.scenario import (
    EngineConfig,
    Parallelism,
    Scenario,
    SchedulerConfig,
    ServingConfig,
    SLOConfig,
    TrainingConfig,
)


@pytest.mark.parametrize("section", [FrameworkConfig, Parallelism, SchedulerConfig, SLOConfig,
                                     EngineConfig])
def test_default_is_the_validated_empty_section(section):
    made, validated = section.model_construct(), section.model_validate({})
    assert made == validated
    assert made.__dict__ == validated.__dict__
    assert made.model_fields_set == validated.model_fields_set == set()
    assert made.__pydantic_extra__ == validated.__pydantic_extra__
    assert made.model_dump() == validated.model_dump()


def test_defaults_in_scenarios():
    sc = Scenario(kind="training", model="llama-3-8b",
                  system={"device": "h100-sxm5-80gb", "num_gpus": 8},
                  training={"seq_len": 4096, "global_batch": 64})
    assert sc.parallelism == Parallelism() and sc.engine == EngineConfig()
    assert sc.training.framework == FrameworkConfig()
    assert "parallelism" not in sc.model_fields_set and "engine" not in sc.model_fields_set
    assert TrainingConfig(seq_len=1, global_batch=1).framework.name == "megatron-core"
    serving = ServingConfig(arrival={"process": "poisson", "rate_per_s": 1.0})
    assert serving.scheduler == SchedulerConfig() and serving.slo == SLOConfig()
    assert serving.scheduler.max_batch == 256 and serving.slo.ttft_p90_s is None


def test_a_training_scenario_builds_no_serving_validator():
    code = ("from pydantic._internal._mock_val_ser import MockValSer\n"
            "from perfmodel.specs import scenario as s\n"
            "sc = s.Scenario(kind='training', model='llama-3-8b', system={'device': "
            "'h100-sxm5-80gb', 'num_gpus': 8}, training={'seq_len': 4096, 'global_batch': 64})\n"
            "print(sorted(c.__name__ for c in (s.EngineConfig, s.SchedulerConfig, s.SLOConfig)"
            " if not isinstance(c.__pydantic_validator__, MockValSer)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
