"""Activation memory of MLA + MoE layers under interleaved pipelining, checked by hand (QA 1205d
D9: Megatron-Bridge 26.08's DeepSeek-V3 on 256 GB200 and Nemotron-3-Ultra on 256 GB300 were
predicted not to fit, though both ran).

The hand numbers are Korthikanti et al. 2022 (arXiv 2205.05198) Sec. 4.1's per-tensor terms
(Table 2 for a GPT layer) written out for an MLA attention and a routed + shared MoE, one byte
count per saved tensor, and the interleaved 1F1B schedule's in-flight count as Megatron-Core
runs it: rank 0 forwards 2 (p - 1) + (v - 1) p model chunks in warm-up
(megatron/core/pipeline_parallel/schedules.py get_pp_rank_microbatches, lines 964-965 at
d98e8a64), then one more before its first backward, each chunk 1/v of the stage's layers;
Narayanan et al. 2021 Sec. 2.2.2 / Korthikanti Sec. 4.2.3 state it as p (1 + (p - 1)/(p v))
stage-loads. (With --overlap-moe-expert-parallel-comm the warm-up has one chunk more, lines
969-970, but each combined step then frees a backward chunk layer by layer while it builds the
forward one, so the peak stays within one layer of the same count: combined_1f1b.py.)

Finding: perfmodel counts both as the hand calculation does. The published runs fit because of
recipe settings: DeepSeek-V3 recomputes the MLA up projections and reduces gradients in bf16
(both expressible; without them 214.6 GiB > 185), Nemotron-3-Ultra shards with Megatron-FSDP,
recomputes moe_act and offloads the experts' fc1 input and output to host memory (the offload
is not expressible: 274.6 GiB of 277.5 predicted with the rest).
"""

from pathlib import Path

import pytest

from perfmodel.api import predict
from perfmodel.memory import ActivationShape, inflight_microbatches, layer_activation_bytes
from perfmodel.zoo import resolve_model

CFG = Path(__file__).parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
DSV3 = str(CFG / "deepseek-ai--DeepSeek-V3_config.json")
ULTRA = str(CFG / "nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16_config.json")
GIB = 2**30

# DeepSeek-V3 (config.json): h 7168, 128 heads, q_lora 1536, kv_lora 512, qk_nope 128,
# qk_rope 64, v_head 128; 256 experts top-8 of ffn 2048, one shared expert of 2048; SwiGLU
S, A = 4096, 2  # tokens of one micro-batch (b = 1), bytes per bf16 element
H = 7168
Q_WIDTH = K_WIDTH = 128 * (128 + 64)  # query / key heads x qk_head_dim
V_WIDTH = O_WIDTH = 128 * 128
LATENTS = 2 * (1536 + 512) + 64  # q and kv latents before and after their norms, rope key
ROUTED = 8 * S  # token copies an expert group computes (top-8)


def _attention_bytes(up_proj_recomputed: bool) -> int:
    norm_in, proj_in = A * S * H, A * S * H  # input norm's input, q/kv down-projection input
    latents = A * S * LATENTS
    qkv = 0 if up_proj_recomputed else A * S * (Q_WIDTH + K_WIDTH + V_WIDTH)
    out = A * S * O_WIDTH  # attention output (o_proj input)
    lse = 4 * 128 * S  # FlashAttention's fp32 log-sum-exp per head and query
    return norm_in + proj_in + latents + qkv + out + lse


def _moe_mlp_bytes() -> int:
    norm_in, mlp_in = A * S * H, A * S * H
    routed = A * ROUTED * (H + 2 * 2048 + 2048)  # fc1 input, fc1 output (gate|up), act output
    shared = A * S * (2 * 2048 + 2048)
    return norm_in + mlp_in + routed + shared


def _dense_mlp_bytes() -> int:  # the first 3 layers: ffn 18432
    return A * S * H * 2 + A * S * (2 * 18432 + 18432)


def test_one_mla_moe_layer_by_hand():
    model = resolve_model(DSV3)
    shape = ActivationShape(b=1, s=S, s_kv=S, tp=1, act_bytes=A)
    moe_none = _attention_bytes(False) + _moe_mlp_bytes()
    assert moe_none == 1_864_892_416  # the sum written out: 1.737 GiB per layer, no recompute
    assert layer_activation_bytes(model, shape, "none", True, 8, 1) == moe_none
    moe_up = _attention_bytes(True) + _moe_mlp_bytes()
    assert moe_none - moe_up == A * S * (Q_WIDTH + K_WIDTH + V_WIDTH) == 536_870_912
    assert layer_activation_bytes(model, shape, "selective", True, 8, 1,
                                  ("mla_up_proj",)) == moe_up
    dense_up = _attention_bytes(True) + _dense_mlp_bytes()
    assert layer_activation_bytes(model, shape, "selective", False, 8, 1,
                                  ("mla_up_proj",)) == dense_up


def _megatron_rank0_chunks(p: int, v: int, m: int) -> int:
    """Model chunks rank 0 holds at its peak: warm-up 2 (p-1) + (v-1) p, capped at the m v
    chunks of the step (all forwards run first then), plus the first steady-state forward."""
    warmup = 2 * (p - 1) + (v - 1) * p
    total = m * v
    return total if warmup >= total else warmup + 1


