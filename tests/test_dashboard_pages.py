"""Every page of the Streamlit dashboard (app/views/*.py) run in process with AppTest: each
page opens without an exception, its numbers and charts follow its widgets, bad input is a
one-line message in the page, every widget is exercised at least once, and the view's state
round-trips through the URL's query parameters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import perfmodel as pm

APP = Path(__file__).resolve().parents[1] / "app"
WIDGETS = ("selectbox", "number_input", "checkbox", "toggle", "radio", "multiselect",
           "text_input")
# quick settings for the expensive pages (a shared link sets them, as a user's would)
FAST = {
    "serving": {"sv_num_requests": "60"},
    "plans": {"pl_model": "llama-2-7b", "pl_num_gpus": "64", "pl_global_batch": "256",
              "pl_seq_len": "4096", "ps_model": "llama-3-8b", "ps_devices": "h100-sxm5-80gb",
              "ps_tps": "1,2", "ps_num_requests": "60", "ps_rate": "4",
              "pt_model": "llama-3-8b", "pt_devices": "h100-sxm5-80gb", "pt_max_gpus": "512"},
}
TEXT_VALUES = {"pt_tokens": "300B"}


# --------------------------------------------------------------------------- helpers
def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(APP / "views" / f"{name}.py"), default_timeout=120)
    for key, value in {**FAST.get(name, {}), **params}.items():
        at.query_params[key] = value
    return run(at)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for err in at.error:  # bad input: one line in the page, never a traceback
        assert "\n" not in err.value.strip() and "Traceback" not in err.value, err.value
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def title(spec: dict) -> str:
    return spec["layout"]["title"]["text"]


def shown_error(at: AppTest) -> str:
    assert len(at.error) == 1, [e.value for e in at.error]
    return at.error[0].value.replace("\\", "")


def _changed(kind: str, w):
    """A different valid value for widget ``w``: another option (by its label, which
    AppTest sends as the browser does), the number one step on, the box flipped..."""
    if kind in ("selectbox", "radio"):
        labels = list(w.options)
        current = w.index or 0
        return labels[1 if current == 0 and len(labels) > 1 else 0]
    if kind == "number_input":
        step = w.step or 1
        new = w.value + step
        if w.proto.has_max and new > w.proto.max:
            new = w.value - step
        return new
    if kind in ("checkbox", "toggle"):
        return not w.value
    if kind == "multiselect":
        return w.value[:-1] if len(w.value) > 1 else w.value
    return TEXT_VALUES.get(w.key, w.value)


BAND = re.compile(r"^(-?[\d,.]+) \((-?[\d,.]+)–(-?[\d,.]+)\)$")  # 'value (lo–hi)'


def banded(cell: str) -> tuple[float, float, float]:
    """(value, lo, hi) of a table cell 'value (lo–hi)'; the band must hold the value."""
    m = BAND.match(str(cell))
    assert m, f"not 'value (lo–hi)': {cell!r}"
    value, lo, hi = (float(g.replace(",", "")) for g in m.groups())
    assert lo <= value <= hi, cell
    return value, lo, hi


def exercise_every_widget(at: AppTest, group: int = 4) -> set[str]:
    """Change every keyed widget once, ``group`` widgets per rerun; after each rerun the page
    has no exception and any error is one line. Returns the keys exercised."""
    done: set[str] = set()
    while True:
        todo = [(kind, w.key) for kind in WIDGETS for w in getattr(at, kind)
                if w.key and w.key not in done and not getattr(w.proto, "disabled", False)]
        if not todo:
            return done
        for kind, key in todo[:group]:
            w = getattr(at, kind)(key=key)
            w.set_value(_changed(kind, w))
            done.add(key)
        run(at)


# --------------------------------------------------------------------------- home
def test_home_routes_to_the_start_page_with_links_to_every_page():
    at = AppTest.from_file(str(APP / "Home.py"), default_timeout=60)
    run(at)
    assert [t.value for t in at.title] == ["perfmodel · what-if"]
    links = {p.proto.label.split(" — ")[0] for p in at.get("page_link")}
    assert {"Training", "Inference", "Serving", "Compare", "Sweep", "Plan search",
            "Calibration", "Validation"} <= links


# --------------------------------------------------------------------------- training
def test_training_numbers_follow_the_global_batch():
    at = page("training")
    assert [m.label for m in at.metric][:5] == ["Step time", "Tokens/s", "TFLOP/s per GPU",
                                                "MFU", "Memory per GPU"]
    step, time_spec = metric(at, "Step time"), specs(at)[0]
    assert title(time_spec).startswith("Step time breakdown")
    at.number_input(key="tr_global_batch").set_value(256)
    run(at)
    assert specs(at)[0] != time_spec
    ratio = float(metric(at, "Step time").split()[0]) / float(step.split()[0])
    assert 1.8 < ratio < 2.1  # twice the sequences per step: about twice the time


def test_training_reaches_cp_ep_vp_and_the_interconnect():
    at = page("training", tr_num_gpus="16", tr_pp="2", tr_vp="2", tr_cp="2",
              tr_intra_node="pcie-gen4-x16", tr_inter_node="ib-edr-100")
    assert not at.error, [e.value for e in at.error]
    scenario = next(c.value for c in at.code if "kind: training" in c.value)
    for line in ("cp: 2", "vp: 2", "pp: 2", "intra_node: pcie-gen4-x16",
                 "inter_node: ib-edr-100"):
        assert line in scenario
    default = page("training", tr_num_gpus="16", tr_pp="2", tr_vp="2", tr_cp="2")
    slow, fast = (float(metric(x, "Step time").split()[0]) for x in (at, default))
    assert slow > 1.2 * fast  # TP and CP traffic over PCIe instead of NVLink


def test_training_plan_error_is_one_line_in_the_page():
    at = page("training", tr_num_gpus="6")
    with pytest.raises(pm.SpecError) as info:
        pm.predict({"kind": "training", "model": "llama-2-7b",
                    "system": {"device": "a100-sxm4-80gb", "num_gpus": 6},
                    "parallelism": {"tp": 2, "zero_stage": 1, "sequence_parallel": True},
                    "training": {"seq_len": 4096, "global_batch": 128}})
    assert str(info.value).splitlines()[0] in shown_error(at)
    assert not at.get("plotly_chart")


def test_url_state_round_trips():
    at = page("training", tr_tp="4")
    assert at.number_input(key="tr_tp").value == 4
    at.number_input(key="tr_micro_batch").set_value(2)
    run(at)
    assert at.query_params["tr_micro_batch"] == ["2"] or at.query_params["tr_micro_batch"] == "2"
    assert "tr_seq_len" not in at.query_params  # defaults stay out of the link


def test_training_every_widget():
    at = page("training")
    assert len(exercise_every_widget(at)) >= 20


# --------------------------------------------------------------------------- inference
def test_inference_batch_changes_tpot_and_throughput():
    at = page("inference")
    tpot, tput, spec = metric(at, "TPOT"), metric(at, "Output tokens/s"), specs(at)[0]
    assert title(spec).startswith("Latency breakdown")
    at.number_input(key="in_batch").set_value(64)
    run(at)
    assert metric(at, "TPOT") != tpot and metric(at, "Output tokens/s") != tput
    assert specs(at)[0] != spec


def test_uncertainty_ranges_under_the_metric_values():
    at = page("inference")
    ttft = next(m for m in at.metric if m.label == "TTFT")
    scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6}

    def seconds(text: str) -> float:
        number, unit = text.split()
        return float(number) * scale[unit]

    lo, hi = (seconds(x) for x in ttft.delta.split(" – "))
    assert lo <= seconds(ttft.value) <= hi  # the band holds the prediction
    assert "Range basis:" in ttft.proto.help
    assert any("uncertainty band" in c.value for c in at.caption)


def test_inference_bad_tp_is_one_line_and_fixing_it_recovers():
    at = page("inference", in_num_gpus="3", in_tp="3")
    assert "tp (3) must divide the model's 32 attention heads" in shown_error(at)
    assert not at.get("plotly_chart")
    at.number_input(key="in_tp").set_value(1)
    run(at)
    assert not at.error and len(at.get("plotly_chart")) == 3


def test_inference_model_that_does_not_fit_is_a_warning():
    at = page("inference", in_model="llama-2-70b", in_device="a100-sxm4-40gb")
    assert any("does not fit" in w.value for w in at.warning)
    assert "DOES NOT FIT" in title(specs(at)[1])


def test_stacks_reach_the_scenario_and_move_the_numbers():
    """framework (training) and engine (inference) are scenario fields: choosing one changes
    the scenario file, and the prediction where the stack's facts differ."""
    base = page("training")
    at = page("training", tr_framework="torchtitan")
    assert "framework: torchtitan" in next(c.value for c in at.code if "kind: training" in c.value)
    assert metric(at, "Step time") != metric(base, "Step time")
    at = page("inference", in_engine="vllm")
    assert "engine: vllm" in next(c.value for c in at.code if "kind: inference" in c.value)
    assert any(e.label.startswith("Engine memory plan — vllm") for e in at.expander)


