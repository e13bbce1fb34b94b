"""Hand calculations for the pieces of the model that other tests only exercise indirectly:
what a stage holds, where group members sit, fp8 casts, recompute policies, elementwise rates,
the streaming cap, FSDP under pipeline parallelism and uneven pipelines."""

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.memory import ActivationShape, layer_activation_bytes
from perfmodel.parameters import param_counts
from perfmodel.pipeline import layers_on_largest_stage
from perfmodel.plan import TrainPlan
from perfmodel.profile import Curve
from perfmodel.recompute import op_policy_split, recomputed_ops
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, get_device, get_model
from perfmodel.specs.scenario import SystemConfig
from perfmodel.stages import stage_params
from perfmodel.topology import group_spans
from perfmodel.training import training_step

L7 = get_model("llama-2-7b")


def test_stage_params_hand_count():
    """Llama-2-7B, TP 2, PP 4: the first stage holds 8 layers of (4h^2 + 3hf)/2 + 2h norm
    weights, plus half the word embedding: 8 * 101,195,776 + 65,536,000 = 875,102,208."""
    sp = stage_params(param_counts(L7), 2, 4)
    assert sp.first == 875_102_208
    assert sp.last == 875_102_208 + 4096  # the final RMSNorm; the untied head is the same size


def test_group_placement_hand_cases():
    """8 GPUs per node, order tp-cp-ep-dp-pp. TP 2 x DP 8: the DP group has stride 2, so 4 of
    its 8 members share a node (2 nodes). TP 8 x PP 4: pipeline neighbours are 8 ranks apart,
    each on another node."""
    spans = group_spans(8, "tp-cp-ep-dp-pp", tp=2, dp=8)
    assert (float(spans["dp"].local), float(spans["dp"].nodes)) == (4.0, 2.0)
    assert (float(spans["tp"].local), float(spans["tp"].nodes)) == (2.0, 1.0)
    spans = group_spans(8, "tp-cp-ep-dp-pp", tp=8, pp=4)
    assert (float(spans["pp"].local), float(spans["pp"].nodes)) == (1.0, 4.0)
    # a different order puts DP innermost: all 8 DP members on one node
    spans = group_spans(8, "dp-tp-cp-ep-pp", tp=2, dp=8)
    assert float(spans["dp"].nodes) == 1.0 and float(spans["tp"].nodes) == 2.0


def test_fp8_cast_bytes():
    """Tensorwise dynamic scaling: amax read (2 B) + cast read (2 B) + fp8 write (1 B) per
    element of the activation (m x k) and weight (k x n); backward casts the m x n gradient."""
    prec = O.Precision.training("fp8")
    g = O.gemm("w", 1024, 4096, 2048, prec)
    cast = O.fp8_cast(g)
    assert cast.bytes == 5 * (1024 * 2048 + 2048 * 4096)
    (back,) = O.backward(cast, prec)
    assert back.bytes == 5 * 1024 * 4096
    fwd = O.layer_forward_ops(L7, False, 1, 128, 128, 128 * 129 / 2, O.Shard(), prec)
    assert sum(op.cls == O.GEMM for op in fwd) == sum(op.fp8_cast for op in fwd)


def test_op_policy_memory_and_recompute():
    """torchtitan's per-op policy on a Llama layer (q, k, v, o, gate, up, down): q, v, gate and
    down outputs are saved, k, o and up recomputed; memory = layer input + saved outputs +
    attention output + fp32 log-sum-exp, all in 2-byte activations (t = 1)."""
    m = get_model("llama-3-8b")
    saved, again = op_policy_split(m, False)
    assert [name for name, _ in saved] == ["attn.qkv", "attn.qkv", "mlp.up", "mlp.down"]
    assert [name for name, _ in again] == ["attn.qkv", "attn.out", "mlp.up"]
    b, s, h, f = 1, 1024, 4096, 14336
    shape = ActivationShape(b=b, s=s, s_kv=s, act_bytes=2.0, flash_attention=True)
    expected = 2 * s * (h + (h + 1024 + f + h) + h) + 4 * 32 * s
    assert layer_activation_bytes(m, shape, "op") == pytest.approx(expected)
    prec = O.Precision.training("bf16")
    fwd = O.layer_forward_ops(m, False, b, s, s, s * (s + 1) / 2, O.Shard(), prec)
    rec = {op.name: op for op in recomputed_ops("op", fwd, m, False, True)}
    qkv = next(op for op in fwd if op.name == "attn.qkv")
    assert rec["attn.qkv.recompute"].flops == pytest.approx(qkv.flops * 1024 / 6144)  # k of q,k,v
    assert "attn.core.recompute" not in rec and "mlp.down.recompute" not in rec


