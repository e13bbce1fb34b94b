"""Inference: prefill, decode and the KV cache, with tensor and pipeline parallelism.

The roofline of LLM inference (Yuan et al. 2024, "LLM Inference Unveiled", arXiv 2402.16363,
Sec. 3): prefill runs every prompt token through every GEMM at once (compute-bound for long
prompts); each decode step runs one token per sequence, so every weight and the whole KV cache
stream from HBM once per step (memory-bound at small batch). Here both are the same operator
list (ops.py) evaluated for the token counts of the phase:

* prefill of b prompts of p tokens: q_len = kv_len = p, causal pairs p(p+1)/2; logits only for
  the last position of each prompt (what serving engines compute).
* decode step at context c: q_len = 1, kv_len = c + 1; TPOT is averaged over the generated
  positions p .. p + o - 1 (attention cost grows linearly with context).

TP adds two all-reduces of the activations per layer to the critical path (Shoeybi et al. 2019
Sec. 3); PP adds a stage hand-off per stage boundary, and decode splits the batch into pp
micro-batches that fill the pipeline (each stage serves every micro-batch once per step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import ops as O
from .comm import p2p_time
from .dtypes import nbytes, quantized_weight_bytes
from .engine_comm import CUSTOM_ENGINES, custom_eligible
from .engines import (
    decode_kv_reads,
    engine_facts,
    fp8_activation_kernels,
    fp8_prefill_attention,
    fused_away_kernels,
    fused_residual_norms,
    llamacpp_small_batch_mmq,
    moe_overlap_facts,
    mxfp4_pad_multiples,
    skinny_gemm_facts,
)
from .formats import class_dtype, emulated_formats, engine_activation, weight_byte_counts
from .llamacpp_kernels import run_build, with_ggml_cuda_matmuls
from .memory import (
    inference_weight_bytes,
    inference_workspace_bytes,
    kv_cache_bytes_per_sequence,
    kv_cache_bytes_per_token,
    memory_capacity_bytes,
    overhead_bytes,
)
from .moe_parallel import (
    all_to_all,
    comm_sm_slowdown,
    contiguous_span,
    overlap_groups,
    routed_expert_weight_bytes,
    stage_comm,
    two_batch_layer,
)
from .parameters import param_counts
from .pipeline import pipelined_step_time, stage_excess
from .plan import InferPlan, expert_tp
from .profile import CalibrationProfile
from .roofline import OpTimes, Roofline, moe_routing, op_times, row_sum
from .specs.model import ModelSpec
from .specs.system import System
from .stages import stage_params
from .topology import pp_neighbours_cross_nodes

Array = Any
DECODE_SAMPLES = 8  # context points at which decode steps are evaluated (linear in between)


@dataclass
class PhaseResult:
    time: Array  # seconds for the phase (prefill) or one step (decode)
    compute: dict[str, Array]  # by operator class, per GPU on the critical path
    tp_comm: Array
    pp_comm: Array
    # the slowest pipeline stage's time over an average stage's (uneven splits; else 0)
    stage_excess: Array = 0.0
    op_times: OpTimes | None = None
    # MoE expert parallelism (moe_parallel.py): dispatch + combine all-to-alls, or the DP
    # attention gather / scatter of the MoE tokens, on the critical path
    ep_comm: Array = 0.0
    moe: dict | None = None  # routed-expert weight bytes per GPU, all-to-all split and mode


@dataclass
class InferenceResult:
    ttft: Array
    tpot: Array
    e2e: Array
    tokens_per_s: Array  # generated tokens per second, whole system
    prefill: PhaseResult
    # one decode step: its time and parts the mean over the DECODE_SAMPLES contexts TPOT
    # averages (``_context_mean``); its operators and MoE figures at their mean context
    decode: PhaseResult
    memory: dict[str, Array]
    memory_total: Array
    kv_bytes_per_sequence: Array
    max_concurrent_sequences: Array
    model_flops_prefill: Array
    model_flops_per_token: Array
    # decode steps alone (no prefill): batch x replicas / TPOT, generated tokens per second of
    # the whole system at the modelled contexts (a decode instance's rate)
    decode_tokens_per_s: Array = 0.0
    # the decode contexts TPOT and the decode step average: (first, last, mean), tokens
    decode_contexts: tuple = ()


def _expert_pad(model: ModelSpec, plan: InferPlan, device) -> tuple[int, int] | None:
    """The padding multiples of the engine's MXFP4 MoE kernel on ``device``, if it pads."""
    spec = engine_facts(plan.tp_all_reduce, plan.engine_version, plan.engine_variant)
    experts = class_dtype(plan.weight_formats, "experts", plan.weight_dtype)
    return mxfp4_pad_multiples(spec, model, device, experts)[1]


def _with_quant_kernels(ops: list[O.Op], mode: str | None, on) -> list[O.Op]:
    """``ops`` with the engine's activation quantise kernels (``engines.
    fp8_activation_kernels``: mode and where it runs them) before each per-tensor fp8 GEMM
    (compute dtype fp8: W8A8, and fp8 weights on fp8 tensor cores, ``ops.Precision.inference``),
    in execution order. The routed experts' grouped GEMMs are left out: the fused-MoE kernels
    take the bf16 tokens (their quantisation is not separated from the measured MoE tables)."""
    if mode is None or not np.any(np.asarray(on) > 0):
        return ops
    return [x for op in ops for x in (
        [*O.activation_quant_ops(op, mode, on), op]
        if op.cls == O.GEMM and op.dtype == "fp8" and not op.name.startswith("moe.expert.")
        else [op])]


#: bytes one NVFP4 activation quantise pass moves per element: the bf16 input read (2 B), the
#: e2m1 values (0.5 B) and one e4m3 block scale per 16 elements written (TensorRT-LLM
#: ``fp4_quantize``, SGLang / vLLM ``scaled_fp4_quant``: one pass, given global scale)
FP4_QUANT_PASS_BYTES = 2.0 + 0.5 + 1.0 / 16.0


