"""The grouped-GEMM band follows the table the engine's MoE kernel reads (uncertainty
``_grouped_gemm_tables``, the roofline's own ``Roofline.moe_tables`` lookup): Mixtral-8x7B's
bf16 experts on H100 under vLLM read ``moe.bf16@vllm_triton`` (fused_moe Triton,
engines/vllm.yaml ``moe.kernels.bf16``), under SGLang ``moe.bf16@sglang_triton``, generic
``moe.bf16`` (TensorRT-LLM CUTLASS, the reference table) raced against the production kernels'
bf16 tables (calibration/moe_kernels.yaml ``generic``): its band pools all three, since the time
may come from any. Before, every engine's bf16 experts took ``moe.bf16``'s residuals (the dtype
rule)."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel import uncertainty as U
from perfmodel.api import predict
from perfmodel.resolve import resolve


def _scenario(engine: str) -> dict:
    sc = {"kind": "inference", "model": "mixtral-8x7b",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 2}, "parallelism": {"tp": 2},
          "inference": {"batch": 8, "prompt_len": 1024, "output_len": 64,
                        "weight_dtype": "bf16"}}
    if engine != "generic":
        sc["engine"] = {"name": engine}
    return sc


def _grouped_terms(engine: str):
    rs = resolve(_scenario(engine))
    pred = predict(rs.scenario)
    tables = U.table_residuals(rs.profile)
    picked = U._grouped_gemm_tables(tables, rs.profile, rs.scenario)
    # the table the roofline itself recorded for the experts (inference breakdown)
    recorded = [pred.breakdown["moe"][ph]["grouped_gemm_table"] for ph in ("prefill", "decode_step")]
    return rs, pred, tables, picked, recorded


@pytest.mark.parametrize(("engine", "tables"), [
    ("vllm", ("moe.bf16@vllm_triton",)),
    ("sglang", ("moe.bf16@sglang_triton",)),
    ("generic", ("moe.bf16", "moe.bf16@sglang_triton", "moe.bf16@vllm_triton")),
])
def test_grouped_band_reads_the_engines_moe_table(engine, tables):
    _, _, _, picked, recorded = _grouped_terms(engine)
    assert picked == tables
    for why in recorded:  # the roofline's why-string names the table it starts from
        assert why.split(" ")[0] == tables[0]


def test_vllm_decode_moe_term_draws_its_own_fit_error():
    """vLLM's decode-step expert term draws the recorded held-out residuals of
    moe.bf16@vllm_triton, which differ from moe.bf16's."""
    rs, pred, tables, picked, _ = _grouped_terms("vllm")
    fe = {f.table: f for f in rs.profile.fit_errors}
    own, ref = fe["moe.bf16@vllm_triton"], fe["moe.bf16"]
    assert own.log_ratio_quantiles != ref.log_ratio_quantiles
    dec = U._class_terms("decode", pred.breakdown["decode_step"], pred.ops, tables, "bf16",
                         ("decode",), "decode", {}, (), picked)
    moe = next(t for t in dec if t.key == "decode.moe")
    assert moe.tables == ("moe.bf16@vllm_triton",) and moe.seconds > 0
    np.testing.assert_allclose(tables[moe.tables[0]][0], own.log_ratio_quantiles)
    # and the band differs from the one the dtype rule gave (moe.bf16's residuals)
    old = U._class_terms("decode", pred.breakdown["decode_step"], pred.ops, tables, "bf16",
                         ("decode",), "decode", {}, ())
    assert next(t for t in old if t.key == "decode.moe").tables == ("moe.bf16",)


def test_no_scenario_or_no_experts_keeps_the_dtype_rule():
    rs = resolve(_scenario("vllm"))
    tables = U.table_residuals(rs.profile)
    assert U._grouped_gemm_tables(tables, rs.profile, None) is None
    dense = resolve({**_scenario("vllm"), "model": "llama-3.1-8b",
                     "parallelism": {"tp": 1}, "system": {"device": "h100-sxm5-80gb",
                                                          "num_gpus": 1}})
    assert U._grouped_gemm_tables(tables, dense.profile, dense.scenario) is None


def test_band_changes_with_the_engine():
    """predict's TPOT band under vLLM draws moe.bf16@vllm_triton: not generic's band."""
    bands = {e: predict(_scenario(e)).ranges["tpot_s"] for e in ("vllm", "generic")}
    assert bands["vllm"] != bands["generic"]
