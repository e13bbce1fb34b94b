"""Training step predictions: composition rules of Narayanan et al. 2021 and plausibility."""

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.plan import TrainPlan
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, get_model
from perfmodel.specs.scenario import SystemConfig
from perfmodel.training import training_step


def gpt3_scenario(**par):
    p = {"tp": 8, "pp": 8, "sequence_parallel": False, "overlap_grad_reduce": False}
    p.update(par)
    return pm.Scenario(
        kind="training", model="gpt-175b",
        system={"device": "a100-sxm4-80gb", "num_gpus": 1024},
        parallelism=p,
        training={"seq_len": 2048, "global_batch": 1536, "micro_batch": 1,
                  "recompute": "full", "flash_attention": False, "dropout": True})


def test_gpt3_175b_on_1024_a100_is_plausible():
    """Narayanan et al. 2021 Table 1 measured 153 TFLOP/s per GPU (eq. 3 convention, with
    recompute) for this plan; a first-principles prediction should land within a factor of
    ~1.5 either way and give a full breakdown."""
    pred = pm.predict(gpt3_scenario())
    hw_tflops = pred.hfu * 312
    assert 100 < hw_tflops < 230
    t = pred.breakdown["time"]
    assert sum(t.values()) == pytest.approx(pred.step_time_s)
    assert t["pipeline_bubble"] > 0 and t["tp_comm"] > 0 and t["dp_comm"] > 0
    assert pred.fits


def test_llama3_70b_on_h100_plausible():
    sc = pm.Scenario(
        kind="training", model="llama-3-70b",
        system={"device": "h100-sxm5-80gb", "num_gpus": 64},
        parallelism={"tp": 8, "pp": 4, "sequence_parallel": True, "zero_stage": 1},
        training={"seq_len": 8192, "global_batch": 128, "micro_batch": 1,
                  "recompute": "selective"})
    pred = pm.predict(sc)
    assert 0.25 < pred.mfu < 0.75
    assert pred.breakdown["communication"]["dp"]["total_s"] > 0


def plan(**kw):
    base = dict(tp=1, pp=1, dp=1, cp=1, ep=1, etp=1, vp=1, micro_batch=1, seq_len=2048,
                global_batch=64)
    base.update(kw)
    return TrainPlan(**base)


SYSTEM = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=64))
GPT = get_model("gpt-22b")


def test_bubble_fraction_matches_narayanan():
    """Equal stages: bubble / ideal = (p-1)/(v m) (Narayanan et al. 2021 Sec. 2.2)."""
    r1 = training_step(GPT, SYSTEM, plan(pp=4, dp=1, tp=16, global_batch=32), default_profile())
    stage = float(r1.stage_times["middle"])
    m = 32
    assert float(r1.time["pipeline_bubble"]) == pytest.approx(
        (4 - 1) * stage, rel=0.05)
    r2 = training_step(GPT, SYSTEM, plan(pp=4, vp=2, tp=16, global_batch=32,
                                         schedule="interleaved"), default_profile())
    assert float(r2.time["pipeline_bubble"]) < float(r1.time["pipeline_bubble"])
    assert m * stage < float(r1.step_time)


def test_dp_overlap_hides_gradient_reduction():
    sc = gpt3_scenario(tp=8, pp=1, dp=None)
    sc = sc.model_copy(update={"model": get_model("gpt-1.7b")})
    exposed = pm.predict(sc).breakdown["communication"]["dp"]["exposed_s"]
    sc2 = gpt3_scenario(tp=8, pp=1, overlap_grad_reduce=True)
    sc2 = sc2.model_copy(update={"model": get_model("gpt-1.7b")})
    hidden = pm.predict(sc2).breakdown["communication"]["dp"]["exposed_s"]
    assert hidden < exposed


