"""serving.warmup_requests as the benchmark clients run them (QA 2026-12-03 (b) item 9).

``vllm bench serve --num-prompts N --num-warmups W`` (vllm-project/vllm
vllm/benchmarks/serve.py at def9ce85, ``benchmark``): W warm-up tasks under the same
semaphore, awaited with ``asyncio.gather`` ("Warmup run completed."), then the main run over
all N input requests; calculate_metrics covers those N. So N = 100, W = 10 prints
"Successful requests: 100", not 90. Every client on file says ``warmup: separate_phase``.
"""

from __future__ import annotations

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.serving.clients import client_ids, load_client
from perfmodel.serving.workload import build_workload

SCENARIO = {
    "kind": "serving", "model": "llama-3.1-8b", "engine": "vllm",
    "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
    "inference": {"prompt_len": 1024, "output_len": 256},
    "serving": {"arrival": {"process": "closed", "concurrency": 8}, "num_requests": 100,
                "warmup_requests": 10,
                "prompt_len": {"kind": "uniform", "min": 512, "max": 1536},
                "output_len": {"kind": "uniform", "min": 128, "max": 384}},
}


def test_every_client_runs_warmups_as_a_phase_of_their_own():
    assert {load_client(c).warmup for c in client_ids()} == {"separate_phase"}


def test_workload_measures_all_num_requests():
    sc = pm.as_scenario(SCENARIO)
    wl = build_workload(sc.serving, None, 1024, 256)
    assert len(wl) == 100 and wl.warmup == 0 and wl.warmup_phase == 10


def test_vllm_block_counts_100_successful_with_10_warmups(tmp_path, capsys):
    import json

    path = tmp_path / "cl.yaml"
    path.write_text(json.dumps(SCENARIO))
    assert main(["predict", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Successful requests:                     100" in out
    assert "Warm-up requests (before, extra):        10" in out


def test_warmups_do_not_change_the_measured_run():
    """The phase is awaited, so the measured run starts on an idle server: the same figures
    as without warm-ups (the model keeps no state across the phases)."""
    warm = pm.predict(pm.as_scenario(SCENARIO)).serving["benchmark"]
    cold_sc = {**SCENARIO, "serving": {**SCENARIO["serving"], "warmup_requests": 0}}
    cold = pm.predict(pm.as_scenario(cold_sc)).serving["benchmark"]
    assert warm["completed"] == cold["completed"] == 100
    assert warm["mean_ttft_ms"] == cold["mean_ttft_ms"]
    assert warm["duration"] == cold["duration"]
