"""Power caps, sustained clocks and energy (perfmodel/power.py; hardware_specs/power_capping.yaml).

The clock at a cap is checked against a hand calculation from the yaml's measurement; a capped
device is never faster (property over caps); memory-bound decode barely moves; energy is power
x time; bad limits are one-line errors; no cap changes nothing.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel.errors import PerfModelError
from perfmodel.power import (
    Timeline,
    check_power_limit,
    compute_clock_ratio,
    fit_exponent,
    gpu_energy,
    phase_power,
    power_facts,
)
from perfmodel.specs.common import validate
from perfmodel.specs.registry import get_device

H100 = get_device("h100-sxm5-80gb")


def _training(power_limit_w=None, num_gpus=8, **training):
    system = {"device": "h100-sxm5-80gb", "num_gpus": num_gpus}
    if power_limit_w is not None:
        system["power_limit_w"] = power_limit_w
    return {"kind": "training", "model": "llama-3-8b", "system": system,
            "parallelism": {"tp": 1, "pp": 1, "zero_stage": 1},
            "training": {"seq_len": 4096, "global_batch": 8, "micro_batch": 1, **training}}


def _decode(power_limit_w=None, batch=1):
    system = {"device": "h100-sxm5-80gb", "num_gpus": 1}
    if power_limit_w is not None:
        system["power_limit_w"] = power_limit_w
    return {"kind": "inference", "model": "llama-3-8b", "system": system,
            "inference": {"batch": batch, "prompt_len": 128, "output_len": 512}}


def test_exponent_and_500w_clock_match_a_hand_calculation():
    # GB300 cuBLAS GEMM (facebookexperimental/triton PR #2023): 617 TFLOP/s at 500 W vs
    # 1600-2174 at 1400 W; idle 12.2 % of 1400 W = 170.8 W.
    x = (500 - 170.8) / (1400 - 170.8)  # 0.26782
    r = 617 / math.sqrt(1600 * 2174)  # 0.33082
    assert math.log(x) / math.log(r) == pytest.approx(1.1910, abs=1e-3)
    points = [(x, r)]
    # RTX PRO 6000 Blackwell bf16 matmul (1a1a11a/gpu_power figure): 317 TFLOP/s at 600 W;
    # idle 9.6 % of 600 W = 57.6 W
    for cap, tflops in ((480, 260), (400, 218), (320, 170), (280, 146), (240, 120)):
        points.append(((cap - 57.6) / (600 - 57.6), tflops / 317))
    # least squares through the origin of ln x = a ln r
    a = (sum(math.log(p) * math.log(q) for p, q in points)
         / sum(math.log(q) ** 2 for _, q in points))
    assert a == pytest.approx(1.1635, abs=1e-3)
    assert power_facts().exponent == pytest.approx(a, rel=1e-9)
    # H100 SXM: idle 85.4 W, TDP 700 W -> clock ratio at 500 W = 0.674585 ** (1 / 1.1635)
    assert compute_clock_ratio(H100, 500) == pytest.approx(0.7129, abs=5e-4)
    assert compute_clock_ratio(H100, 700) == 1.0
    assert compute_clock_ratio(H100, None) == 1.0


def test_the_fit_pools_every_sourced_measurement_and_stays_physical():
    # power_capping.yaml: the exponent is fitted to all GEMM-vs-cap records (pooled over
    # devices); each names its device, source and url; the fit lies in physics_bounds.
    from perfmodel.paths import data_dir
    from perfmodel.power import FACTS_FILE, _measurement_point
    from perfmodel.specs.registry import read_mapping

    d = read_mapping(data_dir("hardware_specs") / FACTS_FILE)["clock_exponent"]
    records = d["measurements"]
    assert records and all(m["device"] and m["source"] and m["url"] for m in records)
    assert power_facts().exponent == fit_exponent([_measurement_point(m) for m in records])
    low, high = d["physics_bounds"]
    assert low <= power_facts().exponent <= high
    assert all(s["why_not_used"] and s["url"] for s in d["searched_sources"])


def test_96gb_h100_at_500w_by_hand():
    # h100-sxm5-96gb has no measured idle power: 9.6 % of its 700 W TDP = 67.2 W
    # (power_capping.yaml idle_power); (500 - 67.2) / (700 - 67.2) = 0.68394,
    # ** (1 / 1.1635) = 0.7214
    part = get_device("h100-sxm5-96gb")
    assert part.memory_bandwidth == 2.4e12 and part.peak_flops("bf16") == H100.peak_flops("bf16")
    assert compute_clock_ratio(part, 500) == pytest.approx(0.7214, abs=5e-4)


def test_torchtitan_cases_that_state_500w_are_capped_at_500w():
    # torchtitan's H100 benchmark pages say 'We used the default 500W power limit' and '96GB
    # HBM2e with 2.4 TB/sec'; their cases must say so; the H200 page states no limit.
    from perfmodel.paths import data_dir
    from perfmodel.specs.registry import read_mapping

    states_500w = {"llama3_h100_202412_torchtitan.md", "asyncTP_llama3_h100_2025-06_torchtitan.md"}
    seen = 0
    for path in sorted((data_dir("validation") / "training").glob("torchtitan*.yaml")):
        doc = read_mapping(path)
        page = doc["source"]["url"].rsplit("/", 1)[-1]
        for case in doc["cases"]:
            system = case["scenario"]["system"]
            if page in states_500w:
                seen += 1
                assert system.get("power_limit_w") == 500, case["id"]
                assert system["device"] == "h100-sxm5-96gb", case["id"]
                assert any("default 500W power" in a for a in case["assumptions"]), case["id"]
            else:
                assert "power_limit_w" not in system, case["id"]
    assert seen == 48


def test_fit_exponent_of_one_point_is_the_log_ratio():
    assert fit_exponent([(0.25, 0.5)]) == pytest.approx(2.0)
    assert fit_exponent([(0.125, 0.5), (0.125, 0.5)]) == pytest.approx(3.0)


@settings(max_examples=60, deadline=None)
@given(st.floats(200, 700), st.floats(200, 700))
def test_clock_never_rises_when_the_cap_falls(a, b):
    lo, hi = sorted((a, b))
    assert 0 < compute_clock_ratio(H100, lo) <= compute_clock_ratio(H100, hi) <= 1.0


@settings(max_examples=6, deadline=None)
@given(st.floats(200, 699))
def test_a_capped_training_step_is_never_faster(cap):
    base = pm.predict(_training())
    capped = pm.predict(_training(cap))
    assert capped.step_time_s >= base.step_time_s
    assert capped.breakdown["time"]["gemm"] > base.breakdown["time"]["gemm"]


def test_500w_compute_bound_gemms_slow_by_the_clock_ratio_and_decode_barely_moves():
    base, capped = pm.predict(_training()), pm.predict(_training(500))
    ratio = compute_clock_ratio(H100, 500)
    gemm_ops = [(b, c) for b, c in zip(base.ops, capped.ops, strict=True)
                if b.cls == "gemm" and b.bound == "compute" and c.bound == "compute"]
    assert gemm_ops
    for b, c in gemm_ops:  # time = max(compute, memory) / eff(shape) + overhead
        assert c.compute_s == pytest.approx(b.compute_s / ratio, rel=1e-9)
    assert capped.step_time_s / base.step_time_s > 1.15
    d0, d1 = pm.predict(_decode()), pm.predict(_decode(500))
    assert d1.tpot_s / d0.tpot_s == pytest.approx(1.0, abs=0.03)


def test_no_cap_and_a_cap_at_tdp_predict_the_same():
    a, b = pm.predict(_training()), pm.predict(_training(700))
    assert a.step_time_s == b.step_time_s
    assert a.breakdown["time"] == b.breakdown["time"]
    d0, d1 = pm.predict(_decode()), pm.predict(_decode(700))
    assert (d0.ttft_s, d0.tpot_s) == (d1.ttft_s, d1.tpot_s)


def test_energy_is_power_times_time():
    p = pm.predict(_training())
    e = p.breakdown["energy"]
    t, w = e["phase_time_s"], e["phase_power_w"]
    assert sum(t.values()) == pytest.approx(p.step_time_s, rel=1e-9)
    per_gpu = sum(t[k] * w[k] for k in t)
    assert e["gpu_energy_j"] == pytest.approx(per_gpu * p.num_gpus, rel=1e-9)
    assert p.avg_power_per_gpu_w == pytest.approx(per_gpu / p.step_time_s, rel=1e-9)
    assert p.energy_per_step_j == pytest.approx(e["gpu_energy_j"] + e["node_overhead_j"])
    # DGX H100: (10.2 kW - 8 x 700 W) / 8 GPUs = 575 W per GPU for the node
    assert e["node_overhead_j"] == pytest.approx(575.0 * p.num_gpus * p.step_time_s)
    tokens = 8 * 4096
    assert p.energy_per_token_j == pytest.approx(p.energy_per_step_j / tokens)
    assert w["compute_bound"] == 700.0 and w["idle"] == 85.4
    assert 85.4 <= p.avg_power_per_gpu_w <= 700.0
    json_keys = p.to_json_dict()
    for key in ("energy_per_step_j", "energy_per_token_j", "avg_power_per_gpu_w"):
        assert json_keys[key] == getattr(p, key)


def test_a_cap_lowers_gpu_power_and_decode_draws_less_than_compute():
    base, capped = pm.predict(_training()), pm.predict(_training(500))
    assert capped.avg_power_per_gpu_w < base.avg_power_per_gpu_w <= 700.0
    assert capped.breakdown["energy"]["phase_power_w"]["compute_bound"] == 500.0
    d = pm.predict(_decode())
    assert d.avg_power_per_gpu_w < base.avg_power_per_gpu_w
    e = d.breakdown["energy"]
    # one request: prefill then decode steps; per generated token = energy / tokens
    assert d.energy_per_token_j == pytest.approx(e["energy_j"] / (d.tokens_per_s * d.e2e_latency_s))
    assert d.energy_per_step_j == pytest.approx(e["energy_per_decode_step_j"])


def test_timeline_energy_by_hand():
    pw = phase_power(H100, 500)
    assert (pw.compute, pw.memory, pw.idle) == (500.0, pytest.approx(0.31 * 700), 85.4)
    tl = Timeline(compute=2.0, memory=1.0, comm=0.5, idle=0.5)
    assert gpu_energy(tl, pw) == pytest.approx(2 * 500 + 1.5 * 217 + 0.5 * 85.4)
    # a cap below the memory-bound draw caps that too
    assert phase_power(H100, 200).memory == 200.0


@pytest.mark.parametrize("limit, words", [
    (150, ["power_limit_w", "below", "200 W", "200 to 700 W"]),
    (800, ["power_limit_w", "above", "700 W"]),
])
def test_bad_power_limit_is_one_line(limit, words):
    with pytest.raises(PerfModelError) as err:
        pm.predict(_training(limit))
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_power_limit_on_a_device_without_tdp_and_negative_limits_are_one_line():
    with pytest.raises(PerfModelError) as err:
        check_power_limit(get_device("a10g"), 100)
    assert "tdp_w" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(PerfModelError) as err:
        pm.predict(_training(-5))
    assert "power_limit_w" in str(err.value) and "\n" not in str(err.value)


def test_device_power_fields_must_be_ordered():
    data = H100.model_dump() | {"idle_power_w": 800.0}
    with pytest.raises(PerfModelError, match=r"idle_power_w \(800 W\) must not exceed"):
        validate(type(H100), data, what="device")


def test_training_run_energy_is_energy_per_token_times_tokens():
    from perfmodel.power import training_run_energy_j

    p = pm.predict(_training())
    assert training_run_energy_j(p, 15e12) == pytest.approx(p.energy_per_token_j * 15e12)
    steps = 15e12 / (8 * 4096)
    assert training_run_energy_j(p, 15e12) == pytest.approx(p.energy_per_step_j * steps)


def test_cli_reports_a_bad_power_limit_in_one_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "capped.yaml"
    path.write_text("kind: training\nmodel: llama-3-8b\n"
                    "system: {device: h100-sxm5-80gb, num_gpus: 8, power_limit_w: 900}\n"
                    "training: {seq_len: 4096, global_batch: 8}\n")
    proc = subprocess.run([sys.executable, "-m", "perfmodel.cli", "predict", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "power_limit_w" in lines[0] and "700 W" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def _with(scenario: dict, **training) -> dict:
    return {**scenario, "training": {**scenario["training"], **training}}


def test_measured_elementwise_rates_are_memory_bound_and_not_slowed_by_a_cap():
    # a measured element rate is achieved bandwidth: the HBM clock is not capped
    # (power_capping.yaml memory_bound_power), so the norms / residual adds keep their time
    base, capped = pm.predict(_training()), pm.predict(_training(300))
    assert capped.breakdown["time"]["elementwise"] == pytest.approx(
        base.breakdown["time"]["elementwise"], rel=1e-12)
    assert capped.breakdown["time"]["gemm"] > 1.3 * base.breakdown["time"]["gemm"]
    norms = [o for o in capped.ops if o.cls == "elementwise" and o.intensity < 1.0]
    assert norms and all(o.bound == "memory" for o in norms)
    # the energy charges them at the memory-bound draw: memory-bound time holds them
    ew = sum(o.total_s for o in norms)
    assert capped.breakdown["energy"]["phase_time_s"]["memory_bound"] >= ew * (1 - 1e-9)


@pytest.mark.parametrize("framework", ["torchtitan", "fsdp"])
def test_framework_kernels_are_not_idle_time(framework):
    # unfused element-wise chains and FSDP copy kernels run on the GPU: idle time is only
    # the bubble and waits (exposed dispatch, CP imbalance)
    sc = _with(_training(), framework=framework, recompute="full", micro_batch=2,
               global_batch=16, seq_len=8192)
    sc["parallelism"] = {"zero_stage": 3}
    p = pm.predict(sc)
    t = p.breakdown["time"]
    assert t["unfused_elementwise"] + t["fsdp_copies"] > 0
    waits = max(t["pipeline_bubble"], 0.0) + t["dispatch"] + t["cp_imbalance"]
    assert p.breakdown["energy"]["phase_time_s"]["idle"] == pytest.approx(waits, abs=1e-12)


def test_limit_without_a_sourced_minimum_stops_at_the_deepest_fitted_cap():
    # B200 has no sourced nvidia-smi Min Power Limit: the lowest accepted limit is the
    # deepest cap of the fit (GB300 500 W of 1400 W = 35.7 %) x its 1000 W TDP
    b200 = get_device("b200")
    assert b200.min_power_limit_w is None
    floor = 1000 * 500 / 1400
    check_power_limit(b200, floor)
    with pytest.raises(PerfModelError) as err:
        check_power_limit(b200, 97)
    msg = str(err.value)
    assert "\n" not in msg and "power_limit_w" in msg and "fitted" in msg and "357" in msg
    assert compute_clock_ratio(b200, floor) > 0.3
