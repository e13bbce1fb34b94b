"""HF config.json import by structure: the 117 current configs of the aiconfigurator-core 0.12.0
wheel (Apache-2.0; copied to tests/data/hf_configs/aiconfigurator-0.12.0/) either import or are refused with one line naming the missing
part; the imported ones reproduce the published parameter totals of their model cards.

Published figures are compared at the precision they were printed with (half a unit of the last
printed digit) unless a comment says the publisher truncated. "Active" follows each publisher's
convention: DeepSeek, Moonshot and OpenAI count activated parameters without the input-embedding
lookup (DeepSeek-V3 README_WEIGHTS: "36.6B (including 0.9B for the output Head)"; gpt-oss model
card Table 1 "active parameters" 5.13B = ours without the 0.58B embedding table), Mistral, Qwen
and Meta with it.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from perfmodel.errors import SpecError
from perfmodel.parameters import param_counts
from perfmodel.zoo import load_hf_config, model_from_hf_config

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
needs_configs = pytest.mark.skipif(not CONFIGS.is_dir(), reason="copied configs not present")

# Configs that import today (out of 117 files: 89 config.json + 28 hf_quant_config.json).
# Before the structural reader: 9 (llama x4, mixtral x2, deepseek_v3 x3); 60 before the
# Nemotron-H (Mamba-2 hybrid) reader; 64 before GLM-5.2's shared indexers (+6) and the
# latent MoE of Nemotron 3 Super / Ultra (+5), MiMo-V2-Flash's own sliding-layer shapes (+1)
# Llama-Nemotron's NAS blocks (+1), Gemma 4 (+3) and MiniMax-M3's block-sparse attention
# (+2), DeepSeek-V4's compressed attention with hyper-connections (+6) and Kimi K3's KDA
# hybrid (+1): every architecture config (89) imports. Never lower it.
MIN_IMPORTED = 89


def _load(name: str):
    return load_hf_config(CONFIGS / f"{name}_config.json")


def _rounds_to(count: int, published: float, unit: float) -> bool:
    return abs(count - published) <= unit / 2


@needs_configs
def test_every_current_config_imports_or_names_the_missing_part():
    files = sorted(CONFIGS.glob("*.json"))
    assert len(files) == 117
    imported, reasons = [], collections.Counter()
    for path in files:
        try:
            spec = load_hf_config(path)
        except SpecError as err:
            msg = str(err)
            assert "\n" not in msg, f"{path.name}: refusal is not one line: {msg!r}"
            assert msg.startswith(str(path)), msg
            reason = msg[len(str(path)) + 2:]
            if path.name.endswith("_hf_quant_config.json"):
                assert "quantisation descriptor" in reason, reason
            else:
                # one part, named: "model_type 'x': <part> (<key>) is not modelled"
                assert reason.startswith("model_type '") and reason.endswith(" is not modelled")
                assert "(" in reason or "config key '" in reason, reason
            reasons[reason] += 1
        else:
            counts = param_counts(spec)
            assert 0 < counts.active <= counts.total
            imported.append(path.name)
    print(f"\nHF config import: {len(imported)} of {len(files)} import; refused:")
    for reason, n in reasons.most_common():
        print(f"  {n:3d}  {reason}")
    assert len(imported) >= MIN_IMPORTED


# --- published totals, each from the model card ------------------------------------------
@needs_configs
@pytest.mark.parametrize("name", ["deepseek-ai--DeepSeek-V3", "deepseek-ai--DeepSeek-R1",
                                  "nvidia--DeepSeek-V3.1-NVFP4"])
def test_deepseek_v3_671b_37b(name):
    """https://huggingface.co/deepseek-ai/DeepSeek-V3: 671B total, 37B activated (MTP module
    excluded)."""
    c = param_counts(_load(name))
    assert c.total == 671_026_419_200
    assert _rounds_to(c.total, 671e9, 1e9)
    assert _rounds_to(c.active - c.word_embedding, 37e9, 1e9)


@needs_configs
def test_kimi_k2_model_card():
    """https://huggingface.co/moonshotai/Kimi-K2-Instruct: 1T total, 32B activated. DeepSeek-V3
    layout with 384 experts (config model_type kimi_k2: imported by structure)."""
    spec = _load("moonshotai--Kimi-K2-Instruct")
    c = param_counts(spec)
    assert spec.mla is not None and spec.moe.num_experts == 384 and spec.moe.router_bias
    assert (c.num_dense_layers, c.num_moe_layers) == (1, 60)
    assert c.total == 1_026_408_232_448
    assert _rounds_to(c.total, 1e12, 1e12)
    assert _rounds_to(c.active - c.word_embedding, 32e9, 1e9)  # 31.69B


@needs_configs
@pytest.mark.xfail(strict=True, reason="Kimi K2 tech report (arXiv 2507.20534) prints 1.04T / "
                   "32.6B; the released config counts 1.026T / 31.7B (32.9B with the embedding)")
def test_kimi_k2_tech_report():
    c = param_counts(_load("moonshotai--Kimi-K2-Instruct"))
    assert _rounds_to(c.total, 1.04e12, 1e10)
    assert _rounds_to(c.active - c.word_embedding, 32.6e9, 1e8)


@needs_configs
def test_qwen3_235b_a22b():
    """https://huggingface.co/Qwen/Qwen3-235B-A22B: 235B total, 22B activated, 234B
    non-embedding. Qwen3 has per-head q_norm / k_norm (no config key: implicit for qwen3_moe)."""
    spec = _load("Qwen--Qwen3-235B-A22B")
    c = param_counts(spec)
    assert spec.qk_norm == "per_head"
    assert _rounds_to(c.total, 235e9, 1e9)
    assert _rounds_to(c.active, 22e9, 1e9)
    assert _rounds_to(c.total - c.word_embedding - c.lm_head, 234e9, 1e9)
    assert c.total == param_counts(_load("Qwen--Qwen3-VL-235B-A22B-Instruct")).total  # LM only


@needs_configs
def test_qwen3_30b_a3b():
    """https://huggingface.co/Qwen/Qwen3-30B-A3B: 30.5B total, 3.3B activated, 29.9B
    non-embedding. Qwen truncates: the exact active count is 3.353B."""
    c = param_counts(_load("Qwen--Qwen3-30B-A3B"))
    assert c.total == 30_532_122_624 and c.active == 3_353_032_704
    assert _rounds_to(c.total, 30.5e9, 1e8)
    assert c.active // 10**8 == 33  # truncated to 3.3B
    assert _rounds_to(c.total - c.word_embedding - c.lm_head, 29.9e9, 1e8)


@needs_configs
def test_qwen3_coder_480b_a35b():
    """https://huggingface.co/Qwen/Qwen3-Coder-480B-A35B-Instruct: 480B total, 35B activated."""
    c = param_counts(_load("Qwen--Qwen3-Coder-480B-A35B-Instruct"))
    assert _rounds_to(c.total, 480e9, 1e9)
    assert _rounds_to(c.active, 35e9, 1e9)


