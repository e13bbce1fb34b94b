"""One transformer layer (and embedding, LM head, loss, optimizer) as a list of operators.

Each operator carries the FLOPs it executes, the HBM bytes it must read and write (the
compulsory traffic of a roofline model), its compute dtype, and how many times it runs per
step on one GPU. Quantities are numpy-friendly: token counts and parallel degrees may be
arrays (a sweep of plans), and every field then broadcasts.

FLOP conventions
----------------
``flops`` is what the hardware executes (causal attention skips masked blocks, FlashAttention's
backward recomputes QK^T: 2.5x the forward, Dao 2023 arXiv 2307.08691 Sec. 3.2), used for time.
``model_flops`` follows Megatron's convention (Narayanan et al. 2021 arXiv 2104.04473 Sec. 5.1,
Korthikanti et al. 2022 arXiv 2205.05198 eq. 7): GEMMs and attention matmuls only, attention
counted non-causally, backward = 2x forward, no recompute. Summed over a GPT training step it
equals 72*B*s*L*h^2*(1 + s/(6h) + V/(12*h*L)). Recompute adds ``flops`` but no ``model_flops``
(that difference is hardware FLOPs vs model FLOPs, Korthikanti eq. 8 vs eq. 7).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .dtypes import TRAINING_BLOCK_SCALED, nbytes, quantized_weight_bytes, training_format_bytes
from .specs.model import ModelSpec

Array = Any  # float or numpy array

GEMM, ATTENTION, ELEMENTWISE, OPTIMIZER = "gemm", "attention", "elementwise", "optimizer"
OP_CLASSES = (GEMM, ATTENTION, ELEMENTWISE, OPTIMIZER)


@dataclass(frozen=True)
class Matmul:
    """One logical matmul inside a (possibly fused) GEMM: the fused QKV projection computes
    q, k and v, a gated MLP's up projection the gate and the up."""

    share: float  # of the GEMM's FLOPs and output
    width: float  # output elements per token of the layer, before TP sharding
    column_parallel: bool  # output sharded by TP (else a full-width partial sum)


@dataclass(slots=True)
class Op:
    """One kernel (or fused group) per call, and how many calls per step."""

    name: str
    cls: str  # one of OP_CLASSES
    flops: Array  # executed, per call (tensor-core FLOPs for gemm/attention)
    bytes: Array  # HBM bytes read + written, per call
    dtype: str  # compute dtype (peak lookup)
    count: Array = 1.0  # calls per step on this GPU
    model_flops: Array = 0.0  # Megatron-convention FLOPs per call
    vector_flops: Array = 0.0  # non-tensor FLOPs (dequantisation, softmax), at the fp32 rate
    shape: tuple = ()  # gemm: (m, n, k); attention: (q_len, kv_len)
    phase: str = "fwd"  # fwd | bwd | recompute | decode | prefill | step
    block: str = ""  # part of the model: attn | mlp | moe | embed | head | optimizer
    kernel: str = "other"  # elementwise kernel kind: selects its measured element rate
    attention_core: bool = False  # inside softmax(QK^T)V (what selective recompute re-runs)
    fp8_cast: bool = False  # a separate fp8 quantisation kernel (fp8 training)
    matmuls: tuple[Matmul, ...] = ()  # the logical matmuls of a GEMM, in execution order
    groups: Array = 1.0  # a grouped GEMM's problems in one call (shape: one of them)
    # a batched GEMM's problems (cuBLAS strided-batched, the unfused attention's bmm): ``shape``
    # stacks them along m (``unfused_attention_ops``), so its tiles and K loop are one call's
    batch: Array = 1.0
    launches: Array = 1.0  # kernels this operator stands for (an unfused eager chain: several)
    # a GEMM's weight format when it differs from ``dtype`` (weight-only: mxfp4 weights in a
    # bf16 GEMM); selects a grouped GEMM's MoE table (profile.moe_format); "" = ``dtype``
    weight_format: str = ""
    # attention: the kernel's head dim (0: not a GQA/MHA head, e.g. MLA, indexer, linear
    # attention) and the sliding window it applies (0: none, or one that does not bind);
    # they select the profile's per-(head_dim, window) factor (profile.attention_factor)
    head_dim: Array = 0.0
    window: Array = 0.0
    # attention: a prefill core whose engine quantises Q, K and V to fp8 and runs QK^T and PV
    # on fp8 tensor cores (``Shard.fp8_prefill_attention``; ``attention_ops``): timed at the
    # fp8 peak on its own fp8 bytes (roofline.attention_peak_dtype)
    fp8_attention: bool = False
    # attention: the kind of kernel an inference prefill core runs, whose own curve it may read
    # (roofline.attention_kind): "mla" for MLA's decompressed multi-head prefill core
    # (``attention_ops``); "" for every other core (GQA / MHA, DSA's MQA mode past its top-k,
    # DeepSeek-V4's compressed core, indexers)
    attention_kind: str = ""

    def __post_init__(self) -> None:
        if not self.block:  # operator names are "<block>.<what>"
            self.block = self.name.split(".", 1)[0]


#: hidden states between layers stay in the model's 16-bit dtype (Precision.hidden)
HIDDEN_STATE_MIN_BYTES = 2.0


@dataclass(frozen=True)
class Precision:
    """Bytes per element of activations and weights, and the GEMM compute dtype."""

    compute: str  # dtype whose peak the tensor cores run at
    act: float  # activation bytes of a GEMM's input and output (elementwise kernels: hidden)
    weight: float  # weight bytes as read by a GEMM (incl. quantisation scales)
    kv: float = 2.0  # KV-cache bytes (inference)
    weight_dequant: bool = False  # weight-only quantisation: dequantise inside the GEMM
    kv_dequant: bool = False
    cast_inputs: bool = False  # separate kernels quantise GEMM inputs (fp8 training)
    # per-tensor formats (perfmodel.formats): (weight class, its Precision) pairs that
    # override this one for the GEMMs of that class
    by_class: tuple = ()
    weight_format: str = ""  # the weights' format when it is not ``compute`` (weight-only)
    # bytes per activation element a GEMM reads and writes when not ``act``: the kernel's own
    # format where 16-bit activations run a native low-precision GEMM (quantised by the fused
    # producer), so its bytes are counted as its measured table was fitted (Precision.inference)
    gemm_act: float | None = None
    # the attention kernel's dtype when it is not ``compute`` (inference: from the KV-cache
    # format and the 16-bit activations, whatever the linear weights' format; ``inference``)
    attention: str = ""

    @property
    def hidden(self) -> float:
        """Bytes per element of the hidden states between layers (the residual stream, the
        TP all-reduce, DP gathers, PP hand-offs): the model's 16-bit dtype even when GEMM
        inputs are quantised, since quantised GEMMs write their output in the input's
        original dtype (vLLM w8a8_utils ``apply_fp8_linear``: ``out_dtype = input.dtype``;
        TensorRT-LLM's fp8 GEMMs output bf16 ahead of its bf16 all-reduce + RMSNorm + quant
        fusion; SGLang's DP-attention buffer is allocated in ``model_config.dtype``,
        layers/dp_attention.py). Wider activations (fp32) keep their own width.

        The one rule: only a GEMM's input is quantised (by the fused producer or a quantise
        kernel, ``activation_quant_ops``), so every elementwise kernel (``elementwise``,
        ``norm_op``, ``residual_op``, ``residual_norm_op``: norms, residual adds, RoPE, the
        MLP activation, the MoE combine, the embedding gather) reads and writes this width,
        never ``act``: vLLM's ``rms_norm`` and ``fused_add_rms_norm`` (csrc/layernorm_kernels.cu
        at 0112cf233e0c) take input, residual and output as one ``scalar_t`` dispatched by
        ``VLLM_DISPATCH_FLOATING_TYPES`` (fp32 / fp16 / bf16: there is no fp8 residual), and
        the GEMMs before the norms, RoPE and the activation wrote ``out_dtype = input.dtype``
        (above); TensorRT-LLM keeps the residual in the model dtype beside fp8 GEMMs. Where a norm /
        activation fuses the quantise of the next GEMM's input its output is fp8, which this
        counts at this width too (an over-count of one byte per output element). Training
        (``training``) has ``act`` >= 2 always, so there ``hidden == act``."""
        return max(self.act, HIDDEN_STATE_MIN_BYTES)

    def for_op(self, op_name: str) -> Precision:
        """The precision of the GEMM named ``op_name`` (its weight class's, if overridden)."""
        if self.by_class:
            from .formats import op_weight_class

            cls = op_weight_class(op_name)
            for name, prec in self.by_class:
                if name == cls:
                    return prec
        return self

    @classmethod
    def training(cls, precision: str) -> Precision:
        """bf16/fp16: 16-bit everything; fp8: fp8 GEMM inputs (Transformer Engine keeps
        activations between kernels in bf16); fp32/tf32: 32-bit.

        mxfp8 / nvfp4 (Transformer Engine's MXFP8BlockScaling / NVFP4BlockScaling,
        frameworks/_common.yaml ``block_scaled_recipes``): the same shape as fp8, one quantise
        operator per GEMM (``fp8_cast``, costed by the recipe in
        frameworks_costs.fp8_recipe_costs), activations between kernels in bf16; the GEMMs run
        at the recipe's ``gemm_dtype`` (mxfp8: ``fp8``, the fp8 peak and the profile's fp8
        curve, cuBLASLt in both; nvfp4: ``nvfp4``, the fp4 peak and the nvfp4 curve) and read
        their weight in its stored format, block scales included (dtypes.training_format_bytes:
        1.03125 / 0.5625 B)."""
        if precision == "fp8":
            return cls(compute="fp8", act=2.0, weight=1.0, cast_inputs=True)
        if precision in TRAINING_BLOCK_SCALED:
            from .frameworks import block_scaled_recipe

            recipe = block_scaled_recipe(precision)
            return cls(compute=recipe.gemm_dtype, act=2.0,
                       weight=training_format_bytes(recipe.format), cast_inputs=True)
        size = nbytes(precision)
        return cls(compute=precision, act=size, weight=size)

    @classmethod
    def inference(cls, weight_dtype: str, activation_dtype: str, kv_dtype: str,
                  group_size: int = 128, formats: tuple = (),
                  fp8_gemm: bool = False, native: tuple[str, ...] | None = None,
                  weight_only: bool = False, wide: str = "bf16") -> Precision:
        """W8A8 / fp8 run the tensor cores in the narrow type when activations are quantised
        too; otherwise weights are dequantised to the activation type (weight-only).

        ``fp8_gemm`` (the device has fp8 tensor cores): fp8 weights run the fp8 GEMM with
        activations quantised on the fly even when ``activation_dtype`` is wider, because
        that is how engines run an fp8 checkpoint there: vLLM's ``Fp8LinearMethod`` takes its
        weight-only (Marlin W8A16) path only on GPUs without fp8 hardware
        (``use_marlin = not current_platform.has_device_capability(89)``,
        vllm-project/vllm vllm/model_executor/layers/quantization/fp8.py), and TensorRT-LLM
        has no fp8 weight-only mode (its FP8 / FP8_BLOCK_SCALES QuantAlgo are W8A8). The
        activation quantisation is fused into the producing RMSNorm / SiLU kernel
        (vLLM csrc/layernorm_quant_kernels.cu ``fused_add_rms_norm_static_fp8_quant`` and
        the torch.compile RMSNorm+quant fusion pass; TensorRT-LLM's fused
        RMSNorm+quant plugins), so no separate cast kernel is counted in inference.
        ``formats``: (weight class, dtype) pairs of a mixed checkpoint (perfmodel.formats).
        Block-scaled fp8 weights with fp8 activations run the block-scaled kernel (1 x 128
        activation tiles against 128 x 128 weight blocks, DeepSeek-V3 arXiv 2412.19437
        Sec. 3.3.2; DeepGEMM in SGLang / TensorRT-LLM): compute dtype fp8_block.
        Weights wider than the activations (a class a quantised checkpoint leaves out, e.g.
        bf16 attention beside nvfp4 experts) run unquantised in their own dtype, activations
        included: the layer is skipped by the quantisation config (vLLM
        model_executor/layers/quantization/modelopt.py ``get_quant_method``:
        ``is_layer_skipped(prefix, self.exclude_modules)`` -> ``UnquantizedLinearMethod``),
        so ``activation_dtype`` applies only to the quantised GEMMs.

        ``native`` (``formats.native_formats`` of the device; None: no device, fp8_gemm alone):
        the sub-16-bit formats it has tensor cores for. Activations in a format it lacks run at
        16 bits (``wide``: the device's, ``formats.wide_activation``; fp16 on V100 / T4)
        against dequantised weights (``formats.modelled_activation``: nvfp4 on H100 is
        W4A16, fp8 on A100 W8A16). NVFP4 weights on fp4 tensor cores run the W4A4 kernel with
        16-bit activations too, as fp8 weights do: TensorRT-LLM's QuantAlgo.NVFP4 is W4A4 only
        (tensorrt_llm/_torch/modules/linear.py ``NVFP4LinearMethod`` quantises the input with
        ``fp4_quantize`` unless the producer already handed an ``Fp4QuantizedTensor``: the fused
        RMSNorm / SwiGLU + fp4-quant kernels) and vLLM's ``ModelOptNvFp4LinearMethod`` takes
        FlashInfer / CUTLASS fp4 wherever they run and Marlin W4A16 only where not
        (vllm/model_executor/layers/quantization/modelopt.py). MXFP4 weights keep their
        weight-only (W4A16 / W4A8) path: engines run gpt-oss's MXFP4 experts that way on
        Blackwell (profile.MOE_MIXED tables).

        ``weight_only`` (a scenario that names 16-bit activations itself and whose engine runs
        them: the generic engine, or a device without the format's tensor cores, per
        engines/<id>.yaml quantization.formats): the narrow weights are dequantised into a
        16-bit GEMM (W8A16 / W4A16: vLLM's Marlin fp8 / fp4 linear methods) instead of the
        native narrow GEMM.

        The attention kernel's dtype (``attention``) follows the attention path, never the
        linear weights: fp8 when the KV cache is fp8 on a device with fp8 tensor cores (vLLM's
        FlashAttention backend quantises the query to the fp8 cache's dtype, "queries are
        quantized in the attention layer", vllm/v1/attention/backends/flash_attn.py
        get_fp8_dtype_for_flashattn), else the 16-bit activation dtype (Q, K, V and the cache
        stay bf16 beside fp8 / nvfp4 linear layers).
        """
        if native is not None:
            fp8_gemm = "fp8" in native
            from .formats import modelled_activation

            activation_dtype = modelled_activation(activation_dtype, native, wide)
        # fp8 attention needs fp8 tensor cores: the device's, or (no device) fp8 activations
        fp8_attention = kv_dtype == "fp8" and (fp8_gemm or activation_dtype == "fp8")
        native_narrow = ("fp8", "fp8_block") if fp8_gemm else ()
        if native is not None and "nvfp4" in native:
            native_narrow += ("nvfp4",)
        if weight_only:
            native_narrow = ()
        attention = "fp8" if fp8_attention else (
            activation_dtype if nbytes(activation_dtype) >= 2 else "bf16")

        def one(wd: str) -> Precision:
            if nbytes(wd) > nbytes(activation_dtype):  # an unquantised (skipped) layer
                return cls(compute=wd, act=nbytes(wd), weight=quantized_weight_bytes(wd, group_size),
                           kv=nbytes(kv_dtype), kv_dequant=nbytes(kv_dtype) < nbytes(wd))
            narrow = nbytes(wd) < nbytes(activation_dtype)
            native = narrow and wd in native_narrow and nbytes(activation_dtype) >= 2
            block = wd == "fp8_block" and activation_dtype in ("fp8", "fp8_block")
            same = wd == activation_dtype or native or block
            return cls(
                compute=wd if same else activation_dtype,
                act=nbytes(activation_dtype),
                weight=quantized_weight_bytes(wd, group_size),
                kv=nbytes(kv_dtype),
                weight_dequant=narrow and not same,
                kv_dequant=nbytes(kv_dtype) < nbytes(activation_dtype),
                weight_format=wd if narrow and not same else "",
                gemm_act=nbytes(wd) if native and wd == "nvfp4" else None,
            )

        base = replace(one(weight_dtype), attention=attention)
        if not formats:
            return base
        by_class = tuple((c, one(d)) for c, d in formats if d != weight_dtype)
        return cls(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                      "by_class": by_class})


