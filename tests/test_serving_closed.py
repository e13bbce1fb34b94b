"""Closed-loop (fixed-concurrency) serving benchmarks: the loop itself, the benchmark-client
metrics, the concurrency sweep, and bad input."""

from __future__ import annotations

import json
from functools import lru_cache
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.errors import SpecError
from perfmodel.resolve import resolve
from perfmodel.serving.bench import benchmark_metrics
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.serving.sweep import sweep_concurrency, to_csv

BASE = {
    "kind": "serving", "model": "llama-3-8b",
    "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
    "inference": {"prompt_len": 512, "output_len": 64},
}


def scenario(concurrency=8, num_requests=200, scheduler=None, gpus=1, **serving) -> pm.Scenario:
    srv = {"arrival": {"process": "closed", "concurrency": concurrency},
           "num_requests": num_requests, **serving}
    if scheduler:
        srv["scheduler"] = scheduler
    return pm.as_scenario({**BASE, "system": {**BASE["system"], "num_gpus": gpus},
                           "serving": srv})


@lru_cache(maxsize=8)
def _deployment(sched_kind: str, gpus: int = 1):
    sc = scenario(num_requests=2000, scheduler={"kind": sched_kind}, gpus=gpus,
                  prompt_len={"kind": "uniform", "min": 64, "max": 1024},
                  output_len={"kind": "uniform", "min": 8, "max": 128})
    rs = resolve(sc)
    inf, wl = serving_inputs(sc)
    return deployment_for(sc, rs.system, rs.profile, inf, wl), wl


def simulate(sched_kind: str, concurrency: int, n: int, gpus: int = 1):
    dep, wl = _deployment(sched_kind, gpus)
    from perfmodel.serving.workload import Workload
    part = Workload(wl.arrival[:n], wl.prompt[:n], wl.output[:n], concurrency)
    return dep, dep.simulate(part).reqs


def in_system(reqs, t: np.ndarray) -> np.ndarray:
    """Requests sent and not finished at each time t (a request is in the system on
    [arrival, finish))."""
    a, f = np.sort(reqs.arrival), np.sort(reqs.finish)
    return np.searchsorted(a, t, side="right") - np.searchsorted(f, t, side="right")


@pytest.mark.parametrize("kind", ["continuous", "chunked", "static", "inflight",
                                  "prefill_first"])
@pytest.mark.parametrize("concurrency", [1, 3, 16])
def test_never_more_than_concurrency_requests_in_the_system(kind, concurrency):
    _, reqs = simulate(kind, concurrency, 300)
    assert not np.isnan(reqs.finish).any()
    events = np.unique(np.concatenate([reqs.arrival, reqs.finish]))
    busy = in_system(reqs, events)
    assert busy.max() == concurrency  # reached ...
    assert (busy <= concurrency).all()  # ... and never exceeded
    # and the clients are never idle while requests remain: C in flight until the last send
    last_send = reqs.arrival.max()
    assert (busy[events < last_send] == concurrency).all()


@pytest.mark.parametrize("kind", ["continuous", "chunked", "inflight", "prefill_first"])
def test_each_request_is_sent_the_moment_an_earlier_one_ends(kind):
    """genai-perf / vllm bench serve: a client sends its next request when its last token
    arrives (zero think time): request C + i is sent at the (i + 1)-th earliest finish, to
    the float, and never before its sender's request has ended."""
    c, n = 8, 200
    _, reqs = simulate(kind, c, n)
    assert (reqs.arrival[:c] == 0.0).all()
    assert np.array_equal(np.sort(reqs.arrival[c:]), np.sort(reqs.finish)[:n - c])
    assert (np.diff(reqs.arrival[c:]) >= 0).all()  # sent in request order


def test_disaggregated_closed_loop_keeps_the_bound():
    _, reqs = simulate("disaggregated", 12, 300, gpus=2)
    events = np.unique(np.concatenate([reqs.arrival, reqs.finish]))
    assert in_system(reqs, events).max() == 12


