"""Megatron-LM of Narayanan et al. 2021 (frameworks/megatron-lm-2021.yaml, NVIDIA/Megatron-LM
a8d172b3): fp16 gradients accumulated by autograd into .grad every micro-batch and the local
DDP's flattened all-reduce copies (frameworks_costs.grad_accumulation_ops / grad_step_ops), the
fp32 cross entropy and Float16Optimizer's bytes, checked by hand on a GPT-3-style 1.7B layer
(hidden 2304, 4h MLP, biases, two LayerNorms: 12 h^2 + 13 h parameters)."""

from __future__ import annotations

import pytest
from training_ops import step_with_ops

import perfmodel as pm
from perfmodel import frameworks_costs as FC

H = 2304
GPT_1_7B = {"id": "gpt-1.7b-test", "name": "GPT 1.7B", "family": "gpt", "num_layers": 24,
            "hidden_size": H, "num_heads": 24, "ffn_hidden_size": 4 * H, "vocab_size": 51200,
            "max_position_embeddings": 2048, "activation": "gelu", "norm": "layernorm",
            "position_embedding": "learned", "tie_embeddings": True, "qkv_bias": True,
            "attn_out_bias": True, "mlp_bias": True}
LAYER = 12 * H * H + 13 * H


def _run(framework: str, dp: int = 2, microbatches: int = 4):
    sc = pm.Scenario(
        kind="training", model=GPT_1_7B,
        system={"device": "a100-sxm4-80gb", "num_gpus": dp, "gpus_per_node": 8},
        parallelism={"tp": 1, "pp": 1, "dp": dp, "zero_stage": 0,
                     "overlap_grad_reduce": False},
        training={"framework": framework, "seq_len": 2048, "global_batch": dp * microbatches,
                  "micro_batch": 1, "precision": "fp16", "recompute": "full",
                  "flash_attention": False, "dropout": True, "grad_reduce_dtype": "fp16"})
    return step_with_ops(sc)


def _ops(r, name: str):
    return [op for op in r.op_times.ops if op.name == name]


def test_autograd_accumulation_by_hand():
    """AccumulateGrad adds micro-batches 2..m into .grad (read 2 + 2, write 2 B per fp16
    parameter): per layer and micro-batch 6 x 63,730,944 x 3/4 bytes with m = 4, 24 layers."""
    assert LAYER == 63_730_944
    r = _run("megatron-lm-2021")
    (acc,) = _ops(r, FC.GRAD_ACCUMULATE + FC.UNFUSED)
    assert float(acc.bytes) == pytest.approx(6 * LAYER * 3 / 4)
    assert acc.phase == "bwd"
    calls = {op.name: c for op, c in zip(r.op_times.ops, r.op_counts, strict=True)}
    assert calls[FC.GRAD_ACCUMULATE + FC.UNFUSED] == pytest.approx(24 * 4)


def test_one_microbatch_accumulates_nothing():
    (acc,) = _ops(_run("megatron-lm-2021", microbatches=1), FC.GRAD_ACCUMULATE + FC.UNFUSED)
    assert float(acc.bytes) == 0.0


def test_flattened_allreduce_copies_by_hand():
    """allreduce_gradients without buffers: flatten, /= dp, copy back: 3 x (2 + 2) B per
    parameter the optimizer steps (all of them: ZeRO-0), only with dp > 1."""
    r = _run("megatron-lm-2021")
    (step,) = _ops(r, "optimizer.step")
    params = float(step.bytes) / 30.0   # perfmodel's fused mixed-precision Adam: 30 B/param
    (flat,) = _ops(r, FC.GRAD_DDP_STEP)
    assert float(flat.bytes) == pytest.approx(12 * params)
    (alone,) = _ops(_run("megatron-lm-2021", dp=1), FC.GRAD_DDP_STEP)
    assert float(alone.bytes) == 0.0


def test_float16_optimizer_and_loss_by_hand():
    """Float16OptimizerWithFloat16Params: 60 B per parameter (30 beyond the fused count); the
    fp32 cross entropy 38 B per logit forward (32 beyond 6), 14 backward (2 beyond 12), over
    2048 tokens x 51,200."""
    r = _run("megatron-lm-2021")
    (step,) = _ops(r, "optimizer.step")
    (eager,) = _ops(r, FC.OPTIMIZER_EAGER)
    assert float(eager.bytes) == pytest.approx(float(step.bytes))
    logits = 2048 * 51_200
    (fwd,) = _ops(r, "head.loss" + FC.UNFUSED)
    (bwd,) = _ops(r, "head.loss" + FC.UNFUSED + ".bwd")
    assert float(fwd.bytes) == pytest.approx(32 * logits)
    assert float(bwd.bytes) == pytest.approx(2 * logits)


def test_megatron_core_has_fused_accumulation():
    r = _run("megatron-core")
    assert not _ops(r, FC.GRAD_ACCUMULATE + FC.UNFUSED) and not _ops(r, FC.GRAD_DDP_STEP)