def test_elementwise_rate_is_a_compute_roof():
    """A kernel kind with a measured rate r takes max(elements / r, bytes / bw)."""
    device = get_device("a100-sxm4-80gb")
    base = default_profile().model_copy(update={"kernel_overhead_s": 0.0,
                                                "memory": Curve(values=(1.0,))})
    op = O.elementwise("act", 1e6, 1e6, 2.0, kind="gelu")
    slow = base.model_copy(update={"elementwise_rate": {"gelu": 1e9}})
    assert float(op_times([op], Roofline(device, slow)).time[0]) == pytest.approx(1e6 / 1e9)
    assert float(op_times([op], Roofline(device, base)).time[0]) == pytest.approx(
        4e6 / device.memory_bandwidth)


def test_memory_bound_gemm_streams_at_the_bandwidth_plateau():
    """A decode GEMM (m = 1) whose fitted efficiency exceeds the bandwidth curve's plateau
    runs at the plateau: weights / (bw x plateau)."""
    device = get_device("a100-sxm4-80gb")
    prof = default_profile().model_copy(update={
        "kernel_overhead_s": 0.0, "gemm": {"bf16": Curve(values=(3.0,))},
        "memory": Curve(axes=("bytes",), log2_grid=((10.0, 30.0),), values=(2.0, 0.8))})
    op = O.gemm("w", 1, 8192, 8192, O.Precision.training("bf16"))
    t = float(op_times([op], Roofline(device, prof)).time[0])
    assert t == pytest.approx(op.bytes / (device.memory_bandwidth * 0.8))


def plan(**kw):
    base = dict(tp=8, pp=4, dp=2, cp=1, ep=1, etp=8, vp=1, micro_batch=1, seq_len=4096,
                global_batch=32)
    base.update(kw)
    return TrainPlan(**base)


SYSTEM = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=64))


def test_fsdp_without_resharding_keeps_zero1_memory():
    """FSDP under PP without resharding after forward (torchtitan's default) holds the stage's
    gathered weights and unsharded gradients: the model states of ZeRO-1."""
    m = get_model("llama-3-70b")
    states = ("weights", "gradients", "optimizer")

    def mem(**kw):
        r = training_step(m, SYSTEM, plan(**kw), default_profile())
        return [float(r.memory[k]) for k in states]

    assert mem(zero_stage=3, reshard_after_forward=False) == mem(zero_stage=1)
    assert mem(zero_stage=3, reshard_after_forward=True) < mem(zero_stage=1)


def test_uneven_pipeline_largest_stage():
    """126 layers over 8 stages: the largest stage holds ceil(126 / 8) = 16 layers; with
    2 virtual chunks, ceil(126 / 16) * 2 = 16."""
    assert layers_on_largest_stage(126, 8, 1, True) == 16
    assert layers_on_largest_stage(126, 8, 2, True) == 16
    assert layers_on_largest_stage(128, 8, 1, False) == 16
    pc = param_counts(get_model("llama-3.1-405b"))
    sp = stage_params(pc, 8, 8, layers=16)
    assert sp.dense_first - sp.dense_last == pytest.approx(
        pc.word_embedding / 8 - pc.lm_head / 8 - pc.final_norm)
    assert np.isclose(float(sp.first), 16 * (pc.attention / 8 + pc.layer_norms
                                             + pc.dense_mlp / 8) + pc.word_embedding / 8)