def test_inference_every_widget():
    at = page("inference")
    assert len(exercise_every_widget(at)) >= 15


# --------------------------------------------------------------------------- serving
def test_serving_rate_and_slos_move_the_numbers():
    at = page("serving")
    charts = specs(at)
    assert title(charts[0]).startswith("Latency CDFs")
    assert title(charts[1]).startswith("Timeline")
    assert len(charts[1]["data"]) == 3  # running, queued, KV use
    tput = metric(at, "Output tokens/s")
    assert metric(at, "SLOs") == "met"
    at.number_input(key="sv_rate").set_value(16.0)
    run(at)
    assert metric(at, "Output tokens/s") != tput
    at.number_input(key="sv_tpot_p90").set_value(0.001)
    run(at)
    assert metric(at, "SLOs") == "MISSED"


def test_serving_closed_loop_and_disaggregated():
    at = page("serving", sv_process="closed", sv_concurrency="8")
    assert not at.error
    yaml_text = next(c.value for c in at.code if "kind: serving" in c.value)
    assert "process: closed" in yaml_text and "concurrency: 8" in yaml_text
    at = page("serving", sv_num_gpus="2", sv_scheduler="disaggregated")
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Output tokens/s")


def test_serving_trace_without_upload_asks_for_one():
    at = page("serving", sv_process="trace")
    assert any("Upload a trace CSV" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_serving_every_widget():
    at = page("serving")
    assert len(exercise_every_widget(at, group=6)) >= 20  # sv_tradeoff: the test below


def test_serving_tradeoff_curve():
    at = page("serving")
    at.toggle(key="sv_tradeoff").set_value(True)
    run(at)
    chart = next(s for s in specs(at) if title(s).startswith("Throughput vs interactivity"))
    bars = chart["data"][0]["error_x"]  # the TPOT p50 band as tokens/s per user
    assert all(v >= 0 for v in bars["array"] + bars["arrayminus"]) and any(bars["array"])


# --------------------------------------------------------------------------- compare
def test_compare_h100_and_b200_on_shared_axes():
    at = page("compare")
    table = at.dataframe[0].value
    assert list(table.columns) == ["metric", "A", "B", "B vs A"]
    tpot = table.set_index("metric").loc["TPOT (ms)"]
    assert banded(tpot["B"])[0] < banded(tpot["A"])[0]  # B200 decodes faster than H100
    assert tpot["B vs A"].startswith("-")
    time_spec, memory_spec = specs(at)
    assert title(time_spec).startswith("Where the time goes")
    assert {t["y"][0] for t in memory_spec["data"] if t.get("type") == "bar"} == {"A"}
    at.number_input(key="cmp_n").set_value(3)
    run(at)
    assert "C vs A" in at.dataframe[0].value.columns


def test_compare_training_and_a_broken_scenario():
    at = page("compare", cmp_kind="training", c1t_tp="3")
    assert "Scenario B cannot run" in shown_error(at)
    assert not at.get("plotly_chart")  # one scenario left: nothing to compare
    at.number_input(key="c1t_tp").set_value(4)
    run(at)
    assert len(at.get("plotly_chart")) == 2 and "Step time (s)" in list(
        at.dataframe[0].value["metric"])


def test_compare_every_widget():
    at = page("compare")
    assert len(exercise_every_widget(at, group=6)) >= 30


# --------------------------------------------------------------------------- sweep
def test_sweep_batch_tpot_coloured_by_bound():
    at = page("sweep")
    (spec,) = specs(at)
    assert "TPOT vs inference.batch" in title(spec)
    assert {t["name"] for t in spec["data"] if t.get("name")} <= {"compute-bound",
                                                                 "memory-bound",
                                                                 "communication-bound"}
    assert all(t.get("error_y", {}).get("array") for t in spec["data"] if t.get("name"))
    rows = at.dataframe[0].value
    assert list(rows["inference.batch"]) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    tpots = [banded(c)[0] for c in rows["TPOT (ms) [80 %]"]]  # each 'value (lo–hi)'
    assert tpots == sorted(tpots)


def test_sweep_bad_range_and_training_gpus():
    at = page("sweep", sw_start="64", sw_stop="8")
    assert "must be >= its start" in shown_error(at)
    at = page("sweep", sw_kind="training", sw_param="system.num_gpus", sw_metric="step_time_s",
              sw_start="2", sw_stop="32")
    steps = [banded(c)[0] for c in at.dataframe[0].value["step time (s) [80 %]"]]
    assert steps == sorted(steps, reverse=True)  # more GPUs, shorter steps


def test_sweep_every_widget():
    at = page("sweep", sw_stop="16")
    assert len(exercise_every_widget(at, group=6)) >= 20


# --------------------------------------------------------------------------- plans
def card_band(at: AppTest, label: str) -> tuple[float, float, float]:
    """(value, lo, hi) of a metric card whose value and band under it share one unit."""
    card = next(m for m in at.metric if m.label == label)
    value = float(card.value.split()[0].replace(",", ""))
    lo, hi = (float(x.replace(",", "")) for x in card.proto.delta.split()[0].split("–"))
    assert lo <= value <= hi, (label, card.value, card.proto.delta)
    return value, lo, hi


def test_plan_search_ranks_plans_with_bands_and_draws_the_pareto_plot():
    at = page("plans")
    table = at.dataframe[0].value
    assert len(table) == 20 and list(table["rank"])[:3] == [1, 2, 3]
    steps = [banded(c)[0] for c in table["step (s) [80 %]"]]
    assert steps == sorted(steps)
    for col in ("tokens/s [80 %]", "MFU % [80 %]", "GiB/GPU [80 %]", "days [80 %]"):
        banded(table[col][0])
    assert metric(at, "Best plan").startswith("TP")
    step, _, _ = card_band(at, "Step time")
    assert step == pytest.approx(steps[0], abs=0.006)
    card_band(at, "15,000 B tokens")
    chart = specs(at)[0]
    assert "step time vs memory" in title(chart)
    assert any(t.get("error_x", {}).get("array") for t in chart["data"])  # step bands


def test_plan_search_nothing_fits_says_why():
    at = page("plans", pl_model="llama-3.1-405b", pl_num_gpus="8")
    text = shown_error(at)
    assert text.startswith("**No plan fits:** the smallest needs") and "GiB per GPU" in text
    assert not at.dataframe


def test_plan_serving_names_the_cheapest_deployment_its_cap_bands_and_frontier():
    at = page("plans", pl_mode="serve")
    assert "H100" in metric(at, "Cheapest")
    assert float(metric(at, "USD per hour")) > 0
    summary = next(m.value for m in at.markdown if "Cheapest per GPU type" in m.value)
    assert metric(at, "USD per hour") in summary  # the cheapest overall is H100's line
    card_band(at, "TTFT p90")
    card_band(at, "TPOT p90")
    seqs = int(metric(at, "max_num_seqs").replace(",", ""))
    why = next(m.value for m in at.markdown if m.value.startswith("**Why this deployment:**"))
    assert f"max\\_num\\_seqs {seqs}" in why
    table = at.dataframe[0].value
    ok = table[table["feasible"]]
    assert ok["max seqs"].iloc[0] == seqs
    for col in ("TTFT p90 (ms) [80 %]", "TPOT p90 (ms) [80 %]", "E2E p90 (ms) [80 %]"):
        banded(ok[col].iloc[0])
    front = at.dataframe[1].value
    assert len(front) >= 2
    for col in ("tok/s/user [80 %]", "tok/s/GPU [80 %]", "TPOT ms [80 %]"):
        banded(front[col].iloc[0])
    users = [banded(c)[0] for c in front["tok/s/user [80 %]"]]
    gpus = [banded(c)[0] for c in front["tok/s/GPU [80 %]"]]
    assert users == sorted(users, reverse=True) and gpus == sorted(gpus)  # a Pareto front
    chart = next(c for c in specs(at) if "Throughput vs interactivity" in title(c))
    assert any(t.get("error_y", {}).get("array") for t in chart["data"])
    at.text_input(key="ps_max_num_seqs").set_value("8,,16")
    run(at)
    assert "--max-num-seqs" in shown_error(at)  # the CLI's one-line error, naming the flag
    at.text_input(key="ps_max_num_seqs").set_value("")
    at.multiselect(key="ps_tps").set_value([])
    run(at)
    assert "Choose at least one GPU and one TP degree" in shown_error(at)


def test_plan_serving_same_answer_as_the_cli():
    """The page's numbers are plan-serving's for the same inputs (the CLI's JSON)."""
    at = page("plans", pl_mode="serve")
    out = subprocess.run(
        [sys.executable, "-m", "perfmodel.cli", "plan-serving", "--model", "llama-3-8b",
         "--rate", "4", "--prompt-len", "1024", "--output-len", "256", "--ttft-p90", "1",
         "--tpot-p90", "0.05", "--devices", "h100-sxm5-80gb", "--tp", "1,2",
         "--num-requests", "60", "--scheduler", "continuous", "--json"],
        capture_output=True, text=True, check=True, cwd=APP.parent)
    best = json.loads(out.stdout)["best"]
    assert metric(at, "max_num_seqs") == f"{best['max_num_seqs']:,}"
    value, lo, hi = card_band(at, "TPOT p90")
    assert value == pytest.approx(best["metrics"]["tpot_p90_s"] * 1e3, abs=0.06)
    assert (lo, hi) == pytest.approx([x * 1e3 for x in best["ranges"]["tpot_p90_s"]],
                                     abs=0.06)


def test_plan_serving_row_sized_across_its_band():
    """A row that may miss an SLO gets a second row for the same GPU / TP sized across its
    80 % band (capacity.size_across_band): the table says 'yes, +N replica(s)' as the CLI's
    does, the card, the per-GPU line and the table's note say how many replicas it adds, and
    the numbers are plan-serving's JSON for the same inputs. The TPOT SLO sits between the
    point (23.1 ms at one replica) and its band's upper end (29-31 ms as the validation bands
    stood), so the row meets it at the point and may miss it across the band."""
    at = page("plans", pl_mode="serve", ps_model="llama-3.1-8b", ps_rate="20",
              ps_ttft_p90="0.5", ps_tpot_p90="0.026", ps_tps="1", ps_num_requests="200")
    out = subprocess.run(
        [sys.executable, "-m", "perfmodel.cli", "plan-serving", "--model", "llama-3.1-8b",
         "--rate", "20", "--prompt-len", "1024", "--output-len", "256", "--ttft-p90", "0.5",
         "--tpot-p90", "0.026", "--devices", "h100-sxm5-80gb", "--tp", "1",
         "--num-requests", "200", "--scheduler", "continuous", "--json"],
        capture_output=True, text=True, check=True, cwd=APP.parent)
    data = json.loads(out.stdout)
    wide = [c for c in data["candidates"] if c["sized_across_band"]]
    point = [c for c in data["candidates"] if c["feasible"] and not c["sized_across_band"]]
    assert len(wide) == len(point) == 1 and point[0]["may_miss_slo"]
    w, p = wide[0], point[0]
    extra = w["replicas"] - w["replicas_at_point"]
    assert extra >= 1 and w["replicas_at_point"] == p["replicas"]
    table = at.dataframe[0].value
    ok = table[table["feasible"]]
    assert list(ok["SLOs across band"]) == ["may miss SLO", f"yes, +{extra} replica(s)"]
    assert list(ok["replicas"]) == [p["replicas"], w["replicas"]]
    assert ok["across band"].iloc[0] == p["across_band"]
    assert ok["across band"].iloc[1] == (
        f"+{extra} replica(s) to meet SLOs across the 80 % band ({p['replicas']} meet them at "
        "the point estimate)")
    # the answer is the row sized across the band (the CLI's best)
    assert data["best"]["replicas"] == w["replicas"]
    assert metric(at, "Cheapest").startswith(f"{w['replicas']} ×")
    assert metric(at, "SLOs across the band") == f"+{extra} replica(s)"
    summary = next(m.value for m in at.markdown if "Cheapest per GPU type" in m.value)
    assert f"{w['cost']['usd_per_hour']:.2f} USD/h" in summary
    assert f"+{extra} replica(s) to meet SLOs across the 80 % band" in summary
    bands = next(m.value for m in at.markdown if m.value.startswith("**SLO bands:**"))
    assert f"{extra} more than the {p['replicas']} that meet them" in bands


def test_plan_training_tokens_framework_columns_and_bad_token_text():
    at = page("plans", pl_mode="tokens")
    assert "days" in metric(at, "Time")
    card_band(at, "Time")
    card_band(at, "Cost")
    assert metric(at, "MFU (6ND)").endswith("%") and float(metric(at, "TFLOP/s per GPU")) > 0
    table = at.dataframe[0].value
    for col in ("days [80 %]", "M GPU-h [80 %]", "M USD [80 %]"):
        banded(table[col].iloc[-1])
    assert {"MWh", "energy basis", "MFU 6ND %", "MFU Megatron %", "TFLOP/s per GPU"} <= set(
        table.columns)
    assert (table["MFU Megatron %"] > table["MFU 6ND %"]).all()  # attention FLOPs counted
    days = metric(at, "Time")
    at.selectbox(key="pt_framework").set_value("torchtitan")
    run(at)
    assert metric(at, "Time") != days
    at.text_input(key="pt_tokens").set_value("15 parsecs")
    run(at)
    assert "is not a token count" in shown_error(at)


def test_plan_training_marks_rows_that_may_miss_the_days_limit():
    """plan-training's band rule on the page (tests/test_plan_training_band_rule.py): with
    'At most days' the table says per row whether the limit holds across the 80 % band, and
    an answer that meets it only at the point estimate carries a warning. The page's rows
    (llama-3-8b, 15T, H100, <= 512 GPUs) read from the API: 512 GPUs 32.2 days (band to 46.7),
    256 GPUs 63.5 days (band to 92.2)."""
    import perfmodel as pm

    rows = {r.gpus: r for r in pm.plan_training("llama-3-8b", tokens="15T",
                                                devices="h100-sxm5-80gb", max_gpus=512).rows}
    fast, next_ = rows[512], rows[256]
    assert fast.days <= 40 < fast.scaled(fast.days)[1]  # 40 days: met at the point only
    assert next_.days <= 70 < next_.scaled(next_.days)[1] and fast.scaled(fast.days)[1] <= 70
    at = page("plans", pl_mode="tokens")
    at.number_input(key="pt_days").set_value(40.0)
    run(at)
    assert any(w.value.startswith("**May miss --days:**") for w in at.warning)
    table = at.dataframe[0].value.set_index("GPUs")
    assert table.loc[512, "limits across 80 % band"] == "may miss --days"
    at.number_input(key="pt_days").set_value(70.0)
    run(at)
    assert not any("May miss" in w.value for w in at.warning)
    table = at.dataframe[0].value.set_index("GPUs")
    assert table.loc[512, "limits across 80 % band"] == "yes"
    assert table.loc[256, "limits across 80 % band"] == "may miss --days"
    assert metric(at, "Answer").startswith("512 ")


def test_plans_every_widget():
    for mode in ("search", "tokens", "serve"):
        at = page("plans", pl_mode=mode)
        assert len(exercise_every_widget(at, group=6)) >= 8


# --------------------------------------------------------------------------- calibration
def test_calibration_profile_table_and_measured_points():
    at = page("calibration", ca_profile="a100-sxm4-80gb.reference")
    assert metric(at, "Device") == "a100-sxm4-80gb"
    fit = at.dataframe[0].value
    assert "gemm.bf16" in list(fit["table"])
    devices = at.dataframe[1].value.set_index("device")
    assert devices.loc["a100-sxm4-80gb", "reference"]
    assert devices.loc["rtx-4090", "uses"] == "default (uncalibrated)"
    at.toggle(key="ca_points").set_value(True)
    run(at)
    curve, _parity = specs(at)
    assert title(curve).startswith("gemm.bf16: measured vs fitted")
    other = at.selectbox(key="ca_table").options[-1]
    at.selectbox(key="ca_table").set_value(other)
    run(at)
    assert title(specs(at)[0]).startswith(f"{other}: measured vs fitted")


def test_calibration_upload_without_file_and_every_widget():
    at = page("calibration", ca_source="upload")
    assert any("Upload a profile" in i.value for i in at.info)
    at = page("calibration", ca_profile="a100-sxm4-80gb.reference", ca_points="true")
    assert len(exercise_every_widget(at)) >= 4


# --------------------------------------------------------------------------- validation
def test_validation_scatter_filters_and_citation():
    at = page("validation")
    (spec,) = specs(at)
    names = {t.get("name") for t in spec["data"]}
    assert {"±10 %", "±25 %", "predicted = measured"} <= names
    n_all = int(metric(at, "Cases").split()[0])
    at.multiselect(key="va_source").set_value(["bloom176b"])
    run(at)
    assert int(metric(at, "Cases").split()[0]) < n_all
    text = " ".join(m.value for m in at.markdown)
    assert "bigscience" in text.lower() and "Omni-Path" in text
    assert set(at.dataframe[0].value["from"]) <= {"last report", "not predicted yet"}
    at.button(key="va_run").click()  # predict the shown (filtered) cases now
    run(at)
    assert set(at.dataframe[0].value["from"]) == {"predicted now"}
    assert metric(at, "Cases").startswith("1 of")
    at.multiselect(key="va_source").set_value([])
    at.multiselect(key="va_stack").set_value(["torchtitan"])  # filter by framework
    run(at)
    assert set(at.dataframe[0].value["stack"]) == {"torchtitan"}


def test_validation_empty_filter_is_a_message():
    at = page("validation", va_source="bloom176b", va_kind="inference")
    assert "No predicted case matches these filters" in shown_error(at)


def test_validation_every_widget():
    at = page("validation")
    assert len(exercise_every_widget(at)) >= 5


def test_a_link_with_an_unknown_model_says_so_in_one_line():
    at = page("training", tr_model="no-such-model")
    warnings = [w.value for w in at.warning if "no-such-model" in w.value]
    assert len(warnings) == 1 and "\n" not in warnings[0], [w.value for w in at.warning]
    assert "model" in warnings[0]


def test_a_link_with_a_non_number_says_so():
    at = page("training", tr_micro_batch="lots")
    assert any("micro_batch" in w.value and "lots" in w.value for w in at.warning)


# --------------------------------------------------------------------------- engine versions
VLLM_07_V1 = {"in_engine": "vllm", "in_engine_version": "0.7.0", "in_engine_variant": "v1"}


def _yaml(at: AppTest, kind: str = "inference") -> str:
    return next(c.value for c in at.code if f"kind: {kind}" in c.value)


def test_engine_version_reaches_the_scenario_and_the_engine_plan():
    from perfmodel.engines import families

    at = page("inference", in_engine="vllm")
    options = at.selectbox(key="in_engine_version").options
    firsts = {r.since for f in families("vllm") for r in f.ranges}
    assert options[0] == "current (0.22)" and len(options) == 1 + len(firsts)
    assert at.selectbox(key="in_engine_variant").options == ["release default", "mrv2", "v0",
                                                             "v1"]
    at = page("inference", **VLLM_07_V1)
    assert "version: 0.7.0" in _yaml(at) and "variant: v1" in _yaml(at)
    assert any(e.label == "Engine memory plan — vllm 0.7-v1" for e in at.expander)
    # a release typed in (not a family's first one) is kept, and its family is used
    at = page("inference", in_engine="vllm", in_engine_version="0.6.5")
    assert not at.error and at.selectbox(key="in_engine_version").value == "0.6.5"
    assert any(e.label == "Engine memory plan — vllm 0.6.4+pr10511" for e in at.expander)
    # llama.cpp's families are build tags (engines/llamacpp.yaml, versions/llamacpp-b1786.yaml)
    at = page("inference", in_engine="llamacpp")
    options = at.selectbox(key="in_engine_version").options
    assert options[0] == "current (b7407)" and "b1786 — facts b1786" in options
    # the engine-neutral model offers no version
    at = page("inference", in_engine="generic")
    assert not [s for s in at.selectbox if s.key == "in_engine_version"]
    assert "version:" not in _yaml(at)


def test_current_version_label_follows_the_picked_variant():
    from perfmodel.engines import get_engine

    # vLLM's v0 engine core ends with the 0.7 family: naming no version with variant v0 gets
    # that family (engines.get_engine), and the picker's "current" label must say so
    at = page("inference", in_engine="vllm", in_engine_variant="v0")
    label = at.selectbox(key="in_engine_version").options[0]
    assert label == f"current ({get_engine('vllm', variant='v0').version})" == "current (0.7-v0)"
    assert any(e.label == "Engine memory plan — vllm 0.7-v0" for e in at.expander)


def test_engine_version_and_variant_that_no_family_holds_is_the_core_error():
    at = page("inference", in_engine="vllm", in_engine_version="0.1.0", in_engine_variant="v1")
    with pytest.raises(pm.SpecError) as info:
        pm.predict({"kind": "inference", "model": "llama-2-7b",
                    "system": {"device": "a100-sxm4-80gb", "num_gpus": 1},
                    "inference": {"batch": 8, "prompt_len": 1024, "output_len": 256},
                    "engine": {"name": "vllm", "version": "0.1.0", "variant": "v1"}})
    assert str(info.value).splitlines()[0] in shown_error(at)
    assert not at.get("plotly_chart")
    at.selectbox(key="in_engine_variant").set_value("release default")
    run(at)
    assert not at.error and len(at.get("plotly_chart")) == 3


def test_engine_version_round_trips_through_the_link():
    at = page("inference", in_engine="vllm")
    at.selectbox(key="in_engine_version").set_value("0.7.0")
    at.selectbox(key="in_engine_variant").set_value("v1")
    run(at)
    params = {k: at.query_params[k] for k in at.query_params}
    flat = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
    assert {k: flat[k] for k in VLLM_07_V1} == VLLM_07_V1
    again = page("inference", **flat)  # the shared link opens the same view
    assert again.selectbox(key="in_engine_version").value == "0.7.0"
    assert again.selectbox(key="in_engine_variant").value == "v1"
    assert _yaml(again) == _yaml(at)


def test_serving_engine_version():
    at = page("serving", sv_engine="vllm", sv_engine_version="0.7.0", sv_engine_variant="v1")
    assert not at.error, [e.value for e in at.error]
    assert "version: 0.7.0" in _yaml(at, "serving")
    assert any(e.label == "Engine memory plan — vllm 0.7-v1" for e in at.expander)


# --------------------------------------------------------------------------- benchmark client
def test_serving_benchmark_client_on_the_closed_loop_form():
    from perfmodel.serving.clients import client_ids

    at = page("serving")  # Poisson arrivals: no client
    assert not [s for s in at.selectbox if s.key == "sv_client"]
    at = page("serving", sv_process="closed", sv_concurrency="8")
    client = at.selectbox(key="sv_client")
    assert client.value == "vllm-bench-serve" and sorted(client.options) == client_ids()
    assert "benchmark:" not in _yaml(at, "serving")  # the default client: not written
    assert any(e.label == "Benchmark client's report — vllm-bench-serve" for e in at.expander)
    client.set_value("sglang-bench-serving")
    run(at)
    assert "client: sglang-bench-serving" in _yaml(at, "serving")
    assert at.query_params["sv_client"] in ("sglang-bench-serving", ["sglang-bench-serving"])
    # a windowed client asks for its measurement interval
    at = page("serving", sv_process="closed", sv_concurrency="8", sv_client="genai-perf",
              sv_interval_ms="2000")
    assert not at.error, [e.value for e in at.error]
    text = _yaml(at, "serving")
    assert "client: genai-perf" in text and "measurement_interval_ms: 2000.0" in text
    report = next(e for e in at.expander if e.label.startswith("Benchmark client's report"))
    assert report.label.endswith("genai-perf")
    assert any("measurement windows" in c.value for c in at.caption)


# --------------------------------------------------------------------------- MoE
MOE = {"in_model": "deepseek-v3", "in_device": "h200-sxm-141gb", "in_num_gpus": "8",
       "in_ep": "8", "in_attention_dp": "8", "in_batch": "256", "in_weight_dtype": "fp8_block"}


def _moe_scenario(**par) -> dict:
    return {"kind": "inference", "model": "deepseek-v3",
            "system": {"device": "h200-sxm-141gb", "num_gpus": 8},
            "parallelism": {"tp": 1, "pp": 1, "ep": 8, "attention_dp": 8, **par},
            "inference": {"batch": 256, "prompt_len": 1024, "output_len": 256,
                          "weight_dtype": "fp8_block",
                          "kv_dtype": "bf16"},
            "engine": "sglang"}


def test_moe_overlap_only_for_moe_models_with_ep():
    keys = {s.key for s in page("inference").selectbox}
    assert "in_moe_overlap" not in keys  # a dense model
    at = page("inference", in_model="deepseek-v3", in_device="h200-sxm-141gb",
              in_num_gpus="8")
    assert "in_moe_overlap" not in {s.key for s in at.selectbox}  # EP 1
    at = page("inference", **MOE)
    assert at.selectbox(key="in_moe_overlap").options == ["engine default", "none",
                                                           "two_batch"]


def test_moe_table_and_exposed_overlapped_all_to_all_shown():
    at = page("inference", **MOE, in_engine="sglang", in_moe_overlap="two_batch")
    assert not at.error, [e.value for e in at.error]
    assert "moe_overlap: two_batch" in _yaml(at) and "attention_dp: 8" in _yaml(at)
    moe = pm.predict(_moe_scenario(moe_overlap="two_batch")).breakdown["moe"]["decode_step"]
    line = next(m.value for m in at.markdown if m.value.startswith("**MoE experts**"))
    assert f"`{moe['grouped_gemm_table']}`" in line
    assert moe["all_to_all_overlapped_s"] > 0
    assert (f"decode step all-to-all {1e3 * moe['all_to_all_exposed_s']:.3g} ms exposed, "
            f"{1e3 * moe['all_to_all_overlapped_s']:.3g} ms overlapped") in line
    table = next(d.value for d in at.dataframe if "grouped-GEMM table" in d.value.columns)
    row = table.set_index("phase").loc["decode step"]
    assert row["overlap"] == "two_batch"
    assert row["exposed (ms)"] + row["overlapped (ms)"] == pytest.approx(row["all-to-all (ms)"])
    # without the overlap every millisecond of the all-to-all is exposed
    at.selectbox(key="in_moe_overlap").set_value("none")
    run(at)
    row = next(d.value for d in at.dataframe if "grouped-GEMM table" in d.value.columns
               ).set_index("phase").loc["decode step"]
    assert row["overlapped (ms)"] == 0 and row["exposed (ms)"] == row["all-to-all (ms)"] > 0


def test_moe_overlap_on_an_engine_without_a_schedule_is_the_core_error():
    at = page("inference", **MOE, in_moe_overlap="two_batch")  # the generic engine
    with pytest.raises(pm.SpecError) as info:
        pm.predict({**_moe_scenario(moe_overlap="two_batch"), "engine": "generic"})
    assert str(info.value).splitlines()[0] in shown_error(at)


def test_moe_settings_round_trip_through_the_link():
    at = page("inference", **MOE, in_engine="vllm")
    at.selectbox(key="in_moe_overlap").set_value("two_batch")
    run(at)
    flat = {k: (lambda v: v[0] if isinstance(v, list) else v)(at.query_params[k])
            for k in at.query_params}
    assert flat["in_moe_overlap"] == "two_batch" and flat["in_attention_dp"] == "8"
    again = page("inference", **flat)
    assert again.selectbox(key="in_moe_overlap").value == "two_batch"
    assert _yaml(again) == _yaml(at)


# --------------------------------------------------------------------------- bands, profiles
def test_uncertainty_band_basis_table():
    at = page("inference")
    pred = pm.predict({"kind": "inference", "model": "llama-2-7b",
                       "system": {"device": "a100-sxm4-80gb", "num_gpus": 1},
                       "inference": {"batch": 8, "prompt_len": 1024, "output_len": 256,
                                     "activation_dtype": "bf16", "kv_dtype": "bf16"}})
    table = next(d.value for d in at.dataframe if "basis" in d.value.columns)
    rows = table.set_index("metric")
    assert list(rows["basis"]) == list(pred.range_basis.values())
    # memory's band: the engine start-up cases, one source per GitHub thread (group_by)
    lo, hi = pred.ranges["memory_per_gpu_bytes"]
    assert lo <= pred.memory_per_gpu_bytes <= hi
    assert rows.loc["memory per GPU", "band (80 %)"] != "none"
    assert rows.loc["memory per GPU", "basis"].startswith(
        "validation group inference/memory_per_gpu_bytes")
    assert rows.loc["TTFT", "band (80 %)"] == metric_band(at, "TTFT")
    at = page("serving")
    assert any(e.label == "Uncertainty bands and their basis" for e in at.expander)
    assert "TTFT (p50)" in next(d.value for d in at.dataframe
                                if "basis" in d.value.columns)["metric"].tolist()


def metric_band(at: AppTest, label: str) -> str:
    return next(m.delta for m in at.metric if m.label == label)


def test_calibration_lists_every_shipped_profile():
    from perfmodel.paths import data_dir

    shipped = sorted(p.stem for p in data_dir("calibration").glob("*.reference.json"))
    assert {f"{d}.reference" for d in ("b300", "gb200", "gb300", "mi300x", "mi355x")} \
        <= set(shipped)
    at = page("calibration")
    assert set(shipped) <= set(at.selectbox(key="ca_profile").options)
    devices = at.dataframe[1].value.set_index("device")
    for stem in shipped:
        device = stem.removesuffix(".reference")
        assert devices.loc[device, "reference"] and devices.loc[device, "uses"] == "reference"
    at = page("calibration", ca_profile="mi355x.reference")
    assert metric(at, "Device") == "mi355x"
    assert len(at.dataframe[0].value) > 0  # its held-out errors


def test_zero_stage_choices_are_the_frameworks():
    """The ZeRO select offers the stages the chosen framework runs (its capabilities), so a
    stage it lacks is never sent: torchtitan (DDP or FSDP2) moves ZeRO-1 to FSDP2."""
    at = page("training", tr_framework="torchtitan")
    box = next(s for s in at.selectbox if s.key == "tr_zero_stage")
    assert [o.split(" ")[0] for o in box.options] == ["0", "3"] and box.value == 3
    assert "FSDP2 fully_shard" in box.options[1]  # the framework's own switch
    assert "zero_stage: 3" in next(c.value for c in at.code if "kind: training" in c.value)
