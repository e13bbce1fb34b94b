"""A training framework whose code has no context parallelism (frameworks/<id>.yaml
cp.implementation: none, sourced) runs no cp > 1: predictions refuse it naming the field, the
plan search never offers it, and a scenario's cp_implementation still prices one."""
import pytest

import perfmodel as pm
from perfmodel.frameworks import FRAMEWORK_NAMES, framework_spec

NO_CP = sorted(f for f in FRAMEWORK_NAMES if framework_spec(f).cp.implementation == "none")


def _scenario(framework: dict, cp: int) -> dict:
    return {"kind": "training", "model": "llama-2-7b",
            "system": {"device": "a100-sxm4-80gb", "num_gpus": 16},
            "parallelism": {"tp": 2, "pp": 1, "cp": cp},
            "training": {"global_batch": 64, "micro_batch": 1, "seq_len": 4096,
                         "framework": framework}}


def test_the_frameworks_without_cp_are_the_ones_their_sources_say():
    # Megatron-DeepSpeed at 928a200c predates DeepSpeed-Ulysses (--ds-sequence-parallel-size);
    # Megatron-LM 2019 / 2021, Composer FSDP and fms-fsdp have no context-parallel code
    assert NO_CP == ["fms-fsdp", "fsdp", "megatron-deepspeed", "megatron-lm-2019",
                     "megatron-lm-2021"]


@pytest.mark.parametrize("name", NO_CP)
def test_cp_above_one_is_refused_naming_the_field_and_the_remedy(name):
    with pytest.raises(pm.SpecError) as info:
        pm.predict(_scenario({"name": name}, cp=2))
    text = str(info.value)
    assert "parallelism.cp" in text and f"{name} has no context parallelism" in text
    assert "cp: 1" in text and "cp_implementation" in text
    pm.predict(_scenario({"name": name}, cp=1))   # the same run without CP predicts


def test_a_scenario_may_still_price_a_cp_the_framework_lacks():
    ring = pm.predict(_scenario({"name": "megatron-deepspeed", "cp_implementation": "p2p_ring"},
                                cp=2))
    assert ring.breakdown["communication"]["cp"]["total_s"] > 0


def test_the_plan_search_offers_no_cp_for_such_a_framework():
    from perfmodel.api import resolve_profile
    from perfmodel.search import SearchSpace, search
    from perfmodel.specs.assemble import resolve_system

    sc = pm.Scenario(**_scenario({"name": "megatron-deepspeed"}, cp=1))
    space = SearchSpace()
    assert max(space.cp) > 1   # the space does try CP, for frameworks that have it
    result = search(sc, resolve_system(sc.system), resolve_profile(sc), space, top=200)
    assert result.plans and all(int(p["cp"]) == 1 for p in result.plans)
    core = pm.Scenario(**_scenario({"name": "megatron-core"}, cp=1))
    result = search(core, resolve_system(core.system), resolve_profile(core), space, top=200)
    assert any(int(p["cp"]) > 1 for p in result.plans)
