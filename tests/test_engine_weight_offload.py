"""inference.offload.weights under engine vllm / sglang (QA 1205d D7): the engine's KV budget
subtracts only the weights left on the GPU, and each forward streams the offloaded bytes over
the host link as the engine's mechanism does (overlap false: vLLM / SGLang --cpu-offload-gb,
not overlapped; overlap true: their layer prefetch, overlapped). What an engine cannot do is
refused naming the field. Expected figures are hand calculations from the model's config
(Llama-3-8B: 8,030,261,248 parameters, bf16), the H100's host link (PCIe Gen5 x16, 63 GB/s per
direction, hardware_specs/interconnects/pcie-gen5-x16.yaml) and the H100 reference profile's
host-link efficiency (0.88, calibration/h100-sxm5-80gb.reference.json defaults.host_link)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from perfmodel.api import as_scenario, predict
from perfmodel.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
LLAMA8B_PARAMS = 8_030_261_248  # embed 2 x 128256 x 4096 + 32 x 218,112,000 + final norm 4096
LAYER_BF16 = 2 * 218_112_000  # one Llama-3-8B decoder layer: attention 41,943,040 + MLP
#                               176,160,768 + norms 8,192 parameters
VLLM_V1 = {"name": "vllm", "version": "0.24.0", "variant": "v1"}
SGLANG = {"name": "sglang", "version": "0.5.23"}


def _llama(engine, offload=None, device="h100-sxm5-80gb"):
    inf = {"batch": 1, "prompt_len": 1024, "output_len": 8, "weight_dtype": "bf16",
           "kv_dtype": "bf16"}
    if offload is not None:
        inf["offload"] = offload
    return as_scenario({"kind": "inference", "model": "llama-3-8b",
                        "system": {"device": device, "num_gpus": 1},
                        "parallelism": {"tp": 1, "pp": 1}, "engine": engine, "inference": inf})


def _h100_link() -> float:
    """B/s per direction the offloaded weights stream over: the H100's host link x the
    reference profile's host-link efficiency."""
    link = yaml.safe_load((ROOT / "hardware_specs/interconnects/pcie-gen5-x16.yaml").read_text())
    prof = json.loads((ROOT / "calibration/h100-sxm5-80gb.reference.json").read_text())
    return link["bandwidth_gbps"] * 1e9 * prof["defaults"]["host_link"]


OFFLOADED = 0.25 * 2 * LLAMA8B_PARAMS  # bytes per GPU: --cpu-offload-gb 3.74


@pytest.mark.parametrize("engine", [VLLM_V1, SGLANG])
def test_kv_budget_gains_the_offloaded_bytes_with_cpu_offload_gb(engine):
    """vLLM: KV = u T - W_gpu - A - N - G; SGLang: KV = f M - W_gpu: with --cpu-offload-gb the
    weights on the GPU drop by the offloaded bytes, every other term stays, so the KV pool
    grows by exactly them."""
    base = predict(_llama(engine)).engine
    off = predict(_llama(engine, {"weights": 0.25, "overlap": False})).engine
    assert base["weights_bytes"] == pytest.approx(2 * LLAMA8B_PARAMS, rel=1e-12)
    assert off["weights_bytes"] == pytest.approx(2 * LLAMA8B_PARAMS - OFFLOADED, rel=1e-12)
    assert off["kv_cache_bytes"] - base["kv_cache_bytes"] == pytest.approx(OFFLOADED, rel=1e-9)
    assert off["offloaded_weights_bytes"] == pytest.approx(OFFLOADED, rel=1e-12)
    assert off["offload_flags"].startswith("--cpu-offload-gb")
    assert off["offload_mode"] == ("uva" if engine is VLLM_V1 else "copy")


def test_vllm_prefetch_buffer_is_outside_its_kv_budget():
    """vLLM's prefetch offloader allocates its buffer (one offloaded decoder layer at the
    default --offload-prefetch-step 1) after the weights were measured, so the KV pool is the
    same as with --cpu-offload-gb and the buffer takes the headroom outside
    gpu_memory_utilization."""
    uva = predict(_llama(VLLM_V1, {"weights": 0.25, "overlap": False}))
    pre = predict(_llama(VLLM_V1, {"weights": 0.25, "overlap": True}))
    assert pre.engine["kv_cache_bytes"] == pytest.approx(uva.engine["kv_cache_bytes"], rel=1e-12)
    assert pre.breakdown["memory"]["offload_buffers"] == pytest.approx(LAYER_BF16, rel=1e-12)
    assert pre.memory_per_gpu_bytes - uva.memory_per_gpu_bytes == pytest.approx(LAYER_BF16,
                                                                                 rel=1e-9)


