"""MoE layouts of serving (attention TP x attention DP, MoE TP x EP) and their all-to-alls
(perfmodel/moe_parallel.py), against hand calculations and the measured DeepEP tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import ops as O
from perfmodel.api import predict
from perfmodel.calibrate import converters as C
from perfmodel.calibrate.reference import sources_dir
from perfmodel.comm import collective_time
from perfmodel.errors import PerfModelError
from perfmodel.inference import DECODE_SAMPLES, _pass_ops, forward_pass
from perfmodel.moe_parallel import (
    DEEPEP_FP8_BYTES,
    a2a_bytes,
    contiguous_span,
    copies_per_token,
    routed_rows,
    stage_comm,
)
from perfmodel.resolve import inference_inputs, resolve
from perfmodel.zoo import resolve_model

DSV3 = resolve_model("deepseek-v3")  # hidden 7168, 256 routed experts, top-8, 58 MoE layers


def scenario(tp=1, adp=8, ep=8, batch=64, gpus=8, device="h200-sxm-141gb", model="deepseek-v3",
             **extra):
    par = {"tp": tp, "ep": ep}
    if adp != 1:
        par["attention_dp"] = adp
    par.update(extra.pop("parallelism", {}))
    inf = {"batch": batch, "prompt_len": 1000, "output_len": 200, "weight_dtype": "fp8",
           "activation_dtype": "fp8", **extra}
    return {"kind": "inference", "model": model,
            "system": {"device": device, "num_gpus": gpus}, "parallelism": par, "inference": inf}


def plan_of(sc):
    rs = resolve(sc)
    return rs, inference_inputs(rs.scenario, rs.system, rs.profile).plan


def test_dispatch_bytes_by_hand():
    # DeepSeek-V3 decode, batch 64 on attention DP8 x EP8: 8 tokens per rank, 8 copies each
    # (low latency sends one per routed expert), 7168 fp8 elements + one fp32 scale per 128
    assert a2a_bytes(8, 8, 7168, DEEPEP_FP8_BYTES) == 8 * 8 * (7168 + 7168 / 128 * 4)
    assert a2a_bytes(8, 8, 7168, DEEPEP_FP8_BYTES) == 473_088
    rs, plan = plan_of(scenario())
    comm = stage_comm(DSV3, plan, 64, "decode", 2.0, rs.system, rs.profile)
    span = contiguous_span(8, 8)
    one = collective_time("ep_dispatch_ll", 473_088, span, rs.system, rs.profile)
    assert comm.mode == "ll"
    assert comm.dispatch == pytest.approx(58 * one)  # one dispatch per MoE layer
    combine = collective_time("ep_combine_ll", 8 * 8 * 7168 * 2.0, span, rs.system, rs.profile)
    assert comm.combine == pytest.approx(58 * combine)  # combined back in bf16


def test_normal_mode_sends_one_copy_per_destination_rank():
    # 8 of 256 experts on 8 ranks of 32: P(a rank gets none) = C(224, 8) / C(256, 8)
    miss = np.prod([(224 - i) / (256 - i) for i in range(8)])
    assert copies_per_token("normal", 8, 256, 8) == pytest.approx(8 * (1 - miss))
    assert copies_per_token("normal", 8, 256, 1) == pytest.approx(1.0)
    assert copies_per_token("ll", 8, 256, 8) == 8


@pytest.mark.parametrize("layout", [dict(adp=8, ep=1), dict(tp=8, adp=1, ep=8),
                                    dict(tp=8, adp=1, ep=1)])
def test_no_all_to_all_without_wide_ep(layout):
    rs, plan = plan_of(scenario(**layout))
    comm = stage_comm(DSV3, plan, 64, "decode", 2.0, rs.system, rs.profile)
    assert comm.dispatch == 0 and comm.combine == 0 and comm.mode == ""
    p = predict(scenario(**layout))
    assert p.breakdown["moe"]["decode_step"]["all_to_all_s"] == 0


def test_ep1_attention_dp_gathers_tokens():
    # attention DP with MoE TP over all 8 GPUs: the MoE tokens are all-gathered and
    # reduce-scattered (SGLang's DP attention without DeepEP)
    rs, plan = plan_of(scenario(adp=8, ep=1))
    comm = stage_comm(DSV3, plan, 64, "decode", 2.0, rs.system, rs.profile)
    span = contiguous_span(8, 8)
    nb = 64 * 7168 * 2.0
    one = (collective_time("all_gather", nb, span, rs.system, rs.profile)
           + collective_time("reduce_scatter", nb, span, rs.system, rs.profile))
    assert comm.ep == pytest.approx(58 * one)


@given(tokens=st.floats(1, 1e6), ep=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 256]),
       top_k=st.integers(1, 16))
def test_rows_per_rank_sum_to_routed_tokens(tokens, ep, top_k):
    assert routed_rows(tokens, top_k, ep) * ep == pytest.approx(tokens * top_k)


@pytest.mark.parametrize("tp,adp,ep", [(8, 1, 8), (1, 8, 8), (2, 4, 8), (8, 1, 1), (1, 8, 1)])
def test_grouped_gemm_rows_are_the_local_experts_share(tp, adp, ep):
    """Each GPU's expert GEMMs process T*top_k/ep rows (the overcount of T*top_k per GPU
    under EP is gone), split over moe_tp = tp*adp/ep GPUs along the FFN width."""
    _, plan = plan_of(scenario(tp=tp, adp=adp, ep=ep))
    ops, _ = _pass_ops(
        DSV3, plan, 64, 1.0, 1001, 1001, "decode", 64)
    up = next(op for op in ops if op.name == "moe.expert.up")
    m, n, _ = up.shape
    assert m * up.groups == pytest.approx(64 * 8 / ep)
    assert n == pytest.approx(2 * 2048 / (tp * adp / ep))
    flops_all_gpus = up.flops * tp * adp
    assert flops_all_gpus == pytest.approx(2 * 64 * 8 * 2 * 2048 * 7168)


def test_imbalance_scales_the_busiest_ranks_rows():
    _, plan = plan_of(scenario(expert_imbalance=1.5))
    ops, _ = _pass_ops(
        DSV3, plan, 64, 1.0, 1001, 1001, "decode", 64)
    up = next(op for op in ops if op.name == "moe.expert.up")
    assert up.shape[0] * up.groups == pytest.approx(1.5 * 64 * 8 / 8)
    assert predict(scenario(expert_imbalance=1.5)).tpot_s > predict(scenario()).tpot_s


@settings(max_examples=15, deadline=None)
@given(batch=st.sampled_from([8, 64, 256]), eps=st.sampled_from([(1, 2), (2, 4), (4, 8),
                                                                 (1, 8)]))
def test_memory_per_gpu_never_rises_with_ep(batch, eps):
    small, large = (predict(scenario(ep=e, batch=batch)).memory_per_gpu_bytes for e in eps)
    assert large <= small


def test_kv_cache_split_across_attention_dp():
    # MLA's latent KV is not sharded by TP: TP8 holds every sequence's KV on every GPU,
    # DP8 holds 1/8 of the sequences per GPU
    tp8 = predict(scenario(tp=8, adp=1, ep=8)).breakdown["memory"]["kv_cache"]
    dp8 = predict(scenario(tp=1, adp=8, ep=8)).breakdown["memory"]["kv_cache"]
    assert dp8 == pytest.approx(tp8 / 8)


def test_attention_dp_must_divide_batch_one_line():
    with pytest.raises(PerfModelError) as err:
        predict(scenario(batch=12))
    msg = str(err.value)
    assert "\n" not in msg and "inference.batch" in msg and "attention_dp (8)" in msg


def test_ep_must_divide_experts_unless_redundant():
    sc = scenario(tp=1, adp=72, ep=72, batch=72, gpus=72)
    with pytest.raises(PerfModelError, match="redundant_experts"):
        predict(sc)
    sc["parallelism"]["redundant_experts"] = 32  # EPLB's 288 experts over EP72
    assert predict(sc).tpot_s > 0


def serving(tp=1, adp=8, ep=8, gpus=8, scheduler=None, engine="sglang", **par):
    """A small closed-loop serving scenario of DeepSeek-V3 with attention DP."""
    sc = scenario(tp=tp, adp=adp, ep=ep, gpus=gpus, parallelism=par)
    sc["kind"] = "serving"
    del sc["inference"]["batch"]
    sc["inference"].update(prompt_len=512, output_len=16, kv_dtype="bf16")
    sc["engine"] = engine
    sc["serving"] = {"arrival": {"process": "closed", "concurrency": 16}, "num_requests": 32,
                     "seed": 0, **({"scheduler": scheduler} if scheduler else {})}
    return sc


def serving_cost(sc):
    from perfmodel.serving.predict import deployment_for, serving_inputs

    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    return deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)


@pytest.mark.parametrize("batch", [8, 64, 256])
def test_serving_decode_step_is_the_inference_decode_step(batch):
    # an iteration of `batch` decoding sequences on an attention-DP8 x EP8 instance is the
    # decode pass `perfmodel predict` gives for the same batch (batch / 8 per DP rank): the
    # same operators, all-to-alls (low-latency kernels) and attention, to interpolation error
    dep = serving_cost(serving())
    inst = dep.instances[0]
    assert inst.gpus == 8 and inst.count == 1
    p, o = 512, 17
    # the same engine as the serving scenario (its MoE kernels and bf16 router, c0124a2)
    pred = predict({**scenario(batch=batch, prompt_len=p, output_len=o, kv_dtype="bf16"),
                    "engine": "sglang"})
    # inference's decode step: the mean over the contexts TPOT averages (inference.
    # _context_mean: DECODE_SAMPLES bin midpoints of the generated positions, + 1)
    contexts = p + (np.arange(DECODE_SAMPLES) + 0.5) / DECODE_SAMPLES * (o - 1) + 1
    step = np.mean([inst.cost.iteration_time([], [], [c] * batch) for c in contexts])
    # the serving grid's interpolation at 8 contexts off its nodes: 1.8e-5 at batch 8
    assert step == pytest.approx(pred.breakdown["decode_step"]["total_s"], rel=5e-5)
    assert pred.breakdown["moe"]["decode_step"]["a2a_mode"] == "ll"


def _experts(res) -> float:
    """Routed-expert operator time of one pass (all stages)."""
    return sum(float(np.asarray(op.count * res.op_times.time[i]))
               for i, op in enumerate(res.op_times.ops) if op.name.startswith("moe.expert."))


def test_serving_lone_request_runs_on_one_dp_group():
    # one decoding sequence on an attention-DP8 instance: its group does a batch-8 pass's
    # per-group work (one sequence per group), the experts see one token. By hand from two
    # inference passes: decode(batch 8) - experts(8 tokens) + experts(1 token)
    dep = serving_cost(serving())
    cost = dep.instances[0].cost
    rs = resolve({**scenario(batch=8, prompt_len=512, output_len=17, kv_dtype="bf16"),
                  "engine": "sglang"})  # the serving scenario's engine (its MoE kernels)
    plan = inference_inputs(rs.scenario, rs.system, rs.profile).plan
    c = 500.0  # within the workload's contexts (the tables' range)
    eight = forward_pass(DSV3, rs.system, plan, rs.profile, 8, 1.0, c, c, "decode", 8, True)
    one = forward_pass(DSV3, rs.system, plan, rs.profile, 1, 1.0, c, c, "decode", 1, True)
    hand = float(eight.time) - _experts(eight) + _experts(one)
    assert cost.iteration_time([], [], [c]) == pytest.approx(hand, rel=2e-3)
    assert cost.iteration_time([], [], [c]) < cost.iteration_time([], [], [c] * 8)
    # nine sequences: the busiest group has two, as sixteen spread evenly
    assert cost.iteration_time([], [], [c] * 9) > cost.iteration_time([], [], [c] * 8)


def test_serving_dp_step_paths_agree():
    # the simulator's scalar step, the vectorised iteration and a decode run add the same
    # terms with attention DP too (busiest group, experts over all tokens)
    cost = serving_cost(serving()).instances[0].cost
    ctx = np.array([100.0, 340.0, 512.0, 77.0, 900.0])
    run = cost.decode_run_times(ctx, 1)
    assert run[0] == pytest.approx(cost.iteration_time([], [], ctx + 1), rel=1e-9)
    assert cost.step_time([], ctx + 1, 5) == pytest.approx(run[0], rel=1e-9)
    chunks = [(300, 300), (512, 812), (64, 64)]
    mixed = cost.step_time(chunks, ctx + 1, 7)
    # the same 7 sampled tokens on both paths (iteration_time's default is one per sequence)
    assert mixed == pytest.approx(cost.iteration_time([300, 512, 64], [300, 812, 64], ctx + 1,
                                                      logits=7), rel=1e-6)
    # a lone 512-token prompt runs on one group: slower than 8 x 64 tokens spread over eight
    assert cost.iteration_time([512], [512]) > cost.iteration_time([64] * 8, [64] * 8)


def test_serving_kv_pool_is_every_dp_groups():
    # each DP group holds its own requests' KV: the instance's pool is 8 GPUs' KV blocks (one
    # group per GPU at tp 1), each GPU's pool its KV memory over the bytes of a block
    kv = serving_cost(serving()).instances[0].kv
    per_gpu = kv.memory["kv_cache"] / (kv.bytes_per_token * kv.block_tokens)
    assert per_gpu > 0
    assert kv.num_blocks == pytest.approx(8 * per_gpu, abs=8)


def test_serving_keeps_the_moe_breakdown_and_layout():
    pred = predict(serving())
    moe = pred.breakdown["moe"]
    assert moe["decode_step"]["a2a_mode"] == "ll" and moe["prefill"]["a2a_mode"] == "normal"
    assert moe["decode_step"]["grouped_gemm_table"]
    assert moe["decode_step"]["all_to_all_s"] > 0
    inst = pred.serving["deployment"]["instances"][0]
    assert (inst["attention_dp"], inst["ep"], inst["gpus_per_instance"]) == (8, 8, 8)
    assert pred.num_gpus == 8
    assert pred.serving["benchmark"]["completed"] == 32


@pytest.mark.parametrize(("change", "field"), [
    ({"ep": 16}, "parallelism.ep"),  # ep must divide tp * attention_dp
    ({"gpus": 12}, "parallelism"),  # tp * attention_dp * pp must divide num_gpus
    ({"gpus": 8, "scheduler": {"kind": "disaggregated"}}, "serving.scheduler"),  # 4 + 4
    ({"moe_overlap": "two_batch", "engine": "generic"}, "parallelism.moe_overlap"),
    ({"a2a_mode": "fast"}, "a2a_mode"),
])
def test_serving_invalid_layouts_are_one_line_errors(change, field):
    with pytest.raises(PerfModelError) as err:
        predict(serving(**change))
    msg = str(err.value)
    assert "\n" not in msg.strip() and field in msg


def test_serving_disaggregated_pools_of_dp_attention_instances():
    # SGLang's PD disaggregation with DP attention on both sides: 8 prefill + 8 decode GPUs,
    # each pool one attention-DP8 x EP8 instance; a request's KV moves between DP groups
    pred = predict(serving(gpus=16, scheduler={"kind": "disaggregated"}))
    dep = pred.serving["deployment"]
    assert [(i["role"], i["count"], i["gpus_per_instance"]) for i in dep["instances"]] == \
        [("prefill", 1, 8), ("decode", 1, 8)]
    assert dep["kv_transfer"] == "inter_node"  # 16 GPUs over two 8-GPU H200 nodes
    assert pred.num_gpus == 16 and pred.tpot_s > 0


def test_serving_moe_overlap_two_batch_runs():
    pred = predict(serving(moe_overlap="two_batch"))
    assert pred.tpot_s > 0


def _deepep(mode: str, device: str = "h200_sxm") -> dict:
    path = (sources_dir() / f"aiconfigurator/systems/data/{device}/comm/sglang/0.5.12/"
            f"wideep_deepep_{mode}_perf.parquet")
    out = {}
    for r in C.aic_deepep(path, mode):
        p = r["params"]
        out[(p["collective"].split("_")[1], p["hidden"], p["topk"], p["experts"],
             p["tokens"])] = r["time_s"]
    return out


@pytest.mark.parametrize("device", ["h100_sxm", "h200_sxm", "b200_sxm"])
def test_deepep_low_latency_beats_normal_at_small_batches(device):
    """The measured tables (SGLang's DeepEP collector): at 1-32 tokens per rank the
    low-latency kernels are faster than the normal ones, and the fitted profile keeps that."""
    ll, normal = _deepep("ll", device), _deepep("normal", device)
    shared = [k for k in ll if k in normal and k[-1] <= 32]
    assert shared
    for key in shared:
        assert ll[key] < normal[key]
    rs, plan = plan_of(scenario(batch=64))
    low = stage_comm(DSV3, plan, 64, "decode", 2.0, rs.system, rs.profile)
    from dataclasses import replace

    high = stage_comm(DSV3, replace(plan, a2a_mode="normal"), 64, "decode", 2.0, rs.system,
                      rs.profile)
    assert low.ep < high.ep


def test_auto_mode_is_normal_for_prefill():
    p = predict(scenario())
    assert p.breakdown["moe"]["prefill"]["a2a_mode"] == "normal"
    assert p.breakdown["moe"]["decode_step"]["a2a_mode"] == "ll"


def test_pipeline_parallel_composes_with_attention_dp():
    one = predict(scenario(gpus=16))
    two = predict(scenario(gpus=16, parallelism={"pp": 2, "uneven_pipeline": True}))
    assert two.memory_per_gpu_bytes < one.memory_per_gpu_bytes
    rs, plan = plan_of(scenario(gpus=16, parallelism={"pp": 2, "uneven_pipeline": True}))
    assert plan.replicas == 1 and plan.instance_gpus == 16
    res = forward_pass(DSV3, rs.system, plan, rs.profile, 64, 1.0, 1001, 1001, "decode", 64, False)
    assert res.ep_comm > 0 and res.pp_comm > 0


def test_routed_expert_bytes_are_the_active_experts():
    # batch 1 on TP8 (attention_dp 1, ep 8): 8 routed experts of 256, one per EP rank on
    # average, each 3 x 7168 x 2048 fp8 weights: the breakdown's routed-expert bytes
    p = predict(scenario(tp=8, adp=1, ep=8, batch=1))
    per_expert = 3 * 7168 * 2048 * 1.0
    active = 256 / 8 * (1 - (1 - 8 / 256) ** 1)  # = 1 per rank
    expected = 58 * active * per_expert
    assert p.breakdown["moe"]["decode_step"]["routed_expert_weight_bytes_per_gpu"] == \
        pytest.approx(expected, rel=1e-6)


def test_megatron_ep_etp_pp_training_composes():
    """Training: EP carved from DP (each EP rank brings its micro-batch, route_sources = ep):
    rows per rank t*top_k, E/ep experts per rank split etp ways; with PP the stage holds its
    layers' experts only."""
    t, tp, ep, etp = 4096.0, 2, 8, 2
    mix = resolve_model("mixtral-8x7b")
    shard = O.Shard(tp, False, ep, etp, route_sources=ep)
    ops = O.layer_forward_ops(mix, True, 1, t, t, O.attention_pairs(t, t), shard,
                              O.Precision.training("bf16"))
    up = next(op for op in ops if op.name == "moe.expert.up")
    assert up.shape[0] * up.groups == pytest.approx(t * 2)  # top-2
    assert up.groups == pytest.approx(8 / ep, rel=1e-6)  # every local expert active
    assert up.shape[1] == pytest.approx(2 * 14336 / etp)
    base = {"kind": "training", "model": "mixtral-8x7b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 64},
            "training": {"seq_len": 4096, "global_batch": 64, "micro_batch": 1}}
    one = predict({**base, "parallelism": {"tp": 2, "pp": 1, "ep": 8, "etp": 2}})
    two = predict({**base, "parallelism": {"tp": 2, "pp": 2, "ep": 8, "etp": 2}})
    assert two.breakdown["memory"]["weights"] == pytest.approx(
        one.breakdown["memory"]["weights"] / 2, rel=0.05)
    assert two.step_time_s > 0 and np.isfinite(two.step_time_s)


@settings(max_examples=20, deadline=None)
@given(b1=st.integers(1, 64), b2=st.integers(1, 64), mode=st.sampled_from(["ll", "normal"]))
def test_all_to_all_time_never_falls_with_more_tokens(b1, b2, mode):
    """The fitted DeepEP curves are monotone in size (fit.monotone_curve): more tokens per rank
    never dispatch faster."""
    rs, plan = plan_of(scenario())
    from dataclasses import replace

    p = replace(plan, a2a_mode="low_latency" if mode == "ll" else "normal")
    small, large = sorted((8 * b1, 8 * b2))
    t = [stage_comm(DSV3, p, n, "decode", 2.0, rs.system, rs.profile) for n in (small, large)]
    assert t[0].dispatch <= t[1].dispatch * (1 + 1e-9)
    assert t[0].combine <= t[1].combine * (1 + 1e-9)


def test_expert_tp_under_attention_dp_gathers_instead_of_all_to_all():
    # tp 2 x attention_dp 4 with ep 4: each expert split over moe_tp = 2 GPUs, so the MoE
    # tokens of the four attention groups are gathered, not dispatched
    rs, plan = plan_of(scenario(tp=2, adp=4, ep=4))
    comm = stage_comm(DSV3, plan, 64, "decode", 2.0, rs.system, rs.profile)
    assert comm.mode == "" and comm.dispatch == 0 and comm.ep > 0


@pytest.mark.parametrize("engine, table", [
    ("sglang", "moe.fp8 as proxy for deepgemm fp8_block"),
    ("vllm", "moe.fp8 as proxy for deepgemm fp8_block"),
    ("trtllm", "moe.fp8_block (trtllm_cutlass)"), (None, "moe.fp8_block (trtllm_cutlass)")])
def test_prediction_names_the_moe_table_its_engine_reads(engine, table):
    """DeepSeek-V3 fp8_block experts on H200: SGLang and vLLM run DeepGEMM, which no H200
    table measures, so they read the per-tensor fp8 proxy their engine files name; TRT-LLM and
    the generic engine read TRT-LLM's CUTLASS block-scale table (profile.moe_table)."""
    sc = scenario(weight_dtype="fp8_block", activation_dtype="fp8")
    if engine:
        sc["engine"] = {"name": engine}
    moe = predict(sc).breakdown["moe"]
    assert moe["prefill"]["grouped_gemm_table"].startswith(table)
    assert moe["decode_step"]["grouped_gemm_table"].startswith(table)


# ---- two-micro-batch overlap of the all-to-all (SGLang TBO, vLLM DBO) -----------------------
from perfmodel.engines import MoeOverlapFacts, OverlapPhase, OverlapSegment, get_engine  # noqa: E402
from perfmodel.errors import SpecError  # noqa: E402
from perfmodel.moe_parallel import (  # noqa: E402
    comm_sm_slowdown,
    moe_overlap_mode,
    two_batch_layer,
)

VLLM_DBO = get_engine("vllm").moe.overlap.decode.segments  # MLP_SHARED_OVERLAP
SGLANG_TBO_DECODE = get_engine("sglang").moe.overlap.decode.segments
SGLANG_TBO_PREFILL = get_engine("sglang").moe.overlap.prefill.segments


def test_two_batch_layer_by_hand_vllm_schedule():
    # one micro-batch: attention 2.4 (A0 1.0 + A1 1.4), shared 1.2, experts 2.4; dispatch and
    # combine 1.5 each. |A0 A1 || MLP || S MLP || S A0 A1| over |D || D || C || C|:
    # max(2.4, 1.5) + max(2.4, 1.5) + max(3.6, 1.5) + max(3.6, 1.5) = 12.0, all hidden
    g = {"attn_in": 1.0, "attn_core": 1.4, "shared": 1.2, "experts": 2.4}
    time, exposed = two_batch_layer(VLLM_DBO, g, 1.5, 1.5)
    assert time == pytest.approx(12.0) and exposed == pytest.approx(0.0)
    # long all-to-alls (5, 4): 2.6 + 2.6 + 0.4 + 0.4 = 6.0 exposed on top of 12.0 compute
    time, exposed = two_batch_layer(VLLM_DBO, g, 5.0, 4.0)
    assert exposed == pytest.approx(6.0) and time == pytest.approx(18.0)


def test_two_batch_layer_by_hand_sglang_decode_schedule():
    # [S + attn_in || D] [experts] [attn_core || C], twice: max(1.5, 2) + 2 + max(3, 2.5) = 7
    g = {"attn_in": 1.0, "attn_core": 3.0, "shared": 0.5, "experts": 2.0}
    time, exposed = two_batch_layer(SGLANG_TBO_DECODE, g, 2.0, 2.5)
    assert time == pytest.approx(14.0) and exposed == pytest.approx(1.0)


def test_two_batches_faster_when_comm_is_long_slower_when_short():
    """Hand numbers both ways. One batch: attention 4, shared 2, experts 4 (10) plus its
    all-to-all serially. Two micro-batches: each half runs at 60 % of the full batch's
    efficiency (6 per half: attention 2.4, shared 1.2, experts 2.4), the all-to-all halves."""
    half = {"attn_in": 1.0, "attn_core": 1.4, "shared": 1.2, "experts": 2.4}
    # long all-to-all: dispatch 3 + combine 3 -> one batch 16; two batches 12 (hidden)
    one = 10.0 + 3.0 + 3.0
    two, _ = two_batch_layer(VLLM_DBO, half, 1.5, 1.5)
    assert two == pytest.approx(12.0) and two < one
    # short all-to-all: 0.2 + 0.2 -> one batch 10.4; two batches still 12: the split is slower
    one = 10.0 + 0.2 + 0.2
    two, exposed = two_batch_layer(VLLM_DBO, half, 0.1, 0.1)
    assert exposed == 0 and two == pytest.approx(12.0) and two > one


_t = st.floats(0.0, 10.0)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["vllm", "sglang_decode", "sglang_prefill"]), _t, _t, _t, _t, _t, _t)
def test_exposed_comm_is_between_zero_and_the_total(which, a_in, a_core, shared, experts, d, c):
    seg = {"vllm": VLLM_DBO, "sglang_decode": SGLANG_TBO_DECODE,
           "sglang_prefill": SGLANG_TBO_PREFILL}[which]
    g = {"attn_in": a_in, "attn_core": a_core, "shared": shared, "experts": experts}
    time, exposed = two_batch_layer(seg, g, d, c)
    compute = 2 * (a_in + a_core + shared + experts)
    assert -1e-12 <= exposed <= 2 * (d + c) + 1e-9
    assert time == pytest.approx(compute + exposed)
    assert time >= max(compute, 2 * (d + c) - compute) - 1e-9