@pytest.mark.parametrize("kind", ["continuous", "chunked", "inflight", "prefill_first"])
@pytest.mark.parametrize("concurrency", [4, 32])
def test_littles_law(kind, concurrency):
    """Throughput x mean E2E = mean requests in the system = C while the loop is full; the
    ramp-up and the drain (the last C requests finishing) shave O(C/N) off."""
    n = 60 * concurrency
    _, reqs = simulate(kind, concurrency, n)
    e2e = reqs.finish - reqs.arrival
    duration = reqs.finish.max() - reqs.arrival.min()
    occupancy = n / duration * e2e.mean()
    assert occupancy == pytest.approx(concurrency, rel=0.04)
    assert occupancy <= concurrency * (1 + 1e-9)


def test_concurrency_one_is_the_zero_load_request():
    sc = scenario(concurrency=1, num_requests=20)
    pred = pm.predict(sc)
    b = pred.serving["benchmark"]
    zl = pred.serving["zero_load"]
    # a lone request: TTFT is its prefill on an idle instance, every TPOT a lone decode
    assert b["median_ttft_ms"] == pytest.approx(1e3 * zl["ttft_s"], rel=1e-9)
    assert b["p99_ttft_ms"] == pytest.approx(1e3 * zl["ttft_s"], rel=1e-9)
    # (a decode run interpolates its attention work between 9 context knots: within 1e-4)
    assert b["mean_tpot_ms"] == pytest.approx(1e3 * zl["tpot_s"], rel=1e-4)
    assert b["mean_e2el_ms"] == pytest.approx(1e3 * zl["e2e_s"], rel=1e-4)
    # requests back to back: duration = 20 lone requests, throughput = 1 / E2E
    assert b["request_throughput"] == pytest.approx(1 / zl["e2e_s"], rel=1e-4)


def test_benchmark_keys_follow_vllm_bench_serve():
    pred = pm.predict(scenario(concurrency=8, num_requests=100))
    b = pred.serving["benchmark"]
    for key in ("completed", "duration", "total_input_tokens", "total_output_tokens",
                "request_throughput", "output_throughput", "total_token_throughput",
                "max_concurrency"):
        assert key in b
    for m in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "p90", "p99"):
            assert f"{stat}_{m}_ms" in b
    assert b["completed"] == 100 and b["max_concurrency"] == 8
    assert b["total_input_tokens"] == 100 * 512 and b["total_output_tokens"] == 100 * 64
    assert b["output_throughput"] == pytest.approx(b["total_output_tokens"] / b["duration"])
    assert b["total_token_throughput"] == pytest.approx(
        (b["total_input_tokens"] + b["total_output_tokens"]) / b["duration"])
    # equal output lengths: the pooled mean gap (ITL) is the mean of per-request TPOTs
    assert b["mean_itl_ms"] == pytest.approx(b["mean_tpot_ms"], rel=1e-9)
    # TPOT = (E2E - TTFT) / (out - 1), so mean E2E = mean TTFT + 63 mean TPOT
    assert b["mean_e2el_ms"] == pytest.approx(b["mean_ttft_ms"] + 63 * b["mean_tpot_ms"])
    assert b["output_throughput_per_user"] == pytest.approx(1e3 / b["median_tpot_ms"])
    assert b["output_throughput_per_gpu"] == pytest.approx(b["output_throughput"])


def test_warmup_requests_are_extra():
    """vllm bench serve --num-warmups runs its warm-ups as a phase of their own and then
    measures all --num-prompts (clients/vllm-bench-serve.yaml ``warmup: separate_phase``):
    the measured run is the cold one, request for request."""
    cold = pm.predict(scenario(concurrency=8, num_requests=108)).serving["benchmark"]
    warm = pm.predict(scenario(concurrency=8, num_requests=108, warmup_requests=8)
                      ).serving["benchmark"]
    assert cold["completed"] == 108 and warm["completed"] == 108
    assert warm["warmup_requests"] == 8 and warm["warmup"] == "separate_phase"
    assert warm["total_input_tokens"] == 108 * 512
    assert warm["duration"] == cold["duration"]
    assert warm["mean_ttft_ms"] == cold["mean_ttft_ms"]


