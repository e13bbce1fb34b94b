"""Host floor of steps an engine runs without CUDA graphs (serving.engine.EagerHost; issue 9):
which steps run eagerly is an engine fact (engines/<id>.yaml overheads.cuda_graphs), the
host time of an eager forward is the engine's own per-layer figure where its file gives one
(SGLang: overheads.eager_layer_s moe, from PR #12160's eager DeepSeek-V3 forward), else the
measured torch dispatch figure of frameworks/_common.yaml per kernel. Step times are checked
against hand numbers: overhead + max(GPU, host) on an eager step, overhead + GPU on a replayed
one."""

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


def _sglang_layer_s(kind: str = "moe") -> float | None:
    """SGLang's eager host time per decoder layer of a dense or MoE model, read straight from
    its engine file (None: not given)."""
    with open(data_dir("engines") / "sglang.yaml") as f:
        value = yaml.safe_load(f)["overheads"]["eager_layer_s"][kind]
    return None if value is None else float(value)


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


def _kernels(cost) -> float:
    """Kernels of one pass counted from the pass's operator list: op.count x op.launches."""
    one = replace(cost.plan, replicas=1, batch=1)
    res = forward_pass(cost.model, cost.system, one, cost.profile, 1.0, 1.0, 1.0, 1.0,
                       "prefill", 1.0, True)
    return cost.pp * sum(float(np.max(op.count)) * float(np.max(op.launches))
                         for op in res.op_times.ops)


def _decoding(e: Engine, n: int, ctx: int) -> None:
    """Put ``n`` sequences of ``ctx`` tokens in the batch, all decoding."""
    for i in range(n):
        e.add(i % len(e.reqs.output), target=ctx, done=ctx, ctx=ctx)


def test_generic_engine_has_no_floor():
    dep, _ = _instance("llama-3.1-8b", "generic", "h100-sxm5-80gb", 1)
    assert dep.instances[0].host is None


def test_the_deployment_builds_the_floor_from_the_engine_file():
    """The floor is built where the engine is resolved (serving.deploy), from the engine file
    and the dispatch figure passed in: eager_host itself reads no file and keeps no state."""
    dep, _ = _instance("llama-3.1-8b", "sglang", "h100-sxm5-80gb", 1)
    cost = dep.instances[0].cost
    host = dep.instances[0].host
    assert _sglang_layer_s("dense") is None  # a dense model: the torch dispatch per kernel
    assert host == eager_host(get_engine("sglang"), cost, _dispatch_forward_s())
    assert host.per_layer_s is None
    assert eager_host(None, cost, 1e-6) is None  # generic: no engine file
    assert eager_host(get_engine("sglang"), cost, 7e-6).per_kernel_s == 7e-6


def test_floor_is_kernels_of_the_pass_times_measured_dispatch():
    dep, _ = _instance("llama-3.1-8b", "sglang", "h100-sxm5-80gb", 1)
    cost, host = dep.instances[0].cost, dep.instances[0].host
    assert host is not None and host.prefill and not host.decode
    kernels = _kernels(cost)
    assert host.kernels == pytest.approx(kernels)
    assert kernels >= cost.model.num_layers  # at least one kernel per layer
    assert host.seconds == pytest.approx(kernels * _dispatch_forward_s())
    # SGLang's cuda_graph_max_bs on an H100 (nvidia-smi 81,559 MiB: the bucket below 92,160
    # MiB, 256 at tp < 4; sgl-project/sglang server_args.py _handle_gpu_memory_settings)
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


def test_sglang_extend_step_with_and_without_the_floor():
    """SGLang runs extend batches eagerly (enable_piecewise_cuda_graph False) with the kernel
    issue overlapped: an extend step lasts overhead + max(GPU, kernels x per-kernel host), by
    hand. With the bare torch dispatch (3.3 us per kernel) the 8B model's 512-token prefill is
    GPU-bound (the step is the GPU's); with a host 10x the GPU's time it is the host's."""
    dep, wl = _instance("llama-3.1-8b", "sglang", "h100-sxm5-80gb", 1)
    inst = dep.instances[0]
    kernels, d, o = _kernels(inst.cost), _dispatch_forward_s(), 1e-3
    inst = replace(inst, host=replace(inst.host, per_kernel_s=d))
    gpu = inst.cost.step_time([(512, 512)], None, 1)  # no overhead, no floor
    e = Engine(0, inst.cost, inst.kv, 16, Requests(wl), iteration_overhead_s=o,
               host=inst.host)
    e.waiting.append(0)
    slot = e.admit_head(0.0, 512)
    hand = o + max(gpu, kernels * d)
    assert kernels * d < gpu  # measured dispatch: GPU-bound
    assert e.iteration(0.0, [(slot, 512)], decode=False).end == pytest.approx(hand)
    slow = 10 * gpu / kernels  # a host 10x slower than the GPU: host-bound
    e.host = replace(inst.host, per_kernel_s=slow)
    assert e.iteration(0.0, [(slot, 512)], decode=False).end == \
        pytest.approx(o + kernels * slow)
    assert o + kernels * slow > o + gpu