def test_schedule_must_hold_each_part_twice():
    with pytest.raises(ValueError, match="exactly twice"):
        OverlapPhase(segments=[OverlapSegment(compute=["attention", "shared", "experts"],
                                              comm="dispatch")])
    MoeOverlapFacts(decode=OverlapPhase(segments=list(VLLM_DBO)))  # the real one is valid


def test_normal_mode_sm_share():
    # SGLang prefill TBO: DeepGEMM on 132 - 20 SMs of an H100 (DeepEP Buffer.num_sms = 20)
    assert comm_sm_slowdown(20, 132) == pytest.approx(132 / 112)
    assert comm_sm_slowdown(None, 132) == 1.0 and comm_sm_slowdown(20, None) == 1.0


def test_engine_defaults_are_off_and_generic_has_no_schedule():
    assert moe_overlap_mode(None, "sglang") == "none"
    assert moe_overlap_mode(None, "vllm") == "none"
    assert moe_overlap_mode("two_batch", "sglang") == "two_batch"
    with pytest.raises(SpecError, match="moe_overlap"):
        moe_overlap_mode("two_batch", "generic")


def _overlap(engine, overlap, batch=256, **extra):
    sc = scenario(batch=batch, weight_dtype="fp8_block", activation_dtype="fp8", **extra)
    sc["engine"] = {"name": engine}
    if overlap:
        sc["parallelism"]["moe_overlap"] = overlap
    return predict(sc)


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_breakdown_splits_exposed_and_overlapped_all_to_all(engine):
    on, off = _overlap(engine, "two_batch"), _overlap(engine, None)
    for phase in ("prefill", "decode_step"):
        m = on.breakdown["moe"][phase]
        assert m["moe_overlap"] == "two_batch"
        assert 0 <= m["all_to_all_exposed_s"] <= m["all_to_all_s"]
        assert m["all_to_all_exposed_s"] + m["all_to_all_overlapped_s"] == \
            pytest.approx(m["all_to_all_s"])
        o = off.breakdown["moe"][phase]
        assert o["moe_overlap"] == "none" and o["all_to_all_overlapped_s"] == 0
    assert on.tpot_s != off.tpot_s


