"""Expert all-to-all / compute overlap in training as the frameworks run it: Megatron-Core's
combined 1F1B and DeepSeek's DualPipeV (torchtitan), framework facts, rules, the DualPipeV
bubble and memory, SM contention of the hidden all-to-all, and the plan search's axis.
Hand calculations and the schedule's own step counts, not perfmodel's outputs."""

from dataclasses import replace

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import training as T
from perfmodel.errors import PerfModelError
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.memory import embedding_and_head_activation_bytes
from perfmodel.parallel_comm import dualpipev_unpaired_share, ep_a2a_overlap
from perfmodel.pipeline import dualpipev_bubble
from perfmodel.plan import TrainPlan, a2a_overlap_cells


def _scenario(framework="megatron-core", recompute="selective", **par):
    parallelism = {"tp": 1, "pp": 4, "ep": 8, "zero_stage": 1, **par}
    return pm.Scenario(
        kind="training", model="mixtral-8x7b",
        system={"device": "h100-sxm5-80gb", "num_gpus": 32, "inter_node": "ib-ndr-400x8"},
        parallelism=parallelism,
        training={"seq_len": 4096, "global_batch": 64, "micro_batch": 1,
                  "recompute": recompute, "framework": framework})


def _dualpipev(**par):
    return _scenario("torchtitan", "none", **{"zero_stage": 3, "vp": 2,
                                              "schedule": "dualpipev", **par})


def test_dualpipev_bubble_is_table_2():
    """DeepSeek-V3 report Table 2 / DualPipe README: (PP/2 - 1)(F&B + B - 3W) over PP stages.
    DualPipeV on 8 ranks = 16 stages of one chunk: F = 0.5, B = 1, W = 0.5 per chunk, F&B =
    F + B = 1.5: 7 x (1.5 + 1 - 1.5) = 7. Per rank (two chunks): stage 3, backward 2, wgrad 1.
    1F1B on the same 8 ranks: (8 - 1) x 3 = 21."""
    assert float(dualpipev_bubble(3.0, 2.0, 1.0, 8)) == pytest.approx(7.0)
    assert float(dualpipev_bubble(np.array([3.0, 3.0]), 2.0, 1.0, np.array([2, 8]))[0]) == \
        pytest.approx(1.0 * (1.5 + 1 - 1.5))  # PP = 4 stages: (4/2 - 1) = 1


def _pairs(m: int, ranks: int, rank: int) -> int:
    """Overlapped forward-backward chunk pairs of one rank, read off dualpipe/dualpipev.py
    ``step`` (@3da1bbe): step 4 runs m - 2 ranks + rank + 1 iterations of two pairs (the last
    rank's first iteration runs its two chunks unpaired), step 5 ranks - rank - 1 of one."""
    step_4 = m - ranks * 2 + rank + 1
    pairs = 2 * step_4 + (ranks - rank - 1)
    return pairs - (1 if rank == ranks - 1 else 0)


@pytest.mark.parametrize("m,ranks", [(8, 4), (40, 4), (64, 16), (33, 8)])
def test_dualpipev_unpaired_share_counts_the_schedule(m, ranks):
    least = min(_pairs(m, ranks, r) for r in range(ranks))
    assert least == _pairs(m, ranks, 0)  # rank 0 pairs the fewest
    assert float(dualpipev_unpaired_share(m, ranks)) == pytest.approx(1 - least / (2 * m))


def test_a2a_hidden_is_at_most_the_other_chunks_compute():
    """Paired passes: the forward's all-to-all (4) hides behind the other micro-batch's
    backward compute (1.5): min(4, 1.5) = 1.5 hidden, 2.5 exposed; the backward's (1) behind
    the forward compute (3): all hidden. Unpaired share 0: exposed 2.5, hidden 1.5 + 1."""
    o = ep_a2a_overlap(4.0, 1.0, 3.0, 1.5, 0.0)
    assert float(o.exposed) == pytest.approx(2.5)
    assert float(o.hidden_bwd) == pytest.approx(1.5) and float(o.hidden_fwd) == 1.0


def test_frameworks_state_their_overlap():
    mc = resolve_framework(FrameworkConfig(name="megatron-core")).spec
    assert mc.moe_a2a_overlap.schedule == "combined_1f1b" and mc.dualpipev is None
    assert "--overlap-moe-expert-parallel-comm" in mc.moe_a2a_overlap.flag
    tt = resolve_framework(FrameworkConfig(name="torchtitan")).spec
    assert tt.moe_a2a_overlap.schedule == "dualpipev" and tt.dualpipev is not None
    assert tt.moe_a2a_overlap.recompute == "none"
    assert resolve_framework(FrameworkConfig(name="deepspeed")).spec.moe_a2a_overlap is None


