"""An unknown ``engine.variant`` is one line naming engine.variant, the engine and its variants
(review of c4e93f2: {name: trtllm, variant: tensorrtt} blamed engine.version '1.0.0', a version
the user never set). The variants are those the version files declare: trtllm's 'tensorrt'
(engines/versions/trtllm-tensorrt.yaml), vLLM's 'v0' and 'v1' (vllm-0.7-v0.yaml,
vllm-0.7-v1.yaml, ...)."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError


def _scenario(engine):
    return {"kind": "inference", "model": "llama-3.1-8b", "engine": engine,
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
            "inference": {"batch": 1, "prompt_len": 128, "output_len": 8}}


@pytest.mark.parametrize(("engine", "known"), [
    ({"name": "trtllm", "variant": "tensorrtt"}, "'tensorrt'"),
    ({"name": "vllm", "variant": "tensorrt"}, "'v0', 'v1'"),
    ({"name": "vllm", "version": "0.9.2", "variant": "v9"}, "'v0', 'v1'"),
])
def test_unknown_variant_names_the_field_and_the_choices(engine, known):
    with pytest.raises(SpecError) as err:
        pm.predict(_scenario(engine))
    msg = str(err.value)
    assert "\n" not in msg
    assert "engine.variant" in msg
    assert "engine.version" not in msg
    assert f"{engine['name']} has no variant {engine['variant']!r}" in msg
    assert known in msg
    assert "1.0.0" not in msg and "0.8.0" not in msg  # no version the user did not set


def test_engine_without_variants_blames_the_variant():
    with pytest.raises(SpecError, match=r"^engine\.variant: llamacpp has no variants") as err:
        get_engine("llamacpp", None, "x")
    assert "engine.version" not in str(err.value)


def test_known_variant_at_a_version_outside_it_still_names_the_version():
    """trtllm's TensorRT variant starts at 1.0.0; at 0.9.0 the version is what is wrong."""
    with pytest.raises(SpecError, match=r"^engine\.version: trtllm has no facts for version "
                                        r"'0\.9\.0' variant 'tensorrt'"):
        get_engine("trtllm", "0.9.0", "tensorrt")


def test_known_variants_still_resolve():
    assert get_engine("trtllm", None, "tensorrt").scheduler.async_scheduling is False
    assert get_engine("vllm", None, "v0") is get_engine("vllm", "0.8.0", "v0")
