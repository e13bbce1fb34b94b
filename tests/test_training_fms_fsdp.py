"""IBM fms-fsdp (frameworks/fms-fsdp.yaml): the ibm-fms LLaMA's eager chains and FSDP1 as
main_training.py calls it, checked by hand on the README's Llama 34b row (48 layers, hidden
8192, 64 query / 8 KV heads of 128, batch 2 x 4096 tokens per GPU, 96 H100s, full AC)."""

from __future__ import annotations

import pytest
from training_ops import op_bytes, step_with_ops

import perfmodel as pm
from perfmodel import frameworks_costs as FC

FMS_34B = {"id": "fms-llama-34b-test", "name": "fms 34b", "family": "llama", "num_layers": 48,
           "hidden_size": 8192, "num_heads": 64, "num_kv_heads": 8, "ffn_hidden_size": 22016,
           "vocab_size": 32000, "max_position_embeddings": 4096, "gated_mlp": True,
           "activation": "silu", "norm": "rmsnorm", "position_embedding": "rope",
           "tie_embeddings": False}
T = 2 * 4096
E_ROPE = T * (64 + 8) * 128   # every element of q and k


def _run(framework: str, compile_: bool = False):
    sc = pm.Scenario(
        kind="training", model=FMS_34B,
        system={"device": "h100-sxm5-80gb", "num_gpus": 96, "gpus_per_node": 8},
        parallelism={"tp": 1, "pp": 1, "dp": 96, "zero_stage": 3},
        training={"framework": {"name": framework, "compile": compile_}, "seq_len": 4096,
                  "global_batch": 192, "micro_batch": 2, "precision": "bf16",
                  "recompute": "full", "flash_attention": True, "dropout": False,
                  "grad_reduce_dtype": "bf16"})
    return step_with_ops(sc)


def test_rope_chain_by_hand():
    """positions.py adjusted_qk: float [r2 w4], broadcast multiply [r4 w8], sum [r8 w4],
    type_as [r4 w2] = 36 B per element of q and k forward, and 36 B backward, against
    perfmodel's fused kernel (2 + 2 B forward, twice that backward): 32 and 28 B extra per
    element, per layer and micro-batch (the stated backward, not twice the forward)."""
    r = _run("fms-fsdp")
    assert E_ROPE == 75_497_472
    assert op_bytes(r, "attn.rope" + FC.UNFUSED, "fwd") == pytest.approx(32 * E_ROPE)
    assert op_bytes(r, "attn.rope" + FC.UNFUSED + ".bwd", "bwd") == pytest.approx(28 * E_ROPE)
    launches = {op.name: float(op.launches) for op in r.op_times.ops}
    assert launches["attn.rope" + FC.UNFUSED] == 11.0
    assert launches["attn.rope" + FC.UNFUSED + ".bwd"] == 7.0


def test_rmsnorm_keeps_the_twice_forward_backward():
    """The fp32 RMSNorm chain (torchtitan's decomposition, 36 B per element) states no backward
    of its own: its extra operator's backward stays twice its forward."""
    r = _run("fms-fsdp")
    fwd = op_bytes(r, "attn.norm" + FC.UNFUSED, "fwd")
    assert fwd > 0
    assert op_bytes(r, "attn.norm" + FC.UNFUSED + ".bwd", "bwd") == pytest.approx(2 * fwd)


def test_compile_fuses_the_chains():
    """ed74fd5 main_training.py torch.compile(model): no eager chain left (the layout copies
    around SDPA stay, as for torchtitan)."""
    r = _run("fms-fsdp", compile_=True)
    assert not [op for op in r.op_times.ops
                if op.name.split(".recompute")[0].endswith((FC.UNFUSED, FC.UNFUSED + ".bwd"))
                and op.name.startswith(("attn.rope", "attn.norm", "mlp.norm", "mlp.act"))]
    assert [op for op in r.op_times.ops if op.name.startswith(FC.LAYOUT)]


def test_adamw_foreach_bytes_by_hand():
    """torch.optim.AdamW (foreach) 80 B + FSDP clip_grad_norm_ 12 B = 92 B per sharded fp32
    parameter, against perfmodel's fused 30 B: the eager extra is 62 / 30 of the fused step."""
    r = _run("fms-fsdp")
    step = op_bytes(r, "optimizer.step", "step")
    assert step > 0
    assert op_bytes(r, FC.OPTIMIZER_EAGER, "step") == pytest.approx(step * 62 / 30)


def test_no_composer_train_metrics():
    """fms-fsdp's train_utils.py computes one CrossEntropyLoss: no Composer metric passes."""
    assert not [op for op in _run("fms-fsdp").op_times.ops
                if op.name.startswith(FC.TRAIN_METRIC)]
    assert [op for op in _run("fsdp").op_times.ops if op.name.startswith(FC.TRAIN_METRIC)]
