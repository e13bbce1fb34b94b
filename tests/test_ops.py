"""Operator FLOPs and bytes against independent numbers (papers' closed forms, hand counts)."""

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.plan import TrainPlan
from perfmodel.specs.registry import get_model
from perfmodel.training import model_flops_per_step


def narayanan_model_flops(B, s, L, h, V):
    """Narayanan et al. 2021 (arXiv 2104.04473) Sec. 5.1 without recompute, i.e. Korthikanti
    et al. 2022 eq. 7: 72 B s L h^2 (1 + s/(6h) + V/(12 h L))."""
    return 72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * h * L))


def plan(**kw):
    base = dict(tp=1, pp=1, dp=1, cp=1, ep=1, etp=1, vp=1, micro_batch=1, seq_len=2048,
                global_batch=8)
    base.update(kw)
    return TrainPlan(**base)


@pytest.mark.parametrize("model_id", ["gpt-1.7b", "gpt-22b", "gpt-175b", "gpt-530b", "gpt-1t"])
def test_training_flops_match_narayanan_closed_form(model_id):
    m = get_model(model_id)
    p = plan(global_batch=64)
    ours, _ = model_flops_per_step(m, p)
    ref = narayanan_model_flops(64, 2048, m.num_layers, m.hidden_size, m.vocab_size)
    assert abs(ours / ref - 1) < 0.005


def test_flops_hand_count_one_gpt_layer():
    """One GPT layer forward, b=1, s=4, h=8 (heads 2): QKV 2*s*h*3h, attention QK^T and PV
    2*2*s*s*h (non-causal convention), out 2*s*h*h, MLP 2*2*s*h*4h = 24 s h^2 + 4 s^2 h."""
    from perfmodel.specs.model import ModelSpec

    m = ModelSpec(id="tiny", name="tiny", num_layers=1, hidden_size=8, num_heads=2,
                  ffn_hidden_size=32, vocab_size=10)
    fwd = O.layer_forward_ops(m, False, 1, 4, 4, O.attention_pairs(4, 4), O.Shard(),
                              O.Precision.training("bf16"))
    total = sum(op.model_flops * op.count for op in fwd)
    assert total == 24 * 4 * 8**2 + 4 * 4**2 * 8


def test_gqa_and_swiglu_counted_exactly():
    """Llama-3-8B (GQA 32/8 heads, SwiGLU 14336): per token forward GEMM FLOPs = 2 x the
    layer's matrix parameters (Kaplan et al. 2020 'C_forward = 2N' for the GEMM part)."""
    m = get_model("llama-3-8b")
    fwd = O.layer_forward_ops(m, False, 1, 1, 1, 1, O.Shard(), O.Precision.training("bf16"))
    gemm = sum(op.model_flops for op in fwd if op.cls == O.GEMM)
    h, kv, f = 4096, 8 * 128, 14336
    matrix_params = h * (h + 2 * kv) + h * h + 3 * h * f
    assert gemm == 2 * matrix_params


def test_moe_active_expert_flops():
    """Mixtral: each token runs top_k=2 of 8 experts: expert GEMM FLOPs = 2 * 2 * 3 h f."""
    m = get_model("mixtral-8x7b")
    fwd = O.layer_forward_ops(m, True, 1, 16, 16, O.attention_pairs(16, 16), O.Shard(),
                              O.Precision.training("bf16"))
    expert = sum(op.model_flops * op.count for op in fwd if op.name.startswith("moe.expert"))
    assert expert == pytest.approx(16 * 2 * 2 * 3 * 4096 * 14336)


def test_causal_pairs():
    assert O.attention_pairs(4, 4) == 4 * 5 / 2  # prompt
    assert O.attention_pairs(1, 100) == 100  # decode
    assert O.attention_pairs(4, 4, causal=False) == 16
    assert O.attention_pairs(3, 10) == 3 * 10 - 3  # chunk at the end of a longer context


