"""HF import with the checkpoint's ModelOpt hf_quant_config.json (perfmodel.zoo.hf_quant):
number formats per tensor class and the KV-cache format, from the 28 descriptors of the
aiconfigurator-core 0.12.0 model_configs/ (copied in tests/data/hf_configs/aiconfigurator-0.12.0,
each beside the config.json of the same ``<org>--<name>`` prefix)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perfmodel.errors import SpecError
from perfmodel.formats import model_weight_bytes
from perfmodel.parameters import attention_projections, param_counts
from perfmodel.zoo import load_hf_config, resolve_model
from perfmodel.zoo.hf_quant import resolve_attention_split

HF = Path(__file__).parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
DESCRIPTORS = sorted(HF.glob("*_hf_quant_config.json"))


def _pair(descriptor: Path) -> Path:
    return descriptor.with_name(descriptor.name.replace("_hf_quant_config.json", "_config.json"))


def _bytes(model, formats=None) -> float:
    fm = dict(formats if formats is not None else model.checkpoint_formats)
    return model_weight_bytes(param_counts(model), fm.pop("default"), fm)


def test_all_28_descriptors_have_their_architecture_config():
    assert len(DESCRIPTORS) == 28
    assert all(_pair(d).is_file() for d in DESCRIPTORS)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda p: p.name.split("_hf")[0])
def test_each_descriptor_imports_with_its_config(descriptor):
    q = json.loads(descriptor.read_text())["quantization"]
    model = load_hf_config(_pair(descriptor), quant=descriptor)
    fm = model.checkpoint_formats
    # beside the config, the same descriptor is found without being named
    assert load_hf_config(_pair(descriptor)).checkpoint_formats == fm
    algo = q["quant_algo"]
    quantised = {"FP8": "fp8", "NVFP4": "nvfp4"}
    if algo in quantised:
        assert fm["default"] == quantised[algo]
    else:  # MIXED_PRECISION: listed classes at their algorithm, the rest at the base
        assert algo == "MIXED_PRECISION"
        assert "nvfp4" in fm.values()
    assert fm["embeddings"] == "bf16"
    kv = {"FP8": "fp8", None: None}[q.get("kv_cache_quant_algo")]
    assert model.checkpoint_kv_dtype == kv
    # every tensor at its own format: less than the bf16 checkpoint, more than all-fp4
    assert _bytes(model, {"default": "nvfp4"}) <= _bytes(model) < _bytes(model, {"default": "bf16"})


def test_excluded_modules_stay_at_the_checkpoint_dtype():
    # DeepSeek-V3.1-NVFP4 excludes every layer's q_a / kv_a / q_b / kv_b projections and lm_head:
    # the MLA down-projections (class mla) stay bf16; of the attention class it keeps q_b / kv_b
    # (1536 x 128 x 192 + 512 x 128 x 256 = 54.5M of 171.9M weights per layer) bf16 and
    # quantises o_proj (128 x 128 x 7168 = 117.4M, 68 %): the class takes the larger share
    model = load_hf_config(HF / "nvidia--DeepSeek-V3.1-NVFP4_config.json")
    assert model.checkpoint_formats == {"default": "nvfp4", "mla": "bf16",
                                        "embeddings": "bf16", "lm_head": "bf16"}
    sharded, replicated = attention_projections(model)
    assert sharded == {
        "q_b_proj": 1536 * 128 * 192, "kv_b_proj": 512 * 128 * 256, "o_proj": 128 * 128 * 7168}
    # the down-projections and their norms are the mla class, not the attention class
    assert replicated == {"q_a_proj": 7168 * 1536, "q_a_layernorm": 1536,
                          "kv_a_proj_with_mqa": 7168 * (512 + 64), "kv_a_layernorm": 512}
    # GLM-5-NVFP4 excludes o_proj too: the whole class stays bf16
    glm = load_hf_config(HF / "nvidia--GLM-5-NVFP4_config.json")
    assert glm.checkpoint_formats["attention"] == "bf16"
    # DeepSeek-V4-Flash-NVFP4 (MIXED_PRECISION, experts only) is applied to an fp8 128x128
    # checkpoint (its config.json quant_method fp8, weight_block_size [128, 128]): the
    # excluded attention and shared experts stay fp8_block, the head bf16
    v4 = load_hf_config(HF / "nvidia--DeepSeek-V4-Flash-NVFP4_config.json")
    assert v4.checkpoint_formats == {"default": "fp8_block", "experts": "nvfp4",
                                     "embeddings": "bf16", "lm_head": "bf16"}


def test_kimi_k3_output_gate_is_part_of_the_attention_class():
    """Kimi K3's MLA has an output gate g_proj (hidden 7168 -> 96 heads x v_head_dim 128,
    ``mla_use_output_gate``) beside q_b / kv_b / o_proj: per layer 1536 x 96 x 192 =
    28,311,552 + 512 x 96 x 256 = 12,582,912 + 2 x 96 x 128 x 7168 = 2 x 88,080,384, i.e.
    217,055,232 weights, the attention class of param_counts. The split by module once left
    g_proj out (128,974,848), so an exclusion of o_proj alone weighed 68 % of the class
    instead of its 41 %."""
    model = load_hf_config(HF / "moonshotai--Kimi-K3_config.json")
    sharded, _ = attention_projections(model)
    assert sharded == {"q_b_proj": 28_311_552, "kv_b_proj": 12_582_912,
                       "o_proj": 88_080_384, "g_proj": 88_080_384}
    assert param_counts(model).attention == 217_055_232
    formats = {"default": "nvfp4", "attention": "bf16"}
    # o_proj kept (41 %): the class takes the quantised format of the larger share
    assert resolve_attention_split(formats, {"o_proj"}, model) == {"default": "nvfp4"}
    # o_proj and g_proj kept (81 %): the class stays bf16
    assert resolve_attention_split(formats, {"o_proj", "g_proj"}, model) == formats


def test_mixed_precision_per_projection_formats():
    # Qwen3.6-35B-A3B-NVFP4 quantized_layers: linear_attn in_proj_qkv / in_proj_z / out_proj and
    # self_attn q/k/v/o FP8; routed experts, shared expert and lm_head W4A16_NVFP4; nothing
    # else listed (embeddings, router, norms stay bf16)
    model = load_hf_config(HF / "nvidia--Qwen3.6-35B-A3B-NVFP4_config.json")
    assert model.checkpoint_formats == {"default": "bf16", "attention": "fp8",
                                        "experts": "nvfp4", "shared_experts": "nvfp4",
                                        "lm_head": "nvfp4", "embeddings": "bf16"}
    # MiniMax-M3: attention, indexer, shared experts, dense MLPs MXFP8 (stored as fp8),
    # experts NVFP4, routers excluded
    m3 = load_hf_config(HF / "nvidia--MiniMax-M3-NVFP4_config.json")
    assert m3.checkpoint_formats == {"default": "bf16", "attention": "fp8", "mlp": "fp8",
                                     "shared_experts": "fp8", "experts": "nvfp4",
                                     "embeddings": "bf16", "lm_head": "bf16"}


def test_mixed_precision_weight_bytes_by_hand():
    """Qwen3.6-27B-NVFP4 (MIXED_PRECISION): dense MLPs and lm_head NVFP4 (0.5 + 1/16 B per
    weight: 16 e2m1 + one e4m3 scale), all attention / gated-delta-net projections FP8 (1 B),
    embeddings and norms bf16 (2 B). From the config: 64 layers, hidden 5120, intermediate
    17408, vocab 248320, untied."""
    model = load_hf_config(HF / "nvidia--Qwen3.6-27B-NVFP4_config.json")
    pc = param_counts(model)
    h, i, v, layers = 5120, 17408, 248320, 64
    mlp, head, emb = layers * 3 * h * i, v * h, v * h
    norms = layers * pc.layer_norms + pc.final_norm
    rest = pc.total - mlp - head - emb - norms  # attention + linear-attention projections
    assert mlp == 17_112_760_320 and head == emb == 1_271_398_400
    by_hand = (mlp + head) * 0.5625 + rest * 1.0 + (emb + norms) * 2.0
    assert _bytes(model) == pytest.approx(by_hand, rel=1e-9)
    assert by_hand / 1e9 == pytest.approx(20.1, abs=0.05)


def test_fp8_checkpoint_halves_the_bf16_bytes():
    """Llama-3.1-70B-Instruct-FP8 (FP8, lm_head excluded): by hand, 80 x (attention 150,994,944
    + MLP 704,643,072) fp8 weights at 1 B, embeddings and LM head 128256 x 8192 each at 2 B
    (norms follow the default). NVIDIA's FP8 card for the same recipe states "reduces the
    number of bits per parameter from 16 to 8, reducing the disk size and GPU memory
    requirements by approximately 50%" (huggingface.co/nvidia/Llama-3.1-405B-Instruct-FP8)."""
    model = load_hf_config(HF / "nvidia--Llama-3.1-70B-Instruct-FP8_config.json")
    h = 8192
    attn = h * 64 * 128 * 2 + 2 * h * 8 * 128
    mlp = 3 * h * 28672
    assert (attn, mlp) == (150_994_944, 704_643_072)
    by_hand = 80 * (attn + mlp + 2 * h) + h + 2 * 128256 * h * 2
    assert _bytes(model) == pytest.approx(by_hand, rel=1e-9)
    ratio = _bytes(model) / _bytes(model, {"default": "bf16"})
    assert 0.45 < ratio < 0.55  # "approximately 50%"


