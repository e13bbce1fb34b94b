"""A batch smaller than attention_dp: one request on each of ``batch`` DP ranks, the others idle.

SGLang runs an idle DP rank each step (sglang 0.5.6 managers/scheduler_dp_attn_mixin.py
``prepare_mlp_sync_batch_raw``: ``get_idle_batch()`` when any rank has tokens; a zero-token
ForwardMode.IDLE forward that skips attention and the gate but still runs the experts'
dispatch / combine: perfmodel.inference.idle_ranks). The step is the busiest rank's: its one
sequence's attention and dense operators, the all-to-all at one token per rank, and the
routed experts fed by the batch's tokens only.

Hand-built against DeepSeek-R1 (58 MoE layers, 256 routed experts, top-8, expert FFN 2048,
hidden 7168, fp8 with 128 x 128 block scales) on 8 x B200, attention TP1 x DP8, EP8 (32
experts per GPU). ``kind: inference`` still refuses such a batch (perfmodel/plan.py rule
inference.batch, tests/test_qa1205_attention_dp_batch.py); the plan here is built at batch 8
and then given batch 1, as the rule would once it lets the engines that run idle ranks
through.
"""

from dataclasses import replace

import pytest

from perfmodel.inference import forward_pass, idle_ranks, inference
from perfmodel.moe_parallel import stage_comm
from perfmodel.predictors import inference_inputs
from perfmodel.resolve import resolve

SCENARIO = dict(kind="inference", model="deepseek-r1", engine="sglang",
                system={"device": "b200", "num_gpus": 8},
                parallelism={"tp": 1, "attention_dp": 8, "ep": 8},
                inference={"batch": 8, "prompt_len": 1024, "output_len": 256})
CONTEXT = 1024 + 128.0
# one routed expert's weights: up (gate + up) 2 x 2048 x 7168 and down 7168 x 2048 fp8 bytes,
# plus one fp32 scale per 128 x 128 block: 2 x 16 x 56 + 56 x 16 = 2,688 scales
EXPERT_BYTES = 3 * 7168 * 2048 + 4 * (2 * 16 * 56 + 56 * 16)  # 44,050,944
MOE_LAYERS = 58
ROUTED = ("moe.expert.", "moe.combine")  # the routed experts' operators and their weighted sum


@pytest.fixture(scope="module")
def setup():
    rs = resolve(SCENARIO, None)
    plan8 = inference_inputs(rs.scenario, rs.system, rs.profile).plan
    return rs.scenario.model, rs.system, rs.profile, plan8


def test_only_a_batch_below_attention_dp_has_idle_ranks(setup):
    model, _system, _profile, plan8 = setup
    assert idle_ranks(model, plan8) == (plan8, 1.0)
    busy, share = idle_ranks(model, replace(plan8, batch=3))
    assert (busy.batch, share) == (8, 3 / 8)


def test_a_batch1_dp8_step_is_one_ranks_attention_plus_moe_over_eight_ranks(setup):
    model, system, profile, plan8 = setup
    one = replace(plan8, batch=1)
    busy, share = idle_ranks(model, one)
    step = forward_pass(model, system, busy, profile, busy.batch, 1.0, CONTEXT, CONTEXT,
                        "decode", busy.batch, True, routed_share=share)
    # the same request alone on one GPU without attention DP (TP1, DP1, EP1)
    alone = forward_pass(model, system, replace(plan8, batch=1, attention_dp=1, ep=1), profile,
                         1, 1.0, CONTEXT, CONTEXT, "decode", 1, True)
    ops, ref = step.op_times, alone.op_times
    assert [op.name for op in ops.ops] == [op.name for op in ref.ops]
    other = 0.0
    for i, op in enumerate(ops.ops):
        if not op.name.startswith(ROUTED):  # attention, dense layers, shared experts, head
            assert ops.time[i] == pytest.approx(ref.time[i], rel=1e-12), op.name
            other += float(op.count) * ops.time[i]
    # the collectives: dispatch + combine at one token per rank over the 8 ranks, per MoE
    # layer (the balanced batch of 8 sends the same), and no attention-TP all-reduce at TP1
    a2a = stage_comm(model, busy, 8.0, "decode", busy.precision.hidden, system, profile)
    assert float(step.ep_comm) == pytest.approx(float(a2a.dispatch + a2a.combine))
    assert float(step.tp_comm) == 0.0
    # the routed experts see the one token: 8 of 256 experts chosen, 32 x 8 / 256 = 1 expert
    # expected on each GPU, its weights read once per MoE layer
    assert float(step.moe["routed_expert_weight_bytes_per_gpu"]) == pytest.approx(
        MOE_LAYERS * 1.0 * EXPERT_BYTES, rel=1e-9)
    routed = sum(float(op.count) * ops.time[i] for i, op in enumerate(ops.ops)
                 if op.name.startswith(ROUTED))
    assert float(step.time) == pytest.approx(other + routed + float(step.ep_comm), rel=1e-9)


def test_inference_of_batch1_on_dp8_runs_the_idle_rank_step(setup):
    model, system, profile, plan8 = setup
    r1 = inference(model, system, replace(plan8, batch=1), profile, keep_ops=True)
    r8 = inference(model, system, plan8, profile, keep_ops=True)
    # the same attention and all-to-all as the balanced batch of 8 (one sequence per rank),
    # fewer expert weights read: 1 expert per GPU per layer instead of 32 x (1 - (31/32)^8)
    assert r1.decode.moe["all_to_all_s"] == pytest.approx(r8.decode.moe["all_to_all_s"])
    assert r1.decode.moe["routed_expert_weight_bytes_per_gpu"] == pytest.approx(
        MOE_LAYERS * EXPERT_BYTES, rel=1e-9)
    assert r1.tpot < r8.tpot and r1.ttft < r8.ttft
    # the busiest GPU holds one sequence's KV, as at batch 8; throughput counts the one request
    assert r1.memory_total == pytest.approx(r8.memory_total)
    assert r1.tokens_per_s == pytest.approx(1 * 256 / r1.e2e)
    assert r1.e2e == pytest.approx(r1.ttft + 255 * r1.tpot)
