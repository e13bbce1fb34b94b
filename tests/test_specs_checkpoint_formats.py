"""A quantised checkpoint's own formats (config.json quantization_config, read into
ModelSpec.checkpoint_formats / checkpoint_kv_dtype) apply however the inference fields are
passed: a mapping, an InferenceConfig object, the serving planner's default section, or no
section at all; an explicit weight_dtype / kv_dtype wins."""

from __future__ import annotations

from pathlib import Path

import perfmodel as pm
from perfmodel.serving.capacity import PlanInputs, _scenario
from perfmodel.specs.scenario import LengthDistribution, SLOConfig

HF = Path(__file__).parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
GPT_OSS = str(HF / "openai--gpt-oss-120b_config.json")
QWEN_FP8_KV = str(HF / "Qwen--Qwen3-32B-FP8-Static-PerTensor_config.json")
SYSTEM = {"device": "h100-sxm5-80gb", "num_gpus": 1}
GIB = 2 ** 30


def _inference(model: str, inference) -> pm.Scenario:
    return pm.Scenario(kind="inference", model=model, system=SYSTEM, inference=inference)


def test_object_and_mapping_get_the_checkpoint_formats():
    as_dict = _inference(GPT_OSS, {"prompt_len": 128, "output_len": 8}).inference
    as_obj = _inference(GPT_OSS, pm.InferenceConfig(prompt_len=128, output_len=8)).inference
    # gpt-oss config.json: quantization_config {quant_method: mxfp4, modules_to_not_convert:
    # attention, router, embed_tokens, lm_head}
    assert as_obj.weight_dtype == as_dict.weight_dtype == "mxfp4"
    assert as_obj.weight_formats == as_dict.weight_formats
    assert as_obj.weight_formats["attention"] == "bf16"
    assert (as_obj.prompt_len, as_obj.output_len) == (128, 8)


def test_object_path_weights_fit_one_80gb_gpu():
    # OpenAI's gpt-oss model card: with MXFP4 experts gpt-oss-120b runs on a single 80 GB GPU
    # (in bf16 its ~117e9 parameters alone would be ~218 GiB)
    pred = pm.predict(_inference(GPT_OSS, pm.InferenceConfig(prompt_len=128, output_len=8)))
    assert pred.breakdown["memory"]["weights"] / GIB < 70


def test_explicit_dtypes_win_over_the_checkpoint():
    inf = _inference(GPT_OSS, pm.InferenceConfig(prompt_len=8, weight_dtype="bf16")).inference
    assert (inf.weight_dtype, inf.weight_formats) == ("bf16", {})
    inf = _inference(QWEN_FP8_KV, pm.InferenceConfig(prompt_len=8, kv_dtype="bf16")).inference
    assert inf.kv_dtype == "bf16" and inf.weight_dtype == "fp8"


def test_kv_format_from_an_object():
    # hf_quant_config.json beside it: kv_cache_quant_algo FP8
    inf = _inference(QWEN_FP8_KV, pm.InferenceConfig(prompt_len=8)).inference
    assert (inf.weight_dtype, inf.kv_dtype) == ("fp8", "fp8")


def test_serving_planner_scenarios_get_the_checkpoint_formats():
    inp = PlanInputs(model=pm.get_model(GPT_OSS), rate_per_s=1.0,
                     slo=SLOConfig(ttft_p90_s=2.0), prompt_len=LengthDistribution(value=64),
                     output_len=LengthDistribution(value=64))
    sc = _scenario(inp, "h100-sxm5-80gb", 1)
    assert sc.inference.weight_dtype == "mxfp4"


def test_serving_without_inference_section():
    sc = pm.Scenario(kind="serving", model=GPT_OSS, system=SYSTEM,
                     serving={"arrival": {"rate_per_s": 1}, "num_requests": 4,
                              "prompt_len": 64, "output_len": 8})
    assert sc.inference is None
    assert sc.inference_or_default().weight_dtype == "mxfp4"
    plain = pm.Scenario(kind="serving", model="llama-3-8b", system=SYSTEM,
                        serving={"arrival": {"rate_per_s": 1}, "prompt_len": 64,
                                 "output_len": 8})
    assert plain.inference_or_default().weight_dtype == "bf16"


def test_serving_prediction_without_inference_section_counts_mxfp4_weights():
    """A serving scenario that leaves out ``inference:`` is predicted with the checkpoint's
    formats (60.71 GiB of weights on one H100, as with the section), not as bf16 (217.61)."""
    sc = pm.Scenario(kind="serving", model=GPT_OSS, system=SYSTEM,
                     serving={"arrival": {"rate_per_s": 1}, "num_requests": 4,
                              "prompt_len": 64, "output_len": 8})
    pred = pm.predict(sc)
    weights = pred.breakdown["memory"]["weights"] / GIB
    assert 60 < weights < 62
