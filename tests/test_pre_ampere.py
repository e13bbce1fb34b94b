"""Pre-Ampere devices do not get FlashAttention's efficiency (calibration/default.json
``attention_kernels``, profile.attention_default).

Independent facts the tests check against:

* FlashAttention-2 runs from compute capability 8.0 (flash-attn v2.0.0 csrc/flash_attn/
  flash_api.cpp: TORCH_CHECK(is_sm90 || is_sm8x, "FlashAttention only supports Ampere GPUs or
  newer.")); PyTorch SDPA's memory-efficient (xFormers CUTLASS) backend from 5.0
  (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp @001f694a,
  check_mem_efficient_hardware_support [sm50, sm121]).
* the memory-efficient kernel's SM throughput on a T4 (fp16, batch 4, 32 heads, head dim 128,
  forward, sequence 512..16k): 27.77, 29.18, 29.98, 30.29, 30.16, 30.23 %
  (ssiu/flash-attention-turing a2eb8a60 utils/Compute_Throughput.png).
* on a V100 that kernel is about as fast as vanilla PyTorch attention: forward 5 % slower on
  median, 25 % faster on average (facebookresearch/xformers PR #362, fp16).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from perfmodel import ops as O
from perfmodel.profile import AttentionKernel
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.model import ModelSpec

T4_SM_THROUGHPUT = (27.77, 29.18, 29.98, 30.29, 30.16, 30.23)  # %, published figure
PREC = O.Precision(compute="fp16", act=2, weight=2, kv=2)


def _model(head_dim: int = 96, heads: int = 16) -> ModelSpec:
    return ModelSpec(id="mha", name="mha", num_layers=1, hidden_size=heads * head_dim,
                     num_heads=heads, head_dim=head_dim, ffn_hidden_size=1, vocab_size=1)


def _attention(flash: bool, phase: str = "prefill", head_dim: int = 96, s: float = 1024.0,
               b: float = 8.0) -> list[O.Op]:
    return O.attention_ops(_model(head_dim), b, s, s, s * s, O.Shard(), PREC, flash, phase)


def _time(ops: list[O.Op], device: str, profile=None) -> float:
    profile = profile or registry.default_profile()
    return float(op_times(ops, Roofline(registry.get_device(device), profile)).total())


def test_readings_are_the_copied_ones():
    """The published readings above are the ones copied with their citation into
    calibration/sources (the file the default profile's notes point to)."""
    path = (Path(__file__).resolve().parents[1] / "calibration" / "sources" / "measured"
            / "published" / "pre_ampere_attention_points.json")
    points = {p["id"]: p for p in json.loads(path.read_text())["points"]}
    t4 = points["PREAMPERE-MEMEFF-T4-SM-THROUGHPUT"]["measured"]
    assert tuple(t4["memory_efficient_pct"]) == T4_SM_THROUGHPUT


def test_gates_are_the_kernels_own():
    """The default profile lists FlashAttention-2 from 8.0 and the memory-efficient kernel
    from 5.0, and the latter's efficiency is the median of the published T4 readings."""
    kernels = registry.default_profile().attention_kernels
    assert [k.min_compute_capability for k in kernels] == ["8.0", "5.0"]
    assert kernels[0].efficiency is None  # the attention constant, FlashAttention's
    assert kernels[1].efficiency == pytest.approx(
        round(statistics.median(T4_SM_THROUGHPUT) / 100, 2))


@pytest.mark.parametrize(("device", "expected"), [
    ("v100-sxm2-32gb", 0.30), ("t4", 0.30),          # sm70, sm75: no FlashAttention
    ("a100-sxm4-80gb", 0.73), ("l4", 0.73), ("h100-sxm5-80gb", 0.73),
    ("mi300x", 0.73)])                                # gfx942: not an NVIDIA capability
def test_fused_prefill_efficiency_by_capability(device, expected):
    """Hand calculation: a compute-bound fused forward on the default profile takes
    FLOPs / (fp16 peak x efficiency) + the kernel overhead."""
    prof = registry.default_profile()
    (core,) = _attention(True)
    dev = registry.get_device(device)
    peak = dev.peak_tflops["fp16"] * 1e12
    assert core.flops / peak > core.bytes / dev.memory_bandwidth  # compute-bound here
    want = core.flops / (peak * expected) + prof.kernel_overhead_s
    assert _time([core], device) == pytest.approx(want, rel=1e-9)


def test_unfused_path_runs_gemms_and_decode_keeps_the_attention_constant():
    """The unfused path's batched GEMMs run no fused kernel (cuBLAS batched GEMMs, timed at
    the profile's GEMM efficiency: the default profile's 0.79, no curve), and decode calls run
    the engines' own kernels: neither takes the memory-efficient kernel's efficiency on a
    V100."""
    prof = registry.default_profile()
    dev = registry.get_device("v100-sxm2-32gb")
    qk = _attention(False)[0]
    assert qk.name == "attn.qk" and qk.cls == "gemm"
    t_c, t_m = qk.flops / (dev.peak_tflops["fp16"] * 1e12), qk.bytes / dev.memory_bandwidth
    want = max(t_c, t_m) / prof.defaults.gemm + prof.kernel_overhead_s
    assert _time([qk], "v100-sxm2-32gb") == pytest.approx(want, rel=1e-9)
    for phase in ("prefill", "backward", "decode"):
        expected = 0.73 if phase == "decode" else 0.30
        assert prof.attention_default("7.0", phase)[0] == pytest.approx(expected)


def test_v100_fused_attention_is_no_faster_than_twice_the_unfused_path():
    """xFormers PR #362: on a V100 the CUTLASS kernel's fp16 forward is about as fast as
    vanilla attention (5 % slower on median, 25 % faster on average). With FlashAttention's
    efficiency the model had it 2-4x faster; with the memory-efficient kernel's it is within
    a factor of two either way."""
    for head_dim in (64, 128):
        fused = _time(_attention(True, head_dim=head_dim), "v100-sxm2-32gb")
        unfused = _time(_attention(False, head_dim=head_dim), "v100-sxm2-32gb")
        assert 0.5 <= fused / unfused <= 2.0, (head_dim, fused / unfused)


def test_the_gate_is_data_not_a_device_name():
    """Lowering FlashAttention's threshold in the data gives a V100 its efficiency back;
    raising it takes it from an A100: the mechanism reads the capability, not the id."""
    prof = registry.default_profile()
    fa, mem = prof.attention_kernels
    lowered = prof.model_copy(update={"attention_kernels": [
        fa.model_copy(update={"min_compute_capability": "7.0"}), mem]})
    raised = prof.model_copy(update={"attention_kernels": [
        fa.model_copy(update={"min_compute_capability": "9.0"}), mem]})
    core = _attention(True)
    assert _time(core, "v100-sxm2-32gb", lowered) < _time(core, "v100-sxm2-32gb")
    assert _time(core, "a100-sxm4-80gb", raised) > _time(core, "a100-sxm4-80gb")


def test_reference_profiles_list_no_kernels():
    """Measured and reference profiles time attention with their own curves: the capability
    table is the default profile's only."""
    assert not registry.profile_for("a100-sxm4-80gb").attention_kernels


def test_a_kernel_needs_a_capability():
    with pytest.raises(ValueError, match="is not a compute capability"):  # pydantic wraps it
        AttentionKernel(kernel="some kernel", min_compute_capability="gfx942",
                        source="a source")