@dataclass(frozen=True)
class Shard:
    """Parallel degrees that change one GPU's share of a layer (arrays allowed)."""

    tp: Array = 1
    sequence_parallel: bool = False  # norms/adds/dropout on tokens / tp
    ep: Array = 1
    etp: Array = 1
    # ranks whose distinct tokens are routed to one rank's experts: ep when EP is carved from
    # data parallelism (training: each EP rank brings its own micro-batch), 1 when the EP
    # ranks see the same tokens (inference: experts spread over the TP ranks), attention_dp
    # with DP attention (each attention DP group brings its own requests)
    route_sources: Array = 1
    # busiest EP rank's routed rows over the mean (1 = uniform routing; ``routed_rows``)
    imbalance: Array = 1.0
    # EPLB's redundant expert copies over the ep ranks (``experts_per_gpu``: each GPU
    # holds (E + redundant) / ep experts; ``local_active_experts``)
    redundant_experts: Array = 0
    # how the engine's decode attention kernel reads the KV cache (engines/<id>.yaml
    # ``attention.decode_kv_reads``): once per KV head, or once per query head
    # (``attention_ops``)
    decode_kv_reads: str = "kv_head"
    # whether the engine runs its prefill (context / extend) attention kernel in fp8 when the
    # KV cache is fp8: Q, K and V quantised to e4m3, QK^T and PV on fp8 tensor cores
    # (engines/<id>.yaml ``attention.fp8_prefill``, by kernel class, compute capability and
    # release; ``attention_ops``). False: the prefill kernel runs 16-bit, whatever the cache
    fp8_prefill_attention: bool = False
    # the MoE kernel's (hidden, intermediate) padding multiples (engine_memory.
    # mxfp4_pad_multiples: vLLM's MXFP4 backends); None: the experts at their own shapes
    expert_pad: tuple[int, int] | None = None


def gemm(name: str, m, n, k, prec: Precision, count=1.0,
         matmuls: tuple[Matmul, ...] = ()) -> Op:
    """C[m,n] = A[m,k] B[k,n]: 2mnk FLOPs; reads A (activations) and B (weights), writes C."""
    prec = prec.for_op(name)
    flops = 2.0 * m * n * k
    dequant = 2.0 * k * n if prec.weight_dequant else 0.0
    act = prec.act if prec.gemm_act is None else prec.gemm_act
    return Op(name=name, cls=GEMM, flops=flops,
              bytes=m * k * act + k * n * prec.weight + m * n * act,
              dtype=prec.compute, count=count, model_flops=flops, vector_flops=dequant,
              shape=(m, n, k), matmuls=matmuls, weight_format=prec.weight_format)


def elementwise(name: str, elems_in, elems_out, act_bytes: float, flops_per_elem=1.0,
                count=1.0, kind: str = "other", attention_core: bool = False) -> Op:
    """A memory-bound kernel: reads ``elems_in`` and writes ``elems_out`` elements. ``kind``
    (layernorm, rmsnorm, gelu, silu_and_mul, add, softmax, rope, copy, cast, ...) selects the
    kernel's measured element rate in a calibration profile: transcendental kernels (GELU's
    erf, softmax's exp) can be compute-bound, on CPUs especially."""
    return Op(name=name, cls=ELEMENTWISE, flops=0.0, bytes=(elems_in + elems_out) * act_bytes,
              dtype="fp32", count=count, vector_flops=flops_per_elem * elems_out,
              shape=(elems_out,), kernel=kind, attention_core=attention_core)


def attention_pairs(q_len, kv_len, causal: bool = True):
    """Query-key pairs one sequence attends: the last ``q_len`` of ``kv_len`` positions attend
    causally to all earlier ones: q*kv - q(q-1)/2 (= s(s+1)/2 for a prompt, kv for decode)."""
    if not causal:
        return q_len * kv_len
    return q_len * kv_len - q_len * (q_len - 1) / 2.0


def attention_curve_point(phase: str, b, q_len, kv_len, kv_heads) -> tuple:
    """Where an attention call sits on its efficiency curve: prefill-like kernels by
    (q_len, kv_len); decode kernels by (sequences x KV heads, kv_len), because a decode
    kernel's parallelism, and so the share of HBM bandwidth it reaches, grows with the
    independent (sequence, KV head) streams it reads (flash-decoding splits long ones)."""
    if phase == "decode":
        return (b * kv_heads, kv_len)
    return (q_len, kv_len)


def attention_ops(model: ModelSpec, b, q_len, kv_len, pairs, shard: Shard, prec: Precision,
                  flash: bool, phase: str, absorbed_mla: bool = False,
                  dropout: bool = False) -> list[Op]:
    """The attention core (softmax(QK^T)V) on one GPU's heads.

    FlashAttention IO (Dao et al. 2022 arXiv 2205.14135): tiling keeps the s x s scores in
    SRAM, so HBM sees the compulsory traffic: Q read and O written once, K and V read once per
    KV head. (Algorithm 1 re-reads K/V from HBM once per query block, Theorem 2; on GPUs with
    tens of MB of L2 the concurrently scheduled query blocks of a head, and the query heads
    of a GQA group, share those re-reads in L2, which is why measured prefill attention runs
    at the same FLOP rate for MHA and GQA, shared/reference measured H100 context kernels.)
    Decode therefore reads the KV cache once. Unfused attention (``flash`` False) also writes
    and re-reads the s x s scores and probabilities (Sec. 2.2 of the same paper): its kernels
    are ``unfused_attention_ops`` (``dropout``: the attention dropout it then runs). MLA decode with absorbed
    projections (DeepSeek-V2 arXiv 2405.04434 Sec. 2.1.2) attends over the compressed latent.

    A decode kernel with one thread block per (sequence, query head), each loading its KV
    head's cache (``shard.decode_kv_reads == "query_head"``: TensorRT-LLM's masked multi-head
    attention before its XQA kernel, decoderMaskedMultiheadAttentionTemplate.h ``hi_kv = hi /
    qhead_per_kv`` on a grid of (num_heads, batch)), reads and dequantises the KV cache once
    per query head, heads / kv_heads times a GQA group's, and runs (sequence, query head)
    streams; MHA is unchanged.

    Prefill with an fp8 KV cache (``prec.attention`` fp8): the fused kernel runs fp8 (Q, K, V
    in e4m3, QK^T and PV on fp8 tensor cores: ``fp8_attention``, the fp8 peak in
    roofline.attention_peak_dtype) only where the engine quantises them for it
    (``shard.fp8_prefill_attention``, engines/<id>.yaml ``attention.fp8_prefill``): e.g.
    SGLang's trtllm_mla backend since v0.5.7 (``_quantize_fp8_qkv`` before
    ``trtllm_ragged_attention_deepseek`` when ``data_type`` is float8_e4m3fn; v0.5.6.post2 ran
    it in bf16; sgl-project/sglang PR #14395 "MLA prefill always use 16-bit despite set
    kv-cache-dtype to fp8"), TensorRT-LLM's ``mFP8ContextMLA`` on SM 90 / 100 / 103 / 120
    with an fp8 cache (cpp/tensorrt_llm/thop/attentionOp.cpp). Elsewhere the prefill kernel is
    the 16-bit one (vLLM's MLA prefill: ``QkvBfloat16`` unless
    ``--attention-config.use_prefill_query_quantization``, default False, vllm-project/vllm
    PR #31195): the core keeps the cache's dtype and is timed as the 16-bit kernel at the bf16
    peak on 16-bit bytes (roofline.attention_peak_dtype); decode keeps the cache's dtype either
    way.
    """
    tp = shard.tp
    heads = model.num_heads / tp
    kv_heads = np.maximum(model.kv_heads / tp, 1.0)  # MQA/GQA heads replicate when tp > kv
    # the kernel's own dtype (Precision.attention; training: the GEMMs'): Q read, O written
    # at its width (fp8 attention: the quantised query; its bf16 output is not told apart)
    dtype = prec.attention or prec.compute
    a, kvb = (nbytes(dtype) if prec.attention else prec.act), prec.kv
    kv_dequant = kvb < nbytes(dtype) if prec.attention else prec.kv_dequant
    # an fp8 KV cache: the fused prefill kernel runs on fp8 tensor cores only where the engine
    # quantises Q, K and V for it (``shard.fp8_prefill_attention``: SGLang's trtllm_mla /
    # trtllm_mha / fa3 backends, TensorRT-LLM's fp8 context FMHA / MLA, vLLM's FlashInfer
    # TRT-LLM and FlashAttention backends); elsewhere the core keeps the cache's dtype and is
    # timed as the 16-bit kernel its curve was fitted on (roofline.attention_peak_dtype)
    fp8_core = bool(flash and prec.attention and phase == "prefill" and not absorbed_mla
                    and nbytes(dtype) < 2 and shard.fp8_prefill_attention)
    if model.mla and absorbed_mla:
        m = model.mla
        d_qk, d_v = m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank
        kv_heads, kv_width = 1.0, d_qk  # one shared latent "head"
    elif model.mla:
        d_qk, d_v = model.mla.qk_head_dim, model.mla.v_head_dim
        kv_width = d_qk + d_v  # K and V widths per head
    else:
        d_qk, d_v = model.hd, model.vd
        kv_width = model.hd + model.vd
    flops_pairs = 2.0 * (d_qk + d_v) * heads
    model_flops = flops_pairs * q_len * kv_len * b  # non-causal convention
    executed = flops_pairs * pairs * b
    q_bytes = b * q_len * heads * (d_qk + d_v) * a  # read Q, write O
    if phase == "decode" and shard.decode_kv_reads == "query_head" and not model.mla:
        kv_heads = np.maximum(kv_heads, heads)  # each query head's block loads its KV head
    kv_read = b * kv_len * kv_heads * kv_width * kvb
    # FlashAttention's online softmax (exp, max, sum per score) runs fused inside the tiled
    # matmul loop; its cost is part of the kernel's measured efficiency (Dao 2023 Sec. 3.1),
    # so only the KV dequantisation is added as separate non-tensor work.
    kv_deq = 2.0 * b * kv_len * kv_heads * kv_width if kv_dequant else 0.0
    point = attention_curve_point(phase, b, q_len, kv_len, kv_heads)
    core = {"cls": ATTENTION, "dtype": dtype, "shape": point, "phase": phase,
            "attention_core": True, "head_dim": 0.0 if model.mla else float(d_qk),
            "fp8_attention": fp8_core,
            "attention_kind": "mla" if model.mla and not absorbed_mla else ""}
    if flash:
        return [Op(name="attn.core", flops=executed, bytes=q_bytes + kv_read,
                   model_flops=model_flops, vector_flops=kv_deq, **core)]
    if nbytes(dtype) < 2:  # no fp8 batched GEMM: K and V dequantised into a 16-bit one
        dtype, a = "bf16", 2.0
    return unfused_attention_ops(b * heads, q_len, kv_len, b * heads * pairs, d_qk, d_v,
                                 kv_read * d_qk / kv_width,
                                 kv_read * (kv_width - d_qk) / kv_width, a, dtype, phase,
                                 model_flops, kv_deq, dropout)


