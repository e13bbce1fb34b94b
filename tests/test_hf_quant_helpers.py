"""Direct tests of perfmodel.zoo.hf_quant's helpers, each against numbers worked out by hand
in the test (never recomputed by the code under test): the weight class a module name
covers, the format a quantization_config names, which classes a not-convert / ignore /
exclude_modules list keeps unquantised, the KV-cache format, the attention projections an
exclusion names, and the bytes of checkpoints in NVFP4 (e2m1 + an e4m3 scale per 16 + an
fp32 scale per tensor), MXFP4 (e2m1 + an e8m0 scale per 32) and fp8 with 128 x 128 fp32
block scales."""

from __future__ import annotations

import pytest

from perfmodel.formats import model_weight_bytes
from perfmodel.parameters import param_counts
from perfmodel.zoo import model_from_hf_config
from perfmodel.zoo.hf_quant import (
    WHOLE,
    _excluded_classes,
    _module_class,
    _quantized_dtype,
    checkpoint_formats,
    excluded_attention_projections,
    kv_cache_format,
    resolve_attention_split,
)

# A small Llama whose widths are multiples of 128 (so 128 x 128 blocks tile every matrix):
# per layer q_proj 2048 x 2048 = 4,194,304, k_proj / v_proj 2048 x 512 = 1,048,576 each,
# o_proj 4,194,304 (attention 10,485,760); gate / up / down 2048 x 7168 = 14,680,064 each
# (MLP 44,040,192); 2 RMSNorms of 2048. Two layers: 109,051,904 linear weights in 14
# tensors; norms 2 x 2 x 2048 + the final 2048 = 10,240; embedding and LM head
# 32000 x 2048 = 65,536,000 each.
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 2048,
         "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 128,
         "intermediate_size": 7168, "vocab_size": 32000}
LINEAR, NORMS, EMBED = 109_051_904, 10_240, 65_536_000


def _bytes(config: dict) -> float:
    model = model_from_hf_config(config)
    formats = dict(model.checkpoint_formats)
    return model_weight_bytes(param_counts(model), formats.pop("default"), formats)


def test_the_small_llama_has_the_shapes_counted_by_hand():
    pc = param_counts(model_from_hf_config(LLAMA))
    assert (pc.attention, pc.dense_mlp) == (10_485_760, 44_040_192)
    assert pc.total == LINEAR + NORMS + 2 * EMBED == 240_134_144


# --- _module_class: the weight class a module name (or glob / regex) covers -----------------
@pytest.mark.parametrize(("name", "cls"), [
    ("lm_head", "lm_head"),
    ("model.embed_tokens", "embeddings"),
    ("transformer.wte", "embeddings"),
    ("backbone.embeddings", "embeddings"),
    ("head", "lm_head"),  # DeepSeek-V4's bare names
    ("embed", "embeddings"),
    ("model.layers.*.self_attn", "attention"),
    ("model.layers.3.self_attn.o_proj", "attention"),
    ("model.layers.*.self_attn.q_a_proj", "mla"),
    ("model.layers.*.self_attn.kv_a_proj_with_mqa", "mla"),
    ("model.layers.*.self_attn.indexer.wk", "mla"),
    ("model.layers.*.mlp.gate", "router"),  # a MoE block's gate module is its router
    ("model.layers.*.block_sparse_moe.gate", "router"),
    ("model.layers.*.mlp.router", "router"),
    ("backbone.layers.*.mixer.gate", "router"),
    ("model.layers.*.mlp.shared_expert_gate", "router"),
    ("model.layers.0.mlp.gate_proj", "mlp"),  # a dense MLP's gate is gate_proj
    ("model.layers.*.mlp.shared_expert.down_proj", "shared_experts"),
    ("model.layers.*.mlp.shared_experts.up_proj", "shared_experts"),
    ("model.layers.5.mlp.experts.7.down_proj", "experts"),
    ("backbone.layers.*.mixer.in_proj", "attention"),  # Nemotron-H Mamba projections
    (".*mlp.(gate|up|gate_up|down)_proj.*", "mlp"),  # Kimi K3's ignore regex, dots literal
    ("model.norm", None),
])
def test_module_class(name, cls):
    assert _module_class(name) == cls


