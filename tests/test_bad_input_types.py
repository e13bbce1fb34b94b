"""Bad inputs by class, one row each (issue 12, part 2: types and physics of inputs).

Every row must fail with a one-line SpecError that names the field: counts that are bools,
floats or strings, negative, zero or beyond their documented bound; HF config fields of the
wrong JSON type; fields a kind of scenario does not use; sequences beyond the model's context
(and the override); NaN, infinite or negative calibration numbers. Placement rows check that
expert parallelism carved out of DP x CP lands where Megatron puts it, with finite results;
collective rows that a fitted all-reduce never gets faster with size.
"""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.errors import PerfModelError, SpecError
from perfmodel.profile import CalibrationProfile
from perfmodel.specs.common import validate
from perfmodel.specs.registry import default_profile, reference_profile
from perfmodel.specs.scenario import Scenario
from perfmodel.topology import group_spans
from perfmodel.zoo.hf import model_from_hf_config

TRAIN = {"kind": "training", "model": "llama-3-8b",
         "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
         "training": {"seq_len": 4096, "global_batch": 8}}
INFER = {"kind": "inference", "model": "llama-3-8b",
         "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
         "inference": {"prompt_len": 1024, "output_len": 128}}
SERVE = {"kind": "serving", "model": "llama-3-8b",
         "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
         "inference": {"prompt_len": 1024, "output_len": 128},
         "serving": {"arrival": {"rate_per_s": 1.0}, "num_requests": 10}}


def edit(base: dict, path: str, value) -> dict:
    """``base`` with ``path`` (dotted) set to ``value``."""
    data = copy.deepcopy(base)
    *keys, last = path.split(".")
    node = data
    for k in keys:
        node = node.setdefault(k, {})
    node[last] = value
    return data


# (id, scenario, text the one-line error must contain)
SCENARIO_ROWS = [
    # counts: bool, float, string, negative, zero, huge
    ("bool-num-gpus", edit(TRAIN, "system.num_gpus", True), "system.num_gpus: must be an integer"),
    ("float-num-gpus", edit(TRAIN, "system.num_gpus", 8.0), "system.num_gpus: must be an integer"),
    ("string-num-gpus", edit(TRAIN, "system.num_gpus", "8"), "system.num_gpus: must be an integer"),
    ("zero-num-gpus", edit(TRAIN, "system.num_gpus", 0), "system.num_gpus"),
    ("huge-num-gpus", edit(TRAIN, "system.num_gpus", 10**7), "system.num_gpus"),
    ("bool-tp", edit(TRAIN, "parallelism.tp", True), "parallelism.tp: must be an integer"),
    ("float-pp", edit(TRAIN, "parallelism.pp", 2.0), "parallelism.pp: must be an integer"),
    ("negative-cp", edit(TRAIN, "parallelism.cp", -2), "parallelism.cp"),
    ("bool-zero-stage", edit(TRAIN, "parallelism.zero_stage", True),
     "parallelism.zero_stage: must be an integer"),
    ("string-bool-sp", edit(TRAIN, "parallelism.sequence_parallel", "false"),
     "parallelism.sequence_parallel: must be true or false"),
    ("int-bool-overlap", edit(TRAIN, "parallelism.overlap_grad_reduce", 1),
     "parallelism.overlap_grad_reduce: must be true or false"),
    ("bool-seq-len", edit(TRAIN, "training.seq_len", True), "training.seq_len: must be an integer"),
    ("float-seq-len", edit(TRAIN, "training.seq_len", 4096.0),
     "training.seq_len: must be an integer"),
    ("zero-seq-len", edit(TRAIN, "training.seq_len", 0), "training.seq_len"),
    ("huge-global-batch", edit(TRAIN, "training.global_batch", 10**30),
     "training.global_batch"),
    ("string-global-batch", edit(TRAIN, "training.global_batch", "8"),
     "training.global_batch: must be an integer"),
    ("negative-micro-batch", edit(TRAIN, "training.micro_batch", -1), "training.micro_batch"),
    ("huge-seq-len", edit(TRAIN, "training.seq_len", 10**9), "training.seq_len"),
    ("bool-batch", edit(INFER, "inference.batch", True), "inference.batch: must be an integer"),
    ("huge-prompt", edit(INFER, "inference.prompt_len", 10**12), "inference.prompt_len"),
    ("float-output", edit(INFER, "inference.output_len", 1.5),
     "inference.output_len: must be an integer"),
    ("nan-offload", edit(INFER, "inference.offload", {"weights": float("nan")}),
     "inference.offload.weights"),
    ("string-rate", edit(SERVE, "serving.arrival.rate_per_s", "1e-3"),
     "serving.arrival.rate_per_s: must be a number"),
    ("inf-rate", edit(SERVE, "serving.arrival.rate_per_s", float("inf")),
     "serving.arrival.rate_per_s"),
    ("negative-seed", edit(SERVE, "serving.seed", -1), "serving.seed"),
    ("zero-requests", edit(SERVE, "serving.num_requests", 0), "serving.num_requests"),
    ("huge-requests", edit(SERVE, "serving.num_requests", 10**9), "serving.num_requests"),
    ("bool-max-batch", edit(SERVE, "serving.scheduler.max_batch", False),
     "serving.scheduler.max_batch: must be an integer"),
    ("inline-model-string-width", edit(TRAIN, "model", {
        "id": "tiny", "name": "tiny", "num_layers": 2, "hidden_size": "64", "num_heads": 4,
        "ffn_hidden_size": 256, "vocab_size": 1000}), "hidden_size: must be an integer"),
    ("inline-model-bool-tie", edit(TRAIN, "model", {
        "id": "tiny", "name": "tiny", "num_layers": 2, "hidden_size": 64, "num_heads": 4,
        "ffn_hidden_size": 256, "vocab_size": 1000, "tie_embeddings": "false"}),
     "tie_embeddings: must be true or false"),
    # fields a kind does not use
    ("inference-dp", edit(INFER, "parallelism.dp", 2), "parallelism.dp: an inference scenario"),
    ("inference-cp", edit(INFER, "parallelism.cp", 2), "parallelism.cp: an inference scenario"),
    ("inference-vp", edit(INFER, "parallelism.vp", 2), "parallelism.vp: an inference scenario"),
    ("inference-zero", edit(INFER, "parallelism.zero_stage", 1),
     "parallelism.zero_stage: an inference scenario"),
    ("inference-training-block", edit(INFER, "training", {"seq_len": 1, "global_batch": 1}),
     "training: an inference scenario has no 'training' section"),
    ("training-inference-block", edit(TRAIN, "inference", {"prompt_len": 16}),
     "inference: a training scenario has no 'inference' section"),
    ("training-serving-block", edit(TRAIN, "serving", SERVE["serving"]),
     "serving: a training scenario has no 'serving' section"),
    ("inference-serving-block", edit(INFER, "serving", SERVE["serving"]),
     "serving: an inference scenario has no 'serving' section"),
    ("serving-batch", edit(SERVE, "inference.batch", 8), "inference.batch: a serving scenario"),
    ("serving-cp", edit(SERVE, "parallelism.cp", 2), "parallelism.cp: a serving scenario"),
    # physics: beyond the model's context (llama-3-8b: 8192)
    ("train-beyond-context", edit(TRAIN, "training.seq_len", 16384), "exceeds the context"),
    ("infer-beyond-context", edit(INFER, "inference.prompt_len", 8100), "exceeds the context"),
    ("serve-beyond-context", edit(SERVE, "serving.prompt_len", {"kind": "uniform", "min": 16,
                                                                 "max": 9000}),
     "exceeds the context"),
    ("override-not-a-bool", {**edit(TRAIN, "training.seq_len", 16384),
                             "allow_beyond_context": "yes"},
     "allow_beyond_context: must be true or false"),
]


