"""Attention without FlashAttention (``flash_attention: false``) as the kernels Megatron-LM's
CoreAttention runs (ops.unfused_attention_ops): two cuBLAS batched GEMMs timed as GEMMs, the fused
scale-mask-softmax, attention dropout and the output copy as memory-bound passes.

Independent numbers the tests check against (hand calculations, not the code's output):

* GPT-2 small's shape (12 heads, head dim 64), micro-batch 1, sequence 512, causal, fp16, one
  GPU: 12 problems; scores 12 x 512 x 512 = 3,145,728 elements; causal pairs 12 x 512 x 513 / 2
  = 1,575,936; Q K^T 2 x 64 x 3,145,728 = 402,653,184 FLOPs.
* the default profile (calibration/default.json): GEMM efficiency 0.79, memory 0.88, the
  streaming plateau 0.88, 2 us per kernel; A100 SXM4: 312 TFLOP/s fp16, 2,039 GB/s.
* a plain GEMM's backward is two GEMMs of its FLOPs (dgrad + the other operand's gradient): 2x
  the forward; FlashAttention's is 2.5x (it recomputes the scores, Dao 2023 Sec. 3.2).
* Korthikanti et al. 2022 Sec. 4.1: the unfused core keeps the softmax output (2 B), the dropout
  mask (1 B) and the dropout output (2 B) per score: 5 a s^2 b bytes per layer.
"""

from __future__ import annotations

import pytest

from perfmodel import memory
from perfmodel import ops as O
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.zoo import get_model

S, HEADS, D = 512, 12, 64
SCORES = HEADS * S * S  # 3,145,728
KEPT = HEADS * S * (S + 1) // 2  # 1,575,936 causal pairs
PEAK, BW = 312e12, 2039e9  # A100 SXM4 fp16 dense, HBM2e (hardware_specs/a100-sxm4-80gb.yaml)
GEMM_EFF, MEM_EFF, STREAM, OVERHEAD = 0.79, 0.88, 0.88, 2e-6  # calibration/default.json


def _core(dropout: bool = True, prec: str = "fp16", flash: bool = False) -> list[O.Op]:
    fwd = O.layer_forward_ops(get_model("gpt2-small"), False, 1, S, S, S * (S + 1) / 2,
                              O.Shard(), O.Precision.training(prec), flash=flash,
                              attention_dropout=dropout)
    return [op for op in fwd if op.attention_core]


def _times(ops: list[O.Op]) -> dict[str, float]:
    roof = Roofline(registry.get_device("a100-sxm4-80gb"), registry.default_profile())
    t = op_times(ops, roof)
    return {op.name: float(x) for op, x in zip(t.ops, t.time, strict=True)}


def test_forward_kernels_of_one_layer():
    """baddbmm, fused softmax, dropout, bmm, output copy: in Megatron's order, with the
    bytes each moves (fp16, 1-byte mask)."""
    ops = {op.name: op for op in _core()}
    assert list(ops) == ["attn.qk", "attn.softmax", "attn.dropout", "attn.pv",
                         "attn.context_copy"]
    qk, pv = ops["attn.qk"], ops["attn.pv"]
    assert qk.cls == pv.cls == O.GEMM and qk.batch == HEADS
    assert qk.flops == pv.flops == 402_653_184
    assert qk.shape == (HEADS * S, S, D) and pv.shape == (HEADS * S, D, S)
    q = HEADS * S * D * 2  # one fp16 tensor of the heads' queries (= K, V, output)
    assert qk.bytes == 2 * q + SCORES * 2 and pv.bytes == SCORES * 2 + 2 * q
    assert ops["attn.softmax"].bytes == (KEPT + SCORES) * 2  # reads the causal triangle
    assert ops["attn.dropout"].bytes == SCORES * (2 + 2 + 1)
    assert ops["attn.context_copy"].bytes == 2 * q