def _with_fp4_quant_kernels(ops: list[O.Op], mode: str | None, on) -> list[O.Op]:
    """``ops`` with the engine's NVFP4 activation quantise kernel (``engines.
    fp8_activation_kernels(..., fmt="nvfp4")``: ``quantization.nvfp4_activation``) before each
    NVFP4 (W4A4) GEMM, in execution order: one pass over the GEMM's bf16 input (m x k per
    problem, ``FP4_QUANT_PASS_BYTES`` per element), timed at the profile's measured static
    quantise rate (``elementwise_rate.fp8_quant``), the kernel the nvfp4 GEMM tables are netted
    by (converters.aic_gemm ``nvfp4_net_of``: no fp4 quantise table was measured). Routed
    experts' grouped GEMMs are left out (their fused-MoE tables take the bf16 tokens)."""
    if mode is None or not np.any(np.asarray(on) > 0):
        return ops
    if mode != "static_kernel":
        raise ValueError(f"quantization.nvfp4_activation: {mode!r}; an NVFP4 quantise is one "
                         "pass with the checkpoint's global scale (static_kernel or fused)")
    out = []
    for op in ops:
        if op.cls == O.GEMM and op.dtype == "nvfp4" and not op.name.startswith("moe.expert."):
            m, _, k = op.shape
            elems = op.groups * m * k
            out.append(O.fp8_quant_pass(f"{op.name}.fp4_quant", "fp8_quant", elems,
                                        elems * FP4_QUANT_PASS_BYTES, op.count * on, op.block))
        out.append(op)
    return out


#: bytes per element of the 16-bit tensors an emulated linear layer writes and reads
#: (``_with_emulated_gemms``: the dequantised weight, the quantise-dequantised activation)
EMULATED_DTYPE = "bf16"


def _with_emulated_gemms(ops: list[O.Op], formats: frozenset[str]) -> list[O.Op]:
    """``ops`` with every linear layer whose weights are in an emulated format
    (``formats.emulated_formats``; engines/<id>.yaml ``without_tensor_cores: emulated``) run as
    the engine runs it, in execution order (vLLM QuarkOCP_MX.apply_weights, emulate:
    ``dq_w = self.dequant_func(layer.weight, layer.weight_scale, x.dtype); qdq_x =
    self.quant_dequant_func(x); return F.linear(qdq_x, dq_w, bias)``, engines/vllm.yaml
    vllmquarkocpmx; amd-quark's HIP kernels, one launch each, engines/vllm.yaml quarkmxhip):

    - ``<gemm>.dequant``: one memory-bound kernel over the whole k x n weight, reading the
      narrow elements with their block scales (``quantized_weight_bytes``: 0.53125 B for
      mxfp4) and writing 16-bit ones (2 B), on every call;
    - ``<gemm>.qdq``: one memory-bound kernel reading the m x k 16-bit input and writing a
      16-bit copy (2 + 2 B per element);
    - the GEMM: 16-bit (torch ``F.linear``), reading the dequantised weight again at 2 B per
      element, with no dequantise in its inner loop. It keeps its ``weight_format`` (the
      checkpoint's): a quantised layer, which never reaches an engine's own kernel for
      unquantised ones (``_with_skinny_gemms``: vLLM's rocm_unquantized_gemm).

    The two kernels have no measured element rate (kinds ``mx_dequant`` / ``mx_qdq``): they
    are timed by their bytes. Routed experts' grouped GEMMs are left out (their MoE method is
    not the dense layers' rule)."""
    if not formats:
        return ops
    wide = nbytes(EMULATED_DTYPE)
    out = []
    for op in ops:
        if (op.cls != O.GEMM or op.weight_format not in formats
                or op.name.startswith("moe.expert.") or np.any(np.asarray(op.groups) > 1)):
            out.append(op)
            continue
        m, n, k = op.shape
        weights = k * n
        narrow = quantized_weight_bytes(op.weight_format)
        out.append(O.Op(name=f"{op.name}.dequant", cls=O.ELEMENTWISE, flops=0.0,
                        bytes=weights * (narrow + wide), dtype="fp32", count=op.count,
                        vector_flops=weights, shape=(weights,), block=op.block,
                        kernel="mx_dequant"))
        out.append(O.Op(name=f"{op.name}.qdq", cls=O.ELEMENTWISE, flops=0.0,
                        bytes=m * k * 2.0 * wide, dtype="fp32", count=op.count,
                        vector_flops=m * k, shape=(m * k,), block=op.block, kernel="mx_qdq"))
        out.append(replace(op, dtype=EMULATED_DTYPE, vector_flops=0.0,
                           bytes=m * k * wide + weights * wide + m * n * wide))
    return out