def test_sglang_decode_run_above_the_capture_limit_pays_the_floor():
    """A decode run (Engine.decode_run) of SGLang on one H100: 256 sequences replay the
    captured graph (cuda_graph_max_bs 256 of the 80 GB bucket at tp 1), 257 run eagerly. By
    hand: each step = overhead + GPU at 256, overhead + max(GPU, kernels x per-kernel host) at
    257. The bare torch dispatch (3.3 us per kernel) leaves a small model's decode GPU-bound; a
    host 3x the GPU's step shows the floor."""
    dep, wl = _instance("gpt2-small", "sglang", "h100-sxm5-80gb", 1, prompt=64)
    inst = dep.instances[0]
    kernels, d, o = _kernels(inst.cost), _dispatch_forward_s(), 2e-4
    inst = replace(inst, host=replace(inst.host, per_kernel_s=d))
    assert inst.host.decode_max == 256
    for n, eager in ((256, False), (257, True)):
        e = Engine(0, inst.cost, inst.kv, 300, Requests(wl), iteration_overhead_s=o,
                   host=inst.host)
        _decoding(e, n, 64)
        gpu = inst.cost.decode_run_times(e.ctx[:n], 3, 0.0)  # GPU only, no overhead
        st = e.decode_run(0.0, 3, stop_at_finish=True, interruptible=False)
        # measured dispatch: kernels x 3.3 us below the GPU's step either way
        hand = o + (np.maximum(gpu, kernels * d) if eager else gpu)
        np.testing.assert_allclose(st.step_times, hand, rtol=1e-12)
        slow = 3 * float(gpu.max()) / kernels
        e.host = replace(e.host, per_kernel_s=slow)
        st = e.decode_run(0.0, 3, stop_at_finish=True, interruptible=False)
        hand = o + (np.full(3, kernels * slow) if eager else gpu)
        np.testing.assert_allclose(st.step_times, hand, rtol=1e-12)
        np.testing.assert_allclose(st.cum, np.cumsum(hand), rtol=1e-12)


def test_pr12160_eager_deepseek_forward():
    """The MoE figure against its source, by hand: sgl-project/sglang PR #12160 logs a
    DeepSeek-V3 prefill of 1 new token at 82.6 ms eager ('forward cost') and 23.1 ms replayed
    as a CUDA graph. SGLang's step rule is max(host, GPU) (overheads.eager_host overlapped) and
    the GPU's time is at most the graph's 23.1 ms, so the eager step is the host's: DeepSeek-V3's
    61 decoder layers (config.json num_hidden_layers) x the file's per-layer figure give back
    82.6 ms, and the modelled eager step of that 1-token pass is 82.6 ms."""
    per_layer = _sglang_layer_s("moe")
    assert get_engine("sglang").overheads.eager_host == "overlapped"
    assert max(61 * per_layer, 23.1e-3) == pytest.approx(82.6e-3, rel=5e-4)
    dep, _ = _instance("deepseek-v3", "sglang", "h200-sxm-141gb", 8, prompt=64,
                       weight_dtype="fp8_block", activation_dtype="fp8", kv_dtype="bf16")
    cost, host = dep.instances[0].cost, dep.instances[0].host
    assert host.layers == 61 and host.per_layer_s == per_layer
    gpu = cost.step_time([(1, 2)], None, 1)
    assert gpu < 23.1e-3
    assert float(host.step(gpu, prefill=True, decodes=0)) == pytest.approx(82.6e-3, rel=5e-4)


def test_moe_host_time_does_not_follow_the_kernel_list():
    """The per-layer figure does not depend on how perfmodel's kernel list counts a format: the
    B200 nvfp4 pass (a scaled_fp4_quant per GEMM) has more kernels than the H200 fp8_block one,
    but its eager host time is the same 61 layers x the figure (82.6 ms, not 1,510 / 1,205 x)."""
    fp8, _ = _instance("deepseek-v3", "sglang", "h200-sxm-141gb", 8, prompt=64,
                       weight_dtype="fp8_block", activation_dtype="fp8", kv_dtype="bf16")
    fp4, _ = _instance("deepseek-v3", "sglang", "b200", 8, prompt=64,
                       weight_dtype="nvfp4", activation_dtype="nvfp4", kv_dtype="bf16")
    a, b = fp8.instances[0].host, fp4.instances[0].host
    assert b.kernels > a.kernels
    assert a.seconds == b.seconds == pytest.approx(82.6e-3, rel=5e-4)