@pytest.mark.parametrize("sc,field,words", [
    (_scenario(schedule="dualpipev", vp=2), "parallelism.schedule", "torchtitan"),
    (_scenario("deepspeed", zero_stage=1, pp=1, moe_a2a_overlap=True),
     "parallelism.moe_a2a_overlap", "no expert all-to-all overlap"),
    (_scenario("torchtitan", "none", zero_stage=3, moe_a2a_overlap=True),
     "parallelism.moe_a2a_overlap", "set schedule: dualpipev"),
    (_dualpipev(moe_a2a_overlap=True).model_copy(update={"training": _dualpipev().training
                                                         .model_copy(update={"recompute":
                                                                             "selective"})}),
     "parallelism.moe_a2a_overlap", "activation checkpointing"),
    (_scenario(recompute="full", vp=2, moe_a2a_overlap=True), "parallelism.moe_a2a_overlap",
     "recompute: full"),
    (_dualpipev(vp=1), "parallelism.vp", "vp = 2"),
    (_scenario(vp=2, moe_a2a_overlap=True).model_copy(update={"training": _scenario().training
                                                              .model_copy(update={"precision":
                                                                                  "fp32"})}),
     "parallelism.moe_a2a_overlap", "16-bit"),
    (_dualpipev().model_copy(update={"training": _dualpipev().training.model_copy(
        update={"global_batch": 48})}), "training.global_batch", "2*pp = 8"),
])
def test_overlap_rules_name_the_field(sc, field, words):
    with pytest.raises(PerfModelError, match=rf"^{field}:") as err:
        pm.predict(sc)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_hidden_all_to_all_slows_the_compute_beside_it(monkeypatch):
    """The combined 1F1B's hidden all-to-all holds NCCL's SMs: the step pays sm_contention of
    the hidden seconds, more than 0 and at most the hidden seconds times the SM share."""
    sc = _scenario(vp=2, moe_a2a_overlap=True)
    with_c = pm.predict(sc)
    monkeypatch.setattr(T, "sm_contention", lambda *a: 0.0)
    without = pm.predict(sc)
    extra = with_c.step_time_s - without.step_time_s
    ep = with_c.breakdown["communication"]["ep"]
    hidden = ep["total_s"] - without.breakdown["communication"]["ep"]["exposed_s"]
    assert 0.0 < extra < hidden


def test_dualpipev_step_composition(monkeypatch):
    """step = m x (rank 0's stage: both ends) + the Table 2 bubble + DP + optimizer."""
    seen = {}

    def spy(stage, backward, wgrad, pp):
        seen.update(stage=stage, backward=backward, wgrad=wgrad, pp=pp)
        return dualpipev_bubble(stage, backward, wgrad, pp)

    monkeypatch.setattr(T, "dualpipev_bubble", spy)
    p = pm.predict(_dualpipev(moe_a2a_overlap=True))
    m = 64 / 8
    t = p.breakdown["time"]
    rest = t["dp_comm"] + t["comm_contention"] + t["optimizer"]
    bubble = (4 - 1) * (seen["stage"] + seen["backward"] - 3 * seen["wgrad"]) / 2
    assert p.step_time_s == pytest.approx(m * seen["stage"] + bubble + rest)
    assert 0 < seen["wgrad"] < seen["backward"] < seen["stage"]


def test_dualpipev_activations_are_pp_plus_one_chunks():
    """DualPipe README: PP + 1 chunk-loads on a rank (2 pp chunks of half a rank's layers):
    pp + 1/2 rank-loads vs 1F1B's pp, and rank 0 also keeps the LM head's activations."""
    from perfmodel.memory import ActivationShape
    from perfmodel.zoo import get_model
    dpv = pm.predict(_dualpipev())
    f1b = pm.predict(_scenario("torchtitan", "none", zero_stage=3))
    a_dpv = dpv.breakdown["memory"]["activations"]
    a_1f1b = f1b.breakdown["memory"]["activations"]
    model = get_model("mixtral-8x7b")
    shape = ActivationShape(b=1, s=4096, s_kv=4096, tp=1, sequence_parallel=False,
                            act_bytes=2.0, dropout=False, flash_attention=True)
    emb = embedding_and_head_activation_bytes(model, shape, first=True, last=False)
    head = embedding_and_head_activation_bytes(model, shape, first=False, last=True)
    stage = (a_1f1b - emb) / 4
    assert a_dpv == pytest.approx(a_1f1b + 0.5 * stage + head, rel=1e-9)


def _cells(framework="megatron-core", dispatcher=None, recompute="selective", precision="bf16",
           ep=8, pp=1, vp=1):
    sc = _scenario(framework, recompute, pp=1)
    fw = resolve_framework(FrameworkConfig(name=framework, moe_dispatcher=dispatcher))
    plan = TrainPlan.from_scenario(sc)
    return a2a_overlap_cells(replace(plan, framework=fw, ep=ep, pp=pp, vp=vp,
                                     recompute=recompute, precision=precision))


