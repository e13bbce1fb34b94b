"""What each training framework can run (frameworks/<id>.yaml ``capabilities``): predict
refuses a ZeRO stage / pipeline / interleaving combination the framework's code refuses, in one
line naming the field; the plan search never ranks one; ZeRO-3 under pipeline parallelism is
modelled as the framework runs it, never silently remapped. The facts checked here are the
sources' (DeepSpeed pipe/engine.py's assert, Composer's SHARDING_MAP, torchtitan's
parallelize_llama.py, Megatron-FSDP's sharding strategies), not perfmodel's numbers."""

import itertools

import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.frameworks import framework_spec
from perfmodel.frameworks_config import FRAMEWORK_NAMES
from perfmodel.memory import memory_capacity_bytes
from perfmodel.search import SearchSpace, search
from perfmodel.specs.assemble import resolve_system

GIB = 2 ** 30


def _scenario(framework="megatron-core", model="llama-3-8b", num_gpus=8, seq_len=4096,
              global_batch=16, **par):
    return pm.Scenario(kind="training", model=model,
                       system={"device": "h100-sxm5-80gb", "num_gpus": num_gpus},
                       parallelism=par,
                       training={"seq_len": seq_len, "global_batch": global_batch,
                                 "framework": framework})


# (framework, parallelism, field named, a word of the message)
REFUSED = [
    ("deepspeed", {"pp": 2, "zero_stage": 2}, "parallelism.pp", "incompatible with pipeline"),
    ("deepspeed", {"pp": 2, "zero_stage": 3}, "parallelism.pp", "incompatible with pipeline"),
    ("deepspeed", {"pp": 2, "vp": 2, "zero_stage": 1}, "parallelism.vp", "TrainSchedule"),
    ("megatron-deepspeed", {"pp": 2, "zero_stage": 2}, "parallelism.pp", "ZeRO-2 and ZeRO-3"),
    ("fsdp", {"pp": 2, "zero_stage": 3}, "parallelism.pp", "no pipeline parallelism"),
    ("fsdp", {"zero_stage": 1}, "parallelism.zero_stage", "SHARD_GRAD_OP"),
    ("torchtitan", {"zero_stage": 1}, "parallelism.zero_stage", "fully_shard"),
    ("torchtitan", {"zero_stage": 2}, "parallelism.zero_stage", "fully_shard"),
    ("torchtitan", {"pp": 2, "zero_stage": 0}, "parallelism.dp", "DDP has not supported"),
]


@pytest.mark.parametrize(("framework", "par", "field", "word"), REFUSED)
def test_predict_refuses_what_the_framework_cannot_run(framework, par, field, word):
    with pytest.raises(pm.SpecError) as e:
        pm.predict(_scenario(framework, **par))
    msg = str(e.value)
    assert msg.startswith(f"{field}: ") and "\n" not in msg and word in msg
    assert framework in msg and "valid" in msg


def test_every_framework_states_its_stages_with_sources():
    for name in FRAMEWORK_NAMES:
        caps = framework_spec(name).capabilities
        assert caps.zero_stages
        for stage in caps.zero_stages.values():
            assert "github.com" in stage.source and stage.setting
            assert stage.pp or not stage.vp  # no interleaving without pipeline parallelism


def test_deepspeed_pipeline_runs_zero_0_and_1_only():
    """DeepSpeed PipelineEngine: zero_optimization_stage() < ZeroStageEnum.gradients."""
    caps = framework_spec("deepspeed").capabilities.zero_stages
    assert [z for z, s in sorted(caps.items()) if s.pp] == [0, 1]
    assert not any(s.vp for s in caps.values())


def test_megatron_core_offers_megatron_fsdp_zero2_with_pipeline_parallelism():
    """Megatron-FSDP optim_grads (ZeRO-2) runs with PP at Megatron-LM d98e8a64: the QA's
    scenario is a real Megatron-Core run and predicts (its gradients sharded: less memory)."""
    par = dict(tp=4, pp=2, cp=2, dp=2, sequence_parallel=True)
    z1, z2 = (pm.predict(_scenario("megatron-core", model="llama-3-70b", num_gpus=32,
                                   seq_len=8192, global_batch=512, zero_stage=z, **par))
              for z in (1, 2))
    assert z2.memory_per_gpu_bytes < z1.memory_per_gpu_bytes


def test_zero3_under_pipeline_parallelism_is_not_remapped_to_zero1_under_megatron():
    """Megatron-FSDP optim_grads_params re-gathers every micro-batch: ZeRO-3 with pp > 1 holds
    less than ZeRO-2, not ZeRO-1's model states (the old silent remap)."""
    mem = {z: pm.predict(_scenario("megatron-core", model="llama-3-70b", num_gpus=64,
                                   seq_len=8192, global_batch=64, tp=8, pp=4, zero_stage=z)
                         ).memory_per_gpu_bytes for z in (1, 2, 3)}
    assert mem[3] < mem[2] < mem[1]