def test_pr1401_dense_figure_is_the_dispatch_fallback_within_its_bracket():
    """No dense figure: PR #1401's eager Meta-Llama-3-8B decode (8.23 ms, 7.35 ms as a graph;
    bench_latency batch 1, flashinfer) is GPU-bound, so it brackets the host's time between
    8.23 - 7.35 = 0.88 ms (were it serial) and 8.23 ms. The fallback (perfmodel's kernels x
    the torch dispatch 3.3 us) lies inside that bracket."""
    assert _sglang_layer_s("dense") is None
    dep, _ = _instance("llama-3.1-8b", "sglang", "h100-sxm5-80gb", 1)
    host = dep.instances[0].host
    assert host.per_layer_s is None
    assert host.seconds == pytest.approx(host.kernels * _dispatch_forward_s())
    assert 8.23e-3 - 7.35e-3 < host.seconds < 8.23e-3


def test_moe_figure_cross_checks_on_deepseek_v2_lite():
    """Independent of the MoE figure (not what it was taken from): DeepSeek-V2-Lite's eager
    step, 27 layers x the per-layer figure (36.6 ms), lies between SGLang's own (PR #1401:
    DeepSeek-Coder-V2-Lite with MLA, 6.22 ms as a CUDA graph, '4x faster' than eager: ~24.9 ms)
    and another Python engine's (LightLLM blog, ModelTC/lightllm-blog
    _posts/2025-01-22-cudagraph.md at c1310483: 40.74 ms eager, 16.40 ms with graphs, batch 2)."""
    path = str(data_dir("engines").parent / "tests/data/hf_configs/deepseek-v2-lite.json")
    dep, _ = _instance(path, "sglang", "h200-sxm-141gb", 1, prompt=64)
    host = dep.instances[0].host
    assert host.layers == 27
    assert 4 * 6.22e-3 < host.seconds < 40.74e-3


def test_trtllm_tensorrt_engine_family_has_no_floor():
    """TensorRT-LLM 0.5 - 0.6 run built TensorRT engines from the C++ runtime: no torch
    dispatcher per kernel, so no floor on any step."""
    dep, _ = _instance("llama-3.1-8b", {"name": "trtllm", "version": "0.6.1"},
                       "h100-sxm5-80gb", 1)
    assert dep.instances[0].host is None


def test_vllm_v1_token_limit_is_the_largest_capture_size():
    """vLLM V1: a step of up to min(2 x max_num_seqs, 512) tokens replays piecewise graphs,
    a larger one runs without a graph; the V0 families state no graph facts (no floor)."""
    h = EagerHost(kernels=100, per_kernel_s=1e-3, prefill=False, decode=False, decode_max=None,
                  serial=False, tokens_per_seq=2, tokens_cap=512)
    assert h.for_batch(256).max_tokens == 512 and h.for_batch(8).max_tokens == 16
    h = h.for_batch(256)
    assert h.step(1e-3, prefill=True, decodes=0, tokens=512) == 1e-3  # piecewise graph
    assert h.step(1e-3, prefill=True, decodes=0, tokens=513) == pytest.approx(0.1)  # no graph
    dep, _ = _instance("llama-3.1-8b", {"name": "vllm", "version": "0.6.3"},
                       "h100-sxm5-80gb", 1)
    assert dep.instances[0].host is None


def test_engine_step_above_the_token_limit_pays_the_floor():
    dep, wl = _instance("llama-3.1-8b", "vllm", "h100-sxm5-80gb", 1)
    inst = dep.instances[0]
    e = Engine(0, inst.cost, inst.kv, 4, Requests(wl), host=inst.host)  # graphs up to 8 tokens
    assert e.host.max_tokens == 8
    e.host = replace(e.host, per_kernel_s=1.0 / e.host.kernels)  # a 1 s floor
    for _ in range(3):
        e.waiting.append(len(e.waiting))
    slots = [e.admit_head(0.0, 8) for _ in range(3)]
    st = e.iteration(0.0, [(s, 8) for s in slots[:1]], decode=False)  # 8 tokens: graph
    assert st.end < 1.0
    st = e.iteration(0.0, [(s, 8) for s in slots[1:]], decode=False)  # 16 tokens: no graph
    assert st.end == pytest.approx(1.0)
