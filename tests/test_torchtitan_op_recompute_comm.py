"""torchtitan's per-op selective checkpointing saves reduce-scatter outputs but not all-gather
outputs (_save_list in parallelize_llama.py at 9dec370 / 820504e), so under sequence
parallelism the backward's recompute gathers the attention and MLP inputs again: two TP
all-gathers per layer and micro-batch, counted here by hand."""

from dataclasses import replace

import pytest

from perfmodel import frameworks_costs as FC
from perfmodel.comm import collective_time
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.plan import TrainPlan
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, get_model
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import group_spans
from perfmodel.training import training_step

TT = resolve_framework(FrameworkConfig(name="torchtitan", compile=True))


def test_op_policy_repeats_the_unsaved_collectives():
    assert FC.op_recompute_tp_collectives(TT, "op", True) == {"all_gather": 2.0}
    # without SP the two all-reduces are not saved either
    assert FC.op_recompute_tp_collectives(TT, "op", False) == {"all_reduce": 2.0}
    for policy in ("none", "selective", "full"):  # full recompute: tp_layer_comm's own rule
        assert FC.op_recompute_tp_collectives(TT, policy, True) == {}
    assert FC.op_recompute_tp_collectives(None, "op", True) == {}
    megatron = resolve_framework(FrameworkConfig(name="megatron-core"))
    assert FC.op_recompute_tp_collectives(megatron, "op", True) == {}


def test_step_pays_two_all_gathers_per_layer_and_microbatch():
    """Llama 3.1 8B, TP 8 (one node), SP, 2 micro-batches of 1 x 8192: the step grows by
    m x 32 layers x 2 all-gathers of the b s h bf16 activation (no TP overlap)."""
    model = get_model("llama-3.1-8b")
    system = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=8))
    profile = default_profile()

    def plan(fw):
        return TrainPlan(tp=8, pp=1, dp=1, cp=1, ep=1, etp=1, vp=1, micro_batch=1, seq_len=8192,
                         global_batch=2, sequence_parallel=True, recompute="op", framework=fw)

    with_fw = training_step(model, system, plan(TT), profile)
    no_facts = TT.spec.model_copy(update={"activation_checkpointing": TT.spec.activation_checkpointing
                                          .model_copy(update={"op_saved_collectives": None})})
    without = training_step(model, system, plan(replace(TT, spec=no_facts)), profile)
    span = group_spans(8, "tp-cp-ep-dp-pp", tp=8, cp=1, ep=1, dp=1, pp=1, etp=1)["tp"]
    act = 1 * 8192 * 4096 * 2.0
    gather = collective_time("all_gather", act, span, system, profile)
    assert gather > 0
    extra = 2 * 32 * 2 * gather
    assert float(with_fw.step_time - without.step_time) == pytest.approx(extra, rel=1e-9)
    assert float(with_fw.time["tp_comm"] - without.time["tp_comm"]) == pytest.approx(extra)


def test_async_tp_leaves_the_backward_input_gradient_reduce_scatters_exposed():
    """torch's micro_pipeline_tp fuses a reduce-scatter only when a GEMM produces its input;
    the backward's input-gradient reduce-scatters follow the sum of the wq/wk/wv (w1/w3)
    gradients: two per layer stay exposed under async TP. Llama 3.1 8B, TP 8, SP, one
    micro-batch of 1 x 8192, no recompute: with overlap the step's exposed TP time is exactly
    32 layers x 2 reduce-scatters more than with a framework whose overlap fuses everything."""
    assert FC.tp_overlap_unfused_backward(TT, True, True) == {"reduce_scatter": 2.0}
    assert FC.tp_overlap_unfused_backward(TT, False, True) == {}
    assert FC.tp_overlap_unfused_backward(TT, True, False) == {}
    model = get_model("llama-3.1-8b")
    system = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=8))
    profile = default_profile()
    fused_all = replace(TT, spec=TT.spec.model_copy(update={
        "tp_overlap": TT.spec.tp_overlap.model_copy(update={"backward_unfused": []})}))

    def step(fw):
        return training_step(model, system, TrainPlan(
            tp=8, pp=1, dp=1, cp=1, ep=1, etp=1, vp=1, micro_batch=1, seq_len=8192,
            global_batch=1, sequence_parallel=True, recompute="none", tp_comm_overlap=True,
            framework=fw), profile)

    span = group_spans(8, "tp-cp-ep-dp-pp", tp=8, cp=1, ep=1, dp=1, pp=1, etp=1)["tp"]
    rs = collective_time("reduce_scatter", 8192 * 4096 * 2.0, span, system, profile)
    a, b = step(TT), step(fused_all)
    assert float(a.time["tp_comm"] - b.time["tp_comm"]) == pytest.approx(32 * 2 * rs, rel=1e-6)
    assert float(a.comm_total["tp"]) == pytest.approx(float(b.comm_total["tp"]))
