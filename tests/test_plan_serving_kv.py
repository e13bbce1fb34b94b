"""plan-serving checks the engine's KV-cache format once, before any candidate is built
(serving/cli.py _check_kv_format, engine_checks.check_kv_dtype): one line on stderr naming
--kv-dtype (the API's kv_dtype=, a scenario's inference.kv_dtype), exit 2, no candidate table.
Expected sets are the engines' own lists: vLLM --kv-cache-dtype auto / bfloat16 / fp8 variants
(no int8 / int4), SGLang auto / fp8 / nvfp4 from 0.5.16 (no int8), TensorRT-LLM's PyTorch backend auto / fp8 / nvfp4 (no int8), its TensorRT
engines QuantConfig.kv_cache_quant_algo FP8 / INT8 / NVFP4."""

from __future__ import annotations

import pytest

from perfmodel import api
from perfmodel.cli import main
from perfmodel.errors import SpecError

SERVE = ["plan-serving", "--model", "llama-3.1-8b", "--rate", "2", "--ttft-p90", "2",
         "--tpot-p90", "0.1", "--prompt-len", "512", "--output-len", "128",
         "--devices", "h100-sxm5-80gb", "--tp", "1,2,4", "--num-requests", "20"]


@pytest.mark.parametrize(("engine", "kv"), [("vllm", "int8"), ("vllm", "int4"),
                                            ("trtllm", "int8"), ("sglang", "int8")])
def test_refused_once_before_the_candidates(engine, kv, capsys):
    assert main([*SERVE, "--engine", engine, "--kv-dtype", kv]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no header, no candidate table
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"--kv-dtype: {kv} is not a KV-cache format" in lines[0]
    assert "valid kv_dtype:" in lines[0] and "Traceback" not in err


def test_vllm_message_names_its_option_and_the_valid_choices(capsys):
    assert main([*SERVE, "--engine", "vllm", "--kv-dtype", "int8"]) == 2
    err = capsys.readouterr().err
    assert "--kv-cache-dtype" in err and "fp8 (--kv-cache-dtype fp8)" in err
    assert "bf16 (--kv-cache-dtype auto)" in err


def test_api_names_the_keyword():
    with pytest.raises(SpecError, match=r"^kv_dtype=: int8 is not a KV-cache format vLLM"):
        api.plan_serving("llama-3.1-8b", rate=2, ttft_p90=2, prompt_len=512, output_len=128,
                         devices=["h100-sxm5-80gb"], tp=[1], engine="vllm", kv_dtype="int8")


def test_a_scenarios_kv_dtype_is_named_as_its_field(tmp_path, capsys):
    sc = tmp_path / "serve.yaml"
    sc.write_text(
        "kind: serving\nmodel: llama-3.1-8b\nengine: {name: vllm}\n"
        "system: {device: h100-sxm5-80gb, num_gpus: 1}\n"
        "inference: {prompt_len: 512, output_len: 128, kv_dtype: int4}\n"
        "serving:\n  arrival: {process: poisson, rate_per_s: 2}\n  num_requests: 20\n"
        "  slo: {ttft_p90_s: 2}\n")
    assert main(["plan-serving", str(sc), "--devices", "h100-sxm5-80gb", "--tp", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "inference.kv_dtype: int4 is not a KV-cache format vLLM" in err


def test_formats_the_engine_has_pass_the_check():
    # the check sits in plan_inputs: accepted formats (vLLM fp8, TensorRT engines int8, generic
    # anything) give PlanInputs without an error; the candidates are not planned here
    from perfmodel.serving.cli import _check_kv_format, cli_flag
    from perfmodel.specs.scenario import EngineConfig, InferenceConfig

    for eng, kv in [({"name": "vllm"}, "fp8"), ({"name": "generic"}, "int4"),
                    ({"name": "trtllm", "version": "1.0.0", "variant": "tensorrt"}, "int8")]:
        _check_kv_format(EngineConfig(**eng), InferenceConfig(prompt_len=1, kv_dtype=kv),
                         True, cli_flag)
