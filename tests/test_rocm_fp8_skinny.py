"""fp8 decode on ROCm: vLLM's wvSplitKQ, and fp8 never slower than bf16 at batch 1.

vLLM 0.9.2 - 0.13.0 (engines/vllm.yaml source ``vllmwvsplitkq``): a per-tensor fp8 W8A8 linear
layer on MI3xx (gfx942 / gfx950) with one token and k % 16 == 0 runs ``ops.wvSplitKQ``
(rocm_per_tensor_w8a8_scaled_mm), otherwise torch._scaled_mm. No kernel time of wvSplitKQ is
published; engines/vllm.yaml times it, labelled a proxy, at the bf16 wvSplitK kernel's
one-token fraction of the datasheet HBM bandwidth (0.753 on MI300X, vLLM PR #29937's Base_300
table, source ``vllmwvsplitk``) on the fp8 bytes. The expected times below are computed by
hand from those numbers, the device's 5.3 TB/s and the profile's per-kernel floor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
MI300X_BW = 5.3e12  # hardware_specs/devices/mi300x.yaml memory_bandwidth_gbps 5300
WVSPLITK_ONE_TOKEN = 0.753  # engines/vllm.yaml gemm.skinny.hbm_fraction.mi300x[0] (PR #29937)
FLOOR = json.loads((ROOT / "calibration/mi300x.reference.json").read_text())["kernel_overhead_s"]
# Llama-3.1-8B linear layers (hidden 4096, 32 q / 8 kv heads of 128, intermediate 14336):
# (outputs n, inner k) of the fused QKV, output, gate+up and down projections
LLAMA8B = {"attn.qkv": (6144, 4096), "attn.out": (4096, 4096), "mlp.up": (28672, 4096),
           "mlp.down": (4096, 14336)}


def _predict(engine: str, device: str, weight_dtype: str, batch: int = 1,
             model: str = "llama-3.1-8b", activation_dtype: str | None = None):
    inference = {"batch": batch, "prompt_len": 128, "output_len": 8,
                 "weight_dtype": weight_dtype}
    if activation_dtype:
        inference["activation_dtype"] = activation_dtype
    # the releases this file describes (0.9.2 - 0.13.0); no version is the newest family, 0.14
    named = {"name": engine, "version": "0.13.0"} if engine == "vllm" else engine
    return pm.predict({"kind": "inference", "model": model, "engine": named,
                       "system": {"device": device}, "inference": inference})


def _decode_ops(pred) -> dict[str, float]:
    return {op.name: op.time_s for op in pred.ops if op.phase == "decode" and op.cls == "gemm"}


def test_vllm_fp8_gemm_at_one_token_is_wvsplitkq_by_hand():
    ops = _decode_ops(_predict("vllm", "mi300x", "fp8"))
    for name, (n, k) in LLAMA8B.items():
        # one fp8 token in (k B), the fp8 weight (k n B), a bf16 row out (2 n B)
        # (ops counts the input row at 2 B, 0.01 - 0.02 % of these bytes: within rel 1e-3)
        nbytes = k + k * n + 2 * n
        want = nbytes / (MI300X_BW * WVSPLITK_ONE_TOKEN) + FLOOR
        assert ops[name] == pytest.approx(want, rel=1e-3), name
    # the LM head stays bf16 (unquantised, vLLM's wvSplitK): 128256 x 4096 at 2 B
    head = (4096 * 2 + 128256 * 4096 * 2 + 128256 * 2) / (MI300X_BW * WVSPLITK_ONE_TOKEN)
    assert ops["head.lm"] == pytest.approx(head + FLOOR, rel=1e-3)


def test_vllm_fp8_wvsplitkq_runs_at_one_token_only():
    """At 2 tokens vLLM 0.9.2 - 0.13.0 runs torch._scaled_mm: the profile's curve, the same
    operator time the generic engine gives (its GEMMs read the same table)."""
    facts = get_engine("vllm").gemm.skinny
    assert facts.limits("fp8") == (1, 16) and facts.limits("bf16") == (4, 8)
    vllm, generic = (_decode_ops(_predict(e, "mi300x", "fp8", batch=2)) for e in
                     ("vllm", "generic"))
    for name, (n, k) in LLAMA8B.items():
        skinny = (2 * k + k * n + 4 * n) / (MI300X_BW * 0.702) + FLOOR  # the 2-token fraction
        assert vllm[name] == pytest.approx(generic[name], rel=1e-9), name
        assert vllm[name] != pytest.approx(skinny, rel=1e-3), name


def test_dtype_limits_must_name_a_kernel_dtype():
    from perfmodel.engines import SkinnyGemmFacts

    base = {"archs": ["gfx942"], "dtypes": ["bf16"], "max_tokens": 4, "min_out": 9,
            "k_multiple": 8}
    with pytest.raises(ValueError, match=r"dtype_limits\.fp8"):
        SkinnyGemmFacts(**base, dtype_limits={"fp8": {"max_tokens": 1}})
    with pytest.raises(ValueError, match=r"dtype_limits\.bf16"):
        SkinnyGemmFacts(**base, dtype_limits={"bf16": {"max_tokens": 5}})


DEVICES = sorted(p.stem for p in (ROOT / "hardware_specs/devices").glob("*.yaml"))
ENGINES = ("generic", "vllm", "sglang", "trtllm", "llamacpp")


@pytest.mark.parametrize("device", DEVICES)
def test_fp8_decode_at_batch_1_never_slower_than_bf16(device):
    """For every engine that runs fp8 weights on ``device`` (W8A8 where the device has fp8
    tensor cores, weight-only where it has not: Marlin on A100), a batch-1 decode step with fp8
    weights, and W8A8 asked for, reads half the weight bytes and is not slower than bf16. An
    engine that refuses fp8 there (TensorRT-LLM below SM 8.9) raises and is skipped."""
    slower = []
    for engine in ENGINES:
        try:
            bf16 = _predict(engine, device, "bf16").tpot_s
        except SpecError as err:  # a device with no sourced peak cannot be modelled (a10g)
            assert "no sourced peak" in str(err)
            return
        for act in (None, "fp8"):
            try:
                fp8 = _predict(engine, device, "fp8", activation_dtype=act).tpot_s
            except SpecError:
                continue  # the engine has no fp8 path on this device
            if fp8 > bf16:
                slower.append(f"{engine} (activation {act}): fp8 {fp8 * 1e3:.2f} ms > bf16 "
                              f"{bf16 * 1e3:.2f} ms")
    assert not slower, f"{device}: " + "; ".join(slower)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("batch", [2, 4, 16])
def test_mi300x_fp8_decode_beyond_one_token_not_slower_than_bf16(engine, batch):
    """Past wvSplitKQ's one token, per-tensor fp8 runs hipBLASLt; the MI300X profile has no
    per-tensor fp8 table, so it reads the block-scaled fp8 curve (aiter, fitted from M = 1;
    profile._GEMM_FALLBACK fp8 -> fp8_block -> int8), not int8's (M >= 64 rows of 6.5-7.9 MB
    weights, ~0.2 of HBM bandwidth when extrapolated to a decode GEMM), which made fp8 decode
    1.1-1.8x slower than bf16 (reviewer, 2026-12-05)."""
    bf16 = _predict(engine, "mi300x", "bf16", batch=batch).tpot_s
    fp8 = _predict(engine, "mi300x", "fp8", batch=batch).tpot_s
    assert fp8 <= bf16, f"{engine} batch {batch}: fp8 {fp8 * 1e3:.2f} > bf16 {bf16 * 1e3:.2f} ms"


def test_gpt_oss_mxfp4_experts_are_not_the_dense_emulation_rule():
    """gpt-oss keeps attention, router, embeddings and LM head in bf16 and has no dense MLP;
    its MXFP4 experts run vLLM's Mxfp4MoEMethod (matmul_ogs W4A16 on gfx942, engines/vllm.yaml
    moe.mxfp4), not QuarkOCP_MX's dense emulation (quantization.formats.mxfp4): no dequantise
    kernels in the step and no 'emulates' warning. A dense Llama in MXFP4 (a Quark checkpoint)
    is emulated and says so."""
    gpt = pm.predict({"kind": "inference", "model": "gpt-oss-120b", "engine": "vllm",
                      "system": {"device": "mi300x"},
                      "inference": {"batch": 1, "prompt_len": 1024, "output_len": 8}})
    assert not any(op.name.endswith((".dequant", ".qdq")) for op in gpt.ops)
    assert not any("emulates" in w for w in gpt.warnings)
    assert any("mxfp4 weights run weight-only" in w for w in gpt.warnings)
    dense = _predict("vllm", "mi300x", "mxfp4", model="llama-3.1-8b")
    assert any(op.name == "mlp.up.dequant" for op in dense.ops)
    assert any("engine vllm emulates mxfp4" in w for w in dense.warnings)


def test_the_proxy_timing_of_wvsplitkq_is_said_in_the_warnings():
    """The fp8 kernel's time is a proxy (engines/vllm.yaml gemm.skinny.proxies): a vLLM fp8
    prediction on MI300X says so; bf16 (wvSplitK, measured) and SGLang (no skinny kernel) do
    not."""
    def said(pred):
        return [w for w in pred.warnings if "wvSplitKQ" in w]

    note = said(_predict("vllm", "mi300x", "fp8"))
    assert len(note) == 1 and "no published time" in note[0] and "gemm.skinny" in note[0]
    assert not said(_predict("vllm", "mi300x", "bf16"))
    assert not said(_predict("sglang", "mi300x", "fp8"))
    assert not said(_predict("vllm", "h100-sxm5-80gb", "fp8"))
    assert not said(_predict("vllm", "mi300x", "fp8", batch=64))  # above its 1 token: never runs


def test_a_proxy_names_a_dtype_the_kernel_runs():
    """A proxy note for a dtype the kernel does not take is refused, naming the field."""
    from perfmodel.engines import SkinnyGemmFacts

    with pytest.raises((SpecError, ValueError), match=r"gemm\.skinny\.proxies"):
        SkinnyGemmFacts(dtypes=["bf16"], proxies={"fp8": "x"})