def test_memory_follows_korthikanti_under_sp_and_recompute():
    """Korthikanti et al. 2022 Fig. 7 ordering: TP only > TP+SP > TP+SP+selective > full."""
    def mem(sp, rec):
        sc = pm.Scenario(kind="training", model="gpt-22b",
                         system={"device": "a100-sxm4-80gb", "num_gpus": 8},
                         parallelism={"tp": 8, "sequence_parallel": sp},
                         training={"seq_len": 2048, "global_batch": 4, "micro_batch": 4,
                                   "recompute": rec, "flash_attention": False,
                                   "dropout": True})
        return pm.predict(sc).breakdown["memory"]["activations"]

    none, sp, sel, full = mem(False, "none"), mem(True, "none"), mem(True, "selective"), \
        mem(True, "full")
    assert none > sp > sel > full
    # selective saves the 5as/h term: ratio sp/sel = (34 + 5as/h)/34 (eq. 4 vs eq. 6),
    # up to the small embedding/LM-head terms
    ratio = (34 + 5 * 64 * 2048 / 6144) / 34
    assert sp / sel == pytest.approx(ratio, rel=0.05)


def test_zero_stages_shrink_model_states():
    def mem(stage):
        sc = pm.Scenario(kind="training", model="llama-2-7b",
                         system={"device": "a100-sxm4-80gb", "num_gpus": 8},
                         parallelism={"zero_stage": stage},
                         training={"seq_len": 2048, "global_batch": 8})
        b = pm.predict(sc).breakdown["memory"]
        return b["weights"] + b["gradients"] + b["optimizer"]

    m0, m1, m2, m3 = (mem(s) for s in range(4))
    assert m0 > m1 > m2 > m3


def test_array_plans_equal_scalar_plans_exactly():
    """One code path: a grid of plans gives bit-identical results to one-by-one calls."""
    tps = np.array([1, 2, 4, 8, 8])
    pps = np.array([8, 4, 2, 1, 2])
    dps = 64 // (tps * pps)
    mbs = np.array([1, 2, 1, 2, 1])
    arr = training_step(GPT, SYSTEM, plan(tp=tps, pp=pps, dp=dps, micro_batch=mbs,
                                          global_batch=128), default_profile())
    for i in range(len(tps)):
        one = training_step(GPT, SYSTEM, plan(tp=int(tps[i]), pp=int(pps[i]), dp=int(dps[i]),
                                              micro_batch=int(mbs[i]), global_batch=128),
                            default_profile())
        assert float(one.step_time) == arr.step_time[i]
        assert float(one.memory_total) == arr.memory_total[i]


def test_rail_optimised_fabric_has_lower_network_latency():
    """Leaf-spine-leaf (3 switch hops) instead of one rail leaf: every network step of a
    cross-node collective pays two more hops at the network's port latency (HDR 0.6 us)."""
    from perfmodel.comm import collective_time
    from perfmodel.topology import group_spans

    rail = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=64))
    spine = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=64,
                                        rail_optimized=False))
    span = group_spans(8, "tp-cp-ep-dp-pp", tp=8, dp=8)["dp"]  # one GPU per node, 8 nodes
    prof = default_profile()
    small = 4096.0
    t_rail = collective_time("all_gather", small, span, rail, prof)
    t_spine = collective_time("all_gather", small, span, spine, prof)
    assert float(t_spine - t_rail) == pytest.approx(7 * 2 * 0.6e-6)  # ring: n-1 = 7 steps


H100_64 = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64))


def _fsdp_plan(**kw):
    base = dict(tp=8, pp=4, dp=2, cp=1, ep=1, etp=8, vp=1, micro_batch=1, seq_len=4096,
                global_batch=32)
    base.update(kw)
    return TrainPlan(**base)


def test_fsdp_without_resharding_keeps_zero1_memory():
    """FSDP under PP without resharding after forward (torchtitan's default) holds the stage's
    gathered weights and unsharded gradients: the model states of ZeRO-1."""
    m = get_model("llama-3-70b")
    states = ("weights", "gradients", "optimizer")

    def mem(**kw):
        r = training_step(m, H100_64, _fsdp_plan(**kw), default_profile())
        return [float(r.memory[k]) for k in states]

    assert mem(zero_stage=3, reshard_after_forward=False) == mem(zero_stage=1)
    assert mem(zero_stage=3, reshard_after_forward=True) < mem(zero_stage=1)


