"""What an engine runs for a narrow-weight checkpoint, by device capability (issue 13 item 3:
"W8A8 must not decode slower than weight-only fp8"): one mechanism, engines/<id>.yaml
``quantization.formats`` read by ``formats.engine_activation``.

fp8 weights with 16-bit activations asked for, on a GPU with fp8 tensor cores: vLLM and SGLang
run W8A8 all the same (Fp8LinearMethod: Marlin W8A16 only below SM 8.9 or when forced by
VLLM_TEST_FORCE_FP8_MARLIN / SGLANG_FORCE_FP8_MARLIN), TensorRT-LLM has no fp8 weight-only
QuantAlgo. So the engines' "W8A16" prediction is their W8A8 one. On A100 (no fp8 tensor cores)
vLLM and SGLang run Marlin W8A16 and TensorRT-LLM refuses fp8. The generic engine has no rule:
the user's choice stands.
"""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engines import RULE_FORMATS, format_rule
from perfmodel.formats import RULE_ACTIVATION, engine_activation
from perfmodel.specs.registry import get_device

H100, A100 = "h100-sxm5-80gb", "a100-sxm4-80gb"
K, N = 8192, (8192 + 2 * 1024) // 2  # Llama-3-70B qkv over hidden 8192, TP 2 (64 + 2 x 8 heads)


def _predict(device, engine, act, batch=1, weight="fp8", n=2):
    inf = {"batch": batch, "prompt_len": 1024, "output_len": 128, "weight_dtype": weight,
           "activation_dtype": act, "kv_dtype": "fp8"}
    kw = dict(kind="inference", model="llama-3-70b", system={"device": device, "num_gpus": n},
              parallelism={"tp": n}, inference=inf)
    if engine:
        kw["engine"] = {"name": engine}
    return pm.predict(pm.Scenario(**kw))


def _qkv(pred):
    return next(op for op in pred.ops if op.name == "attn.qkv" and op.phase == "decode")


#: operators of the residual-add / norm path, which the engines fuse (engines/<id>.yaml
#: kernels.fused_residual_norm) and the generic engine does not
NORM_PATH = ("attn.norm", "mlp.norm", "attn.residual", "mlp.residual", "head.norm",
             "attn.residual_norm", "mlp.residual_norm", "embed.input_norm")


def _norm_path_s(pred):
    return sum(op.total_s for op in pred.ops if op.phase == "decode" and op.name in NORM_PATH)


def test_rule_formats_match_their_activations():
    assert set(RULE_FORMATS) == set(RULE_ACTIVATION)


def test_engine_facts():
    for eng in ("vllm", "sglang", "trtllm"):
        for fmt in ("fp8", "fp8_block", "nvfp4"):
            assert format_rule(eng, fmt).with_tensor_cores == "narrow"
    assert format_rule("vllm", "fp8").without_tensor_cores == {"nvidia": "weight_only"}
    assert format_rule("sglang", "fp8").without_tensor_cores == {"nvidia": "weight_only"}
    assert format_rule("trtllm", "fp8").without_tensor_cores == {"nvidia": "refuse"}
    assert format_rule("vllm", "fp8", "0.14").with_tensor_cores == "narrow"  # overlays inherit
    assert format_rule("generic", "fp8") is None


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_w8a16_request_runs_w8a8_on_h100(engine, batch):
    """The issue's repro (Llama-3-70B, 2 x H100, fp8 weights and KV): asking for bf16
    activations gives the engine's W8A8 prediction exactly, so W8A8 never decodes slower than
    what the engine runs for "weight-only fp8"."""
    w8a8 = _predict(H100, engine, "fp8", batch)
    w8a16 = _predict(H100, engine, "bf16", batch)
    assert w8a16.tpot_s == pytest.approx(w8a8.tpot_s, rel=1e-12)
    for part, v in w8a8.breakdown["decode_step"].items():
        assert w8a16.breakdown["decode_step"][part] == pytest.approx(v, rel=1e-12)
    # by hand: the qkv GEMM runs on the fp8 tensor cores, 2mKN at H100 SXM's 1978.9 TFLOP/s
    # (datasheet), and reads K x N weights at 1 B plus fp8 inputs (not the bf16 ones)
    qkv = _qkv(w8a16)
    assert qkv.compute_s == pytest.approx(2 * batch * K * N / 1978.9e12, rel=1e-9)
    assert K * N + batch * K <= qkv.bytes < K * N + 2 * batch * (K + N)


