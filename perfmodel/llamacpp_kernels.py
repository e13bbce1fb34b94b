"""The kernels llama.cpp's CUDA backend (ggml-cuda) runs for a decoder layer's linear layers
(``engine: llamacpp``; pure, array-friendly).

perfmodel's operator list fuses the q/k/v projections into one ``attn.qkv`` GEMM and a gated
MLP's gate and up projections into one ``mlp.up`` GEMM (ops.projection_ops, ops.mlp_ops), the
kernels vLLM / SGLang / TensorRT-LLM run. llama.cpp runs what the GGUF file holds and its graph
builds, and its CUDA backend adds a kernel of its own before every quantised matmul:

1. **One matmul per weight tensor.** A GGUF llama / qwen / gpt-oss file stores ``attn_q``,
   ``attn_k``, ``attn_v`` and ``ffn_gate``, ``ffn_up`` as separate tensors, and the graph
   (src/llama-model.cpp ``llm_build_llama``: ``Qcur = build_lora_mm(model.layers[il].wq, cur)``,
   then ``wk``, ``wv``; ``build_ffn(cur, ffn_up, ..., ffn_gate, ..., ffn_down, ...)``) runs one
   ``GGML_OP_MUL_MAT`` node, i.e. one kernel, per tensor. A fused GEMM here becomes its logical
   matmuls (``ops.Matmul``), each reading its own share of the weights, the same input, and
   paying its own per-kernel floor (profile ``kernel_overhead_s``). Architectures whose GGUF
   keeps a fused ``attn_qkv`` tensor (phi-3, falcon, bloom) are not told apart: the split
   would over-count two floors per layer there.

2. **The activation quantised to q8_1 before each quantised matmul.** MMVQ (a quantised
   matrix-vector kernel, at most ``MMVQ_MAX_BATCH_SIZE`` = 8 tokens) and MMQ (the quantised
   matrix-matrix kernels, int8 tensor cores from Turing on) take the f32 activations
   quantised to ``block_q8_1`` (32 int8 values and a ``half2`` scale / sum: 36 B per 32
   values, 1.125 B per value), written by a separate kernel per matmul call
   (ggml-cuda ``quantize_row_q8_1_cuda`` / ``quantize_mmq_q8_1_cuda`` called from
   ``ggml_cuda_mul_mat_vec_q`` / ``ggml_cuda_mul_mat_q`` and, January 2024, from
   ``ggml_cuda_op_mul_mat`` with ``convert_src1_to_q8_1``). Activations between ggml ops are
   f32 (4 B read per value). The three q/k/v matmuls each quantise the same input again.

3. **Which matmul kernel.** ``ggml_cuda_should_use_mmq`` (ggml/src/ggml-cuda/mmq.cu, read in
   several 2025 copies of the code index): ``if (turing_mma_available(cc)) return true``, so
   on NVIDIA from compute capability 7.5 (RTX 20xx - 50xx, A100, H100) a quantised weight runs
   MMQ at every batch size (MMVQ at <= 8 tokens); below 7.5 with fp16 tensor cores (V100,
   cc 7.0) ``return !fp16_mma_hardware_available(cc) || ne11 < MMQ_DP4A_MAX_BATCH_SIZE``
   (64): from 64 tokens on the weight is dequantised to f16 and multiplied by cuBLAS. That
   path is ``dequantise``: one kernel reading the quantised weight and writing it as f16
   (2 B per weight), the f32 input converted to f16 (``to_fp16_cuda``: 4 B read, 2 B
   written per value), and a 16-bit GEMM reading the f16 weight again. llama.cpp builds
   before pull request #8075 (2024-06-24, "CUDA: use MMQ instead of cuBLAS by default") ran
   that path on every tensor-core GPU above ``MMQ_MAX_BATCH_SIZE`` = 32 tokens (ggml-cuda.cu
   of January 2024: ``use_mul_mat_q = use_mul_mat_q && !(fp16_performance_good &&
   src1->ne[1] > MMQ_MAX_BATCH_SIZE)``, fp16_performance_good = cc >= 7.0): the version
   family b1786 - b3215 (engines/versions/llamacpp-b1786.yaml, ``kernel_path(...,
   legacy=True)``).

4. **A MoE layer's routed experts and routing** (src/llama-graph.cpp ``build_moe_ffn``, the
   graph of the b6000 era, read in code-index copies that cite PR #14753, July 2025): the
   experts' ``ffn_up_exps`` and ``ffn_gate_exps`` are two ``GGML_OP_MUL_MAT_ID`` nodes (each
   quantising its input to q8_1 when quantised: at one token on MMVQ the token's row, above
   on MMQ the routed rows its ``ids`` gather, ``ne11_flat = ne12*n_expert_used`` in mmq.cu
   of b6000, read at that build), ``ffn_down_exps`` a third (its input the routed rows); the routing is ``soft_max`` over the router logits,
   ``argsort`` (``ggml_top_k``), ``get_rows`` of the chosen weights, and the combine a ``mul``
   by those weights and ``n_expert_used - 1`` ``ggml_add`` nodes summing the experts' views
   (activations f32). perfmodel's generic ``moe.topk`` and ``moe.combine`` (one kernel each)
   become those kernels. Later builds fuse them on CUDA (the adds from b6316, softmax +
   top-k + get_rows from b6583: docstring 6); the optional weight
   normalisation (``sum_rows`` + ``div``, Qwen3 / Mixtral ``norm_w``) and expert biases
   (gpt-oss ``add_id``) are not counted (the model presets do not say which model has them).

5. **RoPE and the KV cache write per tensor.** The graph ropes Q and K with one
   ``ggml_rope_ext`` each (``llm_build_llama``: ``Qcur = ggml_rope_ext(ctx0, Qcur, ...)``, then
   ``Kcur``), and the KV cache stores K and V with one copy each (``build_attn`` ->
   ``cpy_k`` / ``cpy_v``, a ``ggml_set_rows`` / ``ggml_cpy`` into the cache, the f32 rows
   written at the cache's bytes): perfmodel's one ``attn.rope`` kernel becomes
   ``attn.rope.q`` and ``attn.rope.k`` (their shares of the heads) followed by
   ``attn.k_store`` and ``attn.v_store``. Standard (GQA / MHA) attention only, V as wide as K.

6. **Kernels fused by later builds** (``with_ggml_cuda_matmuls(..., build=...)``: a build tag;
   None keeps the rules above, those of build b6000). Each rule from the build that merged its
   pull request (build = ``git rev-list --count`` of the merge commit, the number llama.cpp's
   CMake stamps on a build; read in a full clone of the history up to b10470, 34af94cd) and
   unchanged up to b10470 (ggml/src/ggml-cuda/ggml-cuda.cu ``ggml_cuda_graph_evaluate_and_capture``
   / ``ggml_cuda_try_fuse``, read at b10470 and at each rule's first build):

   - b6316 (PR #15631 'CUDA: fuse adds, fuse add with rms norm', 009b709d6e): a chain of
     ``ggml_add`` nodes, each adding into the previous one's output with operands of one
     layout, runs as one ``ggml_cuda_op_fused_add`` kernel of up to ``MAX_FUSED_ADDS`` = 8
     nodes (``for (; n_fuse <= 6; ++n_fuse)`` pairs, then ``n_fuse++``): a kernel of n adds
     reads n + 1 rows and writes one. The MoE combine's ``n_expert_used - 1`` adds are such a
     chain (build_moe_ffn: 'order the views before the adds'). The residual add after it is
     not: its operand ``ffn_inp`` is contiguous, the experts' views are strided
     (``ggml_are_same_layout`` fails).
   - b6583 (PR #16130 'CUDA: add a fused top-K MoE kernel', 077c94d0ca): soft_max, argsort,
     view and get_rows of the routing (and the optional weight normalisation) run as one
     ``topk_moe`` kernel (``ggml_cuda_op_topk_moe``: reads the router logits, writes the top_k
     weights (f32) and expert ids (i32)) when ``ggml_cuda_should_use_topk_moe`` holds: the
     expert count a power of 2 up to 512 (b10470 also 288 and 576, not modelled).
   - b6841 (PR #16715 'CUDA: General GEMV fusion', f77c13b91f): a gate and an up matmul of
     one input followed by the GLU (``{MUL_MAT, MUL_MAT, GLU}``, ``{MUL_MAT_ID, MUL_MAT_ID,
     GLU}``) run as one MMVQ kernel (``ggml_cuda_mul_mat_vec_q`` with ``fusion_data.gate``,
     its input quantised to q8_1 once) where ``ggml_cuda_should_fuse_mul_mat_vec_q`` holds:
     a quantised weight, MMVQ's batch (<= 8) and exactly one output column (``dst->ne[1] ==
     1`` for MUL_MAT, ``dst->ne[2] == 1`` for MUL_MAT_ID: one token), and ``cc >
     GGML_CUDA_CC_PASCAL`` (600: compute capability 6.1 on). The activation kernel goes; the
     fused kernel writes the activated rows (half the gate + up outputs).
   - b7044 (PR #16884 'CUDA: fuse rope + set_rows', a90eb94ca9): the K RoPE and its KV-cache
     write (``{ROPE, VIEW, SET_ROWS}``) run as one kernel (``ggml_cuda_op_rope_fused``) when
     ``ggml_cuda_should_fuse_rope_set_rows`` holds: normal / NeoX RoPE, a cache of f16 or f32
     (the default -ctk f16; a q8_0 / q4_0 cache keeps two kernels). It reads the f32 K and
     writes the cache's bytes; V's store stays a kernel of its own. A bf16 cache (2 B, not
     fused) is not told apart from f16 here.

   - b7925 (PR #18958 'CUDA: use mmvq for mul-mat-id for small batch sizes', 8bece2eb20):
     ``ggml_cuda_mul_mat_id`` runs MMVQ up to ``MMVQ_MAX_BATCH_SIZE`` tokens (``ne2 <=
     MMVQ_MAX_BATCH_SIZE``; b6000: ``ne2 == 1``), the gate / up quantise then reading and
     writing the tokens' rows. b10470's per-type limits (``get_mmvq_mmid_max_batch``, PR
     #20905) keep 8 for Q4_0 / Q4_K / Q8_0 from Turing on.
   - b10039 (PR #25441 'CUDA: dedup MoE gate/up activation quantization', 5839ba3524): on
     MMQ a broadcast gate / up input (``ne11 == 1``) is quantised once per token and its q8_1
     row written to each of its ``n_expert_used`` slots (``quantize_scatter_mmq_q8_1_cuda``):
     the tokens' rows read, the routed rows written.

   Not changed up to b10470 (read there): the MMQ / MMVQ choice of 3 on NVIDIA
   (``ggml_cuda_should_use_mmq``: ``turing_mma_available(cc)`` -> MMQ; MMVQ_MAX_BATCH_SIZE 8),
   the q8_1 quantise before each quantised matmul (mmvq.cu ``quantize_row_q8_1_cuda``, mmq.cu
   ``quantize_mmq_q8_1_cuda``), one matmul per GGUF tensor (``build_qkv``'s separate Q / K / V
   path where the file has no ``attn_qkv``), the RMS norm fused with its weight multiply
   (PR #14800, b5965: perfmodel's norm is one kernel already). Not modelled: CUDA graphs
   (from PR #18637, b7646, every graph once warm on Volta and later, not only batch-1 decode),
   the MoE GEMV's expert-reduce kernel (PR #16857 b6902, reverted by PR #17100 b6988), the
   concurrent streams of PR #16991 (b7203).

Weights in a GGUF block format are perfmodel's ``int4`` / ``int8`` weight-only formats with
a 32-value group (Q4_0 / Q4_K = 4.5 bits per weight, Q8_0 = 8.5 bits, scales included:
``dtypes.quantized_weight_bytes``); 16-bit weights run MMVF / cuBLAS with no q8_1 input (their
matmuls are split, nothing added). Routed experts always take the MMVQ / MMQ path here (the
V100 cuBLAS path for them is not modelled); devices other than NVIDIA GPUs keep perfmodel's
generic operators: their kernel choice is not modelled here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import ops as O

#: weight formats llama.cpp stores as a GGUF quantised block type (Q4_0, Q4_K, Q8_0, ...)
QUANTISED_FORMATS = ("int4", "int8")
#: bytes per activation value between ggml ops (ggml graphs keep activations in f32)
SRC1_BYTES = 4.0
#: block_q8_1: ``half2 ds`` + ``int8_t qs[32]`` = 36 B per 32 values (ggml-cuda common.cuh)
Q8_1_BYTES = 36.0 / 32.0
#: f16 bytes: the dequantised weight and the converted input of the cuBLAS path
F16_BYTES = 2.0
#: MMVQ_MAX_BATCH_SIZE (ggml-cuda mmvq.cuh): the matrix-vector kernel up to this many tokens
MMVQ_MAX_BATCH_SIZE = 8
#: MMQ_DP4A_MAX_BATCH_SIZE (mmq.cuh): below Turing with fp16 tensor cores, MMQ below this
MMQ_DP4A_MAX_BATCH_SIZE = 64
#: MMQ_MAX_BATCH_SIZE (ggml-cuda.cu, January 2024): MMQ at most this many tokens on a GPU
#: with fp16 tensor cores, dequantise + cuBLAS above it (builds before pull request #8075)
MMQ_MAX_BATCH_SIZE_2024 = 32
#: the build that introduced each fused kernel of docstring 6 (PR merge commit's build number)
FUSED_ADDS_SINCE = 6316       # PR #15631
TOPK_MOE_SINCE = 6583         # PR #16130
GEMV_GLU_SINCE = 6841         # PR #16715
ROPE_SET_ROWS_SINCE = 7044    # PR #16884
#: MUL_MAT_ID (routed experts) on MMVQ up to MMVQ_MAX_BATCH_SIZE tokens, not only at one
MMID_MMVQ_SINCE = 7925        # PR #18958
#: MMQ's MUL_MAT_ID quantises each token's gate / up input once, not once per expert
MMID_DEDUP_SINCE = 10039      # PR #25441
#: ADD nodes one ggml_cuda_op_fused_add kernel takes (ggml-cuda.cu: n_fuse <= 6 pairs, + 1)
MAX_FUSED_ADDS = 8
#: largest expert count of the fused top-K MoE kernel (launch_topk_moe_cuda instantiations)
TOPK_MOE_MAX_EXPERTS = 512
#: GGML_CUDA_CC_PASCAL (common.cuh, 600): GEMV fusion needs a compute capability above it
GEMV_FUSION_MIN_CC = 6.0


def build_number(build) -> int | None:
    """The build number of a llama.cpp build tag ('b7044' -> 7044); None for None."""
    if build is None:
        return None
    text = str(build).strip().lower()
    if not text.startswith("b") or not text[1:].isdigit():
        raise ValueError(f"llama.cpp build {build!r}: a build tag like 'b7044'")
    return int(text[1:])


def run_build(version: str | None) -> str:
    """The build whose kernel rules a llama.cpp scenario runs: the build tag it names, else
    the newest build perfmodel's facts were read at (the newest family's range ends one build
    after it, engines/llamacpp.yaml / versions; engines.get_engine's "no version = newest")."""
    if version is not None:
        return str(version).strip().lower()
    from .engines import newest_range

    _, span = newest_range("llamacpp")
    return f"b{build_number(span.until) - 1}"


