"""Issue 13 item 3: under fp8 activations (W8A8) only a GEMM's input is fp8; the residual
stream, the norms and the other elementwise kernels stay in the model's 16-bit dtype
(ops.Precision.hidden; vLLM csrc/layernorm_kernels.cu ``rms_norm`` / ``fused_add_rms_norm``
dispatch over fp32 / fp16 / bf16 only). Hand numbers: a small Llama-like model, decode of
4 tokens, 2 bytes per element whatever the activation dtype.
"""

from __future__ import annotations

import pytest

from perfmodel import ops as O
from perfmodel.specs.model import ModelSpec

SMALL = ModelSpec(id="tiny-rms", name="tiny-rms", num_layers=2, hidden_size=256, num_heads=4,
                  num_kv_heads=2, ffn_hidden_size=512, vocab_size=1000, norm="rmsnorm",
                  activation="swiglu", gated_mlp=True, position_embedding="rope",
                  tie_embeddings=False)
T, H = 4, 256  # tokens, hidden


def _w8a8() -> O.Precision:
    return O.Precision.inference("fp8", "fp8", "bf16")


def _bf16() -> O.Precision:
    return O.Precision.inference("bf16", "bf16", "bf16")


def _layer(prec: O.Precision) -> dict[str, O.Op]:
    ops = O.layer_forward_ops(SMALL, False, T, 1, 64, 64.0, O.Shard(), prec,
                              attn_phase="decode")
    return {op.name: op for op in ops}


@pytest.mark.parametrize("prec", [_w8a8(), _bf16()], ids=["w8a8", "bf16"])
def test_residual_add_and_norm_move_16_bit_hidden_states(prec):
    """Residual add: reads x and the residual, writes the sum: 3 x 4 x 256 x 2 B = 6,144 B.
    RMSNorm: reads 4 x 256, writes 4 x 256, 2 B each: 4,096 B. The same for W8A8 as bf16."""
    layer = _layer(prec)
    assert float(layer["attn.residual"].bytes) == 6144.0
    assert float(layer["mlp.residual"].bytes) == 6144.0
    assert float(layer["attn.norm"].bytes) == 4096.0
    assert float(layer["mlp.norm"].bytes) == 4096.0


@pytest.mark.parametrize("prec", [_w8a8(), _bf16()], ids=["w8a8", "bf16"])
def test_fused_add_norm_and_other_elementwise_kernels_are_16_bit(prec):
    """Fused add + RMSNorm: 4 elements of 2 B per hidden element: 4 x 4 x 256 x 2 = 8,192 B.
    RoPE on q and k (4 + 2 heads x 64): 2 x 4 x 384 x 2 = 6,144 B. SwiGLU: reads 4 x 1024,
    writes 4 x 512, 2 B each: 12,288 B. Embedding gather: 2 x 4 x 256 x 2 = 4,096 B."""
    fused = O.residual_norm_op(SMALL, "mlp.residual_norm", T * H, prec)
    assert float(fused.bytes) == 8192.0
    layer = _layer(prec)
    assert float(layer["attn.rope"].bytes) == 6144.0
    assert float(layer["mlp.act"].bytes) == 12288.0
    embed = {op.name: op for op in O.embedding_ops(SMALL, T, 1, prec)}
    assert float(embed["embed.lookup"].bytes) == 4096.0


def test_fp8_gemm_inputs_stay_one_byte():
    """The rule touches elementwise kernels only: the W8A8 QKV GEMM still reads its fp8 input
    at 1 B (4 x 256 x 1 = 1,024 B of the activation read)."""
    layer = _layer(_w8a8())
    qkv = layer["attn.qkv"]
    m, n, k = qkv.shape
    assert float(qkv.bytes) == pytest.approx(m * k * 1.0 + k * n * 1.0 + m * n * 1.0)
    assert m * k == T * H


def test_fp8_training_and_fp32_keep_their_width():
    """Training's fp8 recipe keeps activations between kernels bf16 (act 2 B already): the
    residual add is 6,144 B as in bf16; fp32 activations keep 4 B (12,288 B)."""
    fp8 = {op.name: op for op in O.layer_forward_ops(SMALL, False, T, 1, 1, 1.0, O.Shard(),
                                                     O.Precision.training("fp8"))}
    fp32 = {op.name: op for op in O.layer_forward_ops(SMALL, False, T, 1, 1, 1.0, O.Shard(),
                                                      O.Precision.training("fp32"))}
    assert float(fp8["attn.residual"].bytes) == 6144.0
    assert float(fp32["attn.residual"].bytes) == 12288.0
