"""Model zoo: every preset loads and reproduces its published parameter count; HuggingFace
config.json import reproduces the released checkpoints; bad inputs fail with SpecError.

Published figures are compared as follows:
- an exact integer (not a multiple of 10^6, e.g. 6,738,415,616) must be matched exactly;
- a rounded figure (46.7B, 175B, 1.7B) must be what our exact count rounds to at the precision
  it was printed with (half a unit of its last non-zero digit) and, in addition, within 0.5 %,
  except where the printed precision itself is coarser than 0.5 % (ROUNDED_COARSE).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from perfmodel.errors import SpecError
from perfmodel.parameters import param_counts
from perfmodel.specs.model import ModelSpec
from perfmodel.specs.registry import load_file
from perfmodel.zoo import (
    SUPPORTED_MODEL_TYPES,
    get_model,
    list_models,
    load_hf_config,
    model_from_hf_config,
    resolve_model,
)

PRESET_DIR = Path(__file__).resolve().parents[1] / "models"
HF_DIR = Path(__file__).resolve().parent / "data" / "hf_configs"
TRAINING_REFERENCE = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "training_measurements.json"
)

REQUIRED_IDS = [
    # Narayanan et al. 2021 Table 1 and Korthikanti et al. 2022 Table 3 (Megatron GPTs)
    "gpt-1.7b", "gpt-3.6b", "gpt-7.5b", "gpt-18b", "gpt-39b", "gpt-76b", "gpt-145b",
    "gpt-310b", "gpt-530b", "gpt-1t", "gpt-22b", "gpt-175b",
    "gpt3-175b", "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b",
    "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mistral-7b", "mixtral-8x7b",
    "mixtral-8x22b", "qwen2.5-7b", "qwen2.5-72b", "deepseek-v3", "opt-175b", "bloom-176b",
    "gpt-j-6b", "falcon-180b", "gpt2-small", "mpt-7b", "mpt-1b",
]

# Megatron-LM GPTs: (layers, hidden, heads) as printed in the papers' tables.
MEGATRON_SHAPES = {
    "gpt-1.7b": (24, 2304, 24), "gpt-3.6b": (30, 3072, 32), "gpt-7.5b": (36, 4096, 32),
    "gpt-18b": (40, 6144, 48), "gpt-39b": (48, 8192, 64), "gpt-76b": (60, 10240, 80),
    "gpt-145b": (80, 12288, 96), "gpt-310b": (96, 16384, 128), "gpt-530b": (105, 20480, 128),
    "gpt-1t": (128, 25600, 160), "gpt-22b": (48, 6144, 64), "gpt-175b": (96, 12288, 96),
}

# Narayanan Table 1 prints one decimal: 1.652B -> "1.7B" and 3.562B -> "3.6B" are correctly
# rounded but differ from the printed figure by 2.8 % and 1.1 %.
ROUNDED_COARSE = {"gpt-1.7b", "gpt-3.6b",
                  # model cards printing whole billions (22B of 22.19B is 0.9 %; 1T of 1.026T)
                  "qwen3-235b-a22b", "qwen3-coder-480b-a35b", "deepseek-r1", "kimi-k2",
                  "llama-4-maverick"}

# DeepSeek counts activated parameters without the input-embedding lookup (DeepSeek-V3-Base
# README_WEIGHTS.md: "36.6B (including 0.9B for the output Head)"), as do Kimi K2 (its layout)
# and OpenAI (gpt-oss model card, arXiv 2508.10925 Table 1); Mistral, Qwen and Meta count it.
ACTIVE_EXCLUDES_INPUT_EMBEDDING = {"deepseek-v3", "deepseek-r1", "kimi-k2", "gpt-oss-120b",
                                   "gpt-oss-20b"}

# Every fixture's parameter count as transformers counts it (AutoModelForCausalLM.from_config on
# the meta device, transformers 5.23; tied weights counted once), and the preset it must match.
# DeepSeek-V3: + 58 x 256 = 14,848 for e_score_correction_bias, a parameter of the released
# checkpoint that transformers keeps as a buffer.
HF_EXPECTED: dict[str, tuple[int, str | None]] = {
    "llama-2-7b": (6_738_415_616, "llama-2-7b"),
    "llama-3-8b": (8_030_261_248, "llama-3-8b"),
    "llama-3.1-405b": (405_853_388_800, "llama-3.1-405b"),
    "mistral-7b": (7_241_732_096, "mistral-7b"),
    "mixtral-8x7b": (46_702_792_704, "mixtral-8x7b"),
    "mixtral-8x22b": (140_620_634_112, "mixtral-8x22b"),
    "qwen2.5-7b": (7_615_616_512, "qwen2.5-7b"),
    "qwen2.5-72b": (72_706_203_648, "qwen2.5-72b"),
    "qwen1.5-moe-a2.7b": (14_315_784_192, None),
    "deepseek-v3": (671_026_404_352 + 14_848, "deepseek-v3"),
    "deepseek-v2-lite": (15_706_484_224, None),
    "gpt2": (124_439_808, "gpt2-small"),
    "gpt-j-6b": (6_050_882_784, "gpt-j-6b"),
    "opt-125m": (125_239_296, None),
    "bloom-560m": (559_214_592, None),
    "bloom-176b": (176_247_271_424, "bloom-176b"),
    "falcon-7b": (6_921_720_704, "falcon-7b"),
    "falcon-180b": (178_557_088_768, "falcon-180b"),
    "gpt-neox-20b": (20_554_567_680, None),
    "mpt-7b": (6_649_286_656, None),  # released mosaicml/mpt-7b; preset mpt-7b is llm-foundry's
}


def _rounding_unit(value: int) -> int:
    """Place value of the last non-zero digit: 46_700_000_000 -> 100_000_000."""
    unit = 1
    while value % (unit * 10) == 0:
        unit *= 10
    return unit


def _assert_matches_published(pid: str, count: int, published: float) -> None:
    pub = int(published)
    assert pub == published, f"{pid}: published figure must be an integer number of parameters"
    if pub % 1_000_000:
        assert count == pub, f"{pid}: {count:,} != published {pub:,}"
        return
    unit = _rounding_unit(pub)
    tol = unit / 2 if pid in ROUNDED_COARSE else min(unit / 2, 0.005 * pub)
    assert abs(count - pub) <= tol, (
        f"{pid}: {count:,} is {100 * (count / pub - 1):+.3f} % from published {pub:,} "
        f"(rounded to {unit:,}; tolerance {tol:,.0f})"
    )


# --- presets -------------------------------------------------------------------------------
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def test_required_presets_exist():
    ids = {m.id for m in list_models()}
    missing = [pid for pid in REQUIRED_IDS if pid not in ids]
    assert not missing, f"missing presets: {missing}"
    assert [m.id for m in list_models()] == sorted(ids)


@pytest.mark.parametrize("pid", PRESETS)
def test_preset_loads(pid):
    spec = load_file(ModelSpec, PRESET_DIR / f"{pid}.yaml")
    assert spec.id == pid
    assert get_model(pid) == spec
    assert spec.source is not None and spec.source.url.startswith("https://")
    assert spec.published_params is not None, f"{pid}: no published parameter count"
    counts = param_counts(spec)
    assert counts.total > 0
    assert counts.active <= counts.total


@pytest.mark.parametrize("pid", PRESETS)
def test_preset_matches_published_params(pid):
    spec = get_model(pid)
    _assert_matches_published(pid, param_counts(spec).total, spec.published_params)


@pytest.mark.parametrize(
    "pid", [p for p in PRESETS if get_model(p).published_active_params is not None]
)
def test_moe_active_matches_published(pid):
    spec = get_model(pid)
    counts = param_counts(spec)
    active = counts.active
    if pid in ACTIVE_EXCLUDES_INPUT_EMBEDDING:
        active -= counts.word_embedding
    _assert_matches_published(pid, active, spec.published_active_params)


def test_exact_counts_of_well_known_models():
    """Figures quoted in the project brief and the papers, to the parameter."""
    assert param_counts(get_model("llama-2-7b")).total == 6_738_415_616
    assert param_counts(get_model("llama-3-8b")).total == 8_030_261_248
    assert param_counts(get_model("bloom-176b")).total == 176_247_271_424  # BLOOM model card
    mixtral = param_counts(get_model("mixtral-8x7b"))
    assert (mixtral.total, mixtral.active) == (46_702_792_704, 12_879_925_248)
    dsv3 = param_counts(get_model("deepseek-v3"))
    assert dsv3.total == 671_026_419_200  # MTP module excluded, as in DeepSeek's 671B
    assert (dsv3.num_dense_layers, dsv3.num_moe_layers) == (3, 58)
    assert round((dsv3.active - dsv3.word_embedding) / 1e8) == 366  # README_WEIGHTS: 36.6B
    assert round((dsv3.active - dsv3.word_embedding) / 1e9) == 37  # paper: 37B activated
    assert round(dsv3.active / 1e9) == 38  # with the embedding lookup: 37.55B


@pytest.mark.parametrize("pid", sorted(MEGATRON_SHAPES))
def test_megatron_gpts_match_narayanan_formula(pid):
    """Narayanan et al. 2021 Sec. 3.4: P = 12*l*h^2*(1 + 13/(12h) + (V+s)/(12*l*h)), which counts
    every weight and bias except the final LayerNorm (2h)."""
    spec = get_model(pid)
    layers, hidden, heads = MEGATRON_SHAPES[pid]
    assert (spec.num_layers, spec.hidden_size, spec.num_heads) == (layers, hidden, heads)
    assert (spec.vocab_size, spec.max_position_embeddings) == (51200, 2048)
    assert spec.ffn_hidden_size == 4 * hidden and spec.tie_embeddings
    v, s = spec.vocab_size, spec.max_position_embeddings
    formula = 12 * layers * hidden**2 + 13 * layers * hidden + (v + s) * hidden  # exact ints
    as_printed = 12 * layers * hidden**2 * (
        1 + 13 / (12 * hidden) + (v + s) / (12 * layers * hidden)
    )
    assert formula == pytest.approx(as_printed, rel=1e-12)
    assert param_counts(spec).total - formula == 2 * hidden


def test_narayanan_formula_hand_check_1_7b():
    # l=24, h=2304, V=51200, s=2048:
    # 12*24*2304^2 = 1,528,823,808; 13*24*2304 = 718,848; (51200+2048)*2304 = 122,683,392
    # formula = 1,652,226,048 (Table 1: 1.7B); + final LayerNorm 2*2304 = 4,608
    assert param_counts(get_model("gpt-1.7b")).total == 1_652_226_048 + 4_608 == 1_652_230_656


def test_shared_narayanan_korthikanti_shapes():
    """gpt-530b and gpt-1t serve both papers: Korthikanti Table 3 has the same shapes."""
    assert MEGATRON_SHAPES["gpt-530b"] == (105, 20480, 128)
    assert MEGATRON_SHAPES["gpt-1t"] == (128, 25600, 160)
    assert param_counts(get_model("gpt-175b")).total != param_counts(get_model("gpt3-175b")).total


@pytest.mark.skipif(not TRAINING_REFERENCE.is_file(), reason="shared/reference not present")
def test_presets_agree_with_training_measurements():
    """Shapes of the Narayanan/Korthikanti records and the llm-foundry MPT NumParams."""
    records = json.loads(TRAINING_REFERENCE.read_text())
    checked = 0
    for rec in records:
        m = rec["model"]
        rid = rec["id"]
        if rid.startswith(("narayanan2021_t1_", "korthikanti2022_t5_")):
            pid = next(
                p for p, shape in MEGATRON_SHAPES.items()
                if shape == (m["layers"], m["hidden"], m["heads"])
            )
            spec = get_model(pid)
            assert (spec.vocab_size, spec.max_position_embeddings) == (m["vocab"], m["seq_len"])
            assert spec.ffn_hidden_size == m["ffn_hidden"]
            checked += 1
        elif rid.startswith("llmfoundry_") and m["seq_len"] == 2048:
            spec = get_model("mpt-" + m["name"].split("-")[1].lower())
            assert (spec.num_layers, spec.hidden_size, spec.num_heads) == (
                m["layers"], m["hidden"], m["heads"])
            assert spec.vocab_size == m["vocab"]
            printed = int(m["arch_notes"].split("NumParams printed = ")[1].split()[0])
            assert param_counts(spec).total == printed
            checked += 1
    assert checked >= 14


def test_attention_kinds():
    assert get_model("llama-2-7b").attention_kind == "mha"
    assert get_model("llama-3-8b").attention_kind == "gqa"
    assert get_model("llama-3.1-405b").kv_heads == 8
    assert get_model("falcon-180b").attention_kind == "gqa"
    assert get_model("falcon-7b").attention_kind == "mqa"
    assert get_model("deepseek-v3").attention_kind == "mla"
    assert get_model("gpt-175b").attention_kind == "mha"


def test_quirks_expressed_in_presets():
    gptj = param_counts(get_model("gpt-j-6b"))
    assert gptj.layer_norms == 2 * 4096  # one shared LayerNorm per block
    assert gptj.lm_head == 50400 * 4096 + 50400  # untied head with bias
    assert param_counts(get_model("opt-175b")).position_embedding == 2050 * 12288
    bloom = param_counts(get_model("bloom-176b"))
    assert bloom.embedding_norm == 2 * 14336 and bloom.position_embedding == 0
    assert bloom.word_embedding == 3_596_615_680  # model card: embedding parameters
    assert param_counts(get_model("falcon-180b")).layer_norms == 2 * 2 * 14848


# --- HuggingFace import --------------------------------------------------------------------
def test_every_fixture_has_an_expectation_and_a_source():
    fixtures = sorted(p.stem for p in HF_DIR.glob("*.json"))
    assert fixtures == sorted(HF_EXPECTED)
    for name in fixtures:
        data = json.loads((HF_DIR / f"{name}.json").read_text())
        assert data["_source"]["url"].startswith("https://huggingface.co/")
        assert data["model_type"] in SUPPORTED_MODEL_TYPES


@pytest.mark.parametrize("name", sorted(HF_EXPECTED))
def test_hf_import_round_trip(name):
    expected, preset_id = HF_EXPECTED[name]
    spec = load_hf_config(HF_DIR / f"{name}.json")
    counts = param_counts(spec)
    assert counts.total == expected
    if preset_id is not None:
        preset = param_counts(get_model(preset_id))
        assert (counts.total, counts.active) == (preset.total, preset.active)
        assert spec.attention_kind == get_model(preset_id).attention_kind


def test_hf_import_ids_and_names():
    spec = load_hf_config(HF_DIR / "llama-2-7b.json")
    assert spec.id == "llama-2-7b-hf" and spec.name == "meta-llama/Llama-2-7b-hf"
    # no _name_or_path: the file names it (test_zoo_names.py); the mapping alone: the type
    assert load_hf_config(HF_DIR / "gpt2.json").id == "gpt2"
    assert model_from_hf_config(json.loads((HF_DIR / "gpt2.json").read_text())).id == "hf-gpt2"
    assert load_hf_config(HF_DIR / "gpt2.json", id="my-gpt2").id == "my-gpt2"
    data = json.loads((HF_DIR / "mixtral-8x7b.json").read_text())
    assert model_from_hf_config(data, id="mx").moe.num_experts == 8


def test_hf_import_architecture_details():
    falcon = load_hf_config(HF_DIR / "falcon-7b.json")
    assert (falcon.kv_heads, falcon.norms_per_layer, falcon.parallel_attention) == (1, 1, True)
    opt = load_hf_config(HF_DIR / "opt-125m.json")
    assert opt.position_embedding_size == 2050 and opt.activation == "relu"
    mpt = load_hf_config(HF_DIR / "mpt-7b.json")
    assert mpt.position_embedding == "alibi" and not mpt.norm_bias and not mpt.qkv_bias
    qwen_moe = load_hf_config(HF_DIR / "qwen1.5-moe-a2.7b.json")
    assert qwen_moe.moe.shared_expert_gate and qwen_moe.moe.shared_ffn == 5632
    lite = load_hf_config(HF_DIR / "deepseek-v2-lite.json")
    assert lite.mla.q_lora_rank is None and lite.moe.first_dense_layers == 1
    assert not lite.moe.router_bias


# --- resolve_model ------------------------------------------------------------------------
def test_resolve_model_forms(tmp_path):
    preset = get_model("llama-3-8b")
    assert resolve_model("llama-3-8b") is preset
    assert resolve_model(preset) is preset
    assert param_counts(resolve_model("hf_configs/gpt2.json", base_dir=HF_DIR.parent)).total == 124_439_808
    assert resolve_model(str(HF_DIR / "falcon-7b.json")).attention_kind == "mqa"
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text((HF_DIR / "opt-125m.json").read_text())
    assert param_counts(resolve_model("my-model", base_dir=tmp_path)).total == 125_239_296
    yaml_file = tmp_path / "custom.yaml"
    yaml_file.write_text(yaml.safe_dump(preset.model_dump(exclude_none=True) | {"id": "custom"}))
    assert param_counts(resolve_model("custom.yaml", base_dir=tmp_path)).total == param_counts(preset).total
    inline = {k: v for k, v in preset.model_dump(exclude_none=True).items()}
    assert resolve_model(inline) == preset
    hf_inline = json.loads((HF_DIR / "llama-2-7b.json").read_text())
    assert param_counts(resolve_model(hf_inline)).total == 6_738_415_616


# --- errors -------------------------------------------------------------------------------
def _llama_config(**changes):
    data = json.loads((HF_DIR / "llama-2-7b.json").read_text())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def test_unknown_model_type():
    """A model_type without its own builder is read by structure: known parts import, an
    unknown key is refused by name."""
    assert param_counts(model_from_hf_config(_llama_config(model_type="t5"))).total == (
        6_738_415_616)
    with pytest.raises(SpecError) as err:
        model_from_hf_config(_llama_config(model_type="t5", relative_attention_num_buckets=32))
    msg = str(err.value)
    assert "'t5'" in msg and "'relative_attention_num_buckets'" in msg


def test_missing_model_type():
    with pytest.raises(SpecError, match="'model_type'"):
        model_from_hf_config(_llama_config(model_type=...))


def test_missing_key_is_named():
    with pytest.raises(SpecError, match="'intermediate_size'") as err:
        model_from_hf_config(_llama_config(intermediate_size=...))
    assert "llama" in str(err.value)
    with pytest.raises(SpecError, match="'n_embd'"):
        model_from_hf_config({"model_type": "gpt2", "n_layer": 2})


def test_unsupported_variant_is_named():
    opt350 = json.loads((HF_DIR / "opt-125m.json").read_text()) | {"word_embed_proj_dim": 512}
    with pytest.raises(SpecError, match="word_embed_proj_dim"):
        model_from_hf_config(opt350)


def test_not_a_mapping():
    with pytest.raises(SpecError, match="mapping"):
        model_from_hf_config(["model_type", "llama"])  # type: ignore[arg-type]


def test_inconsistent_hf_config_is_a_spec_error():
    with pytest.raises(SpecError, match="num_kv_heads"):
        model_from_hf_config(_llama_config(num_key_value_heads=5))


def test_unknown_preset_id_suggests_closest():
    with pytest.raises(SpecError) as err:
        resolve_model("llama3-8b")
    msg = str(err.value)
    assert "unknown model 'llama3-8b'" in msg and "did you mean" in msg and "'llama-3-8b'" in msg
    with pytest.raises(SpecError, match="gpt-175b"):
        get_model("gpt-175")


def test_bad_paths_and_values(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        resolve_model("no/such/config.json", base_dir=tmp_path)
    with pytest.raises(SpecError, match="not found"):
        load_hf_config(tmp_path / "config.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match=r"no config\.json"):
        resolve_model("empty", base_dir=tmp_path)
    with pytest.raises(SpecError, match="hidden_sise"):
        resolve_model({"id": "x", "name": "x", "num_layers": 1, "hidden_sise": 8})
    with pytest.raises(SpecError, match="preset id"):
        resolve_model(42)  # type: ignore[arg-type]
