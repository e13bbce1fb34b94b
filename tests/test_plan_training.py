"""perfmodel plan-training: API and CLI, arithmetic of the table, Pareto set, constraints, bad
input as one line."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.planning.training import gpu_counts, parse_tokens
from perfmodel.serving.economics import load_prices

ROOT = Path(__file__).resolve().parents[1]
H100 = "h100-sxm5-80gb"


@pytest.fixture(scope="module")
def seventy():
    """Llama-3-70B on 15T tokens, H100, up to 8,192 GPUs (4 Mi tokens per step)."""
    return pm.plan_training(model="llama-3-70b", tokens="15T", devices=[H100], max_gpus=8192)


def test_tokens_and_gpu_counts():
    assert parse_tokens("15T") == 15e12
    assert parse_tokens("300b") == 3e11
    assert parse_tokens("2.5e12") == 2.5e12
    assert parse_tokens(1e9) == 1e9
    for bad in ("15X", "", "T", "-5T", "1e30"):
        with pytest.raises(pm.SpecError, match="--tokens"):
            parse_tokens(bad)
    assert gpu_counts(8, 100) == [1, 2, 4, 8, 16, 32, 64]
    assert gpu_counts(8, 96) == [1, 2, 4, 8, 16, 32, 64, 96]
    assert gpu_counts(72, 300) == [1, 2, 4, 8, 16, 32, 64, 72, 128, 144, 256, 288]


def test_rows_add_up(seventy):
    from perfmodel.planning.training import _system
    from perfmodel.search import scenario_for
    from perfmodel.specs.scenario import TrainingConfig

    price = load_prices().devices[H100].usd_per_gpu_hour
    assert {r.gpus for r in seventy.rows} >= {1024, 2048, 4096, 8192}
    assert not seventy.warnings  # every row's step time is predict's to the last digit
    sc, _, _ = _system(H100, pm.get_model("llama-3-70b"), 8192,
                       TrainingConfig(seq_len=8192, global_batch=512))
    for r in seventy.rows:
        p = r.plan
        assert r.gpus == p["tp"] * p["pp"] * p["cp"] * p["dp"]
        assert r.days == pytest.approx(15e12 / p["tokens_per_s"] / 86400)
        assert r.gpu_hours == pytest.approx(r.days * 24 * r.gpus)
        assert r.usd == pytest.approx(r.gpu_hours * price)
        assert 0 < p["mfu"] < 1 and p["memory_headroom"] >= 0.05
        pred = pm.predict(scenario_for(sc, p))
        assert pred.step_time_s == pytest.approx(p["step_time_s"], rel=1e-12)
        # energy from the power model: J per trained token x tokens
        assert r.energy_mwh == pytest.approx(pred.energy_per_token_j * 15e12 / 3.6e9)
        lo, hi = r.scaled(r.days)
        assert lo <= r.days <= hi
        assert [lo, hi] == pytest.approx([r.days * x / pred.step_time_s
                                          for x in pred.ranges["step_time_s"]])
    days = [r.days for r in sorted(seventy.rows, key=lambda r: r.gpus)]
    assert days == sorted(days, reverse=True)  # more GPUs, fewer days


def test_seventy_b_in_the_range_of_the_issue_and_meta(seventy):
    """A stated comparison, not a fit: the issue's hand search found ~144 days on 1,024 H100s
    and ~24 on 8,192; Meta's model card reports 6.4M H100 GPU-hours for Llama 3 70B
    (github.com/meta-llama/llama3 MODEL_CARD.md @ 13e795f9, "Hardware and Software"). Bounds are wide on
    purpose: they catch a broken planner, not model error."""
    by = {r.gpus: r for r in seventy.rows}
    assert 100 < by[1024].days < 200
    assert 15 < by[8192].days < 45
    hours = [by[n].gpu_hours for n in (1024, 2048, 4096, 8192)]
    assert min(hours) > 0.4 * 6.4e6 and max(hours) < 2 * 6.4e6


def test_pareto_rows_are_the_non_dominated_ones(seventy):
    rows = [r for r in seventy.rows if r.usd is not None]

    def dominated(r):
        return any(o.days <= r.days and o.usd <= r.usd and (o.days < r.days or o.usd < r.usd)
                   for o in rows)

    assert any(r.pareto for r in rows)
    for r in rows:
        assert r.pareto == (not dominated(r))


def test_constraints_pick_the_cheapest_row_that_meets_them(seventy):
    res = pm.plan_training(model="llama-3-70b", tokens="15T", devices=[H100], max_gpus=8192,
                           days=90)
    ans = res.answer
    assert ans.days <= 90
    assert all(r.usd >= ans.usd for r in res.rows if r.days <= 90)
    none = pm.plan_training(model="llama-3-70b", tokens="15T", devices=[H100], max_gpus=1024,
                            days=10)
    assert none.answer is None and not any(r.meets for r in none.rows)
    budget = pm.plan_training(model="llama-3-70b", tokens="15T", devices=[H100],
                              max_gpus=8192, budget_usd=16e6)
    assert budget.answer.usd <= 16e6


def test_json_and_csv(seventy):
    d = seventy.to_dict()
    assert d["answer"] is not None and d["pareto"]
    assert all(row["pareto"] for row in d["pareto"])
    assert json.loads(json.dumps(d))  # plain JSON
    rows = list(csv.DictReader(io.StringIO(seventy.to_csv())))
    assert len(rows) == len(seventy.rows)
    assert {"device", "gpus", "tp", "pp", "days", "days_lo", "days_hi", "usd", "energy_mwh",
            "mfu", "memory_headroom", "pareto"} <= set(rows[0])
    assert all(float(r["days_lo"]) <= float(r["days"]) <= float(r["days_hi"]) for r in rows)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfmodel.cli", "plan-training", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_table_json_csv():
    out = _cli("llama-3-8b", "--tokens", "1T", "--devices", H100, "--max-gpus", "256")
    assert out.returncode == 0, out.stderr
    assert "answer:" in out.stdout and "Pareto" in out.stdout
    out = _cli("llama-3-8b", "--tokens", "1T", "--devices", H100, "--max-gpus", "256", "--json")
    data = json.loads(out.stdout)
    assert data["inputs"]["tokens"] == 1e12 and data["rows"]
    out = _cli("llama-3-8b", "--tokens", "1T", "--devices", H100, "--max-gpus", "64", "--csv")
    assert out.stdout.splitlines()[0].startswith("device,gpus,")


@pytest.mark.parametrize("args, field", [
    (("llama-3-8b", "--tokens", "15X"), "--tokens"),
    (("llama-3-8b", "--tokens", "1T", "--devices", "h100"), "h100"),
    (("no-such-model", "--tokens", "1T"), "no-such-model"),
    (("llama-3-8b", "--tokens", "1T", "--max-gpus", "0"), "--max-gpus"),
    (("llama-3-8b", "--tokens", "1T", "--days", "-1"), "--days"),
    (("llama-3-8b", "--tokens", "1T", "--budget", "lots"), "--budget"),
    (("llama-3-8b", "--tokens", "1T", "--seq-len", "3000"), "--global-batch-tokens"),
    (("llama-3-8b", "--tokens", "1T", "--headroom", "1"), "--headroom"),
    (("llama-3-8b",), "--tokens"),
])
def test_bad_input_is_one_line(args, field):
    out = _cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in out.stderr


def test_default_devices_are_calibrated_and_scale_out():
    from perfmodel.planning.training import default_devices
    from perfmodel.specs.registry import reference_profile

    devices = default_devices(load_prices())
    assert H100 in devices and "b200" in devices
    for d in devices:
        assert reference_profile(d) is not None and pm.get_device(d).memory_gb >= 40


def test_an_uncalibrated_device_is_planned_with_a_warning():
    res = pm.plan_training(model="llama-3-8b", tokens="100B", devices=["l40s"], max_gpus=64)
    assert res.rows and any("l40s" in w and "default" in w for w in res.warnings)


def test_405b_is_planned_on_uneven_pipelines():
    res = pm.plan_training(model="llama-3.1-405b", tokens="15.6T", devices=[H100],
                           max_gpus=16384, global_batch_tokens=16 * 2**20)
    by = {r.gpus: r for r in res.rows}
    assert {1024, 2048, 4096, 8192, 16384} <= set(by)
    assert all(by[n].plan["uneven_pipeline"] for n in (1024, 16384))


def test_nvl72_racks_need_a_batch_divisible_by_nine():
    """72-GPU nodes: whole racks put a factor 9 in dp; 512 sequences cannot split so."""
    res = pm.plan_training(model="llama-3-8b", tokens="1T", devices=["gb200"], max_gpus=288)
    assert not {r.gpus for r in res.rows} & {72, 144, 288}
    assert any("divisible by 9" in w for w in res.warnings)
    ok = pm.plan_training(model="llama-3-8b", tokens="1T", devices=["gb200"], max_gpus=288,
                          global_batch_tokens=576 * 8192)
    assert {72, 144, 288} <= {r.gpus for r in ok.rows}
    assert not any("divisible by 9" in w for w in ok.warnings)
