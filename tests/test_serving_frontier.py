"""plan-serving's throughput-vs-interactivity Pareto frontier over device x TP/EP x batch."""

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.serving.capacity import PlanInputs, mark_pareto, plan_serving
from perfmodel.specs.scenario import LengthDistribution, SLOConfig

ROOT = Path(__file__).resolve().parents[1]


def _dominated(q, points):
    return any(o["tokens_per_s_per_gpu"] >= q["tokens_per_s_per_gpu"]
               and o["tokens_per_s_per_user"] >= q["tokens_per_s_per_user"]
               and (o["tokens_per_s_per_gpu"] > q["tokens_per_s_per_gpu"]
                    or o["tokens_per_s_per_user"] > q["tokens_per_s_per_user"])
               for o in points)


@given(st.lists(st.tuples(st.floats(0.1, 1e4), st.floats(0.1, 1e4)), min_size=1,
                max_size=40, unique=True))
def test_pareto_marks_exactly_the_non_dominated_points(pairs):
    points = mark_pareto([{"tokens_per_s_per_gpu": g, "tokens_per_s_per_user": u,
                           "pareto": False} for g, u in pairs])
    for q in points:
        assert q["pareto"] == (not _dominated(q, points))


def _plan(model, devices, tps=(1, 2, 4)):
    return plan_serving(PlanInputs(
        model=pm.get_model(model), rate_per_s=2.0, slo=SLOConfig(ttft_p90_s=2.0, tpot_p90_s=0.1),
        prompt_len=LengthDistribution(kind="fixed", value=1024),
        output_len=LengthDistribution(kind="fixed", value=128), devices=devices, tps=tps,
        num_requests=60))


def test_frontier_points_follow_the_iteration_model():
    res = _plan("llama-3-8b", ["h100-sxm5-80gb", "a100-sxm4-80gb"])
    pts = res.frontier
    assert {q["device"] for q in pts} == {"h100-sxm5-80gb", "a100-sxm4-80gb"}
    assert {q["tp"] for q in pts} == {1, 2, 4}
    for q in pts:
        assert q["tokens_per_s_per_user"] == 1.0 / q["tpot_s"]
    # per (device, tp): a larger batch is never more interactive, and gives more per GPU
    for dev in ("h100-sxm5-80gb", "a100-sxm4-80gb"):
        for tp in (1, 2, 4):
            curve = sorted((q for q in pts if q["device"] == dev and q["tp"] == tp),
                           key=lambda q: q["batch"])
            assert len(curve) > 3
            per_gpu = [q["tokens_per_s_per_gpu"] for q in curve]
            assert per_gpu == sorted(per_gpu)
            assert curve[-1]["tpot_s"] > curve[0]["tpot_s"]
    on = [q for q in pts if q["pareto"]]
    assert on and all(not _dominated(q, pts) for q in on)
    data = res.to_dict()
    assert data["frontier"] == on and len(data["frontier_points"]) == len(pts)


def test_moe_frontier_includes_expert_parallel_points():
    res = _plan("mixtral-8x7b", ["h100-sxm5-80gb"], tps=(2, 4))
    assert {q["ep"] for q in res.frontier} == {1, 2, 4}


def test_cli_prints_and_json_carries_the_frontier(capsys):
    plan = ["plan-serving", "--model", "llama-3-8b", "--rate", "2", "--prompt-len", "512",
            "--output-len", "64", "--ttft-p90", "2", "--tpot-p90", "0.1", "--devices",
            "h100-sxm5-80gb", "--tp", "1,2", "--num-requests", "50"]
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", *plan], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "throughput vs interactivity" in out.stdout and "tok/s/user" in out.stdout
    # --json through the same main(), in process (the search above ran in its own interpreter)
    from perfmodel.cli import main

    assert main([*plan, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frontier"] and all(q["pareto"] for q in data["frontier"])


def test_cli_scheduler_accepts_every_registered_aggregated_scheduler():
    """--scheduler offers the scheduler registry's policies an instance can run (incl. the
    engines' own inflight / prefill_first), not the disaggregated pools' prefill / decode."""
    from perfmodel.serving.cli import PLAN_SCHEDULERS
    from perfmodel.serving.schedulers import SCHEDULERS

    assert set(PLAN_SCHEDULERS) == set(SCHEDULERS) - {"prefill", "decode"}
    base = [sys.executable, "-m", "perfmodel.cli", "plan-serving", "--model", "llama-3-8b",
            "--rate", "2", "--prompt-len", "512", "--output-len", "64", "--ttft-p90", "2",
            "--tpot-p90", "0.1", "--devices", "h100-sxm5-80gb", "--tp", "1",
            "--num-requests", "30", "--json"]
    for kind in ("inflight", "prefill_first"):
        out = subprocess.run([*base, "--scheduler", kind], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["inputs"]["scheduler"] == kind
    out = subprocess.run([*base, "--scheduler", "decode"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "prefill_first" in out.stderr
