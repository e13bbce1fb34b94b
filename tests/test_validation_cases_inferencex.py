"""InferenceX-sourced MoE serving cases (validation/inference/moe_serving*.yaml) are described as
InferenceX ran them: its benchmarks/benchmark_lib.sh run_benchmark_serving calls
utils/bench_serving/benchmark_serving.py with --num-prompts 10 x CONC --max-concurrency CONC
--random-range-ratio 0.8 (RANDOM_RANGE_RATIO, .github/workflows/benchmark-tmpl.yml), and
sample_random_requests draws every length with np.random.randint(int(L x 0.8), L + 1)
(SemiAnalysisAI/InferenceX at 962bd4c3, f11449ec, claude/issue-828-20260301-0603). The same
measurement is counted once: issue #870's H200 TPOT rows live in serving_closed_loop.yaml."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
INF = ROOT / "validation" / "inference"


def _cases(name: str) -> list[dict]:
    return yaml.safe_load((INF / name).read_text())["cases"]


def _inferencex(cases: list[dict]) -> list[dict]:
    return [c for c in cases if c["id"].startswith("IX")]


def test_inferencex_cases_are_closed_loops_with_the_clients_requests():
    cases = _inferencex(_cases("moe_serving.yaml")) + _inferencex(_cases("moe_serving_blackwell.yaml"))
    assert len(cases) == 11 + 32  # IX828 x 7, IX1053 x 4; IX870 B200 x 8, IXBLOG x 24
    for c in cases:
        sc = c["scenario"]
        assert sc["kind"] == "serving", c["id"]
        srv = sc["serving"]
        conc = srv["arrival"]["concurrency"]
        assert srv["arrival"]["process"] == "closed"
        assert srv["num_requests"] == 10 * conc, c["id"]
        # benchmark_lib.sh passes --num-warmups 2 x CONC (InferenceX d053ae24 on); they run as a
        # separate phase before the measured run
        assert srv["warmup_requests"] == 2 * conc, c["id"]
        isl = sc["inference"]["prompt_len"]
        osl = sc["inference"]["output_len"]
        assert srv["prompt_len"] == {"kind": "uniform", "min": int(isl * 0.8), "max": isl}
        assert srv["output_len"] == {"kind": "uniform", "min": int(osl * 0.8), "max": osl}
        assert c["metric"] in ("mean_tpot_s", "median_tpot_s", "mean_ttft_s"), c["id"]


def test_inferencex_1k1k_lengths_by_hand():
    """1024 x 0.8 = 819.2 -> int 819; both ends included (randint's upper bound is L + 1)."""
    c = next(c for c in _cases("moe_serving.yaml") if c["id"] == "IX1053-GPTOSS120B-MI300X-VLLM-TP1-C256")
    srv = c["scenario"]["serving"]
    assert (srv["prompt_len"]["min"], srv["prompt_len"]["max"]) == (819, 1024)
    assert srv["num_requests"] == 2560
    assert c["metric"] == "median_tpot_s"  # the PR's table prints Median TPOT


def test_issue_870_h200_tpot_counted_once():
    moe_ids = {c["id"] for c in _cases("moe_serving.yaml")}
    assert not any(i.startswith("IX870-DSR1-FP8-H200") for i in moe_ids)
    closed = {c["id"]: c for c in _cases("serving_closed_loop.yaml")}
    tpot = {i: c["measured"]["value"] for i, c in closed.items()
            if i.startswith("infx870_") and i.endswith("_tpot")}
    assert sorted(tpot.values()) == [12.8, 17.2, 25.6, 34.6]
