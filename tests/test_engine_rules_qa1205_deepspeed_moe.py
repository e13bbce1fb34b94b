"""QA 1205c D12: DeepSpeed's ZeRO-3 refuses deepspeed.moe.layer.MoE modules. Its engine sets
has_moe_layers for every such module, whatever its ep_size ("if isinstance(module, MoE):
self.has_moe_layers = True", deepspeed/runtime/engine.py:1241-1242 at 38327e07, :1028-1029 at
80d0a32f), and _configure_zero_optimizer asserts ``not self.has_moe_layers, "MoE not supported
with Stage 3"`` (engine.py:1675 at 38327e07, :1409 at 80d0a32f; deepspeedai/DeepSpeed#2870).

- ``deepspeed`` (plain HF modules: a HF Mixtral's experts are not deepspeed MoE layers unless
  converted, and expert parallelism needs them): ZeRO-3 refuses ep > 1 only
  (capabilities.zero_stages.3.ep: false); Mixtral at ep 1 runs ZeRO-3.
- ``megatron-deepspeed`` builds every MoE layer as deepspeed MoE (megatron/model/transformer.py
  ``self.mlp = MoE(..., ep_size=args.moe_expert_parallel_size, ...)``, :1067-1075 at
  f4157bea): no MoE model runs its ZeRO-3, ep 1 included (zero_stages.3.moe: false); the
  refusal names zero_stage 0-2, not ep: 1. A dense model keeps running ZeRO-3.

Predict refuses these layouts and the plan search never offers them (same rules)."""

import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.errors import SpecError
from perfmodel.frameworks import ZeroStageSupport
from perfmodel.search import SearchSpace, search
from perfmodel.specs.assemble import resolve_system

ASSERTION = "MoE not supported with Stage 3"


def _scenario(framework, model="mixtral-8x7b", **par):
    return pm.Scenario(kind="training", model=model,
                       system={"device": "h100-sxm5-80gb", "num_gpus": 16},
                       parallelism=par,
                       training={"seq_len": 4096, "global_batch": 64, "micro_batch": 1,
                                 "recompute": "full", "framework": framework})


def _refusal(sc) -> str:
    with pytest.raises(pm.SpecError) as e:
        pm.predict(sc)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_deepspeed_refuses_ep_with_zero3_and_names_ep_1():
    msg = _refusal(_scenario("deepspeed", ep=8, zero_stage=3))
    assert msg.startswith("parallelism.ep: ")
    assert ASSERTION in msg and "or ep: 1" in msg


@pytest.mark.parametrize("ep", [1, 8])
def test_megatron_deepspeed_refuses_any_moe_model_with_zero3(ep):
    msg = _refusal(_scenario("megatron-deepspeed", ep=ep, zero_stage=3))
    assert msg.startswith("parallelism.zero_stage: ")
    assert "zero_stages.3.moe: false" in msg and ASSERTION in msg
    assert "valid zero_stage for Mixtral 8x7B: 0 (" in msg and ", 2 (" in msg
    assert ", 3 (" not in msg and "ep: 1" not in msg


@pytest.mark.parametrize("framework", ["deepspeed", "megatron-deepspeed"])
def test_moe_with_zero1_runs(framework):
    assert pm.predict(_scenario(framework, ep=8, zero_stage=1)).step_time_s > 0
    assert pm.predict(_scenario(framework, ep=1, zero_stage=1)).step_time_s > 0


def test_deepspeed_runs_hf_mixtral_zero3_without_ep():
    assert pm.predict(_scenario("deepspeed", ep=1, zero_stage=3)).step_time_s > 0


def test_megatron_deepspeed_runs_a_dense_model_with_zero3():
    assert pm.predict(_scenario("megatron-deepspeed", model="llama-3-8b",
                                zero_stage=3)).step_time_s > 0


def test_megatron_core_keeps_ep_with_its_zero3():
    """Megatron-FSDP shards expert parameters too (no such assertion): not refused."""
    assert pm.predict(_scenario("megatron-core", ep=8, zero_stage=3)).step_time_s > 0


def _search(framework):
    """ep 1 / 4 / 8 x zero_stage 1 / 3 at tp = pp = cp = 1 on 16 GPUs: six plans."""
    sc = _scenario(framework)
    space = SearchSpace(tp=(1,), pp=(1,), cp=(1,), vp=(1,), micro_batch=(1,), ep=(1, 4, 8),
                        recompute=("full",), sequence_parallel=(False,),
                        zero_stage=(1, 3))
    result = search(sc, resolve_system(sc.system), resolve_profile(sc), space, top=200,
                    headroom=0.05)
    assert result.evaluated == 6
    return result


def test_search_never_lists_ep_with_zero3_under_deepspeed():
    result = _search("deepspeed")
    assert result.valid == 4  # zero1 at ep 1 / 4 / 8, zero3 at ep 1
    assert not any(p["ep"] > 1 and p["zero_stage"] == 3 for p in result.plans)
    assert any(p["ep"] == 1 and p["zero_stage"] == 3 for p in result.plans)


def test_search_never_lists_zero3_for_a_moe_model_under_megatron_deepspeed():
    result = _search("megatron-deepspeed")
    assert result.valid == 3  # zero1 at ep 1 / 4 / 8 only
    assert all(p["zero_stage"] == 1 for p in result.plans)


def test_a_stage_without_moe_runs_no_ep_either():
    with pytest.raises((SpecError, ValueError), match="ep: false"):
        ZeroStageSupport(setting="x", pp=False, vp=False, moe=False, source="s")
