"""Recompute policies against hand counts (Korthikanti et al. 2022 Sec. 5; torchtitan op policy)."""

import pytest

from perfmodel import ops as O
from perfmodel.memory import ActivationShape, layer_activation_bytes
from perfmodel.recompute import op_policy_split, recomputed_ops
from perfmodel.specs.registry import get_model


def test_op_policy_memory_and_recompute():
    """torchtitan's per-op policy on a Llama layer (q, k, v, o, gate, up, down): q, v, gate and
    down outputs are saved, k, o and up recomputed; memory = layer input + saved outputs +
    attention output + fp32 log-sum-exp, all in 2-byte activations (t = 1)."""
    m = get_model("llama-3-8b")
    saved, again = op_policy_split(m, False)
    assert [name for name, _ in saved] == ["attn.qkv", "attn.qkv", "mlp.up", "mlp.down"]
    assert [name for name, _ in again] == ["attn.qkv", "attn.out", "mlp.up"]
    b, s, h, f = 1, 1024, 4096, 14336
    shape = ActivationShape(b=b, s=s, s_kv=s, act_bytes=2.0, flash_attention=True)
    expected = 2 * s * (h + (h + 1024 + f + h) + h) + 4 * 32 * s
    assert layer_activation_bytes(m, shape, "op") == pytest.approx(expected)
    prec = O.Precision.training("bf16")
    fwd = O.layer_forward_ops(m, False, b, s, s, s * (s + 1) / 2, O.Shard(), prec)
    rec = {op.name: op for op in recomputed_ops("op", fwd, m, False, True)}
    qkv = next(op for op in fwd if op.name == "attn.qkv")
    assert rec["attn.qkv.recompute"].flops == pytest.approx(qkv.flops * 1024 / 6144)  # k of q,k,v
    assert "attn.core.recompute" not in rec and "mlp.down.recompute" not in rec

