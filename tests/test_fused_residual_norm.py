"""Issue 9 item 1: the residual add and the norm after it as one kernel, an engine fact.

engines/<id>.yaml ``kernels.fused_residual_norm`` (vLLM ``fused_add_rms_norm``, SGLang
``fused_add_rmsnorm``, TensorRT-LLM's FlashInfer fused add + RMSNorm) lists the norm kinds an
engine fuses; inference._pass_ops (the inference and serving pass) rewrites its operators with
``ops.fuse_residual_norms`` / ``ops.fuse_end_norms``. Hand numbers below: bytes and kernel
counts of the fused operator, the unchanged list of an engine without the fact, and the fused
step never slower than the two kernels it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import ops as O
from perfmodel.engines import fused_residual_norms, get_engine
from perfmodel.profile import CalibrationProfile
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.model import ModelSpec

H100 = "h100-sxm5-80gb"

# a small Llama-like model: 2 layers, hidden 256, RMSNorm
SMALL = {"id": "tiny-rms", "name": "tiny-rms", "num_layers": 2, "hidden_size": 256,
         "num_heads": 4, "num_kv_heads": 2, "ffn_hidden_size": 512, "vocab_size": 1000,
         "norm": "rmsnorm", "activation": "swiglu", "gated_mlp": True,
         "position_embedding": "rope", "tie_embeddings": False}
NORM_PATH = ("attn.norm", "mlp.norm", "attn.residual", "mlp.residual", "head.norm",
             "attn.residual_norm", "mlp.residual_norm", "embed.input_norm")


def _small(**kw) -> ModelSpec:
    return ModelSpec(**{**SMALL, **kw})


def _bf16() -> O.Precision:
    return O.Precision.inference("bf16", "bf16", "bf16")


def _predict(engine: str | None, model=None, batch: int = 4, gpus: int = 1, **engine_kw):
    data = {"kind": "inference", "model": model or dict(SMALL),
            "system": {"device": H100, "num_gpus": gpus}, "parallelism": {"tp": gpus},
            "inference": {"batch": batch, "prompt_len": 64, "output_len": 8,
                          "weight_dtype": "bf16", "kv_dtype": "bf16"}}
    if engine:
        data["engine"] = {"name": engine, **engine_kw}
    return pm.predict(pm.Scenario(**data))


def _calls(pred, phase: str = "decode") -> dict[str, float]:
    out: dict[str, float] = {}
    for op in pred.ops:
        if op.phase == phase and op.name in NORM_PATH:
            out[op.name] = out.get(op.name, 0.0) + op.calls
    return out


# ---- the fact in the engine files ------------------------------------------------------------

def test_engine_files_state_the_fusion():
    for eng in ("vllm", "sglang", "trtllm"):
        assert get_engine(eng).kernels.fused_residual_norm == ["rmsnorm"]
    assert fused_residual_norms("vllm", "0.11.2") == ("rmsnorm",)
    assert fused_residual_norms("vllm", "0.13.0") == ("rmsnorm",)   # family overlay inherits
    assert fused_residual_norms("vllm", "0.2.0") == ()               # before vLLM PR #1667
    assert fused_residual_norms("trtllm", "1.2.0rc2") == ("rmsnorm",)
    assert fused_residual_norms("trtllm", "0.6.1") == ()             # TensorRT engine builds
    assert fused_residual_norms("trtllm", None, "tensorrt") == ()
    assert fused_residual_norms("llamacpp") == ()
    assert fused_residual_norms("generic") == ()
    assert "kernels.fused_residual_norm" in get_engine("sglang").field_sources


# ---- the fused operator by hand ----------------------------------------------------------------

def test_fused_layer_by_hand():
    """One layer at t = 8 tokens, h = 256, bf16: the two adds and two norms (2 x 3 x t h x 2 B
    and 2 x 2 x t h x 2 B) become two fused kernels of 4 x t h x 2 B = 16384 B each, with
    (1 + 4) FLOPs per element; every other operator is unchanged and in place."""
    model, prec, t, h = _small(), _bf16(), 8, 256
    layer = O.layer_forward_ops(model, False, t, 1, 65, 65, O.Shard(), prec, True, "decode")
    fused = O.fuse_residual_norms(model, layer, prec, ("rmsnorm",))
    names = [op.name for op in fused]
    assert len(fused) == len(layer) - 2
    assert names[0] != "attn.norm" and "mlp.norm" not in names
    assert [n for n in names if n.endswith("residual_norm")] == ["attn.residual_norm",
                                                                  "mlp.residual_norm"]
    assert names[-1] == "mlp.residual_norm"                  # the add after the MLP, in place
    assert names.index("attn.residual_norm") == names.index("attn.out") + 1
    for op in fused:
        if op.name.endswith("residual_norm"):
            assert op.bytes == 4 * t * h * 2 == 16384
            assert op.vector_flops == 5 * t * h
            assert op.shape == (t * h,) and op.kernel == "rmsnorm" and op.count == 1.0
    kept = [op for op in layer if op.name not in NORM_PATH]
    assert [op.name for op in fused if op.name not in NORM_PATH] == [op.name for op in kept]
    before = sum(op.bytes for op in layer if op.name in NORM_PATH)
    after = sum(op.bytes for op in fused if op.name in NORM_PATH)
    assert (before, after) == (2 * 3 * t * h * 2 + 2 * 2 * t * h * 2, 2 * 16384)


def test_ends_by_hand():
    """The final norm runs in the last layer's fused kernel; the first layer's input norm (no
    add before it) runs alone after the embedding, over every token of the pass (t = 8):
    2 x t h x 2 B = 8192 B."""
    model, prec = _small(), _bf16()
    ends = O.embedding_ops(model, 8, 1, prec) + O.head_ops(model, 2, 1, prec, loss=False)
    out = O.fuse_end_norms(model, ends, 8, prec, ("rmsnorm",))
    assert [op.name for op in out] == ["embed.lookup", "embed.input_norm", "head.lm"]
    first = out[1]
    assert first.bytes == 2 * 8 * 256 * 2 == 8192 and first.kernel == "rmsnorm"


def test_kernel_counts_of_a_pass():
    """Per decode pass of the 2-layer model: generic 4 x 2 norm / add kernels + the final norm
    = 9; vLLM 2 x 2 fused kernels + the first layer's norm = 5 (2 fewer per layer)."""
    gen, vllm = _calls(_predict(None)), _calls(_predict("vllm"))
    assert gen == {"attn.norm": 2, "attn.residual": 2, "mlp.norm": 2, "mlp.residual": 2,
                   "head.norm": 1}
    assert vllm == {"attn.residual_norm": 2, "mlp.residual_norm": 2, "embed.input_norm": 1}
    assert sum(gen.values()) - sum(vllm.values()) == 2 * 2


