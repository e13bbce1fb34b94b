"""Recurrent (SSM) state dtypes of linear-attention and Mamba layers as each engine keeps them
(engines/<id>.yaml ``memory.state_dtype``, attention_variants.with_state_dtypes; QA 1203c
finding 5). Expected numbers are hand calculations from the configs and the engines' sources:

* SGLang (python/sglang/srt/configs/mamba_utils.py mamba2_state_dtype): SSM state =
  --mamba-ssm-dtype, else config mamba_ssm_dtype, else float32; conv state bfloat16.
* vLLM (mamba_utils.py MambaStateDtypeCalculator, models/config.py hooks): SSM state "auto" =
  the model dtype, filled from config.json by the Qwen3.5 hook (mamba_ssm_dtype) and the
  Nemotron-H hook (mamba_ssm_cache_dtype, default float32); KDA's recurrent state float32.
* generic: the config's dtype, else the model dtype.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel import ops as O
from perfmodel.attention_variants import (
    engine_state_model,
    linear_state_bytes,
    mamba_state_bytes,
    with_state_dtypes,
)
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError
from perfmodel.zoo import load_hf_config
from perfmodel.zoo.hf import model_from_hf_file

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
Q35 = CONFIGS / "Qwen--Qwen3.5-27B_config.json"

# Qwen3.5-27B text_config: 64 layers, full_attention_interval 4 -> 48 gated-delta-net + 16 full
# attention layers; linear_num_value_heads 48, linear_num_key_heads 16, head dims 128,
# linear_conv_kernel_dim 4; full attention 4 KV heads x head_dim 256; mamba_ssm_dtype float32.
RECURRENT = 48 * 128 * 128  # 786,432 elements
CONV = (4 - 1) * (2 * 16 * 128 + 48 * 128)  # 3 x 10,240 = 30,720 elements
KV_TOKEN = 2 * 4 * 256 * 2  # K and V, 4 heads x 256, bf16: 4,096 B per token and layer
FP32_LAYER = RECURRENT * 4 + CONV * 2  # 3,207,168 B
BF16_LAYER = RECURRENT * 2 + CONV * 2  # 1,634,304 B


def _scenario(engine: str, **inference) -> pm.Scenario:
    return pm.as_scenario({
        "kind": "inference", "engine": engine, "model": str(Q35),
        "system": {"device": "h200-sxm-141gb", "num_gpus": 1}, "parallelism": {"tp": 1},
        "inference": {"batch": 1, "prompt_len": 1024, "output_len": 1, "weight_dtype": "bf16",
                      "kv_dtype": "bf16", **inference}})


def test_hf_import_reads_the_config_dtype():
    spec = load_hf_config(Q35)
    la = spec.linear_attention
    assert (la.ssm_dtype, la.state_bytes, la.conv_bytes) == ("fp32", 4.0, 2.0)
    assert float(linear_state_bytes(spec)) == FP32_LAYER == 3_207_168


@pytest.mark.parametrize("engine", ["generic", "sglang", "vllm"])
def test_qwen3_5_27b_sequence_by_hand(engine):
    """Prompt 1024 + 1 output: 1025 tokens, 1040 in 16-token pages (inference.kv_block_size);
    48 x 3,207,168 + 16 x 1040 x 4096 = 222,101,504 B (146,604,032 with a 2 B state)."""
    p = pm.predict(_scenario(engine))
    assert p.kv_cache_bytes_per_sequence == 48 * FP32_LAYER + 16 * 1040 * KV_TOKEN \
        == 222_101_504


def test_sglang_max_concurrency_by_hand():
    """SGLang pages of 1 token: a sequence of 1025 tokens holds 48 x 3,207,168 + 16 x 1025 x
    4096 = 221,118,464 B; its KV pool holds floor(pool / that) of them (372 on one H200;
    564 with the 2 B state, 145,620,992 B per sequence)."""
    p = pm.predict(_scenario("sglang"))
    per_seq = 48 * FP32_LAYER + 16 * 1025 * KV_TOKEN
    assert per_seq == 221_118_464
    pool = p.engine["kv_cache_bytes"]
    assert p.max_concurrent_sequences == math.floor(pool / per_seq)
    bf16 = pm.predict(_scenario("sglang", ssm_state_dtype="bf16"))
    assert bf16.max_concurrent_sequences == math.floor(pool / (48 * BF16_LAYER
                                                              + 16 * 1025 * KV_TOKEN))
    assert bf16.max_concurrent_sequences > p.max_concurrent_sequences


def test_override_and_bad_value():
    p = pm.predict(_scenario("vllm", ssm_state_dtype="bf16"))
    assert p.kv_cache_bytes_per_sequence == 48 * BF16_LAYER + 16 * 1040 * KV_TOKEN
    with pytest.raises(SpecError, match=r"inference\.ssm_state_dtype"):
        _scenario("sglang", ssm_state_dtype="fp8")


def test_engine_rules_without_a_config_dtype():
    """A Qwen3.5 whose config states no mamba_ssm_dtype: SGLang fp32 (its default), vLLM and
    generic the model dtype (vLLM's hook has nothing to copy); a KDA layer under vLLM fp32."""
    spec = load_hf_config(Q35)
    bare = spec.model_copy(update={"linear_attention": spec.linear_attention.model_copy(
        update={"ssm_dtype": None, "state_bytes": 2.0})})
    assert float(linear_state_bytes(engine_state_model(bare, "sglang"))) == FP32_LAYER
    assert float(linear_state_bytes(engine_state_model(bare, "vllm"))) == BF16_LAYER
    assert float(linear_state_bytes(engine_state_model(bare, "generic"))) == BF16_LAYER
    kda = bare.model_copy(update={"linear_attention": bare.linear_attention.model_copy(
        update={"kind": "kda"})})
    assert engine_state_model(kda, "vllm").linear_attention.state_bytes == 4.0
    # the launch flag wins over the rule and the config
    assert engine_state_model(spec, "sglang", override="fp16").linear_attention.state_bytes \
        == 2.0


def test_mamba_path_same_rule():
    """Nemotron-H-56B (no SSM dtype in its config): 256 heads x 64 x 256 state = 4,194,304
    elements, conv 3 x (16384 + 2 x 8 x 256) = 61,440 at 2 B. generic: the model dtype (2 B);
    SGLang (default float32) and vLLM (Nemotron-H hook default float32): 4 B. Nemotron-3 Nano
    states mamba_ssm_cache_dtype float32: 4 B under every engine."""
    n = load_hf_config(CONFIGS / "nvidia--Nemotron-H-56B-Base-8K_config.json")
    assert n.mamba.ssm_dtype is None
    ssm, conv = 256 * 64 * 256, 3 * (256 * 64 + 2 * 8 * 256)
    assert float(mamba_state_bytes(engine_state_model(n, "generic"))) == ssm * 2 + conv * 2
    for engine in ("sglang", "vllm"):
        assert float(mamba_state_bytes(engine_state_model(n, engine))) == ssm * 4 + conv * 2
    nano = load_hf_config(CONFIGS / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json")
    assert nano.mamba.ssm_dtype == "fp32"
    assert {engine_state_model(nano, e).mamba.state_bytes
            for e in ("generic", "sglang", "vllm")} == {4.0}


def test_engine_files_state_their_rule():
    sg, vl = get_engine("sglang").memory.state_dtype, get_engine("vllm").memory.state_dtype
    assert sg.flag == "--mamba-ssm-dtype" and sg.conv == "bf16"
    assert set(sg.ssm.values()) == {"config_or_fp32"}
    assert vl.flag == "--mamba-ssm-cache-dtype" and vl.conv == "model"
    assert dict(vl.ssm) == {"gated_delta_net": "config_or_model", "kda": "fp32",
                            "mamba": "config_or_fp32"}


def test_bad_config_dtype_is_refused():
    data = json.loads(Q35.read_text())
    data = {**data, "text_config": {**data["text_config"], "mamba_ssm_dtype": "fp8"}}
    with pytest.raises(SpecError, match="mamba_ssm_dtype"):
        model_from_hf_file(Q35, data)


def test_decode_state_traffic_follows_the_state_bytes():
    """The gdn core reads and writes the recurrent state once per decode step: 2 x b x heads x
    128 x 128 x bytes, so fp32 adds 2 x 8 x 48 x 16,384 x 2 B at batch 8."""
    spec = load_hf_config(Q35)
    half = with_state_dtypes(spec, override="bf16")
    prec = O.Precision(compute="bf16", act=2.0, weight=2.0)

    def core(m):
        ops = O.linear_attention_ops(m, 8, 1, O.Shard(), prec, "decode")
        return next(op for op in ops if op.name == "attn.gdn_core").bytes

    assert float(core(spec) - core(half)) == 2 * 8 * RECURRENT * 2