def fusions(build) -> frozenset[str]:
    """The rules of docstring 6 that ``build`` runs ('adds', 'topk_moe', 'gemv_glu',
    'rope_set_rows', 'mmid_mmvq', 'mmid_dedup'); none for None (the b6000 rules)."""
    n = build_number(build)
    if n is None:
        return frozenset()
    return frozenset(name for name, since in (
        ("adds", FUSED_ADDS_SINCE), ("topk_moe", TOPK_MOE_SINCE),
        ("gemv_glu", GEMV_GLU_SINCE), ("rope_set_rows", ROPE_SET_ROWS_SINCE),
        ("mmid_mmvq", MMID_MMVQ_SINCE), ("mmid_dedup", MMID_DEDUP_SINCE)) if n >= since)


def _cc(device) -> float | None:
    """The NVIDIA compute capability of ``device`` as a number (None: not an NVIDIA GPU)."""
    if getattr(device, "kind", "gpu") != "gpu" or str(getattr(device, "vendor", "")).lower() \
            != "nvidia" or not getattr(device, "compute_capability", None):
        return None
    return float(device.compute_capability)


def kernel_path(device, tokens, legacy: bool = False):
    """The ggml-cuda kernel a quantised weight's matmul runs for ``tokens`` rows (array-friendly):
    'mmvq' (<= 8 tokens), 'mmq' or 'dequantise' (f16 dequantise + cuBLAS), per the module
    docstring (3); None where the device is not an NVIDIA GPU (not modelled). ``legacy``: the
    January 2024 rule (builds before pull request #8075: dequantise above 32 tokens from
    compute capability 7.0); tokens == 1 ran MMVQ then too (``use_mul_mat_vec_q`` for
    ``src1->ne[1] == 1``), 2 - 32 tokens MMQ."""
    cc = _cc(device)
    if cc is None:
        return None
    t = np.asarray(tokens, float)
    if legacy:
        small = t <= 1
        cublas = (cc >= 7.0) & (t > MMQ_MAX_BATCH_SIZE_2024)
    else:
        small = t <= MMVQ_MAX_BATCH_SIZE
        cublas = (cc < 7.5) & (cc >= 7.0) & (t >= MMQ_DP4A_MAX_BATCH_SIZE)
    out = np.where(small, "mmvq", np.where(cublas, "dequantise", "mmq"))
    return out if out.ndim else str(out)


