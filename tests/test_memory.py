"""Memory formulas against Korthikanti et al. 2022 (arXiv 2205.05198) and ZeRO (1910.02054)."""

import numpy as np
import pytest

from perfmodel.memory import (
    ActivationShape,
    inflight_microbatches,
    kv_cache_bytes_per_token,
    layer_activation_bytes,
    model_state_bytes,
)
from perfmodel.specs.registry import get_model

GPT = get_model("gpt-22b")  # h=6144, a=64 heads
S, B, H, A = 2048, 4, 6144, 64


def act(tp=1, sp=False, recompute="none", flash=False, dropout=True):
    shape = ActivationShape(b=B, s=S, s_kv=S, tp=tp, sequence_parallel=sp, act_bytes=2.0,
                            dropout=dropout, flash_attention=flash)
    return layer_activation_bytes(GPT, shape, recompute)


def test_korthikanti_eq1_no_parallelism():
    """sbh (34 + 5as/h) bytes per layer (Korthikanti eq. 1)."""
    assert act() == pytest.approx(S * B * H * (34 + 5 * A * S / H))


@pytest.mark.parametrize("t", [2, 4, 8])
def test_korthikanti_eq2_tensor_parallel(t):
    """sbh (10 + 24/t + 5as/(ht)) (eq. 2)."""
    assert act(tp=t) == pytest.approx(S * B * H * (10 + 24 / t + 5 * A * S / (H * t)))


@pytest.mark.parametrize("t", [2, 8])
def test_korthikanti_eq4_sequence_parallel(t):
    """sbh/t (34 + 5as/h) (eq. 4)."""
    assert act(tp=t, sp=True) == pytest.approx(S * B * H / t * (34 + 5 * A * S / H))


def test_korthikanti_selective_recompute():
    """Selective recompute keeps sbh * 34 / t (eq. 6)."""
    assert act(tp=8, sp=True, recompute="selective") == pytest.approx(S * B * H * 34 / 8)


def test_full_recompute_keeps_layer_input():
    """Full recompute stores the layer input: 2sbh (/t with SP) (Sec. 4.3)."""
    assert act(tp=8, sp=True, recompute="full") == pytest.approx(2 * S * B * H / 8)
    assert act(recompute="full") == pytest.approx(2 * S * B * H)


def test_flash_attention_drops_the_s_squared_terms():
    with_flash = act(flash=True)
    assert with_flash == pytest.approx(S * B * H * 34 + 4 * B * A * S)


def test_sequence_parallel_and_recompute_never_raise_memory():
    base = act(tp=8)
    assert act(tp=8, sp=True) < base
    assert act(tp=8, sp=True, recompute="selective") < act(tp=8, sp=True)
    assert act(tp=8, sp=True, recompute="full") < act(tp=8, sp=True, recompute="selective")


def test_inflight_microbatches():
    """1F1B holds p micro-batches on the first stage (Narayanan Sec. 2.2.1); interleaving adds
    (1 + (p-1)/(pv)) (Korthikanti Sec. 4.2.3); GPipe holds all m."""
    assert inflight_microbatches(8, 1, 64, "1f1b") == 8
    assert inflight_microbatches(8, 1, 4, "1f1b") == 4
    assert inflight_microbatches(8, 2, 64, "interleaved") == pytest.approx(8 * (1 + 7 / 16))
    assert inflight_microbatches(8, 1, 64, "gpipe") == 64


def test_zero_model_states():
    """ZeRO paper Sec. 5.1: (2 + 2 + K) Psi with K = 12; stage 1/2/3 shard over Nd.
    Psi = 7.5B, Nd = 64: baseline 120 GB, ZeRO-1 31.4 GB, ZeRO-2 16.6 GB, ZeRO-3 1.9 GB
    (Table 1 of the paper, in 10^9 bytes)."""
    psi = 7.5e9

    def total(stage):
        s = model_state_bytes(psi, psi, 0.0, 64, 1, stage, "bf16", "adam", True, "bf16")
        return sum(s.values()) / 1e9

    assert total(0) == pytest.approx(120, rel=1e-3)
    assert total(1) == pytest.approx(31.4, rel=2e-3)
    assert total(2) == pytest.approx(16.6, rel=4e-3)
    assert total(3) == pytest.approx(1.9, rel=0.02)


def test_megatron_fp32_grads_18_bytes_per_param():
    """Megatron-LM keeps fp32 main gradients: 2 + 4 + 12 = 18 B/param without sharding."""
    s = model_state_bytes(1.0, 1.0, 0.0, 1, 1, 0, "bf16", "adam", True, "fp32")
    assert sum(s.values()) == 18


def test_kv_cache_per_token():
    """Llama-2-7B: 2 * 32 layers * 4096 * 2 B = 512 KiB per token (MHA); Llama-3-70B with
    GQA (8 KV heads of 128): 2 * 80 * 1024 * 2 B = 320 KiB per token."""
    l7 = get_model("llama-2-7b")
    assert kv_cache_bytes_per_token(l7, "bf16") * l7.num_layers == 512 * 1024
    l70 = get_model("llama-3-70b")
    assert kv_cache_bytes_per_token(l70, "bf16") * l70.num_layers == 320 * 1024
    # TP splits KV heads, and replicates them beyond kv_heads
    assert kv_cache_bytes_per_token(l70, "bf16", tp=8) == kv_cache_bytes_per_token(
        l70, "bf16") / 8
    assert kv_cache_bytes_per_token(l70, "bf16", tp=16) == kv_cache_bytes_per_token(
        l70, "bf16", tp=8)
    assert kv_cache_bytes_per_token(l70, "fp8") == kv_cache_bytes_per_token(l70, "bf16") / 2


def test_mla_cache_is_latent():
    """DeepSeek-V3 caches kv_lora_rank + rope dims = 576 values per token per layer."""
    m = get_model("deepseek-v3")
    assert kv_cache_bytes_per_token(m, "bf16") == 576 * 2


def test_activation_memory_is_array_friendly():
    shape = ActivationShape(b=np.array([1, 2, 4]), s=S, s_kv=S, tp=8, sequence_parallel=True,
                            flash_attention=True)
    out = layer_activation_bytes(GPT, shape, "selective")
    assert out.shape == (3,)
    assert np.allclose(out / out[0], [1, 2, 4])


def test_expert_inputs_per_gpu_grow_with_expert_tp():
    """Routed-expert GEMM inputs under MoE parallel folding: one expert-TP group computes
    top_k*s*b*etp/tp rows (parallel_comm.expert_rows, ops' routed rows), all-gathered so every
    etp rank keeps all of them at the full width h (the column-parallel fc1 input; Megatron-Core
    MoEAlltoAllTokenDispatcher gathers over the expert-TP group before the experts); only the
    fc1 / activation outputs split etp ways. Mixtral-8x7b (h 4096), top-2, s 4096, b 1, tp 4 +
    SP: etp 4 keeps 2 x 4096 x 4096 rows x 2 B of inputs per GPU, etp 1 a quarter of that."""
    model = get_model("mixtral-8x7b")
    shape = ActivationShape(b=1, s=4096, s_kv=4096, tp=4, sequence_parallel=True,
                            act_bytes=2.0, dropout=False, flash_attention=True)
    folded = layer_activation_bytes(model, shape, "selective", True, 2, 1)
    full = layer_activation_bytes(model, shape, "selective", True, 2, 4)
    assert full - folded == pytest.approx(2.0 * 2 * 4096 * 4096 * (1 - 1 / 4))