def test_vllm_decode_below_its_threshold_runs_one_batch():
    # 64 sequences over attention DP8: 8 decode tokens per rank < dbo_decode_token_threshold 32
    on, off = _overlap("vllm", "two_batch", batch=64), _overlap("vllm", None, batch=64)
    assert on.breakdown["moe"]["decode_step"]["moe_overlap"] == "none"
    assert on.tpot_s == pytest.approx(off.tpot_s)
    # 512 sequences: 64 per rank, split
    on = _overlap("vllm", "two_batch", batch=512)
    assert on.breakdown["moe"]["decode_step"]["moe_overlap"] == "two_batch"


def test_sglang_prefill_of_one_prompt_per_rank_is_not_split():
    # SGLang splits an extend batch between sequences: 8 prompts over attention DP8 is one per
    # rank, one batch; 64 prompts (8 per rank) split
    one = _overlap("sglang", "two_batch", batch=8)
    assert one.breakdown["moe"]["prefill"]["moe_overlap"] == "none"
    assert _overlap("sglang", "two_batch", batch=64).breakdown["moe"]["prefill"][
        "moe_overlap"] == "two_batch"


def test_tbo_ablation_of_the_lmsys_large_scale_ep_blog():
    """Independent figures (not fitted): LMSYS 2025-05-05 large-scale EP blog, "Ablation Study:
    Two-batch Overlap", DeepSeek-V3 decode on 72 H100 (EP72, DeepEP low latency): TBO is slower
    below a threshold "between 64 and 128 tokens" per device (-27 % at 32) and +25.5 % faster at
    256. The validation case's scenario with moe_overlap none vs two_batch."""
    import copy

    import yaml

    from perfmodel.paths import data_dir

    cases = yaml.safe_load((data_dir("validation") / "inference" / "moe_serving.yaml").read_text())
    base = next(c for c in cases["cases"] if c["id"] == "LMSYS-LSEP-DSV3-H100-DECODE-EP72")
    speedup = {}
    for per_gpu in (32, 128, 256):
        t = {}
        for mode in ("none", "two_batch"):
            sc = copy.deepcopy(base["scenario"])
            sc["parallelism"]["moe_overlap"] = mode
            sc["inference"]["batch"] = per_gpu * 72
            t[mode] = predict(sc).tpot_s
        speedup[per_gpu] = t["none"] / t["two_batch"]
    assert speedup[32] < 1.0  # blog: -27 %
    assert speedup[128] > 1.0
    assert 1.10 < speedup[256] < 1.45  # blog: +25.5 %