def _one_line_spec_error(data: dict, expected: str) -> str:
    with pytest.raises(SpecError) as info:
        pm.predict(data)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    assert expected in message, message
    return message


@pytest.mark.parametrize("data, expected", [pytest.param(d, e, id=i) for i, d, e in SCENARIO_ROWS])
def test_bad_scenario_is_a_one_line_spec_error(data, expected):
    _one_line_spec_error(data, expected)


def test_context_override_models_the_long_sequence():
    data = {**edit(TRAIN, "training.seq_len", 16384), "allow_beyond_context": True}
    assert math.isfinite(pm.predict(data).step_time_s)
    data = {**edit(INFER, "inference.prompt_len", 8100), "allow_beyond_context": True}
    assert math.isfinite(pm.predict(data).ttft_s)


def test_unused_field_at_its_default_is_accepted():
    assert pm.predict(edit(INFER, "parallelism.cp", 1)).tpot_s > 0


# ---- HF config.json: every field has its JSON type --------------------------------------------
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
         "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
         "vocab_size": 1000, "max_position_embeddings": 2048, "tie_word_embeddings": False}
GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 768, "n_head": 12, "vocab_size": 1000,
        "n_positions": 1024}
HF_ROWS = [
    ("tie-string", {**LLAMA, "tie_word_embeddings": "false"}, "'tie_word_embeddings'", "boolean"),
    ("n-embd-string", {**GPT2, "n_embd": "768"}, "'n_embd'", "integer"),
    ("layers-float", {**LLAMA, "num_hidden_layers": 2.0}, "'num_hidden_layers'", "integer"),
    ("layers-bool", {**LLAMA, "num_hidden_layers": True}, "'num_hidden_layers'", "integer"),
    ("heads-list", {**LLAMA, "num_attention_heads": [4]}, "'num_attention_heads'", "integer"),
    ("vocab-string", {**LLAMA, "vocab_size": "1000"}, "'vocab_size'", "integer"),
    ("act-int", {**LLAMA, "hidden_act": 1}, "'hidden_act'", "string"),
    ("bias-int", {**LLAMA, "attention_bias": 0}, "'attention_bias'", "boolean"),
    ("model-type-int", {**LLAMA, "model_type": 7}, "'model_type'", "string"),
    ("mpt-expansion-string", {"model_type": "mpt", "d_model": 64, "n_layers": 2, "n_heads": 4,
                              "vocab_size": 100, "expansion_ratio": "4"},
     "'expansion_ratio'", "number"),
    ("mpt-attn-config-alibi", {"model_type": "mpt", "d_model": 64, "n_layers": 2, "n_heads": 4,
                               "vocab_size": 100, "attn_config": {"alibi": "true"}},
     "'alibi'", "boolean"),
    ("negative-layers", {**LLAMA, "num_hidden_layers": -2}, "num_layers", ""),
]


