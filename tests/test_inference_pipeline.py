"""Uneven pipeline splits for inference (issue 9 item 5): the partitions engines make, the
scenario fields and their errors, and what an uneven split does to time and memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.parameters import param_counts
from perfmodel.pipeline import (
    llamacpp_partition,
    pipelined_step_time,
    stage_partition,
    vllm_partition,
)
from perfmodel.stages import stage_params

BASE = {"kind": "inference", "model": "llama-3-70b",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 6},
        "inference": {"batch": 6, "prompt_len": 512, "output_len": 64}}


def predict(parallelism: dict, gpus: int = 6, batch: int = 6) -> pm.Prediction:
    return pm.predict({**BASE, "system": {**BASE["system"], "num_gpus": gpus},
                       "inference": {**BASE["inference"], "batch": batch},
                       "parallelism": parallelism})


# ---- the partitions -------------------------------------------------------------------------

def test_vllm_default_partition_by_hand():
    # get_pp_indices: 80 // 6 = 13 each, remainder 2 to partitions[-2] and [-3]
    assert vllm_partition(80, 6) == (13, 13, 13, 14, 14, 13)
    assert vllm_partition(32, 5) == (6, 6, 7, 7, 6)
    assert vllm_partition(80, 8) == (10,) * 8


def test_llamacpp_split_by_hand():
    # equal proportions: layer il on device upper_bound(k/6, il/81): boundaries at 13.5 k
    assert llamacpp_partition(80, [1] * 6) == (14, 13, 14, 13, 14, 12)
    # 3:3:2:2 -> split points 0.3, 0.6, 0.8, 1.0 -> il < 24.3, 48.6, 64.8
    assert llamacpp_partition(80, [3, 3, 2, 2]) == (25, 24, 16, 15)
    assert llamacpp_partition(80, [24, 24]) == (41, 39)  # the output layer is slot 80 of 81


@settings(max_examples=60, deadline=None)
@given(layers=st.integers(1, 200), pp=st.integers(1, 16),
       weights=st.lists(st.floats(0.1, 10.0), min_size=1, max_size=16))
def test_partitions_cover_every_layer(layers, pp, weights):
    if pp <= layers:
        parts = vllm_partition(layers, pp)
        assert sum(parts) == layers and len(parts) == pp
        assert max(parts) - min(parts) <= 1
    split = llamacpp_partition(layers, weights)
    assert sum(split) == layers and len(split) == len(weights)


def test_stage_partition_even_is_none_and_errors_name_the_field():
    assert stage_partition(80, 4) is None
    assert stage_partition(80, 4, uneven=True) is None  # divides: the even split
    assert stage_partition(80, 6, uneven=True) == (13, 13, 13, 14, 14, 13)
    with pytest.raises(SpecError, match=r"parallelism\.pipeline_layers sums to 81"):
        stage_partition(80, 2, layers=[41, 40])
    with pytest.raises(SpecError, match=r"parallelism\.pipeline_layers has 3 stages but pp is 2"):
        stage_partition(80, 2, layers=[40, 20, 20])
    with pytest.raises(SpecError, match=r"parallelism\.pipeline_split has 1 proportions"):
        stage_partition(80, 2, split=[1.0])
    with pytest.raises(SpecError, match="leaves a stage without layers"):
        stage_partition(4, 2, split=[100.0, 1.0])
    with pytest.raises(SpecError, match="not both"):
        stage_partition(80, 2, layers=[40, 40], split=[1, 1])


# ---- scenarios ------------------------------------------------------------------------------

@pytest.mark.parametrize("par", [
    {"pp": 6, "uneven_pipeline": True},
    {"pp": 6, "pipeline_layers": [14, 13, 14, 13, 14, 12]},
    {"pp": 6, "pipeline_split": [1, 1, 1, 1, 1, 1]},
])
def test_80_layers_on_6_stages_accepted(par):
    p = predict(par)
    assert p.tpot_s > 0 and p.ttft_s > 0 and p.fits


def test_6_stages_without_a_split_say_how():
    with pytest.raises(SpecError, match=r"parallelism\.pp.*pipeline_layers"):
        predict({"pp": 6})


@pytest.mark.parametrize(("par", "field"), [
    ({"pp": 6, "pipeline_layers": [14, 13, 14, 13, 14, 13]}, "parallelism.pipeline_layers"),
    ({"pp": 6, "pipeline_layers": [40, 40]}, "parallelism.pipeline_layers"),
    ({"pp": 6, "pipeline_layers": [20, 20, 20, 20, 0, 0]}, "parallelism.pipeline_layers"),
    ({"pp": 6, "pipeline_split": [1, 1]}, "parallelism.pipeline_split"),
])
def test_bad_partitions_are_one_line_naming_the_field(par, field):
    with pytest.raises(SpecError) as err:
        predict(par)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_serving_scenarios_take_the_split():
    # serving reads the same split (tests/test_serving_multinode.py runs it)
    sc = pm.as_scenario({**BASE, "kind": "serving", "inference": {"prompt_len": 512},
                         "parallelism": {"pp": 2, "pipeline_layers": [40, 40]},
                         "serving": {"arrival": {"process": "poisson", "rate_per_s": 1}}})
    assert sc.parallelism.pipeline_layers == [40, 40]


def test_an_explicit_even_split_changes_nothing():
    even, listed = predict({"pp": 5}, gpus=5, batch=5), predict(
        {"pp": 5, "pipeline_layers": [16] * 5}, gpus=5, batch=5)
    assert listed.tpot_s == even.tpot_s and listed.ttft_s == even.ttft_s
    assert listed.memory_per_gpu_bytes == even.memory_per_gpu_bytes


def test_slowest_stage_bounds_decode_and_memory_is_the_largest_stage():
    even = predict({"pp": 5}, gpus=5, batch=5)
    skew = predict({"pp": 5, "pipeline_layers": [20, 15, 15, 15, 15]}, gpus=5, batch=5)
    # five micro-batches keep every stage busy: the 20-layer stage sets the pace (the LM head
    # and embedding stay where they are, so a little under 20/16)
    ratio = skew.tpot_s / even.tpot_s
    assert 1.15 < ratio < 20 / 16 + 1e-9
    # one pass of a prompt crosses every layer once either way
    assert skew.ttft_s == pytest.approx(even.ttft_s, rel=1e-9)
    # weights and KV cache of the 20-layer stage
    w_even, w_skew = even.breakdown["memory"]["weights"], skew.breakdown["memory"]["weights"]
    pc = param_counts(pm.get_model("llama-3-70b"))
    expect = stage_params(pc, 1, 5, layers=20.0).max / stage_params(pc, 1, 5).max
    assert w_skew / w_even == pytest.approx(expect, rel=1e-9)
    kv_even, kv_skew = even.kv_cache_bytes_per_sequence, skew.kv_cache_bytes_per_sequence
    assert kv_skew / kv_even == pytest.approx(20 / 16, rel=1e-9)


def test_one_sequence_sees_the_sum_of_the_stages():
    """Batch 1: no micro-batches overlap, so a token takes one pass through all stages,
    however the layers are split."""
    even = predict({"pp": 5}, gpus=5, batch=1)
    skew = predict({"pp": 5, "pipeline_layers": [20, 15, 15, 15, 15]}, gpus=5, batch=1)
    assert skew.tpot_s == pytest.approx(even.tpot_s, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(t=st.floats(1e-4, 1.0), hops=st.floats(0, 1e-3), pp=st.integers(1, 8),
       micro=st.integers(1, 8), excess=st.floats(0, 1e-1))
def test_pipelined_step_is_at_least_a_pass_and_the_slowest_cycle(t, hops, pp, micro, excess):
    micro = min(micro, pp)
    pass_time = pp * t + hops
    step = pipelined_step_time(pass_time, hops, pp, micro, excess)
    assert step >= pass_time - 1e-15
    assert step >= micro * (t + excess) - 1e-12
    if excess == 0:
        assert step == pass_time
