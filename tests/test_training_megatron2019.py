"""Megatron-LM as of the 2019 paper (frameworks/megatron-lm-2019.yaml; frameworks_costs.
eager_forward_ops, optimizer_extra_ops): the eager kernels of NVIDIA/Megatron-LM 93ab4bea beyond
perfmodel's fused operator list, checked by hand on the paper's GPT-2 1.2B baseline (Shoeybi et
al. 2019 Table 1: 40 layers, hidden 1536, 16 heads, sequence 1024, batch 8, fp16)."""

from __future__ import annotations

import pytest
from training_ops import op_bytes, step_with_ops

import perfmodel as pm
from perfmodel import frameworks_costs as FC

GPT2_1_2B = {"id": "gpt2-1.2b-test", "name": "GPT-2 1.2B", "family": "gpt", "num_layers": 40,
             "hidden_size": 1536, "num_heads": 16, "ffn_hidden_size": 6144,
             "vocab_size": 51200, "max_position_embeddings": 1024, "activation": "gelu",
             "norm": "layernorm", "position_embedding": "learned", "tie_embeddings": True,
             "qkv_bias": True, "attn_out_bias": True, "mlp_bias": True}
S = 8 * 16 * 1024 * 1024            # scores per layer: batch x heads x s x s
K = 8 * 16 * 1024 * 1025 // 2       # causal pairs: what the fused softmax reads
T = 8 * 1024                        # tokens


def _run(framework: str, recompute: str = "full"):
    sc = pm.Scenario(
        kind="training", model=GPT2_1_2B, system={"device": "v100-sxm2-32gb", "num_gpus": 1},
        parallelism={"tp": 1, "pp": 1, "dp": 1, "zero_stage": 0},
        training={"framework": framework, "seq_len": 1024, "global_batch": 8, "micro_batch": 8,
                  "precision": "fp16", "recompute": recompute, "flash_attention": False,
                  "dropout": True})
    return step_with_ops(sc)


def test_score_chain_by_hand():
    """transformer.py GPT2ParallelSelfAttention: / sqrt(hn), mul by the mask, sub, softmax:
    8 passes of 2 B over the S scores forward, against the fused kernel's S written + K read;
    backward softmax (3 passes), mul (2), div (2) = 7 against S written + 2 K read."""
    r = _run("megatron-lm-2019")
    fwd = op_bytes(r, FC.EAGER_SCORES + FC.UNFUSED, "fwd")
    bwd = op_bytes(r, FC.EAGER_SCORES + ".bwd" + FC.UNFUSED, "bwd")
    assert fwd == pytest.approx((8 * S - (S + K)) * 2) == pytest.approx(1_744_699_392)
    assert bwd == pytest.approx((7 * S - (S + 2 * K)) * 2) == pytest.approx(1_341_915_136)
    # full recompute re-runs the forward passes
    assert op_bytes(r, FC.EAGER_SCORES + FC.UNFUSED + ".recompute", "recompute") == pytest.approx(fwd)


def test_bias_adds_and_hidden_dropout_by_hand():
    """F.linear on 3-D input (PyTorch 1.1): matmul, then the bias added by its own kernel,
    read + write of the output (2 + 2 B): widths 3h, h, 4h, h = 13,824 x 8192 tokens x 4 B.
    The two hidden dropouts: read 2, write 2, mask 1 B per element of 8192 x 1536, forward and
    backward alike."""
    r = _run("megatron-lm-2019")
    adds = sum(float(op.bytes) for op in r.op_times.ops
               if op.name.endswith(FC.BIAS_ADD + FC.UNFUSED) and op.phase == "fwd")
    assert adds == pytest.approx(13_824 * T * 4) == pytest.approx(452_984_832)
    for phase, suffix in (("fwd", FC.UNFUSED), ("bwd", ".bwd" + FC.UNFUSED)):
        drop = sum(float(op.bytes) for op in r.op_times.ops
                   if op.name.endswith(FC.RESIDUAL_DROPOUT + suffix) and op.phase == phase)
        assert drop == pytest.approx(2 * T * 1536 * 5)