@pytest.mark.parametrize("config, field, json_type",
                         [pytest.param(c, f, t, id=i) for i, c, f, t in HF_ROWS])
def test_hf_config_field_of_the_wrong_type(config, field, json_type):
    with pytest.raises(SpecError) as info:
        model_from_hf_config(config)
    message = str(info.value)
    assert "\n" not in message and field in message and json_type in message, message


def test_hf_config_gpt2_ffn_width_comes_from_an_integer():
    assert model_from_hf_config(GPT2).ffn_hidden_size == 4 * 768


# ---- calibration profiles: finite numbers of the right sign -------------------------------
def _profile_data() -> dict:
    return json.loads(default_profile().model_dump_json())


PROFILE_ROWS = [
    ("negative-attention-overhead", ("attention_overhead_s", {"prefill": -1e-5}),
     "attention_overhead_s.prefill"),
    ("nan-kernel-overhead", ("kernel_overhead_s", float("nan")), "kernel_overhead_s"),
    ("inf-elementwise-rate", ("elementwise_rate", {"add": float("inf")}), "elementwise_rate.add"),
    ("zero-elementwise-rate", ("elementwise_rate", {"add": 0.0}), "elementwise_rate.add"),
    ("negative-peak", ("peak_tflops", {"bf16": -1.0}), "peak_tflops.bf16"),
    ("negative-uncertainty", ("uncertainty", {"gemm": -0.1}), "uncertainty.gemm"),
    ("string-overhead", ("kernel_overhead_s", "1e-6"), "kernel_overhead_s: must be a number"),
]


@pytest.mark.parametrize("change, field", [pytest.param(c, f, id=i) for i, c, f in PROFILE_ROWS])
def test_bad_profile_number_is_refused(change, field):
    key, value = change
    data = _profile_data()
    data[key] = value
    with pytest.raises(SpecError) as info:
        validate(CalibrationProfile, data, what="calibration profile")
    assert field in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_collective_curve_with_nan_is_refused():
    data = _profile_data()
    data["defaults"]["collective"] = float("nan")
    with pytest.raises(SpecError, match=r"defaults\.collective"):
        validate(CalibrationProfile, data)