def _with_skinny_gemms(times: OpTimes, roof: Roofline, plan: InferPlan) -> OpTimes:
    """``times`` with the engine's own few-token GEMM kernel (engines/<id>.yaml
    ``gemm.skinny``; vLLM on ROCm gfx9: wvSplitK, which every unquantised linear layer and the
    LM head reach through ``rocm_unquantized_gemm``) in place of the profile's GEMM curve
    where it runs: a plain (groups 1, not routed-expert) GEMM of one of its dtypes with no
    weight-only format, 0 < tokens <= max_tokens, outputs >= min_out and k a multiple of
    k_multiple (a dtype's own ``dtype_limits`` where its kernel runs under narrower ones: vLLM's
    fp8 per-tensor W8A8 path, wvSplitKQ, at 1 token and k % 16 in 0.9 - 0.13). It streams the weights at its measured fraction of the device's datasheet HBM
    bandwidth for the token count (rounded up), its compute at the vector fp32 rate (the kernel
    runs packed dot2 instructions, not matrix cores), plus the profile's per-kernel floor as
    every kernel; a null fraction (not measured) keeps the profile's time."""
    found = skinny_gemm_facts(plan.tp_all_reduce, plan.engine_version, plan.engine_variant,
                              roof.device)
    if found is None:
        return times
    facts, fractions = found
    frac = np.array([np.nan if f is None else f for f in fractions], float)
    bandwidth = roof.device.memory_bandwidth
    for i, op in enumerate(times.ops):
        if (op.cls != O.GEMM or op.dtype not in facts.dtypes or op.weight_format
                or op.name.startswith("moe.expert.") or np.any(np.asarray(op.groups) > 1)):
            continue
        m, n, k = (np.asarray(x, float) for x in op.shape)
        tokens = np.clip(np.ceil(m), 1, len(frac)).astype(int)
        f = frac[tokens - 1]
        max_tokens, k_multiple = facts.limits(op.dtype)  # fp8 wvSplitKQ: narrower
        use = ((m > 0) & (m <= max_tokens) & (n >= facts.min_out)
               & (np.mod(k, k_multiple) == 0) & ~np.isnan(f))
        if not np.any(use):
            continue
        t = (np.maximum(op.flops / roof.vector_peak,
                        op.bytes / (bandwidth * np.where(use, f, 1.0)))
             + roof.profile.kernel_overhead_s)
        out = np.where(use, t, times.time[i])
        times.time[i] = out if np.ndim(out) else float(out)
    return times


def as_engine_runs(plan: InferPlan, device) -> InferPlan:
    """``plan`` with the activation dtype its engine runs the checkpoint's weight formats with
    on ``device`` (``formats.engine_activation``, engines/<id>.yaml ``quantization.formats``):
    e.g. fp8 weights with bf16 activations asked for run W8A8 under vLLM / SGLang /
    TensorRT-LLM on a GPU with fp8 tensor cores; raises where the engine refuses the format
    there. Idempotent; the generic engine (no rule) keeps the scenario's choice."""
    run = engine_activation(device, plan.tp_all_reduce, plan.engine_version,
                            plan.engine_variant, plan.weight_dtype, plan.weight_formats,
                            plan.activation_dtype, plan.weight_only)
    if (run.activation_dtype, run.weight_only) == (plan.activation_dtype, plan.weight_only):
        return plan
    return replace(plan, activation_dtype=run.activation_dtype, weight_only=run.weight_only)


def _pass_ops(model: ModelSpec, plan: InferPlan, b, q_len, kv_len, pairs, phase: str,
              logits_tokens, device=None, system=None, routed_share=1.0
              ) -> tuple[list[O.Op], dict[str, list[int]]]:
    """All operators of one forward pass through one pipeline stage's share of the model,
    with the checkpoint's formats as the engine runs them on ``device`` (``as_engine_runs``).
    ``system``: where the TP all-reduce runs, which decides the kernels an engine fuses into
    it (``engines.fused_away_kernels``; None: none fused, the FLOP count's use).
    ``routed_share``: the share of the attention-DP ranks whose tokens reach the routed
    experts (``idle_ranks``: ranks without a request run a zero-token forward; 1: all)."""
    if device is not None:
        plan = as_engine_runs(plan, device)
    prec = plan.precision if device is None else plan.precision_on(device)
    # DP attention: this GPU's attention group serves b / attention_dp of the sequences; the
    # routed experts see the tokens of all attention_dp groups (moe_parallel.py)
    b = b / np.asarray(plan.attention_dp)
    logits_tokens = logits_tokens / np.asarray(plan.attention_dp)
    shard = O.Shard(tp=plan.tp, sequence_parallel=False, ep=plan.ep, etp=expert_tp(plan),
                    route_sources=np.asarray(plan.attention_dp) * routed_share,
                    imbalance=plan.expert_imbalance,
                    redundant_experts=plan.redundant_experts,
                    decode_kv_reads=decode_kv_reads(plan.tp_all_reduce, plan.engine_version,
                                                    plan.engine_variant),
                    fp8_prefill_attention=fp8_prefill_attention(
                        plan.tp_all_reduce, plan.engine_version, plan.engine_variant, model,
                        None if device is None else device.compute_capability),
                    expert_pad=None if device is None else _expert_pad(model, plan, device))
    absorbed = phase == "decode"
    quant = fp8_activation_kernels(plan.tp_all_reduce, plan.engine_version, plan.engine_variant,
                                   model.hidden_size, plan.tp, plan.attention_dp)
    quant4 = fp8_activation_kernels(plan.tp_all_reduce, plan.engine_version,
                                    plan.engine_variant, model.hidden_size, plan.tp,
                                    plan.attention_dp, fmt="nvfp4")
    # the norm kinds whose residual add the engine runs inside the norm's kernel
    # (engines/<id>.yaml kernels.fused_residual_norm; ops.fuse_residual_norms)
    fused_norms = fused_residual_norms(plan.tp_all_reduce, plan.engine_version,
                                       plan.engine_variant)
    # a llama.cpp build before PR #8075: dequantise + cuBLAS above 32 tokens (llamacpp_kernels)
    ggml_legacy = llamacpp_small_batch_mmq(plan.tp_all_reduce, plan.engine_version,
                                           plan.engine_variant)
    emulated = frozenset() if device is None else emulated_formats(
        device, plan.tp_all_reduce, plan.engine_version, plan.engine_variant,
        plan.weight_dtype, plan.weight_formats, model)
    # kernels the engine runs inside others: the residual add + norm inside its own TP
    # all-reduce kernel, where that kernel (not NCCL) runs; RoPE inside the attention op
    custom = False
    if system is not None and plan.tp_all_reduce in CUSTOM_ENGINES:
        custom = custom_eligible(
            plan.tp_all_reduce, b * q_len * model.hidden_size * prec.hidden,
            contiguous_span(np.asarray(plan.tp, float), system.gpus_per_node), system,
            plan.engine_version, plan.engine_variant)
    in_ar, rope_in = fused_away_kernels(plan.tp_all_reduce, plan.engine_version,
                                        plan.engine_variant, model.hidden_size, plan.tp,
                                        plan.attention_dp, custom, moe=model.moe is not None)
    items: list[O.Op] = []
    index: dict[str, list[int]] = {}
    kinds = [("dense", False, model.num_dense_layers), ("moe", True, model.num_moe_layers)]
    for name, moe, count in kinds:
        if not count:
            continue
        layer = O.layer_forward_ops(model, moe, b, q_len, kv_len, pairs, shard, prec,
                                    plan.flash_attention, phase, absorbed_mla=absorbed)
        layer = O.fuse_residual_norms(model, layer, prec, fused_norms)
        for op in layer:
            if op.name in ("attn.residual_norm", "mlp.residual_norm"):
                op.count = op.count * (1.0 - in_ar)
            elif rope_in and op.name == "attn.rope":
                op.count = op.count * 0.0
        layer = _with_emulated_gemms(
            _with_fp4_quant_kernels(_with_quant_kernels(layer, *quant), *quant4), emulated)
        if plan.tp_all_reduce == "llamacpp" and device is not None:  # ggml-cuda's kernels
            layer = with_ggml_cuda_matmuls(
                layer, prec, device, legacy=ggml_legacy, moe=model.moe if moe else None,
                heads=None if model.mla else (model.num_heads, model.kv_heads),
                build=run_build(plan.engine_version))
        for op in layer:  # every layer of this kind on one stage
            op.count = op.count * count / plan.pp
            op.phase = phase
        index[name] = list(range(len(items), len(items) + len(layer)))
        items += layer
    ends = O.embedding_ops(model, b * q_len, plan.tp, prec) + O.head_ops(
        model, logits_tokens, plan.tp, prec, loss=False)
    ends = O.fuse_end_norms(model, ends, b * q_len, prec, fused_norms)
    ends = _with_emulated_gemms(
        _with_fp4_quant_kernels(_with_quant_kernels(ends, *quant), *quant4), emulated)
    if plan.tp_all_reduce == "llamacpp" and device is not None:
        ends = with_ggml_cuda_matmuls(ends, prec, device, legacy=ggml_legacy,
                                      build=run_build(plan.engine_version))
    for op in ends:  # embedding on the first stage, head on the last: 1/pp of them per stage
        op.count = op.count / plan.pp
        op.phase = phase
    index["ends"] = list(range(len(items), len(items) + len(ends)))
    items += ends
    return items, index