def test_metrics_from_requests_by_hand():
    """benchmark_metrics against a hand-made run of two requests."""
    from perfmodel.serving.requests import Requests
    from perfmodel.serving.workload import Workload

    wl = Workload(np.array([0.0, 1.0]), np.array([10, 20]), np.array([3, 1]), 1)
    r = Requests(wl)
    r.first[:] = [0.5, 1.2]
    r.finish[:] = [0.9, 1.2]
    b = benchmark_metrics(r, num_gpus=2, concurrency=1)
    assert b["duration"] == pytest.approx(1.2)
    assert b["mean_ttft_ms"] == pytest.approx(350.0)  # (0.5 + 0.2) / 2
    assert b["mean_tpot_ms"] == pytest.approx(200.0)  # (0.9 - 0.5) / 2, only request 0
    assert b["mean_itl_ms"] == pytest.approx(200.0)
    assert b["request_throughput"] == pytest.approx(2 / 1.2)
    assert b["output_throughput_per_gpu"] == pytest.approx(4 / 1.2 / 2)
    # vLLM's per-second count: request 0 in second 0, request 1 in second 1
    assert b["max_concurrent_requests"] == 1


def test_peak_concurrent_counts_whole_seconds():
    from perfmodel.serving.bench import peak_concurrent

    start = np.array([0.0, 0.5, 0.9, 2.5])
    end = np.array([0.8, 1.2, 3.0, 2.7])
    # second 0: all of 0, 1, 2; second 1: 1 and 2; second 2: 2 and 3; second 3: 2
    assert peak_concurrent(start, end) == 3