# ---- expert parallelism inside DP x CP: by hand and by enumerating ranks ---------------------
def _enumerate(G, placement, tp, cp, ep, dp, pp):
    """Members per node of the EP group of rank 0, from Megatron's expert rank grid (the
    placement without cp; expert dp = cp*dp/ep), and of the dense DP x CP gradient group."""
    edp = cp * dp // ep
    e_order = [d for d in placement.split("-") if d != "cp"]
    e_sizes = {"tp": tp, "ep": ep, "dp": edp, "pp": pp}
    strides, s = {}, 1
    for d in e_order:
        strides[d], s = s, s * e_sizes[d]
    ep_ranks = [e * strides["ep"] for e in range(ep)]
    nodes = {r // G for r in ep_ranks}
    return ep // len(nodes), len(nodes)


PLACEMENTS = [
    # (gpus per node, tp, cp, ep, dp, pp): EP from CP, from DP, from both, across nodes
    (8, 4, 2, 2, 1, 1),  # the case: EP carved from CP on one node
    (8, 2, 2, 4, 4, 1),
    (8, 1, 4, 8, 2, 1),
    (8, 8, 2, 2, 2, 1),  # TP fills the node: EP members one per node
    (4, 1, 2, 8, 8, 2),
    (8, 2, 1, 8, 8, 1),  # EP inside DP (no CP): as before
]


@pytest.mark.parametrize("G, tp, cp, ep, dp, pp", PLACEMENTS)
def test_ep_is_placed_inside_dp_x_cp(G, tp, cp, ep, dp, pp):
    spans = group_spans(G, "tp-cp-ep-dp-pp", tp=tp, cp=cp, ep=ep, dp=dp, pp=pp)
    local, nodes = _enumerate(G, "tp-cp-ep-dp-pp", tp, cp, ep, dp, pp)
    assert (float(spans["ep"].local), float(spans["ep"].nodes)) == (local, nodes)
    assert float(spans["egrad"].size) == cp * dp / ep


def test_ep_from_cp_on_one_node_stays_on_the_node_and_is_finite():
    """The issue's case: 8 GPUs of one node, TP 4 x CP 2, EP 2 (dp 1): the EP pair is ranks
    {0, 4} (EP stride = TP), on the same node over NVLink."""
    data = {"kind": "training", "model": "mixtral-8x7b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
            "parallelism": {"tp": 4, "cp": 2, "ep": 2},
            "training": {"seq_len": 4096, "global_batch": 8}}
    pred = pm.predict(data)
    ep = pred.breakdown["groups"]["ep"]
    assert (ep["size"], ep["per_node"], ep["nodes"]) == (2.0, 2.0, 1.0)
    assert math.isfinite(pred.step_time_s) and math.isfinite(
        pred.breakdown["communication"]["ep"]["total_s"])
    json.loads(json.dumps(pred.to_json_dict(), allow_nan=False))


def test_ep_from_cp_and_dp_across_nodes_is_finite():
    data = {"kind": "training", "model": "deepseek-v3",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 64},
            "parallelism": {"tp": 1, "pp": 8, "cp": 4, "ep": 8, "uneven_pipeline": True},
            "training": {"seq_len": 4096, "global_batch": 16}}
    pred = pm.predict(data)
    assert math.isfinite(pred.step_time_s) and pred.step_time_s > 0


# ---- no NaN reaches a Prediction; no utilisation above 1 ------------------------------------
def test_a_nan_result_is_an_internal_error_naming_the_quantity():
    pred = pm.predict(TRAIN)
    with pytest.raises(PerfModelError, match="step_time_s"):
        type(pred).model_validate({**pred.model_dump(), "step_time_s": float("nan")})
    with pytest.raises(PerfModelError, match=r"breakdown\.time"):
        type(pred).model_validate({**pred.model_dump(), "breakdown": {
            **pred.breakdown, "time": {"x": float("inf")}}})
    with pytest.raises(PerfModelError, match="mfu"):
        type(pred).model_validate({**pred.model_dump(), "mfu": 1.2})


# ---- collective fits: time never decreases with message size -------------------------------
def non_monotone_fits(profile) -> list:
    """The collective fits whose time latency + bytes / eff(bytes) (the core's formula up to
    constant factors) decreases somewhere between 1 KiB and 16 GiB."""
    sizes = 2.0 ** np.arange(10, 34, 1 / 16)
    bad = []
    for fit in profile.collectives:
        t = fit.latency_s + sizes / np.asarray(fit.efficiency(sizes))
        if np.any(np.diff(t) < -1e-9 * t[1:]):
            bad.append((fit.collective, fit.scope, fit.group_size))
    return bad


@pytest.mark.parametrize("device", ["b200", "h100-sxm5-80gb", "a100-sxm4-80gb",
                                    "h200-sxm-141gb"])
def test_shipped_collective_fits_are_monotone_in_size(device):
    assert non_monotone_fits(reference_profile(device)) == []


def test_monotone_fit_from_a_non_monotone_table():
    """A measured table where 256 KiB is faster than 128 KiB (B200 two-node all-reduce: 925 us
    vs 439 us): the fitted curve gives a time that never decreases with size."""
    from perfmodel.calibrate.fit.collectives import monotone_curve
    from perfmodel.profile import CollectiveFit, Curve

    # an efficiency curve that quadruples in one octave: the time would fall; raised at the
    # smaller size (the lower envelope of time), it doesn't
    curve = Curve(axes=("bytes",), log2_grid=((16.0, 17.0, 18.0),), values=(0.1, 0.4, 0.5))
    fit = CollectiveFit(collective="all_reduce", scope="inter", group_size=16, latency_s=1e-5,
                        efficiency=curve)
    assert non_monotone_fits(type("P", (), {"collectives": [fit]})) != []
    raised = monotone_curve(curve)
    fixed = fit.model_copy(update={"efficiency": raised})
    assert non_monotone_fits(type("P", (), {"collectives": [fixed]})) == []
    assert raised(2.0**18) == pytest.approx(0.5) and raised(2.0**17) == pytest.approx(0.4)
    assert raised(2.0**16) > 0.1  # the slow small message is the exception, raised


def test_every_row_class_is_covered():
    assert len(SCENARIO_ROWS) + len(HF_ROWS) + len(PROFILE_ROWS) + len(PLACEMENTS) >= 60
    assert Scenario is not None and itertools is not None