def forward_pass(model: ModelSpec, system: System, plan: InferPlan, profile: CalibrationProfile,
                 b, q_len, kv_len, pairs, phase: str, logits_tokens, keep_ops: bool,
                 offload_time=0.0, routed_share=1.0) -> PhaseResult:
    """One forward pass of ``b`` sequences through all stages (latency view): the operators
    of ``q_len`` new tokens per sequence attending ``kv_len`` positions (``pairs`` query-key
    pairs), the LM head for ``logits_tokens`` tokens, TP all-reduces and PP hops. Public: the
    serving cost model evaluates the same pass on grids. ``offload_time`` is the time
    per stage to stream offloaded weights / KV over the host link: hidden behind the stage's
    compute when prefetching overlaps (FlexGen's zig-zag schedule), added otherwise.
    ``routed_share`` (``idle_ranks``): with attention DP, the share of the ranks that hold a
    request; the pass is then the busiest rank's (``b`` / attention_dp sequences on each
    rank, as if every rank were as busy) with the routed experts seeing only the tokens of
    the ranks that hold one."""
    plan = as_engine_runs(plan, system.device)  # the formats as the engine runs them
    roof = Roofline.for_system(system, profile, plan.tp_all_reduce,  # the engine's MoE kernels
                               plan.engine_version, plan.engine_variant,
                               moe_a2a=all_to_all(plan.tp, plan.attention_dp, plan.ep),
                               moe_ep=plan.ep, moe_routing=moe_routing(model))
    items, index = _pass_ops(model, plan, b, q_len, kv_len, pairs, phase, logits_tokens,
                             system.device, system, routed_share)
    times = _with_skinny_gemms(op_times(items, roof), roof, plan)
    compute = times.by_class()
    stage = times.total()
    # per stage: attention-TP all-reduces (all layers), MoE all-to-alls or DP gathers
    comm = stage_comm(model, plan, b * q_len, phase, plan.precision.hidden, system, profile)
    tp_comm, ep_comm = comm.tp, comm.ep
    a2a_total, exposed = comm.dispatch + comm.combine, comm.dispatch + comm.combine
    dispatch, combine = comm.dispatch, comm.combine
    tb = None
    if plan.moe_overlap == "two_batch" and model.moe is not None and comm.mode:
        tb = _two_batch(model, system, plan, profile, roof, b, q_len, kv_len, pairs, phase,
                        logits_tokens, items, index, times, comm.mode, routed_share)
    if tb is not None:  # the split steps (tokens per rank at the engine's threshold or above)
        # only cells that run the all-to-all split, as a scalar plan does (tb is None without
        # one): in a vectorised plan a cell that gathers the MoE tokens instead (attention DP
        # with MoE TP) keeps its one-batch pass and its gather in ep_comm
        on = tb["split"] & (np.asarray(comm.dispatch + comm.combine) > 0)
        compute = {k: np.where(on, tb["compute"].get(k, 0.0), compute.get(k, 0.0))
                   for k in set(compute) | set(tb["compute"])}
        stage = np.where(on, tb["stage"], stage)
        ep_comm = np.where(on, tb["exposed"], ep_comm)
        exposed = np.where(on, tb["exposed"], exposed)
        dispatch = np.where(on, tb["dispatch"], dispatch)
        combine = np.where(on, tb["combine"], combine)
        a2a_total = dispatch + combine
    # a stage hands each attention DP group's activations to the next stage
    act_bytes = b / np.asarray(plan.attention_dp) * q_len * model.hidden_size * plan.precision.hidden
    instance = np.asarray(plan.tp) * np.asarray(plan.attention_dp)
    cross = pp_neighbours_cross_nodes(system.gpus_per_node, "tp-cp-ep-dp-pp", instance, 1, 1,
                                      plan.replicas)
    hop = np.where(np.asarray(plan.pp) > 1, p2p_time(act_bytes, cross, system, profile), 0.0)
    stage = np.maximum(stage, offload_time) if plan.offload_overlap else stage + offload_time
    # pp stages run one after the other for one pass (latency view)
    total = plan.pp * (stage + tp_comm + ep_comm) + (plan.pp - 1) * hop
    moe = None
    if model.moe is not None and keep_ops:
        moe = {"routed_expert_weight_bytes_per_gpu": plan.pp * routed_expert_weight_bytes(
                   items, plan.precision.for_op("moe.expert.up").weight),
               "all_to_all_s": plan.pp * a2a_total,
               "dispatch_s": plan.pp * dispatch, "combine_s": plan.pp * combine,
               "a2a_mode": comm.mode,
               # two-micro-batch overlap: the all-to-all on the critical path and hidden
               "moe_overlap": "two_batch" if tb is not None and np.any(on) else "none",
               "all_to_all_exposed_s": plan.pp * exposed,
               "all_to_all_overlapped_s": plan.pp * (a2a_total - exposed),
               # the grouped-GEMM table(s) the experts read (profile.moe_table)
               "grouped_gemm_table": "; ".join(sorted(set(times.moe_tables.values()))),
               # the tables whose measured curve timed them at the model's exact per-GPU
               # expert shape (roofline._moe_efficiency; "" where the fitted grid did)
               "grouped_gemm_curve": "; ".join(sorted(set(times.moe_curves.values())))}
    excess = 0.0
    if plan.pp_layers is not None:  # an uneven split: the largest stage's extra layers
        ends = sum(items[i].count * times.time[i] for i in index["ends"])
        excess = stage_excess(plan.pp, plan.pp_layers, model.num_layers, stage - ends,
                              (total - (plan.pp - 1) * hop) / plan.pp - stage)
    return PhaseResult(stage_excess=excess, time=total,
                       compute={k: plan.pp * v for k, v in compute.items()},
                       tp_comm=plan.pp * tp_comm, pp_comm=(plan.pp - 1) * hop,
                       op_times=times if keep_ops else None, ep_comm=plan.pp * ep_comm, moe=moe)