def test_nvfp4_checkpoint_against_published_safetensors_sizes():
    """nvidia/DeepSeek-R1-0528-FP4 (v1: routed / shared experts and dense MLPs NVFP4, attention,
    embeddings, LM head bf16) and its v2 (the same, plus the attention output projection wo
    NVFP4: "this checkpoint additionally quantizes the wo module in attention layers",
    huggingface.co/nvidia/DeepSeek-R1-0528-FP4-v2) have the DeepSeek-V3 shapes of the
    DeepSeek-V3.1-NVFP4 config. Their safetensors sizes as published (HF "Model size", in
    elements: U8 packs two e2m1 weights, F8_E4M3 holds one scale per 16): 396.8B (v1,
    llmrun.dev/model/nvidia-deepseek-r1-nvfp4) and 393.6B (v2,
    llmrun.dev/model/nvidia-deepseek-r1-0528-nvfp4-v2). NVFP4 is 0.5 + 1/16 element per
    weight, bf16 one. The checkpoints also hold the multi-token-prediction layer 61 in bf16,
    which the import does not count: added here by hand (one MoE layer, eh_proj 2h x h, its
    own embedding and head copies, three norms). v2 is the V3.1 descriptor's recipe (q_a / kv_a
    / q_b / kv_b and lm_head excluded); the import's one format per class puts q_b / kv_b at
    NVFP4 too (the class's larger share is o_proj), 1.45B elements (0.4 %) under v2."""
    model = load_hf_config(HF / "nvidia--DeepSeek-V3.1-NVFP4_config.json")
    pc = param_counts(model)
    elements = {"bf16": 1.0, "nvfp4": 0.5625}
    h, v = model.hidden_size, model.vocab_size
    mtp = pc.per_moe_layer + 2 * h * h + 2 * v * h + 3 * h
    layers = model.num_layers

    def size(formats):  # safetensors elements (1e9) of the checkpoint at these formats
        fm = dict(formats)
        default = fm.pop("default")

        def cls(name):
            return elements[fm.get(name, default)]

        return (pc.word_embedding * cls("embeddings") + pc.lm_head * cls("lm_head")
                + layers * (pc.attention * cls("attention")
                            + pc.attention_replicated * cls("mla"))
                + pc.num_dense_layers * pc.dense_mlp * cls("mlp")
                + pc.num_moe_layers * (pc.num_experts * pc.expert * cls("experts")
                                       + pc.shared_experts * cls("shared_experts"))
                + pc.num_moe_layers * pc.router * 1.0  # DeepSeek's gate is no Linear: bf16
                + layers * pc.layer_norms + pc.final_norm + mtp) / 1e9

    v1 = size({"default": "nvfp4", "attention": "bf16", "mla": "bf16", "embeddings": "bf16",
               "lm_head": "bf16"})
    assert v1 == pytest.approx(396.8, abs=0.06)
    o_proj = layers * model.num_heads * model.mla.v_head_dim * h
    v2 = v1 - o_proj * (1 - 0.5625) / 1e9
    assert v2 == pytest.approx(393.6, abs=0.06)
    imported = size(model.checkpoint_formats)
    q_b_kv_b = layers * (1536 * 128 * 192 + 512 * 128 * 256)
    assert imported == pytest.approx(v2 - q_b_kv_b * (1 - 0.5625) / 1e9, rel=1e-9)
    assert imported == pytest.approx(393.6, rel=0.005)
    # without the e4m3 block scales (0.5 element per weight) v1 would be 2.5 % under
    nvfp4 = (pc.num_moe_layers * (pc.num_experts * pc.expert + pc.shared_experts)
             + pc.num_dense_layers * pc.dense_mlp)
    assert v1 - 0.0625 * nvfp4 / 1e9 < 396.8 * 0.98


