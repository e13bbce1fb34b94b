"""The dense GEMM band follows the table the engine's GEMM kernel reads (uncertainty
``_dense_gemm_tables``, the roofline's ``CalibrationProfile.gemm_table`` lookup): on B200 nvfp4
TensorRT-LLM reads ``gemm.nvfp4@trtllm_torch_flow`` (its own fit error), vLLM / SGLang /
generic ``gemm.nvfp4`` (FlashInfer CuTe DSL); nvfp4 weights on H100 (no fp4 tensor cores) run
W4A16 in a bf16 GEMM and take ``gemm.bf16``'s residuals."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel import uncertainty as U
from perfmodel.resolve import resolve


def _scenario(device: str, engine: str, weight_dtype: str = "nvfp4") -> dict:
    sc = {"kind": "inference", "model": "llama-3.1-8b",
          "system": {"device": device, "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"batch": 1, "prompt_len": 1024, "output_len": 128,
                        "weight_dtype": weight_dtype}}
    if engine != "generic":
        sc["engine"] = {"name": engine}
    return sc


@pytest.mark.parametrize(("device", "engine", "weight_dtype", "table"), [
    ("b200", "trtllm", "nvfp4", "gemm.nvfp4@trtllm_torch_flow"),
    ("b200", "vllm", "nvfp4", "gemm.nvfp4"),
    ("b200", "sglang", "nvfp4", "gemm.nvfp4"),
    ("b200", "generic", "nvfp4", "gemm.nvfp4"),
    ("b200", "trtllm", "bf16", "gemm.bf16"),  # no bf16 kernel named: the reference table
    ("h100-sxm5-80gb", "generic", "nvfp4", "gemm.bf16"),  # W4A16 on Hopper
    ("h100-sxm5-80gb", "vllm", "fp8", "gemm.fp8"),
])
def test_dense_band_reads_the_engines_table(device, engine, weight_dtype, table):
    rs = resolve(_scenario(device, engine, weight_dtype))
    tables = U.table_residuals(rs.profile)
    assert U._dense_gemm_tables(tables, rs.profile, rs.scenario) == (table,)
    # the roofline's own lookup gives the same key
    dtype, kernels = U._dense_gemm(rs.scenario)
    assert f"gemm.{rs.profile.gemm_table(dtype, kernels)[0]}" == table


@pytest.mark.parametrize(("engine", "table"), [("vllm", "gemm.fp8"), ("generic", "gemm.bf16")])
def test_dense_band_follows_the_activations_the_engine_runs(engine, table):
    """fp8 weights with bf16 activations asked for on H100: vLLM runs them W8A8 anyway (its
    Fp8LinearMethod takes Marlin W8A16 only below SM 8.9; engines/vllm.yaml
    quantization.formats), so its GEMMs read gemm.fp8; the generic engine keeps the W8A16
    asked for, a bf16 GEMM."""
    sc = _scenario("h100-sxm5-80gb", engine, "fp8")
    sc["inference"]["activation_dtype"] = "bf16"
    rs = resolve(sc)
    tables = U.table_residuals(rs.profile)
    assert U._dense_gemm_tables(tables, rs.profile, rs.scenario) == (table,)


def test_trtllm_decode_gemm_term_draws_its_own_fit_error():
    """The decode step's GEMM term draws from TensorRT-LLM's nvfp4 table (held-out p90 9.7 %
    on B200, docs/calibration.md), not FlashInfer's (15.2 %): its residual quantiles are that
    table's recorded ones."""
    rs = resolve(_scenario("b200", "trtllm"))
    tables = U.table_residuals(rs.profile)
    fe = {f.table: f for f in rs.profile.fit_errors}
    trt, fi = fe["gemm.nvfp4@trtllm_torch_flow"], fe["gemm.nvfp4"]
    assert trt.p90_ape < fi.p90_ape
    dense = U._dense_gemm_tables(tables, rs.profile, rs.scenario)
    terms = U._class_terms("decode", {"gemm": 1e-3, "attention": 1e-4}, [], tables, "bf16",
                           ("decode",), "decode", {}, dense)
    gemm = next(t for t in terms if t.key == "decode.gemm")
    assert gemm.tables == ("gemm.nvfp4@trtllm_torch_flow",)
    np.testing.assert_allclose(tables[gemm.tables[0]][0], trt.log_ratio_quantiles)


def test_no_scenario_keeps_every_gemm_table():
    rs = resolve(_scenario("b200", "vllm"))
    tables = U.table_residuals(rs.profile)
    everything = tuple(t for t in tables if t.startswith("gemm."))
    assert U._dense_gemm_tables(tables, rs.profile, None) == everything
    assert "gemm.nvfp4@trtllm_torch_flow" in everything