def test_forward_time_by_hand():
    """One layer's unfused attention forward on an A100 with the default profile. The batched
    GEMMs are memory-bound by the roofline (intensity 2 s^2 d / (2 (2 s d + s^2)) = 43 FLOP/B
    < 153), so each takes its bytes at the bandwidth x min(GEMM efficiency, streaming plateau);
    the element-wise passes their bytes at the bandwidth x memory efficiency (their FLOPs at the
    fp32 rate are far below); each kernel adds its fixed cost."""
    q = HEADS * S * D * 2
    gemm_bytes = 2 * q + SCORES * 2
    assert gemm_bytes / BW > 402_653_184 / PEAK  # memory-bound
    gemm = gemm_bytes / (BW * min(GEMM_EFF, STREAM)) + OVERHEAD
    softmax = (KEPT + SCORES) * 2 / (BW * MEM_EFF) + OVERHEAD
    dropout = SCORES * 5 / (BW * MEM_EFF) + OVERHEAD
    copy = 2 * q / (BW * MEM_EFF) + OVERHEAD
    times = _times(_core())
    assert times["attn.qk"] == pytest.approx(gemm, rel=1e-9)
    assert times["attn.pv"] == pytest.approx(gemm, rel=1e-9)
    assert times["attn.softmax"] == pytest.approx(softmax, rel=1e-9)
    assert times["attn.dropout"] == pytest.approx(dropout, rel=1e-9)
    assert times["attn.context_copy"] == pytest.approx(copy, rel=1e-9)
    assert sum(times.values()) == pytest.approx(2 * gemm + softmax + dropout + copy, rel=1e-9)
    # the GEMMs are not timed with FlashAttention's constant (0.73)
    assert times["attn.qk"] != pytest.approx(gemm_bytes / (BW * 0.73) + OVERHEAD, rel=1e-3)


def test_compute_bound_batched_gemm_runs_at_the_gemm_efficiency():
    """In fp32 (19.5 TFLOP/s on an A100) the same Q K^T is compute-bound: FLOPs / (peak x the
    GEMM efficiency) + the kernel's fixed cost."""
    (qk,) = [op for op in _core(prec="fp32") if op.name == "attn.qk"]
    assert qk.dtype == "fp32"
    t = 402_653_184 / (19.5e12 * GEMM_EFF) + OVERHEAD
    assert (2 * HEADS * S * D + SCORES) * 4 / BW < 402_653_184 / 19.5e12  # compute-bound
    assert _times([qk])["attn.qk"] == pytest.approx(t, rel=1e-9)


def test_backward_is_twice_the_forward():
    """Each batched GEMM's backward is two GEMMs of its FLOPs (dA = dC B^T, dB = A^T dC, the
    shapes autograd's bmm backward runs): 2x the forward, model FLOPs too; the softmax backward
    reads gradient and output over the causal triangle and writes the whole row; dropout's
    reads the gradient and the mask; the output copy's is a view (no kernel)."""
    prec = O.Precision.training("fp16")
    fwd = _core()
    bwd = {b.name: b for op in fwd for b in O.backward(op, prec)}
    assert list(bwd) == ["attn.qk.bwd_a", "attn.qk.bwd_b", "attn.softmax.bwd",
                         "attn.dropout.bwd", "attn.pv.bwd_a", "attn.pv.bwd_b"]
    gemm_fwd = sum(op.flops for op in fwd if op.cls == O.GEMM)
    gemm_bwd = sum(op.flops for op in bwd.values() if op.cls == O.GEMM)
    assert gemm_fwd == 2 * 402_653_184 and gemm_bwd == 4 * 402_653_184  # 2x, not 2.5x
    assert sum(op.model_flops for op in bwd.values()) == 2 * sum(op.model_flops for op in fwd)
    # per problem: dQ = dS K (s x d x s), dK^T = Q^T dS (d x s x s); dP = dO V^T (s x s x d),
    # dV = P^T dO (s x d x s); problems stacked along m
    assert bwd["attn.qk.bwd_a"].shape == (HEADS * S, D, S)
    assert bwd["attn.qk.bwd_b"].shape == (HEADS * D, S, S)
    assert bwd["attn.pv.bwd_a"].shape == (HEADS * S, S, D)
    assert bwd["attn.pv.bwd_b"].shape == (HEADS * S, D, S)
    assert bwd["attn.softmax.bwd"].bytes == (2 * KEPT + SCORES) * 2
    assert bwd["attn.dropout.bwd"].bytes == SCORES * (2 + 1 + 2)
    assert all(not b.name.endswith((".dgrad", ".wgrad")) for b in bwd.values())  # no weights