def _is_quantised(op: O.Op) -> bool:
    return op.weight_format in QUANTISED_FORMATS


def _linear(op: O.Op) -> bool:
    """A dense linear layer's GEMM (not a routed expert's grouped GEMM, not attention)."""
    return (op.cls == O.GEMM and not op.name.startswith("moe.")
            and not np.any(np.asarray(op.groups) > 1) and len(op.shape) == 3)


def split_matmuls(op: O.Op, weight_bytes: float, act_bytes: float) -> list[O.Op]:
    """``op`` as one GEMM per logical matmul (docstring 1): ``attn.qkv`` -> ``attn.qkv.0`` ..
    ``.2`` (q, k, v), ``mlp.up`` -> its gate and up. Each part computes its share of the
    outputs (``Matmul.share``), reads its share of the weights and the whole input."""
    if not _linear(op) or len(op.matmuls) < 2:
        return [op]
    m, n, k = op.shape
    out = []
    for i, part in enumerate(op.matmuls):
        n_i = n * part.share
        flops = 2.0 * m * n_i * k
        out.append(replace(op, name=f"{op.name}.{i}", flops=flops, model_flops=flops,
                           vector_flops=np.asarray(op.vector_flops) * part.share,
                           bytes=m * k * act_bytes + k * n_i * weight_bytes
                           + m * n_i * act_bytes,
                           shape=(m, n_i, k), matmuls=(replace(part, share=1.0),)))
    return out