def unfused_attention_ops(problems, q_len, kv_len, kept, d_qk, d_v, k_bytes, v_bytes,
                          a: float, dtype: str, phase: str, model_flops, kv_deq=0.0,
                          dropout: bool = False) -> list[Op]:
    """Attention without FlashAttention, as the kernels Megatron-LM's CoreAttention runs them
    (NVIDIA/Megatron-LM megatron/model/transformer.py ``CoreAttention.forward`` at 7fccd6a1,
    2022-06, the code of Korthikanti et al. 2022; the same calls in ``ParallelAttention`` at
    a8d172b3, 2021-04, Narayanan et al. 2021; microsoft/Megatron-DeepSpeed 928a200
    ``CoreAttention``), on ``problems`` = micro-batch x heads / TP (query heads) of this GPU:

    1. ``torch.baddbmm(empty, q, k^T, beta=0, alpha=1/norm_factor)``: one cuBLAS
       strided-batched GEMM per problem (M = q_len, N = kv_len, K = d_qk); the 1/sqrt(d) scale
       rides in alpha and beta = 0 reads no C. Q and K are strided views, no copy.
    2. ``FusedScaleMaskSoftmax`` (megatron/model/fused_softmax.py): with a causal mask the
       ``scaled_upper_triang_masked_softmax`` kernel (megatron/fused_kernels/
       scaled_upper_triang_masked_softmax.h ``warp_forward``) reads each row's ``local_seq``
       unmasked scores (``kept`` elements in all: the causal pairs) and writes the whole row
       (zeros past the diagonal); its backward reads the output gradient and the output over
       the same elements and writes the whole row. It runs for 16 < kv_len <= 2048 at a8d172b3
       (``custom_kernel_constraint``), <= 4096 from 7a77abd9 (2022-01); beyond that Megatron
       falls back to torch's cast / scale / mask / softmax passes, not modelled here.
    3. Attention dropout (``dropout``; ``torch.nn.Dropout`` in training): PyTorch's
       ``fused_dropout_cuda`` reads the probabilities, writes the output and a uint8 mask
       (aten/src/ATen/native/cuda/Dropout.cu, v1.8 ``mask ... dtype(kByte)``); backward
       ``masked_scale_cuda`` reads the gradient and the mask and writes the input gradient.
       Korthikanti et al. 2022 Sec. 4.1 keep the same tensors: the softmax output (2 a s^2 b),
       the dropout mask (a s^2 b) and its output (2 a s^2 b) (``memory._attention_saved_bytes``).
    4. ``torch.bmm(probs, v)``: M = q_len, N = d_v, K = kv_len per problem.
    5. ``context_layer.permute(2, 0, 1, 3).contiguous()``: one copy of the output (read and
       write q_len x d_v per problem) back to [s, b, h]. Its backward is a view: the gradient's
       permuted strides are cuBLAS-legal (unit column stride), so the bmm backward reads it in
       place and no copy runs.

    The batched GEMMs are GEMMs (``GEMM`` class, ``batch`` = problems stacked along m in
    ``shape``): the profile's GEMM curve at their per-call tiles, not an attention kernel's
    efficiency. Their backward is two GEMMs each of the forward's FLOPs (``backward``), 2x the
    forward, not FlashAttention's 2.5x (no recompute of the scores: they are kept).
    ``k_bytes`` / ``v_bytes``: the K / V bytes read (per KV head); ``kv_deq``: non-tensor
    FLOPs of dequantising them."""
    scores = problems * q_len * kv_len  # the full (masked) matrix is computed and written
    core = {"dtype": dtype, "phase": phase, "attention_core": True, "batch": problems}
    q_bytes, o_bytes = problems * q_len * d_qk * a, problems * q_len * d_v * a
    qk = Op(name="attn.qk", cls=GEMM, flops=2.0 * d_qk * scores,
            bytes=q_bytes + k_bytes + scores * a, model_flops=model_flops * d_qk / (d_qk + d_v),
            vector_flops=kv_deq / 2, shape=(problems * q_len, kv_len, d_qk), **core)
    # shape: elements written, elements read (its backward reads the read ones twice)
    softmax = replace(elementwise("attn.softmax", kept, scores, a, 5.0, kind="softmax",
                                  attention_core=True), shape=(scores, kept))
    ops = [qk, softmax]
    if dropout:
        ops.append(Op(name="attn.dropout", cls=ELEMENTWISE, flops=0.0,
                      bytes=scores * (2.0 * a + DROPOUT_MASK_BYTES), dtype="fp32",
                      vector_flops=2.0 * scores, shape=(scores,), kernel="dropout",
                      attention_core=True))
    ops.append(Op(name="attn.pv", cls=GEMM, flops=2.0 * d_v * scores,
                  bytes=scores * a + v_bytes + o_bytes, model_flops=model_flops * d_v / (d_qk + d_v),
                  vector_flops=kv_deq / 2, shape=(problems * q_len, d_v, kv_len), **core))
    ops.append(elementwise("attn.context_copy", problems * q_len * d_v, problems * q_len * d_v,
                           a, 0.0, kind="copy", attention_core=True))
    return ops


#: bytes per element of a dropout mask: PyTorch's fused dropout writes a uint8 mask
#: (aten/src/ATen/native/cuda/Dropout.cu v1.8 ``fused_dropout_cuda``; bool from v1.12's
#: ``native_dropout``, also 1 byte); Korthikanti et al. 2022 Sec. 4.1 count it so
DROPOUT_MASK_BYTES = 1.0


def projection_ops(model: ModelSpec, t, shard: Shard, prec: Precision
                   ) -> tuple[list[Op], list[Op]]:
    """(before the core, after it): QKV (or MLA down/up) projections and rotary embedding;
    the output projection."""
    h, tp = model.hidden_size, shard.tp
    nh = model.num_heads
    ops: list[Op] = []
    def one(width: float, column_parallel: bool) -> tuple[Matmul, ...]:
        return (Matmul(1.0, width, column_parallel),)

    if model.mla:
        m = model.mla
        if m.q_lora_rank:
            ops.append(gemm("attn.q_down", t, m.q_lora_rank, h, prec,
                            matmuls=one(m.q_lora_rank, False)))
            ops.append(gemm("attn.q_up", t, nh * m.qk_head_dim / tp, m.q_lora_rank, prec,
                            matmuls=one(nh * m.qk_head_dim, True)))
        else:
            ops.append(gemm("attn.q", t, nh * m.qk_head_dim / tp, h, prec,
                            matmuls=one(nh * m.qk_head_dim, True)))
        kv_down = m.kv_lora_rank + m.qk_rope_head_dim
        ops.append(gemm("attn.kv_down", t, kv_down, h, prec, matmuls=one(kv_down, False)))
        kv_up = nh * (m.qk_nope_head_dim + m.v_head_dim)
        ops.append(gemm("attn.kv_up", t, kv_up / tp, m.kv_lora_rank, prec,
                        matmuls=one(kv_up, True)))
        rope_elems = t * (nh / tp + 1) * m.qk_rope_head_dim
        out_k = nh * m.v_head_dim / tp
        if model.attention_output_gate:  # g_proj: a sigmoid gate on the output (Kimi K3)
            ops.append(gemm("attn.gate", t, out_k, h, prec,
                            matmuls=one(nh * m.v_head_dim, True)))
    else:
        hd, kv = model.hd, model.kv_heads
        q, k = nh * hd, kv * hd
        v = 0 if model.shared_kv_projection else kv * model.vd  # V = K's projection
        n = q + k + v
        parts = (Matmul(q / n, q, True), Matmul(k / n, k, True),
                 *((Matmul(v / n, v, True),) if v else ()))  # q, k, v fused
        ops.append(gemm("attn.qkv", t, n / tp, h, prec, matmuls=parts))
        rope_elems = t * (nh + kv) * hd / tp
        out_k = nh * model.vd / tp
    if model.position_embedding == "rope":
        ops.append(elementwise("attn.rope", rope_elems, rope_elems, prec.hidden, 3.0, kind="rope"))
    return ops, [gemm("attn.out", t, h, out_k, prec, matmuls=one(h, False))]


def grouped_gemm(name: str, rows, n, k, groups, prec: Precision,
                 matmuls: tuple[Matmul, ...] = ()) -> Op:
    """One grouped GEMM call over ``groups`` weight matrices of k x n (a MoE layer's active
    experts on one GPU, as vLLM's fused MoE, DeepGEMM and TE's grouped GEMM run them):
    ``rows`` rows in all, rows / groups per problem. 2 rows n k FLOPs; each active expert's
    weights are read once, the activations once. The efficiency is looked up at one
    problem's shape; the call pays one kernel's fixed cost."""
    m = rows / groups
    op = gemm(name, m, n, k, prec, matmuls=matmuls)
    op.flops = op.model_flops = 2.0 * rows * n * k
    op.bytes = groups * op.bytes
    op.vector_flops = groups * op.vector_flops
    op.groups = groups
    return op


def routed_rows(tokens: Array, top_k: int, ep: Array, imbalance: Array = 1.0) -> Array:
    """Token-expert rows one EP rank's grouped GEMMs process: the ``tokens`` routed by the
    whole EP group, top_k copies each, spread evenly over the ep ranks' experts (uniform
    routing), times ``imbalance`` on the busiest rank (max / mean rows; 1 = uniform). Summed
    over the ranks (imbalance 1) they are tokens x top_k: no rank computes another's rows."""
    return np.asarray(tokens, float) * top_k / np.asarray(ep, float) * imbalance


def active_experts(experts: Array, top_k: int, tokens: Array) -> Array:
    """Expected experts of ``experts`` that receive at least one of ``tokens`` tokens, each
    routed to ``top_k`` distinct experts uniformly: E (1 - (1 - k/E)^T) (the occupancy of
    E bins after T draws of k; a decode step of 1 token reads k experts' weights, a large
    batch all of them)."""
    e = np.asarray(experts, float)
    return e * (1.0 - (1.0 - top_k / e) ** np.asarray(tokens, float))


def experts_per_gpu(experts: Array, redundant: Array, ep: Array) -> Array:
    """Routed experts one GPU holds: (E + R) / ep, E logical experts and R redundant copies
    (EPLB) spread over ep ranks; the one rule weights memory (every engine and generic), the
    grouped GEMM's local experts and the routed-expert bytes follow (DeepSeek-R1 EP8 with 64
    redundant: 40 per GPU; EP72 with 32: 4)."""
    return (np.asarray(experts, float) + np.asarray(redundant, float)) / np.asarray(ep, float)


def expert_shards(experts: int, redundant: Array, ep: Array) -> Array:
    """The ep that ``stages.stage_params`` divides the E routed experts by so one GPU holds
    ``experts_per_gpu``: E / ((E + R) / ep); ep itself without redundant experts."""
    if not np.any(np.asarray(redundant)):
        return ep
    return experts / experts_per_gpu(experts, redundant, ep)