def test_folder_holding_both_files(tmp_path):
    snap = tmp_path / "snapshot"
    snap.mkdir()
    shutil.copy(HF / "nvidia--Qwen3-235B-A22B-NVFP4_config.json", snap / "config.json")
    shutil.copy(HF / "nvidia--Qwen3-235B-A22B-NVFP4_hf_quant_config.json",
                snap / "hf_quant_config.json")
    model = resolve_model(str(snap))
    assert model.checkpoint_formats == {"default": "nvfp4", "router": "bf16",
                                        "embeddings": "bf16", "lm_head": "bf16"}
    assert model.checkpoint_kv_dtype == "fp8"
    # without the descriptor the config alone says nothing about the formats
    (snap / "hf_quant_config.json").unlink()
    assert resolve_model(str(snap)).checkpoint_formats is None


def test_descriptor_alone_names_what_is_missing():
    path = HF / "nvidia--Qwen3-235B-A22B-NVFP4_hf_quant_config.json"
    with pytest.raises(SpecError) as err:
        resolve_model(str(path))
    msg = str(err.value)
    assert "hf_quant_config.json" in msg and "not an architecture" in msg
    assert "config.json beside" in msg and "\n" not in msg


def test_a_descriptor_without_quantization_block_is_refused(tmp_path):
    bad = tmp_path / "hf_quant_config.json"
    bad.write_text(json.dumps({"producer": {"name": "modelopt"}}))
    with pytest.raises(SpecError, match="has no 'quantization' mapping"):
        load_hf_config(HF / "Qwen--Qwen3-8B_config.json", quant=bad)


