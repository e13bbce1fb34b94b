"""TensorRT-LLM releases after 1.3.0rc20 (engines/trtllm.yaml ``ranges`` and sources trtkvv2,
trtreleases, trtdocs14).

The facts were read up to 1.3.0rc20. From the KV cache manager V2 per-model defaults (PR #16942
gpt-oss, opened 2026-07-28; 1.3.0rc23 on PyPI 2026-07-30; PR #16060 DeepSeek-V3, PR #19004 Llama)
a default launch of those models schedules with KVCacheV2Scheduler, MAX_UTILIZATION only
(scheduler_v2.py at 00746ef9, lines 203-208), which perfmodel's in-flight scheduler
(GUARANTEED_NO_EVICT) does not describe: the range ends at 1.3.0rc23 and every later release
(PyPI 1.3.0rc23 - rc29, 1.4.0rc0, 1.4.0rc1; API docs up to 1.4.0rc4) is refused with the remedy.
1.3.0rc21 / rc22 keep the 1.3.0rc20 facts, whose config defaults the 1.3.0rc27 and 1.4.0rc4 API
reference still shows (free_gpu_memory_fraction 0.9, tokens_per_block 32, block reuse on,
chunked prefill off, decode CUDA graphs without padding up to 128).

Hand numbers: Llama-3.1-8B (32 layers, 8 KV heads x 128, bf16 KV: 2 x 32 x 8 x 128 x 2 B =
131,072 B per token) on one H100.
"""

from __future__ import annotations

import math

import pytest

import perfmodel as pm
from perfmodel.engines import default_version_note, get_engine
from perfmodel.errors import PerfModelError, SpecError

GIB = 2**30


@pytest.mark.parametrize("version", ["1.3.0rc20", "1.3.0rc21", "1.3.0rc22", "1.3.0rc22.post1"])
def test_the_releases_up_to_rc22_resolve_to_the_1_0_facts(version):
    spec = get_engine("trtllm", version)
    assert spec.version == "1.0"
    assert spec.memory.budget == "free_after_peak_fraction" and spec.memory.fraction == 0.9
    assert spec.memory.block_size == 32
    s = spec.scheduler
    assert (s.max_num_seqs, s.max_num_batched_tokens) == (2048, 8192)
    assert s.chunked_prefill is False and s.prefix_caching is True
    assert s.policy == "inflight" and s.preemption is None  # GUARANTEED_NO_EVICT


@pytest.mark.parametrize("version", ["1.3.0rc23", "1.3.0rc23.post1", "1.3.0rc24", "1.3.0rc29",
                                     "1.3.0", "1.4.0rc0", "1.4.0rc1", "1.4.0rc4", "1.4.0"])
def test_releases_that_may_run_the_v2_scheduler_are_refused_with_the_remedy(version):
    with pytest.raises(SpecError) as err:
        get_engine("trtllm", version)
    msg = str(err.value)
    assert msg.startswith(f"engine.version: trtllm has no facts for version '{version}'")
    assert "pin a version before 1.3.0rc23" in msg and "omit engine.version" in msg
    assert "\n" not in msg


def test_no_version_names_where_the_facts_stop():
    assert get_engine("trtllm").version == "1.0"
    note = default_version_note("trtllm", None)
    assert "1.3.0rc23" in note and "\n" not in note


def test_decode_cuda_graph_sizes_are_the_unpadded_default_by_hand():
    """CudaGraphConfig without padding, max_batch_size 0 -> 128: range(1, 32) + [32, 64, 128]
    (llm_args._generate_cuda_graph_batch_sizes; 1.3.0rc27 DecodeCudaGraphConfig unchanged)."""
    graphs = get_engine("trtllm", "1.3.0rc22").overheads.cuda_graphs
    assert graphs.decode_batch_sizes == [*range(1, 32), 32, 64, 128]
    assert len(graphs.decode_batch_sizes) == 34 and graphs.decode_padding is False


def _llama8b(version: str) -> pm.Prediction:
    return pm.predict({"kind": "inference", "model": "llama-3.1-8b",
                       "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
                       "parallelism": {"tp": 1},
                       "engine": {"name": "trtllm", "version": version},
                       "inference": {"batch": 8, "prompt_len": 1024, "output_len": 128}})


def test_kv_pool_at_rc22_is_nine_tenths_of_the_memory_after_the_peak_by_hand():
    e = _llama8b("1.3.0rc22").engine
    assert e["kv_bytes_per_token"] == 2 * 32 * 8 * 128 * 2  # 131,072 B
    free = e["device_memory_bytes"] - e["weights_bytes"] - e["activation_peak_bytes"] \
        - e["non_torch_bytes"]
    assert e["kv_cache_bytes"] == pytest.approx(0.9 * free)
    blocks = math.floor(0.9 * free / (131_072 * 32))
    assert e["kv_cache_tokens"] == blocks * 32
    # the same facts as the release the gpt-oss validation cases name (1.2.0rc2)
    assert _llama8b("1.2.0rc2").engine["kv_cache_tokens"] == e["kv_cache_tokens"]


def test_a_scenario_naming_1_4_0rc1_is_refused():
    with pytest.raises(PerfModelError, match=r"pin a version before 1\.3\.0rc23"):
        _llama8b("1.4.0rc1")
