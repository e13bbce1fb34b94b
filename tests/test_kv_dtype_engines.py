"""A named engine refuses a KV-cache format it does not have (engines/<id>.yaml
memory.kv_cache_dtype, perfmodel/engine_checks.check_kv_dtype), with one line naming
inference.kv_dtype, the engine and the valid choices. The expected sets are the engines' own
option lists (sources in the yaml): vLLM CacheDType auto / bfloat16 / fp8 variants; SGLang
0.5.14 --kv-cache-dtype auto / fp8_e5m2 / fp8_e4m3 / bf16 / bfloat16 / fp4_e2m1 (MXFP4), 0.5.16 on
adds nvfp4 and deprecates fp4_e2m1 (engines/versions/sglang-0.5.16.yaml);
TensorRT-LLM PyTorch backend KvCacheConfig.dtype auto / fp8 / nvfp4, its 0.5 - 0.6 TensorRT
engines --int8_kv_cache / --fp8_kv_cache; llama.cpp -ctk / -ctv f32 ... q8_0, q4_0, ..."""

from __future__ import annotations

import pytest

from perfmodel.api import predict
from perfmodel.errors import SpecError
from perfmodel.resolve import resolve

ACCEPTED = {  # engine (version) -> perfmodel kv_dtype it has, besides 16 / 32-bit
    ("vllm", None): {"fp8"},
    ("sglang", "0.5.14"): {"fp8", "mxfp4"},
    ("sglang", None): {"fp8", "nvfp4"},
    ("trtllm", None): {"fp8", "nvfp4"},
    ("trtllm", "0.6.1"): {"fp8", "int8"},
    ("vllm", "0.2.0"): set(),             # no KV dtype option before 0.3.0 (0.2.7 wheel)
    ("vllm", "0.2.4+pr2031"): set(),
    ("vllm", "0.3.0"): {"fp8"},           # --kv-cache-dtype auto / fp8_e5m2 (0.3.0 wheel, #2279)
    ("llamacpp", None): {"int8", "int4"},
}
NARROW = ("fp8", "int8", "int4", "nvfp4", "mxfp4")


def _scenario(engine: str, kv: str, version: str | None = None, kind: str = "inference"):
    eng = {"name": engine, **({"version": version} if version else {})}
    sc = {"kind": kind, "model": "llama-3.1-8b", "engine": eng,
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
          "inference": {"batch": 4, "prompt_len": 1024, "output_len": 64, "kv_dtype": kv}}
    if kind == "serving":
        sc["inference"] = {"prompt_len": 1024, "output_len": 64, "kv_dtype": kv}
        sc["serving"] = {"arrival": {"process": "closed", "concurrency": 4}, "num_requests": 8}
    return sc


@pytest.mark.parametrize(("engine", "version"), sorted(ACCEPTED, key=str))
def test_each_engine_takes_exactly_its_formats(engine, version):
    for kv in ("bf16", "fp16", *ACCEPTED[engine, version]):
        resolve(_scenario(engine, kv, version))  # no error
    for kv in sorted(set(NARROW) - ACCEPTED[engine, version]):
        with pytest.raises(SpecError, match=rf"^inference\.kv_dtype: {kv} is not a KV-cache "):
            resolve(_scenario(engine, kv, version))


def test_the_qa_case_vllm_int4_names_field_engine_and_choices():
    with pytest.raises(SpecError) as err:
        predict(_scenario("vllm", "int4"))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("inference.kv_dtype: int4")
    assert "vLLM" in msg and "--kv-cache-dtype" in msg
    assert "fp8 (--kv-cache-dtype fp8)" in msg and "bf16 (--kv-cache-dtype auto)" in msg


def test_serving_scenarios_are_refused_too():
    with pytest.raises(SpecError, match=r"^inference\.kv_dtype: int8 .*vLLM"):
        resolve(_scenario("vllm", "int8", kind="serving"))


def test_generic_takes_every_format_and_vllm_fp8_still_predicts():
    for kv in NARROW:
        resolve(_scenario("generic", kv))
    p = predict(_scenario("vllm", "fp8"))
    assert p.engine is not None and p.tpot_s > 0


def test_vllm_before_0_3_0_has_only_the_model_dtype():
    """vLLM 0.2.7's arg_utils.py / config.py have no kv_cache_dtype (the KV cache is --dtype);
    0.3.0 adds --kv-cache-dtype ['auto', 'fp8_e5m2'] (PR #2279): fp8 is fp8_e5m2 there."""
    with pytest.raises(SpecError) as err:
        resolve(_scenario("vllm", "fp8", "0.2.4"))
    msg = str(err.value)
    assert "\n" not in msg and "fp8 is not a KV-cache format vLLM 0.2.0" in msg
    assert "bf16 (--dtype bfloat16)" in msg and "fp16 (--dtype float16)" in msg
    from perfmodel.engines import get_engine
    facts = get_engine("vllm", "0.3.0").memory.kv_cache_dtype
    assert facts.values == ["auto", "fp8_e5m2"] and facts.formats["fp8"] == "fp8_e5m2"


@pytest.mark.parametrize("kv", ["int8", "fp8", "nvfp4", "bf16", "fp16"])
def test_trtllm_tensorrt_engines_take_int8_kv(kv):
    """TensorRT engines (variant tensorrt) take the checkpoint's QuantConfig.kv_cache_quant_algo:
    KV_CACHE_QUANT_ALGO_LIST = [FP8, INT8, NVFP4] (quantization/mode.py); the PyTorch backend
    (no variant) refuses int8 (KvCacheConfig.dtype auto / fp8 / nvfp4)."""
    sc = _scenario("trtllm", kv, "1.0.0")
    sc["engine"]["variant"] = "tensorrt"
    resolve(sc)  # no error
    if kv == "int8":
        with pytest.raises(SpecError, match=r"^inference\.kv_dtype: int8 .*kv_cache_config\.dtype"):
            resolve(_scenario("trtllm", "int8"))


def test_trtllm_tensorrt_refuses_int4_kv_naming_its_option():
    sc = _scenario("trtllm", "int4", "1.0.0")
    sc["engine"]["variant"] = "tensorrt"
    with pytest.raises(SpecError) as err:
        resolve(sc)
    msg = str(err.value)
    assert "QuantConfig.kv_cache_quant_algo" in msg and "int8 (QuantConfig.kv_cache_quant_algo INT8)" in msg