def test_dropout_only_where_asked_and_flash_unchanged():
    """No dropout kernel without dropout; FlashAttention fuses dropout, so its core is the same
    one operator either way."""
    assert "attn.dropout" not in {op.name for op in _core(dropout=False)}
    with_d, without = _core(flash=True), _core(dropout=False, flash=True)
    assert [op.name for op in with_d] == ["attn.core"] == [op.name for op in without]
    assert with_d[0].bytes == without[0].bytes and with_d[0].flops == without[0].flops


def test_fp8_training_keeps_the_batched_gemms_in_16_bit():
    """Transformer Engine leaves attention in bf16 under fp8 recipes (fp8_dpa False): the
    batched GEMMs run at 16 bit with no fp8 cast kernels."""
    fwd = O.layer_forward_ops(get_model("gpt2-small"), False, 1, S, S, S * (S + 1) / 2,
                              O.Shard(), O.Precision.training("fp8"), flash=False)
    by = {op.name: op for op in fwd}
    assert by["attn.qk"].dtype == by["attn.pv"].dtype == "bf16"
    assert "attn.qk.fp8cast" not in by and "attn.pv.fp8cast" not in by
    assert by["attn.qkv"].dtype == "fp8" and "attn.qkv.fp8cast" in by


def test_memory_keeps_what_the_timed_kernels_save():
    """Korthikanti Sec. 4.1: per score the unfused core keeps the softmax output (a), the dropout
    mask (1 B) and the dropout output (a); those are the tensors the timed kernels write and
    their backward kernels read (softmax output, uint8 mask)."""
    m = get_model("gpt2-small")

    def saved(flash: bool, dropout: bool) -> float:
        shape = memory.ActivationShape(b=1, s=S, s_kv=S, act_bytes=2.0, dropout=dropout,
                                       flash_attention=flash)
        return float(memory.layer_activation_bytes(m, shape, "none"))

    lse = 4.0 * HEADS * S  # FlashAttention's fp32 log-sum-exp per query row
    per_score = (saved(False, True) - saved(True, True) + lse) / SCORES
    assert per_score == pytest.approx(2 + O.DROPOUT_MASK_BYTES + 2)  # 5 B = 5 a / 2 per score
    assert (saved(False, False) - saved(True, False) + lse) / SCORES == pytest.approx(2.0)


def _step(framework: str, dropout: bool, flash: bool = False, tp: int = 1) -> float:
    from perfmodel import predict

    scenario = {
        "name": "unfused", "kind": "training", "model": "llama-3-8b",
        "system": {"device": "a100-sxm4-80gb", "num_gpus": 8},
        "parallelism": {"tp": tp, "zero_stage": 3 if framework != "megatron-core" else 1},
        "training": {"seq_len": 2048, "global_batch": 16, "micro_batch": 1,
                     "framework": {"name": framework}, "flash_attention": flash,
                     "dropout": dropout},
    }
    return predict(scenario).step_time_s


@pytest.mark.parametrize("framework", ["deepspeed", "torchtitan", "fsdp", "megatron-core"])
def test_every_framework_runs_the_unfused_path(framework):
    """Frameworks that add SDPA layout copies (torchtitan's repeat_kv / transpose) have no SDPA
    call to put them after on the unfused path: the step is predicted, not refused."""
    t = _step(framework, dropout=False)
    # no faster than the dense FLOPs alone at the A100's bf16 peak: 6 x 8.03e9 parameters x
    # 16 x 2048 tokens over 8 GPUs x 312 TFLOP/s = 0.632 s (Kaplan et al. 2020's 6ND)
    assert 6 * 8.03e9 * 16 * 2048 / (8 * 312e12) < t < float("inf")


def test_attention_dropout_costs_time_in_a_training_step():
    """The step's unfused attention runs the dropout kernel when training with dropout
    (Korthikanti et al. 2022 Sec. 4.1: a mask and an output per score), so it is slower by at
    least the dropout pass over every layer's scores: 32 layers x 32 heads x 2048^2 scores x
    (2 + 1 + 2 bytes) forward at A100's HBM bandwidth per micro-batch."""
    with_dropout, without = _step("megatron-core", True), _step("megatron-core", False)
    per_pass = 32 * 32 * 2048**2 * 5 / 2039e9  # seconds, one forward pass, one micro-batch
    micro_batches = 16 // 8  # global 16 over data-parallel 8
    assert with_dropout - without >= per_pass * micro_batches
