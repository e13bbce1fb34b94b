"""A linear-attention / Mamba mixer's state bytes are derived, never an input (review 1203c
finding 3): ``state_bytes`` / ``conv_bytes`` given in a model are refused with a message that
names the field and says to set ``ssm_dtype``; a loaded spec has the generic rule's bytes
(the config's dtype, else the model dtype: dtypes.nbytes), an engine's rule replaces them on
resolving, and a dumped spec loads again (the derived fields are left out of dumps)."""

from __future__ import annotations

from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.attention_variants import engine_state_model, mamba_state_bytes
from perfmodel.errors import SpecError
from perfmodel.resolve import resolve
from perfmodel.specs.common import validate
from perfmodel.specs.model import ModelSpec
from perfmodel.zoo import load_hf_config

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
NEMOTRON_H = CONFIGS / "nvidia--Nemotron-H-56B-Base-8K_config.json"
Q35 = CONFIGS / "Qwen--Qwen3.5-27B_config.json"
# Nemotron-H-56B: 256 heads x 64 x state 256 SSM elements, conv 3 x (16384 + 2 x 8 x 256)
SSM, CONV = 256 * 64 * 256, 3 * (256 * 64 + 2 * 8 * 256)


@pytest.mark.parametrize("section, field, hint", [
    ("mamba", "state_bytes", "set mamba.ssm_dtype"),
    ("mamba", "conv_bytes", "memory.state_dtype.conv"),
])
def test_a_given_state_bytes_is_refused_naming_the_field(section, field, hint):
    data = load_hf_config(NEMOTRON_H).model_dump()
    data[section] = {**data[section], field: 4.0}
    with pytest.raises(SpecError, match=rf"{section}\.{field}: derived.*{hint}"):
        validate(ModelSpec, data)


def test_linear_attention_state_bytes_refused_too():
    data = load_hf_config(Q35).model_dump()
    data["linear_attention"] = {**data["linear_attention"], "state_bytes": 2.0}
    with pytest.raises(SpecError, match=r"linear_attention\.state_bytes: .*set "
                                        r"linear_attention\.ssm_dtype"):
        validate(ModelSpec, data)


def test_the_input_is_ssm_dtype():
    """The review's case: a Nemotron-H whose user wants a 4 B SSM state says ssm_dtype fp32;
    every engine then keeps it at 4 B (generic: the config's dtype; SGLang / vLLM: the config's
    dtype over their fp32 default)."""
    data = load_hf_config(NEMOTRON_H).model_dump()
    assert "state_bytes" not in data["mamba"] and "conv_bytes" not in data["mamba"]
    data["mamba"] = {**data["mamba"], "ssm_dtype": "fp32"}
    spec = validate(ModelSpec, data)
    assert (spec.mamba.state_bytes, spec.mamba.conv_bytes) == (4.0, 2.0)
    for engine in ("generic", "sglang", "vllm"):
        assert float(mamba_state_bytes(engine_state_model(spec, engine))) == SSM * 4 + CONV * 2
    # no dtype stated: the generic rule's model dtype (bf16, 2 B) until an engine's rule
    bare = load_hf_config(NEMOTRON_H)
    assert (bare.mamba.ssm_dtype, bare.mamba.state_bytes) == (None, 2.0)


def test_a_resolved_scenario_dumps_and_loads_again():
    """A resolved model carries its engine's bytes (SGLang: 4 B), and its dump loads again (the
    derived fields are not in it), resolving to the same bytes."""
    sc = pm.as_scenario({
        "kind": "inference", "engine": "sglang", "model": str(NEMOTRON_H),
        "system": {"device": "h200-sxm-141gb", "num_gpus": 8}, "parallelism": {"tp": 8},
        "inference": {"batch": 1, "prompt_len": 1024, "output_len": 1}})
    rs = resolve(sc)
    assert rs.scenario.model.mamba.state_bytes == 4.0
    again = pm.as_scenario(rs.scenario.model_dump(exclude_none=True))
    assert again.model.mamba.state_bytes == 2.0  # the generic rule on loading
    assert resolve(again).scenario.model.mamba.state_bytes == 4.0
