"""QA 1205d D5: a Qwen3-Next config.json (model_type qwen3_next) names no layer_types; its
layer pattern is full_attention_interval's (transformers Qwen3NextConfig.__post_init__: layer
i is full attention when (i + 1) % interval == 0), and its full-attention layers have the
per-head q/k norms and the gated query projection of Qwen3NextAttention, without config keys."""
import pytest

from perfmodel.errors import SpecError
from perfmodel.parameters import param_counts
from perfmodel.zoo import model_from_hf_config

# Qwen/Qwen3-Next-80B-A3B-Instruct config.json shape keys (the same as transformers
# Qwen3NextConfig's defaults, which its docstring says are Qwen3-Next-80B-A3B's)
QWEN3_NEXT_80B = {
    "architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next",
    "hidden_size": 2048, "num_hidden_layers": 48, "vocab_size": 151936, "head_dim": 256,
    "num_attention_heads": 16, "num_key_value_heads": 2, "intermediate_size": 5120,
    "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512, "decoder_sparse_step": 1, "norm_topk_prob": True,
    "mlp_only_layers": [], "linear_num_key_heads": 16, "linear_key_head_dim": 128,
    "linear_num_value_heads": 32, "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4,
    "full_attention_interval": 4, "hidden_act": "silu", "rms_norm_eps": 1e-06,
    "rope_theta": 10000000, "partial_rotary_factor": 0.25, "max_position_embeddings": 262144,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "attention_bias": False,
}


def test_qwen3_next_80b_reads_its_hybrid_pattern_and_published_size():
    """Model card (https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct): 80B parameters in
    total, 79B without the embeddings, 3B activated; 3 gated-delta-net layers per gated
    full-attention layer."""
    spec = model_from_hf_config(QWEN3_NEXT_80B)
    assert spec.layer_types == (("linear_attention",) * 3 + ("full_attention",)) * 12
    assert spec.qk_norm == "per_head" and spec.attention_output_gate
    assert spec.linear_attention.kind == "gated_delta_net"
    c = param_counts(spec)
    embeddings = 2 * 151936 * 2048
    assert round(c.total / 1e9) == 80 and round((c.total - embeddings) / 1e9) == 79
    assert round((c.active - embeddings) / 1e9) == 3


def test_the_interval_reads_as_the_explicit_list_would():
    base = {"model_type": "brand_new", "num_hidden_layers": 6, "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": False,
            "linear_num_key_heads": 2, "linear_key_head_dim": 8, "linear_num_value_heads": 4,
            "linear_value_head_dim": 8, "linear_conv_kernel_dim": 4}
    by_interval = model_from_hf_config(base | {"full_attention_interval": 3})
    listed = model_from_hf_config(base | {"layer_types": ["linear_attention"] * 2
                                          + ["full_attention"] + ["linear_attention"] * 2
                                          + ["full_attention"]})
    assert by_interval.layer_types == listed.layer_types
    assert param_counts(by_interval).total == param_counts(listed).total
    # a model type that implies no gate or q/k norm keeps none
    assert not by_interval.attention_output_gate and by_interval.qk_norm == "none"


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_a_bad_interval_names_the_key(bad):
    with pytest.raises(SpecError, match="full_attention_interval"):
        model_from_hf_config(QWEN3_NEXT_80B | {"full_attention_interval": bad})