# --- training: MoE parallel folding (Megatron-Core parallel_state.py expert rank generator) ---

def _qwen3_235b_h100(ep=32, etp=1, tp=2):
    """Megatron-Bridge's Qwen3-235B-A22B H100 preset: TP 2, PP 8, EP 32, ETP 1 on 256 GPUs."""
    import perfmodel as pm
    return pm.Scenario(
        kind="training", model="tests/data/hf_configs/aiconfigurator-0.12.0/"
        "Qwen--Qwen3-235B-A22B_config.json",
        system={"device": "h100-sxm5-80gb", "num_gpus": 256, "node": "dgx-h100"},
        parallelism={"tp": tp, "pp": 8, "vp": 4, "ep": ep, "etp": etp,
                     "sequence_parallel": True, "zero_stage": 1, "uneven_pipeline": True},
        training={"seq_len": 4096, "global_batch": 2048, "micro_batch": 1,
                  "precision": "bf16", "recompute": "none"})


def test_folded_expert_grid_by_hand():
    """Megatron-Core's expert grid (tp=etp, ep, dp=world/(etp*ep*pp), pp) in the order
    tp-ep-dp-pp: TP 2, DP 16, EP 32, ETP 1 on 8-GPU nodes puts 8 EP ranks on a node (stride 1),
    4 nodes per EP group, no expert replicas (edp = 2*16/32 = 1)."""
    from perfmodel.topology import group_spans
    s = group_spans(8, "tp-cp-ep-dp-pp", tp=2, dp=16, ep=32, pp=8, etp=1)
    assert (s["ep"].size, s["ep"].local, s["ep"].nodes) == (32, 8, 4)
    assert s["edp"].size == 1 and s["etp"].size == 1
    # etp = tp: the older layout (EP carved out of DP, stride tp): edp = dp/ep
    s = group_spans(8, "tp-cp-ep-dp-pp", tp=2, dp=16, ep=8, pp=8)
    assert (s["ep"].size, s["ep"].local, s["edp"].size, s["etp"].size) == (8, 4, 2, 2)