def test_torchtitan_zero3_under_pp_keeps_zero1_model_states():
    """torch.distributed.pipelining keeps FSDP2 parameters gathered and gradients unsharded
    until the last micro-batch's backward: ZeRO-1's model states, declared, not silent."""
    from dataclasses import replace

    from perfmodel.plan import TrainPlan
    from perfmodel.specs.registry import default_profile
    from perfmodel.training import training_step

    sc = _scenario("torchtitan", model="llama-3-70b", num_gpus=64, seq_len=8192,
                   global_batch=64, tp=8, pp=4, zero_stage=3)
    plan = TrainPlan.from_scenario(sc)
    assert plan.resharded is False
    system = resolve_system(sc.system)
    m = sc.model
    states = ("weights", "gradients", "optimizer")
    three = training_step(m, system, plan, default_profile()).memory
    one = training_step(m, system, replace(plan, zero_stage=1), default_profile()).memory
    assert [float(three[k]) for k in states] == [float(one[k]) for k in states]


SPACE = SearchSpace(tp=(1, 2), pp=(1, 2), cp=(1,), vp=(1, 2), micro_batch=(1,), ep=(1,),
                    recompute=("full",), sequence_parallel=(False,), zero_stage=(0, 1, 2, 3))
HEADROOM = 0.05


def _one_by_one(sc):
    """Every plan of SPACE predicted singly (the framework's default reshard policy)."""
    device = resolve_system(sc.system).device
    out = []
    for tp, pp, vp, zero in itertools.product(SPACE.tp, SPACE.pp, SPACE.vp, SPACE.zero_stage):
        if sc.system.num_gpus % (tp * pp) or (vp > 1 and pp == 1):
            continue
        try:
            p = pm.predict(sc.model_copy(update={
                "parallelism": pm.Parallelism(tp=tp, pp=pp, vp=vp, zero_stage=zero,
                                              uneven_pipeline=sc.model.num_layers % (pp * vp)
                                              != 0),
                "training": sc.training.model_copy(update={"recompute": "full"})}))
        except pm.SpecError:
            continue
        if p.memory_per_gpu_bytes <= (1 - HEADROOM) * memory_capacity_bytes(device):
            out.append((p.step_time_s, (tp, pp, vp, zero)))
    return out


@pytest.mark.parametrize("framework", ["deepspeed", "torchtitan", "fsdp"])
def test_search_filters_by_capabilities_and_matches_one_by_one(framework):
    """The search's plans are the framework's: as many fit as predict accepts one by one, the
    best is the exhaustive best (torchtitan's ZeRO-3 pp > 1 cells included), and no listed
    plan breaks a capability."""
    sc = _scenario(framework)
    system = resolve_system(sc.system)
    result = search(sc, system, resolve_profile(sc), SPACE, top=50, headroom=HEADROOM)
    singles = _one_by_one(sc)
    assert singles and result.plans and result.warnings == []
    assert result.fitting == len(singles)
    best = min(t for t, _ in singles)
    assert result.plans[0]["step_time_s"] == pytest.approx(best, rel=1e-9)
    caps = framework_spec(framework).capabilities.zero_stages
    for p in result.plans:
        stage = caps[p["zero_stage"]]
        assert (p["pp"] == 1 or stage.pp) and (p["vp"] == 1 or stage.vp)
    if framework == "torchtitan":
        assert any(p["pp"] > 1 and p["zero_stage"] == 3 for p in result.plans)


@pytest.mark.parametrize(("framework", "value"), [("torchtitan", True), ("megatron-core", False)])
def test_an_explicit_reshard_the_framework_lacks_under_pp_is_refused(framework, value):
    """torchtitan's FSDP2 under pipelining cannot reshard; Megatron-FSDP has no switch to keep
    ZeRO-3 parameters gathered: the override is refused, not silently honoured."""
    with pytest.raises(pm.SpecError) as e:
        pm.predict(_scenario(framework, pp=2, zero_stage=3, reshard_after_forward=value))
    msg = str(e.value)
    assert msg.startswith("parallelism.reshard_after_forward: ") and "leave it unset" in msg
    # unset, or the framework's own behaviour, predicts
    pm.predict(_scenario(framework, pp=2, zero_stage=3))
    pm.predict(_scenario(framework, pp=2, zero_stage=3, reshard_after_forward=not value))


def test_torchtitan_ddp_is_one_dimensional_and_absent_at_dp_one():
    """torchtitan 9dec370 parallelize_llama.py: DDP only when dp_replicate > 1, and then it
    raises "DDP has not supported > 1D parallelism" beside any other mesh dimension (review
    2026-12-03 item 3)."""
    base = dict(kind="training", model="llama-3.1-8b",
                training={"seq_len": 2048, "global_batch": 32, "micro_batch": 1,
                          "framework": {"name": "torchtitan"}})

    def run(par: dict, n: int):
        return pm.predict(pm.Scenario(system={"device": "h100-sxm5-80gb", "num_gpus": n},
                                      parallelism=par, **base))

    assert run({"pp": 8, "dp": 1, "zero_stage": 0}, 8).step_time_s > 0  # no DDP at dp 1
    assert run({"dp": 8, "zero_stage": 0}, 8).step_time_s > 0  # 1-D DDP
    for par, n in (({"tp": 8, "dp": 2, "zero_stage": 0}, 16),
                   ({"pp": 2, "dp": 4, "zero_stage": 0}, 8)):
        with pytest.raises(pm.PerfModelError, match=r"parallelism\.dp: .*one parallel "
                                                    r"dimension.*valid zero_stage: 3"):
            run(par, n)
