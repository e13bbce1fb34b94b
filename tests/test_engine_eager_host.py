"""Host floor of steps an engine runs without CUDA graphs (serving.engine.EagerHost; issue 9):
which steps run eagerly is an engine fact (engines/<id>.yaml overheads.cuda_graphs), the
host time per kernel is the measured torch dispatch figure of frameworks/_common.yaml."""

from dataclasses import replace

import numpy as np
import pytest
import yaml

from perfmodel.engines import get_engine
from perfmodel.inference import forward_pass
from perfmodel.paths import data_dir
from perfmodel.resolve import resolve
from perfmodel.serving.engine import EagerHost, Engine, eager_host
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.serving.requests import Requests


def _dispatch_forward_s() -> float:
    """Read straight from the data file (not through perfmodel.frameworks)."""
    with open(data_dir("frameworks") / "_common.yaml") as f:
        return float(yaml.safe_load(f)["dispatch"]["forward_s"])


def _instance(model: str, engine: str | dict, device: str, tp: int, prompt: int = 512,
              **inference):
    sc = {"kind": "serving", "name": "eager", "model": model, "engine": engine,
          "system": {"device": device, "num_gpus": tp}, "parallelism": {"tp": tp},
          "inference": {"prompt_len": prompt, "output_len": 16, **inference},
          "serving": {"arrival": {"process": "closed", "concurrency": 2}, "num_requests": 4}}
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    return dep, wl


def test_sglang_facts_say_extend_runs_eager_and_issue_overlaps():
    o = get_engine("sglang").overheads
    assert o.cuda_graphs.prefill is False  # enable_piecewise_cuda_graph False (0.5.7)
    assert o.cuda_graphs.decode is True
    assert o.eager_host == "overlapped"


def test_generic_engine_has_no_floor():
    dep, _ = _instance("llama-3.1-8b", "generic", "h100-sxm5-80gb", 1)
    assert eager_host(dep.instances[0].cost) is None


def test_floor_is_kernels_of_the_pass_times_measured_dispatch():
    dep, _ = _instance("llama-3.1-8b", "sglang", "h100-sxm5-80gb", 1)
    cost = dep.instances[0].cost
    host = eager_host(cost)
    assert host is not None and host.prefill and not host.decode
    # kernels counted by hand from the pass's operator list: op.count x op.launches
    one = replace(cost.plan, replicas=1, batch=1)
    res = forward_pass(cost.model, cost.system, one, cost.profile, 1.0, 1.0, 1.0, 1.0,
                       "prefill", 1.0, True)
    kernels = sum(float(np.max(op.count)) * float(np.max(op.launches))
                  for op in res.op_times.ops)
    assert host.kernels == pytest.approx(kernels)
    assert kernels >= cost.model.num_layers  # at least one kernel per layer
    assert host.seconds == pytest.approx(kernels * _dispatch_forward_s())
    # SGLang's cuda_graph_max_bs on an 80 GB GPU at TP 1 (reserve bucket below 92,160 MiB:
    # 256 for tp < 4; engines/sglang.yaml memory.reserve)
    assert host.decode_max == 256


def test_step_rule_overlapped_and_serial():
    h = EagerHost(kernels=1000, per_kernel_s=2e-6, prefill=True, decode=False, decode_max=8,
                  serial=False)
    assert h.seconds == pytest.approx(2e-3)
    assert h.step(1e-3, prefill=True, decodes=0) == pytest.approx(2e-3)  # host-bound
    assert h.step(5e-3, prefill=True, decodes=0) == pytest.approx(5e-3)  # GPU-bound
    assert h.step(1e-3, prefill=False, decodes=8) == 1e-3  # captured decode
    assert h.step(1e-3, prefill=False, decodes=9) == pytest.approx(2e-3)  # above capture
    s = replace(h, serial=True)
    assert s.step(5e-3, prefill=True, decodes=0) == pytest.approx(7e-3)


