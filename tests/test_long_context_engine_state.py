"""The long-context analysis sizes a sequence's cache with the model as predict runs it
(``long_context.kv_bytes`` of a scenario: ``resolve.with_engine_state``, the step of
``resolve.resolve`` that gives the recurrent state its engine's dtype). Nemotron-H-56B under
SGLang keeps the Mamba SSM state in fp32 (engines/sglang.yaml memory.state_dtype:
config_or_fp32; the config names no dtype), the generic engine at the model dtype (bf16);
the conv state stays bf16 under both."""

from __future__ import annotations

import json
from pathlib import Path

import perfmodel as pm
from perfmodel.analysis import long_context as lc
from perfmodel.zoo import load_hf_config

CONFIG = (Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
          / "nvidia--Nemotron-H-56B-Base-8K_config.json")


def _scenario(engine: str, prompt_len: int = 4096, tp: int = 4) -> pm.Scenario:
    sc = {"kind": "inference", "model": str(CONFIG),
          "system": {"device": "h200-sxm-141gb", "num_gpus": tp}, "parallelism": {"tp": tp},
          "inference": {"batch": 1, "prompt_len": prompt_len, "output_len": 1,
                        "weight_dtype": "bf16", "kv_dtype": "bf16", "kv_block_size": 1}}
    if engine != "generic":
        sc["engine"] = {"name": engine}
    return pm.as_scenario(sc)


def test_sglang_state_is_fp32_generic_bf16():
    cfg = json.loads(CONFIG.read_text())
    mamba_layers = cfg["hybrid_override_pattern"].count("M")
    # per Mamba-2 layer the SSM state is heads x head_dim x d_state elements (by hand from
    # the config: 256 x 64 x 256)
    ssm = cfg["mamba_num_heads"] * cfg["mamba_head_dim"] * cfg["ssm_state_size"]
    sglang = lc.kv_bytes(_scenario("sglang"), 4096)
    generic = lc.kv_bytes(_scenario("generic"), 4096)
    assert sglang - generic == mamba_layers * ssm * (4 - 2)
    # the unresolved model (what kv_bytes used before) takes the generic rule
    assert lc.kv_bytes(load_hf_config(CONFIG), 4096, "bf16") == generic


def test_kv_bytes_is_predicts_per_sequence_cache():
    """predict's per-sequence cache of a prompt of P tokens and one output token is
    kv_bytes at P + 1 tokens on one GPU, unpaged (as tests/test_seed_analysis.py checks for Yi-34B)."""
    for engine in ("sglang", "generic"):
        sc = _scenario(engine, tp=1)
        assert pm.predict(sc).kv_cache_bytes_per_sequence == lc.kv_bytes(sc, 4096 + 1)
