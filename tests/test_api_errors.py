"""The Python API fails as the CLI does: one readable line, a PerfModelError (QA 2026-12-03)."""

from __future__ import annotations

import pytest

import perfmodel as pm

SYSTEM = {"device": "h100-sxm5-80gb", "num_gpus": 1}


def test_scenario_built_by_keyword_raises_perfmodel_error_with_a_hint():
    with pytest.raises(pm.PerfModelError) as info:
        pm.Scenario(kind="serving", model="llama-3-8b", system=SYSTEM,
                    serving={"arrival": {"process": "poisson", "rate": 20},
                             "prompt_len": 128, "output_len": 16})
    message = str(info.value)
    assert "serving.arrival.rate: unknown field; did you mean rate_per_s?" in message
    assert "pydantic" not in message and "\n" not in message


def test_a_valid_scenario_built_by_keyword_still_builds_and_nests():
    s = pm.Scenario(kind="inference", model="llama-3-8b", system=SYSTEM,
                    inference={"prompt_len": 128, "output_len": 16})
    assert s.inference.prompt_len == 128 and s.system.num_gpus == 1


@pytest.mark.parametrize("version", [0.10, 1, 0.5])
def test_an_engine_version_read_as_a_yaml_number_is_refused_not_converted(version):
    # YAML reads `version: 0.10` as 0.1, another release: no conversion can be right
    with pytest.raises(pm.PerfModelError, match=r"engine.version: .*quote the release"):
        pm.Scenario(kind="inference", model="llama-3-8b", system=SYSTEM,
                    engine={"name": "vllm", "version": version},
                    inference={"prompt_len": 128, "output_len": 16})
    s = pm.Scenario(kind="inference", model="llama-3-8b", system=SYSTEM,
                    engine={"name": "vllm", "version": "0.10"},
                    inference={"prompt_len": 128, "output_len": 16})
    assert s.engine.version == "0.10"
