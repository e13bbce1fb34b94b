"""How a serving engine sizes its KV cache at start-up, from its sourced facts (engines/*.yaml).

Each engine budgets device memory its own way (the rule is ``memory.budget`` of its file):

* ``total_fraction`` (vLLM, vllm/v1/worker/gpu_worker.py + vllm/utils/mem_utils.py):
  KV = u x T - W - A - N, with T the device memory CUDA reports, u = gpu_memory_utilization,
  W the weights, A the torch activation peak of a profiling forward over max_num_batched_tokens
  dummy tokens plus the sampler on min(max_num_seqs, max_num_batched_tokens) rows of
  vocabulary-wide logits, N the non-torch memory (NCCL, custom all-reduce, cuBLAS; more at
  TP >= 2 on an NVLS fabric). CUDA graphs are captured afterwards, outside u x T, except
  that from 0.20 the budget also subtracts G, vLLM's estimate of their memory
  (``cudagraph_memory_estimate``, ``memory.cuda_graph_estimate``): KV = u x T - W - A - N - G.
  Older vLLM profilers differ, as their version files say (engines/versions/vllm-*.yaml):
  0.2.x before PR #2031 subtracted torch's allocated peak only (no N); PR #2031 to 0.3.x
  subtracted all memory in use (N plus the CUDA context) and, until PR #2151, every TP
  all-reduce output of the profile run (``allreduce_outputs_bytes``); V0 samples on the
  driver rank with its top-p/top-k sampler (more bytes per logit); V1 at 0.7 computed logits
  for every dummy token and counted the CUDA context.
* ``init_free_fraction`` (SGLang, model_runner.profile_max_num_token):
  KV = (M - W) - M x (1 - f) = f x M - W, with M the free memory after the distributed init
  (T minus the CUDA context and what the distributed init allocated: NCCL / custom all-reduce
  buffers, SGLang's "Init torch distributed ends. mem usage" line) and f = mem_fraction_static
  (by default from server_args.py's reserve rule on nvidia-smi's memory.total).
* ``free_after_peak_fraction`` (TensorRT-LLM PyTorch backend, pyexecutor/_util.py):
  KV = f x (T - W - A - N), f = free_gpu_memory_fraction, A the activation peak of
  max_num_tokens dummy context tokens, N the non-torch memory (here the CUDA context).
* ``context_upfront`` (llama.cpp): KV for n_ctx tokens is allocated at start-up.

The result is what the engine logs (vLLM "GPU KV cache size: N tokens", "Maximum concurrency
for X tokens per request: Yx"; SGLang "max_total_num_tokens"), with the memory broken down by
the engine's own categories. Pure: no file I/O (engine files come in through ``engines``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .engines import EngineSpec, MemoryFacts, ReserveRule, gpu_memory_mib, mxfp4_pad_multiples
from .memory import inference_weight_bytes, inference_workspace_bytes, kv_cache_bytes_per_token
from .ops import expert_shards, padded_expert_shape
from .parameters import param_counts
from .specs.hardware import DeviceSpec
from .specs.model import ModelSpec
from .specs.scenario import EngineConfig
from .stages import stage_params

GIB = 2**30
MIB = 2**20


@dataclass(frozen=True)
class EngineShape:
    """The instance an engine serves: one model copy over tp x pp GPUs, and its dtypes."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    etp: int | None = None  # None: the experts spread as inference spreads them (expert_split)
    redundant_experts: int = 0  # EPLB's redundant expert copies over the ep ranks
    attention_dp: int = 1
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    act_bytes: float = 2.0
    group_size: int = 128
    nvls: bool = False  # the GPUs' fabric does in-switch reductions (NVLink SHARP)
    weight_formats: tuple = ()  # (class, dtype) overrides of weight_dtype (perfmodel.formats)
    # layers per pipeline stage of an uneven split (pipeline.stage_partition; None: L / pp):
    # a GPU holds its own stage's weights and KV, so the largest stage's GPU is the one reported
    pp_layers: tuple | None = None
    # inference.offload: the share of the weights kept in host memory and whether the next
    # layer's are prefetched while one computes (weight_offload: how each engine does it)
    offload_weights: float = 0.0
    offload_overlap: bool = True
    offload_kv: float = 0.0


#: what each budget rule's memory fraction is a share of (engines/<id>.yaml memory.budget, with
#: the source each file cites): vLLM gpu_memory_utilization bounds everything the engine
#: allocates (vllm.yaml [cache] / [worker]); SGLang mem_fraction_static is the share of the
#: memory free at start-up kept for the static pool, weights + KV (sglang.yaml [args] /
#: [runner], model_runner.py); TensorRT-LLM free_gpu_memory_fraction is the share of the memory
#: left after the profiling run's peak (weights + activations + non-torch) that the KV cache
#: takes (trtllm.yaml [util]: _torch/pyexecutor/_util.py KvCacheCreator, available_kv_mem =
#: (total - peak) x fraction). One wording for messages (engine_fit) and the start-up line
#: (engine_report).
FRACTION_OF = {
    "total_fraction": "the device's memory (weights, activation peak and KV cache)",
    "init_free_fraction": "the memory free at start-up (weights + KV pool)",
    "free_after_peak_fraction": "the memory left after weights and the activation peak (for "
                                "the KV cache)",
}