# ---- the flag off: today's operator list ------------------------------------------------------

def test_flag_off_returns_the_list_unchanged():
    model, prec = _small(), _bf16()
    layer = O.layer_forward_ops(model, False, 4, 1, 9, 9, O.Shard(), prec, True, "decode")
    ends = O.embedding_ops(model, 4, 1, prec) + O.head_ops(model, 4, 1, prec, loss=False)
    for norms in ((), None, ("layernorm",)):
        assert O.fuse_residual_norms(model, layer, prec, norms) is layer
        assert O.fuse_end_norms(model, ends, 4, prec, norms) is ends
    ln = _small(norm="layernorm")  # vLLM fuses RMSNorm only
    ln_layer = O.layer_forward_ops(ln, False, 4, 1, 9, 9, O.Shard(), prec, True, "decode")
    assert O.fuse_residual_norms(ln, ln_layer, prec, ("rmsnorm",)) is ln_layer
    no_final = _small(final_norm=False)  # the last add has no norm to fuse with
    assert not O.fuses_residual_norms(no_final, ("rmsnorm",))


@pytest.mark.parametrize("engine, kw", [("llamacpp", {}), ("trtllm", {"version": "0.6.1"})])
def test_engines_without_the_fact_keep_the_generic_norm_path(engine, kw):
    """An engine whose file does not state the fusion runs the generic operator list's norm
    path: the same operators, calls and per-call bytes as the generic engine."""
    gen, other = _predict(None), _predict(engine, **kw)
    assert _calls(other) == _calls(gen)
    g = {op.name: op.bytes for op in gen.ops if op.name in NORM_PATH}
    o = {op.name: op.bytes for op in other.ops if op.name in NORM_PATH}
    assert o == g


# ---- property: the fused kernel is never slower ------------------------------------------------

@pytest.mark.parametrize("profile", ["h100-sxm5-80gb.reference", "a100-sxm4-80gb.reference",
                                     "default"])
@pytest.mark.parametrize("act", ["bf16", "fp8"])
def test_fused_never_slower(profile, act):
    """Over 1 .. 65536 tokens and hidden 256 .. 16384, one fused add + norm takes no longer than
    the add and the norm it replaces, on measured and default profiles; so a pass with the
    fusion is never slower in its norm path (the rest of the list is the same operators)."""
    prof = registry.load_file(CalibrationProfile, f"calibration/{profile}.json")
    device = registry.get_device("a100-sxm4-80gb" if profile.startswith("a100") else H100)
    roof = Roofline(device, prof)
    prec = O.Precision.inference(act, act, "bf16")
    for h in (256, 2880, 8192, 16384):
        model = _small(hidden_size=h, num_heads=h // 64, num_kv_heads=h // 64)
        for t in (1.0, 7.0, 64.0, 512.0, 4096.0, 65536.0):
            add = O.residual_op(model, "mlp", t, prec)
            norm = O.norm_op("attn.norm", model, t, prec)
            fused = O.residual_norm_op(model, "mlp.residual_norm", t * h, prec)
            times = op_times([add, norm, fused], roof).time
            assert float(times[2]) <= float(times[0]) + float(times[1])
            assert float(times[2]) >= float(times[1])  # and no faster than the norm alone


def test_decode_step_not_slower_with_the_fusion():
    """End to end on the same engine's facts otherwise: vLLM's decode step minus its norm path
    equals the generic one minus its own (nothing else moves), and its norm path is faster."""
    gen, vllm = _predict(None, batch=8), _predict("vllm", batch=8)

    def path(pred):
        return sum(op.total_s for op in pred.ops if op.phase == "decode" and op.name in NORM_PATH)

    assert path(vllm) < path(gen)
    assert np.isfinite(vllm.tpot_s) and vllm.tpot_s > 0