def quantise_input_op(gemm: O.Op, on=1.0) -> O.Op:
    """The q8_1 quantise kernel before a quantised matmul (docstring 2): reads the m x k f32
    input, writes 1.125 B per value; ``on``: 1 where it runs (array over plans)."""
    m, _, k = gemm.shape
    elems = m * k
    return O.Op(name=f"{gemm.name}.quantize_q8_1", cls=O.ELEMENTWISE, flops=0.0,
                bytes=elems * (SRC1_BYTES + Q8_1_BYTES), dtype="fp32",
                count=np.asarray(gemm.count) * on, vector_flops=elems, shape=(elems,),
                block=gemm.block, kernel="quantize_q8_1")


def dequantise_ops(gemm: O.Op, weight_bytes: float, act_bytes: float, on) -> list[O.Op]:
    """The cuBLAS path's kernels (docstring 3), where ``on`` (0 / 1, array over plans): the
    weight dequantised to f16 (its quantised bytes read, 2 B written per weight), the f32
    input converted to f16, and the GEMM itself then reading 2 B per weight instead of the
    quantised bytes, with no dequantise in its loop."""
    m, n, k = gemm.shape
    on = np.asarray(on, float)
    weights = k * n
    count = np.asarray(gemm.count) * on
    deq = O.Op(name=f"{gemm.name}.dequantize", cls=O.ELEMENTWISE, flops=0.0,
               bytes=weights * (weight_bytes + F16_BYTES), dtype="fp32", count=count,
               vector_flops=weights, shape=(weights,), block=gemm.block, kernel="dequantize")
    cvt = O.Op(name=f"{gemm.name}.to_fp16", cls=O.ELEMENTWISE, flops=0.0,
               bytes=m * k * (SRC1_BYTES + F16_BYTES), dtype="fp32", count=count,
               vector_flops=m * k, shape=(m * k,), block=gemm.block, kernel="cast")
    f16 = m * k * act_bytes + weights * F16_BYTES + m * n * act_bytes
    run = replace(gemm, bytes=np.where(on > 0, f16, gemm.bytes),
                  vector_flops=np.where(on > 0, 0.0, gemm.vector_flops))
    return [deq, cvt, run]


