"""An engine's MoE kernel may depend on the all-to-all backend (engines/<id>.yaml
``moe.kernels``: one list for any backend, or one per backend). SGLang's fp8 block-scaled
experts run DeepGEMM only under a DeepEP / Mooncake / NIXL all-to-all and fused_moe_triton
without one (sgl-project/sglang layers/quantization/fp8.py
Fp8MoEMethod.is_deepgemm_moe_runner_backend_enabled, engines/sglang.yaml source fp8moerunner)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from perfmodel import ops as O
from perfmodel.api import predict
from perfmodel.engines import A2A_BACKENDS, EngineSpec, MoeFacts
from perfmodel.errors import SpecError
from perfmodel.moe_parallel import all_to_all
from perfmodel.paths import data_dir
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.registry import load_profile, validate

H200 = registry.get_device("h200-sxm-141gb")


def _sglang_with(kernels) -> dict:
    data = yaml.safe_load((data_dir("engines") / "sglang.yaml").read_text())
    data["moe"]["kernels"]["fp8_block"] = kernels
    return data


def test_kernels_per_format_or_per_all_to_all_backend():
    facts = MoeFacts(kernels={"bf16": ["a", "b"], "fp8_block": {"deepep": ["x"], "none": ["y"]}})
    for backend in A2A_BACKENDS:  # a plain list: any backend
        assert facts.kernels_for("bf16", backend) == ("a", "b")
    assert facts.kernels_for("fp8_block", "deepep") == ("x",)
    assert facts.kernels_for("fp8_block", "none") == ("y",)
    assert facts.kernels_for("nvfp4", "deepep") == ()  # not listed: the table as measured
    with pytest.raises(SpecError, match="a2a backend 'pplx'"):
        facts.kernels_for("bf16", "pplx")
    validate(EngineSpec, _sglang_with(["deepgemm"]), what="sglang.yaml")  # the plain form


@pytest.mark.parametrize("kernels, why", [
    ({"deepep": ["deepgemm"], "tp": ["sglang_triton"]}, r"\(got \['deepep', 'tp'\]\)"),
    ({"deepep": ["deepgemm"]}, r"\(got \['deepep'\]\)"),
])
def test_a_bad_all_to_all_backend_is_refused_naming_the_field(kernels, why):
    with pytest.raises(SpecError, match=r"moe\.kernels\.fp8_block: the keys must be exactly "
                                        r"\['none', 'deepep'\] or exactly \['ep1', 'ep_gt1'\] "
                                        + why):
        validate(EngineSpec, _sglang_with(kernels), what="sglang.yaml")


def test_a_plan_uses_an_all_to_all_only_with_one_gpu_per_expert_group_under_dp_attention():
    assert bool(all_to_all(1, 8, 8))  # attention DP8 + EP8: DeepEP
    assert not all_to_all(8, 1, 1)  # TP8: MoE TP
    assert not all_to_all(1, 8, 1)  # attention DP8 + MoE TP8: the DP gather
    assert not all_to_all(2, 4, 4)  # expert TP 2 under DP attention: gathered
    assert not all_to_all(8, 1, 8)  # EP over the TP ranks without DP attention: all-reduce
    np.testing.assert_array_equal(all_to_all(1, np.array([8, 8]), np.array([8, 1])),
                                  [True, False])


def _dsv3(parallelism: dict, engine: str = "sglang") -> dict:
    return {"kind": "inference", "model": "deepseek-v3", "engine": {"name": engine},
            "system": {"device": "h200-sxm-141gb", "num_gpus": 8}, "parallelism": parallelism,
            "inference": {"batch": 64, "prompt_len": 1000, "output_len": 200,
                          "weight_dtype": "fp8_block", "activation_dtype": "fp8"}}


@pytest.mark.parametrize("parallelism, table", [
    ({"tp": 8}, "moe.fp8_block@sglang_triton"),  # TP MoE
    ({"tp": 1, "attention_dp": 8, "ep": 1}, "moe.fp8_block@sglang_triton"),  # DP gather
    ({"tp": 1, "attention_dp": 8, "ep": 8},  # DeepEP: DeepGEMM, no H200 table: its proxy
     "moe.fp8 as proxy for deepgemm fp8_block"),
])
def test_sglang_fp8_block_experts_read_the_kernel_of_their_all_to_all(parallelism, table):
    moe = predict(_dsv3(parallelism)).breakdown["moe"]
    for phase in ("prefill", "decode_step"):
        assert moe[phase]["grouped_gemm_table"].startswith(table), moe[phase]


def test_a_sweep_mixing_backends_times_each_plan_with_its_own_table():
    """One vectorised call over plans with and without an all-to-all gives each plan the
    time a scalar call with its backend gives, and names both tables."""
    prof = load_profile(data_dir("calibration") / "h200-sxm-141gb.reference.json")
    prec = O.Precision.inference("fp8_block", "fp8", "fp8")
    rows = np.array([64.0, 2048.0])
    op = O.grouped_gemm("moe.expert.up", rows * 8, 4096, 7168, 32, prec)
    mask = np.array([True, False])
    swept = op_times([op], Roofline(H200, prof, engine="sglang", moe_a2a=mask))
    for i, a2a in enumerate(mask):
        one = O.grouped_gemm("moe.expert.up", rows[i] * 8, 4096, 7168, 32, prec)
        alone = op_times([one], Roofline(H200, prof, engine="sglang", moe_a2a=bool(a2a)))
        assert float(np.asarray(swept.time[0])[i]) == pytest.approx(float(alone.time[0]))
    why = swept.moe_tables["moe.expert.up"]
    assert "all-to-all, EP 1: moe.fp8 as proxy for deepgemm" in why
    assert "no all-to-all, EP 1: moe.fp8_block@sglang_triton" in why