def test_engine_applies_floor_to_prefill_steps_only():
    dep, wl = _instance("llama-3.1-8b", "sglang", "h100-sxm5-80gb", 1)
    inst = dep.instances[0]
    reqs = Requests(wl)
    e = Engine(0, inst.cost, inst.kv, 16, reqs, iteration_overhead_s=1e-3)
    gpu = inst.cost.step_time([(512, 512)], None, 1)  # no overhead
    e.host = replace(e.host, per_kernel_s=1.0 / e.host.kernels)  # a 1 s floor
    e.waiting.append(0)
    slot = e.admit_head(0.0, 512)
    st = e.iteration(0.0, [(slot, 512)], decode=False)
    assert gpu < 1.0
    assert st.end == pytest.approx(1e-3 + 1.0)  # overhead + max(GPU, host)
    e.host = replace(e.host, per_kernel_s=1e-12)  # floor below the GPU: unchanged
    st = e.iteration(0.0, [(slot, 512)], decode=False)
    assert st.end == pytest.approx(1e-3 + gpu)


def test_pr12160_eager_step_bounds():
    """Independent check, not a fitted number: sgl-project/sglang PR #12160 logs a DeepSeek-V3
    TP8 prefill of 1 new token at 82.6 ms eager ('forward cost') and 23.1 ms replayed as a
    CUDA graph. The floor from the torch dispatcher's per-kernel cost over perfmodel's kernels
    is a lower bound of SGLang's eager step (its Python layers, Triton launches and the
    kernels perfmodel fuses are not in it): the modelled eager step stays below 82.6 ms, and
    the host floor alone is far below it (docs/engines.md, 'Eager steps')."""
    dep, _ = _instance("deepseek-v3", "sglang", "h200-sxm-141gb", 8, prompt=64,
                       weight_dtype="fp8_block", activation_dtype="fp8", kv_dtype="bf16")
    cost = dep.instances[0].cost
    host = eager_host(cost)
    gpu = cost.step_time([(1, 2)], None, 1)
    eager = float(host.step(gpu, prefill=True, decodes=0))
    assert gpu <= eager < 82.6e-3
    assert host.seconds < 0.25 * 82.6e-3


def test_trtllm_pytorch_backend_graphs_generation_only_and_trt_engines_no_floor():
    o = get_engine("trtllm").overheads  # 1.0+ PyTorch backend (TorchLlmArgs)
    assert (o.cuda_graphs.decode, o.cuda_graphs.decode_max_batch, o.cuda_graphs.prefill) == \
        (True, 128, False)
    assert o.eager_host == "overlapped"
    old = get_engine("trtllm", "0.6.1").overheads  # TensorRT engines: no torch dispatch
    assert old.eager_host is None and old.cuda_graphs.prefill is None


def test_vllm_v1_token_limit_is_the_largest_capture_size():
    g = get_engine("vllm").overheads.cuda_graphs  # 0.10.1.1: min(2 x max_num_seqs, 512)
    assert (g.decode, g.prefill, g.max_tokens, g.max_tokens_per_seq) == (True, True, 512, 2)
    assert get_engine("vllm", "0.6.3").overheads.eager_host is None  # V0: not stated
    h = EagerHost(kernels=100, per_kernel_s=1e-3, prefill=False, decode=False, decode_max=None,
                  serial=False, tokens_per_seq=2, tokens_cap=512)
    assert h.for_batch(256).max_tokens == 512 and h.for_batch(8).max_tokens == 16
    h = h.for_batch(256)
    assert h.step(1e-3, prefill=True, decodes=0, tokens=512) == 1e-3  # piecewise graph
    assert h.step(1e-3, prefill=True, decodes=0, tokens=513) == pytest.approx(0.1)  # no graph


def test_engine_decode_run_above_the_capture_limit_pays_the_floor():
    dep, wl = _instance("llama-3.1-8b", "vllm", "h100-sxm5-80gb", 1)
    inst = dep.instances[0]
    e = Engine(0, inst.cost, inst.kv, 4, Requests(wl))  # max_num_seqs 4: graphs up to 8 tokens
    assert e.host.max_tokens == 8
    e.host = replace(e.host, per_kernel_s=1.0 / e.host.kernels)  # a 1 s floor
    for _ in range(3):
        e.waiting.append(len(e.waiting))
    slots = [e.admit_head(0.0, 8) for _ in range(3)]
    st = e.iteration(0.0, [(s, 8) for s in slots[:1]], decode=False)  # 8 tokens: graph
    assert st.end < 1.0
    st = e.iteration(0.0, [(s, 8) for s in slots[1:]], decode=False)  # 16 tokens: no graph
    assert st.end == pytest.approx(1.0)