def _elementwise(name: str, elems_in, elems_out, count, block: str, kind: str) -> O.Op:
    """One f32 ggml kernel reading ``elems_in`` and writing ``elems_out`` values."""
    return O.Op(name=name, cls=O.ELEMENTWISE, flops=0.0,
                bytes=(elems_in + elems_out) * SRC1_BYTES, dtype="fp32", count=count,
                vector_flops=elems_out, shape=(elems_out,), block=block, kernel=kind)


def routing_ops(topk: O.Op, experts: int, top_k: int, fused: bool = False) -> list[O.Op]:
    """``moe.topk`` as llama.cpp's routing kernels (docstring 4): soft_max over each token's
    router logits, argsort of them, get_rows of the top_k weights. The token count is
    ``moe_topk_op``'s (its vector FLOPs: 4 per token and choice). ``fused`` (builds from
    b6583, docstring 6): one ``topk_moe`` kernel where the expert count allows it."""
    tokens = np.asarray(topk.vector_flops, float) / (4.0 * top_k)
    logits = tokens * experts
    if fused and experts <= TOPK_MOE_MAX_EXPERTS and experts & (experts - 1) == 0:
        # docstring 6 (b6583): one kernel reads the f32 logits, writes f32 weights + i32 ids
        return [O.Op(name="moe.topk_moe", cls=O.ELEMENTWISE, flops=0.0,
                     bytes=logits * SRC1_BYTES + tokens * top_k * (SRC1_BYTES + 4.0),
                     dtype="fp32", count=topk.count, vector_flops=logits, shape=(logits,),
                     block=topk.block, kernel="softmax")]
    return [_elementwise("moe.softmax", logits, logits, topk.count, topk.block, "softmax"),
            _elementwise("moe.argsort", logits, tokens * top_k, topk.count, topk.block,
                         "argsort"),
            _elementwise("moe.get_rows", tokens * top_k, tokens * top_k, topk.count,
                         topk.block, "copy")]


