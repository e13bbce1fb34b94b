"""Op names a framework file states must be op names the model builds: a misspelt name would
silently turn its charge off (review 2026-12-03 item 13)."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.frameworks import framework_spec
from perfmodel.frameworks_config import FRAMEWORK_NAMES


@pytest.fixture(scope="module")
def forward_gemm_names() -> set[str]:
    """The GEMMs of one dense block under fp8 with SP (the case the norm-fused inputs serve)."""
    s = pm.Scenario(kind="training", model="llama-3.1-8b",
                    system={"device": "h100-sxm5-80gb", "num_gpus": 8},
                    parallelism={"tp": 2, "dp": 4, "sequence_parallel": True},
                    training={"seq_len": 2048, "global_batch": 32, "micro_batch": 1,
                              "precision": "fp8", "framework": {"name": "nemo"}})
    return {o.name for o in pm.predict(s).ops if o.cls == "gemm"}


@pytest.mark.parametrize("framework", FRAMEWORK_NAMES)
def test_norm_fused_inputs_name_gemms_the_model_builds(framework, forward_gemm_names):
    for recipe, facts in framework_spec(framework).fp8_quantise.items():
        unknown = set(facts.norm_fused_inputs) - forward_gemm_names
        assert not unknown, (framework, recipe, unknown, sorted(forward_gemm_names))


def test_the_check_has_names_to_check():
    # NeMo's TE current scaling: the QKV and MLP-up inputs take their amax from the norm
    assert set(framework_spec("nemo").fp8_quantise["tensorwise"].norm_fused_inputs) \
        == {"attn.qkv", "mlp.up"}