@dataclass(frozen=True)
class EngineMemory:
    """An engine's start-up memory plan for one GPU of the instance (bytes unless named)."""

    engine: str
    version: str
    device_memory_bytes: float  # as the driver reports it (the budget's base)
    device_memory_source: str  # cuda | nvidia-smi | nominal (DeviceSpec.usable_memory_source)
    budget: str  # the engine file's memory.budget rule (what fraction_name is a share of)
    fraction_name: str | None
    fraction: float | None
    weights_bytes: float
    activation_peak_bytes: float
    non_torch_bytes: float
    kv_cache_bytes: float
    kv_bytes_per_token: float
    kv_block_size: int
    kv_cache_blocks: int
    kv_cache_tokens: int
    max_model_len: int
    max_concurrency: float  # requests of max_model_len tokens the KV cache holds at once
    max_num_seqs: int | None
    max_num_batched_tokens: int | None
    breakdown: dict[str, float]  # by the engine's categories; sums to the memory it plans for
    problems: list[str] = field(default_factory=list)
    # MXFP4 experts: the engine's MoE backend on this device and the bytes its padding and
    # kept scale copies add to the checkpoint's weights (engines/<id>.yaml moe.mxfp4)
    mxfp4_backend: str | None = None
    mxfp4_extra_bytes: float = 0.0
    # the release the scenario named (engine.version), when it is not the family's own label:
    # the start-up line says which family's facts answer for it
    asked_version: str | None = None
    # inference.offload.weights as the engine runs it (weight_offload): bytes per GPU kept in
    # host memory (not in weights_bytes), the engine's mechanism and its flags
    offloaded_weights_bytes: float = 0.0
    offload_mode: str | None = None
    offload_flags: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sglang_default_fraction(rule: ReserveRule, gpu_mem_mb: float, tp: int, pp: int,
                            chunked_prefill_size: int | None = None,
                            graph_bs: int | None = None, dp_attention: int = 1
                            ) -> tuple[float, int]:
    """SGLang's default mem_fraction_static and chunked_prefill_size for a GPU of
    ``gpu_mem_mb`` MiB (server_args.py ``_handle_gpu_memory_settings``): reserved = 512 +
    1.5 x max(chunk, 2048) + 2 x cuda_graph_max_bs + 128 x tp x pp MB; with
    ``--enable-dp-attention`` (``dp_attention`` = dp_size > 1) + 3 x cuda_graph_max_bs x dp_size
    ("DP attention needs more padding") and, for cuda_graph_max_bs > 300, + 1.5 x
    cuda_graph_max_bs x dp_size; at least 10 GiB above 60 GiB; f = round((gpu_mem - reserved)
    / gpu_mem, 3). The chunk is the undivided one: _handle_data_parallelism divides it by
    dp_size only after this rule ran (sglang v0.5.6.post2 server_args.py __post_init__ order)."""
    bucket = rule.bucket(gpu_mem_mb)
    chunk = chunked_prefill_size or bucket.chunked_prefill_size
    if graph_bs is None:
        graph_bs = rule.graph_bs(gpu_mem_mb, tp)
    reserved = (rule.base_mb + rule.per_prefill_token_mb * max(chunk, rule.min_prefill_tokens)
                + rule.per_graph_batch_mb * graph_bs + rule.per_tp_pp_mb * tp * pp)
    if dp_attention > 1:
        reserved += rule.per_graph_batch_dp_mb * graph_bs * dp_attention
        if rule.large_graph_above is not None and graph_bs > rule.large_graph_above:
            reserved += rule.large_graph_dp_mb * graph_bs * dp_attention
    if gpu_mem_mb > rule.floor_above_mb:
        reserved = max(reserved, rule.floor_mb)
    return round((gpu_mem_mb - reserved) / gpu_mem_mb, 3), chunk


def engine_tp(shape: EngineShape, spec: EngineSpec) -> int:
    """The tensor-parallel size the engine itself sees (its ``tp_size``), which its reserve and
    distributed-init rules are written in. SGLang runs attention DP inside the TP group
    (``memory.attention_dp_in_tp_group``; layers/dp_attention.py
    ``compute_dp_attention_world_info``: attn_tp_size = tp_size // dp_size), so with
    ``--enable-dp-attention`` its tp_size is the attention tp x attention_dp; vLLM deploys each
    DP rank as a separate engine core with its own tp (docs serving/data_parallel_deployment)."""
    return spec.engine_tp(shape.tp, shape.attention_dp)


def profile_activation_bytes(model: ModelSpec, tokens: float, rows: float, tp: int,
                             act_bytes: float, sampler_bytes_per_logit: float,
                             moe_chunk_tokens: int | None = None) -> float:
    """Torch activation peak of a profiling run: the larger of its two phases. The forward:
    the widest layer step for ``tokens`` tokens (``memory.inference_workspace_bytes``); for a
    MoE model with ``moe_chunk_tokens`` also the fused-MoE output cache of min(tokens, chunk)
    x top_k x hidden activations (vLLM fused_moe.py ``intermediate_cache3``; the expert-FFN
    caches are the workspace's MLP terms). Then the sampler: its vocabulary-wide tensors for
    ``rows`` rows (logits gathered over TP: the full vocabulary per GPU) while the forward's
    output hidden states (tokens x hidden) are still referenced and its intermediates are
    freed (vLLM V1 gpu_model_runner.profile_run: ``_dummy_run`` then ``_dummy_sampler_run``;
    V0 model_runner.execute_model: forward, then compute_logits and sample)."""
    forward = float(inference_workspace_bytes(model, tokens, 0, tp, act_bytes))
    if model.moe and moe_chunk_tokens:
        forward += min(tokens, moe_chunk_tokens) * model.moe.top_k * model.hidden_size * act_bytes
    sampler = rows * model.vocab_size * sampler_bytes_per_logit
    if not sampler:
        return forward
    return max(forward, tokens * model.hidden_size * act_bytes + sampler)


def cudagraph_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int,
                            max_tokens: int = 512, tokens_per_seq: int = 2) -> list[int]:
    """The token counts vLLM captures CUDA graphs for by default (no cudagraph_capture_sizes
    given, no speculative decoding, performance mode not 'interactivity'): with M =
    min(max_num_seqs x 2, 512, max_num_batched_tokens), [1, 2, 4] up to M, then every 8 below
    min(M + 1, 256), then every 16 from 256 to M, plus max_num_batched_tokens when it is at
    most M (vLLM v0.21.0 vllm/config/vllm.py VllmConfig._set_cudagraph_sizes L1525-1585;
    ``max_tokens`` / ``tokens_per_seq``: engines/vllm.yaml overheads.cuda_graphs)."""
    m = min(max_num_seqs * tokens_per_seq, max_tokens, max_num_batched_tokens)
    sizes = [i for i in (1, 2, 4) if i <= m]
    if m >= 8:
        sizes += list(range(8, min(m + 1, 256), 8))
    if m >= 256:
        sizes += list(range(256, m + 1, 16))
    if max_num_batched_tokens <= m:
        sizes.append(max_num_batched_tokens)
    return sorted(set(sizes))