def test_closed_lengths_from_a_trace(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("prompt_len,output_len\n100,10\n200,20\n300,30\n")
    sc = pm.as_scenario({**BASE, "serving": {
        "arrival": {"process": "closed", "concurrency": 2, "trace": str(trace)}}})
    b = pm.predict(sc).serving["benchmark"]
    assert b["completed"] == 3 and b["total_input_tokens"] == 600
    assert b["total_output_tokens"] == 60


@pytest.mark.parametrize(("arrival", "field"), [
    ({"process": "closed"}, "serving.arrival.concurrency"),
    ({"process": "closed", "concurrency": 4, "rate_per_s": 2}, "serving.arrival.rate_per_s"),
    ({"process": "poisson", "rate_per_s": 2, "concurrency": 4}, "serving.arrival.concurrency"),
    ({"process": "closed", "concurrency": 0}, "concurrency"),
])
def test_bad_arrival_is_one_line_naming_the_field(arrival, field):
    with pytest.raises(SpecError) as err:
        pm.as_scenario({**BASE, "serving": {"arrival": arrival}})
    assert field in str(err.value) and "\n" not in str(err.value)


def test_warmups_may_outnumber_the_measured_requests(tmp_path, capsys):
    """Warm-ups are extra (a separate phase): 10 of them beside 10 measured requests run."""
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**BASE, "serving": {
        "arrival": {"process": "closed", "concurrency": 4}, "num_requests": 10,
        "warmup_requests": 10}}))
    assert main(["predict", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Successful requests:                     10" in out


def test_cli_prints_the_benchmark_block_and_json(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**BASE, "serving": {
        "arrival": {"process": "closed", "concurrency": 4}, "num_requests": 40}}))
    assert main(["predict", str(path)]) == 0
    out = capsys.readouterr().out
    assert "============ Serving Benchmark Result ============" in out
    for line in ("Successful requests:                     40",
                 "Failed requests:                         0",
                 "Maximum request concurrency:             4", "Median TTFT (ms):",
                 "P99 TPOT (ms):", "Mean ITL (ms):", "Peak output token throughput (tok/s):",
                 "Total token throughput (tok/s):"):
        assert line in out
    # vllm bench serve's defaults: --metric-percentiles 99, --percentile-metrics ttft,tpot,itl
    assert "P90 " not in out and "E2EL" not in out
    assert main(["predict", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["serving"]["benchmark"]["completed"] == 40
    assert data["serving"]["workload"]["concurrency"] == 4


def test_examples_read_like_the_engines_benchmarks(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("vllm-closed-loop-llama3.1-8b-h100.yaml",
                 "sglang-closed-loop-llama3.1-8b-h100.yaml"):
        assert main(["predict", str(root / name)]) == 0
        out = capsys.readouterr().out
        assert "Serving Benchmark Result" in out
        if name.startswith("vllm"):
            assert "Maximum request concurrency:" in out and "Maximum concurrency for" in out
        else:  # sglang.bench_serving's block and SGLang's start-up line, not vLLM's
            for line in ("Backend:                                 sglang",
                         "Traffic request rate:                    inf",
                         "Max request concurrency:                 16", "Concurrency:",
                         "Mean E2E Latency (ms):", "P95 ITL (ms):", "Max ITL (ms):",
                         # sglang v0.5.14 prints TPOT and the peaks too
                         "Mean TPOT (ms):", "Peak concurrent requests:",
                         "max_total_num_tokens=", "chunked_prefill_size=8192",
                         "max_running_requests=", "context_len=131072"):
                assert line in out
            assert "Maximum concurrency for" not in out
            assert "serving: prefill_first batching" in out


def test_dp_attention_example_reads_like_bench_serving_with_the_moe_table(capsys):
    # DeepSeek-R1 on 8 x H200, attention DP8 + EP8, SGLang: bench_serving's block, the layout
    # and the MoE layers' table of the zero-load passes (low-latency kernels in decode)
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / \
        "sglang-dp-attention-deepseek-r1-h200.yaml"
    assert main(["predict", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Serving Benchmark Result" in out and "Backend:                                 sglang" in out
    assert "attention DP 8, EP 8" in out and "MoE layers" in out
    assert main(["predict", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["serving"]["benchmark"]["completed"] == 256 and data["num_gpus"] == 8
    assert data["breakdown"]["moe"]["decode_step"]["a2a_mode"] == "ll"


# ---- the sweep ------------------------------------------------------------------------------

def test_sweep_points_and_files(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**BASE, "serving": {
        "arrival": {"process": "poisson", "rate_per_s": 4}, "num_requests": 50}}))
    csv_path, json_path = tmp_path / "curve.csv", tmp_path / "curve.json"
    assert main(["sweep-concurrency", str(path), "--concurrency", "1,4,16", "--csv",
                 str(csv_path), "--out", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "tok/s/GPU" in out and "tok/s/user" in out
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("concurrency,") and len(rows) == 4
    data = json.loads(json_path.read_text())
    assert [p["max_concurrency"] for p in data["points"]] == [1, 4, 16]
    # at least ten requests per client
    assert [p["completed"] for p in data["points"]] == [50, 50, 160]
    with pytest.raises(SystemExit) as exit_:
        main(["sweep-concurrency", str(path), "--concurrency", "0,2"])
    assert exit_.value.code == 2 and "--concurrency" in capsys.readouterr().err


def test_sweep_matches_a_single_closed_loop_prediction():
    sc = scenario(concurrency=8, num_requests=120)
    point = sweep_concurrency(sc, [8])["points"][0]
    single = pm.predict(sc).serving["benchmark"]
    assert point["median_ttft_ms"] == pytest.approx(single["median_ttft_ms"], rel=1e-12)
    assert point["output_throughput"] == pytest.approx(single["output_throughput"], rel=1e-12)
    assert "concurrency" in to_csv({"points": [point]})


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.integers(16, 2048), output=st.integers(16, 256))
def test_sweep_throughput_rises_and_interactivity_falls(prompt, output):
    """A dense model on one GPU: more clients never lower the output throughput (beyond the
    noise of a finite run: 64 requests, ramp-up and drain, clients moving in lock-step) and
    the busiest point gives a user fewer tokens/s than a lone client gets."""
    sc = pm.as_scenario({**BASE, "inference": {"prompt_len": prompt, "output_len": output},
                         "serving": {"arrival": {"process": "closed", "concurrency": 1},
                                     "num_requests": 64,
                                     "scheduler": {"kind": "chunked"}}})
    pts = sweep_concurrency(sc, [1, 2, 4, 8, 16, 32])["points"]
    tput = [p["output_throughput"] for p in pts]
    user = [p["output_throughput_per_user"] for p in pts]
    assert all(b >= a * 0.98 for a, b in pairwise(tput))
    assert tput[-1] > 2 * tput[0]
    assert user[-1] < user[0]
    assert all(u <= user[0] * 1.02 for u in user)


def test_inferencex_cases_draw_lengths_as_their_client_does():
    """The InferenceX #870 cases (validation/inference/serving_closed_loop.yaml) are run by
    InferenceX's utils/bench_serving/benchmark_serving.py (at 962bd4c): sample_random_requests
    draws every input and output length with np.random.randint(int(L x ratio), L + 1), here
    L = 1024 and RANDOM_RANGE_RATIO 0.8 (.github/workflows/benchmark-tmpl.yml): 819..1024,
    both ends included, mean (819 + 1024) / 2 = 921.5; num_prompts 10 x CONC; the server's
    --chunked-prefill-size 32768 and --max-running-requests 512 (dsr1_fp8_h200.sh)."""
    import yaml

    from perfmodel.serving.workload import build_workload

    with open("validation/inference/serving_closed_loop.yaml") as f:
        cases = yaml.safe_load(f)["cases"]
    infx = [c for c in cases if c["id"].startswith("infx870_")]
    assert len(infx) == 8
    lo, hi = int(1024 * 0.8), 1024
    assert lo == 819
    for c in infx:
        srv = c["scenario"]["serving"]
        conc = srv["arrival"]["concurrency"]
        assert srv["num_requests"] == 10 * conc
        for key in ("prompt_len", "output_len"):
            assert srv[key] == {"kind": "uniform", "min": lo, "max": hi}
        assert srv["scheduler"] == {"kind": "prefill_first", "token_budget": 32768,
                                    "max_batch": 512}
        assert srv["warmup_requests"] == 2 * conc  # --num-warmups 2 x CONC, a separate phase
    sc = pm.as_scenario({**infx[0]["scenario"],
                         "serving": {**infx[0]["scenario"]["serving"], "num_requests": 20000}})
    wl = build_workload(sc.serving)
    for lens in (wl.prompt, wl.output):
        assert lens.min() == lo and lens.max() == hi
        assert abs(lens.mean() - (lo + hi) / 2) < 2.0


# ---- benchmark clients (clients/<id>.yaml, perfmodel/serving/clients.py) --------------------

from perfmodel.serving.clients import WindowRules, client_ids, load_client, select_windows  # noqa: E402

VLLM_EXAMPLE = "examples/vllm-closed-loop-llama3.1-8b-h100.yaml"


def _with_client(path_or_dict, **benchmark) -> dict:
    import yaml

    if isinstance(path_or_dict, str):
        with open(path_or_dict) as f:
            d = yaml.safe_load(f)
    else:
        d = path_or_dict
    d = json.loads(json.dumps(d))
    if benchmark:
        d["serving"]["benchmark"] = benchmark
    return d


def test_every_client_file_loads_with_sources():
    assert {"vllm-bench-serve", "sglang-bench-serving", "aiperf", "genai-perf"} <= set(client_ids())
    for cid in client_ids():
        spec = load_client(cid)
        assert spec.sources and spec.send == "burst"
    assert load_client("genai-perf").windows.sleep_factor == 1.2  # Measure(): sleep x 1.2


def test_default_client_reproduces_todays_vllm_numbers():
    """No benchmark block = vllm bench serve = today's path: the benchmark block is
    ``benchmark_metrics`` of one plain simulation of the workload (every request measured),
    key for key, and naming the client explicitly changes nothing."""
    sc = pm.load_scenario(VLLM_EXAMPLE)
    default = pm.predict(sc).serving["benchmark"]
    named = pm.predict(_with_client(VLLM_EXAMPLE, client="vllm-bench-serve")).serving["benchmark"]
    assert default == named
    rs = resolve(sc)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    res = dep.simulate(wl)
    plain = benchmark_metrics(res.reqs, dep.num_gpus, wl.concurrency)
    assert default == plain | {"client": "vllm-bench-serve", "request_rate": None}
    assert default["completed"] == 320 and "windows" not in default


def test_aiperf_measures_every_request_and_reports_per_request_itl():
    v = pm.predict(_with_client(VLLM_EXAMPLE)).serving["benchmark"]
    a = pm.predict(_with_client(VLLM_EXAMPLE, client="aiperf")).serving["benchmark"]
    for k in ("completed", "duration", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms"):
        assert a[k] == v[k]
    # AIPerf's ITL is (E2E - TTFT) / (output - 1) per request: vLLM's TPOT statistics
    for s in ("mean", "median", "p90", "p99"):
        assert a[f"{s}_itl_ms"] == a[f"{s}_tpot_ms"]


RULES = WindowRules(interval_ms=1000, sleep_factor=1.0, stability_windows=3,
                    stability_percentage=10, max_trials=10, counts="finished_in_window",
                    statistics_over="all_windows")


def test_window_selection_by_hand():
    """Windows of 1 s from t0 = 0. Finishes (latency 0.5 s each): window 0 [0, 1] holds
    0.6, 0.9; window 1 [1, 2] holds 1.5, 1.8; window 2 [2, 3] holds 2.5, 2.9: 2 req/s and mean
    latency 0.5 s in each, stable after the third window; 3.4 (window 3) is never counted."""
    finish = np.array([0.6, 0.9, 1.5, 1.8, 2.5, 2.9, 3.4])
    send = finish - 0.5
    w = select_windows(send, finish, 0.0, 10.0, RULES)
    assert w.stable and w.complete
    assert w.counted.tolist() == [True] * 6 + [False]
    assert w.bounds_s == [0.0, 1.0, 2.0, 3.0]
    assert w.throughput_rps == [2.0, 2.0, 2.0] and w.mean_latency_s == [0.5, 0.5, 0.5]


def test_window_selection_waits_for_stability_and_counts_every_window():
    """Window 0 holds one slow request (latency 0.9 s) and windows 1-3 two of 0.5 s: windows
    0-2 are not stable (throughput 1 vs 2 req/s), windows 1-3 are; statistics cover all four
    windows (genai-perf parses every window's requests). A finish exactly on a boundary (1.0)
    counts in the earlier window."""
    finish = np.array([1.0, 1.5, 1.8, 2.5, 2.9, 3.5, 3.9, 4.2])
    send = np.array([0.1, 1.0, 1.3, 2.0, 2.4, 3.0, 3.4, 3.7])
    w = select_windows(send, finish, 0.0, 10.0, RULES)
    assert w.stable and len(w.throughput_rps) == 4
    assert w.throughput_rps == [1.0, 2.0, 2.0, 2.0]
    assert w.mean_latency_s[0] == pytest.approx(0.9)
    assert w.counted.tolist() == [True] * 7 + [False]
    # perf_analyzer's own 10 % rule vs genai-perf's default 999 %: with 999 % the first three
    # windows already pass
    loose = select_windows(send, finish, 0.0, 10.0, RULES, stability_percentage=999)
    assert len(loose.throughput_rps) == 3 and loose.counted.sum() == 5


def test_window_selection_unstable_and_incomplete():
    finish = np.array([0.5, 1.5, 1.6, 2.5, 2.6, 2.7, 2.8])
    send = finish - 0.2
    w = select_windows(send, finish, 0.0, 10.0, RULES, max_trials=3)
    assert not w.stable and w.complete and w.throughput_rps == [1.0, 2.0, 4.0]
    short = select_windows(send, finish, 0.0, 2.5, RULES)  # the loop stopped sending at 2.5 s
    assert not short.complete and len(short.throughput_rps) == 2


def test_genai_perf_windows_on_a_tiny_deterministic_run():
    """genai-perf with 2 s windows (x 1.2) on a small closed loop: exactly the requests whose
    last token falls in the windows are measured, and the run was long enough that the loop
    was still sending when the last window ended (it is lengthened if not: 20 requests are
    asked for, more are simulated)."""
    sc = scenario(concurrency=4, num_requests=20,
                  benchmark={"client": "genai-perf", "measurement_interval_ms": 2000})
    pred, reqs = pm.serving.predict.simulate_serving(resolve(sc))
    b = pred.serving["benchmark"]
    w = b["windows"]
    assert w["window_s"] == pytest.approx(2.4) and w["start_s"] == 0.0
    inside = (reqs.finish >= w["start_s"]) & (reqs.finish <= w["end_s"])
    assert reqs.counted.tolist() == inside.tolist()
    assert b["completed"] == int(inside.sum())
    assert np.max(reqs.arrival) >= w["end_s"]  # still loaded when the windows ended
    assert b["mean_ttft_ms"] == pytest.approx(
        1e3 * float(np.mean((reqs.first - reqs.arrival)[inside])))


def test_unknown_client_is_one_line():
    with pytest.raises(SpecError, match=r"unknown serving\.benchmark\.client 'genaiperf'"):
        pm.predict(scenario(benchmark={"client": "genaiperf"}))


def test_genai_perf_without_an_interval_counts_every_request():
    """genai-perf's default is --request-count (perf_analyzer: one count window of exactly the
    requests sent): the same requests as vllm bench serve, ITL reported per request."""
    v = pm.predict(_with_client(VLLM_EXAMPLE)).serving["benchmark"]
    g = pm.predict(_with_client(VLLM_EXAMPLE, client="genai-perf")).serving["benchmark"]
    assert "windows" not in g and g["completed"] == v["completed"]
    assert g["mean_ttft_ms"] == v["mean_ttft_ms"] and g["mean_itl_ms"] == g["mean_tpot_ms"]


def test_sweep_follows_the_client():
    d = _with_client(VLLM_EXAMPLE, client="aiperf")
    pt = sweep_concurrency(d, [2], num_requests=20)["points"][0]
    assert pt["mean_itl_ms"] == pt["mean_tpot_ms"]
    d = _with_client(VLLM_EXAMPLE, client="genai-perf", measurement_interval_ms=5000)
    with pytest.raises(SpecError, match="sweep-concurrency measures every request"):
        sweep_concurrency(d, [2], num_requests=20)


def test_public_exports_of_engine_versions_and_benchmark_clients():
    # the dashboard reads these from the public API, not perfmodel.engines / serving.clients
    from perfmodel.engines import families, version_key
    from perfmodel.serving.clients import DEFAULT_CLIENT, client_ids

    clients = pm.benchmark_clients()
    assert next(iter(clients)) == DEFAULT_CLIENT and sorted(clients) == sorted(client_ids())
    assert clients["sglang-bench-serving"].name
    fams = pm.engine_version_families("vllm")
    assert [f["label"] for f in fams] == [f.version for f in families("vllm")]
    assert all(len(r) == 3 for f in fams for r in f["ranges"])
    # no version = the newest family: vLLM 0.22 (0.22.0 up to 0.25.0), not the 0.10 base file
    assert [f["label"] for f in fams if f["default"]] == ["0.22"]
    assert pm.engine_version_families("generic") == []
    assert pm.engine_version_sort_key("0.2.4+pr2031") == version_key("0.2.4+pr2031")
    assert pm.engine_version_sort_key("0.2.4") < pm.engine_version_sort_key("0.2.4+pr2031") \
        < pm.engine_version_sort_key("0.2.5")
    with pytest.raises(SpecError, match=r"engine\.version"):
        pm.engine_version_sort_key("latest")
    assert {"benchmark_clients", "engine_version_families",
            "engine_version_sort_key"} <= set(pm.__all__)


def test_windows_still_incomplete_after_the_last_doubling(monkeypatch):
    """When the doublings run out before a windowed client's windows end, the windows and the
    counted requests are those of the run the prediction reports (the last, lengthened one),
    and the prediction says the windows are incomplete (it raised an IndexError: the last
    doubling's requests against the previous run's windows). 20 requests with 2 s windows need
    two doublings (test above); with one allowed, 40 requests are reported."""
    import perfmodel.serving.predict as sp

    monkeypatch.setattr(sp, "MAX_WINDOW_DOUBLINGS", 1)
    sc = scenario(concurrency=4, num_requests=20,
                  benchmark={"client": "genai-perf", "measurement_interval_ms": 2000})
    pred, reqs = sp.simulate_serving(resolve(sc))
    assert len(reqs.counted) == len(reqs.arrival) == 40
    assert not pred.serving["benchmark"]["windows"]["complete"]
    assert any("stopped sending before the measurement windows ended" in w
               for w in pred.warnings)