def test_fp16_optimizer_bytes_by_hand():
    """FP16_Optimizer around apex FusedAdam: 6 + 10 + 6 + 8 + 4 + 28 + 6 = 68 B per parameter,
    38 B beyond perfmodel's fused 30 B; 1,213,479,936 parameters (40 x (12 h^2 + 13 h) + the
    tied 51,200 x 1536 embedding + 1024 x 1536 positions + the final LayerNorm's 2 h)."""
    r = _run("megatron-lm-2019")
    n = 40 * (12 * 1536 ** 2 + 13 * 1536) + 51_200 * 1536 + 1024 * 1536 + 2 * 1536
    assert n == 1_213_479_936
    assert op_bytes(r, FC.OPTIMIZER_EAGER, "step") == pytest.approx(38 * n)
    assert op_bytes(r, "optimizer.step", "step") == pytest.approx(30 * n)


def test_megatron_core_unchanged():
    """megatron-core (perfmodel's base list: the fused kernels Megatron-LM gained in 2020-09)
    adds none of these operators."""
    r = _run("megatron-core")
    assert not [op for op in r.op_times.ops if op.name.endswith(FC.UNFUSED)]
    assert op_bytes(r, FC.OPTIMIZER_EAGER, "step") == 0.0


def test_selective_recompute_reruns_only_the_score_chain():
    """Selective recompute re-runs the attention core; the scores' eager passes belong to it,
    the bias adds and the hidden dropout do not."""
    r = _run("megatron-lm-2019", recompute="selective")
    rec = {op.name for op in r.op_times.ops if op.phase == "recompute"}
    assert FC.EAGER_SCORES + FC.UNFUSED + ".recompute" in rec
    assert not [n for n in rec if FC.BIAS_ADD in n
                or n.endswith(FC.RESIDUAL_DROPOUT + FC.UNFUSED + ".recompute")]


def test_loss_chain_by_hand():
    """mpu/cross_entropy.py over output.float(): 46 B per logit forward (7 kernels), 14 B
    backward (2), against perfmodel's fused loss (3 B read + 3 B written per logit, backward
    twice that): extra 40 B and 2 B per logit of 8192 tokens x 51,200."""
    r = _run("megatron-lm-2019")
    logits = T * 51_200
    assert op_bytes(r, "head.loss" + FC.UNFUSED, "fwd") == pytest.approx(40 * logits)
    assert op_bytes(r, "head.loss" + FC.UNFUSED + ".bwd", "bwd") == pytest.approx(2 * logits)
    launches = {op.name: float(op.launches) for op in r.op_times.ops}
    assert launches["head.loss" + FC.UNFUSED] == 6.0
    assert launches["head.loss" + FC.UNFUSED + ".bwd"] == 1.0


def test_decomposition_backward_needs_both_fields():
    from perfmodel.errors import SpecError
    from perfmodel.frameworks import Decomposition

    with pytest.raises((SpecError, ValueError), match="both"):
        Decomposition(kernels=2, bytes_per_element=8.0, backward_bytes_per_element=4.0,
                      source="test")


def test_zeroed_grads_accumulate_the_first_microbatch():
    """FP16_Optimizer.zero_grad zeroes the fp16 grads (set_grads_to_None False): autograd adds
    the only micro-batch's gradient in place, 6 B per parameter of each layer (12 h^2 + 13 h)."""
    r = _run("megatron-lm-2019")
    acc = [op for op in r.op_times.ops if op.name == FC.GRAD_ACCUMULATE + FC.UNFUSED]
    assert len(acc) == 1
    assert float(acc[0].bytes) == pytest.approx(6 * (12 * 1536 ** 2 + 13 * 1536))
    # one GPU: no data-parallel all-reduce, no flatten copies
    assert sum(float(op.bytes) for op in r.op_times.ops if op.name == FC.GRAD_DDP_STEP) == 0.0
