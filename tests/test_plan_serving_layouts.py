"""plan-serving's MoE layouts (attention TP x attention DP, EP over the instance), the
scenario's own layout among them, the replaced-field line, a true Pareto frontier over every
evaluated point, and one TTFT / TPOT band rule in predict, sweep-concurrency and plan-serving
(QA 2026-12-03 (c) findings 2 and 8)."""

import argparse
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.serving.capacity import (
    Layout,
    PlanInputs,
    dp_attention_supported,
    layouts,
    mark_pareto,
    plan_serving,
    render_plan,
)
from perfmodel.serving.cli import add_arguments, plan_inputs
from perfmodel.serving.sweep import sweep_concurrency
from perfmodel.specs.scenario import EngineConfig, LengthDistribution, Parallelism, SLOConfig

ROOT = Path(__file__).resolve().parents[1]
CLOSED = ROOT / "examples" / "vllm-closed-loop-llama3.1-8b-h100.yaml"
DP_ATTN = ROOT / "examples" / "sglang-dp-attention-deepseek-r1-h200.yaml"


def _inputs(model="mixtral-8x7b", engine="generic", tps=(8,), **kw):
    return PlanInputs(model=pm.get_model(model), rate_per_s=2.0,
                      slo=SLOConfig(ttft_p90_s=2.0, tpot_p90_s=0.1),
                      prompt_len=LengthDistribution(kind="fixed", value=512),
                      output_len=LengthDistribution(kind="fixed", value=64), tps=tps,
                      engine=EngineConfig(name=engine), **kw)


