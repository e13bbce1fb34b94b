"""A named engine decides an inference scenario's ``fits`` and max concurrency (engine_fit):
the engine starts, holds the batch at the scenario's context, and its own count of requests
of that context, capped by its running-request limit. Figures by hand in each test."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from perfmodel.api import predict
from perfmodel.errors import SpecError
from perfmodel.parameters import param_counts
from perfmodel.specs.registry import get_model
from perfmodel.stages import stage_params

ROOT = Path(__file__).resolve().parents[1]
DSR1 = str(ROOT / "tests/data/hf_configs/aiconfigurator-0.12.0/deepseek-ai--DeepSeek-R1_config.json")


def _l70(engine, batch=8, gpus=4, tp=4, prompt=1024, output=256, **extra):
    return predict({"kind": "inference", "model": "llama-3.1-70b", "engine": engine,
                    "system": {"device": "h100-sxm5-80gb", "num_gpus": gpus},
                    "parallelism": {"tp": tp, **extra.pop("parallelism", {})},
                    "inference": {"prompt_len": prompt, "output_len": output, "batch": batch}})


def test_generic_engine_keeps_perfmodels_own_figures():
    p = _l70("generic")
    assert p.fits and p.engine is None
    # inference._memory on the memory CUDA reports (79.22 GiB, not the label's 80): 428 on
    # 80 GiB; 0.78 GiB x 0.95 less per GPU / 0.098 GiB per 1280-token sequence = 7.6 fewer
    assert p.max_concurrent_sequences == 420


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_each_engine_counts_its_own_blocks_at_the_scenario_context(engine):
    """Requests of 1,024 + 256 = 1,280 tokens: floor(blocks / ceil(1280 / block))."""
    p = _l70(engine)
    e = p.engine
    per_request = math.ceil(1280 / e["kv_block_size"])
    assert p.max_concurrent_sequences == e["kv_cache_blocks"] // per_request
    assert p.fits and e["starts"]


def test_the_three_engines_by_hand():
    # vLLM 25,804 blocks of 16 / 80 = 322; SGLang 395,683 tokens / 1,280 = 309;
    # TensorRT-LLM 16,606 blocks of 32 / 40 = 415 (each engine's own KV pool on 4 x H100);
    # vLLM at 0.19.1, gpu_memory_utilization 0.9 (0.92 and a CUDA-graph estimate from 0.20)
    engines = {"vllm": {"name": "vllm", "version": "0.19.1"}, "sglang": "sglang",
               "trtllm": "trtllm"}
    got = {e: _l70(cfg).max_concurrent_sequences for e, cfg in engines.items()}
    assert got == {"vllm": 322, "sglang": 309, "trtllm": 415}


def test_max_num_seqs_caps_the_count():
    p = predict({"kind": "inference", "model": "llama-3.1-70b",
                 "engine": {"name": "vllm", "max_num_seqs": 4},
                 "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
                 "parallelism": {"tp": 4},
                 "inference": {"prompt_len": 1024, "output_len": 256, "batch": 8}})
    assert p.max_concurrent_sequences == 4
    assert not p.fits  # 4 running requests do not hold a batch of 8
    assert any("engine.max_num_seqs" in w for w in p.warnings)


def test_an_engine_that_cannot_start_does_not_fit():
    """70B bf16 on 2 x H100 under vLLM: 65.7 GiB of weights per GPU leave nothing of
    0.9 x 79.2 GiB after the profile run, so vLLM logs 0 KV tokens and would not start
    (0.19.1: gpu_memory_utilization 0.9 until 0.20)."""
    p = predict({"kind": "inference", "model": "llama-3.1-70b",
                 "engine": {"name": "vllm", "version": "0.19.1"},
                 "system": {"device": "h100-sxm5-80gb", "num_gpus": 2},
                 "parallelism": {"tp": 2},
                 "inference": {"prompt_len": 1024, "output_len": 256, "batch": 8}})
    assert p.engine["kv_cache_tokens"] == 0 and not p.engine["starts"]
    assert not p.fits and p.max_concurrent_sequences == 0
    assert any("does not fit" in w for w in p.warnings)


def test_attention_dp_counts_each_groups_own_pool():
    """DeepSeek-R1 DP8 + EP8 on 8 x H200 under SGLang: each DP rank's pool of 182,904 tokens
    holds floor(182,904 / 2,048) = 89 requests of 1,024 + 1,024 tokens; x 8 ranks = 712
    (SGLang's default max_running_requests per rank, min(T // 2, 4096), does not bind). The
    embedding and LM head are bf16 (weight_dtype fp8_block applies to the linear layers,
    formats.KEPT_16BIT): 2 x 129,280 x 7,168 more bytes per GPU than all-fp8, 26,368 tokens of
    70,272 B (576 latent x 2 B x 61 layers) fewer than the 209,272 of an all-fp8 checkpoint."""
    p = predict(str(ROOT / "examples/deepseek-r1-wide-ep-h200.yaml"))
    tokens = p.engine["kv_cache_tokens"]
    assert p.max_concurrent_sequences == 8 * (tokens // 2048)
    assert tokens == 182_904 and p.max_concurrent_sequences == 712
    assert p.fits  # 256 / 8 = 32 per rank


def _nvl72(engine):
    return predict({"kind": "inference", "model": DSR1, "engine": engine,
                    "system": {"device": "gb200", "num_gpus": 72},
                    "parallelism": {"tp": 1, "attention_dp": 72, "ep": 72,
                                    "redundant_experts": 32},
                    "inference": {"batch": 72, "prompt_len": 2000, "output_len": 100,
                                  "weight_dtype": "fp8_block", "kv_dtype": "bf16"}})


def test_a_negative_derived_fraction_is_an_engine_that_fails_to_start():
    """SGLang's reserve rule at dp_size 72 exceeds the GB200's memory: mem_fraction_static
    comes out negative; the engine does not start and the warning names the field."""
    p = _nvl72("sglang")
    assert p.engine["fraction"] < 0 and not p.engine["starts"]
    assert not p.fits and p.max_concurrent_sequences == 0
    assert any("engine.mem_fraction_static" in w for w in p.warnings)


def test_the_gb200_example_sets_the_published_fraction():
    p = predict(str(ROOT / "examples/deepseek-r1-wide-ep-gb200-nvl72.yaml"))
    e = p.engine
    assert e["fraction"] == 0.82 and e["max_model_len"] == 2716 and p.fits
    # per rank: min(floor(T / 2,100), SGLang's max_running_requests rule: 4,096 here)
    per_rank = min(e["kv_cache_tokens"] // 2100, 4096)
    assert p.max_concurrent_sequences == 72 * per_rank


def test_serving_refusal_names_the_engine_fraction():
    with pytest.raises(SpecError, match=r"mem_fraction_static comes out at -0\.0.*"
                                        r"engine\.mem_fraction_static"):
        predict({"kind": "serving", "model": DSR1, "engine": "sglang",
                 "system": {"device": "gb200", "num_gpus": 72},
                 "parallelism": {"tp": 1, "attention_dp": 72, "ep": 72, "redundant_experts": 32},
                 "inference": {"weight_dtype": "fp8_block", "kv_dtype": "bf16",
                               "prompt_len": 1024, "output_len": 128},
                 "serving": {"arrival": {"process": "closed", "concurrency": 144},
                             "num_requests": 300, "prompt_len": 1024, "output_len": 128}})


# ---- llama.cpp --------------------------------------------------------------------------------

def _llama(batch=1, pp=1, gpus=1, prompt=512, output=128, engine="llamacpp", **par):
    return predict({"kind": "inference", "model": "llama-2-70b", "engine": engine,
                    "system": {"device": "rtx-4090", "num_gpus": gpus},
                    "parallelism": {"pp": pp, **par},
                    "inference": {"prompt_len": prompt, "output_len": output, "batch": batch,
                                  "weight_dtype": "int4"}})


def test_llamacpp_holds_its_slots():
    """One slot (n_parallel 1) of n_ctx 4,096: a batch of 1 fits, a batch of 2 does not; two
    slots share n_ctx (2,048 each): a request of 1,500 + 600 tokens exceeds a slot."""
    one = _llama(pp=6, gpus=6)
    assert one.fits and one.max_concurrent_sequences == 1
    two = _llama(batch=2, pp=6, gpus=6)
    assert not two.fits and two.max_concurrent_sequences == 1
    two_slots = {"name": "llamacpp", "max_num_seqs": 2}
    assert _llama(batch=2, pp=6, gpus=6, engine=two_slots).fits
    long = _llama(pp=6, gpus=6, prompt=1500, output=600, engine=two_slots)
    assert not long.fits and long.max_concurrent_sequences == 0
    assert any("engine.max_model_len" in w for w in long.warnings)


def test_llamacpp_splits_layers_by_free_memory_by_default():
    """80 layers on 6 equal GPUs: layer il on the device k with il / 81 < (k+1) / 6, i.e.
    (14, 13, 14, 13, 14, 12) (llama-model.cpp); the engine's table and the summary both show
    the largest stage (14 layers)."""
    from perfmodel.resolve import inference_inputs, resolve

    sc = {"kind": "inference", "model": "llama-2-70b", "engine": "llamacpp",
          "system": {"device": "rtx-4090", "num_gpus": 6}, "parallelism": {"pp": 6},
          "inference": {"prompt_len": 512, "output_len": 128, "weight_dtype": "int4"}}
    rs = resolve(sc)
    assert inference_inputs(rs.scenario, rs.system, rs.profile).plan.pp_layers == \
        (14, 13, 14, 13, 14, 12)
    p = predict(sc)
    summary = p.breakdown["memory"]["weights"]
    assert p.engine["breakdown"]["weights"] == pytest.approx(summary, rel=1e-12)
    # 14 of 80 layers' weights + the LM head on one GPU, more than an even 80 / 6 share
    pc = param_counts(get_model("llama-2-70b"))
    even = stage_params(pc, 1, 6).max
    assert stage_params(pc, 1, 6, layers=14.0).max > even


def test_llamacpp_even_when_pp_divides_the_layers_follows_its_rule():
    from perfmodel.resolve import inference_inputs, resolve

    rs = resolve({"kind": "inference", "model": "llama-2-70b", "engine": "llamacpp",
                  "system": {"device": "rtx-4090", "num_gpus": 4}, "parallelism": {"pp": 4},
                  "inference": {"prompt_len": 512, "output_len": 128, "weight_dtype": "int4"}})
    # boundaries at il < 81 k / 4 = 20.25, 40.5, 60.75
    assert inference_inputs(rs.scenario, rs.system, rs.profile).plan.pp_layers == \
        (21, 20, 20, 19)


def test_llamacpp_refuses_tensor_parallelism():
    with pytest.raises(SpecError, match=r"parallelism\.tp: tp = 4 with engine llamacpp is "
                                        r"not modelled: .*--split-mode layer.*--split-mode row"):
        predict({"kind": "inference", "model": "llama-3.1-70b", "engine": "llamacpp",
                 "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
                 "parallelism": {"tp": 4},
                 "inference": {"prompt_len": 512, "output_len": 128, "batch": 1}})


def test_sglang_divides_max_running_requests_among_dp_ranks():
    """--max-running-requests 64 with DP8: 64 // 8 = 8 per rank (model_runner.py), 64 in all,
    fewer than the example's batch of 256."""
    import yaml

    sc = yaml.safe_load((ROOT / "examples/deepseek-r1-wide-ep-h200.yaml").read_text())
    sc["model"] = DSR1
    sc["engine"] = {"name": "sglang", "max_num_seqs": 64}
    p = predict(sc)
    assert p.max_concurrent_sequences == 64 and not p.fits


def test_a_run_beyond_the_models_context_is_not_held_to_the_default_max_model_len():
    """allow_beyond_context: the scenario models sequences past max_position_embeddings (as a
    TensorRT-LLM engine built with a longer max_seq_len runs them); the engine's default
    max_model_len (the model's context) does not refuse them, an explicit one does."""
    sc = {"kind": "inference", "model": "gpt-j-6b", "allow_beyond_context": True,
          "engine": "trtllm", "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
          "inference": {"prompt_len": 2048, "output_len": 128, "batch": 8}}
    assert predict(sc).fits
    sc["engine"] = {"name": "trtllm", "max_model_len": 2048}
    p = predict(sc)
    assert not p.fits and any("exceeds max_model_len 2,048" in w for w in p.warnings)
