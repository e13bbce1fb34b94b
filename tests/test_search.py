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
