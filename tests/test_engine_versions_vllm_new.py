"""vLLM 0.20.0 - 0.24.x (engines/versions/vllm-0.20.yaml, vllm-0.22.yaml, vllm-0.22-mrv2.yaml):
the family a release resolves to, the first release not read refused, and the CUDA-graph memory estimate vLLM subtracts from the KV
budget from 0.20.0, each against a hand calculation from vLLM's code (v0.21.0 sdist:
vllm/config/vllm.py _set_cudagraph_sizes, vllm/v1/cudagraph_dispatcher.py
initialize_cudagraph_keys, vllm/v1/worker/gpu_model_runner.py profile_cudagraph_memory,
vllm/v1/worker/gpu_worker.py determine_available_memory)."""

from __future__ import annotations

import pytest

from perfmodel.engine_memory import (
    EngineShape,
    cudagraph_capture_sizes,
    cudagraph_memory_estimate,
    engine_memory,
)
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError
from perfmodel.specs.registry import get_device, get_model
from perfmodel.specs.scenario import EngineConfig

GIB, MIB = 2**30, 2**20
H100 = get_device("h100-sxm5-80gb")
LLAMA3_8B = get_model("llama-3-8b")


@pytest.mark.parametrize("version, family, fraction", [
    ("0.19.1", "0.14", 0.9),    # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default "0" in 0.19.1
    ("0.20.0", "0.20", 0.92),   # default "1" and gpu_memory_utilization 0.92 from 0.20.0
    ("0.20.2", "0.20", 0.92),
    ("0.21.0", "0.20", 0.92),
    ("0.22.0", "0.22", 0.92),   # V1 model runner: the same estimate (0.22.0 - 0.24.0 sdists)
    ("0.24.0", "0.22", 0.92),
])
def test_a_release_resolves_to_its_family(version, family, fraction):
    spec = get_engine("vllm", version)
    assert spec.version == family
    assert spec.memory.fraction == fraction
    assert (spec.memory.cuda_graph_estimate is not None) == (family != "0.14")
    assert spec.scheduler.async_scheduling is True


def test_async_scheduling_stays_on_with_pipeline_parallelism_from_0_20():
    assert get_engine("vllm", "0.19.1").scheduler.async_scheduling_with_pp is False
    assert get_engine("vllm", "0.21.0").scheduler.async_scheduling_with_pp is True


@pytest.mark.parametrize("version", ["0.25.0", "0.25.1", "0.34.0"])
def test_a_release_after_the_facts_is_refused(version):
    """0.25.0 was not read (0.25.1 makes Model Runner V2 the default for dense models, vLLM PR
    #49233): the range ends before it."""
    with pytest.raises(SpecError, match=r"newer than its newest version family 0\.22 .*0\.25\.0"):
        get_engine("vllm", version)


def test_model_runner_v2_is_a_variant_without_the_estimate():
    """0.22.0 - 0.24.x run some architectures on Model Runner V2, whose
    profile_cudagraph_memory returns 0 (vllm/v1/worker/gpu/model_runner.py): variant mrv2."""
    spec = get_engine("vllm", "0.23.0", "mrv2")
    assert spec.version == "0.22-mrv2" and spec.memory.fraction == 0.92
    assert spec.memory.cuda_graph_estimate is None
    assert cudagraph_memory_estimate(spec, LLAMA3_8B, 1024, 8192, 1, 2.0) == 0.0
    with pytest.raises(SpecError, match=r"no facts for version '0\.21\.0' variant 'mrv2'"):
        get_engine("vllm", "0.21.0", "mrv2")


def test_capture_sizes_by_hand():
    # M = min(2 x max_num_seqs, 512, max_num_batched_tokens)
    h100 = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]  # 3 + 31 + 17 = 51
    assert len(h100) == 51
    assert cudagraph_capture_sizes(1024, 8192) == h100
    assert cudagraph_capture_sizes(256, 2048) == h100  # 2 x 256 = 512 as well
    assert cudagraph_capture_sizes(8, 8192) == [1, 2, 4, 8, 16]
    # max_num_batched_tokens 100 < M: capped there and captured itself
    assert cudagraph_capture_sizes(256, 100) == [1, 2, 4, *range(8, 97, 8), 100]


