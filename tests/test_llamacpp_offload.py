"""engine llamacpp refuses inference.offload: llama.cpp computes host-resident layers on the
CPU for decode batches below 32 tokens (ggml-cuda ggml_backend_cuda_device_offload_op,
min_batch_size 32) instead of streaming them over the host link, which perfmodel's offload
(FlexGen) models; the generic engine keeps the streaming estimate."""

from __future__ import annotations

import pytest

from perfmodel.api import as_scenario, predict
from perfmodel.errors import SpecError


def _scenario(engine: str, offload: dict | None):
    inf = {"batch": 1, "prompt_len": 512, "output_len": 16,
           "weight_dtype": {"default": "int4", "embeddings": "int4", "lm_head": "int4"},
           "quant_group_size": 32, "activation_dtype": "fp16", "kv_dtype": "fp16"}
    if offload is not None:
        inf["offload"] = offload
    return {"kind": "inference", "model": "llama-3-8b",
            "system": {"device": "rtx-4090", "num_gpus": 1},
            "parallelism": {"tp": 1, "pp": 1}, "engine": engine, "inference": inf}


@pytest.mark.parametrize("offload", [{"weights": 0.5}, {"kv_cache": 1.0}])
def test_llamacpp_refuses_offload_naming_field_and_the_cpu_path(offload):
    with pytest.raises(SpecError) as err:
        predict(as_scenario(_scenario("llamacpp", offload)))
    msg = str(err.value)
    assert "inference.offload" in msg and "llamacpp" in msg and "-ngl" in msg


def test_llamacpp_without_offload_and_generic_with_it_still_predict():
    assert predict(as_scenario(_scenario("llamacpp", None))).tpot_s > 0
    assert predict(as_scenario(_scenario("llamacpp", {"weights": 0.0}))).tpot_s > 0
    assert predict(as_scenario(_scenario("generic", {"weights": 0.5}))).tpot_s > 0