def _two_batch(model: ModelSpec, system: System, plan: InferPlan, profile: CalibrationProfile,
               roof: Roofline, b, q_len, kv_len, pairs, phase: str, logits_tokens, items,
               index, times: OpTimes, mode: str, routed_share=1.0) -> dict | None:
    """One stage's pass as two micro-batches of b/2 sequences (moe_parallel.two_batch_layer):
    MoE layers in the engine's schedule, each micro-batch's operators and all-to-alls timed
    at their own size; dense layers and the LM head per micro-batch (vLLM: the whole model
    runs once per micro-batch) or on the whole batch (SGLang: only MoE layers split). GEMMs
    beside the normal-mode kernels run on the SMs those leave (``comm_sms``). ``split``:
    where the tokens and sequences of an attention-DP rank reach the engine's ``min_tokens``
    and ``min_sequences`` (vLLM dbo_*_token_threshold; SGLang: two sequences, split between
    them); elsewhere one batch runs. Tensor-parallel collectives stay those of the whole
    batch. None without a schedule for the phase."""
    facts = moe_overlap_facts(plan.tp_all_reduce, plan.engine_version, plan.engine_variant)
    sched = None if facts is None else (facts.prefill if phase == "prefill" else facts.decode)
    if sched is None:
        return None
    seqs = np.asarray(b, float) / np.asarray(plan.attention_dp, float)  # per attention-DP rank
    split = (seqs * np.asarray(q_len, float) >= sched.min_tokens) & (seqs >= sched.min_sequences)
    if not np.any(split):
        return None
    half_items, half_index = _pass_ops(model, plan, np.asarray(b) / 2.0, q_len, kv_len, pairs,
                                       phase, np.asarray(logits_tokens) / 2.0, system.device,
                                       system, routed_share)
    half = _with_skinny_gemms(op_times(half_items, roof), roof, plan)
    hw = half.weighted()
    slow = comm_sm_slowdown(sched.comm_sms, system.device.sm_count) if mode == "normal" else 1.0
    moe_ops = set(half_index["moe"])
    hw = [w * slow if op.cls == "gemm" and i in moe_ops else w
          for i, (op, w) in enumerate(zip(half_items, hw, strict=True))]
    groups = overlap_groups(half_items, half_index["moe"])
    group_time = {g: row_sum(hw, idx) for g, idx in groups.items()}
    hc = stage_comm(model, plan, np.asarray(b) / 2.0 * q_len, phase, plan.precision.hidden,
                    system, profile)
    layer_time, exposed = two_batch_layer(sched.segments, group_time, hc.dispatch, hc.combine)
    compute: dict = {}
    for i in half_index["moe"]:
        compute[half_items[i].cls] = compute.get(half_items[i].cls, 0.0) + 2.0 * hw[i]
    # dense layers and the LM head: per micro-batch (split_dense) or on the whole batch
    if facts.split_dense:
        rest_w = [(half_items[i].cls, 2.0 * hw[i]) for k in ("dense", "ends")
                  for i in half_index.get(k, [])]
    else:
        full_w = times.weighted()
        rest_w = [(items[i].cls, full_w[i]) for k in ("dense", "ends")
                  for i in index.get(k, [])]
    for cls, w in rest_w:
        compute[cls] = compute.get(cls, 0.0) + w
    stage = layer_time - exposed + row_sum([w for _, w in rest_w], range(len(rest_w)))
    return {"split": split, "stage": stage, "exposed": exposed, "compute": compute,
            "dispatch": 2.0 * hc.dispatch, "combine": 2.0 * hc.combine}


