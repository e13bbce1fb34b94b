"""Plan search: same core as a single prediction; finds plans at least as good as a given one."""

import json
import subprocess
import sys
from pathlib import Path

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.search import SearchSpace, search
from perfmodel.specs.assemble import resolve_system

ROOT = Path(__file__).resolve().parents[1]


def scenario():
    return pm.Scenario(kind="training", model="llama-2-7b",
                       system={"device": "a100-sxm4-80gb", "num_gpus": 16},
                       parallelism={"tp": 2, "pp": 2, "sequence_parallel": True},
                       training={"seq_len": 4096, "global_batch": 64, "micro_batch": 1,
                                 "recompute": "selective"})


def test_search_beats_or_matches_the_given_plan_and_agrees_with_predict():
    sc = scenario()
    system = resolve_system(sc.system)
    result = search(sc, system, resolve_profile(sc), SearchSpace(), top=5)
    given = pm.predict(sc)
    best = result.plans[0]
    assert best["step_time_s"] <= given.step_time_s
    assert result.valid <= result.evaluated and result.fitting <= result.valid
    # the best plan, predicted on its own, gives the same step time
    again = pm.predict(sc.model_copy(update={
        "parallelism": pm.Parallelism(tp=best["tp"], pp=best["pp"], cp=best["cp"],
                                      dp=best["dp"], vp=best["vp"],
                                      sequence_parallel=best["sequence_parallel"],
                                      zero_stage=best["zero_stage"],
                                      schedule="interleaved"),
        "training": sc.training.model_copy(update={"micro_batch": best["micro_batch"],
                                                   "recompute": best["recompute"]})}))
    assert abs(again.step_time_s / best["step_time_s"] - 1) < 1e-9
    assert again.fits


def test_search_cli_json():
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "search",
                          "examples/llama3-70b-train-h100.yaml", "--top", "3", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["plans"]) == 3 and data["evaluated"] > 1000
    times = [p["step_time_s"] for p in data["plans"]]
    assert times == sorted(times)


# ---- issue 10: correctness of the search ---------------------------------------------------

from perfmodel.plan import TrainPlan  # noqa: E402
from perfmodel.search import describe  # noqa: E402


def _seventy(num_gpus=512, **par):
    return pm.Scenario(kind="training", model="llama-3-70b",
                       system={"device": "h100-sxm5-80gb", "num_gpus": num_gpus},
                       parallelism=par, training={"seq_len": 8192, "global_batch": 512})


def _run(sc, **kw):
    return search(sc, resolve_system(sc.system), resolve_profile(sc), top=kw.pop("top", 10),
                  **kw)


def test_search_ignores_the_scenario_plan():
    """pp 4 + ZeRO-3 (FSDP kept unsharded under PP by default), micro-batch, recompute and an
    uneven flag in the scenario change nothing: the search derives each plan's own."""
    plain = _run(_seventy())
    busy = pm.Scenario(kind="training", model="llama-3-70b",
                       system={"device": "h100-sxm5-80gb", "num_gpus": 512},
                       parallelism={"pp": 4, "tp": 8, "zero_stage": 3,
                                    "uneven_pipeline": True, "reshard_after_forward": False},
                       training={"seq_len": 8192, "global_batch": 512, "micro_batch": 4,
                                 "recompute": "full"})
    other = _run(busy)
    assert [describe(p) for p in plain.plans] == [describe(p) for p in other.plans]
    assert [p["step_time_s"] for p in plain.plans] == [p["step_time_s"] for p in other.plans]
    assert (plain.valid, plain.fitting) == (other.valid, other.fitting)


def test_search_lists_distinct_plans_only():
    result = _run(_seventy(), top=20)
    keys = [(p["tp"], p["pp"], p["cp"], p["vp"], p["micro_batch"], p["sequence_parallel"],
             p["step_time_s"], p["memory_per_gpu_bytes"]) for p in result.plans]
    assert len(set(keys)) == len(keys) == 20
    # selective recompute with FlashAttention is the same plan as none: folded, and said so
    assert result.duplicates_removed > 0
    assert any(p["equivalent"] for p in result.plans)


def test_search_keeps_the_memory_headroom():
    device = resolve_system(_seventy().system).device
    for headroom in (0.0, 0.05, 0.3):
        result = _run(_seventy(), headroom=headroom)
        assert result.plans
        for p in result.plans:
            assert p["memory_per_gpu_bytes"] <= (1 - headroom) * device.memory_bytes
            assert p["memory_headroom"] >= headroom - 1e-12
    loose, tight = _run(_seventy(), headroom=0.0), _run(_seventy(), headroom=0.3)
    assert tight.fitting < loose.fitting
    assert tight.plans[0]["step_time_s"] >= loose.plans[0]["step_time_s"]


def test_bad_headroom_is_one_line():
    import pytest

    with pytest.raises(pm.SpecError, match="headroom"):
        _run(_seventy(), headroom=1.0)


def test_405b_plans_need_and_get_uneven_pipelines():
    """126 layers: no power-of-two pp*vp > 2 divides them; the search tries uneven splits."""
    for n in (1024, 16384):
        sc = pm.Scenario(kind="training", model="llama-3.1-405b",
                         system={"device": "h100-sxm5-80gb", "num_gpus": n},
                         training={"seq_len": 8192, "global_batch": 2048})
        result = _run(sc, top=3)
        assert result.plans, n
        best = result.plans[0]
        assert best["uneven_pipeline"] == (126 % (best["pp"] * best["vp"]) != 0)
        assert any(p["uneven_pipeline"] for p in result.plans)


def test_why_the_top_plan_wins():
    result = _run(_seventy())
    expl = result.explanation
    best, second = result.plans[0], result.plans[1]
    shares = [t["share"] for t in expl["bound_by"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert expl["bound_by"][0]["seconds"] <= best["step_time_s"]
    ru = expl["runner_up"]
    assert ru["plan"] == describe(second)
    assert ru["margin"] == pytest_approx(second["step_time_s"] / best["step_time_s"] - 1)
    # the differences are the breakdown terms that move most between the two plans
    deltas = [abs(d["delta_s"]) for d in ru["differences"]]
    assert deltas == sorted(deltas, reverse=True)
    assert all(d["delta_s"] == pytest_approx(d["best_s"] - d["runner_up_s"])
               for d in ru["differences"])


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-9, abs=1e-15)


def test_reshard_default_is_derived_from_each_plans_own_pp():
    from dataclasses import replace

    import numpy as np
    import pytest

    from perfmodel.frameworks_config import FrameworkConfig

    # torchtitan's FSDP2 keeps parameters gathered under pipeline parallelism
    # (frameworks/torchtitan.yaml capabilities.zero_stages.3.reshard_under_pp: false)
    sc = _seventy(pp=4, tp=8, zero_stage=3)
    sc = sc.model_copy(update={"training": sc.training.model_copy(
        update={"framework": FrameworkConfig(name="torchtitan")})})
    plan = TrainPlan.from_scenario(sc)
    assert plan.reshard_after_forward is None and plan.resharded is False
    assert replace(plan, pp=1).resharded is True
    assert replace(plan, pp=np.array([2.0, 4.0])).resharded is False
    with pytest.raises(pm.SpecError, match="reshard_after_forward"):
        _ = replace(plan, pp=np.array([1.0, 4.0])).resharded
    assert replace(plan, reshard_after_forward=True).resharded is True
