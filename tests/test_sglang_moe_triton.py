"""SGLang's fp8 block-scaled experts without DeepEP: the Triton fused MoE (engines/sglang.yaml
source fp8moerunner), as aiconfigurator-core 0.12.0 measured SGLang 0.5.14 running it."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel.calibrate.moe_kernels import kernel_labels
from perfmodel.engines import get_engine, moe_kernels

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "calibration" / "sources" / "measured" / "aiconfigurator" / "systems" / "data"


@pytest.mark.parametrize("device", ["h100_sxm", "h200_sxm"])
def test_sglang_measured_fp8_block_experts_ran_fused_moe_triton(device):
    """Every SGLang 0.5.14 fp8_block row on Hopper names fused_moe_triton (TP / EP MoE without
    DeepEP, the collector's setting), which moe_kernels.yaml labels ``sglang_triton``; the
    DeepSeek-V3 expert shape (hidden 7168, inter 2048, 256 experts top-8) is among them at
    moe_tp 8 (the TP8 serving cases)."""
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(MEASURED / device / "moe" / "sglang" / "0.5.14" / "moe_perf.parquet")
    rows = df[df.moe_dtype == "fp8_block"]
    assert set(rows.kernel_source) == {"sglang_fused_moe_triton"}
    assert set(rows.version) == {"0.5.14"}
    assert kernel_labels()["sglang_fused_moe_triton"] == "sglang_triton"
    deepseek = rows[(rows.hidden_size == 7168) & (rows.inter_size == 2048)
                    & (rows.num_experts == 256) & (rows.topk == 8) & (rows.moe_tp_size == 8)]
    assert len(deepseek) > 0


def test_sglang_fp8_block_kernel_facts_cite_the_runner_selection():
    """The engine file lists fp8_block kernels per all-to-all backend (fp8.py
    is_deepgemm_moe_runner_backend_enabled): DeepGEMM under DeepEP, the kernels SGLang ran
    without one (FlashInfer TRT-LLM-gen on Blackwell, fused_moe_triton on Hopper) otherwise."""
    assert moe_kernels("sglang", "fp8_block", a2a="deepep") == (("deepgemm",), "fp8")
    assert moe_kernels("sglang", "fp8_block", a2a="none") == (
        ("flashinfer_trtllm", "sglang_triton"), "fp8")
    spec = get_engine("sglang")
    assert "fp8moerunner" in {s.id for s in spec.sources}
    assert "fp8moerunner" in spec.field_sources["moe.kernels"]
