"""Serving simulator and capacity planning.

The iteration cost model must reproduce the inference model (same operators, same numbers);
the simulator must be deterministic, conserve requests and tokens, obey Little's law, reduce
to the inference model at zero load, and order the schedulers as the papers they follow
report (continuous > static, Orca/vLLM; chunked prefill flattens decode latency,
Sarathi-Serve). plan-serving must return a configuration that meets the SLOs and whose
one-replica-smaller neighbour does not.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.inference import inference
from perfmodel.resolve import inference_plan, resolve_profile
from perfmodel.serving.capacity import PlanInputs, plan_serving
from perfmodel.serving.cost import IterationCostModel
from perfmodel.serving.economics import energy_report, load_prices
from perfmodel.serving.metrics import summarize
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.specs import registry
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile
from perfmodel.specs.scenario import LengthDistribution, SLOConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("serving-*.yaml"))


def scenario(**serving) -> dict:
    base = {
        "kind": "serving", "model": "llama-3-8b",
        "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
        "serving": {
            "arrival": {"process": "poisson", "rate_per_s": 8.0},
            "num_requests": 400,
            "prompt_len": {"kind": "lognormal", "mean": 1024, "cv": 1.0, "min": 16,
                           "max": 6000},
            "output_len": {"kind": "lognormal", "mean": 256, "cv": 1.0, "min": 2, "max": 2000},
            "scheduler": {"kind": "continuous"},
            "seed": 1,
        },
    }
    for key, value in serving.items():
        if key in ("system", "parallelism", "model", "inference"):
            base[key] = value
        elif isinstance(value, dict) and isinstance(base["serving"].get(key), dict):
            base["serving"][key] = {**base["serving"][key], **value}
        else:
            base["serving"][key] = value
    return base


def simulate(data: dict):
    """(result, summary, scenario) of a serving scenario dict."""
    sc = pm.as_scenario(data)
    system = resolve_system(sc.system)
    profile = resolve_profile(sc)
    inf, wl = serving_inputs(sc)
    dep = deployment_for(sc, system, profile, inf, wl)
    res = dep.simulate(wl)
    return res, summarize(res.reqs, res.engines, sc.serving.slo, res.end), sc


# ---- the iteration cost model is the inference model --------------------------------------
@pytest.mark.parametrize("model,device,tp,pp", [
    ("llama-3-8b", "h100-sxm5-80gb", 1, 1),
    ("llama-3-70b", "h100-sxm5-80gb", 4, 2),
    ("mixtral-8x7b", "h100-sxm5-80gb", 2, 1),
    ("llama-2-7b", "a100-sxm4-80gb", 2, 2),
])
def test_iteration_time_matches_inference_model(model, device, tp, pp):
    sc = pm.Scenario(kind="inference", model=model,
                     system={"device": device, "num_gpus": tp * pp},
                     parallelism={"tp": tp, "pp": pp},
                     inference={"batch": 1, "prompt_len": 8, "output_len": 2})
    system, profile = resolve_system(sc.system), resolve_profile(sc)
    plan = inference_plan(sc.model, sc.parallelism, sc.inference, system.num_gpus)
    cost = IterationCostModel(sc.model, system, plan, profile, max_tokens=16384,
                              max_context=8192, max_batch=256)
    # decode: batch b at context c (output_len 1 puts every TPOT sample at kv = c + 1)
    for b, c in [(1, 17), (8, 333), (37, 2047), (256, 5000), (3, 7777)]:
        ref = inference(sc.model, system, replace(plan, batch=b, prompt_len=c, output_len=1),
                        profile)
        got = cost.iteration_time(decode_kv=[c + 1] * b)
        # pp micro-batches of b/pp sequences: a fractional token count is interpolated
        # between the integer grid points of F(T), exact ones are looked up
        tol = 1e-3 if b % min(pp, b) == 0 else 5e-3
        assert got == pytest.approx(float(ref.tpot), rel=tol), (b, c)
    # prefill: b prompts of p tokens (pp > 1 pipelines micro-batches, so b = 1 there)
    for b, p in [(1, 1), (1, 129), (1, 3000), (1, 8000), (4, 700), (2, 4096)]:
        if pp > 1 and b > 1:
            continue
        ref = inference(sc.model, system, replace(plan, batch=b, prompt_len=p, output_len=2),
                        profile)
        got = cost.iteration_time(prefill_q=[p] * b, prefill_kv=[p] * b)
        assert got == pytest.approx(float(ref.prefill.time), rel=5e-3), (b, p)


def test_mixed_iteration_costs_more_than_its_parts_alone():
    res, _, _ = simulate(scenario(num_requests=5))
    cost = res.engines[0].cost
    pre = cost.iteration_time([512], [1024])
    dec = cost.iteration_time([], [], [900] * 32)
    both = cost.iteration_time([512], [1024], [900] * 32)
    assert max(pre, dec) < both < pre + dec  # the GEMMs batch both (Sarathi-Serve's point)


# ---- simulation basics ------------------------------------------------------------------------
def test_deterministic_with_a_seed():
    a = pm.predict(scenario()).to_json_dict()
    b = pm.predict(scenario()).to_json_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = pm.predict(scenario(seed=2)).to_json_dict()
    assert c["serving"]["ttft_s"] != a["serving"]["ttft_s"]


def test_prediction_json_keys():
    pred = pm.predict(scenario(slo={"ttft_p90_s": 1.0, "tpot_p90_s": 0.05}))
    data = pred.to_json_dict()
    s = data["serving"]
    for key in ("ttft_s", "tpot_s", "e2e_s", "tbt_s"):
        assert set(s[key]) >= {"p50", "p90", "p99"}
    assert data["ttft_s"] == s["ttft_s"]["p50"] and data["tpot_s"] == s["tpot_s"]["p50"]
    assert data["e2e_latency_s"] == s["e2e_s"]["p50"]
    assert data["tokens_per_s"] == s["throughput"]["output_tokens_per_s"]
    assert {"goodput_rps", "attainment", "slo_met", "checks"} <= set(s["slo"])
    assert len(s["series"]["t_s"]) == len(s["series"]["queued"]) == len(
        s["series"]["kv_utilization"]) > 10
    assert 0 <= max(s["series"]["kv_utilization"]) <= 1
    assert s["cost"]["usd_per_gpu_hour"] > 0 and s["energy"]["joules_per_output_token"] > 0


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["static", "continuous", "chunked", "disaggregated"]),
       rate=st.floats(0.5, 40.0), seed=st.integers(0, 10_000),
       budget=st.sampled_from([64, 256, 2048]))
def test_every_request_finishes_with_all_its_tokens(kind, rate, seed, budget):
    sched = {"kind": kind, "token_budget": budget if kind == "chunked" else None}
    data = scenario(arrival={"rate_per_s": rate}, num_requests=150, seed=seed,
                    scheduler=sched, system={"device": "a100-sxm4-40gb", "num_gpus": 2})
    res, _, _ = simulate(data)
    r = res.reqs
    assert not np.isnan(r.finish).any()
    assert (r.gen == r.output).all()  # generated tokens = requested, preemptions included
    assert (r.arrival <= r.start).all() and (r.start <= r.first).all()
    assert (r.first <= r.finish).all()
    for e in res.engines:  # every KV block returned, none over-committed
        assert e.n == 0 and e.used_blocks() == 0
        assert max(b for _, b in e.samples) <= e.total_blocks


def test_littles_law():
    """Time-average of requests in the system = arrival rate x mean time in the system."""
    rate = 10.0
    res, s, _ = simulate(scenario(arrival={"rate_per_s": rate}, num_requests=3000))
    lam = (len(res.reqs) - 1) / (res.reqs.arrival[-1] - res.reqs.arrival[0])
    assert lam == pytest.approx(rate, rel=0.05)
    little = len(res.reqs) * s["e2e_s"]["mean"] / res.end  # integral of N(t) = sum of E2E
    assert s["mean_in_system"] == pytest.approx(little, rel=0.02)
    # and against the offered rate (steady state dominates a long run)
    assert s["mean_in_system"] == pytest.approx(rate * s["e2e_s"]["mean"], rel=0.10)


def test_zero_load_latency_is_the_inference_model():
    p, o = 700, 150
    data = scenario(num_requests=1, prompt_len=p, output_len=o)
    pred = pm.predict(data)
    inf = pm.predict({"kind": "inference", "model": "llama-3-8b",
                      "system": {"device": "h100-sxm5-80gb"},
                      "inference": {"batch": 1, "prompt_len": p, "output_len": o}})
    assert pred.ttft_s == pytest.approx(inf.ttft_s, rel=5e-3)
    assert pred.tpot_s == pytest.approx(inf.tpot_s, rel=5e-3)
    assert pred.e2e_latency_s == pytest.approx(inf.e2e_latency_s, rel=5e-3)
    # a trickle of requests sees the same latency (no batching, no queueing)
    trickle = pm.predict(scenario(num_requests=30, prompt_len=p, output_len=o,
                                  arrival={"rate_per_s": 0.05}))
    assert trickle.serving["ttft_s"]["p90"] == pytest.approx(inf.ttft_s, rel=5e-3)
    assert trickle.serving["tpot_s"]["p90"] == pytest.approx(inf.tpot_s, rel=5e-3)


def test_more_replicas_never_worse():
    slo = {"ttft_p90_s": 0.5, "tpot_p90_s": 0.03}
    goodput, ttft = [], []
    for gpus in (1, 2, 3, 4, 6):
        _, s, _ = simulate(scenario(arrival={"rate_per_s": 30.0}, num_requests=600, slo=slo,
                                    system={"device": "h100-sxm5-80gb", "num_gpus": gpus}))
        goodput.append(s["slo"]["goodput_rps"])
        ttft.append(s["ttft_s"]["p90"])
    assert all(b >= a * 0.99 for a, b in pairwise(goodput)), goodput
    assert all(b <= a * 1.01 for a, b in pairwise(ttft)), ttft
    assert goodput[-1] > 2 * goodput[0]


def test_continuous_beats_static_at_moderate_load():
    data = scenario(arrival={"rate_per_s": 4.0}, num_requests=400,
                    slo={"ttft_p90_s": 2.0, "tpot_p90_s": 0.05})
    _, cont, _ = simulate(data)
    _, stat, _ = simulate(scenario(**{**data["serving"], "scheduler": {"kind": "static"}}))
    assert cont["e2e_s"]["p50"] < stat["e2e_s"]["p50"]
    assert cont["ttft_s"]["p90"] < stat["ttft_s"]["p90"]
    assert cont["slo"]["goodput_rps"] > stat["slo"]["goodput_rps"]


def test_chunked_prefill_lowers_decode_latency_under_mixed_load():
    """Sarathi-Serve (Agrawal et al. 2024): stall-free batching removes the prefill stalls
    of decodes, so p90 TPOT and the time-between-tokens tail fall (TTFT may rise a little)."""
    base = scenario(arrival={"rate_per_s": 16.0}, num_requests=800)
    _, cont, _ = simulate(base)
    _, chunk, _ = simulate(scenario(**{**base["serving"],
                                       "scheduler": {"kind": "chunked", "token_budget": 512}}))
    assert chunk["tpot_s"]["p90"] < 0.8 * cont["tpot_s"]["p90"]
    assert chunk["tbt_s"]["p99"] < 0.5 * cont["tbt_s"]["p99"]


def test_preemption_by_recompute_when_kv_runs_out():
    data = scenario(arrival={"rate_per_s": 20.0}, num_requests=300,
                    system={"device": "a100-sxm4-40gb", "num_gpus": 1},
                    prompt_len={"kind": "uniform", "min": 1500, "max": 3000},
                    output_len={"kind": "uniform", "min": 800, "max": 1500})
    res, s, _ = simulate(data)
    assert s["preemptions"] > 0
    assert s["kv_cache"]["peak_utilization"] > 0.95
    assert (res.reqs.gen == res.reqs.output).all()


def test_disaggregated_transfers_kv_and_reports_first_token_from_prefill():
    data = scenario(arrival={"rate_per_s": 4.0}, num_requests=200,
                    system={"device": "h100-sxm5-80gb", "num_gpus": 2},
                    scheduler={"kind": "disaggregated", "prefill_gpus": 1, "decode_gpus": 1})
    pred = pm.predict(data)
    s = pred.serving
    assert [i["role"] for i in s["deployment"]["instances"]] == ["prefill", "decode"]
    assert s["deployment"]["kv_transfer"] == "intra_node"
    # the first token comes from the prefill pool; the KV transfer delays the second, so the
    # zero-load TPOT exceeds that of one aggregated instance
    agg = pm.predict(scenario(**{**data["serving"], "scheduler": {"kind": "continuous"}},
                              system={"device": "h100-sxm5-80gb", "num_gpus": 1}))
    assert s["zero_load"]["ttft_s"] == pytest.approx(agg.serving["zero_load"]["ttft_s"])
    assert s["zero_load"]["tpot_s"] > agg.serving["zero_load"]["tpot_s"]
    assert s["ttft_s"]["p90"] < agg.serving["ttft_s"]["p90"]  # prefills never wait on decodes
    # across nodes the transfer is slower, and needs a network
    far = pm.predict(scenario(**{**data["serving"], "scheduler": {
        "kind": "disaggregated", "kv_transfer": "inter_node"}},
        system={"device": "h100-sxm5-80gb", "num_gpus": 2, "inter_node": "ib-ndr-400x8"}))
    assert far.serving["deployment"]["kv_transfer"] == "inter_node"
    assert far.serving["zero_load"]["tpot_s"] > s["zero_load"]["tpot_s"]
    with pytest.raises(SpecError, match="inter-node network"):  # pcie-server-gen3: none
        pm.predict(scenario(**{**data["serving"], "scheduler": {
            "kind": "disaggregated", "kv_transfer": "inter_node"},
            "prompt_len": 2048, "output_len": 256},  # within llama-2-7b's 4096 context
            system={"device": "t4", "num_gpus": 2}, model="llama-2-7b"))


def test_trace_arrivals(tmp_path):
    trace = tmp_path / "trace.csv"
    rows = [(100 + 10 * i, 20 + i, 0.5 * i) for i in range(40)]
    trace.write_text("prompt_len,output_len,arrival_s\n"
                     + "".join(f"{p},{o},{t}\n" for p, o, t in rows))
    data = scenario(arrival={"process": "trace", "trace": str(trace), "rate_per_s": None},
                    num_requests=None)
    res, _, _ = simulate(data)
    assert len(res.reqs) == 40
    np.testing.assert_array_equal(res.reqs.prompt, [r[0] for r in rows])
    np.testing.assert_array_equal(res.reqs.arrival, [r[2] for r in rows])
    assert (res.reqs.start >= res.reqs.arrival).all()
    # a relative trace path resolves against the scenario file; no arrival_s -> Poisson
    (tmp_path / "lengths.csv").write_text("prompt_len,output_len\n64,8\n128,16\n256,4\n")
    path = tmp_path / "sc.yaml"
    d2 = scenario(arrival={"process": "trace", "trace": "lengths.csv", "rate_per_s": 2.0},
                  num_requests=None)
    path.write_text(yaml.safe_dump(d2))
    pred = pm.predict(path)
    assert pred.serving["num_requests"] == 3


def test_gamma_burstiness_raises_tail_latency():
    smooth = simulate(scenario(arrival={"process": "gamma", "rate_per_s": 12.0, "cv": 0.5},
                               num_requests=800))[1]
    bursty = simulate(scenario(arrival={"process": "gamma", "rate_per_s": 12.0, "cv": 4.0},
                               num_requests=800))[1]
    assert bursty["ttft_s"]["p99"] > smooth["ttft_s"]["p99"]


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,message", [
    ({"serving": None}, "needs a 'serving' section"),
    ({"serving": {"arrival": {"process": "gamma"}}}, "needs 'rate_per_s'"),
    ({"serving": {"arrival": {"process": "trace"}}}, "needs 'trace'"),
    ({"serving": {"arrival": {"rate_per_s": 1}, "prompt_len": {"kind": "uniform", "min": 5}}},
     "needs 'min' and 'max'"),
    ({"serving": {"arrival": {"rate_per_s": 1}, "prompt_len": 10,
                  "scheduler": {"kind": "batchy"}}}, "scheduler.kind"),
    ({"serving": {"arrival": {"rate_per_s": 1}, "prompt_len": 10, "output_len": 5,
                  "slo": {"ttft_p95_s": 1}}}, "unknown field"),
])
def test_bad_serving_config_is_a_clear_spec_error(change, message):
    data = {"kind": "serving", "model": "llama-3-8b", "system": {"device": "h100-sxm5-80gb"}}
    data.update(change)
    if data["serving"] is None:
        del data["serving"]
    with pytest.raises(SpecError, match=message.replace("'", ".")):
        pm.predict(data)


@pytest.mark.parametrize("data,message", [
    (scenario(prompt_len=None, output_len=None), "serving.prompt_len is required"),
    (scenario(prompt_len=600_000, output_len=10), "exceeds the context of model"),
    ({**scenario(prompt_len=600_000, output_len=10), "allow_beyond_context": True},
     "does not fit in the KV cache"),
    (scenario(system={"device": "h100-sxm5-80gb", "num_gpus": 2},
              scheduler={"kind": "disaggregated", "prefill_gpus": 2, "decode_gpus": 1}),
     "must equal system.num_gpus"),
    (scenario(system={"device": "h100-sxm5-80gb", "num_gpus": 3}, parallelism={"tp": 2}),
     "must divide system.num_gpus"),
    (scenario(arrival={"process": "trace", "trace": "/nonexistent.csv"}), "file not found"),
])
def test_bad_serving_setup_is_a_clear_spec_error(data, message):
    with pytest.raises(SpecError, match=message):
        pm.predict(data)


def test_bad_trace_columns(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("prompt,output\n1,2\n")
    with pytest.raises(SpecError, match="missing column"):
        pm.predict(scenario(arrival={"process": "trace", "trace": str(trace)}))


# ---- capacity planning ---------------------------------------------------------------------
def test_plan_serving_finds_the_cheapest_feasible_configuration():
    slo = SLOConfig(ttft_p90_s=0.5, tpot_p90_s=0.04)
    inp = PlanInputs(model=registry.get_model("llama-3-8b"), rate_per_s=12.0, slo=slo,
                     prompt_len=LengthDistribution(kind="lognormal", mean=1024, cv=1.0,
                                                   max=4000),
                     output_len=LengthDistribution(kind="lognormal", mean=200, cv=1.0,
                                                   max=1000),
                     devices=["a100-sxm4-80gb", "h100-sxm5-80gb"], tps=(1, 2),
                     num_requests=400)
    result = plan_serving(inp)
    best = result.best
    assert best is not None and best.feasible and best.metrics["slo_met"]
    feasible = [c for c in result.candidates if c.feasible]
    assert best.cost["usd_per_hour"] == min(c.cost["usd_per_hour"] for c in feasible)
    assert best.cost["usd_per_hour"] == pytest.approx(
        load_prices().devices[best.device].usd_per_gpu_hour * best.gpus)
    # minimal: one replica fewer misses an SLO
    if best.replicas > 1:
        data = scenario(arrival={"rate_per_s": 12.0}, num_requests=400, seed=0,
                        prompt_len=inp.prompt_len.model_dump(exclude_none=True),
                        output_len=inp.output_len.model_dump(exclude_none=True),
                        slo=slo.model_dump(exclude_none=True),
                        system={"device": best.device,
                                "num_gpus": (best.replicas - 1) * best.tp},
                        parallelism={"tp": best.tp})
        assert not simulate(data)[1]["slo"]["slo_met"]
    data = result.to_dict()
    assert data["best"]["gpus"] == best.gpus and data["inputs"]["rate_per_s"] == 12.0


def test_plan_serving_reports_unreachable_slos():
    inp = PlanInputs(model=registry.get_model("llama-3-8b"), rate_per_s=1.0,
                     slo=SLOConfig(tpot_p90_s=0.001), prompt_len=LengthDistribution(value=512),
                     output_len=LengthDistribution(value=64), devices=["h100-sxm5-80gb"],
                     tps=(1,), num_requests=50)
    result = plan_serving(inp)
    assert result.best is None
    assert "unreachable" in result.candidates[0].reason


def test_plan_serving_cli(tmp_path):
    cmd = [sys.executable, "-m", "perfmodel.cli", "plan-serving", "--model", "llama-3-8b",
           "--rate", "4", "--ttft-p90", "1", "--tpot-p90", "0.05", "--prompt-len", "512",
           "--output-len", "lognormal:128:0.5", "--devices", "h100-sxm5-80gb,l40s", "--tp",
           "1", "--num-requests", "200", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["best"]["feasible"] and data["best"]["cost"]["source"]["url"].startswith("http")
    bad = subprocess.run([*cmd[:6], "--rate", "4", "--prompt-len", "512x", "--output-len", "5"],
                         capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--prompt-len" in bad.stderr


# ---- data: prices and energy ----------------------------------------------------------------
def test_price_table_is_sourced_and_dated():
    table = load_prices()
    known = registry.devices()
    assert len(table.devices) >= 10
    for dev, price in table.devices.items():
        assert dev in known, dev
        src = table.source(price.source)
        assert src.url.startswith("https://") and len(price.date) == 10
        assert 0.1 < price.usd_per_gpu_hour < 20


def test_energy_prefers_measured_power_on_the_same_device():
    device = registry.get_device("h100-sxm5-80gb")
    tdp = energy_report(device, default_profile(), 2, 1000.0)
    assert tdp["power_w"] == 2 * device.tdp_w
    assert tdp["joules_per_output_token"] == pytest.approx(1.4)
    measured = default_profile().model_copy(update={"device": device.id,
                                                    "device_facts": {"power_w": 350.0}})
    assert energy_report(device, measured, 2, 1000.0)["joules_per_output_token"] == \
        pytest.approx(0.7)


# ---- examples run through the CLI ---------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_predict(path):
    assert len(EXAMPLES) >= 3
    data = yaml.safe_load(path.read_text())
    data["serving"]["num_requests"] = 200  # keep the test quick
    pred = pm.predict({**copy.deepcopy(data), "base_dir": str(path.parent)})
    assert pred.kind == "serving" and pred.serving["slo"]["checks"]
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "predict", str(path),
                          "--json"], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "goodput_rps" in json.loads(out.stdout)["serving"]["slo"]


def test_predict_with_latencies_is_predict_plus_the_same_runs_requests():
    """The dashboard simulates once: the prediction equals perfmodel.predict's, and the
    per-request latencies are those its percentiles were taken from."""
    import numpy as np

    from perfmodel.serving.predict import predict_with_latencies

    sc = {"kind": "serving", "model": "llama-3-8b",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
          "inference": {"prompt_len": 512, "output_len": 32},
          "serving": {"arrival": {"process": "poisson", "rate_per_s": 4.0},
                      "num_requests": 60, "seed": 3}}
    pred, lat = predict_with_latencies(sc)
    ref = pm.predict(sc)
    assert pred.model_dump(mode="json") == ref.model_dump(mode="json")
    assert np.nanmean(lat["ttft"]) == pytest.approx(ref.serving["ttft_s"]["mean"], rel=1e-12)
    assert lat["e2e"].size == 60
    with pytest.raises(pm.PerfModelError, match="serving scenario"):
        predict_with_latencies({**sc, "kind": "inference", "serving": None})
