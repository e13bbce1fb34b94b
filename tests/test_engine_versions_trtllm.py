"""TensorRT-LLM version families (engines/versions/trtllm-*.yaml) and the kernel facts a
scenario's ``engine.version`` selects: the decode attention kernel's KV reads (MMHA before
0.7.0: once per query head), the all-reduce choice and the router dtype."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.api import predict
from perfmodel.engine_comm import custom_eligible
from perfmodel.engines import EngineFamily, decode_kv_reads, get_engine, overlay
from perfmodel.errors import SpecError
from perfmodel.formats import engine_weight_formats
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import get_model
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan


@pytest.mark.parametrize("version", ["0.5.0", "0.6.1", "0.6.99"])
def test_releases_before_xqa_run_mmha_reading_kv_per_query_head(version):
    spec = get_engine("trtllm", version)
    assert spec.version == "0.6"
    assert spec.attention.decode_kernel == "mmha"
    assert decode_kv_reads("trtllm", version) == "query_head"


def test_current_file_and_generic_read_each_kv_head_once():
    assert decode_kv_reads("trtllm") == "kv_head"
    assert decode_kv_reads("trtllm", "1.0.0") == "kv_head"
    assert decode_kv_reads("generic") == "kv_head"
    assert decode_kv_reads("vllm", "0.7.0", "v1") == "kv_head"


def test_releases_without_a_family_are_refused_by_name():
    with pytest.raises(SpecError, match=r"0\.6: 0\.5\.0\.\.0\.7\.0"):
        get_engine("trtllm", "0.8.0")


def test_a_family_names_only_known_attention_facts():
    base = get_engine("trtllm")
    fam = EngineFamily(extends="trtllm", version="x", ranges=[{"since": "0.1.0"}],
                       attention={"decode_kv_reads": "per_token"})
    with pytest.raises(Exception, match="decode_kv_reads"):
        overlay(base, fam)


def _decode_core(model_id, tp, reads, b=2, kv_len=1000, kv="fp8"):
    m = get_model(model_id)
    prec = O.Precision.inference("fp8", "fp8", kv)
    shard = O.Shard(tp=tp, decode_kv_reads=reads)
    (op,) = O.attention_ops(m, b, 1, kv_len, O.attention_pairs(1, kv_len), shard, prec,
                            True, "decode")
    return op


def test_mmha_reads_llama2_70b_cache_once_per_query_head_by_hand():
    """Llama-2-70B at TP 4: 16 query heads and 2 KV heads per GPU, head dim 128. A decode
    step of 2 sequences over 1000 fp8 positions reads K and V (2 x 128 B per head and
    position): 2 x 1000 x 2 x 256 = 1,024,000 B once per KV head; MMHA's 16 blocks per
    sequence each load their KV head: 2 x 1000 x 16 x 256 = 8,192,000 B. Q read / O
    written: 2 x 16 x 256 x 1 B (fp8 activations) = 8,192 B either way."""
    once = _decode_core("llama-2-70b", 4, "kv_head")
    per_q = _decode_core("llama-2-70b", 4, "query_head")
    assert float(once.bytes) == pytest.approx(1_024_000 + 8_192)
    assert float(per_q.bytes) == pytest.approx(8_192_000 + 8_192)
    assert once.shape == (2 * 2, 1000) and per_q.shape == (2 * 16, 1000)  # streams
    assert float(per_q.flops) == float(once.flops)  # the same arithmetic


def test_mmha_changes_nothing_for_mha_or_prefill():
    assert float(_decode_core("llama-2-7b", 1, "query_head").bytes) == float(
        _decode_core("llama-2-7b", 1, "kv_head").bytes)
    m = get_model("llama-2-70b")
    prec = O.Precision.inference("fp8", "fp8", "fp8")
    pre = [O.attention_ops(m, 1, 128, 128, O.attention_pairs(128, 128),
                           O.Shard(tp=4, decode_kv_reads=r), prec, True, "prefill")[0].bytes
           for r in ("kv_head", "query_head")]
    assert float(pre[0]) == float(pre[1])


def _scenario(engine):
    sc = {"kind": "inference", "model": "llama-2-70b",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
          "parallelism": {"tp": 4, "pp": 1},
          "inference": {"batch": 64, "prompt_len": 128, "output_len": 512,
                        "weight_dtype": "fp8", "activation_dtype": "fp8", "kv_dtype": "fp8"}}
    if engine:
        sc["engine"] = engine
    return sc


def test_scenario_version_selects_the_decode_kernel():
    """Only engine.version 0.6.1 (MMHA) slows decode; the current TensorRT-LLM file and the
    generic engine read each KV head once and differ only in their other kernel facts."""
    old = predict(_scenario({"name": "trtllm", "version": "0.6.1"}))
    gen = predict(_scenario(None))
    assert old.tpot_s > gen.tpot_s * 1.05
    assert old.ttft_s == pytest.approx(gen.ttft_s, rel=1e-9)  # prefill kernels unchanged


def test_version_selects_the_all_reduce_and_router_facts():
    h100 = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=8))
    span = GroupSpan(size=4, local=4, nodes=1)
    assert bool(np.all(custom_eligible("trtllm", 1e5, span, h100)))
    # 0.6.x builds use NCCL unless --use_custom_all_reduce (build.py, performance page)
    assert not bool(np.any(custom_eligible("trtllm", 1e5, span, h100, "0.6.1")))
    fm = (("experts", "nvfp4"),)
    assert dict(engine_weight_formats(fm, "nvfp4", "trtllm"))["router"] == "bf16"
    assert engine_weight_formats(fm, "nvfp4", "trtllm", "0.6.1") == fm  # no MoE before 0.7