def local_active_experts(experts: Array, redundant: Array, top_k: int, tokens: Array,
                         ep: Array) -> Array:
    """Expected experts of one EP rank that receive at least one of ``tokens`` routed tokens:
    the E + R physical copies (R redundant, EPLB; DeepSeek-V3 report arXiv 2412.19437
    Sec. 3.4 "redundant experts", SGLang ``--ep-num-redundant-experts``), (E + R) / ep per
    rank. Assumed: each logical expert's tokens spread uniformly over its copies and EPLB
    places the copies so every copy carries an equal share, so a token's top_k distinct
    experts land on top_k distinct copies drawn uniformly from the E + R:
    ``active_experts(E + R, k, T) / ep``, (E + R) / ep at full coverage (E / ep without
    redundancy)."""
    return active_experts(np.asarray(experts, float) + np.asarray(redundant, float), top_k,
                          tokens) / np.asarray(ep, float)


def padded_expert_shape(width, inter, multiples: tuple[int, int] | None):
    """(H', I_p'): the expert input width H (hidden or latent) and per-partition intermediate
    size I_p rounded up to the backend's multiples (vLLM ``Mxfp4MoEMethod.create_weights``);
    unchanged without multiples. Arrays allowed (I_p over a grid of expert splits)."""
    if multiples is None:
        return width, inter
    hid, mid = multiples
    return (np.ceil(np.asarray(width, float) / hid) * hid,
            np.ceil(np.asarray(inter, float) / mid) * mid)


def mlp_ops(model: ModelSpec, t, ffn, tp, prec: Precision, prefix: str = "mlp",
            groups=1.0, fanout: float = 1.0, width: int | None = None) -> list[Op]:
    """Up (gate+up fused when gated), activation, down. ``groups`` > 1: grouped GEMMs over
    that many experts' weights (``grouped_gemm``), t rows in all; ``fanout`` rows per token
    of the layer (top-k routing); ``width``: the width read and written when not the hidden
    size (a latent MoE's experts)."""
    h = width or model.hidden_size
    up_n = (2 if model.gated_mlp else 1) * ffn / tp
    act_in = up_n * t
    act_out = ffn / tp * t
    width = ffn * fanout
    ups = ((Matmul(0.5, width, True), Matmul(0.5, width, True)) if model.gated_mlp
           else (Matmul(1.0, width, True),))
    return [
        grouped_gemm(f"{prefix}.up", t, up_n, h, groups, prec, matmuls=ups),
        activation_op(f"{prefix}.act", act_in, act_out, prec, model.activation, model.gated_mlp),
        grouped_gemm(f"{prefix}.down", t, h, ffn / tp, groups, prec,
                     matmuls=(Matmul(1.0, h, False),)),
    ]


def activation_op(name: str, elems_in, elems_out, prec: Precision, activation: str,
                  gated: bool) -> Op:
    """The MLP's activation kernel between its up and down GEMMs: reads the up projection's
    output (``elems_in``: gate and up halves when ``gated``), writes ``elems_out``."""
    kind = ("relu" if activation == "relu" else
            f"{'silu' if activation in ('silu', 'swiglu') else 'gelu'}{'_and_mul' if gated else ''}")
    return elementwise(name, elems_in, elems_out, prec.hidden, 8.0, kind=kind)


def moe_topk_op(tokens, experts, top_k, prec: Precision) -> Op:
    """A MoE layer's routing kernel: softmax / top-k over each token's ``experts`` router
    logits, writing its ``top_k`` choices."""
    return elementwise("moe.topk", tokens * experts, tokens * top_k, prec.hidden, 4.0,
                       kind="softmax")


def moe_combine_op(routed, tokens, width, prec: Precision) -> Op:
    """A MoE layer's combine: the ``routed`` token-expert rows of ``width`` weighted and summed
    back into ``tokens`` rows (un-permute and weighted sum)."""
    return elementwise("moe.combine", routed * width, tokens * width, prec.hidden, kind="add")


#: vector FLOPs per element of a residual add (``residual_op``) and of a norm (``norm_op``)
ADD_FLOPS_PER_ELEM = 1.0
NORM_FLOPS_PER_ELEM = {"layernorm": 7.0, "rmsnorm": 4.0}


def norm_op(name: str, model: ModelSpec, tokens, prec: Precision) -> Op:
    return elementwise(name, tokens * model.hidden_size, tokens * model.hidden_size, prec.hidden,
                       NORM_FLOPS_PER_ELEM[model.norm], kind=model.norm)


def mixer_ops(model: ModelSpec, moe_layer: bool, b, q_len, kv_len, pairs, shard: Shard,
              prec: Precision, flash: bool, phase: str, absorbed_mla: bool = False,
              dropout: bool = False) -> list[Op]:
    """The token mixer of one layer of this MLP kind: projections, attention core and output
    projection. With ``layer_types`` the layers of one kind mix full, sliding-window and
    linear attention (attention_variants.attention_mix); each kind's operators then run with
    a count equal to its share of those layers, so that count x layers is exact.

    Sliding window W: the core attends min(j, W) keys per query (``windowed_pairs``) and reads
    the min(kv, q + W - 1) keys in reach; the non-causal model FLOPs count q x min(kv, W).
    Identical to full attention while kv_len <= W. Sliding layers with their own shape
    (ModelSpec.sliding_attention) run it (attention_variants.kind_model).

    DeepSeek sparse attention (MLASpec.indexer_topk = k; DeepSeek-V3.2 arXiv 2512.02556
    Sec. 2): each query attends the k keys its indexer selects, min(j, k) at position j, the
    same count as a window of k; they may lie anywhere, so up to min(kv, q k) distinct keys
    are read. The indexer itself (``indexer_ops``) runs in the layers that own one.
    MiniMax Sparse Attention (ModelSpec.block_sparse): its sparse layers attend the top-k
    blocks' keys the same way, its other layers all keys."""
    from .attention_variants import (
        COMPRESSED,
        LINEAR,
        MAMBA,
        NO_MIXER,
        SLIDING,
        attention_mix,
        kind_model,
    )
    from .parameters import indexer_owner_share

    out: list[Op] = []
    for kind, share in attention_mix(model, moe_layer):
        if kind == NO_MIXER:
            continue
        if kind == COMPRESSED:
            part = compressed_attention_ops(model, moe_layer, b, q_len, kv_len, pairs, shard,
                                            prec, phase)
        elif kind == LINEAR:
            part = linear_attention_ops(model, b, q_len, shard, prec, phase)
        elif kind == MAMBA:
            part = mamba_ops(model, b, q_len, shard, prec, phase)
        else:
            km = kind_model(model, kind)  # the sliding layers' own shape, if any
            part = []
            for reach, weight in _attention_reaches(model, kind, moe_layer):
                core = _attention_core(km, b, q_len, kv_len, pairs, shard, prec, flash, phase,
                                       absorbed_mla, reach, kind == SLIDING, dropout)
                if weight != 1.0:
                    for op in core:
                        op.count = op.count * weight
                part += core
            before, after = projection_ops(km, b * q_len, shard, prec)
            owners = indexer_owner_share(model, moe_layer)
            if owners:
                before = [*before, *indexer_ops(model, b, q_len, kv_len, pairs, prec, phase,
                                                owners)]
            part = [*before, *part, *after]
        if share != 1.0:
            for op in part:
                op.count = op.count * share
        out += part
    return out


def _attention_reaches(model: ModelSpec, kind: str, moe_layer: bool
                       ) -> list[tuple[float | None, float]]:
    """(keys each query reaches, share) of the attention layers of one kind and MLP kind: the
    window of sliding layers; the top-k of sparse attention (DSA: every layer, shared-index
    ones too; MSA: its sparse layers, the others dense); None (all keys) otherwise."""
    from .attention_variants import SLIDING
    from .parameters import indexer_owner_share

    if kind == SLIDING:
        return [(model.sliding_window, 1.0)]
    topk = sparse_topk(model)
    if topk is None:
        return [(None, 1.0)]
    if model.block_sparse is None:
        return [(topk, 1.0)]
    sparse = indexer_owner_share(model, moe_layer)
    return [(r, w) for r, w in ((topk, sparse), (None, 1.0 - sparse)) if w > 0]


def _attention_core(km: ModelSpec, b, q_len, kv_len, pairs, shard: Shard, prec: Precision,
                    flash: bool, phase: str, absorbed_mla: bool, reach, window: bool,
                    dropout: bool = False) -> list[Op]:
    """The attention core over the keys in ``reach`` of each query (a window of W contiguous
    keys, or a top-k selection; None: all), with the sinks' extra softmax element.

    DeepSeek sparse attention runs in MLA's MQA mode (DeepSeek-V3.2 arXiv 2512.02556 Sec.
    2.1, "we implement DSA based on the MQA mode of MLA": every selected latent entry is
    shared by all query heads), i.e. with absorbed projections in prefill too, over
    kv_lora_rank + rope dims per key. A prefill whose keys all fit in the top-k (kv_len <=
    index_topk) attends every key anyway and runs dense MHA instead (SGLang NSA backend,
    v0.5.6.post2 layers/attention/nsa_backend.py: use_mha ("MHA_ONE_SHOT") only when the
    batch's max kv length <= nsa_index_topk on SM90 / SM100, else the absorbed MLA path)."""
    from .attention_variants import windowed_keys, windowed_pairs

    kv, pr = kv_len, pairs
    if reach:
        w = float(reach)
        full = attention_pairs(q_len, kv_len)
        pr = pairs * np.where(full > 0, windowed_pairs(q_len, kv_len, w)
                              / np.maximum(full, 1e-30), 1.0)
        # a window's keys are contiguous; top-k selections of different queries may each
        # pick other keys: up to q x k distinct ones
        kv = (windowed_keys(q_len, kv_len, w) if window
              else np.minimum(kv_len, np.asarray(q_len, float) * w))
    core = attention_ops(km, b, q_len, kv, pr, shard, prec, flash, phase, absorbed_mla, dropout)
    if reach and window:  # the window binds where keys beyond it exist
        for op in core:
            if op.cls == ATTENTION:
                op.window = np.where(np.asarray(kv_len, float) > float(reach), float(reach), 0.0)
    if (reach and not window and phase in ("prefill", "fwd") and not absorbed_mla and km.mla
            and km.mla.indexer_topk and km.block_sparse is None):  # DSA: MQA mode past top-k
        mqa = attention_ops(km, b, q_len, kv, pr, shard, prec, flash, phase, True, dropout)
        sparse = np.asarray(kv_len, float) > float(reach)
        for op, alt in zip(core, mqa, strict=True):
            for f in ("flops", "bytes", "model_flops", "vector_flops"):
                setattr(op, f, np.where(sparse, getattr(alt, f), getattr(op, f)))
            if np.any(sparse):  # the sparse MQA-mode kernel (FlashMLA), not MLA's prefill
                op.attention_kind = alt.attention_kind  # one kind per operator: the grid's
                # dense elements (kv_len <= top-k) then read the phase's curve as well
    if reach:  # model FLOPs: q x min(kv, W or k) pairs (non-causal convention);
        # attention_ops counted q x kv with the keys in reach as kv (the unfused path: its
        # batched GEMMs)
        for op in core:
            if op.cls == ATTENTION or (op.cls == GEMM and op.attention_core):
                op.model_flops = op.model_flops * np.minimum(
                    kv_len, reach) / np.maximum(kv, 1e-30)
    if km.attention_sinks:  # one extra softmax element per query row and head
        core[0].vector_flops = core[0].vector_flops + 5.0 * b * q_len * (
            km.num_heads / shard.tp)
    return core




def causal_attention_ops(model: ModelSpec, b, q_len, kv_len, shard: Shard, prec: Precision,
                         phase: str, window: float = 0.0) -> list[Op]:
    """The fused attention core of causal calls of ``b`` sequences (``q_len`` new queries over
    ``kv_len`` keys) with a sliding window of ``window`` keys (0: none), as a layer builds it
    (``_attention_core``): what a calibration fit times a measured attention kernel with."""
    return _attention_core(model, b, q_len, kv_len, attention_pairs(q_len, kv_len), shard, prec,
                           True, phase, False, float(window) or None, True)


INDEX_KEY_BYTES_BLOCK_SPARSE = 2.0  # vLLM MiniMax-M3 indexer_kv_dtype default "bf16"


def sparse_topk(model: ModelSpec) -> int | None:
    """Keys each query of a sparse-attention layer attends (DSA index_topk, MSA top-k blocks
    x block size); None for dense attention."""
    if model.block_sparse is not None:
        return model.block_sparse.topk
    return model.mla.indexer_topk if model.mla else None


def indexer_key_bytes(model: ModelSpec) -> float:
    """Index-cache bytes of one token in one layer that owns an indexer: DSA's fp8 keys and
    their fp32 block scales (vLLM ``DeepseekV32IndexerCache``), MSA's one bf16 index key
    (vLLM MiniMaxM3Indexer side cache); shared by all heads, not TP-split."""
    if model.block_sparse is not None:
        return model.block_sparse.index_head_dim * INDEX_KEY_BYTES_BLOCK_SPARSE
    from .attention_variants import fp8_index_key_bytes

    return fp8_index_key_bytes(model.mla.indexer_head_dim)