def test_step_time_streams_the_offloaded_bytes_as_the_engine_does():
    """--cpu-offload-gb is not overlapped (vLLM V1 kernels read the host copy in place; SGLang
    copies it on the compute stream): every pass takes offloaded bytes / link longer. The
    prefetch offloader overlaps the copy, and at batch 1 on PCIe the decode step is the copy."""
    stream = OFFLOADED / _h100_link()  # 72.4 ms
    for engine in (VLLM_V1, SGLANG):
        base = predict(_llama(engine))
        off = predict(_llama(engine, {"weights": 0.25, "overlap": False}))
        assert off.ttft_s - base.ttft_s == pytest.approx(stream, rel=1e-9)
        assert off.tpot_s - base.tpot_s == pytest.approx(stream, rel=1e-9)
    pre = predict(_llama(VLLM_V1, {"weights": 0.25, "overlap": True}))
    assert pre.tpot_s == pytest.approx(stream, rel=1e-9)


def test_sglang_prefetch_offloads_deepseek_experts_and_counts_the_onloaded_layer():
    """SGLang's --offload-group-size offloads routed experts of DeepSeek-V2/V3 layers and
    onloads one offloaded layer before the KV budget reads the free memory: for the same
    offloaded bytes its pool is smaller than --cpu-offload-gb's by one MoE layer's experts on
    the GPU (256 / ep 8 = 32 experts of 3 x 7168 x 2048 bf16 parameters = 2,818,572,288
    bytes)."""
    def sc(offload):
        inf = {"batch": 1, "prompt_len": 1024, "output_len": 8, "weight_dtype": "bf16",
               "kv_dtype": "bf16", "offload": offload}
        return as_scenario({"kind": "inference", "model": "deepseek-v3",
                            "system": {"device": "b200", "num_gpus": 8},
                            "parallelism": {"tp": 8, "ep": 8}, "engine": SGLANG,
                            "inference": inf})
    layer = 32 * 3 * 7168 * 2048 * 2
    copy = predict(sc({"weights": 0.3, "overlap": False})).engine  # --cpu-offload-gb
    off = predict(sc({"weights": 0.3, "overlap": True})).engine
    assert off["offloaded_weights_bytes"] == pytest.approx(copy["offloaded_weights_bytes"])
    assert copy["kv_cache_bytes"] - off["kv_cache_bytes"] == pytest.approx(layer, rel=1e-9)
    assert off["breakdown"]["offload_buffers"] == pytest.approx(layer, rel=1e-12)
    with pytest.raises(SpecError, match=r"inference\.offload\.weights: .*routed experts"):
        predict(sc({"weights": 0.99, "overlap": True}))


@pytest.mark.parametrize("engine, offload, field", [
    (VLLM_V1, {"weights": 1.0, "overlap": False}, "inference.offload.weights"),  # embeddings stay
    (SGLANG, {"weights": 1.0, "overlap": False}, "inference.offload.weights"),
    (SGLANG, {"weights": 0.3, "overlap": True}, "inference.offload.overlap"),  # not DeepSeek
    ({"name": "vllm", "version": "0.14.0", "variant": "v1"}, {"weights": 0.3, "overlap": True},
     "inference.offload.overlap"),  # the prefetch offloader is from 0.17.0
    ({"name": "vllm", "version": "0.24.0", "variant": "mrv2"}, {"weights": 0.3},
     "inference.offload.weights"),  # Model Runner V2 installs no offloader
    (VLLM_V1, {"kv_cache": 0.5}, "inference.offload.kv_cache"),
    ("trtllm", {"weights": 0.3}, "inference.offload.weights"),
])
def test_what_the_engine_cannot_do_is_refused_naming_the_field(engine, offload, field):
    with pytest.raises(SpecError) as err:
        predict(_llama(engine, offload))
    assert str(err.value).startswith(field)
