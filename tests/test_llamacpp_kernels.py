"""llama.cpp's ggml-cuda linear-layer kernels (perfmodel/llamacpp_kernels.py), checked against
hand counts from the llama.cpp sources the module cites: one matmul per GGUF weight tensor,
a q8_1 quantise kernel (36 B per 32 values) before each quantised matmul, and the kernel
choice of ``ggml_cuda_should_use_mmq`` / the January 2024 ``ggml_cuda_mul_mat``."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.api import as_scenario, predict
from perfmodel.llamacpp_kernels import (
    kernel_path,
    quantise_input_op,
    split_matmuls,
    with_ggml_cuda_matmuls,
)
from perfmodel.specs.registry import get_device

Q4 = 0.5 + 2.0 / 32  # Q4_0: 18 B per 32 weights = 4.5 bits


def _scenario(engine: str | dict | None, prompt: int, output: int, device: str = "rtx-4090",
              weight="q4"):
    inf = {"batch": 1, "prompt_len": prompt, "output_len": output,
           "activation_dtype": "fp16", "kv_dtype": "fp16"}
    if weight == "q4":
        inf.update(weight_dtype={"default": "int4", "embeddings": "int4", "lm_head": "int4"},
                   quant_group_size=32)
    else:
        inf["weight_dtype"] = "fp16"
    sc = {"kind": "inference", "model": "llama-2-7b",
          "system": {"device": device, "num_gpus": 1},
          "parallelism": {"tp": 1, "pp": 1}, "inference": inf}
    if engine:
        sc["engine"] = engine
    return as_scenario(sc)


@pytest.mark.parametrize("tokens, path", [(1, "mmvq"), (8, "mmvq"), (9, "mmq"), (512, "mmq")])
def test_turing_and_later_run_mmvq_then_mmq_at_every_batch(tokens, path):
    # mmq.cu: turing_mma_available(cc) -> MMQ; mmvq.cuh MMVQ_MAX_BATCH_SIZE 8
    assert kernel_path(get_device("rtx-4090"), tokens) == path
    assert kernel_path(get_device("rtx-3090"), tokens) == path


def test_volta_dequantises_from_64_tokens():
    # cc 7.0: !fp16_mma_hardware_available(cc) || ne11 < MMQ_DP4A_MAX_BATCH_SIZE (64)
    v100 = get_device("v100-sxm2-32gb")
    assert [kernel_path(v100, t) for t in (8, 63, 64, 512)] == [
        "mmvq", "mmq", "dequantise", "dequantise"]


def test_january_2024_rule_dequantises_above_32_tokens():
    d = get_device("rtx-4090")
    assert [kernel_path(d, t, legacy=True) for t in (1, 2, 32, 33, 512)] == [
        "mmvq", "mmq", "mmq", "dequantise", "dequantise"]


def test_other_devices_are_not_modelled():
    assert kernel_path(get_device("mi300x"), 512) is None
    ops = [O.gemm("mlp.down", 1, 4096, 11008, O.Precision("fp16", 2.0, Q4,
                                                         weight_format="int4"))]
    assert with_ggml_cuda_matmuls(ops, O.Precision("fp16", 2.0, Q4), get_device("mi300x")) == ops


def test_kernel_path_broadcasts_over_token_arrays():
    out = kernel_path(get_device("rtx-4090"), np.array([1.0, 16.0]))
    assert list(out) == ["mmvq", "mmq"]


def test_quantise_kernel_moves_f32_in_and_q8_1_out():
    # one token, k = 4096: 4096 x 4 B read, 4096 / 32 blocks x 36 B written
    g = O.gemm("attn.out", 1, 4096, 4096, O.Precision("fp16", 2.0, Q4, weight_format="int4"))
    q = quantise_input_op(g)
    assert q.bytes == pytest.approx(4096 * 4 + 4096 // 32 * 36)
    assert q.cls == O.ELEMENTWISE and q.count == 1.0


def test_fused_qkv_splits_into_three_matmuls_with_their_weights():
    # llama-2-7b: q, k, v each 4096 x 4096 (MHA); each part reads its own weights at 4.5 bits
    sc = _scenario("llamacpp", 1, 2)
    prec = O.Precision("fp16", 2.0, Q4, weight_format="int4")
    qkv = next(op for op in O.layer_forward_ops(
        sc.model, False, 1.0, 1.0, 1.0, 1.0, O.Shard(), prec, True, "decode")
        if op.name == "attn.qkv")
    parts = split_matmuls(qkv, Q4, 2.0)
    assert [p.name for p in parts] == ["attn.qkv.0", "attn.qkv.1", "attn.qkv.2"]
    for p in parts:
        assert p.shape[1] == pytest.approx(4096)
        assert p.bytes == pytest.approx(4096 * 2 + 4096 * 4096 * Q4 + 4096 * 2)
    assert sum(p.flops for p in parts) == pytest.approx(qkv.flops)


#: the build these tests' counts are b6000's (later builds fuse kernels: docstring 6 of
#: perfmodel/llamacpp_kernels.py, tests/test_llamacpp_versions_new.py)
B6000 = {"name": "llamacpp", "version": "b6000"}


def test_decode_layer_has_seven_matmuls_each_after_a_quantise():
    # llm_build_llama: wq, wk, wv, wo, ffn_gate, ffn_up, ffn_down = 7 MUL_MAT nodes per layer
    pred = predict(_scenario(B6000, 1, 4))
    names = [op.name for op in pred.ops if op.phase == "decode"]
    gemms = [n for n in names if n.startswith(("attn.", "mlp.")) and
             n.split(".")[1] in ("qkv", "out", "up", "down") and not n.endswith("q8_1")]
    quants = [n for n in names if n.endswith(".quantize_q8_1") and not n.startswith("head.")]
    assert len(gemms) == 7 and len(quants) == 7
    for q in quants:  # each quantise runs right before its matmul
        assert names[names.index(q) + 1] == q.removesuffix(".quantize_q8_1")


def test_16_bit_weights_split_but_add_no_quantise():
    pred = predict(_scenario("llamacpp", 1, 4, weight="fp16"))
    names = [op.name for op in pred.ops]
    assert "attn.qkv.2" in names and "mlp.up.1" in names
    assert not any(n.endswith("quantize_q8_1") for n in names)


def test_generic_engine_keeps_its_fused_operators():
    names = [op.name for op in predict(_scenario(None, 1, 4)).ops]
    assert "attn.qkv" in names and not any(n.endswith("quantize_q8_1") for n in names)


def test_decode_step_grows_by_the_extra_kernels_floors_and_bytes():
    # per layer: 7 quantise kernels, 3 more matmul kernels (q/k/v, gate/up split), one more
    # RoPE and the K and V stores = 13 kernels more than the generic list, each at least the
    # default profile's 2 us floor, moving few bytes at one token: the llama.cpp decode step
    # is longer by 32 x 13 x 2 us = 832 us plus at most a few per cent for their bytes
    gen = predict(_scenario(None, 1, 4)).tpot_s
    lcpp = predict(_scenario(B6000, 1, 4)).tpot_s
    extra = 32 * 13 * 2e-6
    assert extra < lcpp - gen < 1.05 * extra


def test_volta_prefill_dequantises_each_weight_to_f16():
    # 512-token prefill on a V100 (cc 7.0): every quantised linear layer adds a dequantise
    # kernel reading 4.5-bit and writing 2-byte weights, and its GEMM reads 2 B per weight
    pred = predict(_scenario("llamacpp", 512, 1, device="v100-sxm2-32gb"))
    ops = {op.name: op for op in pred.ops if op.phase == "prefill"}
    deq = ops["mlp.down.dequantize"]
    assert deq.calls == 32 and deq.bytes == pytest.approx(4096 * 11008 * (Q4 + 2.0))
    down = ops["mlp.down"]
    assert down.bytes == pytest.approx(512 * 11008 * 2 + 4096 * 11008 * 2.0 + 512 * 4096 * 2)
    assert "mlp.down.quantize_q8_1" not in ops or ops["mlp.down.quantize_q8_1"].calls == 0


# ---- MoE layers (module docstring 4: build_moe_ffn of the b6000 era) -------------------------

class _Moe:  # the MoESpec fields the llama.cpp kernels read
    num_experts, top_k = 128, 8


def test_routing_is_softmax_argsort_get_rows():
    # one token, 128 experts, top 8, f32 values: softmax 128 in / 128 out, argsort 128 in /
    # 8 out, get_rows 8 in / 8 out
    prec = O.Precision("fp16", 2.0, Q4)
    topk = O.moe_topk_op(1.0, 128, 8, prec)
    ops = with_ggml_cuda_matmuls([topk], prec, get_device("rtx-4090"), moe=_Moe)
    assert [op.name for op in ops] == ["moe.softmax", "moe.argsort", "moe.get_rows"]
    assert [op.bytes for op in ops] == pytest.approx([256 * 4, 136 * 4, 16 * 4])


def test_combine_is_one_mul_and_top_k_minus_one_adds():
    # one token, 8 experts of width 2048: mul over 8 x 2048 values, then 7 adds of 2 rows
    # into 1 (f32)
    prec = O.Precision("fp16", 2.0, Q4)
    combine = O.moe_combine_op(8.0, 1.0, 2048, prec)
    mul, add = with_ggml_cuda_matmuls([combine], prec, get_device("rtx-4090"), moe=_Moe)
    assert mul.name == "moe.weights_mul" and mul.bytes == pytest.approx(2 * 8 * 2048 * 4)
    assert add.name == "moe.expert_sum" and add.count == pytest.approx(7)
    assert add.bytes == pytest.approx(3 * 2048 * 4)


def test_experts_gate_and_up_are_two_mul_mat_id_each_after_its_quantise():
    # Qwen3-30B-A3B geometry, one token: 8 routed rows over 8 experts, gate + up 2 x 768 wide,
    # k = 2048; each MUL_MAT_ID quantises the token's 2048 values once; down quantises the 8
    # routed rows of 768
    prec = O.Precision("fp16", 2.0, Q4, weight_format="int4")
    up = O.grouped_gemm("moe.expert.up", 8.0, 2 * 768, 2048, 8.0, prec,
                        matmuls=(O.Matmul(0.5, 768 * 8, True), O.Matmul(0.5, 768 * 8, True)))
    down = O.grouped_gemm("moe.expert.down", 8.0, 2048, 768, 8.0, prec,
                          matmuls=(O.Matmul(1.0, 2048, False),))
    ops = with_ggml_cuda_matmuls([up, down], prec, get_device("rtx-4090"), moe=_Moe)
    assert [op.name for op in ops] == [
        "moe.expert.up.0.quantize_q8_1", "moe.expert.up.0", "moe.expert.up.1.quantize_q8_1",
        "moe.expert.up.1", "moe.expert.down.quantize_q8_1", "moe.expert.down"]
    q_up, q_down = ops[0], ops[4]
    assert q_up.bytes == pytest.approx(2048 * (4 + 36 / 32))
    assert q_down.bytes == pytest.approx(8 * 768 * (4 + 36 / 32))
    # each half reads its 8 experts' 768 x 2048 weights at 4.5 bits
    assert ops[1].bytes == pytest.approx(8 * (2048 * 2 + 2048 * 768 * Q4 + 768 * 2))
    assert ops[1].flops + ops[3].flops == pytest.approx(up.flops)


def test_rope_per_tensor_then_k_and_v_stores():
    # Llama-3-8B, one token: 32 query heads and 8 KV heads of 128; RoPE of Q (4096 values) and
    # of K (1024), then K and V written to an f16 cache (1024 f32 values read, 2 B written)
    prec = O.Precision("fp16", 2.0, Q4, kv=2.0)
    rope = O.elementwise("attn.rope", 1.0 * (32 + 8) * 128, 1.0 * (32 + 8) * 128, 2.0, 3.0,
                         kind="rope")
    q, k, ks, vs = with_ggml_cuda_matmuls([rope], prec, get_device("rtx-4090"), heads=(32, 8))
    assert (q.name, k.name, ks.name, vs.name) == (
        "attn.rope.q", "attn.rope.k", "attn.k_store", "attn.v_store")
    assert q.bytes == pytest.approx(4096 * 2 * 2) and k.bytes == pytest.approx(1024 * 2 * 2)
    assert ks.bytes == pytest.approx(1024 * (4 + 2)) and vs.bytes == ks.bytes


def test_a_scenario_runs_the_kernel_rules_of_its_build():
    """No version: the newest build read (llamacpp_kernels.run_build, b10470), which fuses
    gate + up + GLU into one MMVQ kernel at one token (PR #16715, b6841): 6 matmuls per layer,
    the activation kernel gone; b6000 runs the 7 of llm_build_llama."""
    from perfmodel.llamacpp_kernels import run_build

    assert run_build(None) == "b10470" and run_build("B6841") == "b6841"
    for engine, matmuls in (("llamacpp", 6), ({"name": "llamacpp", "version": "b6841"}, 6),
                            ({"name": "llamacpp", "version": "b6840"}, 7)):
        names = [op.name for op in predict(_scenario(engine, 1, 4)).ops
                 if op.phase == "decode" and op.name.startswith(("attn.", "mlp."))]
        gemms = [n for n in names if n.split(".")[1] in ("qkv", "out", "up", "down")
                 and not n.endswith("q8_1")]
        assert len(gemms) == matmuls, (engine, gemms)
