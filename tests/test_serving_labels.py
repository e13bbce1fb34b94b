"""What the serving and engine outputs say each number is (a QA tour as a new user): KV
capacity per attention-DP rank and per instance, the serving head's medians and the zero-load
tables, plan-serving's --cv, the sweep's messages and CSV bands, a closed loop with fewer
requests than clients, "fits" about memory only, and llama.cpp's split modes.

Numbers are checked against hand calculations (DeepSeek-R1's MLA KV bytes per token, the
instance's pool over the mean context), messages exactly."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.errors import SpecError
from perfmodel.report import render_prediction
from perfmodel.serving.sweep import BANDED_COLUMNS, COLUMNS, sweep_concurrency, to_csv

ROOT = Path(__file__).resolve().parents[1]
DP_EXAMPLE = ROOT / "examples" / "sglang-dp-attention-deepseek-r1-h200.yaml"
VLLM_EXAMPLE = ROOT / "examples" / "vllm-closed-loop-llama3.1-8b-h100.yaml"

# DeepSeek-R1's MLA cache per token and layer: kv_lora_rank 512 + qk_rope_head_dim 64 values
# (its config.json), bf16, over its 61 layers (one DP rank holds every layer of its requests)
R1_KV_BYTES_PER_TOKEN = (512 + 64) * 2 * 61  # = 70,272


def _row(text: str, label: str) -> str:
    """The head-table line that starts with ``label`` (the label then two spaces or more)."""
    return next(line for line in text.splitlines() if re.match(re.escape(label) + r"\s{2,}",
                                                                line))


@pytest.fixture(scope="module")
def dp_serving():
    p = pm.predict(DP_EXAMPLE)
    return p, render_prediction(p)


# ---- 1. KV capacity under attention DP --------------------------------------------------

def test_kv_tokens_are_one_dp_ranks_and_the_instance_total_is_eight_of_them(dp_serving):
    p, text = dp_serving
    e = p.engine
    assert R1_KV_BYTES_PER_TOKEN == 70272 == e["kv_bytes_per_token"]
    rank = int(e["kv_cache_bytes"] // R1_KV_BYTES_PER_TOKEN)  # SGLang page_size 1
    assert e["kv_cache_tokens"] == rank  # the field keeps the engine's logged, per-rank figure
    assert e["attention_dp"] == 8 and e["kv_cache_tokens_per_instance"] == 8 * rank
    # the deployment admits requests against the same pool: 8 ranks x the rank's tokens, and
    # the printed max concurrent sequences is that pool over mean prompt + output (1024 + 256)
    assert p.serving["deployment"]["instances"][0]["kv_tokens"] == 8 * rank
    assert p.max_concurrent_sequences == (8 * rank) // (1024 + 256)
    assert f"max_total_num_tokens={rank}," in text  # SGLang's own line, per rank
    assert _row(text, "KV cache (engine, tokens per DP rank)").split()[7] == f"{rank:,}"
    inst = _row(text, "KV cache (engine, tokens per instance)")
    assert f"{8 * rank:,} (8 DP ranks x {rank:,})" in inst
    lo, hi = p.ranges["kv_cache_tokens"]
    assert f"(80 % range {8 * lo:,.0f} - {8 * hi:,.0f})" in inst
    assert (f"(per DP rank, as each of the 8 attention-DP ranks logs it; the instance holds "
            f"{8 * rank:,} KV tokens = 8 x {rank:,})") in text


def test_without_attention_dp_the_engine_figure_is_the_instance(tmp_path):
    p = pm.predict(VLLM_EXAMPLE)
    text = render_prediction(p)
    e = p.engine
    assert e["attention_dp"] == 1 and e["kv_cache_tokens_per_instance"] == e["kv_cache_tokens"]
    assert _row(text, "KV cache (engine, tokens per instance)").split()[6] == \
        f"{e['kv_cache_tokens']:,}"
    assert "tokens per DP rank" not in text and "per DP rank, as each" not in text


def test_the_json_keeps_kv_cache_tokens_and_adds_the_instance_field(capsys):
    wide = ROOT / "examples" / "deepseek-r1-wide-ep-gb200-nvl72.yaml"
    assert main(["predict", str(wide), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["engine"]
    rank = int(e["kv_cache_bytes"] // R1_KV_BYTES_PER_TOKEN)
    assert e["kv_cache_tokens"] == rank  # SGLang's max_total_num_tokens of one of 72 ranks
    assert e["kv_cache_tokens_per_instance"] == 72 * rank > 100_000_000  # ~135 M


# ---- 2. the serving head and breakdown say what each number is ----------------------------

def test_serving_head_rows_are_the_simulated_medians(dp_serving):
    p, text = dp_serving
    ttft = _row(text, "TTFT (median, from the send)")
    median_ms = float(re.search(r"Median TTFT \(ms\):\s+([\d.]+)", text)[1])
    assert f"{median_ms:.2f}" == f"{p.ttft_s * 1e3:.2f}" and f"{p.ttft_s * 1e3:.3f} ms" in ttft
    assert p.ttft_s == p.serving["ttft_s"]["p50"] and p.tpot_s == p.serving["tpot_s"]["p50"]
    assert _row(text, "TPOT (median)") and _row(text, "end-to-end latency (median)")
    assert "TTFT (prefill)" not in text
    z = p.serving["zero_load"]
    zero = _row(text, "zero load, one request alone (TTFT / TPOT)")
    assert f"{z['ttft_s'] * 1e3:.3f} ms / {z['tpot_s'] * 1e3:.3f} ms" in zero
    assert ("one pass at zero load, one request of 1,024 prompt / 256 output tokens (the "
            "median) on each of the 8 attention-DP groups (batch 8): the per-pass costs the "
            "simulation is built on; under the load above, a decode step is the time between "
            "tokens") in text
    assert re.search(r"^latency \(simulated requests\)\s+p50\s+p90\s+p99", text, re.M)


def test_inference_head_keeps_its_labels():
    text = render_prediction(pm.predict(ROOT / "examples" / "llama2-7b-decode-a100.yaml"))
    assert _row(text, "TTFT (prefill)") and _row(text, "TPOT") and \
        _row(text, "end-to-end latency")
    assert "one pass at zero load" not in text


def test_without_attention_dp_the_zero_load_caption_names_one_request(tmp_path):
    text = render_prediction(pm.predict(VLLM_EXAMPLE))
    assert ("one pass at zero load, one request of 1,024 prompt / 256 output tokens (the "
            "median) alone:") in text


# ---- 3. plan-serving --cv with Poisson arrivals --------------------------------------------

def test_plan_serving_refuses_cv_with_poisson_arrivals(capsys):
    args = ["plan-serving", "--model", "llama-3-8b", "--rate", "2", "--ttft-p90", "1",
            "--prompt-len", "512", "--output-len", "64", "--cv", "3"]
    assert main(args) != 0
    assert capsys.readouterr().err.strip() == (
        "perfmodel: error: --cv: sets the burstiness of gamma arrivals only; the arrival "
        "process is poisson (the default), whose gaps always have cv 1; give --arrival gamma "
        "to use --cv 3, or leave --cv out")
    assert main([*args, "--arrival", "poisson"]) != 0
    assert "poisson (given)" in capsys.readouterr().err
    with pytest.raises(SpecError, match=r"^cv=: sets the burstiness of gamma arrivals only; "
                                        r".*give arrival='gamma' to use cv=3, or leave cv= out"):
        pm.plan_serving("llama-3-8b", rate=2, ttft_p90=1, prompt_len=512, output_len=64, cv=3)


# ---- 4. sweep-concurrency on a file that is not a serving scenario -------------------------

def test_sweep_of_an_inference_file_names_the_file(tmp_path, capsys):
    path = tmp_path / "l70.yaml"  # no name:, as QA's file
    path.write_text("kind: inference\nmodel: llama-3-70b\nsystem: {device: h100-sxm5-80gb, "
                    "num_gpus: 8}\nparallelism: {tp: 8}\n"
                    "inference: {batch: 8, prompt_len: 1024, output_len: 128}\n")
    assert main(["sweep-concurrency", str(path)]) != 0
    assert capsys.readouterr().err.strip() == (
        f"perfmodel: error: a concurrency sweep needs a serving scenario (kind: serving); "
        f"{path} is kind 'inference'")
    mapping = {"kind": "inference", "model": "llama-3-8b",
               "system": {"device": "h100-sxm5-80gb"}, "inference": {"prompt_len": 8}}
    with pytest.raises(SpecError, match=r"; the scenario \(it has no name:\) is kind "):
        sweep_concurrency(mapping, [1])
    with pytest.raises(SpecError, match=r"; scenario 'x' is kind 'inference'$"):
        sweep_concurrency({**mapping, "name": "x"}, [1])


# ---- 5. a closed loop with fewer requests than clients -------------------------------------

def _closed_loop(num_requests: int):
    """A closed loop of 4 clients sending ``num_requests`` requests."""
    return pm.predict({"kind": "serving", "model": "llama-3-8b",
                       "system": {"device": "h100-sxm5-80gb"},
                       "inference": {"prompt_len": 100, "output_len": 10},
                       "serving": {"arrival": {"process": "closed", "concurrency": 4},
                                   "num_requests": num_requests}})


def test_fewer_requests_than_clients_is_warned_naming_both_fields():
    p = _closed_loop(2)
    # two requests, four clients: both requests are sent at once and no more are in flight
    assert p.serving["benchmark"]["max_concurrent_requests"] == 2
    assert ("2 request(s) to send (serving.num_requests 2), fewer than "
            "serving.arrival.concurrency (4 clients): at most 2 are ever in flight, so this "
            "measures a closed loop of 2 clients, not 4; give serving.num_requests at least "
            "serving.arrival.concurrency (benchmarks send several per client)") in p.warnings


def test_enough_requests_are_not_warned():
    p = _closed_loop(4)
    assert not any("fewer than serving.arrival.concurrency" in w for w in p.warnings)


# ---- 6. "fits" is about memory; runnability apart ------------------------------------------

LLAMACPP_SLOTS = {"kind": "inference", "model": "llama-3-70b", "engine": "llamacpp",
                  "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
                  "parallelism": {"tp": 1, "pp": 4},
                  "inference": {"batch": 32, "prompt_len": 2048, "output_len": 512,
                                "weight_dtype": "int4", "activation_dtype": "fp16",
                                "kv_dtype": "fp16"}}


def test_llamacpp_slot_limit_fits_in_memory_but_does_not_run_as_specified():
    p = pm.predict(LLAMACPP_SLOTS)
    # ~70.6 B int4 weights over 4 stages: ~9 GiB per GPU with KV and context, far below 79
    assert p.memory_per_gpu_bytes < 0.2 * p.memory_capacity_bytes
    assert p.fits is False and p.runnable is False  # the JSON fields keep their meaning
    text = render_prediction(p)
    assert _row(text, "fits").split()[1:] == ["yes"]
    assert _row(text, "runnable as specified").split(None, 3)[3] == \
        "NO (memory fits; see NOT RUNNABLE above)"
    assert "NOT RUNNABLE as specified: llamacpp: it holds 1 request(s)" in text


def test_an_engine_that_fails_to_start_does_not_fit():
    p = pm.predict({**LLAMACPP_SLOTS, "system": {"device": "rtx-4090", "num_gpus": 1},
                    "parallelism": {"tp": 1, "pp": 1},
                    "inference": {**LLAMACPP_SLOTS["inference"], "batch": 1}})
    assert p.engine["starts"] is False  # 35 GiB of int4 weights on a 24 GiB card
    text = render_prediction(p)
    assert _row(text, "fits").split()[1:] == ["NO"]
    assert "runnable as specified" not in text


# ---- 7. sweep-concurrency --csv carries the bands ------------------------------------------

def test_sweep_csv_has_each_bands_ends(tmp_path):
    res = sweep_concurrency(VLLM_EXAMPLE, [1, 4], num_requests=20)
    rows = list(csv.DictReader(io.StringIO(to_csv(res))))
    assert len(rows) == 2
    head = list(rows[0])
    assert head[:len(COLUMNS)] == [h for _, h in COLUMNS]
    assert "req_per_s_lo" in head and "median_tpot_ms_hi" in head
    assert "concurrency_lo" not in head and "preemptions_lo" not in head
    for row, point in zip(rows, res["points"], strict=True):
        for key, h in BANDED_COLUMNS:
            lo, hi = point["ranges"][key]
            assert float(row[f"{h}_lo"]) == pytest.approx(lo)
            assert float(row[f"{h}_hi"]) == pytest.approx(hi)
            assert lo <= float(row[h]) <= hi


# ---- 8. llama.cpp's split modes -------------------------------------------------------------

def test_llamacpp_tensor_parallel_message_names_what_is_modelled():
    with pytest.raises(SpecError) as err:
        pm.predict({**LLAMACPP_SLOTS, "parallelism": {"tp": 4},
                    "inference": {**LLAMACPP_SLOTS["inference"], "batch": 1}})
    assert str(err.value) == (
        "parallelism.tp: tp = 4 with engine llamacpp is not modelled: perfmodel models the "
        "llama.cpp default --split-mode layer (whole layers and their KV on each GPU, a "
        "pipeline split); set tp: 1 and pp to the GPUs of one model copy (layers split by free "
        "memory unless parallelism.pipeline_split gives --tensor-split). The tensor-parallel "
        "split of llama.cpp, --split-mode row (the weight rows of each layer across the GPUs, "
        "intermediate results and KV on --main-gpu), is not modelled")
    assert "has no tensor parallelism" not in str(err.value)