def test_expert_rows_fold_over_tp():
    """Rows one expert-TP group computes: tokens x k x etp / tp (4096 x 8 x 1 / 2 = 16384);
    summed over the tp*dp/etp groups of a stage that is dp x tokens x k."""
    from perfmodel.parallel_comm import expert_rows
    assert expert_rows(4096, 8, 2, 1) == 16384
    assert expert_rows(4096, 8, 2, 1) * (2 * 16 / 1) == 16 * 4096 * 8


def test_etp_traffic_only_with_expert_tp():
    from perfmodel.parallel_comm import etp_layer_comm
    from perfmodel.topology import GroupSpan
    sys = resolve_system_h100()
    prof = _profile()
    span = GroupSpan(size=2.0, local=2.0, nodes=1.0)
    f1, b1 = etp_layer_comm(4096, 2, 1, 8, 4096, 2.0, span, sys, prof, False)
    assert float(f1) == 0.0 and float(b1) == 0.0
    f2, b2 = etp_layer_comm(4096, 2, 2, 8, 4096, 2.0, span, sys, prof, False)
    rows_bytes = 4096 * 8 * 4096 * 2.0
    want = (collective_time("all_gather", rows_bytes, span, sys, prof)
            + collective_time("reduce_scatter", rows_bytes, span, sys, prof))
    assert float(f2) == pytest.approx(float(want)) and float(b2) == pytest.approx(float(want))