@pytest.mark.parametrize(("quantization", "field"), [
    ({"quant_algo": "NVFP4", "exclude_modules": "lm_head"}, "'quantization.exclude_modules'"),
    ({"quant_algo": "NVFP4", "exclude_modules": ["lm_head", 3]},
     "'quantization.exclude_modules' must list module names"),
    ({"quant_algo": 4}, "'quantization.quant_algo'"),
    ({"quant_algo": "NVFP4", "kv_cache_quant_algo": ["FP8"]},
     "'quantization.kv_cache_quant_algo'"),
    ({"quant_algo": "MIXED_PRECISION", "quantized_layers": ["model.layers.0.mlp"]},
     "'quantization.quantized_layers'"),
    ({"quant_algo": "MIXED_PRECISION", "quantized_layers": {"model.layers.0.mlp": "FP8"}},
     "'quantization.quantized_layers.model.layers.0.mlp'"),
    # an algorithm no format is known for: refused with the valid names (it gave "no
    # formats", i.e. a bf16 checkpoint, silently)
    ({"quant_algo": "NVFP5"}, "'quantization.quant_algo' is 'NVFP5'"),
    ({"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP4"},
     "'quantization.kv_cache_quant_algo' is 'FP4'"),
    ({"quant_algo": "MIXED_PRECISION", "moe_quant_algo": "INT2"},
     "'quantization.moe_quant_algo' is 'INT2'"),
    ({"quant_algo": "MIXED_PRECISION",
      "quantized_layers": {"model.layers.0.mlp.down_proj": {"quant_algo": "FP6"}}},
     "'quantization.quantized_layers.model.layers.0.mlp.down_proj.quant_algo' is 'FP6'"),
])
def test_a_malformed_descriptor_is_refused_naming_the_field(tmp_path, quantization, field):
    snap = tmp_path / "snapshot"
    snap.mkdir()
    shutil.copy(HF / "Qwen--Qwen3-8B_config.json", snap / "config.json")
    (snap / "hf_quant_config.json").write_text(json.dumps({"quantization": quantization}))
    with pytest.raises(SpecError) as err:
        resolve_model(str(snap))
    msg = str(err.value)
    assert field in msg and "hf_quant_config.json" in msg and "\n" not in msg
    assert msg.startswith(str(snap / "config.json"))  # the file it came with
    if " is '" in field:  # an unknown name: the message lists the valid ones
        assert "valid: " in msg and "NVFP4" in msg


