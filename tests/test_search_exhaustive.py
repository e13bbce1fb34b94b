"""The vectorised mesh search finds the same best plan as predicting every plan of a small space
one by one through the public API (``perfmodel.predict``), rules and memory headroom included."""

import itertools

import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.errors import SpecError
from perfmodel.search import SearchSpace, search
from perfmodel.specs.assemble import resolve_system

SPACE = SearchSpace(tp=(1, 2, 4), pp=(1, 2, 3), cp=(1, 2), vp=(1, 2), micro_batch=(1, 2),
                    ep=(1,), recompute=("selective", "full"), sequence_parallel=(False, True),
                    zero_stage=(1, 3))
HEADROOM = 0.05


def scenario(num_gpus=8, pp=1):
    return pm.Scenario(kind="training", model="llama-3-8b",
                       system={"device": "h100-sxm5-80gb", "num_gpus": num_gpus},
                       parallelism={"pp": pp},
                       training={"seq_len": 4096, "global_batch": 16})


def one_by_one(sc, space):
    """(step time, plan) of every plan that passes the rules and fits, predicted singly."""
    device = resolve_system(sc.system).device
    out = []
    for tp, pp, cp, vp, mb, rc, sp, zero in itertools.product(
            space.tp, space.pp, space.cp, space.vp, space.micro_batch, space.recompute,
            space.sequence_parallel, space.zero_stage):
        n = sc.system.num_gpus
        if n % (tp * pp * cp) or (sp and tp == 1) or (vp > 1 and pp == 1):
            continue
        uneven = sc.model.num_layers % (pp * vp) != 0
        try:
            p = pm.predict(sc.model_copy(update={
                "parallelism": pm.Parallelism(
                    tp=tp, pp=pp, cp=cp, vp=vp, sequence_parallel=sp, zero_stage=zero,
                    uneven_pipeline=uneven, reshard_after_forward=True if zero == 3 else None),
                "training": sc.training.model_copy(update={"micro_batch": mb,
                                                           "recompute": rc})}))
        except SpecError:
            continue
        if p.memory_per_gpu_bytes <= (1 - HEADROOM) * device.memory_bytes:
            out.append((p.step_time_s, (tp, pp, cp, vp, mb, rc, sp, zero)))
    return out


@pytest.mark.parametrize("num_gpus", [8, 12])
def test_mesh_search_matches_exhaustive_single_predictions(num_gpus):
    sc = scenario(num_gpus)
    system = resolve_system(sc.system)
    result = search(sc, system, resolve_profile(sc), SPACE, top=3, headroom=HEADROOM)
    singles = one_by_one(sc, SPACE)
    assert singles and result.plans
    best_time = min(t for t, _ in singles)
    best = result.plans[0]
    assert best["step_time_s"] == pytest.approx(best_time, rel=1e-9)
    # the search's winner is one of the exhaustive optima
    key = (best["tp"], best["pp"], best["cp"], best["vp"], best["micro_batch"],
           best["recompute"], best["sequence_parallel"], best["zero_stage"])
    optima = {k for t, k in singles if t <= best_time * (1 + 1e-9)}
    assert key in optima
    # the same number of plans fit (every fitting plan was seen, none invented)
    assert result.fitting == len(singles)


MOE_SPACE = SearchSpace(tp=(1, 2, 4), pp=(1, 2), cp=(1, 2), vp=(1,), micro_batch=(1,),
                        ep=(1, 2, 4, 8), recompute=("full",), sequence_parallel=(False, True),
                        zero_stage=(1, 3))


def test_mesh_search_matches_exhaustive_for_expert_parallel_plans():
    sc = pm.Scenario(kind="training", model="mixtral-8x7b",
                     system={"device": "h100-sxm5-80gb", "num_gpus": 16},
                     training={"seq_len": 4096, "global_batch": 32})
    device = resolve_system(sc.system).device
    singles = []
    for tp, pp, cp, ep, sp, zero in itertools.product(
            MOE_SPACE.tp, MOE_SPACE.pp, MOE_SPACE.cp, MOE_SPACE.ep,
            MOE_SPACE.sequence_parallel, MOE_SPACE.zero_stage):
        if 16 % (tp * pp * cp) or (sp and tp == 1):
            continue
        try:
            p = pm.predict(sc.model_copy(update={
                "parallelism": pm.Parallelism(
                    tp=tp, pp=pp, cp=cp, ep=ep, sequence_parallel=sp, zero_stage=zero,
                    reshard_after_forward=True if zero == 3 else None),
                "training": sc.training.model_copy(update={"recompute": "full"})}))
        except pm.SpecError:
            continue
        if p.memory_per_gpu_bytes <= (1 - HEADROOM) * device.memory_bytes:
            singles.append((p.step_time_s, (tp, pp, cp, ep, sp, zero)))
    result = search(sc, resolve_system(sc.system), resolve_profile(sc), MOE_SPACE, top=1,
                    headroom=HEADROOM)
    assert singles and result.plans and result.fitting == len(singles)
    best_time = min(t for t, _ in singles)
    best = result.plans[0]
    assert best["step_time_s"] == pytest.approx(best_time, rel=1e-9)
    key = (best["tp"], best["pp"], best["cp"], best["ep"], best["sequence_parallel"],
           best["zero_stage"])
    assert key in {k for t, k in singles if t <= best_time * (1 + 1e-9)}


def test_best_per_gpu_count_is_each_counts_own_search():
    """One sweep over several GPU counts (plan-training's dp-axis mesh) gives, per count, the
    plan a search on that count alone ranks first -- same step time, memory and plan."""
    from perfmodel.search import base_plan, best_per_gpu_count, sweep

    counts = [4, 8, 12, 16]
    sc = scenario(max(counts))
    system = resolve_system(sc.system)
    profile = resolve_profile(sc)
    sw = sweep(sc.model, system, profile, base_plan(sc), SPACE, counts, HEADROOM)
    rows = {r["gpus"]: r for r in best_per_gpu_count(sw)}
    assert sorted(rows) == [r["gpus"] for r in best_per_gpu_count(sw)]
    for n in counts:
        one = sc.model_copy(update={"system": sc.system.model_copy(update={"num_gpus": n})})
        alone = search(one, resolve_system(one.system), profile, SPACE, top=1,
                       headroom=HEADROOM).plans
        assert (n in rows) == bool(alone)
        if alone:
            a, b = rows[n], alone[0]
            keys = ("tp", "pp", "cp", "dp", "vp", "micro_batch", "recompute",
                    "sequence_parallel", "zero_stage", "step_time_s", "memory_per_gpu_bytes")
            assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