def combine_ops(combine: O.Op, top_k: int, fused_adds: bool = False) -> list[O.Op]:
    """``moe.combine`` as llama.cpp's kernels (docstring 4): the routed rows times their
    weights (one ``mul`` over top_k x tokens x width values), then ``top_k - 1`` adds of
    token rows into the running sum (2 rows read, 1 written each). tokens x width is
    ``moe_combine_op``'s output (its vector FLOPs: 1 per value written). ``fused_adds``
    (builds from b6316, docstring 6): the adds run as multi-add kernels of up to 8 nodes, a
    kernel of n adds reading n + 1 rows and writing one."""
    out_elems = np.asarray(combine.vector_flops, float)
    routed = out_elems * top_k
    ops = [_elementwise("moe.weights_mul", routed, routed, combine.count, combine.block, "mul")]
    if top_k > 1 and fused_adds:
        # docstring 6 (b6316): the top_k - 1 adds in kernels of up to MAX_FUSED_ADDS nodes
        adds = top_k - 1
        full, rest = divmod(adds, MAX_FUSED_ADDS)
        for n, calls in ((MAX_FUSED_ADDS, full), (rest, 1 if rest else 0)):
            if calls:
                ops.append(_elementwise(f"moe.expert_sum.fused{n}", (n + 1.0) * out_elems,
                                        out_elems, np.asarray(combine.count) * calls,
                                        combine.block, "add"))
    elif top_k > 1:
        ops.append(_elementwise("moe.expert_sum", 2.0 * out_elems, out_elems,
                                np.asarray(combine.count) * (top_k - 1), combine.block, "add"))
    return ops


def rope_and_store_ops(rope: O.Op, heads: int, kv_heads: int, kv_bytes: float,
                       fused: bool = False) -> list[O.Op]:
    """``attn.rope`` as llama.cpp's kernels (docstring 5): RoPE of Q and of K, then the K and
    V cache writes (f32 read, ``kv_bytes`` written per value). ``rope``'s values are
    tokens x (heads + kv_heads) x head_dim (ops.projection_ops). ``fused`` (builds from
    b7044, docstring 6): K's RoPE writes the cache itself (``attn.rope.k_store``) where the
    cache is f16 or f32 (``kv_bytes`` 2 or 4)."""
    elems = np.asarray(rope.vector_flops, float) / 3.0  # elementwise(..., 3.0): 3 per value
    k_elems = elems * kv_heads / (heads + kv_heads)
    q_elems = elems - k_elems
    per = rope.bytes / np.maximum(2.0 * elems, 1e-30)  # the rope's bytes per value moved
    q = replace(rope, name="attn.rope.q", bytes=2.0 * q_elems * per,
                vector_flops=3.0 * q_elems, shape=(q_elems,))
    k = replace(rope, name="attn.rope.k", bytes=2.0 * k_elems * per,
                vector_flops=3.0 * k_elems, shape=(k_elems,))
    def store(name: str) -> O.Op:
        return O.Op(name=name, cls=O.ELEMENTWISE, flops=0.0,
                    bytes=k_elems * (SRC1_BYTES + kv_bytes), dtype="fp32", count=rope.count,
                    vector_flops=k_elems, shape=(k_elems,), block=rope.block, kernel="copy")
    if fused and kv_bytes in (2.0, 4.0):
        k_store = replace(k, name="attn.rope.k_store", bytes=k_elems * (per + kv_bytes))
        return [q, k_store, store("attn.v_store")]
    return [q, k, store("attn.k_store"), store("attn.v_store")]


