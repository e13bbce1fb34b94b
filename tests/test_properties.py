"""Property tests (hypothesis): invariants that must hold for any valid input."""

import dataclasses
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.plan import TrainPlan
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, get_model
from perfmodel.specs.scenario import SystemConfig
from perfmodel.training import training_step

MODELS = ["gpt-1.7b", "llama-2-7b", "llama-3-8b", "mixtral-8x7b", "qwen2.5-7b", "gpt-j-6b",
          "deepseek-v3", "falcon-7b", "bloom-176b", "mistral-7b"]
DEVICES = ["a100-sxm4-80gb", "h100-sxm5-80gb", "rtx-4090", "l40s", "mi300x", "v100-sxm2-32gb",
           "b200", "t4", "h200-sxm-141gb"]
POW2 = st.sampled_from([1, 2, 4, 8])
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def finite_positive(x):
    return x is not None and math.isfinite(x) and x > 0


@st.composite
def scenarios(draw):
    kind = draw(st.sampled_from(["training", "inference"]))
    tp, pp, dp = draw(POW2), draw(st.sampled_from([1, 2, 4])), draw(POW2)
    data = {
        "kind": kind, "model": draw(st.sampled_from(MODELS)),
        "system": {"device": draw(st.sampled_from(DEVICES)), "num_gpus": tp * pp * dp},
        "parallelism": {"tp": tp, "pp": pp, "sequence_parallel": draw(st.booleans()),
                        "zero_stage": draw(st.sampled_from([0, 1, 2, 3])),
                        "vp": draw(st.sampled_from([1, 1, 2])),
                        "ep": draw(st.sampled_from([1, 1, 2, 8]))},
    }
    if kind == "training":
        data["training"] = {
            "seq_len": draw(st.sampled_from([128, 1024, 2048, 4096])),
            "global_batch": dp * draw(st.sampled_from([1, 2, 8, 16])),
            "micro_batch": draw(st.sampled_from([1, 2])),
            "recompute": draw(st.sampled_from(["none", "selective", "full"])),
            "precision": draw(st.sampled_from(["bf16", "fp16", "fp8", "fp32"])),
            "flash_attention": draw(st.booleans()),
        }
    else:
        data["inference"] = {
            "batch": draw(st.sampled_from([1, 3, 16, 64])),
            "prompt_len": draw(st.integers(1, 8192)),
            "output_len": draw(st.integers(1, 1024)),
            "weight_dtype": draw(st.sampled_from(["bf16", "fp8", "int8", "int4"])),
            "kv_dtype": draw(st.sampled_from(["bf16", "fp8", "int8"])),
        }
    return data


@SETTINGS
@given(scenarios())
def test_random_scenarios_are_finite_or_clearly_rejected(data):
    try:
        pred = pm.predict(data)
    except SpecError as err:  # rejected input: one readable line
        assert str(err) and "\n" not in str(err)
        return
    assert finite_positive(pred.tokens_per_s)
    assert finite_positive(pred.memory_per_gpu_bytes)
    times = ([pred.step_time_s] if pred.kind == "training"
             else [pred.ttft_s, pred.tpot_s, pred.e2e_latency_s])
    assert all(finite_positive(t) for t in times)
    for value in pred.breakdown["memory"].values():
        assert math.isfinite(value) and value >= 0
    if pred.kind == "training":
        parts = pred.breakdown["time"]
        assert all(math.isfinite(v) and v >= -1e-9 * pred.step_time_s for v in parts.values())
        assert math.isclose(sum(parts.values()), pred.step_time_s, rel_tol=1e-9)
        assert 0 < pred.mfu < 1.5
    for op in pred.ops:
        assert math.isfinite(op.time_s) and op.time_s > 0


SYSTEM = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64))


def plan(**kw):
    base = dict(tp=2, pp=2, dp=16, cp=1, ep=1, etp=2, vp=1, micro_batch=1, seq_len=2048,
                global_batch=64)
    base.update(kw)
    return TrainPlan(**base)


@SETTINGS
@given(st.floats(1.01, 8.0), st.sampled_from(["memory", "intra", "inter"]),
       st.sampled_from(["llama-2-7b", "mixtral-8x7b", "gpt-1.7b"]))
def test_more_bandwidth_is_never_slower(factor, which, model_id):
    model = get_model(model_id)
    p = plan(ep=2 if model.moe else 1)
    base = training_step(model, SYSTEM, p, default_profile()).step_time
    if which == "memory":
        dev = SYSTEM.device.model_copy(
            update={"memory_bandwidth_gbps": SYSTEM.device.memory_bandwidth_gbps * factor})
        faster = dataclasses.replace(SYSTEM, device=dev)
    elif which == "intra":
        faster = dataclasses.replace(SYSTEM, intra=SYSTEM.intra.model_copy(
            update={"bandwidth_gbps": SYSTEM.intra.bandwidth_gbps * factor}))
    else:
        faster = dataclasses.replace(SYSTEM, inter=SYSTEM.inter.model_copy(
            update={"bandwidth_gbps": SYSTEM.inter.bandwidth_gbps * factor}))
    assert training_step(model, faster, p, default_profile()).step_time <= base * (1 + 1e-12)


@SETTINGS
@given(st.sampled_from([1, 2, 4]), st.sampled_from(["none", "selective", "full"]),
       st.booleans(), st.sampled_from(["llama-3-8b", "gpt-22b", "mixtral-8x7b"]))
def test_sharding_never_raises_memory_per_gpu(tp, recompute, sp, model_id):
    model = get_model(model_id)

    def mem(**kw):
        args = dict(tp=tp, pp=1, dp=64 // tp, etp=tp, recompute=recompute,
                    sequence_parallel=sp)
        args.update(kw)
        return float(training_step(model, SYSTEM, plan(**args), default_profile()).memory_total)

    assert mem(tp=2 * tp, dp=32 // tp, etp=2 * tp) <= mem()
    for stage in range(3):
        assert mem(zero_stage=stage + 1) <= mem(zero_stage=stage)
    assert mem(sequence_parallel=True) <= mem(sequence_parallel=False)


def test_recompute_trades_time_for_memory():
    model = get_model("llama-2-7b")
    results = {r: training_step(model, SYSTEM, plan(recompute=r, flash_attention=False),
                                default_profile()) for r in ("none", "selective", "full")}
    mems = [float(results[r].memory_total) for r in ("none", "selective", "full")]
    times = [float(results[r].step_time) for r in ("none", "selective", "full")]
    assert mems[0] > mems[1] > mems[2]
    assert times[0] < times[1] < times[2]


def test_grid_of_plans_is_finite():
    model = get_model("llama-2-7b")
    tp = np.array([1, 2, 4, 8] * 4)
    pp = np.repeat([1, 2, 4, 8], 4)
    r = training_step(model, SYSTEM, plan(tp=tp, pp=pp, dp=64 // (tp * pp), etp=tp,
                                          global_batch=512), default_profile())
    assert np.all(np.isfinite(r.step_time)) and np.all(r.step_time > 0)
    assert np.all(np.isfinite(r.memory_total)) and np.all(r.memory_total > 0)