def indexer_ops(model: ModelSpec, b, q_len, kv_len, pairs, prec: Precision, phase: str,
                share: float) -> list[Op]:
    """The DeepSeek-sparse-attention lightning indexer of one layer (DeepSeek-V3.2 arXiv
    2512.02556 Sec. 2.1; parameters.indexer_params), run with count ``share`` (the share of
    the layers that own one: GLM-5.2's "shared" layers reuse the top-k and skip it). wq_b on
    the query latent, wk and weights_proj on the hidden state, the key LayerNorm; the core
    scores every causal query-key pair with every indexer head, 2 heads x head_dim FLOPs per
    pair, reads the fp8 index keys once per sequence and writes the fp32 logits of the causal
    pairs, which the top-k kernel reads back, writing int32 indices (DeepGEMM fp8_mqa_logits
    + top-k, as vLLM's sparse_attn_indexer runs it). The core runs in fp8 (DeepSeek-V3.2
    Sec. 2.1: the indexer "can be implemented in FP8"; fp8 keys in vLLM's indexer cache; a
    device without fp8 falls back to its 16-bit rate), at the attention curve's efficiency
    (the indexer kernel is not separately calibrated). Replicated over TP (its weights are
    ``attention_replicated``: every TP rank indexes all tokens)."""
    if model.block_sparse is not None:
        return _block_sparse_indexer_ops(model, b, q_len, kv_len, pairs, prec, phase, share)
    m = model.mla
    h, n, d = model.hidden_size, m.indexer_heads, m.indexer_head_dim
    t = b * q_len
    logits = b * np.asarray(pairs, float)  # causal query-key pairs
    flops = 2.0 * n * d * pairs * b
    ops = [gemm("attn.index_q", t, n * d, m.q_lora_rank or h, prec,
                matmuls=(Matmul(1.0, n * d, False),)),
           gemm("attn.index_k", t, d, h, prec, matmuls=(Matmul(1.0, d, False),)),
           gemm("attn.index_w", t, n, h, prec, matmuls=(Matmul(1.0, n, False),)),
           elementwise("attn.index_norm", t * d, t * d, prec.hidden, 7.0, kind="layernorm"),
           Op(name="attn.index_core", cls=ATTENTION, flops=flops,
              bytes=t * n * d * prec.act + b * kv_len * indexer_key_bytes(model)
              + 4.0 * logits, dtype="fp8", model_flops=flops,
              shape=attention_curve_point(phase, b, q_len, kv_len, 1.0), phase=phase,
              attention_core=True),
           elementwise("attn.index_topk", logits,
                       b * q_len * np.minimum(kv_len, m.indexer_topk or kv_len), 4.0, 2.0,
                       kind="softmax")]
    for op in ops:
        op.count = op.count * share
    return ops


def _block_sparse_indexer_ops(model: ModelSpec, b, q_len, kv_len, pairs, prec: Precision,
                               phase: str, share: float) -> list[Op]:
    """MiniMax Sparse Attention's index branch (vLLM MiniMaxM3SparseAttention /
    MiniMaxM3Indexer; ModelSpec.block_sparse): index queries (one head per KV head) and the
    index key come out of the fused QKV GEMM (counted here as their own GEMM of the same
    shape), RMS-normed; the scoring kernel takes every causal query-key pair per index head
    (2 x index_head_dim FLOPs), reads the bf16 index keys once per sequence, keeps each
    block's max and writes one fp32 score per (index head, query, block), which the top-k
    kernel reads back. Runs at the GEMM precision; replicated over TP (counted with the
    replicated parameters)."""
    bs = model.block_sparse
    h, n, d = model.hidden_size, bs.index_heads, bs.index_head_dim
    t = b * q_len
    flops = 2.0 * n * d * pairs * b
    scores = b * n * np.asarray(pairs, float) / bs.block_size
    ops = [gemm("attn.index_qk", t, (n + 1) * d, h, prec,
                matmuls=(Matmul(1.0, (n + 1) * d, False),)),
           elementwise("attn.index_norm", t * (n + 1) * d, t * (n + 1) * d, prec.hidden, 4.0,
                       kind="rmsnorm"),
           Op(name="attn.index_core", cls=ATTENTION, flops=flops,
              bytes=t * n * d * prec.act + b * kv_len * indexer_key_bytes(model) + 4.0 * scores,
              dtype=prec.compute, model_flops=flops,
              shape=attention_curve_point(phase, b, q_len, kv_len, 1.0), phase=phase,
              attention_core=True),
           elementwise("attn.index_topk", scores, b * n * q_len * bs.topk_blocks, 4.0, 2.0,
                       kind="softmax")]
    for op in ops:
        op.count = op.count * share
    return ops


def gdn_core_flops(la, tokens, phase: str):
    """Tensor FLOPs of the gated delta rule per value head for ``tokens`` tokens.

    Chunked form (Yang et al. 2024 arXiv 2412.06464 Sec. 3.3, chunk C, WY representation):
    per token K K^T and Q K^T within the chunk (2 x C dk), the triangular solve (C^2 / 3),
    W = T K and U = T V (C dk + C dv), the intra-chunk P U (C dv), and against the state
    Q S, W S and the state update K^T U (3 dk dv): 2 x (C (3 dk + 2 dv) + C^2/3 + 3 dk dv).
    Recurrent form (one token, decode): decay, S^T k, rank-one update and S^T q:
    2 x 3 dk dv + dk dv."""
    dk, dv, c = la.key_head_dim, la.value_head_dim, GDN_CHUNK_TOKENS
    if phase == "decode":
        return tokens * (7.0 * dk * dv)
    return tokens * 2.0 * (c * (3 * dk + 2 * dv) + c * c / 3.0 + 3 * dk * dv)


GDN_CHUNK_TOKENS = 64  # attention_variants.GDN_CHUNK (fla chunk_gated_delta_rule)


def gdn_core_bytes(la, tokens, act: float, phase: str):
    """HBM bytes of the gated delta rule per value head for ``tokens`` tokens, without the
    recurrent state itself. Decode (fused_recurrent_gated_delta_rule): q, k, v, g, beta in and
    o out. Chunked prefill runs fla's kernel chain (fla-org/flash-linear-attention
    fla/ops/gated_delta_rule/chunk.py ``chunk_gated_delta_rule_fwd``, copied in vLLM
    model_executor/layers/fla/ops/chunk.py), each kernel re-reading its inputs from HBM:
    kkt reads k, writes A (fp32, C per token); solve_tril reads A, writes A (act dtype);
    recompute_w_u reads k, v, A, writes w, u; fwd_h reads k, w, u, writes the chunk states h
    (dk dv / C per token) and v_new; fwd_o reads q, k, v_new, h and writes o."""
    dk, dv, c = la.key_head_dim, la.value_head_dim, GDN_CHUNK_TOKENS
    if phase == "decode":
        return tokens * act * (2 * dk + 2 * dv + 2)
    elems = (dk + c) + (c + dk + dv + c + dk + dv) + (2 * dk + dv + dk * dv / c + dv) \
        + (2 * dk + dv + dk * dv / c + dv) + 2  # + g, beta
    return tokens * (act * elems + 4.0 * c * 2)  # A in fp32: written by kkt, read by solve


def linear_attention_ops(model: ModelSpec, b, q_len, shard: Shard, prec: Precision,
                         phase: str) -> list[Op]:
    """A gated-delta-net mixer (Qwen3NextGatedDeltaNet, parameters.linear_attention_params):
    in_proj_qkvz and in_proj_ba GEMMs, the depthwise causal conv1d, the delta-rule core, the
    gated RMSNorm and out_proj. Kimi delta attention (kind "kda") has the same core
    structure (a gated delta rule whose decay is per channel instead of per head, Kimi
    Linear arXiv 2510.26692 Sec. 3: the same chunked WY matmuls, the decay applied
    elementwise), counted with the gated delta rule's FLOPs and bytes (its core is named
    ``attn.kda_core``: it reads curves of its own kind, roofline.LINEAR_KINDS); its projections are
    q/k/v, f_a -> f_b, b_proj and the output gate. The core reads q, k, v, gates and the state, writes the output
    and the new state (compulsory traffic); its FLOPs are ``gdn_core_flops``. Its efficiency
    is looked up on the attention curve at (q_len, q_len) for prefill and, for decode, at
    (sequences x heads, the state's size in KV-token equivalents): an assumption, checked
    against measured gdn kernels in tests/test_attention_variants.py. The recurrent state is
    read and written at the bytes the engine keeps it in (LinearAttentionSpec.state_bytes)."""
    la = model.linear_attention
    h, tp = model.hidden_size, shard.tp
    t = b * q_len
    kd, vd = la.num_key_heads * la.key_head_dim, la.num_value_heads * la.value_head_dim
    nv = np.maximum(la.num_value_heads / tp, 1.0)
    share = nv / la.num_value_heads  # of the heads and channels on this GPU
    qkvz = 2 * kd + 2 * vd
    conv_dim = 2 * kd + vd
    if la.kind == "kda":  # q, k, v; the decay gate f_a -> f_b; beta; the output gate
        dk = la.key_head_dim
        ops = [gemm("attn.in_proj_qkv", t, conv_dim * share, h, prec,
                    matmuls=(Matmul(1.0, conv_dim, True),)),
               gemm("attn.f_a", t, dk, h, prec, matmuls=(Matmul(1.0, dk, False),)),
               gemm("attn.f_b", t, vd * share, dk, prec, matmuls=(Matmul(1.0, vd, True),)),
               gemm("attn.b_proj", t, la.num_value_heads * share, h, prec,
                    matmuls=(Matmul(1.0, la.num_value_heads, True),))]
        if la.full_rank_gate:
            ops.append(gemm("attn.g_proj", t, vd * share, h, prec,
                            matmuls=(Matmul(1.0, vd, True),)))
        else:
            ops += [gemm("attn.g_a", t, dk, h, prec, matmuls=(Matmul(1.0, dk, False),)),
                    gemm("attn.g_b", t, vd * share, dk, prec, matmuls=(Matmul(1.0, vd, True),))]
        ops.append(elementwise("attn.conv1d", t * conv_dim * share, t * conv_dim * share,
                               prec.hidden, 2.0 * la.conv_kernel, kind="conv1d"))
    else:
        ops = [gemm("attn.in_proj_qkvz", t, qkvz * share, h, prec,
                    matmuls=(Matmul(1.0, qkvz, True),)),
               gemm("attn.in_proj_ba", t, 2 * la.num_value_heads * share, h, prec,
                    matmuls=(Matmul(1.0, 2 * la.num_value_heads, True),)),
               elementwise("attn.conv1d", t * conv_dim * share, t * conv_dim * share, prec.hidden,
                           2.0 * la.conv_kernel, kind="conv1d")]
    flops = nv * gdn_core_flops(la, t, phase)
    state = b * nv * la.key_head_dim * la.value_head_dim * la.state_bytes
    io = nv * gdn_core_bytes(la, t, prec.act, phase)
    kv_equiv = la.key_head_dim * la.value_head_dim / (2.0 * la.value_head_dim)
    point = ((b * nv, kv_equiv) if phase == "decode" else (q_len, q_len))
    name = "attn.kda_core" if la.kind == "kda" else "attn.gdn_core"
    # batch: the (sequence, value head) recurrences, where a linear-attention curve places
    # the call (roofline.LINEAR_KINDS); read by no other curve
    ops.append(Op(name=name, cls=ATTENTION, flops=flops, bytes=io + 2.0 * state,
                  dtype=prec.compute, model_flops=flops, shape=point, phase=phase,
                  attention_core=True, batch=b * nv))
    ops.append(elementwise("attn.gated_norm", 2 * t * vd * share, t * vd * share, prec.hidden,
                           6.0, kind="rmsnorm"))
    ops.append(gemm("attn.out", t, h, vd * share, prec, matmuls=(Matmul(1.0, h, False),)))
    return ops