def _expert_parts(op: O.Op, weight_bytes: float, act_bytes: float) -> list[O.Op]:
    """A routed experts' grouped GEMM as one MUL_MAT_ID per weight tensor (gate, up)."""
    if len(op.matmuls) < 2:
        return [op]
    m, n, k = op.shape
    g = op.groups
    out = []
    for i, part in enumerate(op.matmuls):
        n_i = n * part.share
        flops = 2.0 * m * g * n_i * k
        out.append(replace(op, name=f"{op.name}.{i}", flops=flops, model_flops=flops,
                           vector_flops=np.asarray(op.vector_flops) * part.share,
                           bytes=g * (m * k * act_bytes + k * n_i * weight_bytes
                                      + m * n_i * act_bytes),
                           shape=(m, n_i, k), matmuls=(replace(part, share=1.0),)))
    return out


def _expert_quantise(gemm: O.Op, rows, rows_out=None) -> O.Op:
    """The q8_1 quantise of a MUL_MAT_ID's input: ``rows`` rows of k values read (f32), and
    ``rows_out`` (default ``rows``) q8_1 rows written, once per call."""
    k = gemm.shape[2]
    elems = rows * k
    out = elems if rows_out is None else rows_out * k
    return O.Op(name=f"{gemm.name}.quantize_q8_1", cls=O.ELEMENTWISE, flops=0.0,
                bytes=elems * SRC1_BYTES + out * Q8_1_BYTES, dtype="fp32", count=gemm.count,
                vector_flops=elems, shape=(elems,), block=gemm.block, kernel="quantize_q8_1")


def expert_up_quantise_rows(tokens, top_k: int, fuse=frozenset()):
    """(rows read, rows written) by the q8_1 quantise of the experts' gate / up MUL_MAT_ID
    for ``tokens`` tokens (array-friendly), per docstring 4 and 6: on MMVQ (``ne2 == 1`` up
    to b7924, ``ne2 <= MMVQ_MAX_BATCH_SIZE`` from b7925, PR #18958) the tokens' rows; on
    MMQ the routed rows gathered by ``ids`` (``ne11_flat = ne12*n_expert_used``, mmq.cu
    b6000), from b10039 (PR #25441, ``dedup_bcast``) each token read once and its q8_1 row
    written to its ``top_k`` slots."""
    t = np.asarray(tokens, float)
    routed = t * top_k
    mmvq_max = MMVQ_MAX_BATCH_SIZE if "mmid_mmvq" in fuse else 1
    mmvq = t <= mmvq_max
    read = np.where(mmvq, t, t if "mmid_dedup" in fuse else routed)
    written = np.where(mmvq, t, routed)
    return read, written


def _gemv_glu_on(op: O.Op, device, tokens, fuse) -> np.ndarray | float:
    """1 where a gated up projection (``op``: its gate and up matmuls, quantised) runs the
    fused GEMV + GLU kernel of docstring 6 (b6841): one token, compute capability above
    6.0; else 0 (array over plans)."""
    cc = _cc(device)
    if ("gemv_glu" not in fuse or len(op.matmuls) != 2 or not _is_quantised(op)
            or cc is None or cc <= GEMV_FUSION_MIN_CC):
        return 0.0
    return (np.asarray(tokens, float) == 1.0).astype(float)


def glu_gemv_op(op: O.Op, weight_bytes: float, act_bytes: float, on) -> O.Op:
    """The fused gate + up + GLU GEMV of docstring 6 standing for ``op`` (a gated up
    projection, or a routed experts' one with ``op.groups`` experts) where ``on``: both
    weights read, the input read once, the activated rows (half of gate + up) written."""
    m, n, k = op.shape
    g = np.asarray(op.groups, float)
    flops = 2.0 * m * g * n * k
    return replace(op, name=f"{op.name}.glu", flops=flops, model_flops=flops,
                   bytes=g * (m * k * act_bytes + k * n * weight_bytes + m * n / 2 * act_bytes),
                   count=np.asarray(op.count) * on)


def _scaled(op: O.Op, keep) -> O.Op:
    return op if np.all(np.asarray(keep) == 1.0) else replace(
        op, count=np.asarray(op.count) * keep)