# --- _quantized_dtype: the format a quantization_config names, and its not-convert list -----
@pytest.mark.parametrize(("q", "dtype"), [
    ({"quant_method": "mxfp4"}, "mxfp4"),
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8_block"),
    ({"quant_method": "fp8"}, "fp8"),
    ({"quant_method": "fbgemm_fp8"}, "fp8"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4"),
    ({"quant_algo": "FP8_BLOCK_SCALES"}, "fp8_block"),
    ({"quant_algo": "W4A8_MXFP4_FP8"}, "mxfp4"),
    ({"quant_algo": "W4A16_AWQ"}, "int4"),
    ({"quant_method": "awq", "bits": 4}, "int4"),
    ({"quant_method": "gptq", "bits": 8}, "int8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 8, "type": "float", "strategy": "block"}}}}, "fp8_block"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 8, "type": "float", "strategy": "channel"}}}}, "fp8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 4, "type": "float", "group_size": 16}}}}, "nvfp4"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 4, "type": "float", "group_size": 32}}}}, "mxfp4"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 4, "type": "int"}}}}, "int4"),
    ({"quant_method": "bitsandbytes"}, None),  # not a method this module knows
    ({"quant_algo": "NOT_AN_ALGO"}, None),
])
def test_quantized_dtype(q, dtype):
    assert _quantized_dtype(q)[0] == dtype


@pytest.mark.parametrize("key", ["modules_to_not_convert", "ignored_layers", "ignore",
                                 "exclude_modules"])
def test_every_spelling_of_the_not_convert_list_is_read(key):
    assert _quantized_dtype({"quant_method": "fp8", key: ["lm_head"]}) == ("fp8", ["lm_head"])


# --- _excluded_classes: a class is kept when the list covers it in every / most layers ------
def test_wildcard_and_unnumbered_names_exclude_their_class():
    """(A whole attention module also holds the replicated MLA projections: the ``mla`` class
    is added once the model is known, resolve_attention_split.)"""
    names = ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
             "lm_head"]  # gpt-oss modules_to_not_convert
    assert _excluded_classes(names, 36) == {"attention", "router", "embeddings", "lm_head"}
    assert _excluded_classes(["re:.*self_attn.*"], 61) == {"attention"}


def test_a_few_layers_do_not_exclude_the_class_half_of_them_do():
    """Per-layer names count by layer: a class goes when they name it in at least half of
    the layers (2 x named >= layers). Of 126 layers: the first and last blocks (2) do not,
    63 do, 62 do not."""
    def attn(layers):
        return [f"model.layers.{i}.self_attn.{p}" for i in layers for p in ("q_proj", "o_proj")]

    assert _excluded_classes(attn([0, 125]), 126) == set()
    assert _excluded_classes(attn(range(63)), 126) == {"attention"}
    assert _excluded_classes(attn(range(62)), 126) == set()


def test_norms_conv1d_and_non_strings_are_not_linears():
    names = ["model.layers.0.input_layernorm", "model.norm", "backbone.layers.*.mixer.conv1d",
             7, None]
    assert _excluded_classes(names, 1) == set()


# --- checkpoint_formats: what each class is stored in -----------------------------------------
def test_an_exclude_modules_list_keeps_its_classes_at_the_checkpoint_dtype():
    """A ModelOpt NVFP4 descriptor excluding lm_head and every layer's router: those stay bf16;
    embeddings are bf16 whatever the list says (no nn.Linear)."""
    moe = {**LLAMA, "model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2,
           "moe_intermediate_size": 768}
    descriptor = {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8",
                                   "exclude_modules": ["lm_head", "model.layers.*.mlp.gate"]}}
    assert checkpoint_formats(moe, descriptor) == {
        "default": "nvfp4", "embeddings": "bf16", "lm_head": "bf16", "router": "bf16"}


def test_an_ignore_list_of_regexes():
    """compressed-tensors ``ignore`` with ``re:`` patterns (Kimi K3's): attention, shared
    experts, dense MLPs and the LM head stay bf16, the routed experts MXFP4 (group 32)."""
    q = {"quant_method": "compressed-tensors", "format": "mxfp4-pack-quantized",
         "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float",
                                                   "group_size": 32}}},
         "ignore": ["re:.*self_attn.*", "re:.*shared_experts.*",
                    "re:.*mlp\\.(gate|up|gate_up|down)_proj.*", "re:.*lm_head.*"]}
    moe = {**LLAMA, "model_type": "deepseek_v3", "n_routed_experts": 8,
           "quantization_config": q}
    assert checkpoint_formats(moe) == {
        "default": "mxfp4", "attention": "bf16", "embeddings": "bf16", "lm_head": "bf16",
        "mlp": "bf16", "shared_experts": "bf16"}