def cudagraph_memory_estimate(spec: EngineSpec, model: ModelSpec, max_num_seqs: int,
                              max_num_batched_tokens: int, tp: int, act_bytes: float,
                              vendor: str | None = None) -> float:
    """G, the CUDA-graph memory vLLM >= 0.20 subtracts from the KV budget (bytes per GPU; 0
    where the engine file has no ``memory.cuda_graph_estimate``).

    vLLM v0.21.0 vllm/v1/worker/gpu_model_runner.py ``profile_cudagraph_memory`` (L6049-6138,
    the same rule in 0.20.0 - 0.24.0): per mode (PIECEWISE, FULL; CUDAGraphDispatcher
    .get_capture_descs, largest first) it captures the two largest graphs into a fresh pool
    and reads the free memory before and after each; first = the first capture, per_graph =
    max(the second capture's increase, 1 MiB); G = max over modes of first + sum over modes of
    per_graph x (graphs of the mode - 1) (L6127-6130: the modes share one pool at run time).
    PIECEWISE graphs: every capture size (``cudagraph_capture_sizes``); FULL (decode-only
    batches, the default cudagraph_mode FULL_AND_PIECEWISE): the sizes up to max_num_seqs
    (cudagraph_dispatcher.py initialize_cudagraph_keys, uniform_decode_query_len 1). vLLM
    measures both figures; here the first capture is the activation working set of a forward
    over the largest size (``profile_activation_bytes`` without the sampler: the graph pool's
    intermediates) and per_graph the measured figure the family file cites
    (``per_graph_mib``). G's error is that figure's: per_graph x (graphs - 1) is most of it
    (issue #45178 / PR #45197: the linear extrapolation overestimates where later graphs
    reuse the pool). 0 on a device whose ``vendor`` the estimate's ``vendors`` leave out (vLLM
    estimates on CUDA only: gpu_worker.py 'if current_platform.is_cuda() and ...')."""
    est = spec.memory.cuda_graph_estimate
    if est is None:
        return 0.0
    if est.vendors and vendor is not None and vendor.lower() not in est.vendors:
        return 0.0
    g = spec.overheads.cuda_graphs
    sizes = cudagraph_capture_sizes(max_num_seqs, max_num_batched_tokens,
                                    g.max_tokens or 512, g.max_tokens_per_seq or 2)
    if not sizes:
        return 0.0
    per_graph = max(est.per_graph_mib, est.min_per_graph_mib) * MIB
    counts = {"piecewise": len(sizes), "full": sum(1 for s in sizes if s <= max_num_seqs)}
    first = profile_activation_bytes(model, sizes[-1], 0, tp, act_bytes, 0.0,
                                     spec.memory.moe_chunk_tokens)
    return first + sum(per_graph * max(counts[mode] - 1, 0) for mode in est.modes)


def _non_torch_gib(m: MemoryFacts, eng_tp: int, pp: int, nvls: bool) -> float:
    """GiB the engine's distributed init holds outside torch (NCCL, custom all-reduce) at its
    own ``tp_size`` (``engine_tp``): the multi-GPU figure when tp x pp > 1, plus the NVLS
    extra at tp >= 2 on an NVLS fabric (``memory.non_torch_gib_*``)."""
    gib = (m.non_torch_gib_tp_multi if eng_tp * pp > 1 else m.non_torch_gib_tp1) or 0.0
    if eng_tp > 1 and nvls:
        gib += m.non_torch_gib_nvls_extra or 0.0
    return gib


def allreduce_outputs_bytes(model: ModelSpec, tokens: float, pp: int, act_bytes: float) -> float:
    """Bytes of every tensor-parallel all-reduce output of one forward over ``tokens`` tokens on
    one pipeline stage: two per layer (attention output and MLP down projection, the
    row-parallel layers) plus the vocabulary-parallel embedding, each tokens x hidden
    activations. vLLM before PR #2151 (Dec 2023) could not reuse these while NCCL's stream held
    them (issue #2150: "when using TP, the activation memory for all reduce is not reused";
    PR #2151 set TORCH_NCCL_AVOID_RECORD_STREAMS=1), so its profile run peaked with all of
    them alive."""
    return (2 * model.num_layers / pp + 1) * tokens * model.hidden_size * act_bytes


#: vLLM read at the PyPI sdists named (file:line at 0.24.0 unless said):
#: --cpu-offload-gb (UVAOffloadConfig.cpu_offload_gb, "space in GiB to offload to CPU, per
#: GPU", config/offload.py:23) offloads parameters of the decoder layers only
#: (models/utils.py:666 make_layers passes the layer generator to get_offloader().wrap_modules;
#: embeddings and LM head stay), layer by layer from the first until the bytes reach the limit
#: (offloader/uva.py:74-107); on V1 the GPU reads them in place over the host link
#: (uva.py:104 get_accelerator_view_from_cpu_tensor, zero-copy), on V0 (0.6.3
#: models/utils.py:337-385 maybe_offload_to_cpu) each forward copies the module's state to the
#: GPU on the compute stream (functional_call): either way the transfer is not overlapped.
#: --offload-group-size / --offload-num-in-group / --offload-prefetch-step (the "weight
#: offloading v2" of PR #29941, the vLLM GB200 blog's prefill setup; offloader/prefetch.py,
#: first released in 0.17.0, absent from the 0.16.0 sdist) offloads whole decoder layers (the
#: last num_in_group of every group_size, prefetch.py:180) and copies the next one on a copy
#: stream while the layers before it compute (prefetch.py:213-233): overlapped. Its GPU buffer
#: pool (prefetch_step copies of one offloaded layer, default step 1, prefetch.py:339-343) is
#: allocated in post_init (v1/worker/gpu_model_runner.py:5330), after load_model's
#: DeviceMemoryProfiler measured the weights (gpu_model_runner.py:5171) and before the profile
#: run resets the peak (utils/mem_utils.py:290), so the KV budget does not subtract it.
#: The memory profiler counts what torch allocated on the GPU while loading
#: (platforms/cuda.py:350-355 max_memory_allocated; pinned host memory is not in it), so the KV
#: budget subtracts the on-GPU weights only (gpu_worker.py:436-462).
#: Model Runner V2 (vllm/v1/worker/gpu/model_runner.py, 0.22 - 0.24) never calls
#: set_offloader (only v1/worker/gpu_model_runner.py:896 does), so make_layers gets the
#: NoopOffloader and the flags do nothing (vllm-project/vllm PR #51462 / #51413, 2026-08).
VLLM_OFFLOAD_SINCE = "0.6.3"  # --cpu-offload-gb: the oldest sdist read that has it
VLLM_PREFETCH_SINCE = "0.17.0"  # offloader/prefetch.py first in the 0.17.0 sdist
#: SGLang 0.5.23 (and 0.5.5.post3) sglang/srt/utils/offloader.py: --cpu-offload-gb (an int,
#: GiB: create_offloader L68-71) is OffloaderV1 (L131-195): parameters of the decoder layers
#: (utils/common.py make_layers L1666) moved to pinned host memory until the bytes reach the
#: limit, each forward copying the module's state to the GPU on the compute stream
#: (_get_offloaded_device_state, functional_call): not overlapped. --offload-group-size
#: (OffloaderV2, L198-287, mode cpu) prefetches the next offloaded layer on its own stream
#: (L290-301, start_onload L355-364): overlapped; it offloads only what the model's
#: offloader_kwargs name, which only DeepSeek-V2/V3 give (models/deepseek_v2.py:2973-2996: the
#: routed experts' w13 / w2 weights and NVFP4 block scales of each offloaded MoE layer); any
#: other model has no submodule accessor and fails at load. post_init onloads prefetch_step
#: layers (default 1, fields/exec_.py:1080-1083) in load_model (model_runner.py:1330), before
#: the KV budget reads the free memory (mem_cache/kv_cache_configurator.py:2990-3038:
#: rest = free - M (1 - f)), so it counts the on-GPU weights plus that layer.
SGLANG_PREFETCH_FAMILIES = ("deepseek",)