@pytest.mark.parametrize("p,v,m", [(4, 4, 64), (8, 3, 32), (2, 8, 128), (4, 12, 32),
                                   (4, 2, 8), (4, 4, 4)])
def test_interleaved_inflight_is_megatrons_warmup(p, v, m):
    """In stage-loads (one micro-batch through all of a rank's layers): the chunk count / v.
    DeepSeek-V3 GB200's PP4 VP4 at 64 micro-batches: 19 chunks, 4.75 stage-loads."""
    want = _megatron_rank0_chunks(p, v, m) / v
    assert inflight_microbatches(p, v, m, "interleaved") == pytest.approx(want)


def _dsv3_gb200(**training):
    return {"kind": "training", "model": DSV3,
            "system": {"device": "gb200", "num_gpus": 256, "node": "gb200-nvl72"},
            "parallelism": {"tp": 1, "pp": 4, "vp": 4, "ep": 64, "etp": 1, "zero_stage": 1,
                            "uneven_pipeline": True},
            "training": {"framework": "nemo", "seq_len": S, "global_batch": 4096,
                         "micro_batch": 1, "precision": "fp8", **training}}


def test_dsv3_gb200_fits_with_the_recipes_settings():
    """Megatron-Bridge 26.08's recipe (perf_recipes/deepseek/gb200/deepseek_v3.py:149
    recompute_modules ['mla_up_proj']; _common.py:70-72 grad_reduce_in_fp32 False): it fits,
    as the published run did; without them it does not (214.6 GiB, QA 1205d D9).

    Hand: 61 layers over 16 chunks, 4 on each of rank 0's (16 layers); the first stage holds
    4.75 stage-loads. perfmodel spreads the 3 dense layers over the stages (stages.py), so its
    stage-load is 16 x (3/61 dense + 58/61 MoE) layers: 92.36 GiB. The recipe's layout puts
    them in rank 0's first chunk, which it holds 2p - 1 = 7 times at the peak (the other three
    chunks 4 times each): 7 x (3 dense + 1 MoE) + 12 x 4 MoE layers = 84.8 GiB. perfmodel's
    averaging is 9 % above that (on the safe side); both fit."""
    p = predict(_dsv3_gb200(recompute="selective", recompute_modules=["mla_up_proj"],
                            grad_reduce_dtype="bf16"))
    dense, moe = _attention_bytes(True) + _dense_mlp_bytes(), _attention_bytes(True) + _moe_mlp_bytes()
    averaged = 16 * (3 / 61 * dense + 58 / 61 * moe) * 4.75
    exact_layout = 7 * (3 * dense + moe) + 12 * 4 * moe
    act = p.breakdown["memory"]["activations"]
    assert act == pytest.approx(averaged, rel=1e-6)
    assert exact_layout / GIB == pytest.approx(84.8, abs=0.05)
    assert exact_layout < act < 1.10 * exact_layout
    assert p.fits
    assert not predict(_dsv3_gb200(recompute="selective")).fits  # core_attn only, fp32 grads


def test_ultra_activations_by_hand():
    """Nemotron-3-Ultra (config.json: h 8192; 48 Mamba-2 layers of 256 heads x 64, 8 groups x
    state 128; 12 attention layers of 64 query / 2 KV heads x 128; 48 latent-MoE layers, 512
    experts top-22 of relu^2 ffn 5120 on the 2048 latent, one shared expert of 10240) at PP 1,
    one micro-batch of 8192 tokens, recompute moe_act, TP 1: every layer once, plus the final
    norm / LM-head inputs and fp32 logits of the 131072 vocabulary (Korthikanti Sec. 4.3)."""
    s, h = 8192, 8192
    seq = 2 * A * s * h  # each layer's norm input and its GEMM input after the norm
    d_inner, gs = 2 * 8192, 8 * 128
    mamba = seq + A * s * ((2 * d_inner + 2 * gs + 256) + (d_inner + 2 * gs) + 2 * d_inner)
    attention = seq + A * s * (64 * 128 + 2 * 128 + 2 * 128 + 64 * 128) + 4 * 64 * s
    moe = seq + A * 22 * s * (2048 + 5120) + A * s * (10240 + 10240)  # moe_act: no act output
    head = 2 * A * s * h + 4 * s * 131072
    hand = 48 * mamba + 12 * attention + 48 * moe + head
    p = predict({"kind": "training", "model": ULTRA,
                 "system": {"device": "gb300", "num_gpus": 256, "node": "gb300-nvl72"},
                 "parallelism": {"tp": 1, "ep": 64, "etp": 1, "zero_stage": 3},
                 "training": {"framework": "nemo", "seq_len": s, "global_batch": 256,
                              "micro_batch": 1, "precision": "fp8", "recompute": "selective",
                              "recompute_modules": ["moe_act"], "grad_reduce_dtype": "bf16"}})
    assert p.breakdown["memory"]["activations"] == pytest.approx(hand, rel=1e-9)
    assert hand / GIB == pytest.approx(228.05, abs=0.01)
    # the recipe offloads the experts' fc1 input and output (fused_group_mlp): 124 GB of it
    offloaded = 48 * A * 22 * s * (2048 + 5120)
    assert offloaded / 1e9 == pytest.approx(124.0, abs=0.1)
