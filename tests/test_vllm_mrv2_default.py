"""vLLM 0.22 - 0.24 run some models on Model Runner V2 unasked (vllm/config/vllm.py
DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES, PyPI sdists 0.22.0 / 0.23.0 / 0.24.0: Qwen3ForCausalLM
from 0.22.0, LlamaForCausalLM and MistralForCausalLM from 0.23.0, GraniteMoeForCausalLM (and
DeepseekV2 / Qwen2Moe, which perfmodel's families cannot tell apart) from 0.24.0): the
variant mrv2 range's ``default_for`` (engines/versions/vllm-0.22-mrv2.yaml), resolved once
(resolve.with_default_variant) for inference and serving alike.

The KV budget of V2 subtracts no CUDA-graph estimate (V2's profile_cudagraph_memory returns
0), V1's does: for llama-3-8b on an H100 at vLLM's defaults (max_num_seqs 1024,
max_num_batched_tokens 8192) 51 PIECEWISE + 51 FULL graphs, the first capture a 512-token
forward's working set (tests/test_engine_versions_vllm_new.py) and 24 MiB for each later one."""

from __future__ import annotations

import pytest

from perfmodel.api import engine_version_families, predict
from perfmodel.engines import VersionRange, default_variant
from perfmodel.resolve import resolve

MIB = 2**20
H100 = {"device": "h100-sxm5-80gb", "num_gpus": 1}

# vLLM 0.21.0 profile_cudagraph_memory by hand for llama-3-8b (hidden 4096, FFN 14336, 32 + 2 x 8
# heads of 128, bf16): the first capture at 512 tokens, then 24 MiB x (50 + 50) graphs
CUDA_GRAPHS_LLAMA3_8B = 512 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128) + 24 * MIB * 100


def _sc(model="llama-3-8b", **engine):
    return {"kind": "inference", "model": model, "system": H100,
            "inference": {"prompt_len": 128, "output_len": 16},
            "engine": {"name": "vllm", **engine}}


def _variant_lines(warnings):
    return [w for w in warnings if w.startswith("engine.variant not given")]


def test_llama_on_vllm_0_23_runs_model_runner_v2_unasked():
    auto = predict(_sc(version="0.23.0"))
    named = predict(_sc(version="0.23.0", variant="mrv2"))
    old = predict(_sc(version="0.23.0", variant="v1"))
    assert auto.engine["version"] == named.engine["version"] == "0.22-mrv2"
    assert auto.engine["kv_cache_bytes"] == named.engine["kv_cache_bytes"]
    # V1's budget is V2's less the CUDA-graph estimate: 2,456 MiB (2.4 GiB) by hand
    assert CUDA_GRAPHS_LLAMA3_8B == 2456 * MIB
    assert auto.engine["kv_cache_bytes"] - old.engine["kv_cache_bytes"] == pytest.approx(
        CUDA_GRAPHS_LLAMA3_8B)
    [line] = _variant_lines(auto.warnings)
    assert "vllm 0.23.0 runs llama models on variant mrv2" in line and "v1" in line
    assert not _variant_lines(named.warnings) and not _variant_lines(old.warnings)
    assert old.engine["version"] == "0.22"  # VLLM_USE_V2_MODEL_RUNNER=0: the V1 runner


def test_the_first_release_of_each_family():
    assert resolve(_sc(version="0.22.0")).scenario.engine.variant is None  # llama from 0.23.0
    assert resolve(_sc("qwen3-8b", version="0.22.0")).scenario.engine.variant == "mrv2"
    assert resolve(_sc("mistral-7b", version="0.22.1")).scenario.engine.variant is None
    assert resolve(_sc("mistral-7b", version="0.24.0")).scenario.engine.variant == "mrv2"
    assert resolve(_sc(version="0.21.0")).scenario.engine.variant is None  # before V2
    assert default_variant("vllm", "0.23.5", "granitemoe") is None
    assert default_variant("vllm", "0.24.0", "granitemoe") == "mrv2"


def test_no_version_is_the_newest_release():
    rs = resolve(_sc())
    assert rs.scenario.engine.variant == "mrv2"
    assert len(_variant_lines(rs.warnings)) == 1
    # and engine.version's own note names the family it runs
    assert any("version family 0.22-mrv2" in w for w in rs.warnings)


def test_families_vllm_does_not_list_keep_the_default_runner():
    for model in ("gpt-oss-20b", "deepseek-v3", "qwen3-30b-a3b", "qwen2.5-7b"):
        for version in (None, "0.24.0"):
            rs = resolve(_sc(model, **({"version": version} if version else {})))
            assert rs.scenario.engine.variant is None, (model, version)
            assert not _variant_lines(rs.warnings)
    # DeepSeek-V2 and V3 share the family 'deepseek': it is not stated
    assert default_variant("vllm", "0.24.0", "deepseek") is None


def test_a_draft_model_keeps_the_v1_runner():
    """A separate draft model is vLLM speculative method 'draft_model', which V2 does not take
    (_get_v2_model_runner_unsupported_features): use_v2_model_runner falls back to V1."""
    sc = _sc(version="0.23.0")
    sc["inference"]["speculative"] = {"draft_model": "llama-3-8b"}
    assert resolve(sc).scenario.engine.variant is None


def test_other_engines_and_generic_are_untouched():
    assert resolve({**_sc(), "engine": "generic"}).scenario.engine.variant is None
    assert resolve({**_sc(), "engine": "sglang"}).scenario.engine.variant is None


def test_serving_sees_the_same_variant():
    sc = {**_sc(version="0.23.0"), "kind": "serving",
          "inference": {"prompt_len": 512, "output_len": 64},
          "serving": {"arrival": {"rate_per_s": 1.0}, "num_requests": 5}}
    auto = predict(sc)
    named = predict({**sc, "engine": {"name": "vllm", "version": "0.23.0", "variant": "mrv2"}})
    assert auto.engine["version"] == "0.22-mrv2"
    assert auto.engine["kv_cache_tokens"] == named.engine["kv_cache_tokens"]
    assert len(_variant_lines(auto.warnings)) == 1


def test_default_for_is_validated():
    with pytest.raises(ValueError, match="outside the range"):
        VersionRange(since="0.22.0", until="0.25.0", variant="mrv2",
                     default_for={"llama": "0.25.0"})
    with pytest.raises(ValueError, match="needs a named variant"):
        VersionRange(since="0.22.0", until="0.25.0", default_for={"llama": "0.23.0"})


def test_engine_version_families_still_list_the_families():
    fams = engine_version_families("vllm")
    assert [f["label"] for f in fams if f["default"]] == ["0.22"]
    assert [f["label"] for f in engine_version_families("vllm", "mrv2") if f["default"]] == [
        "0.22-mrv2"]
    assert all(len(r) == 3 for f in fams for r in f["ranges"])