@dataclass(frozen=True)
class WeightOffload:
    """inference.offload.weights as an engine runs it, per GPU."""

    mode: str  # uva | copy (on the compute stream) | prefetch (overlapped)
    flags: str  # the engine's own flags for it
    offloaded_bytes: float  # kept in host memory, streamed over the host link every forward
    buffer_bytes: float  # GPU buffers holding the onloaded layer(s)
    buffer_in_budget: bool  # the engine's KV budget subtracts the buffers


def _version_below(version: str | None, bound: str) -> bool:
    from .engines import version_key

    return version is not None and version_key(version) < version_key(bound)


def weight_offload(spec: EngineSpec, cfg, model: ModelSpec, shape: EngineShape,
                   weights: float, decoder: float, experts: float,
                   stage_layers: float) -> WeightOffload | None:
    """How ``spec``'s engine keeps the share ``shape.offload_weights`` of the ``weights`` bytes
    one GPU holds in host memory (``decoder``: the decoder layers' bytes, ``experts``: the
    routed experts'), or a SpecError naming the field where it does not (module constants
    above: VLLM_* / SGLANG_*). ``offload.overlap`` picks the mechanism: false the engine's
    --cpu-offload-gb (not overlapped), true its layer prefetch. None without offloading."""
    from .errors import SpecError

    share, eng = shape.offload_weights, spec.id
    version, variant = getattr(cfg, "version", None), getattr(cfg, "variant", None)
    if shape.offload_kv > 0 and eng in ("vllm", "sglang", "trtllm"):
        raise SpecError(f"inference.offload.kv_cache with engine {eng} is not modelled: "
                        "perfmodel streams the offloaded KV share every pass, while vLLM "
                        "--kv-offloading-size and SGLang's hierarchical cache keep evicted "
                        "blocks in host memory for reuse and attend over the GPU pool; omit "
                        "it or use engine generic")
    if share <= 0:
        return None
    if eng not in ("vllm", "sglang"):
        raise SpecError(f"inference.offload.weights with engine {eng} is not modelled: no "
                        f"source read for how {spec.name} keeps weights in host memory and "
                        "sizes its KV cache then; omit it or use engine generic or vllm/sglang")
    offloaded = share * weights
    name = f"{spec.name} {version}" if version else spec.name
    if eng == "vllm":
        if variant == "mrv2" or spec.version.endswith("mrv2"):
            raise SpecError("inference.offload.weights with vllm variant mrv2 is not modelled: "
                            "Model Runner V2 never installs vLLM's offloader, so "
                            "--cpu-offload-gb and --offload-group-size are silently ignored "
                            "(vLLM PR #51462); name engine.variant v1 to offload")
        if _version_below(version, VLLM_OFFLOAD_SINCE):
            raise SpecError(f"inference.offload.weights with {name}: --cpu-offload-gb is "
                            f"modelled from {VLLM_OFFLOAD_SINCE} (the oldest source read); "
                            "omit offload or name a newer engine.version")
        if shape.offload_overlap and _version_below(version, VLLM_PREFETCH_SINCE):
            raise SpecError(f"inference.offload.overlap: {name} has no prefetching weight "
                            f"offloader (--offload-group-size, from {VLLM_PREFETCH_SINCE}); "
                            "set overlap: false for its --cpu-offload-gb, which the kernels "
                            "read over the host link without overlap")
        room, what = decoder, "its decoder layers"
    elif shape.offload_overlap:
        if model.family not in SGLANG_PREFETCH_FAMILIES or model.moe is None:
            raise SpecError("inference.offload.overlap: SGLang's prefetching offloader "
                            "(--offload-group-size) offloads only DeepSeek-V2/V3 routed "
                            f"experts; {model.family} models fail to load with it. Set "
                            "overlap: false for --cpu-offload-gb (copied each forward, not "
                            "overlapped)")
        room, what = experts, "its routed experts (the layers --offload-group-size offloads)"
    else:
        room, what = decoder, "its decoder layers"
    if offloaded > room * (1 + 1e-9):
        raise SpecError(f"inference.offload.weights: {share:g} of the {weights / GIB:.2f} GiB "
                        f"per GPU is {offloaded / GIB:.2f} GiB, more than {spec.name} can "
                        f"offload: {what}, {room / GIB:.2f} GiB "
                        f"(at most {room / weights:.3f})")
    if not shape.offload_overlap:
        uva = eng == "vllm" and variant != "v0" and not spec.version.endswith("v0") \
            and not _version_below(version, "0.8.0")
        gib = offloaded / GIB
        flag = f"{gib:.2f}" if eng == "vllm" else f"{math.ceil(gib - 1e-9)}"  # SGLang: an int
        return WeightOffload("uva" if uva else "copy", f"--cpu-offload-gb {flag}", offloaded,
                             0.0, False)
    if eng == "vllm":  # whole decoder layers, one prefetched at a time (prefetch_step 1)
        layer = decoder / max(stage_layers, 1.0)
        return WeightOffload("prefetch", f"--offload-group-size / --offload-num-in-group "
                             f"({offloaded / decoder:.0%} of the decoder layers), "
                             "--offload-prefetch-step 1", offloaded, layer, False)
    moe_layers = stage_layers * model.num_moe_layers / model.num_layers
    layer = experts / max(moe_layers, 1.0)
    return WeightOffload("prefetch", f"--offload-group-size / --offload-num-in-group "
                         f"({offloaded / experts:.0%} of the MoE layers' experts), "
                         "--offload-prefetch-step 1", offloaded, layer, True)