def test_search_runs_the_overlap_where_the_framework_can():
    """The search's cells are the scenario rules' verdict with the overlap on (one source):
    Megatron-Core needs ep > 1, virtual stages under pp > 1, no full recompute, a 16-bit model
    and the alltoall or a flex dispatcher (transformer_config.py @d98e8a64)."""
    cells = _cells(ep=np.array([1, 8, 8, 8]), pp=np.array([1, 1, 4, 4]),
                   vp=np.array([1, 1, 1, 2]))
    assert cells.tolist() == [False, True, False, True]
    assert not _cells(recompute="full")
    assert not _cells(precision="fp32") and not _cells(precision="tf32")
    assert _cells(precision="fp8") and _cells(dispatcher="flex-hybridep")
    assert _cells(dispatcher="flex-deepep")
    assert not np.any(_cells(dispatcher="allgather", ep=np.array([2, 8]), pp=np.array([1, 4]),
                             vp=np.array([1, 2])))
    for fw in ("torchtitan", "deepspeed"):
        assert not _cells(fw, recompute="none")


def test_allgather_dispatcher_refuses_the_overlap():
    """Megatron-Core asserts moe_token_dispatcher_type in ['alltoall', 'flex'] with
    overlap_moe_expert_parallel_comm: Mixtral-8x7B pp 4 vp 2 ep 8 with the allgather
    dispatcher and the overlap on is refused, naming both settings and the valid ones."""
    sc = _scenario(vp=2, moe_a2a_overlap=True)
    sc = sc.model_copy(update={"training": sc.training.model_copy(update={
        "framework": FrameworkConfig(name="megatron-core", moe_dispatcher="allgather")})})
    with pytest.raises(PerfModelError, match=r"^parallelism.moe_a2a_overlap:") as err:
        pm.predict(sc)
    msg = str(err.value)
    assert "moe_dispatcher allgather" in msg and "'alltoall', 'flex-deepep', 'flex-hybridep'" in msg
    pm.predict(sc.model_copy(update={"parallelism": sc.parallelism.model_copy(
        update={"moe_a2a_overlap": False})}))  # the same plan without the overlap runs


def test_search_never_overlaps_an_allgather_cell():
    """A plan search under the allgather dispatcher keeps the overlap off in every record."""
    from perfmodel.resolve import resolve
    from perfmodel.search import SearchSpace, search
    sc = _scenario(vp=2)
    sc = sc.model_copy(update={"training": sc.training.model_copy(update={
        "framework": FrameworkConfig(name="megatron-core", moe_dispatcher="allgather")})})
    rs = resolve(sc)
    space = SearchSpace(tp=(1,), pp=(1, 4), cp=(1,), vp=(1, 2), micro_batch=(1,), ep=(8,),
                        recompute=("selective",), sequence_parallel=(False,), zero_stage=(1,))
    res = search(sc, rs.system, rs.profile, space, top=10)
    assert res.plans and not any(p["moe_a2a_overlap"] for p in res.plans)


def test_searched_overlap_predicts_as_the_search_ranks():
    """The search runs Megatron-Core's overlap where it can (ep 8, vp 2) and not where it
    cannot (pp 4 without virtual stages); its records predict the step they were ranked by."""
    from perfmodel.resolve import resolve
    from perfmodel.search import SearchSpace, scenario_for, search
    sc = _scenario(vp=2)
    rs = resolve(sc)
    space = SearchSpace(tp=(1,), pp=(4,), cp=(1,), vp=(1, 2), micro_batch=(1,), ep=(8,),
                        recompute=("selective",), sequence_parallel=(False,), zero_stage=(1,))
    res = search(sc, rs.system, rs.profile, space, top=5)
    by_vp = {p["vp"]: p for p in res.plans}
    assert by_vp[2]["moe_a2a_overlap"] is True and by_vp[1]["moe_a2a_overlap"] is False
    assert by_vp[2]["scenario"]["parallelism"]["moe_a2a_overlap"] is True
    for rec in by_vp.values():
        assert pm.predict(scenario_for(sc, rec)).step_time_s == pytest.approx(rec["step_time_s"])


def test_mla_up_proj_recompute_drops_q_k_v():
    """Megatron-Core recompute_modules mla_up_proj (CheckpointWithoutOutput over the q / kv up
    projections and rope): Q, K, V are not kept, b s (hq + hk + hv) a bytes less per MLA layer;
    the latents stay: 2 (q_lora + kv_lora) + rope = 2 (1536 + 512) + 64 = 4160 per token."""
    from perfmodel.memory import ActivationShape, _mla_latent_width, layer_activation_bytes
    from perfmodel.zoo import get_model
    m = get_model("deepseek-v3")
    assert _mla_latent_width(m) == 4160
    shape = ActivationShape(b=1, s=4096, s_kv=4096, tp=1, sequence_parallel=False,
                            act_bytes=2.0, dropout=False, flash_attention=True)
    base = layer_activation_bytes(m, shape, "selective", True, 8, 1, ("layernorm",))
    up = layer_activation_bytes(m, shape, "selective", True, 8, 1, ("layernorm", "mla_up_proj"))
    qkv = 128 * 192 + 128 * 192 + 128 * 128  # q, k at qk_head_dim 192, v at 128, 128 heads
    assert base - up == pytest.approx(4096 * qkv * 2.0)
