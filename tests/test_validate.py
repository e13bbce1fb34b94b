"""The validation harness: every case file loads and its scenario validates; the FLOP-counting
conventions reproduce numbers printed in their sources; metric math, aggregation, the JSON
report, the plot and the report file; broken case files fail with an error naming the field.

Accuracy itself is not asserted here (it is a benchmark figure: benchmarks/validation_accuracy.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from perfmodel.api import predict
from perfmodel.cli import build_parser, main
from perfmodel.errors import SpecError
from perfmodel.specs.system import resolve_system
from perfmodel.validate import (
    CaseResult,
    Measured,
    build_report,
    case_files,
    case_scenario,
    korthikanti_hw_flops,
    llmfoundry_flops,
    load_case_file,
    load_cases,
    megatron_model_flops,
    metric_value,
    narayanan_eq3_flops,
    plot_report,
    render,
    run_case,
    run_cases,
    run_cli,
    summarize,
    write_json_atomic,
)

VALIDATION = Path(__file__).resolve().parents[1] / "validation"
A100_PEAK = 312e12


@pytest.fixture(scope="module")
def all_cases():
    return load_cases()


# ---- the shipped case files ----------------------------------------------------------------


def test_case_files_exist_for_both_kinds():
    assert case_files(VALIDATION, "training")
    assert case_files(VALIDATION, "inference")


def test_every_case_loads_and_its_scenario_validates(all_cases):
    assert len(all_cases) >= 150
    ids = [lc.case.id for lc in all_cases]
    assert len(ids) == len(set(ids))
    for lc in all_cases:
        sc = case_scenario(lc)  # SpecError names the case's field if a scenario is invalid
        resolve_system(sc.system)  # device, node and fabric ids exist
        assert sc.kind == lc.case.kind
        assert lc.case.source.url.startswith("https://")
        assert lc.case.source.location, lc.case.id


def test_flop_metrics_name_their_convention(all_cases):
    for lc in all_cases:
        if lc.case.metric in ("tflops_per_gpu", "mfu"):
            assert lc.case.flops_convention is not None, lc.case.id
        if lc.case.metric == "mfu":
            assert lc.case.peak_tflops == 312, lc.case.id  # A100 sources only so far


def test_case_filter_and_kind(all_cases):
    inference = load_cases(kind="inference")
    assert inference and all(lc.case.kind == "inference" for lc in inference)
    some = load_cases(match="KORTHIKANTI2022_T5_22B")
    assert {lc.case.id for lc in some} == {"korthikanti2022_t5_22B_full_recompute",
                                           "korthikanti2022_t5_22B_seqpar_selective"}


# ---- FLOP conventions vs numbers printed in the sources --------------------------------------


@pytest.mark.parametrize("B,L,h,t,n,mfu,hfu", [
    # Korthikanti et al. 2022, Table 3 configs and Table 5 times / MFU / HFU (present work)
    (4, 48, 6144, 1.10, 8, 0.415, 0.437),
    (64, 96, 12288, 13.75, 64, 0.514, 0.528),
    (280, 105, 20480, 37.83, 280, 0.560, 0.570),
    (512, 128, 25600, 71.49, 512, 0.563, 0.570),
])
def test_korthikanti_eq7_eq8_reproduce_table5(B, L, h, t, n, mfu, hfu):
    got_mfu = megatron_model_flops(B, 2048, L, h, 51200) / t / n / A100_PEAK
    got_hfu = korthikanti_hw_flops(B, 2048, L, h, 51200) / t / n / A100_PEAK
    # times are printed to 0.01 s: 1.10 s alone is +-0.5 %
    assert got_mfu == pytest.approx(mfu, rel=0.01)
    assert got_hfu == pytest.approx(hfu, rel=0.01)


@pytest.mark.parametrize("B,t,n,mfu", [
    # MegaScale Table 2, Megatron-LM rows: 175B, vocabulary 64000
    (768, 40.0, 256, 0.530), (768, 11.9, 1024, 0.447), (6144, 29.02, 3072, 0.487),
    (6144, 8.57, 12288, 0.412),
])
def test_megascale_mfu_is_megatron_model_flops(B, t, n, mfu):
    got = megatron_model_flops(B, 2048, 96, 12288, 64000) / t / n / A100_PEAK
    assert got == pytest.approx(mfu, rel=0.005)


def test_bloom_log_tflops_are_narayanan_eq3():
    # tr11 README log line: 104.70 s per iteration, GBS 2048, 384 GPUs -> "TFLOPs: 149.77"
    got = narayanan_eq3_flops(2048, 2048, 70, 14336, 250880) / 104.7 / 384 / 1e12
    assert got == pytest.approx(149.77, abs=0.01)


@pytest.mark.parametrize("B,L,h,n,tflops,days", [
    # Narayanan et al. 2021 Table 2: training days for 300B tokens from eq. 3 and TFLOP/s
    (1536, 96, 12288, 384, 144, 90),   # ZeRO-3, 175B
    (2240, 105, 20480, 2240, 159, 42),  # PTD-P, 530B
    (2240, 105, 20480, 2240, 48, 140),  # ZeRO-3, 530B
])
def test_narayanan_eq3_reproduces_table2_training_days(B, L, h, n, tflops, days):
    step = narayanan_eq3_flops(B, 2048, L, h, 51200) / (tflops * 1e12 * n)
    got = 300e9 / (B * 2048) * step / 86400
    assert got == pytest.approx(days, rel=0.01)


def test_narayanan_eq3_agrees_with_eq4_example():
    # Sec. 5.1: GPT-3 175B, 300B tokens, 1024 GPUs, batch 1536, 140 TFLOP/s -> "34 days" by
    # eq. 4 (8TP/nX); eq. 3 keeps the s/6h and V/16lh terms that eq. 4 drops (< 3 %)
    step = narayanan_eq3_flops(1536, 2048, 96, 12288, 51200) / (140e12 * 1024)
    days = 300e9 / (1536 * 2048) * step / 86400
    eq4 = 8 * 300e9 * 175e9 / (1024 * 140e12) / 86400
    assert eq4 == pytest.approx(34, abs=0.5)
    assert days == pytest.approx(eq4, rel=0.03)


@pytest.mark.parametrize("n_params,L,d,tok_per_gpu,peak,mfu", [
    (6658859008, 32, 4096, 85144 / 8, 989e12, 0.4644),    # MPT-7B, 8x H100, seq 2048
    (6658859008, 32, 4096, 37130 / 8, 312e12, 0.6423),    # MPT-7B, 8x A100 80GB
    (64862437376, 80, 8192, 66523 / 64, 989e12, 0.4257),  # MPT-70B, 64x H100
])
def test_llmfoundry_mfu_formula(n_params, L, d, tok_per_gpu, peak, mfu):
    per_token = llmfoundry_flops(1, 2048, L, d, n_params) / 2048
    assert per_token * tok_per_gpu / peak == pytest.approx(mfu, rel=0.002)


# ---- metrics and units -----------------------------------------------------------------------


def test_units_convert_to_the_canonical_unit():
    assert Measured(value=7, unit="ms").canonical == pytest.approx(0.007)
    assert Measured(value=53.0, unit="%").canonical == pytest.approx(0.53)
    with pytest.raises(Exception, match="unit"):
        Measured(value=1, unit="sec")


def _case(all_cases, cid):
    return next(lc for lc in all_cases if lc.case.id == cid)


def test_training_metrics_are_consistent(all_cases):
    lc = _case(all_cases, "narayanan2021_t1_145.6B")
    sc = case_scenario(lc)
    pred = predict(sc)
    t = sc.training
    # the source's convention: eq. 3 FLOPs over the predicted step time
    want = narayanan_eq3_flops(t.global_batch, t.seq_len, 80, 12288, 51200)
    got = metric_value(lc.case, pred, sc)
    assert got == pytest.approx(want / pred.step_time_s / 1536 / 1e12)
    # eq. 3 counts the recompute forward: more than perfmodel's own model-FLOP rate
    assert got > pred.tflops_per_gpu


def test_inference_metrics_follow_their_definitions(all_cases):
    lc = _case(all_cases, "A-TRT061-H100-THR-09")  # Llama-2-70B, TP 2, batch 1024
    sc = case_scenario(lc)
    pred = predict(sc)
    got = metric_value(lc.case, pred, sc)
    inf = sc.inference
    assert got == pytest.approx(inf.batch * inf.output_len / pred.e2e_latency_s / 2)
    assert got * 2 == pytest.approx(pred.tokens_per_s)  # perfmodel's own definition agrees
    lc = _case(all_cases, "B-LCPP-PR4766-RTX4090-LLAMA7B-F16-pp512")
    sc = case_scenario(lc)
    pred = predict(sc)
    assert metric_value(lc.case, pred, sc) == pytest.approx(512 / pred.ttft_s)


# ---- running, aggregation, report ------------------------------------------------------------


def test_harness_runs_end_to_end_on_a_few_cases(all_cases):
    picked = [_case(all_cases, cid) for cid in (
        "korthikanti2022_t5_175B_seqpar_selective", "megascale_t3_megatron_baseline_175B_256gpu_gbs256",
        "llmfoundry_a100_80gb_amp_bf16_mpt7b_seq2048_8gpu", "A-TRT05-TTFT-A100-16",
        "B-LCPP-PR4766-RTX3090-LLAMA7B-Q4_0-tg128")]
    results = run_cases(picked)
    for r in results:
        assert r.status == "ok", r.error
        assert math.isfinite(r.predicted) and r.predicted > 0
        assert math.isfinite(r.ape) and r.ape == pytest.approx(
            abs(r.predicted - r.measured) / r.measured)
    report = build_report(results)
    assert report["count"] == 5 and report["errors"] == 0
    assert set(report["by_kind"]) == {"training", "inference"}
    text = render(report)
    assert "korthikanti2022_t5_175B_seqpar_selective" in text and "median APE" in text


def test_summarize_median_max_and_errors():
    def row(cid, kind, a, status="ok"):
        return CaseResult(id=cid, source="s", kind=kind, metric="step_time_s", unit="s",
                          measured=1.0, predicted=None if a is None else 1 + a,
                          ape=a, status=status)

    results = [row("a", "training", 0.1), row("b", "training", 0.3), row("c", "training", 0.2),
               row("d", "training", None, "error"), row("e", "inference", 0.05)]
    s = summarize(results)
    assert s["overall"]["median_ape"] == pytest.approx(0.15)
    assert s["overall"]["max_ape"] == pytest.approx(0.3)
    assert s["overall"]["errors"] == 1 and s["overall"]["count"] == 5
    assert s["by_kind"]["training"]["median_ape"] == pytest.approx(0.2)
    assert s["by_kind"]["training"]["worst_case"] == "b"
    assert s["by_kind"]["inference"]["max_ape"] == pytest.approx(0.05)


def test_cli_json_shape(capsys):
    code = main(["validate", "--json", "--case", "korthikanti2022_t5_22B"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"cases", "median_ape", "max_ape"} <= set(data)
    assert len(data["cases"]) == 2
    for c in data["cases"]:
        assert {"id", "metric", "predicted", "measured", "ape"} <= set(c)
        assert c["metric"] == "step_time_s" and c["ape"] >= 0
    assert data["max_ape"] == max(c["ape"] for c in data["cases"])


def test_cli_text_and_plot(tmp_path, capsys):
    out = tmp_path / "v.png"
    args = build_parser().parse_args(["validate", "--kind", "inference", "--case", "TTFT-L40S",
                                      "--plot", str(out)])
    assert run_cli(args) == 0
    text = capsys.readouterr().out
    assert "A-TRT05-TTFT-L40S-09" in text and "inference" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_no_matching_case_is_a_clear_error(capsys):
    assert main(["validate", "--case", "no-such-case-id"]) == 2
    assert "no-such-case-id" in capsys.readouterr().err


def test_plot_skips_error_rows(tmp_path):
    ok = CaseResult(id="a", source="s", kind="training", metric="step_time_s", unit="s",
                    measured=2.0, predicted=2.2, ape=0.1, status="ok")
    bad = CaseResult(id="b", source="t", kind="inference", metric="ttft_s", unit="s",
                     measured=0.01, predicted=None, ape=None, status="error", error="x")
    out = plot_report(build_report([ok, bad]), tmp_path / "p.svg")
    assert "<svg" in out.read_text()


def test_write_json_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    write_json_atomic({"median_ape": 0.1}, target)
    assert json.loads(target.read_text()) == {"median_ape": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


# ---- broken case files -------------------------------------------------------------------------

GOOD = {
    "id": "tiny", "metric": "ttft_s", "measured": {"value": 10, "unit": "ms"},
    "source": {"title": "A test source", "url": "https://example.org/x", "location": "T1"},
    "notes": "a test case",
    "scenario": {"kind": "inference", "model": "llama-2-7b",
                 "system": {"device": "a100-sxm4-80gb", "num_gpus": 1},
                 "inference": {"batch": 1, "prompt_len": 128, "output_len": 1}},
}


def _write(tmp_path, cases, kind="inference", name="cases.yaml", source=None):
    folder = tmp_path / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = {"cases": cases}
    if source:
        body["source"] = source
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize("change,field", [
    ({"measured": {"value": 10, "unit": "sec"}}, "measured.unit"),
    ({"measured": {"value": -1, "unit": "ms"}}, "measured.value"),
    ({"metric": "latency"}, "metric"),
    ({"metric": "tflops_per_gpu", "measured": {"value": 1, "unit": "TFLOP/s per GPU"}},
     "flops_convention"),
    ({"notes": None}, "notes"),
    ({"colour": "red"}, "colour"),
])
def test_broken_case_names_file_case_and_field(tmp_path, change, field):
    case = {**GOOD, **change}
    case = {k: v for k, v in case.items() if v is not None}
    path = _write(tmp_path, [case])
    with pytest.raises(SpecError) as err:
        load_case_file(path)
    msg = str(err.value)
    assert str(path) in msg and "cases[0]" in msg and "'tiny'" in msg and field in msg


def test_file_level_source_is_merged_and_ids_are_unique(tmp_path):
    shared = {"title": "Shared source", "url": "https://example.org/shared"}
    case = {**GOOD, "source": {"location": "Table 9"}}
    path = _write(tmp_path, [case], source=shared)
    (lc,) = load_case_file(path)
    assert lc.case.source.title == "Shared source" and lc.case.source.location == "Table 9"
    _write(tmp_path, [case], name="again.yaml", source=shared)
    with pytest.raises(SpecError, match="also used"):
        load_cases(root=tmp_path)


def test_a_bad_scenario_is_an_error_row_and_does_not_stop_the_run(tmp_path):
    bad_device = {**GOOD, "id": "bad-device",
                  "scenario": {**GOOD["scenario"],
                               "system": {"device": "a100-sxm9", "num_gpus": 1}}}
    bad_plan = {**GOOD, "id": "bad-plan",
                "scenario": {**GOOD["scenario"], "system": {"device": "a100-sxm4-80gb",
                                                            "num_gpus": 3},
                             "parallelism": {"tp": 3}}}
    _write(tmp_path, [bad_device, GOOD, bad_plan])
    results = {r.id: r for r in run_cases(load_cases(root=tmp_path))}
    assert results["tiny"].status == "ok" and results["tiny"].ape is not None
    assert results["bad-device"].status == "error"
    assert "a100-sxm9" in results["bad-device"].error
    assert results["bad-plan"].status == "error" and "tp" in results["bad-plan"].error
    report = build_report(list(results.values()))
    assert report["errors"] == 2 and report["median_ape"] == results["tiny"].ape


def test_unsupported_plan_in_shipped_cases_is_reported_not_raised(all_cases):
    # BLOOM's 70 layers over 12 stages is an uneven split perfmodel does not model yet
    r = run_case(_case(all_cases, "bloom176b_tr11_384gpu_gbs2048"))
    assert r.status in ("ok", "error")
    if r.status == "error":
        assert "num_layers" in r.error