def test_first_and_last_blocks_excluded_keep_the_quantised_format():
    """fbgemm_fp8 with the projections of the first and last of 8 blocks and lm_head not
    converted (as Meta-Llama-3.1-405B-Instruct-FP8 keeps its first and last blocks): the
    classes stay fp8 (2 of 8 layers is not half; per class, not per layer), the LM head bf16."""
    names = [f"model.layers.{i}.{p}" for i in (0, 7)
             for p in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj")]
    config = {**LLAMA, "num_hidden_layers": 8,
              "quantization_config": {"quant_method": "fbgemm_fp8",
                                      "modules_to_not_convert": [*names, "lm_head"]}}
    assert checkpoint_formats(config) == {"default": "fp8", "embeddings": "bf16",
                                          "lm_head": "bf16"}


def test_a_descriptor_is_applied_to_the_configs_own_format():
    """A ModelOpt descriptor beside a config.json that is itself fp8 128 x 128
    (DeepSeek-V4-*-NVFP4): the attention it excludes stays fp8_block, not bf16; the LM head
    it excludes stays bf16 (the base checkpoint's head is never quantised: transformers
    get_keys_to_not_convert), as a MIXED_PRECISION descriptor's does. It was put at the
    config's fp8_block before."""
    config = {**LLAMA, "quantization_config": {"quant_method": "fp8",
                                               "weight_block_size": [128, 128]}}
    descriptor = {"quantization": {"quant_algo": "NVFP4",
                                   "exclude_modules": ["model.layers.*.self_attn*", "lm_head"]}}
    assert checkpoint_formats(config, descriptor) == {
        "default": "nvfp4", "attention": "fp8_block", "embeddings": "bf16", "lm_head": "bf16"}
    # the same over an MLA model: its replicated down-projections stay fp8_block with the
    # rest of self_attn (resolve_attention_split on import)
    mla = {**MLA, "quantization_config": config["quantization_config"]}
    assert model_from_hf_config(mla, quant=descriptor).checkpoint_formats == {
        "default": "nvfp4", "attention": "fp8_block", "mla": "fp8_block", "embeddings": "bf16",
        "lm_head": "bf16"}
    assert checkpoint_formats(LLAMA) is None  # no quantization_config, no descriptor


# --- kv_cache_format ------------------------------------------------------------------------
@pytest.mark.parametrize(("config", "descriptor", "kv"), [
    ({}, {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}}, "fp8"),
    ({}, {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "NVFP4"}}, "nvfp4"),
    ({"quantization_config": {"quant_method": "compressed-tensors",
                              "kv_cache_scheme": {"num_bits": 8, "type": "int"}}}, None, "int8"),
    ({"quantization_config": {"quant_method": "compressed-tensors",
                              "kv_cache_scheme": {"num_bits": 8, "type": "float"}}}, None, "fp8"),
    # the descriptor says how the checkpoint is quantised: its null wins over the config's
    ({"quantization_config": {"quant_method": "modelopt", "kv_cache_quant_algo": "FP8"}},
     {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None}}, None),
    ({"quantization_config": {"quant_method": "fp8"}}, None, None),
])
def test_kv_cache_format(config, descriptor, kv):
    assert kv_cache_format(config, descriptor) == kv


# --- excluded_attention_projections / resolve_attention_split ---------------------------------
# A small MLA (DeepSeek-V3 layout): hidden 1024, 8 heads, q_lora 256, kv_lora 128, nope 64,
# rope 32, v 64. By module: q_b_proj 256 x 8 x 96 = 196,608, kv_b_proj 128 x 8 x (64 + 64)
# = 131,072, o_proj 8 x 64 x 1024 = 524,288: 851,968 weights in the attention class.
MLA = {"model_type": "deepseek_v3", "num_hidden_layers": 4, "hidden_size": 1024,
       "num_attention_heads": 8, "q_lora_rank": 256, "kv_lora_rank": 128,
       "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
       "intermediate_size": 2048, "vocab_size": 1000}