def engine_memory(model: ModelSpec, device: DeviceSpec, shape: EngineShape, spec: EngineSpec,
                  cfg: EngineConfig, cuda_context_gib: float) -> EngineMemory:
    """The KV cache ``spec``'s engine allocates on one GPU of a tp x pp instance of ``model`` on
    ``device``, with the scenario's overrides ``cfg`` (module docstring: the four rules).
    ``cuda_context_gib`` is the memory a CUDA context takes before the engine measures free
    memory (the calibration profile's memory_overheads.cuda_context_gib)."""
    if getattr(cfg, "version", None) or getattr(cfg, "variant", None):
        from .engines import get_engine  # the scenario names a release: its family's facts

        spec = get_engine(spec.id, cfg.version, cfg.variant)
    from .engine_checks import check_engine_config, engine_max_len

    check_engine_config(spec, cfg, model)  # what the engine refuses at start-up
    m = spec.memory
    tp, pp = shape.tp, shape.pp
    eng_tp = engine_tp(shape, spec)  # the engine's own tp_size: its reserve / init rules' tp
    total = device.usable_memory_bytes
    gib_total = total / GIB
    layers = None if shape.pp_layers is None else float(max(shape.pp_layers))
    ep = moe_shards(model, shape)  # (E + redundant) / ep experts per GPU (ops.experts_per_gpu)
    stage = stage_params(param_counts(model), tp, pp, ep, expert_split(shape),
                         model.tie_embeddings, layers=layers)
    weights = float(inference_weight_bytes(stage.max, shape.weight_dtype, shape.group_size))
    from .formats import engine_weight_formats, weight_byte_counts

    # every tensor class at its own format (a mixed checkpoint; the router as the engine
    # builds it: engines/<id>.yaml moe.router_dtype)
    formats = engine_weight_formats(shape.weight_formats, shape.weight_dtype, spec.id,
                                    getattr(cfg, "version", None), getattr(cfg, "variant", None))
    counts = weight_byte_counts(param_counts(model), shape.weight_dtype, formats,
                                shape.group_size)

    def on_stage(c) -> float:  # bytes of the largest pipeline stage's share
        return float(stage_params(c, tp, pp, ep, expert_split(shape),
                                  model.tie_embeddings, layers=layers).max)

    if formats:
        weights = on_stage(counts)
    backend, factor = mxfp4_expert_factor(spec, model, shape, device, formats)
    extra = (on_stage(replace(counts, expert=counts.expert * factor)) - on_stage(counts)
             if factor != 1.0 else 0.0)
    weights += extra
    stage_layers = model.num_layers / pp if layers is None else layers
    # inference.offload.weights: the share kept in host memory as the engine does it; its
    # budget subtracts what stays on the GPU (weight_offload)
    off = None
    if shape.offload_weights > 0 or shape.offload_kv > 0:
        whole = stage_params(counts, tp, pp, ep, expert_split(shape), model.tie_embeddings,
                             layers=layers)
        ends = stage_params(_ends_only(counts), tp, pp, ep, expert_split(shape),
                            model.tie_embeddings, layers=layers)
        off = weight_offload(spec, cfg, model, shape, weights,
                             float(whole.first - ends.first) * weights / float(whole.max),
                             float(whole.expert) * weights / float(whole.max), stage_layers)
    offloaded = off.offloaded_bytes if off else 0.0
    buffers = off.buffer_bytes if off else 0.0
    counted = buffers if off and off.buffer_in_budget else 0.0
    weights -= offloaded  # on the GPU from here on
    per_token = float(kv_cache_bytes_per_token(model, shape.kv_dtype, tp)) * stage_layers
    block = cfg.block_size or m.block_size
    seqs = cfg.max_num_seqs or spec.max_num_seqs(gib_total, device.id)
    batched = cfg.max_num_batched_tokens or spec.max_num_batched_tokens(gib_total, device.id)
    max_len = engine_max_len(spec, cfg, model)
    context = cuda_context_gib * GIB
    fraction = getattr(cfg, spec_fraction_field(spec), None) if m.fraction_name else None
    act = non_torch = graphs = 0.0
    problems: list[str] = []
    if m.budget == "total_fraction":
        fraction = fraction or m.fraction or 1.0
        tokens = batched or max_len
        rows = tokens if m.sampler_rows == "tokens" else min(seqs or tokens, tokens)
        act = profile_activation_bytes(model, tokens, rows, tp, shape.act_bytes,
                                       m.sampler_bytes_per_logit or 0.0,
                                       m.moe_chunk_tokens) if m.profile_run else 0.0
        held = allreduce_outputs_bytes(model, tokens, pp, shape.act_bytes) \
            if m.profile_run and m.tp_allreduce_outputs_held and tp > 1 else 0.0
        gib = _non_torch_gib(m, eng_tp, pp, shape.nvls)
        ctx = context if m.cuda_context_counted else 0.0
        non_torch = (gib * GIB if m.non_torch_counted else 0.0) + ctx
        graphs = cudagraph_memory_estimate(spec, model, seqs or tokens, tokens, tp,
                                           shape.act_bytes, device.vendor)
        kv = fraction * total - weights - counted - act - held - non_torch - graphs
        breakdown = {"weights": weights, "activation_peak": act}
        if buffers:
            breakdown["offload_buffers"] = buffers
        if held:
            breakdown["allreduce_outputs_held"] = held
        breakdown["non_torch"] = non_torch - ctx
        if ctx:
            breakdown["cuda_context"] = ctx
        if graphs:
            breakdown["cuda_graph_estimate"] = graphs
        # buffers the budget did not subtract take the headroom outside it
        breakdown |= {"kv_cache": max(kv, 0.0),
                      "outside_budget": (1 - fraction) * total - (buffers - counted)}
        act += held
    elif m.budget == "init_free_fraction":
        smi_mb = gpu_memory_mib(device)
        if fraction is None and m.reserve is not None:
            fraction, chunk = sglang_default_fraction(m.reserve, smi_mb, eng_tp, pp, batched,
                                                      dp_attention=int(shape.attention_dp))
            batched = batched or chunk
        fraction = fraction or m.fraction or 1.0
        # the distributed init (NCCL, custom all-reduce) takes memory before M is measured
        dist = _non_torch_gib(m, eng_tp, pp, shape.nvls) * GIB
        init_free = total - context - dist
        kv = fraction * init_free - weights - counted
        non_torch = context + dist
        breakdown = {"weights": weights, **({"offload_buffers": buffers} if buffers else {}),
                     "kv_cache": max(kv, 0.0),
                     "reserved": (1 - fraction) * init_free, "cuda_context": context}
        if dist:
            breakdown["distributed_init"] = dist
    elif m.budget == "free_after_peak_fraction":
        fraction = fraction or m.fraction or 1.0
        tokens = batched or max_len
        act = profile_activation_bytes(model, tokens, 0, tp, shape.act_bytes, 0.0) \
            if m.profile_run else 0.0
        non_torch = context
        free = total - weights - act - non_torch
        kv = fraction * free
        breakdown = {"weights": weights, "activation_peak": act, "non_torch": non_torch,
                     "kv_cache": max(kv, 0.0), "unallocated": (1 - fraction) * max(free, 0.0)}
    else:  # context_upfront
        kv = max_len * per_token
        non_torch = context
        free = total - weights - kv - context
        breakdown = {"weights": weights, "kv_cache": kv, "cuda_context": context,
                     "free": max(free, 0.0)}
        if free < 0:
            problems.append(f"weights + KV for n_ctx = {max_len} tokens need "
                            f"{(weights + kv + context) / GIB:.2f} GiB of the device's "
                            f"{total / GIB:.2f} GiB")
    blocks = max(math.floor(kv / (per_token * block)), 0) if per_token > 0 else 0
    tokens_kv = blocks * block
    # one request of max_model_len, the least KV the engine starts with (vLLM
    # check_enough_kv_cache_memory); what would make it start, where a fraction can
    request = (hybrid_request_bytes(model, shape.kv_dtype, tp, pp, max_len, batched, block)
               if model.layer_types else per_token * math.ceil(max_len / block) * block)
    advice = _fraction_advice(m, fraction, total, weights + counted, act, non_torch + graphs,
                              request, max_len)
    if m.fraction_name and fraction is not None and fraction <= 0:
        dp_note = (f" (with attention DP the rule adds CUDA-graph padding per graph batch x "
                   f"dp_size = {shape.attention_dp})" if shape.attention_dp > 1 else "")
        problems.append(f"{m.fraction_name} comes out at {fraction:.3f}: the engine's default "
                        f"reserve exceeds the GPU's memory{dp_note}, so it fails to start; set "
                        f"engine.{m.fraction_name} as deployments do" + advice)
    if kv <= 0 and not (m.fraction_name and fraction is not None and fraction <= 0):
        kept = f" on the GPU ({offloaded / GIB:.2f} GiB offloaded)" if offloaded else ""
        problems.append(f"no memory left for the KV cache: weights {weights / GIB:.2f} GiB{kept} and "
                        f"the engine's reserves exceed its budget of the device's "
                        f"{total / GIB:.2f} GiB" + advice)
    concurrency = (seqs or 1) if m.budget == "context_upfront" else tokens_kv / max_len
    if model.layer_types and m.budget != "context_upfront":
        concurrency = max(kv, 0.0) / request
    # a pool below one request of max_model_len (by bytes: a hybrid model's groups, vLLM
    # max_memory_usage_bytes): what the engine then does is its file's memory.short_pool
    if m.budget != "context_upfront" and kv > 0 and concurrency < 1:
        if m.short_pool != "refuse":  # it starts: a fraction would hold max_model_len
            advice = _fraction_advice(m, fraction, total, weights + counted, act,
                                      non_torch + graphs, request, max_len,
                                      verb="it would hold one with")
        problems.append(short_pool_problem(spec, model, tokens_kv, max_len) + advice)
    return EngineMemory(
        engine=spec.id, version=spec.version, device_memory_bytes=total,
        device_memory_source=device.usable_memory_source, budget=m.budget,
        fraction_name=m.fraction_name,
        fraction=fraction if m.fraction_name else None, weights_bytes=weights,
        activation_peak_bytes=act, non_torch_bytes=non_torch, kv_cache_bytes=max(kv, 0.0),
        kv_bytes_per_token=per_token, kv_block_size=block, kv_cache_blocks=blocks,
        kv_cache_tokens=tokens_kv, max_model_len=max_len, max_concurrency=concurrency,
        max_num_seqs=seqs, max_num_batched_tokens=batched, breakdown=breakdown,
        problems=problems, mxfp4_backend=backend, mxfp4_extra_bytes=extra,
        asked_version=getattr(cfg, "version", None), offloaded_weights_bytes=offloaded,
        offload_mode=off.mode if off else None, offload_flags=off.flags if off else None)