def mamba_ops(model: ModelSpec, b, q_len, shard: Shard, prec: Precision, phase: str
              ) -> list[Op]:
    """A Mamba-2 mixer (parameters.mamba_params): in_proj GEMM, depthwise conv1d, the SSD
    core, gated RMSNorm and out_proj.

    SSD chunked algorithm (Dao & Gu 2024 arXiv 2405.21060 Sec. 6, chunk Q, head dim P, state
    N, g groups): per token, the intra-chunk C B^T once per group (2 Q N g) and, per head, its
    product with X (2 Q P), the chunk states B^T X (2 N P) and the state-to-output C h (2 N P).
    Bytes: x, B, C, dt in, y out, and the fp32 chunk states (N P per head per chunk) written
    and read back. Decode (selective state update): dA h + dB x and C h, 5 N P per head; the
    state read and written once. Efficiency as for ``linear_attention_ops``."""
    m = model.mamba
    h, tp = model.hidden_size, shard.tp
    t = b * q_len
    nh = np.maximum(m.num_heads / tp, 1.0)
    share = nh / m.num_heads
    proj = 2 * m.d_inner + 2 * m.n_groups * m.state_size + m.num_heads
    n, p, q = m.state_size, m.head_dim, m.chunk_size
    groups = np.maximum(m.n_groups * share, 1.0)
    io = t * (m.conv_dim * share + nh + m.d_inner * share) * prec.act  # x, B, C, dt; y
    if phase == "decode":
        flops = t * nh * 5.0 * n * p
        core_bytes = io
    else:
        flops = t * (2.0 * q * n * groups + nh * 2.0 * (q * p + 2 * n * p))
        core_bytes = io + 2.0 * t / q * nh * n * p * 4.0
    state = b * nh * n * p * m.state_bytes
    kv_equiv = n * p / (2.0 * p)
    point = (b * nh, kv_equiv) if phase == "decode" else (q_len, q_len)
    return [
        gemm("attn.in_proj", t, proj * share, h, prec, matmuls=(Matmul(1.0, proj, True),)),
        elementwise("attn.conv1d", t * m.conv_dim * share, t * m.conv_dim * share, prec.hidden,
                    2.0 * m.conv_kernel, kind="conv1d"),
        Op(name="attn.ssd_core", cls=ATTENTION, flops=flops, bytes=core_bytes + 2.0 * state,
           dtype=prec.compute, model_flops=flops, shape=point, phase=phase,
           attention_core=True, batch=b * nh),  # batch: (sequence, head) recurrences
        elementwise("attn.gated_norm", 2 * t * m.d_inner * share, t * m.d_inner * share,
                    prec.hidden, 6.0, kind="rmsnorm"),
        gemm("attn.out", t, h, m.d_inner * share, prec, matmuls=(Matmul(1.0, h, False),)),
    ]


def _scale_absent_parts(model: ModelSpec, moe_layer: bool, ops: list[Op]) -> None:
    """Nemotron-H-style blocks hold one mixer or one MLP: the mixer's norm and residual run
    in the share of layers that have a mixer, the MLP's (norm, GEMMs, residual) in the share
    that have an MLP (attention_variants.mlp_share)."""
    from .attention_variants import NO_MIXER, attention_mix, mlp_share

    mixed = 1.0 - dict(attention_mix(model, moe_layer)).get(NO_MIXER, 0.0)
    with_mlp = mlp_share(model, moe_layer)
    for op in ops:
        if op.name in ("attn.norm", "attn.residual"):
            op.count = op.count * mixed
        elif op.block == "mlp":
            op.count = op.count * with_mlp


def layer_forward_ops(model: ModelSpec, moe_layer: bool, b, q_len, kv_len, pairs,
                      shard: Shard, prec: Precision, flash: bool = True,
                      attn_phase: str = "prefill", absorbed_mla: bool = False,
                      attention_dropout: bool = False) -> list[Op]:
    """Forward operators of one layer on one GPU for ``b`` sequences of ``q_len`` new tokens
    (attending to ``kv_len`` positions, ``pairs`` query-key pairs per sequence).
    ``attention_dropout``: training with dropout on the attention probabilities, a kernel of
    its own on the unfused path (``unfused_attention_ops``; FlashAttention applies it inside
    the fused kernel)."""
    h, tp = model.hidden_size, shard.tp
    t = b * q_len  # tokens in GEMMs (TP ranks all see every token)
    t_seq = t / tp if shard.sequence_parallel else t  # tokens in norms/adds (sequence parallel shards them)
    hc = model.hyper_connections > 1
    ops = hyper_connection_pre(model, "attn", t_seq, prec) if hc else []
    if model.attention_residual_block:
        ops.append(attention_residual_op(model, "attn", t_seq, prec))
    ops.append(norm_op("attn.norm", model, t_seq, prec))
    ops += mixer_ops(model, moe_layer, b, q_len, kv_len, pairs, shard, prec, flash,
                     attn_phase, absorbed_mla, attention_dropout)
    ops.append(residual_op(model, "attn", t_seq, prec))
    if hc:
        ops += hyper_connection_pre(model, "mlp", t_seq, prec)
    if model.attention_residual_block:
        ops.append(attention_residual_op(model, "mlp", t_seq, prec))
    ops.append(norm_op("mlp.norm", model, t_seq, prec))
    if moe_layer and model.moe:
        moe = model.moe
        ops.append(gemm("moe.router", t_seq, moe.num_experts, h, prec,
                        matmuls=(Matmul(1.0, moe.num_experts, False),)))
        ops.append(moe_topk_op(t_seq, moe.num_experts, moe.top_k, prec))
        # token-expert rows of this GPU's experts: the tokens of every rank routing to this
        # EP group, top_k each, over ep ranks (t x top_k when each EP rank brings its own t)
        routed_tokens = t * shard.route_sources
        routed = routed_rows(routed_tokens, moe.top_k, shard.ep, shard.imbalance)
        active = local_active_experts(moe.num_experts, shard.redundant_experts, moe.top_k,
                                      routed_tokens * shard.imbalance, shard.ep)
        lat = moe.latent_size
        if lat:  # latent MoE: fc1_latent_proj (replicated, every token of the rank)
            ops.append(gemm("moe.latent_down", t, lat, h, prec,
                            matmuls=(Matmul(1.0, lat, False),)))
        ffn, width = moe.expert_ffn_hidden_size, lat
        if shard.expert_pad:  # the kernel runs the engine's padded expert shapes
            width, inter = padded_expert_shape(lat or h, ffn / np.asarray(shard.etp, float),
                                               shard.expert_pad)
            ffn = inter * shard.etp
        ops += mlp_ops(model, routed, ffn, shard.etp, prec, "moe.expert", groups=active,
                       fanout=moe.top_k, width=width)
        if moe.num_shared_experts:
            ops += mlp_ops(model, t, moe.num_shared_experts * moe.shared_ffn, tp, prec,
                           "moe.shared")
        ops.append(moe_combine_op(routed, t, lat or h, prec))
        if lat and moe.latent_norm:  # routed_expert_norm on the combined latent (Kimi K3)
            ops.append(elementwise("moe.latent_norm", t * lat, t * lat, prec.hidden, 4.0,
                                   kind="rmsnorm"))
        if lat:  # fc2_latent_proj back to the hidden width
            ops.append(gemm("moe.latent_up", t, h, lat, prec, matmuls=(Matmul(1.0, h, False),)))
    elif model.ffn_layer_sizes is not None:  # NAS blocks: each width its share of the MLPs
        from .attention_variants import dense_mlp_widths

        for width, share in dense_mlp_widths(model):
            part = mlp_ops(model, t, width, tp, prec)
            for op in part:
                op.count = op.count * share
            ops += part
    else:
        ops += mlp_ops(model, t, model.ffn_hidden_size, tp, prec)
    ops.append(residual_op(model, "mlp", t_seq, prec))
    if model.no_mlp_layers is not None or (model.layer_types and "none" in model.layer_types):
        _scale_absent_parts(model, moe_layer, ops)
    if prec.cast_inputs:  # the unfused attention's batched GEMMs stay 16-bit: no cast
        ops = [x for op in ops for x in ([op, fp8_cast(op)]
                                         if op.cls == GEMM and not op.attention_core else [op])]
    return ops


# Sinkhorn-Knopp iterations of the manifold-constrained hyper-connections' n x n combination
# (DeepSeek-V4 config ``hc_sinkhorn_iters``: 20 in every released config)
HC_SINKHORN_ITERS = 20


def _fp32(prec: Precision) -> Precision:
    """``prec`` for a GEMM the reference runs in fp32 (the hyper-connection mixes)."""
    return replace(prec, compute="fp32", act=4.0, weight=4.0, by_class=(), cast_inputs=False,
                   weight_dequant=False, weight_format="")


def hyper_connection_pre(model: ModelSpec, part: str, t, prec: Precision) -> list[Op]:
    """Hyper-connections before a sublayer (ModelSpec.hyper_connections = n; DeepSeek
    inference/model.py Block.hc_pre): the mix GEMM of the flattened n copies (t x n h) with
    hc_fn ((2 + n) n x n h, fp32 as the reference runs it) scaled by the copies' RMS, the
    Sinkhorn normalisation of the n x n combination (``HC_SINKHORN_ITERS`` row and column
    passes) and the pre-weighted sum of the copies into the sublayer input (reads n h,
    writes h per token)."""
    n, h = model.hyper_connections, model.hidden_size
    mix = (2 + n) * n
    fp32 = _fp32(prec)
    return [gemm(f"{part}.hc_mix", t, mix, n * h, fp32, matmuls=(Matmul(1.0, mix, False),)),
            elementwise(f"{part}.hc_sinkhorn", t * mix, t * mix, 4.0,
                        4.0 * HC_SINKHORN_ITERS * n / (2 + n), kind="softmax"),
            elementwise(f"{part}.hc_pre", t * (n * h + mix), t * h, prec.hidden, 2.0 * n,
                        kind="add")]


