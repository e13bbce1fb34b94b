"""The measurement half of `perfmodel calibrate`, run for real on this CPU.

The end-to-end run (quick sweep with 2 real gloo processes) is killed part-way and resumed,
as an interrupted calibration would be; the unit tests use real torch, real files, a real
NVML-absent path. GPU-only tests skip without CUDA.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.calibrate import benchmarks as B
from perfmodel.calibrate import collectives as C
from perfmodel.calibrate import device_info as D
from perfmodel.calibrate.cli import parse_only
from perfmodel.calibrate.probe import rates
from perfmodel.calibrate.progress import Progress
from perfmodel.calibrate.raw import RawStore, point_key, point_record, raw_path
from perfmodel.calibrate.timing import CpuClock, StopRule, measure, median_ci_rel
from perfmodel.errors import PerfModelError

ROOT = Path(__file__).resolve().parents[1]
torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()

PARAMS = {  # the agreed record shape (fit.fit_profile and the converters read it)
    "gemm": {"dtype", "m", "n", "k"},
    "memory": {"op", "bytes"},
    "attention": {"phase", "backend", "dtype", "batch", "heads", "kv_heads", "head_dim",
                  "q_len", "kv_len", "causal"},
    "elementwise": {"op", "dtype", "elems"},
    "launch": set(),
    "collective": {"collective", "group_size", "scope", "dtype", "bytes"},
    "probe": {"dtype", "m", "n", "k"},  # the dtype probe (calibrate/probe.py)
    "budget": {"table", "run"},  # a table's time budget in one run (calibrate/budget.py)
}
RECORD_KEYS = {"bench", "key", "params", "time_s", "stats", "status", "error"}
BUDGET_S = 40  # each of the two runs of the quick fixture (the default of --quick is 60 s)


def cli(*args, cwd: Path, env_extra: dict | None = None, popen: bool = False):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    cmd = [sys.executable, "-m", "perfmodel.cli", "calibrate", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- the real quick run, interrupted and resumed -------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`calibrate --device cpu --quick`, killed (SIGKILL) after a few kernel points, a torn line
    appended as a kill mid-write leaves it, then the same command again to completion."""
    work = tmp_path_factory.mktemp("calibrate")
    out = work / "calibration" / "cpu.json"
    raw = raw_path(out)
    args = ("--device", "cpu", "--quick", "--budget-s", str(BUDGET_S), "--out", str(out))
    t0 = time.monotonic()
    proc = cli(*args, cwd=work, popen=True)
    killed_with = []
    while proc.poll() is None:
        if raw.exists():
            recs = read_lines(raw)
            kernels = [r for r in recs
                       if r["bench"] not in ("meta", "collective", "probe", "budget")]
            if len(kernels) >= 5:  # collectives done (their ranks have exited), kernels begun
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_with = recs
                break
        time.sleep(0.1)
    first = time.monotonic() - t0
    assert killed_with, (f"the run ended (exit {proc.returncode}) before it could be "
                         f"interrupted: {proc.stderr.read()}")
    with open(raw, "a") as fh:
        fh.write('{"bench": "gemm", "key": "torn')  # no newline: a write cut by the kill
    t1 = time.monotonic()
    done = cli(*args, cwd=work)
    second = time.monotonic() - t1
    return {"work": work, "out": out, "raw": raw, "before": killed_with, "done": done,
            "args": args, "seconds": (first, second)}


