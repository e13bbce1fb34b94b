"""The presets of current models (gpt-oss, Qwen3, DeepSeek-R1, Kimi K2, Llama 4) are their
released config.json files as the HF importer reads them: a preset id gives the same model as
the file, so ``plan-training qwen3-30b-a3b`` and a scenario naming the config agree. Their
published parameter counts are checked with every other preset's (tests/test_zoo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel.parameters import param_counts
from perfmodel.zoo import get_model, load_hf_config

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"

# preset id -> the released config.json it was written from (its ``source.read_via``)
FROM_CONFIG = {
    "gpt-oss-120b": "openai--gpt-oss-120b",
    "gpt-oss-20b": "openai--gpt-oss-20b",
    "qwen3-8b": "Qwen--Qwen3-8B",
    "qwen3-32b": "Qwen--Qwen3-32B",
    "qwen3-30b-a3b": "Qwen--Qwen3-30B-A3B",
    "qwen3-235b-a22b": "Qwen--Qwen3-235B-A22B",
    "qwen3-coder-480b-a35b": "Qwen--Qwen3-Coder-480B-A35B-Instruct",
    "deepseek-r1": "deepseek-ai--DeepSeek-R1",
    "kimi-k2": "moonshotai--Kimi-K2-Instruct",
    "llama-4-maverick": "meta-llama--Llama-4-Maverick-17B-128E-Instruct",
}
# what a preset adds to the file: its id, citations and the published counts
PRESET_ONLY = {"id", "name", "published_params", "published_active_params", "source", "notes"}


@pytest.mark.parametrize("pid", sorted(FROM_CONFIG))
def test_preset_is_its_config(pid):
    preset = get_model(pid)
    config = f"{FROM_CONFIG[pid]}_config.json"
    assert config in preset.source.read_via
    imported = load_hf_config(CONFIGS / config)
    assert preset.model_dump(exclude=PRESET_ONLY) == imported.model_dump(exclude=PRESET_ONLY)
    assert preset.name == imported.name  # the HF repository id


def test_r1_is_v3_s_architecture():
    """DeepSeek-R1 is trained from DeepSeek-V3-Base (arXiv 2501.12948 Sec. 2): same shapes and
    counts as the deepseek-v3 preset, written independently from another config.json."""
    r1, v3 = param_counts(get_model("deepseek-r1")), param_counts(get_model("deepseek-v3"))
    assert (r1.total, r1.active) == (v3.total, v3.active) == (671_026_419_200, 37_552_297_472)


def test_notes_state_the_exact_counts():
    """The exact counts each preset's notes quote beside the model card's rounded figure."""
    exact = {"gpt-oss-120b": 116_829_156_672, "gpt-oss-20b": 20_914_757_184,
             "qwen3-30b-a3b": 30_532_122_624, "qwen3-235b-a22b": 235_093_634_560,
             "kimi-k2": 1_026_408_232_448}
    for pid, total in exact.items():
        assert param_counts(get_model(pid)).total == total, pid
        assert f"{total:,}" in get_model(pid).notes