@needs_configs
@pytest.mark.parametrize(("name", "total", "active"), [
    ("openai--gpt-oss-120b", 116.83e9, 5.13e9),
    ("openai--gpt-oss-20b", 20.91e9, 3.61e9),
])
def test_gpt_oss(name, total, active):
    """gpt-oss model card (arXiv 2508.10925, Table 1; https://huggingface.co/openai/gpt-oss-120b
    "117B parameters with 5.1B active"): biased q/k/v/o, per-head attention sinks, biased
    router and experts, alternating sliding (128) / full attention layers."""
    spec = _load(name)
    c = param_counts(spec)
    assert spec.attention_sinks and spec.moe.router_bias and spec.mlp_bias
    assert spec.sliding_window == 128 and spec.layer_types[:2] == (
        "sliding_attention", "full_attention")
    assert _rounds_to(c.total, total, 1e7)
    assert _rounds_to(c.active - c.word_embedding, active, 1e7)


@needs_configs
def test_llama4_scout():
    """https://huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct: 17B active, 109B total.
    The total includes the vision encoder, which this config.json does not describe (no
    vision_config): the language model alone is 107.77B."""
    spec = _load("meta-llama--Llama-4-Scout-17B-16E-Instruct")
    c = param_counts(spec)
    assert spec.moe.num_shared_experts == 1 and c.num_moe_layers == 48
    assert spec.ffn_hidden_size == 16384 and spec.moe.expert_ffn_hidden_size == 8192
    assert c.total == 107_769_861_120 and 0 < 109e9 - c.total < 1.5e9
    assert _rounds_to(c.active, 17e9, 1e9)


@needs_configs
def test_llama4_maverick():
    """https://huggingface.co/meta-llama/Llama-4-Maverick-17B-128E-Instruct: 17B active, 400B
    total (printed to two significant digits); MoE in every second layer."""
    c = param_counts(_load("meta-llama--Llama-4-Maverick-17B-128E-Instruct"))
    assert (c.num_dense_layers, c.num_moe_layers) == (24, 24)
    assert _rounds_to(c.total, 400e9, 1e10)
    assert _rounds_to(c.active, 17e9, 1e9)


@needs_configs
def test_mixtral_8x22b():
    """https://mistral.ai/news/mixtral-8x22b: 141B total, 39B active."""
    c = param_counts(_load("mistralai--Mixtral-8x22B-v0.1"))
    assert c.total == 140_620_634_112
    assert _rounds_to(c.total, 141e9, 1e9)
    assert _rounds_to(c.active, 39e9, 1e9)


@needs_configs
def test_glm5_744b():
    """https://huggingface.co/zai-org/GLM-5: 744B parameters (40B active, which Z.ai rounds
    down: ours is 40.8B without the input embedding). MLA with a DSA lightning indexer."""
    spec = _load("zai-org--GLM-5")
    c = param_counts(spec)
    assert spec.mla.indexer_heads == 32 and spec.mla.indexer_head_dim == 128
    assert _rounds_to(c.total, 744e9, 1e9)
    assert c.total == param_counts(_load("nvidia--GLM-5.1-NVFP4")).total  # mlp_layer_types


@needs_configs
def test_deepseek_v32_adds_the_indexer_to_v3():
    """DeepSeek-V3.2 = V3 + per layer the indexer: wq_b 1536 x 64*128, wk 7168 x 128, k_norm
    LayerNorm(128) with bias, weights_proj 7168 x 64."""
    v3, v32 = (param_counts(_load(n)) for n in
               ("deepseek-ai--DeepSeek-V3", "deepseek-ai--DeepSeek-V3.2"))
    per_layer = 1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64
    assert v32.total - v3.total == 61 * per_layer
    assert v32.active - v3.active == 61 * per_layer


@needs_configs
@pytest.mark.parametrize(("name", "total", "active"), [
    ("Qwen--Qwen3.5-27B", 27e9, None),
    ("Qwen--Qwen3.5-35B-A3B", 35e9, 3e9),
    ("Qwen--Qwen3.5-122B-A10B", 122e9, 10e9),
    ("Qwen--Qwen3.5-397B-A17B", 397e9, 17e9),
])
def test_qwen35_gated_delta_net(name, total, active):
    """Qwen3.5 model cards (https://huggingface.co/Qwen/Qwen3.5-397B-A17B: 397B total, 17B
    activated; the other sizes as named): 3 gated-delta-net layers per full-attention layer
    (which has a gated query projection). Our count is the language model only; the published
    totals include the vision encoder (for 397B: ours is 396.35B)."""
    spec = _load(name)
    c = param_counts(spec)
    assert spec.linear_attention.kind == "gated_delta_net" and spec.attention_output_gate
    assert c.num_linear_attention_layers == 3 * spec.num_layers // 4
    assert c.total < total + 0.5e9 and total - c.total < 1.5e9
    if active is not None:
        assert _rounds_to(c.active, active, 1e9)