def resolve_system_h100():
    from perfmodel.specs.assemble import resolve_system
    from perfmodel.specs.scenario import SystemConfig
    return resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=16, node="dgx-h100"))


def _profile():
    from perfmodel.specs.registry import default_profile
    return default_profile()


def test_folded_ep_wider_than_dp_predicts():
    """EP 32 > DP 16 is valid when EP folds over the TP ranks (Megatron-Bridge's Qwen3-235B
    H100 preset); experts are sharded 32 ways with no expert data parallelism."""
    import perfmodel as pm
    p = pm.predict(_qwen3_235b_h100())
    assert p.step_time_s > 0
    g = p.breakdown["groups"]
    assert g["ep"]["size"] == 32 and g["ep"]["nodes"] == 4 and "edp" not in g


def test_folding_rule_names_the_fields():
    import perfmodel as pm
    with pytest.raises(PerfModelError, match=r"parallelism\.ep: ep\*etp = 64\*1 = 64 must "
                                             r"divide the tp\*cp\*dp = 32"):
        pm.predict(_qwen3_235b_h100(ep=64))


def test_per_expert_gemms_read_the_dense_curve():
    """Megatron-Core / NeMo run a rank's experts through Transformer Engine's GroupedLinear,
    one cuBLAS GEMM per expert (frameworks/megatron-core.yaml ``moe``): a grouped GEMM of 16
    experts x 1024 rows then takes the time of the same FLOPs at the dense curve's efficiency
    for m = 1024, as one GEMM of those rows would."""
    from dataclasses import replace as dc_replace

    from perfmodel import frameworks_costs as FC
    from perfmodel.roofline import Roofline, op_times
    from perfmodel.specs.registry import profile_for
    sys = resolve_system_h100()
    prof = profile_for("h100-sxm5-80gb")  # has measured grouped-GEMM (MoE) tables
    assert "bf16" in prof.moe
    roof = dc_replace(Roofline.for_system(sys, prof), per_expert_gemm=True)
    prec = O.Precision.training("bf16")
    g = dc_replace(O.gemm("moe.expert.up", 1024, 5760, 2880, prec), groups=16.0)
    dense = O.gemm("moe.expert.up", 1024, 5760, 2880, prec)
    dense = dc_replace(dense, flops=g.flops, bytes=g.bytes, model_flops=g.model_flops)
    t = op_times([g, dense], roof)
    assert float(t.time[0]) == pytest.approx(float(t.time[1]))
    assert FC.per_expert_gemm(None)  # megatron-core's facts when no framework is named
    grouped = op_times([g], Roofline.for_system(sys, prof))  # the MoE table
    assert float(grouped.time[0]) != pytest.approx(float(t.time[0]))