def test_projections_an_exclusion_names_one_by_one():
    one_by_one = {"quantization": {"quant_algo": "NVFP4", "exclude_modules": [
        "model.layers.*.self_attn.q_a_proj", "model.layers.*.self_attn.q_b_proj",
        "model.layers.*.self_attn.kv_b_proj*", "lm_head"]}}
    assert excluded_attention_projections(MLA, one_by_one) == {"q_a_proj", "q_b_proj",
                                                                "kv_b_proj"}
    for pattern in ("model.layers.*.self_attn", "model.layers.*.self_attn*",
                    "re:.*self_attn.*"):
        whole = {"quantization": {"quant_algo": "NVFP4", "exclude_modules": [pattern]}}
        assert excluded_attention_projections(MLA, whole) == {WHOLE}
    # named in all 4 layers one by one (Kimi-K2.5-NVFP4's spelling): the whole module too;
    # in 1 of 4: not at all (the layer rule of _excluded_classes)
    per_layer = {"quantization": {"quant_algo": "NVFP4", "exclude_modules": [
        f"model.layers.{i}.self_attn*" for i in range(4)]}}
    assert excluded_attention_projections(MLA, per_layer) == {WHOLE}
    one_layer = {"quantization": {"quant_algo": "NVFP4",
                                  "exclude_modules": ["model.layers.0.self_attn*"]}}
    assert excluded_attention_projections(MLA, one_layer) is None
    # a module this module cannot weigh (Nemotron-H's Mamba in_proj): the class decision stands
    mamba = {"quantization": {"quant_algo": "NVFP4", "exclude_modules": [
        "backbone.layers.*.mixer.in_proj", "backbone.layers.*.mixer.q_proj"]}}
    assert excluded_attention_projections(MLA, mamba) is None
    mixed = {"quantization": {"quant_algo": "MIXED_PRECISION", "exclude_modules": [
        "model.layers.*.self_attn.q_b_proj"]}}
    assert excluded_attention_projections(MLA, mixed) is None
    assert excluded_attention_projections(MLA, {"quantization": {"quant_algo": "FP8"}}) is None


def test_the_attention_class_takes_the_format_of_its_larger_share():
    """q_b + kv_b kept: 327,680 of 851,968 (38 %), the class is quantised; o_proj kept:
    524,288 (62 %), it stays bf16; kv_b alone: 131,072 (15 %), quantised."""
    spec = model_from_hf_config(MLA)
    formats = {"default": "nvfp4", "attention": "bf16"}
    assert resolve_attention_split(formats, {"q_b_proj", "kv_b_proj"}, spec) == {
        "default": "nvfp4"}
    assert resolve_attention_split(formats, {"o_proj"}, spec) == formats
    assert resolve_attention_split(formats, {"kv_b_proj"}, spec) == {"default": "nvfp4"}
    # a name the model has no module for: nothing can be weighed, the class stays excluded
    assert resolve_attention_split(formats, {"k_proj"}, spec) == formats
    # the replicated class weighed the same way: q_a_proj 1024 x 256 = 262,144 and
    # kv_a_proj_with_mqa 1024 x (128 + 32) = 163,840 of 426,368 (with the two RMSNorms 256
    # + 128): kv_a alone 38 %, quantised; both 99.9 %, kept
    formats = {"default": "nvfp4", "attention": "bf16", "mla": "bf16"}
    assert resolve_attention_split(formats, {"kv_a_proj_with_mqa"}, spec) == {
        "default": "nvfp4"}
    assert resolve_attention_split(formats, {"q_a_proj", "kv_a_proj_with_mqa"}, spec) == {
        "default": "nvfp4", "mla": "bf16"}
    assert resolve_attention_split(formats, {WHOLE}, spec) == formats
    # a whole-module pattern puts the replicated class at the attention class's format
    assert resolve_attention_split({"default": "nvfp4", "attention": "bf16"}, {WHOLE},
                                   spec) == formats
    # imported end to end: the same decision from the descriptor's list
    one_by_one = {"quantization": {"quant_algo": "NVFP4", "exclude_modules": [
        "model.layers.*.self_attn.q_b_proj", "model.layers.*.self_attn.kv_b_proj", "lm_head"]}}
    imported = model_from_hf_config(MLA, quant=one_by_one)
    assert imported.checkpoint_formats == {"default": "nvfp4", "embeddings": "bf16",
                                           "lm_head": "bf16"}


# --- bytes of each format, by hand ------------------------------------------------------------
def test_nvfp4_checkpoint_bytes_by_hand():
    """ModelOpt NVFP4 (lm_head excluded) of the small Llama. The 109,051,904 linear weights:
    e2m1 at 4 bits = 54,525,952 B, one e4m3 scale per 16 = 6,815,744 B, together 61,341,696 B;
    the fp32 global scale per tensor (14 x 4 = 56 B) is not counted (formats: under 1e-6 of
    the bytes). Embedding and LM head bf16: 2 x 65,536,000 x 2 B = 262,144,000 B. The 10,240
    norm scales follow the default format (formats.py), 10,240 x 9 / 16 = 5,760 B."""
    config = {**LLAMA, "quantization_config": {"quant_method": "modelopt",
                                               "quant_algo": "NVFP4",
                                               "exclude_modules": ["lm_head"]}}
    assert _bytes(config) == 61_341_696 + 262_144_000 + 5_760
    with_global_scales = 61_341_696 + 56 + 262_144_000 + 5_760
    assert _bytes(config) == pytest.approx(with_global_scales, rel=1e-6)