@pytest.mark.slow
def test_quick_run_completes_and_resumes_without_remeasuring(quick_run):
    done = quick_run["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    recs = read_lines(quick_run["raw"])
    keys = [r["key"] for r in recs[1:]]
    assert len(keys) == len(set(keys)), "a point was measured twice"
    by_key = {r["key"]: r for r in recs[1:]}
    for old in quick_run["before"][1:]:  # points stored before the kill are kept, not redone
        assert by_key[old["key"]] == old
    # every point of the plan is stored once, or the last run's budget record counts it as
    # not measured; the dtype probe is stored too
    ctx = B.Context("cpu", quick=True)
    planned = B.plan(ctx, B.KERNEL_BENCHES)
    cfg = B.sweeps()["collective"]["cpu"]["quick"]
    planned += C.plan_collectives(cfg, cfg["spawn_ranks"], cfg["spawn_ranks"])
    points = [r for r in recs[1:] if r["bench"] not in ("probe", "budget")]
    assert {r["key"] for r in points} <= {p.key for p in planned}
    assert {r["params"]["dtype"] for r in recs if r["bench"] == "probe"} == \
        {p.params["dtype"] for p in planned if p.bench in ("gemm", "attention")}
    last_run = max(r["params"]["run"] for r in recs if r["bench"] == "budget")
    budgets = {r["params"]["table"]: r["stats"] for r in recs
               if r["bench"] == "budget" and r["params"]["run"] == last_run}
    for bench in B.KERNEL_BENCHES:
        b = budgets[bench]
        stored = sum(r["bench"] == bench for r in points)
        assert b["planned"] == sum(p.bench == bench for p in planned)
        assert stored + b["not_started_out_of_time"] + b["not_started_over_point_budget"] \
            == b["planned"], (bench, b)
    first, second = quick_run["seconds"]
    print(f"\nquick CPU calibration: {first:.1f} s until killed + {second:.1f} s resumed")
    # how each table keeps to its deadline is tested on the clock in test_calibrate_budget.py
    # (measure stops at the deadline; a table admits points until it); here the records must
    # account for every planned point, above. No wall-clock bound: a loaded machine stretches
    # the process start, the fit and the report, which no budget governs


@pytest.mark.slow
def test_quick_run_records_have_the_agreed_shape(quick_run):
    recs = read_lines(quick_run["raw"])
    meta = recs[0]
    assert meta["bench"] == "meta" and meta["device"] == "cpu"
    assert meta["threads"] == torch.get_num_threads() and meta["torch_version"]
    assert meta["start_time"] and meta["facts"]["cpu"]["logical_cpus"] >= 1
    assert sum(r["bench"] == "meta" for r in recs) == 1
    seen = set()
    for r in recs[1:]:
        assert set(r) >= RECORD_KEYS, r
        assert set(r["params"]) == PARAMS[r["bench"]], r["key"]
        assert r["key"] == point_key(r["bench"], r["params"])
        assert r["status"] in ("ok", "oom", "unsupported", "error")
        seen.add(r["bench"])
        if r["bench"] in ("probe", "budget"):
            continue
        if r["status"] == "ok":
            s = r["stats"]
            assert r["time_s"] > 0 and r["error"] is None and s["n"] >= 1
            assert s["p10"] <= r["time_s"] * (1 + 1e-9) and r["time_s"] <= s["p90"] * (1 + 1e-9)
        else:
            assert r["time_s"] is None and r["error"]
    assert seen == set(PARAMS)
    points = [r for r in recs[1:] if r["bench"] not in ("probe", "budget")]
    ok = [r for r in points if r["status"] == "ok"]
    slow = {d for d, rate in rates(recs).items() if not rate.supported}
    assert all(r["error"].startswith("unsupported (emulated") for r in points
               if r["params"].get("dtype") in slow and r["bench"] in ("gemm", "attention"))
    assert len(ok) >= 0.9 * sum(r["params"].get("dtype") not in slow for r in points)
    coll = [r for r in recs if r["bench"] == "collective"]
    assert {r["params"]["collective"] for r in coll} == set(C.COLLECTIVES)
    assert all(r["params"]["group_size"] == 2 and r["params"]["scope"] == "intra" for r in coll)
    assert max(r["params"]["bytes"] for r in coll) == 64 * 2**20  # the ends come first
    mem = [r["params"]["bytes"] for r in recs if r["bench"] == "memory"]
    assert max(mem) > meta["facts"]["cpu"]["caches_bytes"]["L3"]  # beyond the LLC
    assert min(mem) < meta["facts"]["cpu"]["caches_bytes"]["L2"]  # and cache-resident
    assert meta["budget"]["run_s"] == BUDGET_S
    dec = [r["params"] for r in recs if r["bench"] == "attention"
           and r["params"]["phase"] == "decode"]
    assert dec and all(p["q_len"] == 1 and not p["causal"] for p in dec)
    measured = [r for r in recs[1:] if r["bench"] == "probe" or r in ok]
    assert all(r.get("env", {}).get("samples", 0) >= 1 for r in measured)  # clocks sampled


@pytest.mark.slow
def test_quick_run_profile_loads_and_a_rerun_measures_nothing(quick_run):
    from perfmodel.specs.registry import load_profile

    profile = load_profile(quick_run["out"])
    assert profile.kind == "measured" and profile.gemm and profile.kernel_overhead_s > 0
    before = quick_run["raw"].read_text()
    again = cli(*quick_run["args"], cwd=quick_run["work"])
    assert again.returncode == 0, again.stderr[-2000:]
    after = quick_run["raw"].read_text()
    assert after.startswith(before)  # nothing re-written
    stored = {json.loads(line).get("key") for line in before.splitlines()}
    new = [json.loads(line) for line in after[len(before):].splitlines()]
    # only points the budget had left out, and this run's budget records, are added
    assert all(r["key"] not in stored for r in new)
    assert "skipped" in again.stderr


# ---- the measured end-to-end loop, on the profile just calibrated -------------------------------
@pytest.fixture(scope="module")
def cpu_profile(quick_run, tmp_path_factory) -> Path:
    """A copy of the quick run's profile of this CPU (a real calibration, no mocks): the measured
    loop below predicts from it (this file's one calibration serves both; the loop's other
    tests are in tests/test_validate_measured.py)."""
    out = tmp_path_factory.mktemp("measured") / "cpu.measured.json"
    shutil.copyfile(quick_run["out"], out)
    return out


@pytest.mark.slow
def test_measured_loop_end_to_end(cpu_profile):
    """`perfmodel validate --measure cpu` runs real torch workloads on this CPU and compares
    them with the predictions from the profile calibrated on the same CPU."""
    proc = subprocess.run(
        [sys.executable, "-m", "perfmodel.cli", "validate", "--measure", "cpu",
         "--calibration", str(cpu_profile), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {c["metric"] for c in data["cases"]} == {"training_step_s", "prefill_s", "tpot_s"}
    for case in data["cases"]:
        assert case["measured"] > 0 and case["predicted"] > 0
        assert math.isfinite(case["ape"])
        assert case["measured_p10"] <= case["measured"] <= case["measured_p90"]
    assert data["median_ape"] <= data["max_ape"]
    assert data["calibration"]["kind"] == "measured"


@pytest.mark.slow
def test_measured_predictions_use_the_profile(cpu_profile):
    """Predicted times come from the profile: a profile with twice the measured peaks and
    bandwidth predicts faster workloads."""
    from perfmodel.specs.registry import load_profile
    from perfmodel.validate import measured

    w = measured.load_workloads("cpu")
    profile = load_profile(cpu_profile)
    base = measured.predict(w, profile)
    faster = profile.model_copy(update={
        "peak_tflops": {k: 2 * v for k, v in profile.peak_tflops.items()},
        "memory_bandwidth_gbps": 2 * profile.memory_bandwidth_gbps})
    quick = measured.predict(w, faster)
    assert all(quick[k] < base[k] for k in base)


# ---- user errors ---------------------------------------------------------------------------------
def test_missing_torch_is_one_clear_line(tmp_path):
    code = ("import sys; sys.modules['torch'] = None; from perfmodel.cli import main; "
            "sys.exit(main(['calibrate', '--device', 'cpu', '--quick', '--out', 'x.json']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2
    assert "perfmodel[calibrate]" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(CUDA, reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """In process (``perfmodel.cli.main``): the same exit code and stderr without a fresh
    interpreter importing torch (this file's other tests run the command in a subprocess)."""
    from perfmodel.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(["calibrate", "--device", "cuda", "--quick", "--out", "x.json"])
    except SystemExit as stop:  # argparse's own exit
        code = stop.code
    stderr = capsys.readouterr().err
    assert code == 2 and "use --device cpu" in stderr
    assert "Traceback" not in stderr


def test_only_names():
    assert parse_only("gemm, collectives") == ("gemm", "collective")
    assert parse_only(None) == ("launch", "memory", "elementwise", "gemm", "attention",
                                "collective")
    with pytest.raises(PerfModelError, match="unknown benchmark 'gemms'"):
        parse_only("gemms")


# ---- timing -----------------------------------------------------------------------------------------
def _coverage(n: int, j: int) -> float:
    return 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2**n


@given(st.integers(2, 150))
def test_median_interval_is_the_widest_rank_with_95_percent_coverage(n):
    from perfmodel.calibrate.timing import _lower_rank

    j = _lower_rank(n, 0.95)
    assert j == 1 or _coverage(n, j) >= 0.95
    assert j + 1 > n // 2 or _coverage(n, j + 1) < 0.95


def test_median_interval_values():
    assert median_ci_rel([1.0] * 10) == 0.0
    assert median_ci_rel([1.0]) == math.inf
    x = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 100.0]  # one outlier: the median holds
    assert median_ci_rel(x) == 0.0
    assert median_ci_rel([1.0, 2.0, 3.0]) == pytest.approx((3 - 1) / (2 * 2))


def test_measure_stops_when_the_median_is_stable():
    rule = StopRule(min_reps=5, max_reps=500, rel_ci=0.2, max_time_s=30, warmup_reps=1,
                    warmup_s=0.0)
    m = measure(lambda: time.sleep(0.003), CpuClock(), rule)
    assert 5 <= m.n < 500 and m.converged
    assert 0.003 <= m.median_s < 0.05 and m.p10_s <= m.median_s <= m.p90_s


def test_measure_caps_and_agreement():
    rule = StopRule(min_reps=3, max_reps=6, rel_ci=0.0, max_time_s=1e9, warmup_reps=1,
                    warmup_s=0.0)
    calls = []
    m = measure(lambda: calls.append(1), CpuClock(), rule, prepare=lambda: None)
    assert m.n == 6 and len(calls) == 7  # one warm-up call, then the cap
    votes = []

    def decide(done):  # as rank 0 broadcasts it: stop warm-up at once, stop timing after 4
        votes.append(done)
        return len(votes) in (1, 5)

    m = measure(lambda: None, CpuClock(), StopRule(min_reps=1, max_reps=10**6, rel_ci=0.0,
                                                   warmup_reps=1, warmup_s=0.0), decide=decide)
    assert m.n == 4


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_events_time_a_kernel():
    from perfmodel.calibrate.timing import CudaClock

    a = torch.randn(4096, 4096, device="cuda")
    m = measure(lambda: a @ a, CudaClock(torch), StopRule(min_reps=5, max_reps=50))
    assert 0 < m.median_s < 1 and m.n >= 5


# ---- the raw store ------------------------------------------------------------------------------
def test_point_key_is_order_independent():
    assert point_key("gemm", {"m": 1, "dtype": "bf16", "n": 2, "k": 3}) == \
        point_key("gemm", {"dtype": "bf16", "k": 3, "n": 2, "m": 1}) == "gemm:dtype=bf16,k=3,m=1,n=2"
    assert point_key("launch", {}) == "launch:"


def test_store_appends_resumes_and_repairs_a_torn_line(tmp_path):
    path = tmp_path / "p.json.raw.jsonl"
    meta = {"device": "cpu", "name": "cpu x", "threads": 2}
    s = RawStore(path)
    s.start(meta)
    s.add(point_record("launch", {}, time_s=1e-6, stats={"p10": 1e-6, "p90": 1e-6, "n": 3}))
    s.add(point_record("gemm", {"dtype": "bf16", "m": 1, "n": 2, "k": 3}, status="error",
                       error="boom"))
    with open(path, "a") as fh:
        fh.write('{"bench": "gemm", "ke')
    s2 = RawStore(path)
    assert s2.meta["name"] == "cpu x" and s2.done("launch:")
    assert not s2.done("gemm:dtype=bf16,k=3,m=1,n=2")  # errors are retried
    s2.start(meta)  # a resumed file keeps its single header
    s2.add(point_record("gemm", {"dtype": "bf16", "m": 1, "n": 2, "k": 3}, time_s=2e-6))
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    s3 = RawStore(path)
    assert [r["status"] for r in s3.records()] == ["ok", "ok"]  # the last record of a key wins


def test_a_point_that_kills_the_process_twice_is_skipped_as_oom(tmp_path, ctx):
    from perfmodel.calibrate.cli import _kernels

    path = tmp_path / "k.raw.jsonl"
    RawStore(path).begin("launch:")  # then the process "dies": no record follows
    s = RawStore(path)
    assert s.died == {"launch:": 1} and not s.deadly("launch:")  # retried once
    s.begin("launch:")
    s = RawStore(path)  # died again
    assert s.deadly("launch:")
    s.start({"device": "cpu", "name": "x", "threads": 1})
    _kernels(ctx, [B.Point("launch", {})], s)
    rec = RawStore(path).records()[0]
    assert rec["status"] == "oom" and "died 2 times" in rec["error"]
    assert not s.inflight.exists()


def test_store_refuses_another_machine(tmp_path):
    path = tmp_path / "x.raw.jsonl"
    RawStore(path).start({"device": "cpu", "name": "A", "threads": 2})
    with pytest.raises(PerfModelError, match="name"):
        RawStore(path).start({"device": "cpu", "name": "B", "threads": 2})
    with pytest.raises(PerfModelError, match="threads"):
        RawStore(path).start({"device": "cpu", "name": "A", "threads": 1})
    gpu = tmp_path / "g.raw.jsonl"
    RawStore(gpu).start({"device": "cuda", "name": "H", "threads": 8})
    RawStore(gpu).start({"device": "cuda", "name": "H", "threads": 1})  # torchrun: 1 thread


def test_record_rejects_unknown_bench_and_status():
    with pytest.raises(ValueError):
        point_record("gemmm", {})
    with pytest.raises(ValueError):
        point_record("gemm", {}, status="fine")


# ---- device facts ------------------------------------------------------------------------------
def test_nvml_absent_is_a_record_not_an_exception():
    with D.Nvml() as nvml:
        if nvml.ok:
            pytest.skip("NVML works here")
        assert nvml.error and nvml.handle() is None
    facts = D.gpu_facts()
    assert facts["nvml"] == "unavailable" and "NVML" in facts["error"]


def test_nvml_name_table_points_at_real_devices():
    from perfmodel.paths import data_dir
    from perfmodel.specs import registry

    table = json.loads((data_dir("hardware_specs") / "nvml_device_names.json").read_text())["names"]
    names = [e["nvml_name"].lower() for e in table]
    assert len(names) == len(set(names))
    devices = registry.devices()
    assert all(e["device"] in devices for e in table)
    assert D.match_device("NVIDIA H100 80GB HBM3") == "h100-sxm5-80gb"
    assert D.match_device("nvidia  a100-sxm4-80gb") == "a100-sxm4-80gb"
    assert D.match_device("NVIDIA GeForce RTX 3090 Ti") == "rtx-3090-ti"
    assert D.match_device("NVIDIA GH200 480GB", 95 * 2**30) == "gh200"
    assert D.match_device("NVIDIA GH200 480GB", 141 * 2**30) is None  # another memory size
    assert D.match_device("NVIDIA Unknown GPU") is None and D.match_device(None) is None


def test_cpu_facts_of_this_machine():
    f = D.cpu_facts()
    assert f["logical_cpus"] == os.cpu_count() and f["model_name"]
    if sys.platform.startswith("linux"):
        assert f["memory_total_bytes"] > 2**28 and f["cpu_mhz"] > 0
        assert f["caches_bytes"].get("L2", 0) > 0
        flags = Path("/proc/cpuinfo").read_text()
        assert ("avx512f" in f["isa_flags"]) == (" avx512f" in flags)


def test_monitor_samples_and_flags_throttling():
    with D.Monitor(D.cpu_sampler(), period_s=0.01) as mon:
        time.sleep(0.1)
        w = mon.window()
    assert w["samples"] >= 2
    s = D.summarize([{"sm_clock_mhz": 1980, "reasons": ["GpuIdle"]},
                     {"sm_clock_mhz": 1410, "reasons": ["SwPowerCap"]}])
    assert s["sm_clock_mhz_min"] == 1410 and s["throttled"]
    assert not D.summarize([{"reasons": ["GpuIdle"]}])["throttled"]


# ---- planning and single points -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx():
    return B.Context("cpu", quick=True)


def test_full_cpu_plan_respects_caps_and_has_unique_keys():
    full = B.Context("cpu", quick=False)
    pts = B.plan(full, B.KERNEL_BENCHES)
    keys = [p.key for p in pts]
    assert len(keys) == len(set(keys)) > 500
    cap = B.sweeps()["gemm"]["cpu"]["full"]["max_gflop"]
    gemm = [p.params for p in pts if p.bench == "gemm"]
    assert all(2 * g["m"] * g["n"] * g["k"] <= cap * 1e9 for g in gemm)
    assert {g["m"] for g in gemm} >= {1, 2, 4, 8, 16}  # skinny decode shapes
    assert any(g["n"] % 8 for g in gemm)  # misaligned sizes
    assert "tf32" not in {g["dtype"] for g in gemm}  # CUDA only
    att = [p.params for p in pts if p.bench == "attention"]
    assert {a["backend"] for a in att} == {"flash", "math"}
    assert {a["phase"] for a in att} == {"prefill", "decode", "backward"}


@given(cache=st.integers(2**16, 2**30), memory=st.integers(2**28, 2**40))
@settings(max_examples=50)
def test_memory_sizes_reach_beyond_the_cache(cache, memory):
    cfg = B.sweeps()["memory"]["cpu"]["full"]
    sizes = B.memory_sizes(cfg, cache, memory)
    assert sizes == sorted(sizes) and sizes[0] == cfg["min_bytes"]
    assert all(s <= cfg["max_fraction_of_memory"] * memory for s in sizes)
    if sizes[-1] * cfg["step"] <= cfg["max_fraction_of_memory"] * memory:
        assert sizes[-1] >= cfg["beyond_cache"] * cache


def test_points_run_for_real_and_bigger_work_takes_longer(ctx):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no thread-pool stalls when other jobs share the cores
    try:
        small = B.run_point(ctx, B.Point("gemm", {"dtype": "fp32", "m": 256, "n": 256, "k": 64}))
        big = B.run_point(ctx, B.Point("gemm", {"dtype": "fp32", "m": 256, "n": 256,
                                                "k": 4096}))
    finally:
        torch.set_num_threads(threads)
    assert small["status"] == big["status"] == "ok"
    assert big["time_s"] > 4 * small["time_s"]  # 64x the FLOPs
    for point in (B.Point("memory", {"op": "copy", "bytes": 2**20}),
                  B.Point("elementwise", {"op": "rmsnorm", "dtype": "bf16", "elems": 2**14}),
                  B.Point("launch", {})):
        rec = B.run_point(ctx, point, env=dict)
        assert rec["status"] == "ok" and rec["time_s"] > 0, rec
    assert rec["stats"]["calls_per_rep"] == B.sweeps()["launch"]["cpu"]["quick"]["calls"]
    assert rec["time_s"] < 1e-3  # per kernel, not per repetition


def test_unsupported_oom_and_error_are_recorded_not_raised(ctx):
    att = {"phase": "prefill", "backend": "efficient", "dtype": "bf16", "batch": 1, "heads": 4,
           "kv_heads": 4, "head_dim": 64, "q_len": 64, "kv_len": 64, "causal": True}
    rec = B.run_point(ctx, B.Point("attention", att))
    assert rec["status"] == "unsupported" and rec["time_s"] is None and rec["error"]
    huge = B.run_point(ctx, B.Point("gemm", {"dtype": "fp32", "m": 2**40, "n": 64, "k": 64}))
    assert huge["status"] == "oom", huge["error"]
    bad = B.run_point(ctx, B.Point("elementwise", {"op": "nope", "dtype": "bf16", "elems": 64}))
    assert bad["status"] == "error" and "nope" in bad["error"]


def test_backward_and_gqa_decode_run_on_cpu(ctx):
    base = {"backend": "flash", "dtype": "bf16", "batch": 1, "heads": 8, "kv_heads": 2,
            "head_dim": 64}
    for phase, q, kv, causal in (("backward", 128, 128, True), ("decode", 1, 512, False)):
        rec = B.run_point(ctx, B.Point("attention", {**base, "phase": phase, "q_len": q,
                                                     "kv_len": kv, "causal": causal}))
        assert rec["status"] == "ok", rec["error"]


# ---- collectives planning ----------------------------------------------------------------------
@given(nodes_log=st.integers(0, 4), local_log=st.integers(0, 4))
def test_group_layouts_partition_the_world(nodes_log, local_log):
    nodes, local = 2**nodes_log, 2**local_log
    world = nodes * local
    for g, scope in C.layouts(world, local):
        groups = C.group_ranks(g, scope, world, local)
        flat = sorted(r for grp in groups for r in grp)
        assert flat == list(range(world)) and all(len(grp) == g for grp in groups)
        node_of = [{r // local for r in grp} for grp in groups]
        if scope == "intra":
            assert all(len(n) == 1 for n in node_of)
        else:
            assert all(len(n) == g for n in node_of)  # one rank per node
        assert 0 in groups[0]  # rank 0, who records, is in the first group
    if world == 1:
        assert C.layouts(world, local) == []


def test_collective_plan_sizes():
    cfg = B.sweeps()["collective"]["cpu"]["quick"]
    sizes = C.message_sizes(cfg)
    assert sizes[0] == 1024 and sizes[-1] == 64 * 2**20
    pts = C.plan_collectives({**cfg, "dtype": "bf16"}, 16, 8)
    assert {(p.params["group_size"], p.params["scope"]) for p in pts} == {
        (2, "intra"), (4, "intra"), (8, "intra"), (2, "inter")}
    assert all(p.params["bytes"] % (p.params["group_size"] * 2) == 0 for p in pts)


def test_progress_bar_without_a_terminal():
    out = StringIO()
    bar = Progress("gemm", 20, stream=out)
    for i in range(20):
        bar.step({"status": "ok" if i else "oom"})
    bar.close()
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 12 and "20/20" in lines[-1] and "oom 1" in lines[-1]