def speculative_tokens_per_iteration(k, alpha):
    """Expected tokens a target pass yields with k drafted tokens, each accepted i.i.d. with
    probability alpha: (1 - alpha^(k+1)) / (1 - alpha) (Leviathan et al. 2023, eq. 1)."""
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def _contexts(p, o):
    """Decode contexts sampled over the generation (midpoints of DECODE_SAMPLES bins)."""
    frac = (np.arange(DECODE_SAMPLES) + 0.5) / DECODE_SAMPLES
    return np.asarray(p)[..., None] + frac * np.maximum(np.asarray(o)[..., None] - 1, 0)


def _with_context_axis(plan: InferPlan) -> InferPlan:
    return replace(plan, **{k: np.asarray(getattr(plan, k))[..., None]
                            for k in ("tp", "pp", "replicas", "ep", "attention_dp")})


@dataclass(frozen=True)
class OffloadStream:
    """Seconds per stage to stream offloaded bytes over ``bandwidth`` (B/s per direction):
    weights and KV in (host to device), new KV out (device to host, the other direction of the
    full-duplex link); FlexGen's offloading (Sheng et al. 2023, Sec. 4)."""

    plan: InferPlan
    weights: Array  # bytes of one stage's weights
    kv_per_token: Array  # KV bytes of one token on one stage
    bandwidth: float | None

    @property
    def active(self) -> bool:
        return bool((self.plan.offload_weights or self.plan.offload_kv) and self.bandwidth)

    def __call__(self, seqs, context, written=0.0):
        if not self.active:
            return 0.0
        p = self.plan
        inbound = p.offload_weights * self.weights + p.offload_kv * self.kv_per_token * seqs * context
        return np.maximum(inbound, p.offload_kv * self.kv_per_token * written) / self.bandwidth


def idle_ranks(model: ModelSpec, plan: InferPlan) -> tuple[InferPlan, float]:
    """(the plan whose passes time a step, the share of attention-DP ranks holding a request)
    of a batch smaller than attention_dp: one request on each of ``batch`` ranks, the other
    ranks idle. SGLang runs an idle rank each step (sglang 0.5.6 wheel, sha256 c32b6a5b...,
    python/sglang/srt/): every rank all-gathers its token count
    (managers/scheduler_dp_attn_mixin.py ``prepare_mlp_sync_batch_raw`` L155, called from
    scheduler.py ``get_next_batch_to_run`` L1698-1699), and when any rank has tokens
    (L163-167: ``need_idle_batch = max(global_num_tokens) > 0``) a rank without a batch runs
    ``get_idle_batch()``: ForwardMode.IDLE with no tokens (managers/schedule_batch.py
    ``prepare_for_idle`` L1679-1691), run by model_executor/model_runner.py
    ``forward_idle`` L2599-2610 / L2711-2712 through the whole model: attention returns at
    once on 0 tokens (models/deepseek_v2.py L1495-1503), the gate and top-k are skipped
    (``forward_deepep`` L965-977: ``empty_topk_output``) but ``self.experts(...)`` still runs
    (L1039-1042): the rank joins the dispatch / combine and computes the tokens other ranks
    route to its experts. A step then lasts as long as a rank with a request: its attention
    and dense operators on its one sequence and collectives as at a batch of attention_dp
    (one per rank), while the routed experts see only the batch's tokens. That is the
    serving cost model's rule for unequal ranks (serving/cost.py: G(attention_dp x busiest)
    + E(T)); the pass is evaluated at batch attention_dp with ``routed_share`` = batch /
    attention_dp. Memory is the busiest GPU's (one sequence's KV). A batch that is a
    multiple of attention_dp, a vectorised plan, or no attention DP: (plan, 1.0)."""
    b, dp = plan.batch, plan.attention_dp
    if np.ndim(b) or np.ndim(dp) or int(dp) <= 1 or b >= dp or model.moe is None:
        return plan, 1.0
    return replace(plan, batch=int(dp)), float(b) / float(dp)