def test_fp8_training_times_attention_at_bf16():
    """fp8 training swaps the linear layers only (torchao Float8Linear; Transformer Engine's
    recipes with fp8_dpa False): the attention kernels of an fp8 step take exactly as long as
    in the bf16 step, while its GEMMs get faster."""
    m = get_model("llama-3-70b")

    def step(precision):
        return training_step(m, H100_64, _fsdp_plan(precision=precision, seq_len=8192),
                             default_profile(), keep_ops=True)

    bf16, fp8 = step("bf16"), step("fp8")
    for r in (bf16, fp8):
        assert all(op.dtype == "bf16" for op in r.op_times.ops if op.cls == "attention")
    assert float(fp8.time["attention"]) == pytest.approx(float(bf16.time["attention"]))
    assert float(fp8.time["gemm"]) < float(bf16.time["gemm"])


def test_recompute_modules_rerun_the_listed_submodules():
    """Megatron-Core selective recompute with recompute_modules [layernorm, moe_act] re-runs
    the two norms and the experts' activation in backward, nothing else (GPT-OSS presets of
    Megatron-Bridge); the modules need recompute: selective."""
    from perfmodel import ops as O
    from perfmodel.recompute import recomputed_ops
    from perfmodel.training import _layer_forward
    model = get_model("mixtral-8x7b")
    p = plan(ep=8, dp=8, global_batch=64, recompute="selective",
             recompute_modules=("layernorm", "moe_act"))
    fwd = _layer_forward(model, True, p, O.Precision.training("bf16"))
    again = recomputed_ops(p.recompute, fwd, model, True, True, p.recompute_modules)
    assert sorted(op.name for op in again) == ["attn.norm.recompute", "mlp.norm.recompute",
                                               "moe.expert.act.recompute"]
    assert recomputed_ops("selective", fwd, model, True, True, None) == []
    with pytest.raises(pm.PerfModelError, match=r"training\.recompute_modules"):
        pm.predict(pm.Scenario(
            kind="training", model="mixtral-8x7b",
            system={"device": "h100-sxm5-80gb", "num_gpus": 8},
            parallelism={"ep": 8, "dp": 8},
            training={"seq_len": 4096, "global_batch": 8, "recompute": "full",
                      "recompute_modules": ["layernorm"]}))


def test_recompute_modules_drop_their_saved_tensors():
    """layernorm: both norm outputs (2 x a s b h) are not kept; moe_act: the experts'
    activation output (a x top_k s b x f) is not kept (Mixtral: h 4096, f 14336, top-2)."""
    from perfmodel.memory import ActivationShape, layer_activation_bytes
    model = get_model("mixtral-8x7b")
    shape = ActivationShape(b=1, s=4096, s_kv=4096, tp=1, sequence_parallel=False,
                            act_bytes=2.0, dropout=False, flash_attention=True)
    base = layer_activation_bytes(model, shape, "selective", True, 2, 1)
    ln = layer_activation_bytes(model, shape, "selective", True, 2, 1, ("layernorm",))
    act = layer_activation_bytes(model, shape, "selective", True, 2, 1, ("moe_act",))
    assert base - ln == pytest.approx(2 * 2.0 * 4096 * 4096)
    assert base - act == pytest.approx(2.0 * 2 * 4096 * 14336)
    # modules apply with the selective policy only
    assert layer_activation_bytes(model, shape, "none", True, 2, 1, ("layernorm",)) == \
        pytest.approx(layer_activation_bytes(model, shape, "none", True, 2, 1))


def test_zero_stage_array_with_fsdp_framework_is_a_one_line_field_error():
    """A ZeRO-stage axis needs stage-free framework terms (frameworks_costs.zero_stage_free);
    the plan search evaluates the stages one at a time otherwise, and a direct call names the
    field."""
    from dataclasses import replace

    from perfmodel.errors import SpecError
    from perfmodel.resolve import resolve, training_plan
    sc = {"kind": "training", "model": "llama-3.1-8b",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
          "parallelism": {"dp": 8, "zero_stage": 3},
          "training": {"seq_len": 8192, "global_batch": 16, "micro_batch": 2,
                       "framework": "torchtitan"}}
    rs = resolve(sc)
    plan = replace(training_plan(rs.scenario, rs.system), zero_stage=np.array([1, 3]))
    with pytest.raises(SpecError, match=r"^parallelism\.zero_stage: .*torchtitan") as err:
        training_step(rs.scenario.model, rs.system, plan, rs.profile)
    assert "\n" not in str(err.value)