def test_cuda_graph_estimate_for_llama3_8b_on_h100_by_hand():
    """G = max over modes of the first capture + sum over modes of per_graph x (graphs - 1):
    51 PIECEWISE graphs (every size) and 51 FULL graphs (sizes <= max_num_seqs 1024); the first
    capture is the activation working set of a 512-token forward (the test_engines hand formula
    of the widest step, per token), per_graph the family's 24 MiB."""
    spec = get_engine("vllm", "0.21.0")
    first = 512 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128)
    g = first + 24 * MIB * (50 + 50)
    assert cudagraph_memory_estimate(spec, LLAMA3_8B, 1024, 8192, 1, 2.0) == pytest.approx(g)
    # max_num_seqs 8: sizes 1..16 (5 piecewise), FULL only up to 8 (4 graphs)
    first8 = 16 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128)
    assert cudagraph_memory_estimate(spec, LLAMA3_8B, 8, 8192, 1, 2.0) == pytest.approx(
        first8 + 24 * MIB * (4 + 3))
    # no estimate before 0.20
    assert cudagraph_memory_estimate(get_engine("vllm", "0.19.1"), LLAMA3_8B, 1024, 8192, 1,
                                     2.0) == 0.0


def test_kv_budget_for_llama3_8b_on_one_h100_by_hand():
    """KV = 0.92 x 79.22 GiB - weights - activation peak - non-torch - G (gpu_worker.py
    determine_available_memory at v0.21.0: requested_memory - non_kv_cache_memory -
    cudagraph_memory_estimate_applied); the profile-run terms as tests/test_engines.py counts
    them for the 0.14 family."""
    spec = get_engine("vllm", "0.21.0")
    e = engine_memory(LLAMA3_8B, H100, EngineShape(tp=1), spec,
                      EngineConfig(name="vllm", version="0.21.0"), 0.7)
    weights = 8_030_261_248 * 2
    forward = 8192 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128)
    sampler = min(1024, 8192) * 128256 * (2 + 4 + 4 + 8 + 8 + 4 + 8)
    peak = max(forward, 8192 * 4096 * 2 + sampler)
    g = 512 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128) + 24 * MIB * 100
    kv = 0.92 * 79.22 * GIB - weights - peak - 0.04 * GIB - g
    per_token = 2 * 8 * 128 * 2 * 32
    assert e.kv_cache_bytes == pytest.approx(kv, rel=1e-9)
    assert e.breakdown["cuda_graph_estimate"] == pytest.approx(g)
    assert e.kv_cache_blocks == int(kv // (per_token * 16))
    # the same run on 0.19.1 (0.9, no estimate): the KV differs by G - 0.02 x 79.22 GiB
    old = engine_memory(LLAMA3_8B, H100, EngineShape(tp=1), get_engine("vllm", "0.19.1"),
                        EngineConfig(name="vllm", version="0.19.1"), 0.7)
    assert old.kv_cache_bytes - e.kv_cache_bytes == pytest.approx(g - 0.02 * 79.22 * GIB)


def test_no_estimate_on_rocm():
    """vLLM 0.21.0 gpu_worker.py estimates only 'if current_platform.is_cuda()' (0.20.x: 'not
    current_platform.is_rocm()'): an MI300X subtracts nothing."""
    spec = get_engine("vllm", "0.21.0")
    assert cudagraph_memory_estimate(spec, LLAMA3_8B, 1024, 8192, 1, 2.0, "AMD") == 0.0
    assert cudagraph_memory_estimate(spec, LLAMA3_8B, 1024, 8192, 1, 2.0, "NVIDIA") > 0.0
    e = engine_memory(LLAMA3_8B, get_device("mi300x"), EngineShape(tp=1), spec,
                      EngineConfig(name="vllm", version="0.21.0"), 0.7)
    assert "cuda_graph_estimate" not in e.breakdown