def test_gated_delta_net_layer_count_by_hand():
    """One layer of each kind, tiny widths: GDN h*(2*16+2*32) + h*2*4 + (2*16+32)*4 + 2*4
    + 8 + 32*h replaces attention and the q/k norms."""
    spec = model_from_hf_config(_tiny(
        model_type="qwen3_5_text", layer_types=["linear_attention", "full_attention"] * 2,
        linear_num_key_heads=2, linear_key_head_dim=8, linear_num_value_heads=4,
        linear_value_head_dim=8, linear_conv_kernel_dim=4, attn_output_gate=True))
    h = 64
    gdn = h * (2 * 16 + 2 * 32) + h * 8 + (2 * 16 + 32) * 4 + 8 + 8 + 32 * h
    attn = h * (64 + 2 * 32) + 64 * h + h * 64 + 2 * 16  # + output gate, + q/k norms
    mlp_norms = 3 * h * 128 + 2 * h
    assert param_counts(spec).total == 2 * (gdn + attn + 2 * mlp_norms) + 2 * 100 * h + h


@needs_configs
@pytest.mark.parametrize("name", ["MiniMaxAI--MiniMax-M2.5", "MiniMaxAI--MiniMax-M2.7"])
def test_minimax_m2(name):
    """https://huggingface.co/MiniMaxAI/MiniMax-M2.5: 230B total, 10B active (printed to two
    and one significant digits). Full-width q/k RMSNorm (qk_norm_type per_layer), sigmoid router
    with a per-expert bias, no shared expert; attn_type_list all 1 (softmax attention)."""
    spec = _load(name)
    c = param_counts(spec)
    assert spec.qk_norm == "per_layer" and spec.moe.router_bias
    assert _rounds_to(c.total, 230e9, 1e10)
    assert _rounds_to(c.active - c.word_embedding, 10e9, 1e9)


