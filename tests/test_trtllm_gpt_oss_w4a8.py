"""TensorRT-LLM runs gpt-oss's MXFP4 experts against MXFP8 activations on Blackwell by default
(tensorrt_llm/_torch/model_config.py get_mxfp4_quant_algo: SM >= 100 -> W4A8_MXFP4_MXFP8;
examples/models/core/gpt_oss/README.md: activations 'bf16 (Hopper) or mxfp8 (Blackwell)'):
engines/trtllm.yaml quantization.formats.mxfp4 replaces the default bf16 activation there,
with a warning; Hopper keeps W4A16."""

from __future__ import annotations

import perfmodel as pm
from perfmodel.paths import data_dir

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"


def _predict(device: str, engine: str = "trtllm", **inf):
    path = str(data_dir("calibration").parent / GPT_OSS)
    sc = pm.Scenario(kind="inference", model=path, engine=engine,
                     system={"device": device, "num_gpus": 1}, parallelism={"tp": 1},
                     inference=dict(batch=32, prompt_len=1024, output_len=1024, **inf))
    return pm.predict(sc)


def _table(pred) -> str:
    return pred.breakdown["moe"]["decode_step"]["grouped_gemm_table"]


def test_trtllm_gpt_oss_on_b200_runs_w4a8_by_default():
    b200, h200 = _predict("b200"), _predict("h200-sxm-141gb")
    # B200: the W4A8 MXFP4 x MXFP8 table, the engine's replacement said; the same as asking fp8
    assert _table(b200).startswith("moe.w4a8_mxfp4_mxfp8")
    assert any("W4A8" in w and "replaced by fp8" in w for w in b200.warnings)
    assert b200.tpot_s == _predict("b200", activation_dtype="fp8").tpot_s
    # Hopper: W4A16 (bf16 activations), no replacement
    assert _table(h200).startswith("moe.w4a16_mxfp4")
    assert not any("replaced by" in w for w in h200.warnings)
    # B200 (8 TB/s, fp8 / fp4 tensor cores) decodes faster than H200 (4.8 TB/s)
    assert b200.tpot_s < h200.tpot_s


def test_other_engines_keep_their_mxfp4_path():
    # no quantization.formats.mxfp4 rule in vllm / sglang: the default stays W4A16
    for engine in ("vllm", "sglang"):
        pred = _predict("b200", engine=engine)
        assert not any("replaced by" in w for w in pred.warnings)
        assert "w4a8" not in _table(pred)


def test_a_named_bf16_activation_keeps_trtllms_w4a16_path():
    # the scenario asks W4A16 itself: TensorRT-LLM runs it (OVERRIDE_QUANT_ALGO=W4A16_MXFP4,
    # get_mxfp4_quant_algo), so the request is kept, not replaced like the unasked default
    asked = _predict("b200", activation_dtype="bf16")
    assert _table(asked).startswith("moe.w4a16_mxfp4")
    assert not any("replaced by" in w for w in asked.warnings)
    assert asked.tpot_s > _predict("b200").tpot_s
