"""A narrow weight_dtype applies to the linear layers; embeddings and LM head stay bf16 unless
named (perfmodel.formats.KEPT_16BIT), and engine-budgeted memory carries no band (its band
moves to the KV pool, perfmodel.uncertainty.fills_budget). Numbers by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.report import render_prediction
from perfmodel.specs.assemble import load_scenario
from perfmodel.specs.scenario import InferenceConfig, Scenario

GIB = 2 ** 30
ROOT = Path(__file__).parent.parent

# Llama-3-70B (meta-llama/Meta-Llama-3-70B config.json): h 8192, 80 layers, 64 heads, 8 KV
# heads of 128, SwiGLU 28672, vocabulary 128256, untied head
H, L, KV, F, V = 8192, 80, 1024, 28672, 128256
LINEAR = L * (2 * H * H + 2 * H * KV + 3 * H * F)  # q, o, k, v, gate/up/down
NORMS = (2 * L + 1) * H  # follow the default (formats.py: < 0.01 % of a model)
ENDS = 2 * V * H  # word embedding + LM head


def _predict(weight_dtype, engine: str | None = None) -> pm.Prediction:
    sc = {"kind": "inference", "model": "llama-3-70b",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
          "inference": {"batch": 1, "prompt_len": 1024, "output_len": 16,
                        "weight_dtype": weight_dtype, "kv_dtype": "fp8"}}
    if engine:
        sc["engine"] = {"name": engine}
    return pm.predict(Scenario.model_validate(sc))


def test_fp8_70b_weights_by_hand_and_vllm_log():
    """fp8 linear layers at 1 B, embeddings and head at 2 B: 72,655,052,800 B = 67.67 GiB; vLLM
    logs "Model loading took 67.7 GiB" for this checkpoint (validation case VLLM-PR12569)."""
    by_hand = LINEAR * 1 + NORMS * 1 + ENDS * 2
    assert by_hand == 72_655_052_800
    p = _predict("fp8")
    assert p.breakdown["memory"]["weights"] == pytest.approx(by_hand, rel=1e-12)
    assert round(by_hand / GIB, 1) == 67.7
    e = _predict("fp8", "vllm").engine
    assert e["weights_bytes"] == pytest.approx(by_hand, rel=1e-12)


def test_named_classes_win_and_plain_equals_the_spelled_mapping():
    spelled = _predict({"default": "fp8", "embeddings": "bf16", "lm_head": "bf16"})
    plain = _predict("fp8")
    assert plain.breakdown["memory"]["weights"] == spelled.breakdown["memory"]["weights"]
    assert plain.tpot_s == spelled.tpot_s and plain.ttft_s == spelled.ttft_s
    # a checkpoint that quantises them too says so: everything at 1 B
    every = _predict({"default": "fp8", "embeddings": "fp8", "lm_head": "fp8"})
    assert every.breakdown["memory"]["weights"] == pytest.approx(LINEAR + NORMS + ENDS)
    # decode reads the 2-B head: slower than with the fp8 head
    assert plain.tpot_s > every.tpot_s


@pytest.mark.parametrize("dtype", ["fp8", "fp8_block", "int8", "int4", "nvfp4", "mxfp4"])
def test_every_narrow_dtype_keeps_the_ends(dtype):
    inf = InferenceConfig(prompt_len=8, weight_dtype=dtype)
    assert inf.weight_dtype == dtype
    assert inf.weight_formats == {"router": "bf16", "embeddings": "bf16", "lm_head": "bf16"}
    # the dump reloads to the same formats (no drift on a round trip)
    again = InferenceConfig.model_validate(inf.model_dump())
    assert again.weight_formats == inf.weight_formats and again.weight_dtype == dtype


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_wide_dtypes_unchanged(dtype):
    assert InferenceConfig(prompt_len=8, weight_dtype=dtype).weight_formats == {}


def test_mapping_default_and_named_class_at_the_default():
    inf = InferenceConfig(prompt_len=8, weight_dtype={"default": "int4", "lm_head": "int4"})
    assert inf.weight_formats == {"router": "bf16", "embeddings": "bf16", "lm_head": "int4"}
    inf = InferenceConfig(prompt_len=8, weight_dtype={"default": "bf16", "experts": "mxfp4"})
    assert inf.weight_formats == {"experts": "mxfp4"}
    with pytest.raises(ValueError, match=r"inference\.weight_dtype: unknown tensor class 'head'"):
        InferenceConfig(prompt_len=8, weight_dtype={"default": "fp8", "head": "bf16"})


@pytest.mark.parametrize("dtype,narrow", [("fp8", 1.0), ("nvfp4", 0.5625)])
def test_router_stays_16bit_unless_named(dtype, narrow):
    """The MoE router stays bf16 under a narrow weight_dtype (formats.KEPT_16BIT: vLLM builds
    the gate with quant_config=None, DeepSeek-V3's checkpoint keeps gate.weight bf16).
    DeepSeek-V3 (config.json): 58 MoE layers, gate 256 x 7168 plus the 256 score-correction
    biases; naming the router narrow moves the weights by exactly those x (2 - narrow)."""
    from perfmodel.formats import model_weight_bytes
    from perfmodel.parameters import param_counts
    from perfmodel.zoo import get_model

    pc = param_counts(get_model("deepseek-v3"))
    plain = InferenceConfig(prompt_len=8, weight_dtype=dtype)
    named = InferenceConfig(prompt_len=8, weight_dtype={"default": dtype, "router": dtype})
    assert plain.weight_formats["router"] == "bf16" and named.weight_formats["router"] == dtype
    moved = (model_weight_bytes(pc, plain.weight_dtype, plain.weight_formats)
             - model_weight_bytes(pc, named.weight_dtype, named.weight_formats))
    assert moved == pytest.approx(58 * (256 * 7168 + 256) * (2 - narrow), rel=1e-12)


def test_engine_budget_memory_has_no_band_the_kv_pool_has():
    """vLLM fills gpu_memory_utilization x the device's memory: memory per GPU is that budget
    (no band); the memory band moves to the KV tokens, whose upper end is at most the budget
    less the weights over the KV bytes per token."""
    p = pm.predict(load_scenario(ROOT / "examples" / "vllm-closed-loop-llama3.1-8b-h100.yaml"))
    e = p.engine
    assert p.memory_per_gpu_bytes == pytest.approx(e["budget_bytes"])
    assert "memory_per_gpu_bytes" not in p.ranges
    assert p.range_basis["memory_per_gpu_bytes"].startswith("no band: vllm allocates")
    lo, hi = p.ranges["kv_cache_tokens"]
    assert lo <= e["kv_cache_tokens"] <= hi
    assert hi <= (e["budget_bytes"] - e["weights_bytes"]) / e["kv_bytes_per_token"] + 1e-6
    assert "memory per GPU" in render_prediction(p) and "no band" in render_prediction(p)


def test_memory_band_never_below_the_weights():
    """An engine that cannot start (no KV pool) keeps a memory band, floored at its weights."""
    p = _predict("fp8", "vllm")
    assert p.runnable is False
    lo, hi = p.ranges["memory_per_gpu_bytes"]
    assert lo >= p.engine["weights_bytes"] and hi >= p.memory_per_gpu_bytes


def test_kv_per_sequence_labelled_per_gpu():
    p = _predict("fp8")
    assert "KV cache per sequence (per GPU)" in render_prediction(p)


def test_tied_embedding_one_tensor_one_format():
    """falcon-7b ties its LM head to the word embedding (tiiuae/falcon-7b config.json:
    vocabulary 65,024, hidden 4,544; 6,921,720,704 parameters): a format named for either
    class is the one tensor's, so memory and decode agree; both named and different refuse."""
    from perfmodel.dtypes import quantized_weight_bytes

    def run(weight_dtype):
        sc = Scenario.model_validate({
            "kind": "inference", "model": "falcon-7b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
            "inference": {"batch": 1, "prompt_len": 1024, "output_len": 16,
                          "weight_dtype": weight_dtype}})
        return sc, pm.predict(sc)

    q = quantized_weight_bytes("int4", 128)
    head, emb = run({"default": "int4", "lm_head": "int4"}), run({"default": "int4",
                                                                  "embeddings": "int4"})
    for sc, p in (head, emb):
        assert sc.inference.weight_formats["embeddings"] == "int4"
        assert sc.inference.weight_formats["lm_head"] == "int4"
        # every tensor at int4, the tied one counted once
        assert p.breakdown["memory"]["weights"] == pytest.approx(6_921_720_704 * q, rel=1e-12)
    assert head[1].tpot_s == emb[1].tpot_s
    # a plain int4 keeps the tied tensor bf16: 65,024 x 4,544 more at (2 - q) B
    plain = run("int4")[1]
    assert plain.breakdown["memory"]["weights"] - head[1].breakdown["memory"]["weights"] == \
        pytest.approx(65_024 * 4_544 * (2 - q), rel=1e-9)
    with pytest.raises(ValueError, match=r"inference\.weight_dtype\.embeddings \(int4\) and "
                                         r"inference\.weight_dtype\.lm_head \(bf16\)"):
        run({"default": "int4", "embeddings": "int4", "lm_head": "bf16"})
