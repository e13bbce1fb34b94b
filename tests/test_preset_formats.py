"""Presets carry their released checkpoint's formats, as the HF import does (QA 2026-12-03 (b)
item 6): DeepSeek-V3 ships only as 128 x 128 block-scaled fp8 (config.json
quantization_config {quant_method: fp8, weight_block_size: [128, 128]}), embedding and LM head
in bf16. plan-serving --weight-dtype / --kv-dtype override them."""

from __future__ import annotations

from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.cli import build_parser
from perfmodel.serving.capacity import _scenario
from perfmodel.serving.cli import plan_inputs
from perfmodel.zoo import resolve_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "hf_configs"
PRESETS = sorted(p.stem for p in (ROOT / "models").glob("*.yaml"))


@pytest.mark.parametrize("name", [n for n in PRESETS if (FIXTURES / f"{n}.json").exists()])
def test_preset_formats_match_the_hf_import_of_its_config(name):
    """Every preset with its config.json fixture states the formats that config imports to
    (None: a 16-bit checkpoint)."""
    assert resolve_model(name).checkpoint_formats == \
        resolve_model(str(FIXTURES / f"{name}.json")).checkpoint_formats


def test_deepseek_v3_weights_are_fp8_block_by_hand():
    """671,026,419,200 parameters: the embedding and LM head (129,280 x 7,168 = 926,679,040
    each) and the router of the 58 MoE layers (256 x 7,168 gate + 256 correction biases,
    formats.KEPT_16BIT) in bf16, the rest fp8 with one fp32 scale per 128 x 128 block
    (1 + 4 / 16,384 B)."""
    sc = pm.as_scenario({"kind": "inference", "model": "deepseek-v3",
                         "system": {"device": "h200-sxm-141gb", "num_gpus": 1},
                         "inference": {"batch": 1, "prompt_len": 128, "output_len": 8}})
    assert sc.inference.weight_dtype == "fp8_block"
    weights = pm.predict(sc).breakdown["memory"]["weights"]
    e = 129_280 * 7_168
    r = 58 * 256 * (7_168 + 1)
    hand = (671_026_419_200 - 2 * e - r) * (1 + 4 / 128**2) + (2 * e + r) * 2
    assert weights == pytest.approx(hand, rel=1e-5)
    assert weights / 2**30 == pytest.approx(626.9, abs=0.1)


def _plan_args(*extra):
    return build_parser().parse_args([
        "plan-serving", "--model", "deepseek-v3", "--rate", "5", "--prompt-len", "1024",
        "--output-len", "512", "--ttft-p90", "2", "--tpot-p90", "0.05", "--devices", "b200",
        *extra])


def test_plan_serving_uses_the_checkpoint_format_unless_told():
    inp = plan_inputs(_plan_args())
    assert _scenario(inp, "b200", 8).inference.weight_dtype == "fp8_block"
    told = plan_inputs(_plan_args("--weight-dtype", "bf16", "--kv-dtype", "fp8"))
    inf = _scenario(told, "b200", 8).inference
    assert inf.weight_dtype == "bf16" and inf.weight_formats == {} and inf.kv_dtype == "fp8"


def test_plan_serving_refuses_an_unknown_format():
    with pytest.raises(SystemExit):
        _plan_args("--weight-dtype", "fp7")