def attention_residual_sources(model: ModelSpec) -> float:
    """Mean number of sources a Block AttnRes mix reads (ModelSpec.attention_residual_block
    = B): at layer i the i // B + 1 block representations stored so far (the embedding and
    each closed block) and the running partial sum."""
    b, n = model.attention_residual_block, model.num_layers
    return sum(i // b + 2 for i in range(n)) / n


def attention_residual_op(model: ModelSpec, part: str, t, prec: Precision) -> Op:
    """Block attention residuals before a sublayer (NeMo AutoModel kimi_k3
    ``_apply_attn_res``): each source is RMS-normed and scored against res_proj's vector
    (h multiply-adds), a softmax over the sources, and their weighted sum: reads the sources
    (``attention_residual_sources``), writes h per token, ~6 FLOPs per element read."""
    h, n = model.hidden_size, attention_residual_sources(model)
    return elementwise(f"{part}.attn_res", t * n * h, t * h, prec.hidden, 6.0 * n,
                       kind="rmsnorm")


def residual_stream_width(model: ModelSpec) -> float:
    """Copies of the hidden state a pipeline stage passes to the next: n with hyper-connections
    (the n-wide residual stream), with block attention residuals the stored block outputs and
    the partial sum (mean over layer boundaries, ``attention_residual_sources``; NeMo
    AutoModel kimi_k3 passes ``block_residual`` between stages), else 1."""
    width = float(model.hyper_connections)
    if model.attention_residual_block:
        width *= attention_residual_sources(model)
    return width


def residual_op(model: ModelSpec, part: str, t, prec: Precision) -> Op:
    """The residual add after a sublayer; with hyper-connections (n copies) hc_post: each
    copy becomes post_i x output + sum_j comb_ij x copy_j (reads the output and the n
    copies, writes n copies: 2 n + 1 FLOPs per element written; Block.hc_post)."""
    n, h = model.hyper_connections, model.hidden_size
    if n == 1:
        return elementwise(f"{part}.residual", 2 * t * h, t * h, prec.hidden, ADD_FLOPS_PER_ELEM,
                           kind="add")
    return elementwise(f"{part}.residual", t * (h + n * h), t * n * h, prec.hidden,
                       2.0 * n + 1.0, kind="add")


#: the operator names ``fuse_residual_norms`` rewrites: the residual adds it fuses with the norm
#: after them, the in-layer norms that then run inside those fused kernels, the final norm
#: (inside the last layer's fused kernel) and the first layer's input norm it adds to the ends
FUSED_RESIDUALS = ("attn.residual", "mlp.residual")
FUSED_NORMS = ("attn.norm", "mlp.norm")
FINAL_NORM = "head.norm"
FIRST_NORM = "embed.input_norm"


def residual_norm_op(model: ModelSpec, name: str, elems, prec: Precision, count=1.0) -> Op:
    """A residual add and the norm after it as one kernel over ``elems`` = tokens x hidden
    elements (vLLM ``fused_add_rms_norm``, csrc/layernorm_kernels.cu; SGLang / FlashInfer
    ``fused_add_rmsnorm``; TensorRT-LLM's RMSNorm with a residual, FlashInfer's kernel): it
    reads the sublayer output x and the residual, writes the updated residual (x + residual)
    and the normalised output, 2 + 2 elements of the 16-bit hidden state each (the kernel
    re-reads its own row of the new residual for the second pass: an L1 / L2 hit, the row was
    just written by the same thread block, as the plain norm re-reads its input). The weight
    vector (hidden elements) is not counted, as ``norm_op`` does not. Work: the add's and the
    norm's FLOPs per element; timed at the norm kind's measured element rate (the fused kernel
    is the norm kernel with the add in its first pass) where that binds, else by its bytes."""
    return elementwise(name, 3.0 * elems, elems, prec.hidden,
                       ADD_FLOPS_PER_ELEM + NORM_FLOPS_PER_ELEM[model.norm], count,
                       kind=model.norm)


def fuses_residual_norms(model: ModelSpec, norms) -> bool:
    """Whether ``fuse_residual_norms`` rewrites ``model``'s operators for an engine that fuses
    the residual add into the following norm of the kinds ``norms`` (engines/<id>.yaml
    ``kernels.fused_residual_norm``): the model's norm is one of them and its residual stream
    is the plain one the fused kernel updates (no hyper-connections, no block attention
    residuals) with a final norm after the last layer's add (else the last add would have no
    norm to fuse with)."""
    return (model.norm in tuple(norms or ()) and model.hyper_connections == 1
            and not model.attention_residual_block and model.final_norm)


def fuse_residual_norms(model: ModelSpec, layer: list[Op], prec: Precision,
                        norms) -> list[Op]:
    """One layer's operators (counts as ``layer_forward_ops`` gives them) as an engine runs
    them that runs each residual add and the norm after it as one kernel (``norms``:
    engines/<id>.yaml ``kernels.fused_residual_norm``, the norm kinds it fuses;
    ``fuses_residual_norms`` says where this applies, else ``layer`` comes back as it is).

    The engines thread the residual through the layers (vLLM / SGLang / TensorRT-LLM decoder
    layers: ``if residual is None: residual = x; x = input_layernorm(x)`` in the first layer,
    ``x, residual = input_layernorm(x, residual)`` in the others, ``x, residual =
    post_attention_layernorm(x, residual)`` before the MLP, and the final ``norm(x,
    residual)`` after the last layer): every residual add runs inside the kernel of the norm
    that follows it, and only the first layer's input norm runs alone. So per layer:

    - ``attn.residual`` becomes ``attn.residual_norm``: the attention output's add fused with
      the MLP's input norm (``mlp.norm`` goes);
    - ``mlp.residual`` becomes ``mlp.residual_norm``: the MLP output's add fused with the next
      layer's input norm, or after the last layer with the final norm (``attn.norm`` goes;
      ``fuse_end_norms`` takes the final norm out of the ends and adds the first layer's).

    Each fused operator keeps its add's count (a share of layers without a mixer or an MLP,
    ``_scale_absent_parts``, keeps its share) and its place in the list."""
    if not fuses_residual_norms(model, norms):
        return layer
    out: list[Op] = []
    for op in layer:
        if op.name in FUSED_NORMS:
            continue
        if op.name in FUSED_RESIDUALS:
            op = replace(residual_norm_op(model, f"{op.name}_norm", op.shape[0], prec, op.count),
                         phase=op.phase)
        out.append(op)
    return out


def fuse_end_norms(model: ModelSpec, ends: list[Op], tokens, prec: Precision,
                   norms) -> list[Op]:
    """The embedding and head operators of a pass whose layers ``fuse_residual_norms``
    rewrote: the final norm (``head.norm``) runs inside the last layer's fused kernel, so it
    goes; the first layer's input norm, the one norm with no add before it, is added after the
    embedding's operators as ``embed.input_norm`` over every token of the pass (``tokens``), on
    the embedding's stage. The final norm then runs over every token as the engines run it
    (before the logits rows are selected), not over the logits' rows only. ``ends`` comes back
    as it is where ``fuses_residual_norms`` does not apply."""
    if not fuses_residual_norms(model, norms):
        return ends
    out = [op for op in ends if op.name != FINAL_NORM]
    after = sum(1 for op in out if op.block == "embed")
    out.insert(after, norm_op(FIRST_NORM, model, tokens, prec))
    return out


def compressed_attention_ops(model: ModelSpec, moe_layer: bool, b, q_len, kv_len, pairs,
                             shard: Shard, prec: Precision, phase: str) -> list[Op]:
    """DeepSeek-V4 attention of the layers of one MLP kind (ModelSpec.compressed_attention;
    DeepSeek inference/model.py Attention.forward), each compress ratio with its share of
    those layers: wq_a, q_norm, wq_b; wkv (one K = V head) and rotary; a ratio-r layer's
    compressor (wkv + wgate in one GEMM, the gated softmax pooling of r, or 2r overlapping,
    tokens into one entry) and at ``sparse_ratio`` its lightning indexer (wq_b on the query
    latent, weights_proj, its own compressor, a core scoring every causal (query, entry)
    pair per indexer head in fp8 as DSA's, ``indexer_ops``, and a top-k); the core over the
    window's min(j, W) keys plus min(j / r, k) selected (or all j / r) compressed entries,
    QK and PV over head_dim each, with the sinks' extra softmax element; the inverse rotary
    on the output, the grouped wo_a (o_groups problems of heads x head_dim / groups ->
    o_lora) and wo_b. Heads and groups split over TP; the K = V head, the compressors and
    the indexer are replicated (every rank handles every token)."""
    from .attention_variants import (
        COMPRESSED,
        layer_kinds,
        windowed_keys,
        windowed_pairs,
    )

    ca = model.compressed_attention
    h, tp = model.hidden_size, shard.tp
    nh, d, t = model.num_heads, ca.head_dim, b * q_len
    heads = nh / tp
    mine = [r for r, (kind, moe) in zip(ca.ratios, layer_kinds(model), strict=True)
            if moe == moe_layer and kind == COMPRESSED]
    full = attention_pairs(q_len, kv_len)
    scale = np.where(full > 0, pairs / np.maximum(full, 1e-30), 1.0)  # context parallelism
    one = lambda width, col: (Matmul(1.0, width, col),)  # noqa: E731
    out: list[Op] = []
    for r in sorted(set(mine)):
        share = mine.count(r) / len(mine)
        ops = [gemm("attn.q_down", t, ca.q_lora_rank, h, prec, matmuls=one(ca.q_lora_rank, False)),
               elementwise("attn.q_norm", t * ca.q_lora_rank, t * ca.q_lora_rank, prec.hidden, 4.0,
                           kind="rmsnorm"),
               gemm("attn.q_up", t, nh * d / tp, ca.q_lora_rank, prec, matmuls=one(nh * d, True)),
               gemm("attn.kv_down", t, d, h, prec, matmuls=one(d, False)),
               elementwise("attn.rope", t * (heads + 1) * ca.rope_head_dim,
                           t * (heads + 1) * ca.rope_head_dim, prec.hidden, 3.0, kind="rope")]
        window_pairs = windowed_pairs(q_len, kv_len, ca.window)
        keys = windowed_keys(q_len, kv_len, ca.window)
        reach = np.minimum(kv_len, ca.window)
        if r:
            coff = ca.coff(r)
            ops += [gemm("attn.compress", t, 2 * coff * d, h, prec,
                         matmuls=one(2 * coff * d, False)),
                    elementwise("attn.compress_pool", t * 2 * coff * d, t / r * d, prec.hidden,
                                5.0 * coff * r, kind="softmax")]
            entries = np.asarray(kv_len, float) / r
            if r == ca.sparse_ratio:
                k = ca.indexer_topk
                c_pairs = windowed_pairs(q_len, kv_len, r * k) / r
                keys = keys + np.minimum(entries, np.asarray(q_len, float) * k)
                reach = reach + np.minimum(entries, k)
                ops += _v4_indexer_ops(model, b, q_len, kv_len, full * scale / r, prec, phase)
            else:
                c_pairs = full / r
                keys = keys + entries
                reach = reach + entries
            window_pairs = window_pairs + c_pairs
        executed = 4.0 * d * heads * window_pairs * scale * b
        ops.append(Op(name="attn.core", cls=ATTENTION, flops=executed,
                      bytes=b * q_len * heads * 2 * d * prec.act + b * keys * d * prec.kv,
                      dtype=prec.compute, model_flops=4.0 * d * heads * q_len * reach * b,
                      vector_flops=5.0 * b * q_len * heads, phase=phase, attention_core=True,
                      shape=attention_curve_point(phase, b, q_len, keys, 1.0)))
        groups = ca.o_groups / tp
        ops += [elementwise("attn.rope_out", t * heads * ca.rope_head_dim,
                            t * heads * ca.rope_head_dim, prec.hidden, 3.0, kind="rope"),
                grouped_gemm("attn.out_a", t * groups, ca.o_lora_rank, nh * d / ca.o_groups,
                             groups, prec, matmuls=one(ca.o_groups * ca.o_lora_rank, True)),
                gemm("attn.out", t, h, ca.o_groups * ca.o_lora_rank / tp, prec,
                     matmuls=one(h, False))]
        for op in ops:
            op.count = op.count * share
        out += ops
    return out


def _v4_indexer_ops(model: ModelSpec, b, q_len, kv_len, entry_pairs, prec: Precision,
                    phase: str) -> list[Op]:
    """DeepSeek-V4's lightning indexer (inference/model.py Indexer): wq_b on the query
    latent, weights_proj, its compressor (wkv + wgate, overlapping: 4 x index head_dim) and
    the pooling; the core scores each causal (query, compressed key) pair per indexer head,
    2 x head_dim FLOPs, in fp8, reads the index keys (fp8 + scales) once per sequence and
    writes fp32 logits, which the top-k pass reads."""
    from .attention_variants import fp8_index_key_bytes

    ca = model.compressed_attention
    h, n, di, r = model.hidden_size, ca.indexer_heads, ca.indexer_head_dim, ca.sparse_ratio
    t = b * q_len
    logits = b * np.asarray(entry_pairs, float)
    entries = np.asarray(kv_len, float) / r
    key_bytes = fp8_index_key_bytes(di)
    return [gemm("attn.index_q", t, n * di, ca.q_lora_rank, prec,
                 matmuls=(Matmul(1.0, n * di, False),)),
            gemm("attn.index_w", t, n, h, prec, matmuls=(Matmul(1.0, n, False),)),
            gemm("attn.index_compress", t, 4 * di, h, prec, matmuls=(Matmul(1.0, 4 * di, False),)),
            elementwise("attn.index_pool", t * 4 * di, t / r * di, prec.hidden, 10.0 * r,
                        kind="softmax"),
            Op(name="attn.index_core", cls=ATTENTION, flops=2.0 * n * di * logits,
               bytes=t * n * di * prec.act + b * entries * key_bytes + 4.0 * logits,
               dtype="fp8", model_flops=2.0 * n * di * logits,
               shape=attention_curve_point(phase, b, q_len, entries, 1.0), phase=phase,
               attention_core=True),
            elementwise("attn.index_topk", logits,
                        b * q_len * np.minimum(entries, ca.indexer_topk), 4.0, 2.0,
                        kind="softmax")]


# The fp8 quantise kernels (inference: engines/<id>.yaml ``quantization.fp8_activation``;
# training: the recipes' casts below): bytes per element of the bf16 -> fp8 quantise pass (reads 2 B, writes 1 B: TensorRT-LLM
# ``scaleMatrix``, vLLM ``static_scaled_fp8_quant``, SGLang ``sgl_per_tensor_quant_fp8``) and of
# a dynamic per-tensor scale's amax pass (reads 2 B: TensorRT-LLM ``computeFP8QuantizeScale``,
# vLLM ``segmented_max_reduction``); a per-token scale adds 4 B (fp32) per row.
FP8_QUANT_PASS_BYTES = 3.0
FP8_AMAX_PASS_BYTES = 2.0
FP8_SCALE_BYTES = 4.0

# Dynamic (tensorwise) fp8 scaling reads a bf16 tensor twice (amax, then cast) and writes it
# in fp8: 2 + 2 + 1 bytes per element (Micikevicius et al. 2022 arXiv 2209.05433 Sec. 3;
# Transformer Engine / torchao float8 training): the amax pass, then the quantise pass.
# Forward casts a GEMM's activation and weight, backward the output gradient (fp8 copies of
# the inputs are reused).
FP8_CAST_BYTES = FP8_AMAX_PASS_BYTES + FP8_QUANT_PASS_BYTES


def fp8_cast(gemm_op: Op) -> Op:
    m, n, k = gemm_op.shape
    elems = gemm_op.groups * (m * k + k * n)  # a grouped GEMM casts every problem's operands
    return Op(name=gemm_op.name + ".fp8cast", cls=ELEMENTWISE, flops=0.0,
              bytes=elems * FP8_CAST_BYTES, dtype="fp32", count=gemm_op.count,
              vector_flops=2.0 * elems, shape=(elems, gemm_op.groups * m * n),
              block=gemm_op.block, kernel="cast", fp8_cast=True)



#: GEMM dtypes of quantised training (Precision.training: fp8 and mxfp8 run ``fp8``, nvfp4
#: ``nvfp4``): what a recipe's 16-bit scope (``sixteen_bit_gemms``) returns to the 16-bit GEMM
QUANTISED_TRAINING_DTYPES = ("fp8", "nvfp4")

#: weight classes (formats.WEIGHT_CLASSES) of ungrouped GEMMs a training framework may keep in
#: 16 bit under an fp8 recipe (frameworks/<id>.yaml ``fp8_scope.high_precision``)
FP8_SCOPE_CLASSES = ("lm_head", "router")
GEMM_PASSES = (".recompute", ".dgrad", ".wgrad")  # name suffixes of a GEMM's other passes


def gemm_pass(name: str) -> tuple[str, str]:
    """(forward name, pass suffix: "" for the forward) of a GEMM pass's operator name."""
    for suffix in GEMM_PASSES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def sixteen_bit_gemms(ops: list[Op], classes, prec: Precision) -> list[Op]:
    """The operators of a training step under an fp8 recipe with the GEMMs of the weight
    classes ``classes`` (formats.op_weight_class; a subset of ``FP8_SCOPE_CLASSES``, ungrouped
    GEMMs) run as the framework runs them: in 16 bit. Each pass of such a GEMM (forward,
    recompute, dgrad, wgrad) takes the bytes and compute dtype ``gemm`` / ``backward`` give at
    ``prec`` (the 16-bit training precision), and its fp8 cast operators (``fp8_cast``) are
    charged nothing: count 0, so the list keeps its length (a step's index groups are positions
    in it). Other operators are returned as they are."""
    from .formats import op_weight_class

    keep = set(classes)
    if not keep:
        return ops
    out = []
    for op in ops:
        if op.fp8_cast:
            base = op.name.split(".fp8cast", 1)[0]
            if op_weight_class(base) in keep:
                op = replace(op, count=op.count * 0.0)
        elif op.cls == GEMM and op.dtype in QUANTISED_TRAINING_DTYPES:
            name, suffix = gemm_pass(op.name)
            if op_weight_class(name) in keep:
                a, b, c = op.shape
                # the forward's (m, n, k) from this pass's shape (backward: dgrad (m, k, n),
                # wgrad (k, n, m))
                m, n, k = {".dgrad": (a, c, b), ".wgrad": (c, b, a)}.get(suffix, (a, b, c))
                ref = gemm(name, m, n, k, prec)
                if suffix in (".dgrad", ".wgrad"):
                    ref = backward(ref, prec)[0 if suffix == ".dgrad" else 1]
                op = replace(op, bytes=ref.bytes, dtype=ref.dtype, weight_format=ref.weight_format)
        out.append(op)
    return out

#: ``quantization.fp8_activation`` values whose engine quantises a GEMM input in its own kernel
QUANT_KERNEL_MODES = ("static_kernel", "per_token_kernel", "dynamic_kernel")


def fp8_quant_pass(name: str, kind: str, elems, nbytes, count=1.0, block: str = "") -> Op:
    """One pass of an activation quantise kernel over ``elems`` bf16 elements moving ``nbytes``,
    timed at the profile's ``elementwise_rate[kind]`` (``fp8_quant``: the measured static
    quantise, ``fp8_amax``: the measured amax pass of a dynamic one; converters.aic_quantize)
    where that binds, else by its bytes."""
    return Op(name=name, cls=ELEMENTWISE, flops=0.0, bytes=nbytes, dtype="fp32", count=count,
              vector_flops=elems, shape=(elems,), block=block, kernel=kind)


def activation_quant_ops(gemm_op: Op, mode: str, on=1.0) -> list[Op]:
    """The kernels an engine runs to quantise a per-tensor fp8 GEMM's bf16 input (m x k per
    problem) when it does not fuse that into the producer (``mode`` one of
    ``QUANT_KERNEL_MODES``; ``on``: 1 where the engine runs them, 0 where it fuses, an array
    over plans). ``static_kernel``: one quantise pass with the checkpoint's input scale;
    ``per_token_kernel``: one pass that reduces each row's amax in the kernel and writes its
    scale (SGLang ``sglang_per_token_quant_fp8``, vLLM ``dynamic_per_token_scaled_fp8_quant``,
    TensorRT-LLM ``dynamicQuantizeMatrixPerToken``: the row is read once), timed as the static
    pass (same HBM bytes plus the scales); ``dynamic_kernel`` (per tensor): the whole tensor's
    amax pass, then the quantise pass (TensorRT-LLM ``invokeComputeScalesAndQuantizeMatrix``
    PER_TENSOR, vLLM ``dynamic_scaled_fp8_quant``)."""
    if mode not in QUANT_KERNEL_MODES:
        raise ValueError(f"activation_quant_ops: mode {mode!r} is not one of {QUANT_KERNEL_MODES}")
    m, _, k = gemm_op.shape
    rows = gemm_op.groups * m
    elems = rows * k
    count = gemm_op.count * on
    quant = elems * FP8_QUANT_PASS_BYTES + (rows * FP8_SCALE_BYTES if mode == "per_token_kernel"
                                            else 0.0)
    out = [fp8_quant_pass(f"{gemm_op.name}.fp8_quant", "fp8_quant", elems, quant, count,
                          gemm_op.block)]
    if mode == "dynamic_kernel":
        out.insert(0, fp8_quant_pass(f"{gemm_op.name}.fp8_amax", "fp8_amax", elems,
                                     elems * FP8_AMAX_PASS_BYTES, count, gemm_op.block))
    return out


def backward(op: Op, prec: Precision) -> list[Op]:
    """Backward of a forward operator.

    GEMM: data gradient (m x k from m x n times n x k) and weight gradient (k x n from k x m
    times m x n), each 2mnk. FlashAttention: 2.5x the forward FLOPs (recomputes S; Dao 2023
    Sec. 3.2) with 2x the model FLOPs; IO taken as 2.5x forward. Elementwise: reads the output
    gradient and saved input, writes the input gradient: 2x the forward bytes. The unfused
    attention's kernels (``unfused_attention_ops``) have their own: ``_unfused_backward``.
    """
    if op.attention_core and op.name in UNFUSED_BACKWARD:
        return _unfused_backward(op)
    if op.cls == GEMM:
        m, n, k = op.shape
        a, w, g = prec.act, prec.weight, op.groups
        return [replace(op, name=op.name + ".dgrad",
                        bytes=g * (m * n * a + n * k * w + m * k * a), shape=(m, k, n),
                        phase="bwd"),
                replace(op, name=op.name + ".wgrad",
                        bytes=g * (m * k * a + m * n * a + k * n * w), vector_flops=0.0,
                        shape=(k, n, m), phase="bwd")]
    if op.cls == ATTENTION:
        return [replace(op, name=op.name + ".bwd", flops=2.5 * op.flops, bytes=2.5 * op.bytes,
                        model_flops=2.0 * op.model_flops, vector_flops=2.0 * op.vector_flops,
                        phase="bwd")]
    if op.fp8_cast:  # cast the output gradient of the GEMM (m x n elements)
        grad = op.shape[1]
        return [replace(op, name=op.name + ".bwd", flops=0.0, bytes=grad * FP8_CAST_BYTES,
                        model_flops=0.0, vector_flops=2.0 * grad, shape=(grad, grad),
                        phase="bwd")]
    # elementwise backward: read the output gradient and saved input, write the input
    # gradient; the kernel does about twice the forward's per-element work
    return [replace(op, name=op.name + ".bwd", bytes=2.0 * op.bytes,
                    vector_flops=2.0 * op.vector_flops,
                    shape=tuple(2.0 * x for x in op.shape), phase="bwd")]


#: forward operators of ``unfused_attention_ops`` whose backward ``_unfused_backward`` gives
UNFUSED_BACKWARD = ("attn.qk", "attn.pv", "attn.softmax", "attn.dropout", "attn.context_copy")


def _unfused_backward(op: Op) -> list[Op]:
    """Backward kernels of an unfused-attention forward operator (``unfused_attention_ops``):

    * a batched GEMM C = A B (per problem M x N x K): autograd's bmm / baddbmm backward runs
      dA = dC B^T (M x K x N) and dB = A^T dC (K x N x M) as two strided-batched GEMMs
      (torch/csrc/autograd derivatives.yaml ``bmm``: ``grad.bmm(mat2.transpose(1, 2))``,
      ``self.transpose(1, 2).bmm(grad)``), each of the forward's FLOPs, so the backward is 2x
      the forward (model FLOPs likewise); each reads two of the forward's three tensors and
      writes the third's gradient: the forward's bytes. Named ``.bwd_a`` / ``.bwd_b``, not
      ``.dgrad`` / ``.wgrad``: no weight is involved.
    * the fused softmax: reads the gradient and the output over the unmasked elements and
      writes the whole input gradient (``scaled_upper_triang_masked_softmax_warp_backward``).
    * dropout: reads the gradient (a) and the uint8 mask, writes the gradient (a): the
      forward's bytes (PyTorch ``masked_scale_cuda``).
    * the output copy: none (its backward is a view, ``unfused_attention_ops`` item 5)."""
    if op.cls == GEMM:
        m, n, k = op.shape
        rows = m / op.batch  # M of one problem
        return [replace(op, name=op.name + ".bwd_a", shape=(m, k, n), phase="bwd"),
                replace(op, name=op.name + ".bwd_b", shape=(op.batch * k, n, rows),
                        vector_flops=0.0, phase="bwd")]
    if op.name == "attn.softmax":
        written, read = op.shape
        return [replace(op, name=op.name + ".bwd",
                        bytes=op.bytes * (written + 2.0 * read) / (written + read),
                        vector_flops=op.vector_flops, phase="bwd")]
    if op.name == "attn.dropout":
        return [replace(op, name=op.name + ".bwd", vector_flops=op.shape[0], phase="bwd")]
    return []


def embedding_ops(model: ModelSpec, t, tp, prec: Precision) -> list[Op]:
    """Token (and learned position) embedding lookup: a gather of t rows of width h
    (vocab-parallel under TP: each rank gathers its rows, then an all-reduce combines)."""
    h = model.hidden_size
    rows = 2 if model.position_embedding == "learned" else 1
    ops = [elementwise("embed.lookup", rows * t * h, t * h, prec.hidden, kind="copy")]
    if model.hyper_connections > 1:  # the n residual copies (Transformer.forward repeat)
        ops.append(elementwise("embed.hc_expand", t * h, t * h * model.hyper_connections,
                               prec.hidden, 0.0, kind="copy"))
    if model.embedding_norm:
        ops.append(norm_op("embed.norm", model, t, prec))
    return ops


def head_ops(model: ModelSpec, t, tp, prec: Precision, loss: bool = True) -> list[Op]:
    """Final norm, LM head GEMM (vocab-parallel) and the cross-entropy over fp32 logits."""
    h, v = model.hidden_size, model.vocab_size
    ops = []
    n = model.hyper_connections
    if n > 1:  # hc_head: mix of the n copies (t x n h by n x n h, fp32) and their sum
        fp32 = _fp32(prec)
        ops += [gemm("head.hc_mix", t, n, n * h, fp32, matmuls=(Matmul(1.0, n, False),)),
                elementwise("head.hc_pre", t * (n * h + n), t * h, prec.hidden, 2.0 * n,
                            kind="add")]
    if model.attention_residual_block:  # the output's mix over every block and the sum
        sources = -(-model.num_layers // model.attention_residual_block) + 1
        ops.append(elementwise("head.attn_res", t * sources * h, t * h, prec.hidden,
                               6.0 * sources, kind="rmsnorm"))
    if model.final_norm:
        ops.append(norm_op("head.norm", model, t, prec))
    ops.append(gemm("head.lm", t, v / tp, h, prec))
    if loss:
        ops.append(elementwise("head.loss", t * v / tp, t * v / tp, 3.0, 6.0, kind="softmax"))
    return ops


# Optimizer HBM traffic per parameter (Rajbhandari et al. 2020 arXiv 1910.02054 Sec. 3.1:
# fp32 master weights and states). Mixed-precision Adam reads master, m, v and the fp32
# gradient and writes master, m, v and the 16-bit model copy: 4*4 + 3*4 + 2 = 30 B; in plain
# fp32 the weights are the master (4*4 + 3*4 = 28 B). SGD with momentum: 3*4 read, 2*4 (+2)
# written = 22 B (20 B). FLOPs per parameter ~ 12 (Adam), 4 (SGD), at the vector rate.
OPTIMIZER_BYTES = {("adam", True): 30.0, ("adam", False): 28.0, ("adamw", True): 30.0,
                   ("adamw", False): 28.0, ("sgd", True): 22.0, ("sgd", False): 20.0}
OPTIMIZER_FLOPS = {"adam": 12.0, "adamw": 13.0, "sgd": 4.0}


def optimizer_op(local_params, optimizer: str, mixed_precision: bool = True) -> Op:
    return Op(name="optimizer.step", cls=OPTIMIZER, flops=0.0,
              bytes=local_params * OPTIMIZER_BYTES[(optimizer, mixed_precision)], dtype="fp32",
              vector_flops=local_params * OPTIMIZER_FLOPS[optimizer], phase="step")


def layer_matmuls(model: ModelSpec, moe_layer: bool) -> list[tuple[str, Matmul]]:
    """(GEMM name, logical matmul) of one layer in the order a forward pass issues them, read
    off the layer's own operators (one list of matmuls in the code)."""
    fwd = layer_forward_ops(model, moe_layer, 1.0, 1.0, 1.0, 1.0, Shard(),
                            Precision.training("bf16"))
    # layers mixing attention kinds (mixer_ops) issue same-named projections once per kind
    # (full and sliding: identical shapes); a name's matmuls are listed once
    seen: set[str] = set()
    out = []
    for op in fwd:
        if op.cls == GEMM and op.name not in seen:
            seen.add(op.name)
            out += [(op.name, mm) for mm in op.matmuls]
    return out