def test_ep_a2a_overlap_by_hand():
    """Combined 1F1B EP overlap: the forward's all-to-all (2) hides behind the other
    micro-batch's backward compute (1): 1 exposed; the backward's (3) behind the forward
    compute (10): 0; the unpaired 10 % of passes hide nothing: 0.1 x 5 + 0.9 x 1 = 1.4."""
    from perfmodel.parallel_comm import ep_a2a_overlap, unpaired_share
    o = ep_a2a_overlap(2.0, 3.0, 10.0, 1.0, 0.1)
    assert float(o.total) == 5.0 and float(o.exposed) == pytest.approx(1.4)
    # interleaved warm-up of the first stage under the overlap: (pp-1)*2 + (vp-1)*pp + 1 chunks
    # of m*vp (Megatron-Core schedules.py get_pp_rank_microbatches: one extra forward)
    assert float(unpaired_share(128, 8, 4)) == pytest.approx((14 + 24 + 1) / 512)
    assert float(unpaired_share(64, 2, 24)) == pytest.approx((2 + 46 + 1) / (64 * 24))
    assert float(unpaired_share(5, 1, 1)) == pytest.approx(1 / 5)  # first fwd / last bwd


def test_moe_a2a_overlap_hides_part_of_the_all_to_all():
    import perfmodel as pm
    base = _qwen3_235b_h100()
    par = dict(base.parallelism.model_dump(exclude_unset=True), moe_a2a_overlap=True)
    on = pm.predict(base.model_copy(update={"parallelism": type(base.parallelism)(**par)}))
    off = pm.predict(base)
    e_on, e_off = on.breakdown["communication"]["ep"], off.breakdown["communication"]["ep"]
    assert e_on["total_s"] == pytest.approx(e_off["total_s"])
    assert e_on["exposed_s"] < e_off["exposed_s"] and on.step_time_s < off.step_time_s


