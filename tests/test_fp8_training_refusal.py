"""fp8 training on a device without fp8 tensor cores is refused by one rule (plan.py
``training_precision_problem``; Transformer Engine check_fp8_support: compute capability 8.9+)
through every door: predict, search, the Python API and plan-training's per-device skip.
fp8 *inference* there stays allowed: the engines run fp8 weights weight-only (W8A16 Marlin)."""

from __future__ import annotations

import pytest

from perfmodel.api import predict
from perfmodel.errors import SpecError
from perfmodel.plan import NO_FP8_TRAINING
from perfmodel.planning.training import precision_skip
from perfmodel.resolve import as_scenario
from perfmodel.search import search
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import profile_for


def _training(device: str, precision: str = "fp8") -> dict:
    return {"kind": "training", "model": "llama-3-8b",
            "system": {"device": device, "num_gpus": 8},
            "parallelism": {"tp": 1, "dp": 8, "zero_stage": 3},
            "training": {"seq_len": 8192, "global_batch": 64, "micro_batch": 1,
                         "precision": precision, "recompute": "none"}}


def test_predict_refuses_fp8_training_on_a100_naming_the_field_and_valid_choices():
    with pytest.raises(SpecError) as err:
        predict(_training("a100-sxm4-80gb"))
    msg = str(err.value)
    assert msg.startswith("training.precision: fp8 on a100-sxm4-80gb")
    assert NO_FP8_TRAINING in msg
    assert "bf16 or fp16 on a100-sxm4-80gb" in msg and "h100-sxm5-80gb" in msg
    assert "a100-sxm4-80gb," not in msg.split("fp8-capable device")[1]


def test_v100_is_offered_fp16_only():
    """V100 has fp16 tensor cores and no bf16 ones (its peak_tflops.bf16 is null)."""
    with pytest.raises(SpecError, match="use fp16 on v100-sxm2-32gb, or"):
        predict(_training("v100-sxm2-32gb"))


def test_search_refuses_it_too():
    sc = as_scenario(_training("a100-sxm4-80gb"))
    system = resolve_system(sc.system)
    with pytest.raises(SpecError, match=r"^training\.precision: fp8 on a100-sxm4-80gb"):
        search(sc, system, profile_for("a100-sxm4-80gb"), top=1)


def test_plan_training_skips_with_the_same_reason():
    reason = precision_skip("a100-sxm4-80gb", "fp8")
    assert reason is not None and NO_FP8_TRAINING in reason


def test_fp8_training_on_h100_and_bf16_on_a100_still_predict():
    assert predict(_training("h100-sxm5-80gb")).step_time_s > 0
    assert predict(_training("a100-sxm4-80gb", "bf16")).step_time_s > 0


def test_fp8_inference_on_a100_stays_weight_only_not_refused():
    """Inference is the engines' fact, not Transformer Engine's: vLLM / SGLang run fp8 weights
    as W8A16 Marlin below SM 8.9 (engines/vllm.yaml quantization.formats.fp8), and fp8
    activations asked of the generic engine are modelled the same way, with a warning."""
    for inf in ({"weight_dtype": "fp8"}, {"weight_dtype": "fp8", "activation_dtype": "fp8"}):
        p = predict({"kind": "inference", "model": "llama-3-8b",
                     "system": {"device": "a100-sxm4-80gb", "num_gpus": 1},
                     "inference": {"batch": 1, "prompt_len": 128, "output_len": 8, **inf}})
        assert p.tpot_s > 0
        if "activation_dtype" in inf:
            assert any("no fp8 tensor cores" in w and "W8A16" in w for w in p.warnings)