def _ends_only(c):
    """Byte counts with only the embeddings, final norm and LM head left (what no engine's
    layer offloader touches: both wrap the decoder layers of make_layers)."""
    layer_fields = ("attention", "attention_replicated", "layer_norms", "dense_mlp", "expert",
                    "shared_experts", "router", "linear_attention_delta", "hybrid_adjustment",
                    "moe_latent_proj", "indexer_adjustment")
    return replace(c, **{f: 0 for f in layer_fields if hasattr(c, f)})


def short_pool_problem(spec: EngineSpec, model: ModelSpec, tokens_kv: int, max_len: int) -> str:
    """The warning for a KV pool of ``tokens_kv`` tokens below one request of ``max_len``, as
    the engine's file says it behaves (``memory.short_pool``): ``refuse``: it will not start
    (vLLM v1/core/kv_cache_utils.py check_enough_kv_cache_memory raises ValueError); ``cap``:
    it starts and limits a request to what the pool holds (SGLang tp_worker.py max_req_len =
    min(context_len - 1, max_total_num_tokens - 1); TensorRT-LLM KVCacheManager reduces
    max_seq_len to the pool's whole blocks); null: not stated."""
    lower = "" if model.layer_types else f" to {tokens_kv:,}"
    head = (f"the KV cache holds {tokens_kv:,} tokens, fewer than one request of max_model_len "
            f"{max_len:,}")
    rule = spec.memory.short_pool
    if rule == "refuse":
        return (f"{head} (the engine refuses to start; lower engine.max_model_len{lower} or "
                "add GPUs)")
    where = f"engines/{spec.id}.yaml memory.short_pool"
    if rule == "cap":
        return (f"{head}: {spec.name} starts and limits a request to what the pool holds "
                f"(about {tokens_kv:,} tokens; {where}), a longer one is refused or cut short; "
                f"to serve max_model_len add GPUs, or set engine.max_model_len{lower}")
    return (f"{head}; whether {spec.name} {spec.version} starts is not stated ({where}); "
            f"lower engine.max_model_len{lower} or add GPUs")