@pytest.mark.parametrize(("block", "field"), [
    ({"quant_method": "bitsandbytes"}, "'quantization_config.quant_method' is 'bitsandbytes'"),
    ({"quant_method": "fp8", "fmt": "e3m4"}, "'quantization_config.fmt' is 'e3m4'"),
    ({"quant_method": "fp8", "weight_block_size": 128},
     "'quantization_config.weight_block_size'"),
    ({"quant_method": "fp8", "modules_to_not_convert": "lm_head"},
     "'quantization_config.modules_to_not_convert'"),
    ({"quant_method": "compressed-tensors", "ignore": ["lm_head", None]},
     "'quantization_config.ignore' must list module names"),
    ({"quant_method": "compressed-tensors", "config_groups": ["group_0"]},
     "'quantization_config.config_groups'"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP5"},
     "'quantization_config.quant_algo' is 'NVFP5'"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": "FP4"},
     "'quantization_config.kv_cache_quant_algo' is 'FP4'"),
    ("fp8", "'quantization_config' must be a mapping"),
])
def test_a_malformed_quantization_config_is_refused_naming_the_field(tmp_path, block, field):
    """A config.json's own quantization_config gets the checks hf_quant_config.json gets."""
    config = json.loads((HF / "Qwen--Qwen3-8B_config.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "quantization_config": block}))
    with pytest.raises(SpecError) as err:
        load_hf_config(path)
    msg = str(err.value)
    assert field in msg and msg.startswith(str(path)) and "\n" not in msg
    # the same block under a wrapper's text_config is named by its path there
    wrapped = {"model_type": "qwen3_vl", "text_config": {**config, "quantization_config": block}}
    path.write_text(json.dumps(wrapped))
    with pytest.raises(SpecError, match=r"'text_config\.quantization_config"):
        load_hf_config(path)


def test_kimi_k25_nvfp4_keeps_its_mla_down_projections_bf16():
    """nvidia/Kimi-K2.5-NVFP4 excludes ``language_model.model.layers.<i>.self_attn*`` in all
    61 layers: every module under self_attn is bf16 in the checkpoint, the replicated MLA
    down-projections too (they were left NVFP4). Per layer q_a_proj 7168 x 1536 = 11,010,048,
    kv_a_proj_with_mqa 7168 x (512 + 64) = 4,128,768 and their RMSNorms 1536 + 512: 15,140,864;
    61 layers 923,592,704 weights, at 2 B instead of NVFP4's 0.5 + 1/16 B:
    923,592,704 x 1.4375 = 1,327,664,512 B more, on every GPU (replicated)."""
    model = load_hf_config(HF / "nvidia--Kimi-K2.5-NVFP4_config.json")
    assert model.checkpoint_formats == {"default": "nvfp4", "attention": "bf16", "mla": "bf16",
                                        "embeddings": "bf16", "lm_head": "bf16"}
    _, replicated = attention_projections(model)
    assert replicated == {"q_a_proj": 11_010_048, "q_a_layernorm": 1536,
                          "kv_a_proj_with_mqa": 4_128_768, "kv_a_layernorm": 512}
    assert param_counts(model).attention_replicated * model.num_layers == 923_592_704
    quantised = {c: d for c, d in model.checkpoint_formats.items() if c != "mla"}
    assert _bytes(model) - _bytes(model, quantised) == 1_327_664_512
    # moonshotai/Kimi-K2.5 (int4 experts, compressed-tensors ignore ``re:.*self_attn.*``): the
    # same modules bf16; gpt-oss (``model.layers.*.self_attn``) has no replicated attention
    kimi = load_hf_config(HF / "moonshotai--Kimi-K2.5_config.json")
    assert kimi.checkpoint_formats["mla"] == "bf16"
    oss = load_hf_config(HF / "openai--gpt-oss-120b_config.json")
    assert "mla" not in oss.checkpoint_formats and oss.checkpoint_formats["attention"] == "bf16"


def test_resolve_model_reads_a_config_once(tmp_path, monkeypatch):
    """resolve_model of a config.json file parses it once and hands the mapping on (it used
    to read it again in load_hf_config); the descriptor beside it is read once too. The
    real reader runs; the test only counts its calls."""
    import perfmodel.specs.registry as registry
    import perfmodel.zoo as zoo
    import perfmodel.zoo.hf as hf

    reads: list[str] = []
    real = registry.read_mapping

    def counting(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(zoo, "read_mapping", counting)
    monkeypatch.setattr(hf, "read_mapping", counting)
    config = HF / "nvidia--Qwen3-235B-A22B-NVFP4_config.json"
    model = resolve_model(str(config))
    assert sorted(reads) == sorted([config.name,
                                    "nvidia--Qwen3-235B-A22B-NVFP4_hf_quant_config.json"])
    assert model.checkpoint_formats["default"] == "nvfp4"


def test_an_inline_descriptor_is_refused_in_one_line():
    with pytest.raises(SpecError) as err:
        resolve_model({"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8"}})
    msg = str(err.value)
    assert msg.startswith("inline model: a quantisation descriptor (hf_quant_config.json)")
    assert "config.json beside" in msg and "\n" not in msg


def test_scenario_takes_the_checkpoint_kv_format_unless_it_sets_kv_dtype():
    from perfmodel.specs.scenario import Scenario

    base = {"kind": "inference", "system": {"device": "b200", "num_gpus": 8},
            "parallelism": {"tp": 8},
            "model": str(HF / "nvidia--Qwen3-235B-A22B-NVFP4_config.json")}
    sc = Scenario.model_validate({**base, "inference": {"prompt_len": 128}})
    assert sc.inference.kv_dtype == "fp8"
    assert sc.inference.weight_dtype == "nvfp4"
    own = Scenario.model_validate({**base, "inference": {"prompt_len": 128, "kv_dtype": "bf16"}})
    assert own.inference.kv_dtype == "bf16"
