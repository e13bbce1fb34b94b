"""QA 1205c D12: DeepSpeed refuses expert parallelism under ZeRO-3. Its engine sets
has_moe_layers for deepspeed.moe.layer.MoE modules (the only way to run ep_size > 1) and
_configure_zero_optimizer asserts ``not self.has_moe_layers, "MoE not supported with Stage 3"``
(deepspeed/runtime/engine.py:1675 at 38327e07, engine.py:1409 at 80d0a32f; deepspeedai/DeepSpeed
#2870). frameworks/deepspeed.yaml and megatron-deepspeed.yaml say so (capabilities.zero_stages.3
ep: false); predict refuses the layout and plan-training never offers it. Mixtral-8x7B with
plain PyTorch experts (ep 1) keeps running ZeRO-3."""

import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.search import SearchSpace, search
from perfmodel.specs.assemble import resolve_system


def _scenario(framework, **par):
    return pm.Scenario(kind="training", model="mixtral-8x7b",
                       system={"device": "h100-sxm5-80gb", "num_gpus": 16},
                       parallelism=par,
                       training={"seq_len": 4096, "global_batch": 64, "micro_batch": 1,
                                 "recompute": "full", "framework": framework})


@pytest.mark.parametrize("framework", ["deepspeed", "megatron-deepspeed"])
def test_ep_with_zero3_is_refused_naming_the_assertion(framework):
    with pytest.raises(pm.SpecError) as e:
        pm.predict(_scenario(framework, ep=8, zero_stage=3))
    msg = str(e.value)
    assert msg.startswith("parallelism.ep: ") and "\n" not in msg
    assert "MoE not supported with Stage 3" in msg and "ep: 1" in msg


@pytest.mark.parametrize("framework", ["deepspeed", "megatron-deepspeed"])
def test_ep_with_zero1_and_zero3_without_ep_still_run(framework):
    assert pm.predict(_scenario(framework, ep=8, zero_stage=1)).step_time_s > 0
    assert pm.predict(_scenario(framework, ep=1, zero_stage=3)).step_time_s > 0


def test_megatron_core_keeps_ep_with_its_zero3():
    """Megatron-FSDP shards expert parameters too (no such assertion): not refused."""
    assert pm.predict(_scenario("megatron-core", ep=8, zero_stage=3)).step_time_s > 0


def test_search_never_lists_ep_with_zero3_under_deepspeed():
    sc = _scenario("deepspeed")
    space = SearchSpace(tp=(1,), pp=(1,), cp=(1,), vp=(1,), micro_batch=(1,), ep=(1, 4, 8),
                        recompute=("full",), sequence_parallel=(False,),
                        zero_stage=(1, 3))
    result = search(sc, resolve_system(sc.system), resolve_profile(sc), space, top=50,
                    headroom=0.05)
    assert result.plans
    assert not any(p["ep"] > 1 and p["zero_stage"] == 3 for p in result.plans)
    assert any(p["ep"] == 1 and p["zero_stage"] == 3 for p in result.plans) or any(
        p["ep"] > 1 and p["zero_stage"] == 1 for p in result.plans)