def _fraction_advice(m: MemoryFacts, fraction: float | None, total: float, weights: float,
                     act: float, non_torch: float, request: float, max_len: int,
                     verb: str = "it would start with") -> str:
    """"; it would start with engine.<fraction> >= f" (``verb``) when a memory fraction
    below 1 leaves the KV of one request of ``max_len`` tokens (``request`` bytes) beside what
    the engine's rule subtracts, else "" (module docstring: the rules)."""
    if not m.fraction_name:
        return ""
    if m.budget == "total_fraction":  # f T - W - A - N >= request
        need = (weights + act + non_torch + request) / total
    elif m.budget == "init_free_fraction":  # f (T - context - dist) - W >= request
        need = (weights + request) / (total - non_torch) if total > non_torch else math.inf
    elif m.budget == "free_after_peak_fraction":  # f (T - W - A - N) >= request
        free = total - weights - act - non_torch
        need = request / free if free > 0 else math.inf
    else:
        return ""
    if not need < 1.0 or (fraction is not None and need <= fraction):
        return (f"; no {m.fraction_name} below 1 leaves one request of max_model_len "
                f"{max_len:,}" if not need < 1.0 else "")
    return (f"; {verb} engine.{m.fraction_name} >= "
            f"{math.ceil(need * 1000) / 1000:.3f} (one request of max_model_len {max_len:,})")


#: categories of an engine's memory plan that it leaves unallocated at start-up (vLLM's
#: 1 - gpu_memory_utilization, SGLang's reserve, TensorRT-LLM's 1 - free_gpu_memory_fraction,
#: llama.cpp's free memory): headroom, not memory the engine holds
HEADROOM_CATEGORIES = ("outside_budget", "reserved", "unallocated", "free")


def allocated_bytes(mem: EngineMemory) -> float:
    """Memory the engine holds on one GPU once started: its categories less the headroom it
    leaves (HEADROOM_CATEGORIES); when it cannot start, what it holds before its KV cache
    (the KV pool is then empty)."""
    return float(sum(v for k, v in mem.breakdown.items() if k not in HEADROOM_CATEGORIES))


def budget_bytes(mem: EngineMemory) -> float | None:
    """The memory an engine with a memory fraction plans within on one GPU (vLLM
    gpu_memory_utilization x the memory CUDA reports; SGLang the device less its reserve);
    None for an engine without a fraction."""
    if mem.fraction_name is None:
        return None
    return float(mem.device_memory_bytes
                 - sum(mem.breakdown.get(k, 0.0) for k in HEADROOM_CATEGORIES))


def mxfp4_expert_padding(spec: EngineSpec, model: ModelSpec, shape: EngineShape,
                         device: DeviceSpec, formats: tuple = ()
                         ) -> tuple[str | None, float, bool]:
    """(backend, shape factor, scales kept): the ratio H' I_p' / (H I_p) of the backend's
    padded expert shapes (``padded_expert_shape``) to the checkpoint's, I_p = I / expert_split.
    The expert kernel reads and computes the padded shapes (it reads the padded weights and
    their new scales, never the kept ones: source mxfp4scales), so inference times the grouped
    GEMMs on them (``ops.Shard.expert_pad``). (None, 1.0, False) when
    ``mxfp4_pad_multiples`` finds no backend."""
    from .formats import class_dtype

    backend, multiples, kept = mxfp4_pad_multiples(
        spec, model, device, class_dtype(formats, "experts", shape.weight_dtype))
    if multiples is None:
        return None, 1.0, False
    width = model.moe.latent_size or model.hidden_size
    inter = model.moe.expert_ffn_hidden_size / expert_split(shape)
    width_p, inter_p = padded_expert_shape(width, inter, multiples)
    return backend, float(width_p * inter_p / (width * inter)), kept


def mxfp4_expert_factor(spec: EngineSpec, model: ModelSpec, shape: EngineShape,
                        device: DeviceSpec, formats: tuple = ()) -> tuple[str | None, float]:
    """(backend, factor): the ratio of the expert bytes the MXFP4 backend allocates to the
    checkpoint's: every expert tensor (w13 2I_p x H, w2 H x I_p, and their e8m0 scales, one
    byte per 32) grows by the shape factor of ``mxfp4_expert_padding``; a backend that keeps
    the checkpoint's scales beside its swizzled copy holds 1/32 byte more per (padded)
    weight: x (1/2 + 2/32) / (1/2 + 1/32). (None, 1.0) when the experts are not MXFP4 or the
    file has no backend for the device."""
    backend, factor, kept = mxfp4_expert_padding(spec, model, shape, device, formats)
    if kept:
        factor *= (0.5 + 2 / 32) / (0.5 + 1 / 32)
    return backend, factor


def hybrid_request_bytes(model: ModelSpec, kv_dtype: str, tp, pp, max_len: float,
                         batched: float | None, block: int) -> float:
    """KV bytes one request of max_len tokens reserves on one GPU in a hybrid KV cache
    (vLLM get_max_concurrency_for_kv_cache_config sums each layer group's
    max_memory_usage_bytes): full layers max_len tokens; sliding layers
    min(W - 1 + max_num_batched_tokens, max_len) tokens plus one block, the window not starting
    on a block boundary (vllm/v1/kv_cache_interface.py SlidingWindowSpec.max_memory_usage_bytes);
    linear-attention / Mamba layers their fixed state."""
    from .memory import kv_cache_bytes_per_sequence

    window = model.sliding_window
    if window is not None:
        reach = min(window - 1 + (batched or max_len), max_len)
        window = int(math.ceil(reach / block) * block + block)
        model = model.model_copy(update={"sliding_window": window})
    return float(kv_cache_bytes_per_sequence(model, kv_dtype, tp, max_len, block)) / pp


