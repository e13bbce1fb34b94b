"""resolve (Scenario -> core inputs) and explain (core results -> Prediction): the two halves
the API and the serving simulator share (issue 8)."""

import typing

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import api
from perfmodel.errors import SpecError
from perfmodel.explain import fit_warning
from perfmodel.memory import memory_fits
from perfmodel.report import render_prediction
from perfmodel.resolve import inference_inputs, inference_plan, resolve
from perfmodel.specs.scenario import Scenario


def _inference(**inf) -> pm.Scenario:
    return pm.Scenario(kind="inference", model="llama-2-7b",
                       system={"device": "a100-sxm4-80gb", "num_gpus": 4},
                       parallelism={"tp": 2}, inference={"batch": 3, "prompt_len": 100,
                                                         "output_len": 20, **inf})


def test_inference_plan_carries_the_request_and_its_options():
    sc = _inference(kv_dtype="fp8", prefill_chunk_tokens=64, kv_block_size=32,
                    offload={"weights": 0.5, "kv_cache": 0.25, "overlap": False})
    plan = inference_plan(sc.model, sc.parallelism, sc.inference, 4)
    assert (plan.tp, plan.pp, plan.replicas) == (2, 1, 2)  # 4 GPUs / (tp 2 x pp 1)
    assert (plan.batch, plan.prompt_len, plan.output_len) == (3, 100, 20)
    assert (plan.kv_dtype, plan.kv_block_size, plan.prefill_chunk) == ("fp8", 32, 64)
    assert (plan.offload_weights, plan.offload_kv, plan.offload_overlap) == (0.5, 0.25, False)
    assert plan.spec_tokens == 0


def test_a_serving_instance_plan_leaves_the_shape_to_the_simulator():
    sc = _inference(kv_dtype="fp8", prefill_chunk_tokens=64)
    plan = inference_plan(sc.model, sc.parallelism, sc.inference, 4, tp=4, replicas=1,
                          request=False)
    assert (plan.tp, plan.replicas, plan.batch, plan.prompt_len, plan.output_len) == \
        (4, 1, 1, 1, 1)
    assert plan.kv_dtype == "fp8" and plan.prefill_chunk is None


def test_inference_plan_is_checked_against_the_model():
    sc = _inference()
    with pytest.raises(SpecError, match="tp"):
        inference_plan(sc.model, sc.parallelism, sc.inference, 3, tp=3)  # 32 heads


def test_inference_inputs_take_the_offload_link_and_draft():
    sc = _inference(offload={"weights": 0.5})
    rs = resolve(sc)
    inp = inference_inputs(rs.scenario, rs.system, rs.profile)
    assert inp.draft is None and inp.offload_bandwidth > 0
    assert inference_inputs(_inference(), rs.system, rs.profile).offload_bandwidth is None


def test_memory_fits_is_one_rule_for_scalars_and_sweeps():
    device = pm.get_device("a100-sxm4-80gb")
    cap = device.usable_memory_bytes  # what the driver reports, not the label (test_usable_capacity)
    assert memory_fits(cap, device) and not memory_fits(cap + 1, device)
    np.testing.assert_array_equal(memory_fits(np.array([cap - 1, cap + 1]), device),
                                  [True, False])
    rs = resolve(_inference())
    assert fit_warning(1.0, rs.system) == []
    assert fit_warning(2 * device.memory_bytes, rs.system)[0].startswith(
        "does not fit: 160.00 GiB per GPU")


def test_predict_dispatches_every_scenario_kind():
    kinds = typing.get_args(Scenario.model_fields["kind"].annotation)
    assert sorted(api._PREDICTORS) == sorted(kinds)


def test_a_prediction_that_does_not_fit_says_so():
    sc = _inference(batch=512, prompt_len=2048, output_len=2048)  # llama-2-7b's 4096 context
    pred = pm.predict(sc)
    assert not pred.fits
    assert any(w.startswith("does not fit") for w in pred.warnings)


def test_serving_text_report_has_its_section():
    pred = pm.predict({
        "kind": "serving", "model": "llama-3-8b",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
        "serving": {"arrival": {"process": "poisson", "rate_per_s": 2.0},
                    "num_requests": 20, "prompt_len": {"kind": "fixed", "value": 256},
                    "output_len": {"kind": "fixed", "value": 16}, "seed": 0}})
    text = render_prediction(pred)
    assert "serving: continuous batching" in text and "goodput" in text


def test_a_utilisation_above_one_is_left_out_with_a_warning():
    """Llama-3.1-8B at 128K tokens on L40S: Megatron's model FLOPs count attention
    non-causally, more than the GPU can execute at this length; the prediction still stands,
    MFU and HFU are left out (issue 12: MFU > 1 cannot be printed) and a warning says why."""
    import perfmodel as pm
    from perfmodel.report import render_prediction

    pred = pm.predict({"kind": "training", "model": "llama-3.1-8b",
                       "system": {"device": "l40s", "num_gpus": 8},
                       "parallelism": {"tp": 1, "pp": 1, "cp": 8},
                       "training": {"seq_len": 131072, "global_batch": 1, "micro_batch": 1}})
    assert pred.mfu is None and pred.hfu is None and pred.step_time_s > 0
    assert any(w.startswith("mfu not reported") for w in pred.warnings)
    assert "MFU (Megatron FLOPs)" in render_prediction(pred)