def test_backward_is_twice_forward_in_model_flops():
    m = get_model("llama-2-7b")
    prec = O.Precision.training("bf16")
    fwd = O.layer_forward_ops(m, False, 2, 512, 512, O.attention_pairs(512, 512), O.Shard(),
                              prec)
    bwd = [b for op in fwd for b in O.backward(op, prec)]
    assert sum(o.model_flops * o.count for o in bwd) == pytest.approx(
        2 * sum(o.model_flops * o.count for o in fwd))
    # FlashAttention backward executes 2.5x the forward (recomputation), Dao 2023 Sec. 3.2
    fa = next(o for o in fwd if o.cls == O.ATTENTION)
    assert O.backward(fa, prec)[0].flops == pytest.approx(2.5 * fa.flops)


def test_tp_shards_gemm_flops_evenly():
    m = get_model("llama-2-7b")
    prec = O.Precision.training("bf16")
    one = O.layer_forward_ops(m, False, 1, 256, 256, 256 * 257 / 2, O.Shard(tp=1), prec)
    four = O.layer_forward_ops(m, False, 1, 256, 256, 256 * 257 / 2, O.Shard(tp=4), prec)
    f1 = sum(o.flops for o in one if o.cls != O.ELEMENTWISE)
    f4 = sum(o.flops for o in four if o.cls != O.ELEMENTWISE)
    assert f4 == pytest.approx(f1 / 4)


def test_decode_attention_reads_kv_cache_once_per_kv_head():
    """Decode of one token at context c reads K and V of every KV head once:
    2 * kv_heads * head_dim * c * bytes (GQA heads share them)."""
    m = get_model("llama-3-8b")
    prec = O.Precision.inference("bf16", "bf16", "bf16")
    core = O.attention_ops(m, 1, 1, 4096, 4096, O.Shard(), prec, True, "decode")[0]
    kv = 2 * 8 * 128 * 4096 * 2
    q_o = 32 * 128 * 2 * 2
    assert core.bytes == pytest.approx(kv + q_o)


def test_int4_weights_read_half_a_byte_plus_scales():
    prec = O.Precision.inference("int4", "bf16", "bf16", group_size=128)
    g = O.gemm("w", 1, 4096, 4096, prec)
    assert g.bytes == pytest.approx(4096 * 2 + 4096 * 4096 * (0.5 + 2 / 128) + 4096 * 2)
    assert g.vector_flops > 0  # dequantisation work
    assert g.dtype == "bf16"  # weight-only: tensor cores run in the activation type


def test_array_inputs_broadcast():
    m = get_model("llama-2-7b")
    prec = O.Precision.training("bf16")
    tp = np.array([1, 2, 4, 8])
    fwd = O.layer_forward_ops(m, False, 1, 128, 128, 128 * 129 / 2, O.Shard(tp=tp), prec)
    qkv = next(o for o in fwd if o.name == "attn.qkv")
    assert np.shape(qkv.flops) == (4,)
    assert np.allclose(qkv.flops * tp, qkv.flops[0])


def test_layer_matmuls_come_from_the_layer_operators():
    """One list of matmuls: Llama's 7 (q, k, v, o, gate, up, down; the fused QKV and gate+up
    GEMMs carry their parts) with shares adding to each GEMM's whole; MLA's down/up
    projections (DeepSeek-V2 arXiv 2405.04434 Sec. 2.1)."""
    llama = get_model("llama-3-8b")
    mms = O.layer_matmuls(llama, False)
    assert [name for name, _ in mms] == ["attn.qkv"] * 3 + ["attn.out"] + ["mlp.up"] * 2 \
        + ["mlp.down"]
    assert [mm.width for _, mm in mms] == [4096, 1024, 1024, 4096, 14336, 14336, 4096]
    for name in ("attn.qkv", "mlp.up"):
        assert sum(mm.share for n, mm in mms if n == name) == pytest.approx(1.0)
    ds = get_model("deepseek-v3")
    names = [name for name, _ in O.layer_matmuls(ds, True)]
    assert names[:5] == ["attn.q_down", "attn.q_up", "attn.kv_down", "attn.kv_up", "attn.out"]
    assert names[5] == "moe.router" and "moe.shared.down" in names


