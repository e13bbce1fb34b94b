"""vLLM on ROCm gfx9 runs few-token unquantised GEMMs on its own wvSplitK kernel.

vllm/model_executor/layers/utils.py ``rocm_unquantized_gemm_impl`` (engines/vllm.yaml source
``vllmskinny``): on gfx90a / gfx942 / gfx950, for bf16 / fp16 inputs with k % 8 == 0, a GEMM of
0 < n <= 4 tokens and m > 8 outputs runs ``ops.wvSplitK``; everything else torch's F.linear.
engines ``gemm.skinny`` states those conditions and the kernel's measured weight-stream rate
(vLLM PR #29937's MI300 kernel table, source ``vllmwvsplitk``); ``inference._with_skinny_gemms``
times those GEMMs at it. The expected times below are computed by hand from the PR's numbers.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import inference as I
from perfmodel import ops as O
from perfmodel.engines import SkinnyGemmFacts, get_engine, skinny_gemm_facts
from perfmodel.errors import SpecError
from perfmodel.profile import CalibrationProfile
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.scenario import Scenario

MI300X_BW = 5.3e12  # hardware_specs/devices/mi300x.yaml memory_bandwidth_gbps
# vLLM PR #29937, New4_mi300 kernel times (us) of the two one-token shapes beyond the cache
NEW4_ONE_TOKEN = [(13312 * 16384 * 2, 109.732323), (8192 * 28672 * 2, 116.622955)]


def _plan(version: str | None = "0.17.0", engine: str = "vllm"):
    return SimpleNamespace(tp_all_reduce=engine, engine_version=version, engine_variant=None)


def _roof(device: str = "mi300x", version: str | None = "0.17.0") -> Roofline:
    profile = registry.load_file(CalibrationProfile, f"calibration/{device}.reference.json")
    return Roofline(registry.devices()[device], profile, padded=True, engine="vllm",
                    engine_version=version)


def _time(op: O.Op, device: str = "mi300x", version: str | None = "0.17.0",
          engine: str = "vllm") -> tuple[float, float]:
    """(profile time, time after the engine's skinny kernel) of one operator."""
    roof = _roof(device, version)
    plain = float(op_times([op], roof).time[0])
    return plain, float(I._with_skinny_gemms(op_times([op], roof), roof,
                                             _plan(version, engine)).time[0])


def _gemm(m, n=51200, k=5120, name="mlp.up", prec=None) -> O.Op:
    return O.gemm(name, m, n, k, prec or O.Precision(compute="bf16", act=2.0, weight=2.0))


def test_the_dispatch_conditions_are_the_sources():
    facts = get_engine("vllm", "0.17.0").gemm.skinny
    assert facts.archs == ["gfx90a", "gfx942", "gfx950"]  # on_gfx9()
    assert (facts.max_tokens, facts.min_out, facts.k_multiple) == (4, 9, 8)  # n<=4, m>8, k%8
    assert facts.dtypes == ["bf16", "fp16", "fp8"]  # fp8: wvSplitKQ (test_rocm_fp8_skinny)
    assert get_engine("vllm", "0.10.0").gemm.skinny.hbm_fraction["mi300x"][3] is None
    assert get_engine("sglang").gemm.skinny.hbm_fraction == {}
    mi355x = registry.devices()["mi355x"]  # gfx950: on_gfx9, but no measured fraction
    assert skinny_gemm_facts("vllm", "0.17.0", None, mi355x) is None


def test_one_token_up_projection_by_hand():
    """Qwen3-32B gate+up at batch 1 (51200 x 5120 bf16): weights / (0.755 x 5.3 TB/s)."""
    rates = [b / (t * 1e-6) for b, t in NEW4_ONE_TOKEN]  # 3.975, 4.028 TB/s
    frac = round(sum(rates) / len(rates) / MI300X_BW, 3)
    assert frac == pytest.approx(0.755)
    op = _gemm(1)
    overhead = _roof().profile.kernel_overhead_s
    want = op.bytes / (frac * MI300X_BW) + overhead  # 524.4 MB -> 131.0 us + 3.1 us
    plain, skinny = _time(op)
    assert skinny == pytest.approx(want, rel=1e-9)
    assert skinny < 0.6 * plain  # the profile's curve streamed it at ~2.2 TB/s


@pytest.mark.parametrize("tokens, frac", [(2, 0.737), (3, 0.707), (4, 0.668)])
def test_fraction_by_token_count(tokens, frac):
    op = _gemm(tokens)
    want = op.bytes / (frac * MI300X_BW) + _roof().profile.kernel_overhead_s
    assert _time(op)[1] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("op, why", [
    (_gemm(5), "five tokens: F.linear"),
    (_gemm(1, n=8), "m > 8 outputs needed"),
    (_gemm(1, k=5124), "k % 8 != 0"),
    (O.gemm("mlp.up", 2, 51200, 5120, O.Precision(compute="fp8", act=1.0, weight=1.0)),
     "fp8 GEMM at 2 tokens: wvSplitKQ takes 1 (gemm.skinny.dtype_limits)"),
    (O.gemm("mlp.up", 1, 51200, 5120, O.Precision(compute="bf16", act=2.0, weight=0.5,
                                                  weight_dequant=True, weight_format="int4")),
     "weight-only int4: its own kernel"),
])
def test_outside_the_conditions_the_profile_times_it(op, why):
    plain, skinny = _time(op)
    assert skinny == plain, why


def test_routed_experts_are_left_to_the_moe_tables():
    op = _gemm(1, name="moe.expert.up")
    op.groups = 4.0
    plain, skinny = _time(op)
    assert skinny == plain


def test_other_devices_engines_and_null_fractions_keep_the_profile():
    op = _gemm(1)
    assert _time(op, device="h100-sxm5-80gb")[1] == _time(op, device="h100-sxm5-80gb")[0]
    assert _time(op, engine="generic")[1] == _time(op, engine="generic")[0]
    plain, skinny = _time(_gemm(4), version="0.10.0")  # the pre-PR kernel's 4-token cliff: null
    assert skinny == plain
    plain, skinny = _time(_gemm(1), version="0.10.0")
    assert skinny == pytest.approx(_gemm(1).bytes / (0.753 * MI300X_BW)
                                   + _roof().profile.kernel_overhead_s, rel=1e-9)


def test_array_of_plans_matches_scalars():
    ops_ = _gemm(np.array([1.0, 3.0, 8.0]))
    roof = _roof()
    got = I._with_skinny_gemms(op_times([ops_], roof), roof, _plan()).time[0]
    for j, m in enumerate((1.0, 3.0, 8.0)):
        assert got[j] == pytest.approx(_time(_gemm(m))[1], rel=1e-12)


@pytest.mark.parametrize("facts, match", [
    ({"archs": ["gfx942"], "dtypes": ["bf16"], "max_tokens": 4, "min_out": 9, "k_multiple": 8,
      "hbm_fraction": {"mi300x": [0.7, 0.7]}}, "one fraction"),
    ({"archs": ["gfx942"], "dtypes": ["bf16"], "max_tokens": 2, "min_out": 9, "k_multiple": 8,
      "hbm_fraction": {"mi300x": [0.7, 1.4]}}, r"\(0, 1\]"),
    ({"archs": ["gfx942"], "dtypes": ["bf16"], "max_tokens": 2,
      "hbm_fraction": {"mi300x": [0.7, 0.7]}}, "min_out"),
])
def test_bad_facts_are_refused_naming_the_field(facts, match):
    with pytest.raises((SpecError, ValueError), match=match):
        SkinnyGemmFacts(**facts)


def test_dense_decode_on_mi300x_follows_its_bandwidth():
    """Qwen3-32B bf16, batch 1, vLLM 0.17: MI300X (5.3 TB/s) now decodes faster than an H100
    (3.35 TB/s); before, the profile's curve had it slower (30.4 vs 25.1 ms)."""
    def tpot(device):
        return pm.predict(Scenario(**{
            "kind": "inference",
            "model": "tests/data/hf_configs/aiconfigurator-0.12.0/Qwen--Qwen3-32B_config.json",
            "system": {"device": device, "num_gpus": 1}, "parallelism": {"tp": 1},
            "engine": {"name": "vllm", "version": "0.17.0"},
            "inference": {"batch": 1, "prompt_len": 1024, "output_len": 256,
                          "weight_dtype": "bf16", "activation_dtype": "bf16"}})).tpot_s
    mi300x, h100 = tpot("mi300x"), tpot("h100-sxm5-80gb")
    assert mi300x < h100
    # the GEMMs stream ~64 GB of weights per token at 0.755 x 5.3 TB/s = 4.0 TB/s: >= 16 ms
    assert 16e-3 < mi300x < 22e-3


def test_fractions_belong_to_the_device_they_were_measured_on():
    """MI325X is gfx942 like MI300X but streams at 6.0 TB/s: MI300X's measured fractions do
    not carry over as fractions; its proxy entry is MI300X's achieved bandwidth over its own
    6.0 TB/s (0.14 family: 0.755 x 5.3 / 6.0 = 0.667); every key is a device the kernel runs on."""
    mi300x = skinny_gemm_facts("vllm", "0.17.0", None, registry.get_device("mi300x"))
    mi325x = registry.get_device("mi325x")
    assert str(mi325x.compute_capability) == "gfx942"
    proxy = skinny_gemm_facts("vllm", "0.17.0", None, mi325x)
    assert proxy[1][0] == pytest.approx(0.755 * 5.3 / 6.0, abs=1e-3) != mi300x[1][0]
    for version in ("0.10.0", "0.17.0"):
        facts = get_engine("vllm", version).gemm.skinny
        for device in facts.hbm_fraction:
            assert str(registry.get_device(device).compute_capability) in facts.archs
