"""llm-foundry's Triton FlashAttention (frameworks/fsdp.yaml attention_ceilings.triton_flash):
the measured forward + backward rate by sequence length (Dao 2023 arXiv 2307.08691 Fig. 4 (d),
Dao-AILab/flash-attention assets/flash2_a100_fwd_bwd_benchmark.png: causal, head dim 128,
A100 80GB SXM4) as a ceiling on both phases, checked by hand."""

import math

import pytest

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.errors import SpecError
from perfmodel.frameworks import Ceiling, common_facts, resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.common import validate

# the figure's "FlashAttention Triton" bars (TFLOP/s), FA2's on A100 and on H100 (panel (d))
SEQS = (512, 1024, 2048, 4096, 8192, 16384)
TRITON_A100 = (50, 61, 68, 74, 78, 80)
FA2_A100 = (99, 133, 155, 173, 182, 189)
FA2_H100 = (163, 221, 265, 294, 308, 328)


def fsdp():
    return resolve_framework(FrameworkConfig(name="fsdp"))


def test_ampere_table_is_the_figure_over_the_a100_peak():
    c = fsdp().attention_ceiling("Ampere")
    for s, tflops in zip(SEQS, TRITON_A100, strict=True):
        assert c.fraction("fwd", s) == pytest.approx(tflops / 312, abs=1e-4)
        assert c.fraction("bwd", s) == pytest.approx(tflops / 312, abs=1e-4)


def test_hopper_table_is_the_a100_ratio_to_fa2_times_fa2_on_h100():
    c = fsdp().attention_ceiling("Hopper")
    for s, t, f, h in zip(SEQS, TRITON_A100, FA2_A100, FA2_H100, strict=True):
        assert c.fraction("bwd", s) == pytest.approx(h * t / f / 989.4, abs=1e-4)


def test_interpolated_in_log2_sequence_and_held_at_the_ends():
    c = fsdp().attention_ceiling("Ampere")
    mid = math.sqrt(2048 * 4096)  # halfway in log2 between the 2k and 4k bars
    assert c.fraction("fwd", mid) == pytest.approx((68 + 74) / 2 / 312, abs=1e-4)
    assert c.fraction("fwd", 32768) == pytest.approx(80 / 312, abs=1e-4)
    assert c.fraction("fwd", 128) == pytest.approx(50 / 312, abs=1e-4)


def test_other_frameworks_keep_the_common_ceilings():
    """The override is fsdp's own: _common.yaml's triton_flash entry and the other backends
    are as they were."""
    common = common_facts().attention_backends["triton_flash"].ceilings["Hopper"]
    tt = resolve_framework(FrameworkConfig(name="torchtitan", attention_backend="triton_flash"))
    assert tt.attention_ceiling("Hopper") == common
    fa2 = resolve_framework(FrameworkConfig(name="fsdp", attention_backend="fa2"))
    assert fa2.attention_ceiling("Hopper").fwd == pytest.approx(0.374)


def test_attention_time_by_hand_a100():
    """A causal MPT attention call (head dim 128, 16 heads, 14 x 2048 tokens): executed FLOPs
    4 b h d s(s+1)/2 forward, 2.5 x that backward; each at the 2k bar, 68 TFLOP/s."""
    b, s, h, d = 14, 2048, 16, 128
    fwd_flops = 4.0 * b * h * d * s * (s + 1) / 2
    fwd = O.Op(name="attn.core", cls=O.ATTENTION, flops=fwd_flops, bytes=b * s * h * d * 4.0,
               dtype="bf16", shape=(s, s), phase="fwd", attention_core=True, head_dim=128.0)
    ops = [fwd, *O.backward(fwd, O.Precision(compute="bf16", act=2.0, weight=2.0))]
    assert len(ops) == 2 and ops[1].phase == "bwd"
    device = "a100-sxm4-80gb"
    roof = Roofline(registry.get_device(device), registry.profile_for(device))
    t = FC.apply_backend(fsdp(), op_times(ops, roof), roof).time
    assert float(t[0]) == pytest.approx(fwd_flops / 68e12, rel=1e-3)
    assert float(t[1]) == pytest.approx(2.5 * fwd_flops / 68e12, rel=1e-3)


def test_a_ceiling_is_either_by_phase_or_by_sequence():
    with pytest.raises(SpecError, match="either fwd / bwd or by_seq_len"):
        validate(Ceiling, {"fwd": 0.3, "by_seq_len": {2048: 0.2}}, what="ceiling")
    with pytest.raises(SpecError, match="by_seq_len"):
        validate(Ceiling, {"by_seq_len": {2048: 1.5}}, what="ceiling")
