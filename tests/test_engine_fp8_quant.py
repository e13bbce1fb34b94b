"""Issue 13 item 3 (review): who runs the fp8 activation quantise is an engine fact.

engines/<id>.yaml ``quantization.fp8_activation`` says whether a per-tensor fp8 GEMM's bf16
input is quantised inside its producer (``fused``) or by a kernel of its own
(``static_kernel`` / ``per_token_kernel`` / ``dynamic_kernel``), optionally by condition
(``fused_when``: TensorRT-LLM's all-reduce + RMSNorm + quant fusion needs TP > 1, hidden > 4096
and no attention DP). The inference pass (``inference._pass_ops``, also the serving pass) adds
``ops.activation_quant_ops`` before each such GEMM, timed at the measured quantise tables
(``elementwise_rate.fp8_quant``: TRT-LLM 1.3.0rc20 ``scale_matrix_perf``; ``fp8_amax``:
``computescale_perf``). Hand numbers below; the generic engine adds nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from fused_norm_hand import elementwise_s, fusion_s

import perfmodel as pm
from perfmodel import inference as I
from perfmodel import ops as O
from perfmodel.engines import EngineSpec, fp8_activation_kernels, get_engine
from perfmodel.errors import SpecError
from perfmodel.profile import CalibrationProfile
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.scenario import Scenario

H100 = "h100-sxm5-80gb"


def _scenario(engine: str | None, model: str, gpus: int, wd: str, ad: str, batch: int = 16,
              version: str | None = None, device: str = H100) -> Scenario:
    data = {"kind": "inference", "model": model,
            "system": {"device": device, "num_gpus": gpus}, "parallelism": {"tp": gpus},
            "inference": {"batch": batch, "prompt_len": 1024, "output_len": 64,
                          "weight_dtype": wd,
                             **({"activation_dtype": ad} if ad else {})}}
    if engine is not None:
        data["engine"] = {"name": engine, **({"version": version} if version else {})}
    return Scenario(**data)


def _decode(engine, model, gpus, wd, ad, **kw) -> dict:
    return pm.predict(_scenario(engine, model, gpus, wd, ad, **kw)).breakdown["decode_step"]


def _profile(device: str = H100) -> CalibrationProfile:
    return registry.load_file(CalibrationProfile, f"calibration/{device}.reference.json")


# ---- the fact in the engine files --------------------------------------------------------

def test_engine_files_state_the_quantise():
    assert get_engine("sglang").quantization.fp8_activation.mode == "static_kernel"
    trt = get_engine("trtllm").quantization.fp8_activation
    assert (trt.mode, trt.unfused) == ("fused", "static_kernel")
    assert (trt.fused_when.min_tp, trt.fused_when.hidden_above,
            trt.fused_when.attention_dp) == (2, 4096, False)
    assert get_engine("trtllm", "0.6.1").quantization.fp8_activation.mode is None
    assert get_engine("vllm").quantization.fp8_activation.mode == "fused"  # newest: 0.14
    assert get_engine("vllm", "0.10.2").quantization.fp8_activation.mode == "static_kernel"
    assert get_engine("vllm", "0.11.2").quantization.fp8_activation.mode == "static_kernel"
    assert get_engine("vllm", "0.12.0").quantization.fp8_activation.mode == "fused"  # -O2
    assert get_engine("vllm", "0.12.0").version == "0.12"
    assert get_engine("vllm", "0.15.0").quantization.fp8_activation.mode == "fused"
    assert get_engine("llamacpp").quantization.fp8_activation.mode is None


def test_fusion_conditions_over_plan_arrays():
    """TRT-LLM: fused only where TP >= 2, hidden > 4096 and no attention DP."""
    mode, on = fp8_activation_kernels("trtllm", None, None, 8192, np.array([1, 2, 8]), 1)
    assert mode == "static_kernel" and list(on) == [1.0, 0.0, 0.0]
    _, on = fp8_activation_kernels("trtllm", None, None, 4096, np.array([1, 2, 8]), 1)
    assert list(on) == [1.0, 1.0, 1.0]  # Llama-3-8B: hidden 4096 is not > 4096
    _, on = fp8_activation_kernels("trtllm", None, None, 8192, 8, np.array([1, 2]))
    assert list(on) == [0.0, 1.0]
    assert fp8_activation_kernels("sglang", None, None, 8192, 8, 1) == ("static_kernel", 1.0)
    assert fp8_activation_kernels("generic", None, None, 8192, 1, 1) == (None, 0.0)
    assert fp8_activation_kernels("vllm", "0.15.0", None, 4096, 1, 1) == (None, 0.0)


def _spec(quant) -> dict:
    base = get_engine("sglang").model_dump(exclude_none=True)
    return {**base, "quantization": {"fp8_activation": quant}}


@pytest.mark.parametrize("quant, match", [
    ("fussed", "fp8_activation"),
    ({"mode": "fused", "fused_when": {"min_tp": 2}}, "fused_when and unfused go together"),
    ({"mode": "static_kernel", "fused_when": {"min_tp": 2}, "unfused": "static_kernel"},
     r"fp8_activation\.mode"),
    ({"mode": "fused", "fused_when": {"min_tpp": 2}, "unfused": "static_kernel"}, "min_tpp"),
])
def test_bad_facts_are_refused_naming_the_field(quant, match):
    with pytest.raises((SpecError, ValueError), match=match):
        EngineSpec(**_spec(quant))


def test_a_stated_quantise_needs_a_source():
    data = _spec("dynamic_kernel")
    data["field_sources"] = {k: v for k, v in data["field_sources"].items()
                             if not k.startswith("quantization")}
    with pytest.raises((SpecError, ValueError), match=r"quantization\.fp8_activation"):
        EngineSpec(**data)


# ---- the kernels and their bytes ---------------------------------------------------------

def test_quant_kernels_by_mode_hand_bytes():
    gemm = O.Op(name="mlp.down", cls=O.GEMM, flops=0.0, bytes=0.0, dtype="fp8", count=32.0,
                shape=(16, 4096, 14336))
    elems = 16 * 14336
    (static,) = O.activation_quant_ops(gemm, "static_kernel")
    assert (static.kernel, static.bytes, static.shape[0], static.count) == \
        ("fp8_quant", 3 * elems, elems, 32.0)
    (tok,) = O.activation_quant_ops(gemm, "per_token_kernel")
    assert tok.bytes == 3 * elems + 4 * 16  # the fp32 scale of each of the 16 rows
    amax, quant = O.activation_quant_ops(gemm, "dynamic_kernel", on=np.array([0.0, 1.0]))
    assert (amax.kernel, amax.bytes, quant.kernel) == ("fp8_amax", 2 * elems, "fp8_quant")
    assert list(amax.count) == [0.0, 32.0]
    with pytest.raises(ValueError, match="fused"):
        O.activation_quant_ops(gemm, "fused")


@pytest.mark.parametrize("device", ["h100-sxm5-80gb", "h200-sxm-141gb", "b200", "b300",
                                    "gb200", "gb300"])
def test_shipped_profiles_carry_the_measured_quantise_rates(device):
    prof = _profile(device)
    assert prof.elementwise_rate["fp8_quant"] > prof.elementwise_rate["cast"]
    assert prof.elementwise_rate["fp8_amax"] > 0
    tables = {e.table for e in prof.fit_errors}
    assert {"elementwise.fp8_quant", "elementwise.fp8_amax"} <= tables


def _quant_s(prof: CalibrationProfile, device: str, elems: float) -> float:
    """Hand: the profile's kernel floor + the larger of the rate time and the bytes at the
    device's bandwidth x the profile's memory efficiency at that size."""
    bw = registry.get_device(device).memory_bandwidth_gbps * 1e9
    nbytes = 3.0 * elems
    eff = float(prof.memory_efficiency(np.array(nbytes)))
    return prof.kernel_overhead_s + max(elems / prof.elementwise_rate["fp8_quant"],
                                        nbytes / (bw * eff))


def test_sglang_llama3_8b_fp8_decode_adds_one_quantise_per_gemm_by_hand():
    """SGLang, Llama-3-8B W8A8 on 1 x H100, decode at batch 16: per layer four fp8 GEMMs
    (qkv, o: k 4096; gate-up: k 4096; down: k 14336), each input quantised by its own kernel;
    the LM head stays bf16 (SGLang's Fp8Config quantises LinearBase layers only, not
    ParallelLMHead: formats.KEPT_16BIT): 32 x 4 = 128 kernels, 96 of 16 x 4096 elements and 32 of
    16 x 14336, each at the measured static quantise's rate (elementwise_rate.fp8_quant) plus
    the profile's kernel floor. Nothing else moves against the generic engine but SGLang's
    fused residual add + RMSNorm (``fused_norm_hand.fusion_s``)."""
    prof = _profile()
    sgl = _decode("sglang", "llama-3-8b", 1, "fp8", "fp8")
    gen = _decode(None, "llama-3-8b", 1, "fp8", "fp8")
    hand = 96 * _quant_s(prof, H100, 16 * 4096) + 32 * _quant_s(prof, H100, 16 * 14336)
    fusion = fusion_s(prof, H100, 16, 4096, 32)
    assert sgl["elementwise"] - gen["elementwise"] == pytest.approx(hand + fusion, rel=1e-9)
    assert sgl["gemm"] == pytest.approx(gen["gemm"])
    assert sgl["attention"] == pytest.approx(gen["attention"])
    assert hand == pytest.approx(128 * 2.51e-6, rel=0.02)  # ~2.5 us each, 0.32 ms a step


def test_measured_table_at_decode_sizes_against_the_core():
    """The measured static quantise at m 16, k 4096 on H100 is 1.40 us (scale_matrix_perf);
    the core charges its one kernel floor (kernel_overhead_s 2.41 us) plus the bytes: the
    decode-size quantise is over-charged by about 1 us (no per-kind fixed time in profiles)."""
    pd = pytest.importorskip("pandas")
    tab = pd.read_parquet("calibration/sources/measured/aiconfigurator/systems/data/h100_sxm/"
                          "quantize/trtllm/1.3.0rc20/scale_matrix_perf.parquet")
    row = tab[(tab.m == 16) & (tab.k == 4096)].latency.iloc[0] * 1e-3
    core = _quant_s(_profile(), H100, 16 * 4096)
    assert row == pytest.approx(1.40e-6, rel=0.01)
    assert 1.5 < core / row < 2.0


def test_op_times_of_the_quant_op_match_the_hand_time():
    prof = _profile()
    op = O.fp8_quant_pass("x", "fp8_quant", 16 * 14336, 3.0 * 16 * 14336)
    t = float(op_times([op], Roofline(registry.get_device(H100), prof)).time[0])
    assert t == pytest.approx(_quant_s(prof, H100, 16 * 14336), rel=1e-9)


# ---- fused engines: W8A8 never slower than W8A16; generic unchanged ---------------------------

@pytest.mark.parametrize("engine, model, gpus, version", [
    ("trtllm", "llama-3-70b", 2, None),      # TP 2, hidden 8192: the all-reduce fusion
    ("trtllm", "llama-3-70b", 8, None),
    ("vllm", "llama-3-8b", 1, "0.15.0"),     # -O2: fuse_norm_quant
])
def test_fused_engines_add_no_kernel_and_w8a8_is_not_slower(engine, model, gpus, version):
    w8a8 = _decode(engine, model, gpus, "fp8", "fp8", version=version)
    w8a16 = _decode(engine, model, gpus, "fp8", None, version=version)  # engine default
    bf16 = _decode(engine, model, gpus, "bf16", "bf16", version=version)
    assert w8a8["total_s"] <= w8a16["total_s"] * (1 + 1e-9)
    assert w8a8["total_s"] < bf16["total_s"]
    gen = _decode(None, model, gpus, "fp8", "fp8")
    hidden, layers = {"llama-3-70b": (8192, 80), "llama-3-8b": (4096, 32)}[model]
    fusion = fusion_s(_profile(), H100, 16, hidden, layers)  # fused add + RMSNorm, 2 B
    if engine == "trtllm":  # TP > 1: the fused add + RMSNorm run inside the all-reduce, and
        # the attention op applies RoPE (engines/trtllm.yaml kernels): neither is a kernel
        e = 16 * hidden
        fusion -= layers * 2 * elementwise_s(_profile(), H100, e, 4 * 2.0, "rmsnorm")
        rope = 16 * (64 + 8) * 128 / gpus  # (heads + KV heads) x head dim of Llama-3-70B
        fusion -= layers * elementwise_s(_profile(), H100, rope, 2 * 2.0, "rope")
    assert w8a8["elementwise"] == pytest.approx(gen["elementwise"] + fusion)  # no quantise kernel


def test_trtllm_tp1_and_small_hidden_run_the_static_kernel():
    """At TP 1 (no all-reduce to fuse into) and at hidden 4096 (the fusion's size condition)
    TensorRT-LLM quantises in its own kernel, as SGLang does."""
    small = _decode("trtllm", "llama-3-8b", 2, "fp8", "fp8")
    small_gen = _decode(None, "llama-3-8b", 2, "fp8", "fp8")
    assert small["elementwise"] > small_gen["elementwise"]
    tp1 = _decode("trtllm", "llama-3-8b", 1, "fp8", "fp8")
    sgl = _decode("sglang", "llama-3-8b", 1, "fp8", "fp8")
    gen = _decode(None, "llama-3-8b", 1, "fp8", "fp8")
    # the same quantise kernels; TensorRT-LLM's attention op applies RoPE (no RoPE kernel)
    rope = 32 * elementwise_s(_profile(), H100, 16 * (32 + 8) * 128, 2 * 2.0, "rope")
    assert tp1["elementwise"] - gen["elementwise"] == \
        pytest.approx(sgl["elementwise"] - gen["elementwise"] - rope)


def test_generic_engine_runs_no_quant_kernel(monkeypatch):
    before = pm.predict(_scenario(None, "llama-3-8b", 1, "fp8", "fp8")).tpot_s
    monkeypatch.setattr(I, "fp8_activation_kernels", lambda *a, **k: (None, 0.0))
    assert pm.predict(_scenario(None, "llama-3-8b", 1, "fp8", "fp8")).tpot_s == before
    sgl_off = pm.predict(_scenario("sglang", "llama-3-8b", 1, "fp8", "fp8")).tpot_s
    monkeypatch.undo()
    assert pm.predict(_scenario("sglang", "llama-3-8b", 1, "fp8", "fp8")).tpot_s > sgl_off


def test_bf16_and_block_scaled_gemms_get_no_per_tensor_quantise():
    """Only per-tensor fp8 GEMMs (compute dtype fp8): bf16 adds nothing on SGLang."""
    sgl = _decode("sglang", "llama-3-8b", 1, "bf16", "bf16")
    gen = _decode(None, "llama-3-8b", 1, "bf16", "bf16")
    fusion = fusion_s(_profile(), H100, 16, 4096, 32)  # its fused add + RMSNorm only
    assert sgl["elementwise"] == pytest.approx(gen["elementwise"] + fusion)


def test_shipped_quantise_rates_are_the_converter_on_the_copied_tables():
    """converters.fp8_quantize_rates on H100's TRT-LLM 1.3.0rc20 quantize folder reproduces the
    profile's cast / fp8_quant / fp8_amax rates and held-out errors exactly."""
    pytest.importorskip("pyarrow")
    from perfmodel.calibrate.converters import fp8_quantize_rates

    prof = _profile()
    rates, errs, unc = fp8_quantize_rates(
        "calibration/sources/measured/aiconfigurator/systems/data/h100_sxm/quantize/trtllm/"
        "1.3.0rc20", H100, prof)
    assert rates == {k: prof.elementwise_rate[k] for k in ("cast", "fp8_quant", "fp8_amax")}
    shipped = {e.table: e for e in prof.fit_errors}
    assert all(shipped[e.table].median_ape == e.median_ape for e in errs)
    assert unc == {k: prof.uncertainty[k] for k in unc}