def test_generic_engine_honours_the_choice():
    """No engine rule: W8A16 asked for on H100 runs the bf16 GEMM against fp8 weights (2KN at
    the bf16 peak, 989.4 TFLOP/s, plus the dequantise 2KN at the fp32 peak, 67 TFLOP/s)."""
    w8a16 = _predict(H100, None, "bf16")
    assert w8a16.tpot_s != pytest.approx(_predict(H100, None, "fp8").tpot_s, rel=1e-6)
    assert _qkv(w8a16).compute_s == pytest.approx(2 * K * N / 989.4e12 + 2 * K * N / 67e12,
                                                  rel=1e-9)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a100_runs_marlin_w8a16(engine):
    """A100 has no fp8 tensor cores: the W8A16 request stays weight-only (Marlin), the same as
    the generic engine's, and differs from the H100 case: 2KN at A100's bf16 peak (312
    TFLOP/s) plus the dequantise at its fp32 peak (19.5 TFLOP/s), no fp8 quantise kernel."""
    pred = _predict(A100, engine, "bf16")
    qkv = _qkv(pred)
    assert qkv.compute_s == pytest.approx(2 * K * N / 312e12 + 2 * K * N / 19.5e12, rel=1e-9)
    assert qkv.bytes == pytest.approx(K * N + 2 * K + 2 * N, rel=1e-12)
    assert not any(op.name.endswith(".fp8_quant") for op in pred.ops)
    gen = _predict(A100, None, "bf16")  # the same but for the engine's fused add + norm
    assert pred.tpot_s - _norm_path_s(pred) == pytest.approx(gen.tpot_s - _norm_path_s(gen),
                                                             rel=1e-9)
    # H100 has fp8 tensor cores: the same request runs W8A8, its GEMM at the fp8 peak (twice
    # the 989 TFLOP/s bf16 one; the input's quantise a kernel or fused, by engine version)
    h100 = _predict(H100, engine, "bf16")
    assert _qkv(h100).compute_s <= 0.5 * 2 * K * N / 989e12 * (1 + 1e-6)


def test_trtllm_refuses_fp8_on_a100():
    with pytest.raises(pm.SpecError) as err:
        _predict(A100, "trtllm", "bf16")
    msg = str(err.value)
    assert "trtllm" in msg and A100 in msg and "fp8" in msg and "\n" not in msg


def test_the_replacement_is_noted_in_one_line():
    h100 = get_device(H100)
    run = engine_activation(h100, "vllm", None, None, "fp8", (), "bf16", True)
    assert (run.activation_dtype, run.weight_only) == ("fp8", False)
    assert "W8A8" in run.note and "bf16" in run.note and "\n" not in run.note
    same = engine_activation(h100, "generic", None, None, "fp8", (), "bf16", True)
    assert (same.activation_dtype, same.weight_only, same.note) == ("bf16", True, None)
    unasked = engine_activation(h100, "vllm", None, None, "fp8", (), "bf16", False)
    assert unasked.note is None and unasked.activation_dtype == "bf16"
    a100 = engine_activation(get_device(A100), "vllm", None, None, "fp8", (), "bf16", True)
    assert (a100.activation_dtype, a100.weight_only, a100.note) == ("bf16", True, None)


def test_scenario_note_for_the_prediction_warnings():
    """``formats.engine_activation_warning``: the line for a scenario that named bf16 itself
    under vLLM on H100; none for the generic engine or an unset activation dtype."""
    from perfmodel.formats import engine_activation_warning

    def sc(engine, act=None):
        inf = {"batch": 1, "prompt_len": 128, "weight_dtype": "fp8"}
        if act:
            inf["activation_dtype"] = act
        return pm.Scenario(kind="inference", model="llama-3-70b", engine={"name": engine},
                           system={"device": H100, "num_gpus": 2}, parallelism={"tp": 2},
                           inference=inf)

    dev = get_device(H100)
    line = engine_activation_warning(dev, sc("vllm", "bf16").engine, sc("vllm", "bf16").inference)
    assert line.startswith("engine vllm runs fp8 weights on h100-sxm5-80gb as W8A8")
    for s in (sc("generic", "bf16"), sc("vllm")):
        assert engine_activation_warning(dev, s.engine, s.inference) is None


def test_prediction_says_when_the_engine_replaces_the_activation_dtype():
    """The replacement is stated in the prediction's warnings (resolve.format_warnings), and
    only where it happens: vLLM on H100 replaces an explicit bf16 with fp8; generic keeps it."""
    def warnings(engine):
        sc = pm.Scenario(kind="inference", model="llama-3-8b", engine={"name": engine},
                         system={"device": "h100-sxm5-80gb", "num_gpus": 1},
                         inference={"batch": 1, "prompt_len": 128, "output_len": 8,
                                    "weight_dtype": "fp8", "activation_dtype": "bf16"})
        return [w for w in pm.predict(sc).warnings if "activation_dtype bf16 is replaced" in w]

    assert len(warnings("vllm")) == 1 and "W8A8" in warnings("vllm")[0]
    assert warnings("generic") == []