def inference(model: ModelSpec, system: System, plan: InferPlan, profile: CalibrationProfile,
              keep_ops: bool = False, draft: ModelSpec | None = None,
              offload_bandwidth: float | None = None, draft_tp=None) -> InferenceResult:
    """Prefill, decode and memory of a batch of requests.

    ``offload_bandwidth`` (B/s, per direction) is the link offloaded weights and KV stream
    over (the host link for CPU memory, the drive for NVMe). ``draft`` is the draft model of
    speculative decoding; it runs beside the target on ``draft_tp`` GPUs of its TP group
    (engines/<id>.yaml ``speculative.draft_tp``; None: the target's TP, the default of vLLM's
    SpeculativeConfig._verify_and_get_draft_tp, SGLang's draft TpModelWorker and TensorRT-LLM's
    draft model engine), its weights and KV cache split draft_tp ways.
    """
    plan = as_engine_runs(plan, system.device)  # the formats as the engine runs them
    draft_tp = plan.tp if draft_tp is None else draft_tp
    b, p, o = plan.batch, plan.prompt_len, plan.output_len
    asked = plan  # with idle attention-DP ranks: the busiest rank's passes (``idle_ranks``)
    plan, share = idle_ranks(model, plan)
    b_pass = plan.batch
    stage_p = stage_params(param_counts(model), plan.tp, plan.pp, _expert_shards(model, plan),
                           expert_tp(plan), model.tie_embeddings,
                           layers=None if plan.pp_layers is None else float(max(plan.pp_layers)))
    weights = inference_weight_bytes(stage_p.max, plan.weight_dtype, plan.group_size)
    if plan.weight_formats:  # a mixed checkpoint: every tensor class at its own format
        weights = stage_params(weight_byte_counts(param_counts(model), plan.weight_dtype,
                                                  plan.weight_formats, plan.group_size),
                               plan.tp, plan.pp, _expert_shards(model, plan), expert_tp(plan),
                               model.tie_embeddings, layers=None if plan.pp_layers is None
                               else float(max(plan.pp_layers))).max
    # memory per GPU is the largest stage's (its layers' weights and KV cache)
    kv_layers = model.num_layers if plan.pp_layers is None else max(plan.pp_layers) * plan.pp
    kv_tok = kv_cache_bytes_per_token(model, plan.kv_dtype, plan.tp) * kv_layers / plan.pp
    stream = OffloadStream(plan, weights, kv_tok, offload_bandwidth)
    speculative = bool(plan.spec_tokens and draft is not None)

    prefill = forward_pass(model, system, plan, profile, b_pass, p, p, O.attention_pairs(p, p),
                           "prefill", b_pass, keep_ops,
                           offload_time=stream(b_pass, 0.0, written=b_pass * np.asarray(p)),
                           routed_share=share)
    tpot, steps = _tpot(model, system, plan, profile, draft if speculative else None, stream,
                        draft_tp, share)
    mb = b_pass / np.minimum(plan.pp, b_pass)
    mid = np.asarray(p) + np.maximum(np.asarray(o) - 1, 0) / 2.0 + 1
    decode = forward_pass(model, system, plan, profile, mb, 1.0, mid, mid, "decode", mb, keep_ops,
                          offload_time=stream(mb, mid, written=mb), routed_share=share)
    ctx = _contexts(p, o) + 1  # the contexts TPOT averages; their mean is mid
    if steps is None:  # speculative: the plain step at TPOT's contexts for the breakdown
        mb_ctx = np.asarray(mb)[..., None]
        steps = forward_pass(model, system, _with_context_axis(plan), profile, mb_ctx, 1.0, ctx,
                             ctx, "decode", mb_ctx, False,
                             offload_time=stream(mb_ctx, ctx, written=mb_ctx),
                             routed_share=share)
    decode = _context_mean(decode, steps)
    ttft = prefill.time  # the first token comes out of the prefill pass
    if speculative:  # the draft model prefills the prompt too
        draft_alone = replace(plan, tp=draft_tp, pp=1, ep=1, attention_dp=1,
                              offload_weights=0.0, offload_kv=0.0, pp_layers=None)
        ttft = ttft + forward_pass(draft, system, draft_alone, profile, b, p, p,
                                   O.attention_pairs(p, p), "prefill", b, False).time
    e2e = ttft + (np.asarray(o) - 1) * tpot
    memory, kv_seq, max_seqs = _memory(model, system, plan, profile, weights, kv_tok,
                                       draft if speculative else None, stream, draft_tp)
    flops_prefill, flops_token = _model_flops(model, asked, mid)
    return InferenceResult(
        ttft=ttft, tpot=tpot, e2e=e2e, tokens_per_s=plan.replicas * b * o / e2e,
        prefill=prefill, decode=decode, memory=memory, memory_total=sum(memory.values()),
        kv_bytes_per_sequence=kv_seq, max_concurrent_sequences=max_seqs,
        model_flops_prefill=flops_prefill, model_flops_per_token=flops_token,
        decode_tokens_per_s=plan.replicas * b / tpot,
        decode_contexts=(ctx.min(axis=-1), ctx.max(axis=-1), mid),
    )


def _tpot(model: ModelSpec, system: System, plan: InferPlan, profile: CalibrationProfile,
          draft: ModelSpec | None, stream: OffloadStream, draft_tp=1, routed_share=1.0
          ) -> tuple[Array, PhaseResult | None]:
    """Time per output token, averaged over the generated positions (DECODE_SAMPLES contexts),
    and the plain decode step at those contexts (a context axis last; None with a draft).

    The batch is split into min(pp, b) micro-batches that keep the stages busy; a sequence's
    next token needs its previous one, so a token takes one pass of its micro-batch through
    all stages: TPOT = pass time of b / micro sequences. Speculative decoding: k draft steps
    and one verification pass of k + 1 tokens yield E tokens (Leviathan et al. 2023 eq. 1).
    """
    b, p, o = plan.batch, plan.prompt_len, plan.output_len
    mb = b / np.minimum(plan.pp, b)
    ctx = _contexts(p, o)
    dec_plan = _with_context_axis(plan)
    mb_ctx = np.asarray(mb)[..., None]
    k = plan.spec_tokens
    if draft is not None:
        verify = forward_pass(model, system, dec_plan, profile, mb_ctx, k + 1.0, ctx + k + 1,
                              O.attention_pairs(k + 1.0, ctx + k + 1), "verify", mb_ctx * (k + 1),
                              False, offload_time=stream(mb_ctx, ctx + k + 1),
                              routed_share=routed_share)
        draft_plan = replace(dec_plan, tp=np.asarray(draft_tp) * np.ones_like(dec_plan.tp),
                             pp=np.ones_like(dec_plan.pp), ep=1, attention_dp=1,
                             offload_weights=0.0, offload_kv=0.0, pp_layers=None)
        draft_step = forward_pass(draft, system, draft_plan, profile, mb_ctx, 1.0, ctx + 1, ctx + 1,
                                  "decode", mb_ctx, False)
        per_token = speculative_tokens_per_iteration(k, plan.spec_acceptance)
        step_time = (k * draft_step.time + verify.time) / per_token
        step = None
    else:
        step = forward_pass(model, system, dec_plan, profile, mb_ctx, 1.0, ctx + 1, ctx + 1,
                            "decode", mb_ctx, False,
                            offload_time=stream(mb_ctx, ctx + 1, written=mb_ctx),
                            routed_share=routed_share)
        step_time = step.time
        if plan.pp_layers is not None:  # min(pp, b) micro-batches: the slowest stage paces
            micro = np.asarray(np.minimum(plan.pp, b))[..., None]
            step_time = pipelined_step_time(step.time, step.pp_comm, dec_plan.pp, micro,
                                            step.stage_excess)
    return step_time.mean(axis=-1), step