def _moe_ops(op: O.Op, p: O.Precision, act: float, moe, fuse=frozenset(), device=None,
             glu_off: dict | None = None) -> list[O.Op]:
    """A MoE layer's operator as llama.cpp runs it (docstring 4, and 6 for ``fuse``);
    others unchanged. ``glu_off``: where the experts' GEMV + GLU fusion runs, the share of
    calls the activation kernel keeps is recorded under its name."""
    if op.name == "moe.topk":
        return routing_ops(op, moe.num_experts, moe.top_k, fused="topk_moe" in fuse)
    if op.name == "moe.combine":
        return combine_ops(op, moe.top_k, fused_adds="adds" in fuse)
    if op.cls != O.GEMM or not op.name.startswith("moe.expert."):
        return [op]
    routed = np.asarray(op.shape[0], float) * np.asarray(op.groups, float)
    # gate / up: the tokens' rows broadcast to their experts (quantised per MMVQ / MMQ,
    # expert_up_quantise_rows); down reads the routed rows
    tokens = routed / moe.top_k
    if op.name == "moe.expert.up":
        rows, rows_out = expert_up_quantise_rows(tokens, moe.top_k, fuse)
    else:
        rows = rows_out = routed
    out = []
    on = _gemv_glu_on(op, device, tokens, fuse) if op.name == "moe.expert.up" else 0.0
    keep = 1.0 - np.asarray(on, float)
    if np.any(np.asarray(on) > 0):
        fused = glu_gemv_op(op, p.weight, act, on)
        out += [_expert_quantise(fused, rows, rows_out), fused]  # at the fused calls (count)
        if glu_off is not None:
            glu_off["moe.expert.act"] = keep
    if not np.any(keep > 0):
        return out
    for part in _expert_parts(op, p.weight, act):
        if _is_quantised(part):
            out.append(_scaled(_expert_quantise(part, rows, rows_out), keep))
        out.append(_scaled(part, keep))
    return out


def with_ggml_cuda_matmuls(ops: list[O.Op], prec: O.Precision, device,
                           legacy: bool = False, moe=None,
                           heads: tuple[int, int] | None = None,
                           build: str | None = None) -> list[O.Op]:
    """``ops`` (one layer's, or the embedding / head ends) as llama.cpp's CUDA backend runs
    their linear layers on ``device`` (module docstring): fused GEMMs split per weight tensor,
    a q8_1 quantise kernel before each quantised matmul on the MMVQ / MMQ paths, the
    dequantise + cuBLAS kernels where that path runs, with ``moe`` (the model's MoESpec,
    for a MoE layer) the experts' and routing kernels of docstring 4, and with ``heads``
    (query heads, KV heads of standard attention) the RoPE and KV-store kernels of docstring
    5. ``build`` (a build tag; None: b6000's rules) adds the fused kernels of docstring 6
    from the build that introduced each. Unchanged on a device that is not an NVIDIA GPU
    (ggml's other backends are not modelled)."""
    if _cc(device) is None:
        return ops
    fuse = fusions(build)
    glu_off: dict = {}  # activation kernels a fused GEMV + GLU takes over: calls kept
    out: list[O.Op] = []
    for op in ops:
        if op.name in glu_off:
            keep = glu_off.pop(op.name)
            if np.any(np.asarray(keep) > 0):
                out.append(_scaled(op, keep))
            continue
        if heads is not None and op.name == "attn.rope":
            out += rope_and_store_ops(op, heads[0], heads[1], prec.kv,
                                      fused="rope_set_rows" in fuse)
            continue
        if moe is not None and op.name.startswith("moe."):
            p = prec.for_op(op.name)
            out += _moe_ops(op, p, p.act if p.gemm_act is None else p.gemm_act, moe, fuse,
                            device, glu_off)
            continue
        if not _linear(op):
            out.append(op)
            continue
        p = prec.for_op(op.name)
        act = p.act if p.gemm_act is None else p.gemm_act
        on = _gemv_glu_on(op, device, op.shape[0], fuse) if op.name == "mlp.up" else 0.0
        keep = 1.0 - np.asarray(on, float)
        if np.any(np.asarray(on) > 0):
            fused = glu_gemv_op(op, p.weight, act, on)
            out += [quantise_input_op(fused), fused]  # both at the fused calls (count)
            glu_off["mlp.act"] = keep
        if not np.any(keep > 0):
            continue
        for part in split_matmuls(op, p.weight, act):
            if not _is_quantised(part):
                out.append(part)
                continue
            path = np.asarray(kernel_path(device, part.shape[0], legacy))
            deq = (path == "dequantise").astype(float)
            out.append(quantise_input_op(part, (1.0 - deq) * keep))
            if np.any(deq > 0):
                out += dequantise_ops(part, p.weight, act, deq)
            else:
                out.append(_scaled(part, keep))
    return out