def moe_shards(model: ModelSpec, shape: EngineShape) -> float:
    """The ep ``stage_params`` divides the routed experts by so one GPU holds (E + redundant)
    / ep of them (``ops.expert_shards``, the rule inference's weights use too)."""
    if model.moe is None:
        return shape.ep
    return float(expert_shards(model.moe.num_experts, shape.redundant_experts, shape.ep))


def expert_split(shape: EngineShape) -> float:
    """How many ways each of a GPU's E/ep experts is split: the scenario's etp, else the
    instance's tp x attention_dp GPUs of a stage shared by ep expert groups, exactly as the
    inference operators spread them (``plan.expert_tp``: vLLM / SGLang MoE TP x EP)."""
    return shape.etp or shape.tp * shape.attention_dp / shape.ep


def spec_fraction_field(spec: EngineSpec) -> str:
    """The EngineConfig field that overrides this engine's memory fraction."""
    return spec.memory.fraction_name or "gpu_memory_utilization"


def shape_for(parallelism, inference, system=None, pp_layers=None,
              offload: bool = False) -> EngineShape:
    """The EngineShape of a scenario's parallelism and inference sections (inference may be
    None: a serving scenario without one runs bf16) on ``system`` (its fabric's NVLS);
    ``pp_layers`` an uneven layer split (``pipeline.stage_partition``); with ``offload`` its
    inference.offload (weight_offload), which only an inference request streams."""
    from .dtypes import nbytes

    tp, pp, ep = parallelism.tp, parallelism.pp, parallelism.ep
    adp = getattr(parallelism, "attention_dp", 1) or 1
    red = getattr(parallelism, "redundant_experts", 0) or 0
    etp = getattr(parallelism, "etp", None)
    nvls = bool(system is not None and system.intra.nvls)
    if inference is None:
        return EngineShape(tp=tp, pp=pp, ep=ep, etp=etp, attention_dp=adp, nvls=nvls,
                           pp_layers=pp_layers, redundant_experts=red)
    off = getattr(inference, "offload", None) if offload else None
    kept = {} if off is None else dict(offload_weights=float(off.weights),
                                          offload_overlap=bool(off.overlap),
                                          offload_kv=float(off.kv_cache))
    return EngineShape(tp=tp, pp=pp, ep=ep, etp=etp, attention_dp=adp, pp_layers=pp_layers,
                       redundant_experts=red,
                       weight_dtype=inference.weight_dtype, kv_dtype=inference.kv_dtype,
                       weight_formats=tuple(sorted(inference.weight_formats.items())),
                       act_bytes=float(nbytes(inference.activation_dtype)),
                       group_size=inference.quant_group_size, nvls=nvls, **kept)


def for_scenario(sc, system, profile, pp_layers=None) -> EngineMemory | None:
    """The engine memory plan of a resolved scenario (``pp_layers``: its plan's uneven layer
    split); None for the generic engine."""
    from .engines import engine_for

    if sc.engine.name == "generic":
        return None
    # an inference request streams its offloaded weights (inference.OffloadStream); a serving
    # instance's plan carries no offload (resolve.inference_plan request=False), so neither
    # does its memory plan
    shape = shape_for(sc.parallelism, sc.inference, system, pp_layers,
                      offload=sc.kind == "inference")
    spec, ctx = engine_for(sc.engine), profile.memory_overheads.cuda_context_gib
    mem = engine_memory(sc.model, system.device, shape, spec, sc.engine, ctx)
    if not mem.problems or pp_layers is not None:
        return mem
    # what more tensor parallelism would do: the smallest tp (x2, x4, x8; heads divisible)
    # that starts the engine, named beside the first problem
    from .errors import PerfModelError

    for t in (2 * shape.tp, 4 * shape.tp, 8 * shape.tp):
        if sc.model.num_heads % t:
            continue
        try:
            wider = engine_memory(sc.model, system.device, replace(shape, tp=t), spec,
                                  sc.engine, ctx)
        except PerfModelError:
            continue
        if not wider.problems and wider.kv_cache_tokens >= wider.max_model_len:
            gpus = t * shape.pp * shape.attention_dp
            verb = ("it starts with" if spec.memory.short_pool == "refuse"
                    or not _starts(mem) else "it holds max_model_len with")
            note = (f"; with parallelism.tp {t} ({gpus} GPUs per instance) {verb} "
                    f"a KV cache of {wider.kv_cache_tokens:,} tokens")
            return replace(mem, problems=[mem.problems[0] + note, *mem.problems[1:]])
    return mem


def _starts(mem: EngineMemory) -> bool:
    """The memory plan leaves the engine a KV pool and a positive fraction (its problems are
    then at most a pool below max_model_len)."""
    return mem.kv_cache_tokens > 0 and (mem.fraction is None or mem.fraction > 0)


def report(mem: EngineMemory) -> dict:
    """The Prediction's ``engine`` entry: the start-up figures as the engine logs them."""
    out = mem.to_dict()
    out["kv_cache_gib"] = mem.kv_cache_bytes / GIB
    out["weights_gib"] = mem.weights_bytes / GIB
    out["allocated_bytes"] = allocated_bytes(mem)
    out["budget_bytes"] = budget_bytes(mem)
    return out


def generic_capacity(sc) -> tuple[int, float, float]:
    """(KV tokens of one instance, KV bytes per GPU, weight bytes per GPU) by perfmodel's
    engine-neutral rule, the one serving uses without an engine (serving.cost.kv_capacity with
    the serving defaults: a token budget of max(max_position_embeddings, 2048), 256
    sequences): the 'before' figure the engine rules are compared with. An instance is the
    deployment's (serving.deploy): tp x attention_dp x pp GPUs; with attention DP each group
    holds its own pool (the bytes per GPU) and the instance's tokens are the groups' pools
    summed, as the deployment admits requests against them (kv_capacity: blocks x groups)."""
    from .resolve import inference_plan, resolve
    from .serving.cost import kv_capacity
    from .specs.scenario import SchedulerConfig

    rs = resolve(sc)
    inf = sc.inference_or_default()
    p = sc.parallelism
    groups = p.attention_dp
    plan = inference_plan(sc.model, p, inf, p.tp * groups * p.pp, replicas=1, request=False)
    tokens = max(sc.model.max_position_embeddings, 2048)
    kv = kv_capacity(sc.model, rs.system, plan, rs.profile, tokens, SchedulerConfig().max_batch)
    pool = kv.num_blocks // groups * kv.block_tokens * kv.bytes_per_token  # one group's GPU
    return kv.tokens, pool, kv.memory["weights"]
