"""A grouped-GEMM table of another format read as a proxy says so (issue 13: gpt-oss-120b on
MI300X with vLLM runs triton_kernels matmul_ogs on MXFP4 weights; the MI300X profile has only
aiter's bf16 / fp8 block-scale fused-MoE tables)."""

from __future__ import annotations

from perfmodel.paths import data_dir
from perfmodel.profile import Curve
from perfmodel.specs.registry import load_profile


def _mi300x():
    return load_profile(data_dir("calibration") / "mi300x.reference.json")


def test_a_proxy_of_another_format_names_itself_and_the_engines_kernels():
    key, why = _mi300x().moe_table("bf16", "mxfp4", ("triton_ogs", "marlin"))
    assert key == "bf16"
    assert why.startswith("moe.bf16 (kernel not recorded) as proxy for triton_ogs/marlin "
                          "w4a16_mxfp4")
    assert "no measured w4a16_mxfp4 grouped-GEMM table" in why


def test_the_generic_engine_and_the_tables_own_format_keep_the_plain_reason():
    prof = _mi300x()
    assert prof.moe_table("bf16", "mxfp4") == ("bf16", "moe.bf16 (no moe.w4a16_mxfp4 table)")
    # the engine's experts in the table's own format: read as measured, no proxy
    assert prof.moe_table("bf16", "", ("vllm_triton",)) == ("bf16", "moe.bf16")
    labelled = prof.model_copy(update={"moe_kernel": {"bf16": "aiter_ck"},
                                       "moe": {"bf16": Curve(values=(0.5,))}})
    assert labelled.moe_table("bf16", "mxfp4", ("triton_ogs",))[1].startswith(
        "moe.bf16 (aiter_ck) as proxy for triton_ogs w4a16_mxfp4")