def test_operators_say_what_they_are_in_named_fields():
    prec = O.Precision.training("fp8")
    fwd = O.layer_forward_ops(get_model("llama-2-7b"), False, 1, 128, 128, 128 * 129 / 2,
                              O.Shard(), prec, flash=False)
    by = {op.name: op for op in fwd}
    assert by["attn.softmax"].attention_core and by["attn.softmax"].kernel == "softmax"
    assert not by["mlp.up"].attention_core and by["mlp.up"].block == "mlp"
    assert by["mlp.up.fp8cast"].fp8_cast and by["mlp.up.fp8cast"].kernel == "cast"
    head = O.head_ops(get_model("llama-2-7b"), 16, 1, prec)
    assert {op.block for op in head} == {"head"}
    assert [b.name for b in O.backward(by["attn.qkv"], prec)] == ["attn.qkv.dgrad",
                                                                  "attn.qkv.wgrad"]


def test_fp8_cast_bytes():
    """Tensorwise dynamic scaling: amax read (2 B) + cast read (2 B) + fp8 write (1 B) per
    element of the activation (m x k) and weight (k x n); backward casts the m x n gradient."""
    prec = O.Precision.training("fp8")
    g = O.gemm("w", 1024, 4096, 2048, prec)
    cast = O.fp8_cast(g)
    assert cast.bytes == 5 * (1024 * 2048 + 2048 * 4096)
    (back,) = O.backward(cast, prec)
    assert back.bytes == 5 * 1024 * 4096
    fwd = O.layer_forward_ops(get_model("llama-2-7b"), False, 1, 128, 128, 128 * 129 / 2, O.Shard(), prec)
    assert sum(op.cls == O.GEMM for op in fwd) == sum(op.fp8_cast for op in fwd)


def test_active_experts_is_the_expected_occupancy():
    """E (1 - (1 - k/E)^T): one token reads exactly k experts; many tokens read all E
    (hand values for Mixtral's 8 experts, top-2, and DeepSeek-V3's 256, top-8)."""
    assert O.active_experts(8, 2, 1) == pytest.approx(2.0)
    assert O.active_experts(8, 2, 2) == pytest.approx(8 * (1 - 0.75**2))  # 3.5
    assert O.active_experts(256, 8, 1) == pytest.approx(8.0)
    assert O.active_experts(256, 8, 4096) == pytest.approx(256.0)
    t = np.array([1, 2, 4, 16, 64, 256])
    a = O.active_experts(256, 8, t)
    assert np.all(np.diff(a) > 0) and np.all(a <= np.minimum(256, 8 * t) + 1e-9)


def test_moe_layer_runs_one_grouped_gemm_reading_only_active_experts():
    """Mixtral decode at batch 1: the expert GEMMs are single grouped calls that read the
    weights of the 2 routed experts, not of all 8 (vLLM fused MoE); at a large batch all 8."""
    m = get_model("mixtral-8x7b")
    prec = O.Precision.training("bf16")
    h, f = 4096, 14336

    def expert_up(tokens):
        fwd = O.layer_forward_ops(m, True, tokens, 1, 1, 1, O.Shard(), prec, attn_phase="decode")
        return next(op for op in fwd if op.name == "moe.expert.up")

    one = expert_up(1)
    assert one.count == 1 and float(one.groups) == pytest.approx(2.0)
    weights = 2 * (2 * f) * h * 2  # two experts' gate+up weights, bf16
    assert float(one.bytes) == pytest.approx(weights + 2 * h * 2 + 2 * (2 * f) * 2)
    assert float(one.flops) == pytest.approx(2 * 2 * (2 * f) * h)  # 2 routed rows
    big = expert_up(4096)
    assert float(big.groups) == pytest.approx(8.0) and big.count == 1