def _args(*argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args([str(a) for a in argv])


def test_engines_that_run_dp_attention_are_the_ones_whose_file_says_how():
    # engines/sglang.yaml attention_dp_in_tp_group: true; engines/vllm.yaml: false (each
    # --data-parallel-size rank its own engine core); trtllm / llamacpp state nothing
    assert dp_attention_supported(EngineConfig(name="sglang"))
    assert dp_attention_supported(EngineConfig(name="vllm"))
    assert not dp_attention_supported(EngineConfig(name="trtllm"))
    assert not dp_attention_supported(EngineConfig(name="llamacpp"))
    assert dp_attention_supported(EngineConfig(name="generic"))


def test_moe_layouts_split_each_instance_into_attention_tp_x_dp_with_ep_options():
    got = set(layouts(_inputs(engine="sglang")))
    # 8 GPUs: attention DP 1, 2, 4, 8 (tp 8, 4, 2, 1), each with ep 1 or ep 8 = 8 layouts
    assert got == {Layout(8 // d, 1, d, e) for d in (1, 2, 4, 8) for e in (1, 8)}
    # no DP attention where the engine does not run it: TP 8 with ep 1 or 8
    assert set(layouts(_inputs(engine="trtllm"))) == {Layout(8, 1, 1, 1), Layout(8, 1, 1, 8)}
    # a dense model: TP only
    assert layouts(_inputs(model="llama-3-8b", tps=(1, 2))) == [Layout(1), Layout(2)]
    # --attention-dp restricts the degrees
    assert set(layouts(_inputs(attention_dps=(1, 8)))) == {
        Layout(8, 1, 1, 1), Layout(8, 1, 1, 8), Layout(1, 1, 8, 1), Layout(1, 1, 8, 8)}


def test_the_scenarios_own_layout_is_always_a_candidate_first():
    own = Parallelism(tp=1, attention_dp=4, ep=4)
    got = layouts(_inputs(engine="trtllm", tps=(2,), parallelism=own))
    assert got[0] == Layout(1, 1, 4, 4)  # not a --tp size, not a trtllm default: still tried
    assert Layout(2, 1, 1, 2) in got


def test_cli_keeps_the_scenario_layout_and_says_what_it_replaces():
    inp = plan_inputs(_args(DP_ATTN, "--arrival", "poisson", "--rate", 4, "--ttft-p90", 3,
                            "--tpot-p90", 0.06, "--devices", "h200-sxm-141gb",
                            "--num-requests", 200))
    assert (inp.parallelism.tp, inp.parallelism.attention_dp, inp.parallelism.ep) == (1, 8, 8)
    assert layouts(inp)[0] == Layout(1, 1, 8, 8)
    assert Layout(2, 1, 4, 8) in layouts(inp)  # SGLang: DP attention is searched
    text = "; ".join(inp.replaced)
    assert "parallelism tp 1 dp 8 ep 8 -> searched (kept as one candidate layout)" in text
    assert "serving.arrival closed loop of 64 clients -> poisson at 4 req/s" in text
    assert "serving.num_requests 256 -> 200" in text
    assert "system 8 x h200-sxm-141gb" in text


def _dominates(o, q):
    return (o["tokens_per_s_per_gpu"] >= q["tokens_per_s_per_gpu"]
            and o["tokens_per_s_per_user"] >= q["tokens_per_s_per_user"]
            and (o["tokens_per_s_per_gpu"] > q["tokens_per_s_per_gpu"]
                 or o["tokens_per_s_per_user"] > q["tokens_per_s_per_user"]))


def test_pareto_keeps_equal_points_and_drops_weakly_dominated_ones():
    pts = mark_pareto([{"tokens_per_s_per_gpu": g, "tokens_per_s_per_user": u, "k": k}
                       for k, (g, u) in enumerate([(10, 5), (10, 5), (10, 4), (9, 5),
                                                   (20, 1), (1, 50)])])
    on = sorted(q["k"] for q in pts if q["pareto"])
    # (10, 5) twice: neither beats the other; (10, 4) and (9, 5) are beaten by (10, 5)
    assert on == [0, 1, 4, 5]


def test_moe_plan_searches_dp_attention_and_its_frontier_is_pareto_over_every_point():
    own = Parallelism(tp=1, attention_dp=4, ep=4)
    inp = _inputs(tps=(2,), parallelism=own, num_requests=40,
                  devices=["h100-sxm5-80gb"], replaced=["parallelism tp 1 dp 4 ep 4 -> x"])
    res = plan_serving(inp)
    seen = {(c.tp, c.attention_dp, c.ep) for c in res.candidates}
    assert {(1, 4, 4), (2, 1, 1), (2, 1, 2), (1, 2, 1), (1, 2, 2)} <= seen
    pts = res.frontier
    assert {(q["attention_dp"], q["ep"]) for q in pts} >= {(4, 4), (2, 2), (1, 1)}
    for q in pts:  # exactly the points that no evaluated point dominates
        assert q["pareto"] == (not any(_dominates(o, q) for o in pts))
    data = res.to_dict()
    assert data["frontier"] == [q for q in pts if q["pareto"]]
    assert data["inputs"]["scenario_layout"] == "tp 1 dp 4 ep 4"
    text = render_plan(res)
    assert "scenario fields replaced: parallelism tp 1 dp 4 ep 4 -> x" in text
    assert "tp 1 dp 4 ep 4" in text.split("not feasible")[0] or any(
        c.attention_dp == 4 and not c.feasible for c in res.candidates)


def test_dp_attention_frontier_prefills_one_prompt_per_group_in_a_pass():
    """tokens/s/GPU = b x o / (b x t_pre + (o - 1) x TPOT) / GPUs with t_pre the pass of
    one prompt on each of the g groups, / g (module docstring of batch_points)."""
    from perfmodel.serving.capacity import _scenario, _serving, batch_points
    from perfmodel.serving.predict import deployment_for
    from perfmodel.serving.workload import build_workload
    from perfmodel.specs.assemble import resolve_system
    from perfmodel.specs.registry import profile_for

    inp = _inputs(tps=(2,), num_requests=20)
    wl = build_workload(_serving(inp))
    sc = _scenario(inp, "h100-sxm5-80gb", Layout(1, 1, 2, 2))
    dep = deployment_for(sc, resolve_system(sc.system), profile_for("h100-sxm5-80gb"),
                         sc.inference, wl, counts=(1,))
    cost = dep.instances[0].cost
    t_pre = cost.iteration_time([512.0, 512.0], [512.0, 512.0]) / 2
    for q in batch_points(dep, wl, "h100-sxm5-80gb", 1, ep=2, attention_dp=2)[:3]:
        b = q["batch"]
        assert q["tokens_per_s_per_gpu"] == pytest.approx(
            b * 64 / (b * t_pre + 63 * q["tpot_s"]) / 2)
        assert q["layout"] == "tp 1 dp 2 ep 2"


def test_one_ttft_band_rule_in_predict_sweep_and_plan_serving():
    """The same closed-loop point: predict's TTFT band (calibration residuals and validation
    group, per side the wider, never excluding the point) is sweep-concurrency's, not clamped
    at the point; plan-serving bands its rows by the same ratios."""
    pred = pm.predict(str(CLOSED))
    p50 = pred.serving["ttft_s"]["p50"]
    lo, hi = pred.serving_ranges["ttft_p50_s"]
    assert lo < p50 < hi  # the calibration side reaches below the point (QA: 183.9 < 190.9)
    point = sweep_concurrency(str(CLOSED), [16])["points"][0]
    assert point["median_ttft_ms"] == pytest.approx(p50 * 1e3)
    assert point["ranges"]["median_ttft_ms"] == pytest.approx([lo * 1e3, hi * 1e3])
    tlo, thi = pred.serving_ranges["tpot_p50_s"]
    assert point["ranges"]["median_tpot_ms"] == pytest.approx(
        [tlo * 1e3 / pred.serving["tpot_s"]["p50"] * point["median_tpot_ms"] / 1e3,
         thi * 1e3 / pred.serving["tpot_s"]["p50"] * point["median_tpot_ms"] / 1e3])
    rlo, rhi = pred.serving_ranges["requests_per_s"]
    assert point["ranges"]["request_throughput"] == pytest.approx([rlo, rhi], rel=1e-3)
    res = plan_serving(plan_inputs(_args(CLOSED, "--arrival", "poisson", "--rate", 2,
                                         "--ttft-p90", 2, "--tpot-p90", 0.1, "--devices",
                                         "h100-sxm5-80gb", "--tp", 1, "--num-requests", 60)))
    rows = [c for c in res.candidates if c.feasible]
    assert rows
    for c in rows:
        v = c.metrics["ttft_p90_s"]
        assert c.ranges["ttft_p90_s"] == pytest.approx([v * lo / p50, v * hi / p50])


def test_equal_cost_rows_are_split_by_slo_headroom():
    from perfmodel.serving.capacity import Candidate, PlanResult

    def row(tp, adp, ep, tpot):
        checks = {"tpot_p90_s": {"value_s": tpot, "bound_s": 0.06, "met": True},
                  "ttft_p90_s": {"value_s": 0.2, "bound_s": 3.0, "met": True}}
        return Candidate("h200-sxm-141gb", tp, True, replicas=1, gpus=8,
                         metrics={"checks": checks}, cost={"usd_per_hour": 36.72},
                         attention_dp=adp, ep=ep)

    rows = [row(8, 1, 8, 0.0417), row(4, 2, 8, 0.0382), row(2, 4, 8, 0.0393)]
    # 38.2 / 60 ms = 0.64 of the bound: the most headroom among 8-GPU rows at 36.72 USD/h
    assert PlanResult({}, rows).best.label == "tp 4 dp 2 ep 8"