def test_moe_a2a_overlap_needs_ep():
    import perfmodel as pm
    with pytest.raises(PerfModelError, match=r"parallelism\.moe_a2a_overlap"):
        pm.predict(pm.Scenario(
            kind="training", model="mixtral-8x7b",
            system={"device": "h100-sxm5-80gb", "num_gpus": 8},
            parallelism={"tp": 8, "moe_a2a_overlap": True},
            training={"seq_len": 4096, "global_batch": 8, "micro_batch": 1}))


def test_mixed_all_to_all_and_gather_cells_keep_their_own_comm():
    """A vectorised plan over ep (8: DeepEP all-to-all; 1: attention-DP gather of the MoE
    tokens) under SGLang two-batch overlap: each cell is its own scalar prediction. The gather
    cell runs no two-batch split (SGLang TBO needs the DeepEP all-to-all), so its ep_comm is
    stage_comm's gather, 58 x (all-gather + reduce-scatter of 256 x 7168 x 2 B: bf16 hidden
    states, Precision.hidden) here."""
    from dataclasses import replace as _replace
    sc = scenario(batch=256, weight_dtype="fp8_block", parallelism={"moe_overlap": "two_batch"})
    sc["engine"] = {"name": "sglang"}
    rs, plan = plan_of(sc)
    mixed = _replace(plan, ep=np.array([8.0, 1.0]))
    roof_args = (DSV3, rs.system)
    pass_args = (rs.profile, 256, 1.0, 1001.0, 1001.0, "decode", 256, False)
    both = forward_pass(*roof_args, mixed, *pass_args)
    for i, ep in enumerate((8.0, 1.0)):
        one = forward_pass(*roof_args, _replace(plan, ep=ep), *pass_args)
        assert np.asarray(both.time)[i] == pytest.approx(float(one.time))
        assert np.asarray(both.ep_comm)[i] == pytest.approx(float(one.ep_comm))
    gather = stage_comm(DSV3, _replace(plan, ep=1.0), 256, "decode", plan.precision.hidden,
                        rs.system, rs.profile).ep
    assert float(gather) > 0 and np.asarray(both.ep_comm)[1] == pytest.approx(float(gather))


def test_moe_a2a_overlap_with_pipeline_needs_interleaving():
    """Megatron-Core TransformerConfig.__post_init__ (megatron/core/transformer/
    transformer_config.py): "If enabling EP A2A overlap, virtual_pipeline_model_parallel_size
    must be specified when pipeline_model_parallel_size > 1"; the combined 1F1B runs either
    without pipelining (pp = 1) or interleaved, never the plain 1F1B (pp - 1 warm-up)."""
    import perfmodel as pm
    base = _qwen3_235b_h100()
    par = dict(base.parallelism.model_dump(exclude_unset=True), moe_a2a_overlap=True, vp=1)
    with pytest.raises(PerfModelError, match=r"^parallelism\.moe_a2a_overlap.*vp") as err:
        pm.predict(base.model_copy(update={"parallelism": type(base.parallelism)(**par)}))
    assert "\n" not in str(err.value)
    par["vp"] = 2  # interleaved: runs
    pm.predict(base.model_copy(update={"parallelism": type(base.parallelism)(**par)}))
