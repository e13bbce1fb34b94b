"""llm-foundry's Triton FlashAttention (frameworks/_common.yaml attention_backends.triton_flash,
fsdp's default backend): FlashAttention 1's measured forward + backward rate by sequence length
as an upper-bound proxy (the kernel's docstring: "slightly slower than CUDA forward +
backward"), Dao 2023 arXiv 2307.08691 Fig. 4 (d), Dao-AILab/flash-attention 4f285b35
assets/flash2_{a100,h100}_fwd_bwd_benchmark.png (causal, head dim 128), as a ceiling on both
phases, checked by hand."""

import math

import pytest

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.errors import SpecError
from perfmodel.frameworks import Ceiling, CommonFacts, common_facts, resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.paths import data_dir
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.common import validate
from perfmodel.specs.registry import load_file

# the figures' "FlashAttention" (1) bars, TFLOP/s, panel (d), read off the PNGs
SEQS = (512, 1024, 2048, 4096, 8192, 16384)
FA1_A100 = (55, 62, 69, 76, 80, 83)
FA1_H100 = (98, 109, 108, 126, 135, 137)


def fsdp():
    return resolve_framework(FrameworkConfig(name="fsdp"))


def test_tables_are_fa1_bars_over_the_dense_peaks():
    """A100 dense bf16 = fp16 peak 312 TFLOP/s, H100 SXM 989.4; both phases alike."""
    for arch, bars, peak in (("Ampere", FA1_A100, 312.0), ("Hopper", FA1_H100, 989.4)):
        c = fsdp().attention_ceiling(arch)
        for s, tflops in zip(SEQS, bars, strict=True):
            assert c.fraction("fwd", s) == pytest.approx(tflops / peak, abs=1e-4)
            assert c.fraction("bwd", s) == pytest.approx(tflops / peak, abs=1e-4)


def test_interpolated_in_log2_sequence_and_held_at_the_ends():
    c = fsdp().attention_ceiling("Ampere")
    mid = math.sqrt(2048 * 4096)  # halfway in log2 between the 2k and 4k bars
    assert c.fraction("fwd", mid) == pytest.approx((69 + 76) / 2 / 312, abs=1e-4)
    assert c.fraction("fwd", 32768) == pytest.approx(83 / 312, abs=1e-4)
    assert c.fraction("fwd", 128) == pytest.approx(55 / 312, abs=1e-4)


def test_one_table_for_every_framework():
    """The table is _common.yaml's: torchtitan asked for triton_flash gets the same one; fsdp
    asked for fa2 gets FA2's."""
    common = common_facts().attention_backends["triton_flash"].ceilings["Hopper"]
    tt = resolve_framework(FrameworkConfig(name="torchtitan", attention_backend="triton_flash"))
    assert tt.attention_ceiling("Hopper") == common == fsdp().attention_ceiling("Hopper")
    fa2 = resolve_framework(FrameworkConfig(name="fsdp", attention_backend="fa2"))
    assert fa2.attention_ceiling("Hopper").fwd == pytest.approx(0.374)


def test_attention_time_by_hand_a100():
    """A causal MPT attention call (head dim 128, 16 heads, 14 x 2048 tokens): executed FLOPs
    4 b h d s(s+1)/2 forward, 2.5 x that backward; each at FA1's 2k bar, 69 TFLOP/s."""
    b, s, h, d = 14, 2048, 16, 128
    fwd_flops = 4.0 * b * h * d * s * (s + 1) / 2
    fwd = O.Op(name="attn.core", cls=O.ATTENTION, flops=fwd_flops, bytes=b * s * h * d * 4.0,
               dtype="bf16", shape=(s, s), phase="fwd", attention_core=True, head_dim=128.0)
    ops = [fwd, *O.backward(fwd, O.Precision(compute="bf16", act=2.0, weight=2.0))]
    assert len(ops) == 2 and ops[1].phase == "bwd"
    device = "a100-sxm4-80gb"
    roof = Roofline(registry.get_device(device), registry.profile_for(device))
    t = FC.apply_backend(fsdp(), op_times(ops, roof), roof).time
    assert float(t[0]) == pytest.approx(fwd_flops / 69e12, rel=1e-3)
    assert float(t[1]) == pytest.approx(2.5 * fwd_flops / 69e12, rel=1e-3)


def test_a_ceiling_is_either_by_phase_or_by_sequence():
    with pytest.raises(SpecError, match="either fwd / bwd or by_seq_len"):
        validate(Ceiling, {"fwd": 0.3, "by_seq_len": {2048: 0.2}}, what="ceiling")
    with pytest.raises(SpecError, match=r"by_seq_len\.2048: 1\.5"):
        validate(Ceiling, {"by_seq_len": {2048: 1.5}}, what="ceiling")


def test_a_bad_ceiling_names_its_field_path(tmp_path):
    """The error names attention_backends.<backend>.ceilings.<architecture>.by_seq_len."""
    text = (data_dir("frameworks") / "_common.yaml").read_text()
    bad = tmp_path / "_common.yaml"
    bad.write_text(text.replace("16384: 0.2660}", "16384: 2.66}"))
    with pytest.raises(SpecError, match=r"attention_backends\.triton_flash\.ceilings\.Ampere: "
                       r"by_seq_len\.16384: 2\.66"):
        load_file(CommonFacts, bad)
