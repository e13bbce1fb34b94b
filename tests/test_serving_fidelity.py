"""What the engines and their benchmark clients do that a naive simulator gets wrong: settings
an engine refuses, requests it rejects, the percentiles and peaks its client prints, and the
SGLang example running SGLang's own scheduler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.errors import SpecError
from perfmodel.serving.bench import benchmark_metrics, peak_output_rate
from perfmodel.serving.schedulers import make_scheduler

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BASE = {
    "kind": "serving", "model": "llama-3.1-8b",
    "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
    "inference": {"prompt_len": 512, "output_len": 64},
    "serving": {"arrival": {"process": "closed", "concurrency": 4}, "num_requests": 40},
}


def _run(tmp_path, capsys, scenario: dict, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(scenario))
    rc = main(["predict", str(path), *flags])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip()


def _with(engine=None, **serving) -> dict:
    d = json.loads(json.dumps(BASE))
    d["serving"].update(serving)
    if engine is not None:
        d["engine"] = engine
    return d


# ---- settings the engine refuses: one line naming the field, exit 2 -----------------------------

@pytest.mark.parametrize("scenario, words", [
    (_with("vllm", scheduler={"recv_interval": 4}),
     ("serving.scheduler.recv_interval", "engine: sglang")),
    (_with(scheduler={"kind": "prefill_first", "recv_interval": 0}),
     ("serving.scheduler.recv_interval",)),
    (_with({"name": "llamacpp", "block_size": 32}), ("engine.block_size", "llama.cpp")),
    (_with({"name": "vllm", "max_model_len": 2_000_000}),
     ("engine.max_model_len", "131,072")),
    (_with({"name": "sglang", "max_model_len": 200_000}),
     ("engine.max_model_len", "131,072")),
])
def test_refused_settings_are_one_line_naming_the_field(tmp_path, capsys, scenario, words):
    rc, _, err = _run(tmp_path, capsys, scenario)
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_unknown_scheduler_is_a_spec_error():
    with pytest.raises(SpecError, match=r"serving\.scheduler\.kind"):
        make_scheduler("fcfs", 1024)


def test_max_model_len_within_the_model_is_accepted(tmp_path, capsys):
    rc, out, _ = _run(tmp_path, capsys, _with({"name": "vllm", "max_model_len": 8192}))
    assert rc == 0 and "Maximum concurrency for 8,192 tokens" in out


def test_every_no_setting_names_an_engine_override():
    from perfmodel.engines import ENGINE_IDS, families
    from perfmodel.specs.scenario import EngineConfig

    for engine in ENGINE_IDS:
        for spec in families(engine):
            assert set(spec.memory.no_setting) <= set(EngineConfig.model_fields) - {"name"}


# ---- requests longer than max_model_len: rejected, counted as failed -----------------------------

def _trace(tmp_path, rows) -> str:
    path = tmp_path / "trace.csv"
    path.write_text("prompt_len,output_len\n" + "".join(f"{p},{o}\n" for p, o in rows))
    return str(path)


def test_a_request_longer_than_the_context_fails_as_vllm_answers_it(tmp_path, capsys):
    rows = [(200_000, 5), (1000, 100), (2000, 50), (131_000, 100), (1500, 80)]
    sc = _with("vllm", arrival={"process": "closed", "concurrency": 2,
                                "trace": _trace(tmp_path, rows)})
    del sc["serving"]["num_requests"]
    rc, out, _ = _run(tmp_path, capsys, sc, "--json")
    assert rc == 0
    data = json.loads(out)
    bench = data["serving"]["benchmark"]
    # 200,000 + 5 and 131,000 + 100 exceed 131,072 (prompt + max_tokens, vLLM's rule)
    assert bench["completed"] == 3 and bench["failed"] == 2
    assert any("2 request(s) longer" in w and "131,072" in w for w in data["warnings"])


def test_every_request_too_long_is_an_error(tmp_path, capsys):
    sc = _with("vllm", arrival={"process": "closed", "concurrency": 2,
                                "trace": _trace(tmp_path, [(200_000, 5)])})
    del sc["serving"]["num_requests"]
    rc, _, err = _run(tmp_path, capsys, sc)
    assert rc == 2 and "max_model_len 131,072" in err


def test_generic_engine_keeps_serving_long_requests(tmp_path, capsys):
    sc = _with(arrival={"process": "closed", "concurrency": 2,
                        "trace": _trace(tmp_path, [(140_000, 5), (1000, 10)])})
    del sc["serving"]["num_requests"]
    rc, out, _ = _run(tmp_path, capsys, sc, "--json")
    assert rc == 0 and json.loads(out)["serving"]["benchmark"]["failed"] == 0


# ---- what the client prints ----------------------------------------------------------------------

def test_vllm_defaults_and_chosen_percentiles(tmp_path, capsys):
    rc, out, _ = _run(tmp_path, capsys, _with("vllm"))
    assert rc == 0
    assert "P99 TTFT (ms):" in out and "P90 TTFT" not in out and "E2EL" not in out
    rc, out, _ = _run(tmp_path, capsys, _with("vllm", benchmark={
        "metric_percentiles": [50, 99.9], "percentile_metrics": ["ttft", "e2el"]}))
    assert rc == 0
    for line in ("P50 TTFT (ms):", "P99.9 TTFT (ms):", "P50 E2EL (ms):", "P99.9 E2EL (ms):"):
        assert line in out
    assert "TPOT (ms)" not in out and "P99 TTFT" not in out


def test_percentile_options_only_for_vllm_bench_serve(tmp_path, capsys):
    rc, _, err = _run(tmp_path, capsys, _with("sglang", benchmark={
        "client": "sglang-bench-serving", "metric_percentiles": [90]}))
    assert rc == 2 and "serving.benchmark.metric_percentiles" in err


def _reqs(sc: dict):
    from perfmodel.resolve import resolve
    from perfmodel.serving.predict import deployment_for, serving_inputs

    rs = resolve(pm.as_scenario(sc))
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    return dep, wl, dep.simulate(wl).reqs


@pytest.mark.parametrize("scheduler, warmup", [
    ({"kind": "chunked"}, 0), ({"kind": "continuous"}, 5), ({"kind": "static", "max_batch": 4}, 3),
    ({"kind": "prefill_first"}, 0),
])
def test_token_times_hold_every_measured_token(scheduler, warmup):
    """The peak's token record is complete: its counts add up to the measured requests'
    output tokens (warm-up ones left out), whatever the scheduler."""
    sc = _with(scheduler=scheduler, warmup_requests=warmup,
               output_len={"kind": "uniform", "min": 4, "max": 96})
    _, wl, reqs = _reqs(sc)
    t, w = reqs.token_times()
    measured = np.arange(len(wl)) >= wl.warmup  # a separate warm-up phase: all measured
    assert w.sum() == pytest.approx(float(reqs.output[measured].sum()))
    t0 = float(reqs.arrival[measured].min())
    assert (t[w > 0] >= reqs.arrival.min()).all()
    peak = peak_output_rate(reqs, t0)
    duration = float(np.nanmax(reqs.finish[measured]) - t0)
    assert reqs.output[measured].sum() / max(duration, 1.0) <= peak + 1e-9


def test_peak_output_rate_by_hand():
    """Tokens at 0.2, 0.9, 1.1 s (one each) and 1.5 s (two): bucket 1 holds 3."""
    class R:
        def token_times(self):
            return np.array([0.2, 0.9, 1.1, 1.5]), np.array([1.0, 1.0, 1.0, 2.0])
    assert peak_output_rate(R(), 0.0) == 3.0


def test_benchmark_keys_keep_p90_and_add_the_peak():
    dep, wl, reqs = _reqs(_with("vllm"))
    b = benchmark_metrics(reqs, dep.num_gpus, wl.concurrency)
    assert {"p90_ttft_ms", "p99_ttft_ms", "failed", "max_output_tokens_per_s",
            "concurrency", "input_throughput"} <= set(b)
    assert b["metric_percentiles"] == [99.0] and b["percentile_metrics"] == ["ttft", "tpot", "itl"]


# ---- the SGLang example runs SGLang ---------------------------------------------------------------

def test_sglang_example_runs_sglangs_scheduler_not_vllms():
    sgl = pm.predict(pm.load_scenario(str(EXAMPLES / "sglang-closed-loop-llama3.1-8b-h100.yaml")))
    vll = pm.predict(pm.load_scenario(str(EXAMPLES / "vllm-closed-loop-llama3.1-8b-h100.yaml")))
    assert sgl.serving["deployment"]["scheduler"] == "prefill_first"
    assert vll.serving["deployment"]["scheduler"] == "chunked"
    assert sgl.serving["benchmark"]["mean_ttft_ms"] != vll.serving["benchmark"]["mean_ttft_ms"]
    assert sgl.serving["benchmark"]["report"] == "sglang"
    assert sgl.engine["max_running_requests"] == sgl.serving["deployment"]["max_batch"]
    assert sgl.engine["chunked_prefill_size"] == 8192


# ---- the model's context as vLLM derives it -------------------------------------------------------

@pytest.mark.parametrize("rope, expected", [
    ({"type": "linear", "factor": 4.0}, 65536),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}, 32768),
    ({"rope_type": "llama3", "factor": 8.0}, None),
    (None, None),
])
def test_rope_scaled_context(rope, expected):
    from perfmodel.zoo.hf import rope_scaled_context

    cfg = {"max_position_embeddings": 16384}
    if rope is not None:
        cfg["rope_scaling"] = rope
    assert rope_scaled_context(cfg) == expected


def test_max_model_len_up_to_the_rope_scaled_context(tmp_path, capsys):
    model = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32256, "max_position_embeddings": 16384,
             "rope_scaling": {"type": "linear", "factor": 4.0}}
    sc = {"kind": "inference", "model": model, "system": {"device": "h100-sxm5-80gb"},
          "inference": {"prompt_len": 512, "output_len": 64}}
    rc, _, _ = _run(tmp_path, capsys, {**sc, "engine": {"name": "vllm", "max_model_len": 65536}})
    assert rc == 0
    rc, _, err = _run(tmp_path, capsys, {**sc, "engine": {"name": "vllm", "max_model_len": 65537}})
    assert rc == 2 and "RoPE-scaled context of 65,536" in err


def test_open_loop_blocks_print_the_configured_rate(tmp_path, capsys):
    arrival = {"process": "poisson", "rate_per_s": 4}
    rc, out, _ = _run(tmp_path, capsys, _with("vllm", arrival=arrival, warmup_requests=5))
    assert rc == 0 and "Request rate configured (RPS):           4.00" in out
    rc, out, _ = _run(tmp_path, capsys, _with("sglang", arrival=arrival, warmup_requests=5,
                                              benchmark={"client": "sglang-bench-serving"}))
    assert rc == 0 and "Traffic request rate:                    4.0" in out
    assert "Max request concurrency:                 not set" in out