def test_mxfp4_experts_bytes_by_hand():
    """gpt-oss-style MXFP4 of a small Mixtral (2 layers, hidden 2048, 4 experts of 1024):
    experts 2 x 4 x 3 x 2048 x 1024 = 50,331,648 weights, e2m1 25,165,824 B + one e8m0 byte
    per 32 = 1,572,864 B: 26,738,688 B. Attention (modules_to_not_convert) bf16:
    2 x 10,485,760 x 2 B = 41,943,040 B; routers 2 x 2048 x 4 = 16,384 weights bf16 =
    32,768 B; embedding and LM head 262,144,000 B; norms 10,240 x 17 / 32 = 5,440 B."""
    config = {**LLAMA, "model_type": "mixtral", "intermediate_size": 1024,
              "num_local_experts": 4, "num_experts_per_tok": 2,
              "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
                  "model.layers.*.self_attn", "model.layers.*.block_sparse_moe.gate",
                  "model.embed_tokens", "lm_head"]}}
    assert model_from_hf_config(config).checkpoint_formats == {
        "default": "mxfp4", "attention": "bf16", "embeddings": "bf16", "lm_head": "bf16",
        "router": "bf16"}
    assert _bytes(config) == 26_738_688 + 41_943_040 + 32_768 + 262_144_000 + 5_440


def test_fp8_block_scales_bytes_by_hand():
    """fp8 with 128 x 128 blocks (DeepSeek-V3 Sec. 3.3.2: one fp32 scale per block) of the
    small Llama. Blocks per layer: q_proj 16 x 16 = 256, k_proj and v_proj 16 x 4 = 64 each,
    o_proj 256, gate / up / down 16 x 56 = 896 each: 3,328; two layers 6,656 scales x 4 B =
    26,624 B beside 109,051,904 B of e4m3 weights. lm_head not converted, embedding and LM
    head bf16 262,144,000 B; norms follow the default, 10,240 x (1 + 4 / 16384) = 10,242.5 B."""
    config = {**LLAMA, "quantization_config": {"quant_method": "fp8",
                                               "weight_block_size": [128, 128],
                                               "modules_to_not_convert": ["lm_head"]}}
    assert _bytes(config) == 109_051_904 + 26_624 + 262_144_000 + 10_242.5


def test_a_whole_attention_exclusion_keeps_the_mla_down_projections_bf16():
    """ModelOpt NVFP4 of the small MLA with ``model.layers.*.self_attn*`` excluded (as
    nvidia/Kimi-K2.5-NVFP4, GLM-5.1-NVFP4): every module under self_attn stays bf16, the
    replicated ones too. Per layer q_a_proj 1024 x 256 = 262,144, kv_a_proj_with_mqa
    1024 x (128 + 32) = 163,840, their RMSNorms 256 + 128: 426,368; 4 layers 1,705,472
    weights at 2 B = 3,410,944 B, where NVFP4 would hold them in 0.5 + 1/16 B = 959,328 B:
    2,451,616 B more."""
    config = {**MLA, "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
                                             "exclude_modules": ["model.layers.*.self_attn*",
                                                                 "lm_head"]}}
    model = model_from_hf_config(config)
    assert model.checkpoint_formats == {"default": "nvfp4", "attention": "bf16",
                                        "mla": "bf16", "embeddings": "bf16", "lm_head": "bf16"}
    quantised = {c: d for c, d in model.checkpoint_formats.items() if c != "mla"}
    pc = param_counts(model)
    fm, fq = dict(model.checkpoint_formats), dict(quantised)
    assert (model_weight_bytes(pc, fm.pop("default"), fm)
            - model_weight_bytes(pc, fq.pop("default"), fq)) == 3_410_944 - 959_328


def test_gptq_lm_head_true_quantises_the_head():
    """GPTQModel's ``lm_head: true`` (BaseQuantizeConfig.lm_head) quantises the LM head; the
    default (absent / false) keeps it bf16; the embeddings stay bf16 either way."""
    from perfmodel.zoo.hf_quant import checkpoint_formats

    cfg = {"num_hidden_layers": 2,
           "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}}
    assert checkpoint_formats(cfg) == {"default": "int4", "embeddings": "bf16",
                                       "lm_head": "bf16"}
    cfg["quantization_config"]["lm_head"] = True
    assert checkpoint_formats(cfg) == {"default": "int4", "embeddings": "bf16",
                                       "lm_head": "int4"}
