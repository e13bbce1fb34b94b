"""A request's end-to-end latency includes its first token, so no end of the E2E band may lie
below the TTFT band's (uncertainty._e2e_at_least_ttft): the two bands come from different
validation groups, and a mostly-prefill request (a long prompt, few output tokens) showed an
E2E band starting below the TTFT one (QA, 2026-12-05)."""

import pytest

from perfmodel.api import predict


def _scenario(kind: str) -> dict:
    sc = {"kind": kind, "name": "mostly-prefill", "model": "llama-3.1-8b", "engine": "vllm",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 120000, "output_len": 64, "weight_dtype": "bf16",
                        "kv_dtype": "bf16"}}
    if kind == "serving":
        sc["serving"] = {"arrival": {"process": "closed", "concurrency": 1},
                         "num_requests": 2, "seed": 0}
    return sc


@pytest.mark.parametrize("kind", ["inference", "serving"])
def test_e2e_band_never_below_ttft_band(kind):
    p = predict(_scenario(kind))
    ttft, e2e = p.ranges["ttft_s"], p.ranges["e2e_latency_s"]
    assert e2e[0] >= ttft[0] and e2e[1] >= ttft[1]
    assert e2e[0] <= p.e2e_latency_s <= e2e[1]
    if kind == "serving":
        for q in (50, 90, 99):
            first, whole = p.serving_ranges[f"ttft_p{q}_s"], p.serving_ranges[f"e2e_p{q}_s"]
            assert whole[0] >= first[0] and whole[1] >= first[1]
