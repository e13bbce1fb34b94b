"""The engine's pipeline layer split as an engine fact (issue 9 item 5): engines/<id>.yaml
``pipeline.default_split`` decides how an engine spreads num_layers over pp stages when the
launch gives no partition, read through one mechanism for every engine (no name special case).
Expected splits are worked by hand from each engine's source (cited in the engine files)."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine, pipeline_facts
from perfmodel.errors import SpecError
from perfmodel.pipeline import default_partition, stage_partition


def test_80_layers_over_3_stages_by_each_engines_rule():
    # 80 = 3 x 26 + 2.
    # vLLM get_pp_indices: [26, 26, 26], then range(2, 2 + 2) -> partitions[-2] and [-3] += 1
    assert stage_partition(80, 3, engine="vllm") == (27, 27, 26)
    # SGLang (PR #13977): the last 80 % 3 = 2 stages get one more
    assert stage_partition(80, 3, engine="sglang") == (26, 27, 27)
    # TensorRT-LLM torch.tensor_split(arange(80), 3): sizes 27, 27, 26
    assert stage_partition(80, 3, engine="trtllm") == (27, 27, 26)


def test_published_examples_of_61_layers_on_8_stages():
    # vLLM's rule as SGLang PR #6666 quotes it ("After: [7, 7, 8, 8, 8, 8, 8, 7]")
    assert stage_partition(61, 8, engine="vllm") == (7, 7, 8, 8, 8, 8, 8, 7)
    # TensorRT-LLM PR #3827: "First 5 ranks get 8 layers each, last 3 ranks get 7 layers each"
    assert stage_partition(61, 8, engine="trtllm") == (8, 8, 8, 8, 8, 7, 7, 7)
    # SGLang after PR #13977: the extra layers on the last 5 ranks
    assert stage_partition(61, 8, engine="sglang") == (7, 7, 7, 8, 8, 8, 8, 8)
    # the whole remainder on the last stage (vLLM before 0.8, SGLang before PR #13282: 7 x 7, 12)
    assert default_partition("last_stage", 61, 8) == (7,) * 7 + (12,)


def test_vllm_pr46217_table_before_its_change():
    # open PR #46217 lists today's split at PP=4: 61 -> [15,15,16,15], 94 -> [23,24,24,23]
    assert stage_partition(61, 4, engine="vllm") == (15, 15, 16, 15)
    assert stage_partition(94, 4, engine="vllm") == (23, 24, 24, 23)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", None])
def test_a_dividing_pp_keeps_the_even_split(engine):
    assert stage_partition(80, 4, engine=engine) is None


def test_generic_needs_a_request_and_the_explicit_partition_wins():
    assert pipeline_facts(None).default_split is None
    assert stage_partition(80, 3) is None  # generic: plan check then asks pp to divide
    assert stage_partition(80, 3, uneven=True) == (27, 27, 26)  # uneven_pipeline: vLLM's
    # VLLM_PP_LAYER_PARTITION as parallelism.pipeline_layers overrides the default
    assert stage_partition(80, 3, layers=[30, 30, 20], engine="vllm") == (30, 30, 20)
    with pytest.raises(SpecError, match=r"parallelism\.pp \(90\) exceeds num_layers"):
        stage_partition(80, 90, engine="vllm")


def test_every_engine_file_states_its_rule_and_llamacpp_goes_through_it():
    rules = {e: get_engine(e).pipeline.default_split
             for e in ("vllm", "sglang", "trtllm", "llamacpp")}
    assert rules == {"vllm": "before_last", "sglang": "last_ranks", "trtllm": "first_ranks",
                     "llamacpp": "free_memory"}
    assert get_engine("vllm").pipeline.partition_env == "VLLM_PP_LAYER_PARTITION"
    assert get_engine("sglang").pipeline.partition_env == "SGLANG_PP_LAYER_PARTITION"
    # llama.cpp's free-memory split applies even where pp divides the layers (slot L of L + 1)
    assert stage_partition(80, 6, engine="llamacpp") == (14, 13, 14, 13, 14, 12)


def _pp3(engine: str | None) -> dict:
    sc = {"kind": "inference", "model": "llama-3.1-70b",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 3},
          "parallelism": {"tp": 1, "pp": 3},
          "inference": {"batch": 8, "prompt_len": 1024, "output_len": 256}}
    return sc | ({"engine": engine} if engine else {})


def test_vllm_pp3_on_llama_70b_is_accepted_and_generic_still_asks():
    p = pm.predict(_pp3("vllm"))
    assert p.tpot_s > 0 and p.fits
    with pytest.raises(SpecError, match=r"pp \(3\) must divide num_layers \(80\)"):
        pm.predict(_pp3(None))



def test_explicit_counts_only_for_an_engine_with_a_setting_for_them():
    """pipeline_layers stands for VLLM_PP_LAYER_PARTITION / SGLANG_PP_LAYER_PARTITION; an
    engine whose file names no such setting (partition_env null) refuses it, naming the field."""
    assert stage_partition(80, 3, layers=[30, 30, 20], engine="sglang") == (30, 30, 20)
    assert stage_partition(80, 3, layers=[30, 30, 20]) == (30, 30, 20)  # generic: a plan
    with pytest.raises(SpecError, match=r"parallelism\.pipeline_layers: trtllm has no setting"):
        stage_partition(80, 3, layers=[30, 30, 20], engine="trtllm")
    with pytest.raises(SpecError, match=r"pipeline_split"):
        stage_partition(80, 3, layers=[30, 30, 20], engine="llamacpp")