# --- structure read from the config, on small edited configs ---------------------------------
def _tiny(**changes):
    base = {
        "model_type": "brand_new", "num_hidden_layers": 4, "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": False,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_new_model_type_with_known_parts_imports():
    c = param_counts(model_from_hf_config(_tiny()))
    h, f, v = 64, 128, 100
    layer = h * (64 + 2 * 32) + 64 * h + 3 * h * f + 2 * h
    assert c.total == 4 * layer + 2 * v * h + h


def test_unknown_key_is_refused_by_name():
    with pytest.raises(SpecError, match=r"^model_type 'brand_new': config key 'frobnicate' "
                                        r"is not modelled$"):
        model_from_hf_config(_tiny(frobnicate=3))


def test_unknown_layer_type_is_refused_by_name():
    types = ["full_attention", "mamba", "full_attention", "full_attention"]
    with pytest.raises(SpecError, match="layer type 'mamba' in layer_types is not modelled"):
        model_from_hf_config(_tiny(layer_types=types))


def test_moe_key_spellings_and_layer_patterns():
    qwen = model_from_hf_config(_tiny(num_experts=8, num_experts_per_tok=2,
                                      moe_intermediate_size=32, mlp_only_layers=[0, 3]))
    assert qwen.moe.layer_pattern == (False, True, True, False) and qwen.num_moe_layers == 2
    ds = model_from_hf_config(_tiny(n_routed_experts=8, num_experts_per_tok=2,
                                    moe_intermediate_size=32, n_shared_experts=2,
                                    first_k_dense_replace=1, moe_layer_freq=2))
    assert ds.moe.layer_pattern == (False, False, True, False) and ds.moe.num_shared_experts == 2
    mixtral_like = model_from_hf_config(_tiny(num_local_experts=4, experts_per_token=1))
    assert mixtral_like.moe.expert_ffn_hidden_size == 128 and mixtral_like.num_moe_layers == 4
    gated = model_from_hf_config(_tiny(num_experts=4, num_experts_per_tok=1,
                                       moe_intermediate_size=32,
                                       shared_expert_intermediate_size=48))
    assert gated.moe.shared_expert_gate and gated.moe.shared_ffn == 48


def test_multimodal_wrapper_reads_text_config():
    wrapped = {"model_type": "brand_new_vl", "text_config": _tiny(model_type=..., tie_word_embeddings=...),
               "vision_config": {"hidden_size": 8}, "tie_word_embeddings": True}
    spec = model_from_hf_config(wrapped)
    assert spec.tie_embeddings and "vision" in spec.notes
    plain = param_counts(model_from_hf_config(_tiny(tie_word_embeddings=True)))
    assert param_counts(spec).total == plain.total


def test_quantisation_descriptor_is_refused():
    with pytest.raises(SpecError, match="quantisation descriptor"):
        model_from_hf_config({"producer": {"name": "modelopt"}, "quantization": {}})


def test_hf_quant_files_are_the_only_configs_without_model_type():
    if not CONFIGS.is_dir():
        pytest.skip("copied configs not present")
    for path in CONFIGS.glob("*.json"):
        data = json.loads(path.read_text())
        assert ("model_type" in data) != path.name.endswith("_hf_quant_config.json")


# --- Nemotron-H: Mamba-2 / attention / MLP / MoE blocks ------------------------------------
@needs_configs
@pytest.mark.parametrize("name", ["nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
                                  "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4",
                                  "nvidia--NVIDIA-Nemotron-3.5-Lightning-30B-A3B-NVFP4"])
def test_nemotron_3_nano_31_6b_3_2b(name):
    """https://huggingface.co/nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16: 31.6B total,
    about 3.2B active (3.6B including embeddings). 52 blocks: 23 Mamba-2, 23 MoE, 6 attention.
    By hand (transformers NemotronHMamba2Mixer / NemotronHAttention / NemotronHMoE shapes):
    Mamba 2688 x (4096 + 6144 + 64) + 6144 x 4 + 6144 + 3 x 64 + 4096 + 4096 x 2688
    = 38,742,208; attention 2 x 2688 x 4096 + 2 x 2688 x 256 = 23,396,352; MoE 128 x 2688 + 128
    + 128 x 2 x 2688 x 1856 + 2 x 2688 x 3712 = 1,297,465,472; + one norm per block, the
    embedding, the final norm and the LM head."""
    spec = _load(name)
    c = param_counts(spec)
    h, v = 2688, 131072
    by_hand = (23 * 38_742_208 + 6 * 23_396_352 + 23 * 1_297_465_472 + 52 * h
               + 2 * v * h + h)
    assert c.total == by_hand == 31_577_940_288
    assert _rounds_to(c.total, 31.6e9, 1e8)
    assert _rounds_to(c.active - c.word_embedding, 3.2e9, 1e8)
    assert _rounds_to(c.active, 3.6e9, 1e8)
    assert spec.layer_types.count("mamba") == 23 and spec.mamba.state_bytes == 4.0


@needs_configs
def test_nemotron_h_56b():
    """Nemotron-H-56B-Base (arXiv 2504.03624, https://huggingface.co/nvidia/
    Nemotron-H-56B-Base-8K): 56B; 118 blocks, 54 Mamba-2, 10 attention, 54 MLP."""
    spec = _load("nvidia--Nemotron-H-56B-Base-8K")
    c = param_counts(spec)
    assert (spec.layer_types.count("mamba"), spec.layer_types.count("full_attention"),
            spec.layer_types.count("none")) == (54, 10, 54)
    assert c.total == 56_324_350_464
    assert _rounds_to(c.total, 56e9, 1e9)


# --- latent MoE (Nemotron 3 Super / Ultra) -------------------------------------------------
@needs_configs
@pytest.mark.parametrize("name", ["nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-FP8",
                                  "nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4"])
def test_nemotron_3_super_120b_a12b(name):
    """https://research.nvidia.com/labs/nemotron/Nemotron-3-Super: "a 12B active 120B total
    parameter" model (NVIDIA truncates, as for Nano's 31.6B "30B"; active without the
    embedding, as for Nano). LatentMoE by hand (NVIDIA LatentMoE; vLLM / TensorRT-LLM NemotronH
    fc1_latent_proj / fc2_latent_proj): router 4096 x 512 + bias 512, fc1 4096 x 1024 and fc2
    1024 x 4096, 512 experts of up 1024 x 2688 + down 2688 x 1024 (squared ReLU, not gated),
    shared expert 2 x 4096 x 5376 at the hidden width."""
    spec = _load(name)
    c = param_counts(spec)
    assert spec.moe.latent_size == 1024 and spec.moe.num_experts == 512
    assert c.expert == 2 * 1024 * 2688 and c.moe_latent_proj == 2 * 4096 * 1024
    # a MoE block: one norm and the LatentMoE (ParamCounts' MoE layer less its attention)
    assert c.per_moe_layer - c.attention - c.attention_replicated == (4096 * 512 + 512 + 2 * 4096 * 1024 + 512 * 2 * 1024 * 2688
                                                                      + 2 * 4096 * 5376 + 4096)
    assert c.total == 120_668_707_840 and c.total // 10**9 == 120
    assert _rounds_to(c.active - c.word_embedding, 12e9, 1e9)  # 12.23B


@needs_configs
@pytest.mark.parametrize("name", ["nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16",
                                  "nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-FP8",
                                  "nvidia--NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4"])
def test_nemotron_3_ultra_550b_a55b(name):
    """https://research.nvidia.com/labs/nemotron/Nemotron-3-Ultra/: "550 billion total and 55
    billion active parameters" (model card: "550B (55B active)"); 108 blocks, latent 2048."""
    spec = _load(name)
    c = param_counts(spec)
    assert spec.num_layers == 108 and spec.moe.latent_size == 2048
    assert c.total == 549_308_993_536
    assert _rounds_to(c.total, 550e9, 1e10)  # 549.31B; "550B" printed to two digits
    assert _rounds_to(c.active - c.word_embedding, 55e9, 1e9)  # 54.99B (56.06B with it)


def test_latent_moe_by_hand():
    """Tiny latent MoE: experts read and write the latent, the projections and the router the
    hidden state, the shared expert stays at the hidden width."""
    spec = model_from_hf_config({
        "model_type": "nemotron_h", "hybrid_override_pattern": "E", "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 128, "vocab_size": 100, "mamba_num_heads": 4, "mamba_head_dim": 8,
        "ssm_state_size": 8, "n_routed_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "moe_latent_size": 16,
        "moe_shared_expert_intermediate_size": 48})
    c = param_counts(spec)
    layer = 64 * 4 + 4 + 2 * 64 * 16 + 4 * 2 * 16 * 32 + 2 * 64 * 48 + 64
    assert c.total == layer + 2 * 100 * 64 + 64
    assert c.active == c.total - 2 * 2 * 16 * 32


# --- DSA indexer shared across layers (GLM-5.2 IndexShare) --------------------------------
@needs_configs
@pytest.mark.parametrize("name", ["zai-org--GLM-5.2", "zai-org--GLM-5.2-FP8",
                                  "nvidia--GLM-5.2-NVFP4", "zai-org--GLM-5.3",
                                  "zai-org--GLM-5.3-FP8", "nvidia--GLM-5.3-NVFP4"])
def test_glm52_indexshare(name):
    """GLM-5.2 = GLM-5 with the indexer in 21 of 78 layers (indexer_types "full"; the 57
    "shared" layers reuse the last full layer's top-k and hold no indexer weights:
    transformers glm_moe_dsa skip_topk). Published: the Hub's safetensors count of the
    checkpoint, https://huggingface.co/zai-org/GLM-5.2 "753B" against GLM-5 / GLM-5.1 "754B"
    (https://huggingface.co/zai-org/GLM-5), both the main model plus the one MTP layer
    (a MoE decoder layer, eh_proj 2h x h and three norms). Z.ai's "744B" for GLM-5.2 is the
    GLM-5 backbone's figure; without 57 indexers ours is 743.38B."""
    glm5 = _load("zai-org--GLM-5")
    spec = _load(name)
    c, c5 = param_counts(spec), param_counts(glm5)
    assert spec.mla.indexer_layers.count(True) == 21 and spec.mla.indexer_topk == 2048
    per_indexer = 2048 * 32 * 128 + 6144 * 128 + 2 * 128 + 6144 * 32
    assert c5.total - c.total == 57 * per_indexer
    h = spec.hidden_size
    mtp = c.per_moe_layer + 2 * h * h + 3 * h
    assert _rounds_to(c.total + mtp, 753e9, 1e9)
    assert _rounds_to(c5.total + param_counts(glm5).per_moe_layer + 2 * h * h + 3 * h,
                      754e9, 1e9)
    assert _rounds_to(c.active - c.word_embedding, 40e9, 1e9)  # Z.ai: 40B active


def test_indexer_types_by_structure():
    """indexer_types "shared" layers drop their indexer; a freq without the list is refused."""
    base = _tiny(q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                 v_head_dim=8, index_n_heads=2, index_head_dim=8, index_topk=16)
    every = param_counts(model_from_hf_config(base))
    shared = model_from_hf_config({**base, "index_topk_freq": 2,
                                   "indexer_types": ["full", "shared", "full", "shared"]})
    per_indexer = 32 * 2 * 8 + 64 * 8 + 2 * 8 + 64 * 2
    assert every.total - param_counts(shared).total == 2 * per_indexer
    assert shared.mla.indexer_layers == (True, False, True, False)
    with pytest.raises(SpecError, match=r"without a per-layer indexer_types list "
                                        r"\(index_topk_freq\) is not modelled"):
        model_from_hf_config({**base, "index_topk_freq": 2})


# --- sliding-window layers with their own attention shape (MiMo-V2-Flash) -----------------
@needs_configs
def test_mimo_v2_flash_309b_15b():
    """MiMo-V2-Flash technical report (arXiv 2601.02780, abstract): "309B total parameters and
    15B active parameters". hybrid_layer_pattern: 9 full-attention layers (4 KV heads) and 39
    sliding-window layers (W = 128, 8 KV heads, a per-head sink bias), q/k heads of 192, value
    heads of 128 (fused qkv 64 x 192 + kv x 192 + kv x 128, o_proj 64 x 128 -> 4096); layer 0
    dense (moe_layer_freq list), 47 MoE layers of 256 experts, top 8, no shared expert.
    By hand: embeddings 2 x 152576 x 4096 + final norm; attention full 4096 x 13568 + 8192 x
    4096, sliding 4096 x 14848 + 8192 x 4096 + 64; two norms per layer; dense MLP 3 x 4096 x
    16384; MoE 256 x 3 x 4096 x 2048 + router 4096 x 256 + bias 256."""
    spec = _load("XiaomiMiMo--MiMo-V2-Flash")
    c = param_counts(spec)
    h, v = 4096, 152576
    full, swa = h * 13568 + 8192 * h, h * 14848 + 8192 * h + 64
    moe = 256 * 3 * h * 2048 + h * 256 + 256
    by_hand = (2 * v * h + h + 9 * full + 39 * swa + 48 * 2 * h + 3 * h * 16384 + 47 * moe)
    assert c.total == by_hand == 308_778_780_864
    assert spec.layer_types.count("sliding_attention") == 39 and spec.num_moe_layers == 47
    assert spec.sliding_attention.num_kv_heads == 8 and spec.sliding_attention.attention_sinks
    assert not spec.attention_sinks and spec.value_head_dim == 128
    assert _rounds_to(c.total, 309e9, 1e9)
    assert _rounds_to(c.active, 15e9, 1e9) and _rounds_to(c.active - c.word_embedding, 15e9, 1e9)


def test_hybrid_layer_pattern_other_than_full_or_sliding_is_refused():
    with pytest.raises(SpecError, match=r"\(hybrid_layer_pattern\) is not modelled$"):
        model_from_hf_config(_tiny(hybrid_layer_pattern=[0, 2, 0, 1], sliding_window=8))


# --- NAS-style heterogeneous blocks (Llama-Nemotron block_configs) -------------------------
@needs_configs
def test_llama_nemotron_super_49b_nas_blocks():
    """https://huggingface.co/nvidia/Llama-3_3-Nemotron-Super-49B-v1 ("49B", Llama-Nemotron
    arXiv 2505.00949 "Super (49B)"; the name truncates). By hand from block_configs (DeciLM):
    49 attention blocks of 64 q / 8 KV heads of 128 (31 no_op), 80 SwiGLU MLPs of
    int(2/3 ffn_mult 8192) rounded up to 256, a norm before each present half."""
    spec = _load("nvidia--Llama-3_3-Nemotron-Super-49B-v1")
    c = param_counts(spec)
    data = json.loads((CONFIGS / "nvidia--Llama-3_3-Nemotron-Super-49B-v1_config.json")
                      .read_text())
    h, v = 8192, 128256
    by_hand = 2 * v * h + h
    for block in data["block_configs"]:
        if not block["attention"]["no_op"]:
            by_hand += h * (64 * 128 + 2 * 8 * 128) + 64 * 128 * h + h
        width = int(2 * block["ffn"]["ffn_mult"] * h / 3)
        width += -width % 256
        by_hand += 3 * h * width + h
    assert c.total == by_hand == 49_867_145_216
    assert c.total // 10**9 == 49
    assert spec.layer_types.count("none") == 31 and sorted(set(spec.ffn_layer_sizes)) == [
        2816, 5632, 7168, 14336, 17920, 28672]


def test_nas_blocks_run_their_own_widths():
    """Tiny NAS model: the forward pass's GEMM weights equal the blocks' projections."""
    from perfmodel import ops as O

    blocks = [{"attention": {"n_heads_in_group": 2}, "ffn": {"ffn_mult": 3.0}},
              {"attention": {"no_op": True}, "ffn": {"ffn_mult": 1.5}},
              {"attention": {"n_heads_in_group": 2}, "ffn": {"no_op": True}},
              {"attention": {"no_op": True}, "ffn": {"ffn_mult": 3.0}}]
    spec = model_from_hf_config(_tiny(block_configs=blocks, num_key_value_heads=...,
                                      intermediate_size=...))
    assert spec.ffn_layer_sizes[:2] == (256, 256) and spec.num_kv_heads == 2
    h = 64
    attn = h * (64 + 2 * 32) + 64 * h
    mlps = 3 * h * 256 * 2 + 3 * h * 256  # ffn_mult 1.5 -> 64 -> rounded up to 256
    c = param_counts(spec)
    assert c.total == 2 * attn + mlps + (2 + 3) * h + 2 * 100 * h + h
    ops = O.layer_forward_ops(spec, False, 1.0, 1.0, 1.0, 1.0, O.Shard(),
                              O.Precision.inference("bf16", "bf16", "bf16"))
    weights = sum(o.shape[1] * o.shape[2] * o.count for o in ops if o.cls == O.GEMM)
    assert weights * 4 == pytest.approx(2 * attn + mlps)


def test_nas_block_replaced_by_a_linear_layer_is_refused():
    blocks = [{"attention": {"replace_with_linear": True}, "ffn": {"ffn_mult": 1.0}}] * 4
    with pytest.raises(SpecError, match=r"NAS attention block with replace_with_linear "
                                        r"\(block_configs\) is not modelled$"):
        model_from_hf_config(_tiny(block_configs=blocks))


# --- Gemma 4: V = K on global layers, their own head size, MoE beside the dense MLP -------
@needs_configs
@pytest.mark.parametrize(("name", "total", "active"), [
    ("google--gemma-4-26B-A4B", 25.2e9, 3.8e9),
    ("nvidia--Gemma-4-26B-A4B-NVFP4", 25.2e9, 3.8e9),
    ("nvidia--Gemma-4-31B-IT-NVFP4", 30.7e9, 30.7e9),
])
def test_gemma4(name, total, active):
    """Gemma 4 model card (linked from https://ai.google.dev/gemma/docs/core; its size table
    as quoted at https://andysmith.ai/wiki/gemma-4-model-card/ and
    https://vast.ai/model/gemma-4-26b-a4b-it): 26B A4B "25.2B" total, "3.8B" active; 31B
    "30.7B" (the language model: ours excludes the ~550M vision encoder and matches). transformers Gemma4TextAttention: sliding layers q/k/v/o with
    head_dim 256 and num_key_value_heads; full layers heads of global_head_dim 512,
    num_global_key_value_heads and no v_proj (attention_k_eq_v); q_norm / k_norm per head,
    four norms per layer. 26B: every layer's dense MLP (2112) beside 128 experts of 704, top
    8; router h x E, its input scale h, per-expert scale E, three more norms."""
    spec = _load(name)
    c = param_counts(spec)
    h = spec.hidden_size
    assert spec.shared_kv_projection and not spec.sliding_attention.shared_kv_projection
    assert spec.head_dim == 512 and spec.sliding_attention.head_dim == 256
    nh = spec.num_heads
    kv_full, kv_slide = spec.num_kv_heads, spec.sliding_attention.num_kv_heads
    full = h * (nh * 512 + kv_full * 512) + nh * 512 * h + 2 * 512
    slide = h * (nh * 256 + 2 * kv_slide * 256) + nh * 256 * h + 2 * 256
    n_full = spec.layer_types.count("full_attention")
    layers = n_full * full + (spec.num_layers - n_full) * slide
    layers += spec.num_layers * (4 * h + 3 * h * spec.ffn_hidden_size)
    if spec.moe:
        e = spec.moe.num_experts
        layers += spec.num_layers * (e * 3 * h * 704 + h * e + h + e + 3 * h)
    assert c.total == layers + spec.vocab_size * h + h  # tied head
    assert _rounds_to(c.total, total, 1e8)
    assert _rounds_to(c.active, active, 1e8)


def test_shared_kv_projection_runs_no_v_gemm():
    """Gemma 4 26B: the full layers' fused projection is q + k only (16 x 512 + 2 x 512); the
    sliding layers' q + k + v (16 x 256 + 2 x 8 x 256); K and V are both cached."""
    from perfmodel import ops as O
    from perfmodel.memory import kv_cache_bytes_per_sequence

    if not CONFIGS.is_dir():
        pytest.skip("copied configs not present")
    spec = _load("google--gemma-4-26B-A4B")
    ops = O.layer_forward_ops(spec, True, 1.0, 1.0, 1.0, 1.0, O.Shard(),
                              O.Precision.inference("bf16", "bf16", "bf16"))
    assert sorted(o.shape[1] for o in ops if o.name == "attn.qkv") == [8192, 9216]
    # 5 full layers x 2 KV heads x (512 + 512) x 2 B x 2048 + 25 sliding x 8 x 512 x 2 x 1024
    assert float(kv_cache_bytes_per_sequence(spec, "bf16", 1, 2048.0)) == \
        5 * 2 * 1024 * 2 * 2048 + 25 * 8 * 512 * 2 * 1024


# --- MiniMax Sparse Attention (MiniMax-M3) -----------------------------------------------
@needs_configs
@pytest.mark.parametrize("name", ["MiniMaxAI--MiniMax-M3", "nvidia--MiniMax-M3-NVFP4"])
def test_minimax_m3_block_sparse(name):
    """https://huggingface.co/MiniMaxAI/MiniMax-M3: "~428B parameters and ~23B activated
    parameters" (approximate, and the total includes the vision tower, ~0.7B by its
    vision_config; ours is the language model, 426.17B: compared at two significant digits).
    Active without the embedding and LM head 23.50B (MiniMax prints "~23B"). Structure
    (vLLM MiniMaxM3SparseAttention): GQA 64 / 4 heads of 128 with per-head q/k norms; in the
    57 sparse layers the fused QKV also yields 4 index queries and one index key of 128
    (+ index_q_norm, index_k_norm); 3 dense layers of 12288, 57 MoE layers of 128 experts
    (3072, top 4) + one shared expert of 3072, router with a per-expert bias."""
    spec = _load(name)
    c = param_counts(spec)
    assert spec.block_sparse.topk == 16 * 128 and spec.block_sparse.layers.count(True) == 57
    assert spec.qk_norm == "per_head" and spec.ffn_hidden_size == 12288
    dense = spec.model_copy(update={"block_sparse": None})
    assert c.total - param_counts(dense).total == 57 * (6144 * 5 * 128 + 2 * 128)
    assert c.total == 426_174_572_928
    assert _rounds_to(c.total, 4.3e11, 1e10)
    assert (c.active - c.word_embedding - c.lm_head) // 10**9 == 23


# --- DeepSeek-V4 (compressed attention, hyper-connections, hash routing) ------------------
V4_FLASH = ["deepseek-ai--DeepSeek-V4-Flash", "nvidia--DeepSeek-V4-Flash-NVFP4",
            "sgl-project--DeepSeek-V4-Flash-FP8"]
V4_PRO = ["deepseek-ai--DeepSeek-V4-Pro", "nvidia--DeepSeek-V4-Pro-NVFP4",
          "sgl-project--DeepSeek-V4-Pro-FP8"]


@needs_configs
@pytest.mark.parametrize("name", V4_FLASH)
def test_deepseek_v4_flash_284b_13b(name):
    """https://huggingface.co/deepseek-ai/DeepSeek-V4-Flash: "284B total parameters (13B
    activated)". Shapes from DeepSeek's reference inference/model.py (Attention, Compressor,
    Indexer, Gate, Block): 43 layers, 2 window-only, 21 ratio-4 (overlapping compressor +
    indexer), 20 ratio-128; every layer MoE (256 x 2048, top 6, 1 shared), the first 3
    hash-routed; hyper-connections x4. The multi-token-prediction layer is not counted (as
    for V3). Active with the embedding 13.80B, without it 13.27B: the card's "13B"."""
    spec = _load(name)
    c = param_counts(spec)
    ca = spec.compressed_attention
    assert ca.ratios.count(0) == 2 and ca.ratios.count(4) == 21 and ca.ratios.count(128) == 20
    assert spec.hyper_connections == 4 and spec.moe.hash_layers == 3
    assert c.total == 284_334_567_511 and c.active == 13_801_959_511
    assert _rounds_to(c.total, 284e9, 1e9)
    assert (c.active - c.word_embedding) // 10**9 == 13


@needs_configs
@pytest.mark.parametrize("name", V4_PRO)
def test_deepseek_v4_pro_1_6t_49b(name):
    """https://huggingface.co/deepseek-ai/DeepSeek-V4-Pro: "1.6T total parameters (49B
    activated)": 61 layers, 384 experts of 3072, o_groups 16; ours 1.573T (1.6T at two
    digits), 49.78B active with the embedding, 48.85B without (both "49B")."""
    c = param_counts(_load(name))
    assert c.total == 1_572_999_528_803 and c.active == 49_781_408_099
    assert _rounds_to(c.total, 1.6e12, 1e11)
    assert _rounds_to(c.active - c.word_embedding, 49e9, 1e9)


@needs_configs
def test_deepseek_v4_parts_by_hand():
    """V4-Flash, each part from the reference's shapes (h 4096, 64 heads of 512, q_lora 1024,
    o_lora 1024 x 8 groups, indexer 64 x 128): a ratio-4 compressor ape 4 x 1024 + wkv/wgate
    2 x 4096 x 1024 + norm 512; a ratio-128 one 128 x 512 + 2 x 4096 x 512 + 512; the
    indexer wq_b 1024 x 8192 + weights_proj 4096 x 64 + its compressor 4 x 256 + 2 x 4096 x
    256 + 128; hyper-connections 2 x (24 x 16384 + 24 + 3) per layer and 4 x 16384 + 5 at
    the head; a hash layer's tid2eid 129280 x 6 instead of the 256 bias."""
    from perfmodel.parameters import (
        compressed_base_attention_params,
        compressed_layer_extra_params,
        hash_routing_adjustment,
        hyper_connection_head_params,
        hyper_connection_params,
    )

    spec = _load("deepseek-ai--DeepSeek-V4-Flash")
    c4 = 4 * 1024 + 2 * 4096 * 1024 + 512
    idx = 1024 * 8192 + 4096 * 64 + (4 * 256 + 2 * 4096 * 256 + 128)
    assert compressed_layer_extra_params(spec, 4) == c4 + idx
    assert compressed_layer_extra_params(spec, 128) == 128 * 512 + 2 * 4096 * 512 + 512
    assert compressed_layer_extra_params(spec, 0) == 0
    sharded, replicated = compressed_base_attention_params(spec)
    assert sharded == 1024 * 64 * 512 + 64 * 512 * 1024 + 8 * 1024 * 4096 + 64
    assert replicated == 4096 * 1024 + 1024 + 4096 * 512 + 512
    assert hyper_connection_params(spec) == 2 * (24 * 4 * 4096 + 24 + 3)
    assert hyper_connection_head_params(spec) == 4 * 4 * 4096 + 4 + 1
    assert hash_routing_adjustment(spec) == 3 * (129280 * 6 - 256)


@needs_configs
def test_deepseek_v4_cache_and_operators_by_hand():
    """KV per sequence (one K = V head of 512, bf16, 8192 tokens): every layer its window of
    128; ratio-4 layers 2048 entries + index keys of 128 + 4 B per token entry and fp32
    compressor state 2 x 8 x 1024 (+ 2 x 8 x 256 for the indexer's); ratio-128 layers 64
    entries + state 2 x 128 x 512. Decode attention reaches 128 + 512 (top-k) keys in a
    ratio-4 layer, 128 + 64 in a ratio-128 one; hyper-connections widen the residual add to
    4 copies."""
    from perfmodel import ops as O
    from perfmodel.memory import kv_cache_bytes_per_sequence, kv_growth_bytes_per_token

    spec = _load("deepseek-ai--DeepSeek-V4-Flash")
    win = 128 * 512 * 2
    r4 = win + 2048 * 512 * 2 + 2048 * 132 + 2 * 8 * 1024 * 4 + 2 * 8 * 256 * 4
    r128 = win + 64 * 512 * 2 + 2 * 128 * 512 * 4
    want = 2 * win + 21 * r4 + 20 * r128
    assert float(kv_cache_bytes_per_sequence(spec, "bf16", 8, 8192.0)) == want
    assert float(kv_growth_bytes_per_token(spec, "bf16")) == pytest.approx(
        21 * (1024 + 132) / 4 + 20 * 1024 / 128)
    prec = O.Precision.inference("bf16", "bf16", "bf16")
    ops = O.layer_forward_ops(spec, True, 1.0, 1.0, 8192.0, 8192.0, O.Shard(), prec,
                              attn_phase="decode")
    cores = [o for o in ops if o.name == "attn.core"]
    per_key = 4.0 * 512 * 64  # QK and PV over 512 per head, 64 heads
    shares = {0: 2 / 43, 4: 21 / 43, 128: 20 / 43}
    keys = {0: 128, 4: 128 + 512, 128: 128 + 64}
    assert sum(float(o.flops * o.count) for o in cores) == pytest.approx(
        sum(per_key * keys[r] * shares[r] for r in keys))
    residual = next(o for o in ops if o.name == "attn.residual")
    assert residual.shape == (4 * 4096,)


def test_compressed_attention_refusals():
    with pytest.raises(SpecError, match="grouped low-rank output projection without "
                                        "compressed attention"):
        model_from_hf_config(_tiny(o_lora_rank=8, o_groups=2))
    v4 = dict(compress_ratios=[0, 4], o_lora_rank=8, o_groups=2, q_lora_rank=8,
              qk_rope_head_dim=4, sliding_window=4, index_n_heads=2, index_head_dim=8,
              index_topk=4, num_key_value_heads=1)
    with pytest.raises(SpecError, match="'compress_ratios' needs one ratio >= 0"):
        model_from_hf_config(_tiny(**v4))


# --- Kimi K3 (Kimi delta attention, gated MLA, latent MoE with a norm, attention residuals) -
@needs_configs
def test_kimi_k3_2_8t_104b():
    """NVIDIA NeMo AutoModel's Kimi K3 page (docs.nvidia.com/nemo/automodel/model-coverage/
    large-language-models/moonshotai/kimi-k3): "2.8T total / 104B activated", 93 layers
    (69 KDA + 24 gated MLA). Shapes from its native implementation (nemo_automodel
    components/models/kimi_k3: KimiDeltaAttention, KimiMLAAttention with g_proj,
    KimiK3MoE with routed_expert_down_proj / up_proj / norm, KimiDecoderLayer's
    attention-residual norms and projections): 2,779,484,476,000; active 105.36B with the
    embedding, 104.19B without (the page's "104B"). The vision tower is not counted."""
    spec = _load("moonshotai--Kimi-K3")
    c = param_counts(spec)
    assert spec.layer_types.count("linear_attention") == 69
    assert spec.layer_types[3] == "full_attention" and spec.layer_types[-1] == "full_attention"
    assert spec.linear_attention.kind == "kda" and spec.attention_output_gate
    assert spec.moe.latent_size == 3584 and spec.moe.latent_norm
    assert spec.attention_residual_block == 12
    assert c.total == 2_779_484_476_000 and c.active == 105_364_017_760
    assert _rounds_to(c.total, 2.8e12, 1e11)
    assert (c.active - c.word_embedding) // 10**9 == 104


@needs_configs
def test_kimi_k3_kda_by_hand():
    """One KDA mixer (96 heads of 128, h 7168, conv 4, full-rank gate): q, k, v 3 x 7168 x
    12288, convs 3 x 12288 x 4, A_log 96, dt_bias 12288, f_a 7168 x 128, f_b 128 x 12288,
    b_proj 7168 x 96, g_proj 7168 x 12288, o_norm 128, o_proj 12288 x 7168; its state per
    sequence 96 x 128 x 128 + the conv's 3 inputs of 3 x 12288 channels, bf16."""
    from perfmodel.attention_variants import linear_state_bytes
    from perfmodel.parameters import linear_attention_params

    spec = _load("moonshotai--Kimi-K3")
    p = 12288
    assert linear_attention_params(spec) == (3 * 7168 * p + 3 * p * 4 + 96 + p + 7168 * 128
                                             + 128 * p + 7168 * 96 + 7168 * p + 128 + p * 7168)
    assert float(linear_state_bytes(spec)) == (96 * 128 * 128 + 3 * 3 * p) * 2.0


@needs_configs
def test_wider_residual_streams():
    """A pipeline stage passes on hyper-connections' 4 copies (DeepSeek-V4) and, with block
    attention residuals (Kimi K3, B = 12 over 93 layers), the stored blocks and the partial
    sum: mean over layers of i // 12 + 2 = 5.87; each sublayer's mix reads that many."""
    from perfmodel.ops import attention_residual_sources, residual_stream_width

    assert residual_stream_width(_load("deepseek-ai--DeepSeek-V4-Flash")) == 4.0
    k3 = _load("moonshotai--Kimi-K3")
    assert attention_residual_sources(k3) == pytest.approx(sum(i // 12 + 2 for i in range(93))
                                                           / 93)
    assert residual_stream_width(k3) == attention_residual_sources(k3)
    assert residual_stream_width(_load("deepseek-ai--DeepSeek-V3")) == 1.0


def test_a_model_type_never_seen_says_it_is_read_by_structure_alone():
    """Qwen3-0.6B's config under an unknown model_type imports by structure, but without
    Qwen3's per-head q/k norms (a fact of qwen3's modeling file, no config key): 28 layers x
    2 norms x head_dim 128 = 7,168 parameters fewer, and the model's notes say why."""
    import json
    from pathlib import Path

    from perfmodel.parameters import param_counts
    from perfmodel.zoo.hf import model_from_hf_config

    path = Path(__file__).parent / "data/hf_configs/aiconfigurator-0.12.0/" \
        "Qwen--Qwen3-0.6B_config.json"
    config = json.loads(path.read_text())
    known = model_from_hf_config(config)
    renamed = model_from_hf_config({**config, "model_type": "mamba9"})
    assert not (known.notes or "").count("new to perfmodel")
    assert "model_type 'mamba9' is new to perfmodel: read by structure alone" in renamed.notes
    assert param_counts(known).total - param_counts(renamed).total == 28 * 2 * 128
