"""engine llamacpp reads int4 / int8 as GGUF files hold them (specs.scenario._llamacpp_defaults):
32-value blocks with an fp16 scale (Q4_0 / Q4_K 4.5 bits, Q8_0 8.5 bits: ggml-common.h block
sizes) and, for a plain weight_dtype, the token embedding at the file's type and the LM head at
int8 (llama-quant.cpp gives output.weight Q6_K, 6.56 bits, or keeps Q8_0). Other engines keep
group 128 and 16-bit ends."""

from __future__ import annotations

import pytest

from perfmodel.api import as_scenario, predict
from perfmodel.errors import SpecError


def _sc(engine: str, inf_extra: dict, model: str = "llama-3-8b"):
    inf = {"batch": 1, "prompt_len": 1, "output_len": 8, **inf_extra}
    return as_scenario({"kind": "inference", "model": model,
                        "system": {"device": "rtx-4090", "num_gpus": 1},
                        "engine": engine, "inference": inf})


def test_plain_int4_is_a_gguf_file():
    inf = _sc("llamacpp", {"weight_dtype": "int4"}).inference
    assert inf.quant_group_size == 32 and inf.weight_dtype == "int4"
    assert (inf.weight_formats["embeddings"], inf.weight_formats["lm_head"]) == ("int4", "int8")


def test_weights_are_the_gguf_bytes():
    # Llama-3-8B: 6.98 B parameters in the layers at 4.5 bits, token_embd 128256 x 4096 at
    # 4.5 bits, output 128256 x 4096 at 8.5 bits (Q6_K modelled as int8 g32)
    pred = predict(_sc("llamacpp", {"weight_dtype": "int4"}))
    vocab, h = 128256, 4096
    layers = 32 * (4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336)
    expect = (layers + vocab * h) * 0.5625 + vocab * h * 1.0625
    got = pred.breakdown["memory"]["weights"]
    assert got == pytest.approx(expect, rel=0.005)


def test_an_explicit_group_and_mapping_win():
    inf = _sc("llamacpp", {"weight_dtype": {"default": "int4"}, "quant_group_size": 64}).inference
    assert inf.quant_group_size == 64 and inf.weight_formats["lm_head"] == "bf16"


def test_other_engines_keep_their_defaults():
    inf = _sc("generic", {"weight_dtype": "int4"}).inference
    assert inf.quant_group_size == 128 and inf.weight_formats["lm_head"] == "bf16"


def test_tied_embeddings_take_the_head_type():
    # a tied token_embd gets output.weight's rule: both int8, no tie conflict
    inf = _sc("llamacpp", {"weight_dtype": "int4"}, model="falcon-7b").inference
    assert inf.weight_formats["embeddings"] == inf.weight_formats["lm_head"] == "int8"


def test_16_bit_weights_are_untouched():
    inf = _sc("llamacpp", {"weight_dtype": "fp16"}).inference
    assert inf.weight_dtype == "fp16" and "lm_head" not in inf.weight_formats
    with pytest.raises(SpecError):
        _sc("llamacpp", {"weight_dtype": "int3"})