def _context_mean(at_mid: PhaseResult, steps: PhaseResult) -> PhaseResult:
    """``at_mid`` (the decode step at the mean context, its operators and MoE figures) with
    its time and parts replaced by their means over ``steps``' contexts (the last axis), the
    contexts TPOT averages: the parts add up to the time, and the time is TPOT without
    speculation or an uneven pipeline (QA 1203c finding 9: the step at the mean context
    differs by the attention curve's non-linearity, 38.984 vs 38.995 ms)."""
    shape = np.shape(steps.time)

    def mean(v):
        return np.broadcast_to(np.asarray(v, float), shape).mean(axis=-1)

    return replace(at_mid, time=mean(steps.time),
                   compute={k: mean(v) for k, v in steps.compute.items()},
                   tp_comm=mean(steps.tp_comm), pp_comm=mean(steps.pp_comm),
                   ep_comm=mean(steps.ep_comm), stage_excess=mean(steps.stage_excess))


def _expert_shards(model: ModelSpec, plan: InferPlan) -> Array:
    """The ep that ``stage_params`` divides the routed experts by (``ops.expert_shards``:
    (E + redundant) / ep experts on each GPU, EPLB's copies add to every rank's share)."""
    if model.moe is None:
        return plan.ep
    return O.expert_shards(model.moe.num_experts, plan.redundant_experts, plan.ep)


def _memory(model: ModelSpec, system: System, plan: InferPlan, profile: CalibrationProfile,
            weights: Array, kv_tok: Array, draft: ModelSpec | None, stream: OffloadStream,
            draft_tp=1) -> tuple[dict[str, Array], Array, Array]:
    """(memory by kind on one GPU, KV bytes of one sequence, sequences whose KV fits beside
    the weights and workspace). With DP attention a GPU holds the KV cache of its own attention
    group's batch / attention_dp sequences (MLA's latent KV is not split by TP either)."""
    p, o = plan.prompt_len, plan.output_len
    b = plan.batch / np.asarray(plan.attention_dp)
    memory = {"weights": weights * (1 - plan.offload_weights)}
    kv_layers = model.num_layers if plan.pp_layers is None else max(plan.pp_layers) * plan.pp
    # full layers grow with the context, sliding ones stop at W, linear ones hold a fixed state
    kv_seq = kv_cache_bytes_per_sequence(model, plan.kv_dtype, plan.tp, np.asarray(p) + o,
                                         plan.kv_block_size, layers=kv_layers / plan.pp)
    memory["kv_cache"] = b * kv_seq * (1 - plan.offload_kv)
    if draft is not None:
        # the draft's share on one GPU of its draft_tp-way TP group
        memory["draft_weights"] = inference_weight_bytes(
            stage_params(param_counts(draft), draft_tp, 1, 1, draft_tp,
                         draft.tie_embeddings).max, plan.weight_dtype, plan.group_size)
        memory["draft_kv_cache"] = b * kv_cache_bytes_per_sequence(
            draft, plan.kv_dtype, draft_tp, np.asarray(p) + o, plan.kv_block_size)
    in_flight = b * np.asarray(p) if plan.prefill_chunk is None else np.minimum(
        b * np.asarray(p), plan.prefill_chunk)
    workspace = inference_workspace_bytes(model, in_flight, b, plan.tp, plan.precision.act)
    if stream.active and plan.offload_overlap:  # double buffer for the prefetched layer
        workspace = workspace + 2 * weights * plan.offload_weights / (model.num_layers / plan.pp)
    memory["activations"] = workspace
    memory.update(overhead_bytes(sum(memory.values()), profile.memory_overheads))
    fixed = sum(memory.values()) - memory["kv_cache"] - memory["allocator_overhead"]
    free = memory_capacity_bytes(system.device) * (1 - profile.memory_overheads.allocator_fraction) \
        - fixed
    per_seq_gpu = kv_seq * (1 - plan.offload_kv) + memory.get("draft_kv_cache", 0.0) / b
    max_seqs = np.maximum(np.floor(free / np.maximum(per_seq_gpu, 1e-9)), 0.0)
    return memory, kv_seq, max_seqs * np.asarray(plan.attention_dp)


def _model_flops(model: ModelSpec, plan: InferPlan, mid: Array) -> tuple[Array, Array]:
    """Megatron-convention FLOPs of the prefill and of one decode token at context ``mid``,
    over the whole (unsharded) model."""
    b, p = plan.batch, plan.prompt_len
    whole = replace(plan, tp=1, pp=1, ep=1, attention_dp=1, expert_imbalance=1.0)
    flops_prefill = sum(op.model_flops * op.count for op in _pass_ops(
        model, whole, b, p, p, O.attention_pairs(p, p), "prefill", b)[0])
    flops_token = sum(op.model_flops * op.count for op in _pass_ops(
        model, whole, 1, 1, mid, mid, "decode", 1)[0])
    return flops_prefill, flops_token
