"""llama.cpp build tags as engine versions (engines/llamacpp.yaml ranges, engines/versions/
llamacpp-b1786.yaml). PR #8075 ('CUDA: use MMQ instead of cuBLAS by default') merged as commit
a818f3028d, build tag b3216 (Homebrew's formula at that bump: tag 'b3216', that revision): builds
before it take the dequantise + cuBLAS path above 32 tokens (small_batch_mmq), b3216 on MMQ."""

import pytest

from perfmodel.engines import get_engine, llamacpp_small_batch_mmq, version_key
from perfmodel.errors import SpecError
from perfmodel.llamacpp_kernels import kernel_path
from perfmodel.specs.registry import get_device


def test_build_tags_sort_by_build_number():
    assert version_key("b1786") < version_key("b3215") < version_key("b3216") < version_key("b10000")


@pytest.mark.parametrize("build, family, small", [
    ("b1786", "b1786", True),   # PR #4812's llama-bench: 'build: 32d9f7d9 (1786)'
    ("b3215", "b1786", True), ("b3216", "b6000", False), ("b6000", "b6000", False),
])
def test_the_build_picks_the_mmq_rule(build, family, small):
    assert get_engine("llamacpp", build).version == family
    assert llamacpp_small_batch_mmq("llamacpp", build) is small
    assert llamacpp_small_batch_mmq("vllm", "0.10.2") is False


def test_the_rules_at_512_tokens_on_an_rtx_3090_ti():
    # cc 8.6: before PR #8075 dequantise + cuBLAS above 32 tokens, after it MMQ at every batch
    dev = get_device("rtx-3090-ti")
    legacy = llamacpp_small_batch_mmq("llamacpp", "b1786")
    assert kernel_path(dev, 512, legacy=legacy) == "dequantise"
    assert kernel_path(dev, 512, legacy=llamacpp_small_batch_mmq("llamacpp", "b3216")) == "mmq"


@pytest.mark.parametrize("version, words", [
    ("b10471", "newer than its newest version family b7407"),
    ("b1000", "known families"), ("0.5.0", "build tags like 'b1786'"),
])
def test_builds_outside_the_facts_are_refused_in_one_line(version, words):
    with pytest.raises(SpecError) as err:
        get_engine("llamacpp", version)
    assert str(err.value).startswith("engine.version") and words in str(err.value)
    assert "\n" not in str(err.value)


def test_a_release_is_not_a_build_for_vllm():
    with pytest.raises(SpecError, match="vllm versions are releases"):
        get_engine("vllm", "b1786")



def test_a_scenario_on_a_pre_b3216_build_runs_the_dequantise_path():
    """The scenario path (inference._pass_ops): Llama-2-7B Q4_0 pp512 on an RTX 3090 Ti at
    b1786 prices the dequantise + cuBLAS kernels llama.cpp ran then, at b3216 MMQ (no
    dequantise kernel in the prefill pass)."""
    import perfmodel as pm

    def prefill_ops(build):
        r = pm.predict({"kind": "inference", "model": "llama-2-7b",
                        "engine": {"name": "llamacpp", "version": build},
                        "system": {"device": "rtx-3090-ti", "num_gpus": 1},
                        "inference": {"batch": 1, "prompt_len": 512, "output_len": 1,
                                      "weight_dtype": "int4", "activation_dtype": "fp16"}})
        return {o.name for o in r.ops if o.phase == "prefill"}

    old, new = prefill_ops("b1786"), prefill_ops("b3216")
    assert "mlp.down.dequantize" in old and "mlp.down.quantize_q8_1" not in old
    assert "mlp.down.quantize_q8_1" in new and not any("dequantize" in n for n in new)


def test_no_version_is_the_newest_family_and_the_prediction_says_so():
    import perfmodel as pm

    r = pm.predict({"kind": "inference", "model": "llama-3.1-8b", "engine": "vllm",
                    "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
                    "inference": {"batch": 1, "prompt_len": 512, "output_len": 128}})
    note = [w for w in r.warnings if w.startswith("engine.version not given")]
    assert note and "version family 0.22-mrv2" in note[0]  # llama: Model Runner V2
