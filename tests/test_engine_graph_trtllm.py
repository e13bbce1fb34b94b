"""TensorRT-LLM (1.0+ PyTorch backend) replays a CUDA graph only for a generation-only batch of a
captured size (engines/trtllm.yaml overheads.cuda_graphs; sources trtgraphs, trtgraphrun):
the default CudaGraphConfig (max_batch_size 0 -> 128, enable_padding False) captures
range(1, 32) + [32, 64, 128], and CUDAGraphRunner.maybe_get_cuda_graph returns no graph for
any other batch size, so decode batches 33-63 and 65-127 run eagerly; with enable_padding a
batch up to 128 is padded to a captured size and replays one."""

from dataclasses import replace

import numpy as np
import pytest
import yaml

from perfmodel.engines import get_engine
from perfmodel.paths import data_dir
from perfmodel.resolve import resolve
from perfmodel.serving.engine import Engine, eager_host
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.serving.requests import Requests


def _default_sizes(max_batch_size: int = 128) -> set[int]:
    """TensorRT-LLM's CudaGraphConfig._generate_cuda_graph_batch_sizes without padding,
    written out from the source (llm_args.py at 7b437aaa), not read from the engine file."""
    sizes = [*range(1, 32), 32, 64, 128]
    sizes += [2**i for i in range(8, int(np.ceil(np.log2(max_batch_size))))]
    return {s for s in sizes if s <= max_batch_size} | {max_batch_size}


@pytest.fixture(scope="module")
def inst():
    sc = {"kind": "serving", "name": "trt", "model": "llama-3.1-8b", "engine": "trtllm",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 64, "output_len": 16},
          "serving": {"arrival": {"process": "closed", "concurrency": 2}, "num_requests": 4}}
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    return deployment_for(rs.scenario, rs.system, rs.profile, inf, wl).instances[0], wl


def test_captured_decode_sizes_are_the_default_list(inst):
    host = inst[0].host
    graphed = {n for n in range(1, 300) if not host.eager(False, n, n)}
    assert graphed == _default_sizes()
    assert host.eager(False, 40, 40) and host.eager(False, 33, 33) and host.eager(False, 127, 127)
    assert not host.eager(False, 64, 64) and not host.eager(False, 31, 31)
    assert host.eager(False, 129, 129)  # above the largest
    assert host.eager(True, 0, 64)  # a batch with context requests: no graph


def test_padding_on_pads_to_a_captured_size(inst):
    """enable_padding: a generation batch up to the largest captured size is rounded up to one
    (CUDAGraphRunner._get_padded_batch) and replays its graph; above it, none."""
    spec = get_engine("trtllm")
    graphs = spec.overheads.cuda_graphs.model_copy(update={"decode_padding": True})
    padded = spec.model_copy(update={"overheads": spec.overheads.model_copy(
        update={"cuda_graphs": graphs})})
    host = eager_host(padded, inst[0].cost, 3.3e-6)
    assert not host.eager(False, 40, 40) and not host.eager(False, 100, 100)
    assert host.eager(False, 129, 129)


def test_decode_run_at_40_is_eager_and_at_64_replays(inst):
    """Engine.decode_run by hand: overhead + GPU at 64 (captured), overhead + max(GPU, kernels x
    per-kernel host) at 40. With the measured dispatch figure the 8B model's decode is
    GPU-bound; a host 3x the GPU's step shows the floor."""
    it, wl = inst
    with open(data_dir("frameworks") / "_common.yaml") as f:
        d = float(yaml.safe_load(f)["dispatch"]["forward_s"])
    o = 5e-4
    for n, eager in ((40, True), (64, False)):
        e = Engine(0, it.cost, it.kv, 2048, Requests(wl), iteration_overhead_s=o, host=it.host)
        for i in range(n):
            e.add(i % 4, target=64, done=64, ctx=64)
        gpu = it.cost.decode_run_times(e.ctx[:n], 2, 0.0)
        st = e.decode_run(0.0, 2, stop_at_finish=True, interruptible=False)
        hand = o + (np.maximum(gpu, it.host.kernels * d) if eager else gpu)
        np.testing.assert_allclose(st.step_times, hand, rtol=1e-12)
        slow = 3 * float(gpu.max()) / it.host.kernels
        e.host = replace(e.host, per_kernel_s=slow)
        st = e.decode_run(0.0, 2, stop_at_finish=True, interruptible=False)
        hand = o + (np.full(2, it.host.kernels * slow) if eager else gpu)
        np.testing.assert_allclose(st.step_times, hand, rtol=1e-12)
