"""EPLB's redundant experts (``parallelism.redundant_experts``; QA 1203c finding 1), the
decode-step breakdown's contexts (finding 9) and the decode-only rate (finding 3), against
hand calculations.

One rule, ``ops.experts_per_gpu``: a GPU holds (E + R) / ep routed experts (DeepSeek-V3 report
arXiv 2412.19437 Sec. 3.4 "redundant experts"; SGLang ``--ep-num-redundant-experts``), under
every engine's weights, and the grouped GEMM's local experts and routed-expert bytes are
those copies that receive a token (each logical expert's tokens spread uniformly over its
copies).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import ops as O
from perfmodel.api import predict

ROOT = Path(__file__).resolve().parents[1]
R1 = str(ROOT / "tests/data/hf_configs/aiconfigurator-0.12.0/deepseek-ai--DeepSeek-R1_config.json")
GIB = 2.0**30
# one DeepSeek-R1 routed expert: gate, up (7168 x 2048 each) and down (2048 x 7168), fp8 block
# scaled: 1 byte per weight and one fp32 scale per 128 x 128 block
EXPERT_PARAMS = 3 * 7168 * 2048
EXPERT_FP8_BLOCK_BYTES = EXPERT_PARAMS + 3 * (7168 // 128) * (2048 // 128) * 4
MOE_LAYERS = 58


def h200_ep8(redundant=0, engine="sglang", batch=256, calibration=None):
    """examples/deepseek-r1-wide-ep-h200.yaml with ``redundant`` EPLB experts."""
    sc = {"kind": "inference", "model": R1,
          "system": {"device": "h200-sxm-141gb", "num_gpus": 8},
          "parallelism": {"tp": 1, "attention_dp": 8, "ep": 8, "redundant_experts": redundant},
          "engine": engine,
          "inference": {"batch": batch, "prompt_len": 1024, "output_len": 1024,
                        "weight_dtype": "fp8_block", "activation_dtype": "fp8",
                        "kv_dtype": "bf16", "prefill_chunk_tokens": 16384}}
    return predict(sc, calibration)


def weights(p) -> float:
    """Weights per GPU: the engine's own category, else the generic memory's."""
    return (p.engine or {}).get("breakdown", {}).get("weights") or p.breakdown["memory"]["weights"]


def test_experts_per_gpu_by_hand():
    assert O.experts_per_gpu(256, 64, 8) == 40.0  # (256 + 64) / 8
    assert O.experts_per_gpu(256, 32, 72) == 4.0  # the GB200 NVL72 example
    assert O.expert_shards(256, 0, 8) == 8
    assert O.expert_shards(256, 64, 8) == pytest.approx(256 / 40)  # E / experts per GPU


def test_local_active_experts_by_hand():
    # one token: its 8 experts land on 8 of the 320 copies, 1 per rank on average
    assert O.local_active_experts(256, 64, 8, 1, 8) == pytest.approx(320 * (8 / 320) / 8)
    t = 16  # 16 tokens: 320 (1 - (1 - 8/320)^16) / 8 copies touched per rank
    assert O.local_active_experts(256, 64, 8, t, 8) == pytest.approx(
        320 * (1 - (1 - 8 / 320) ** t) / 8)
    assert O.local_active_experts(256, 64, 8, 1e6, 8) == pytest.approx(40.0)  # full coverage
    assert O.local_active_experts(256, 0, 8, t, 8) == pytest.approx(
        O.active_experts(256, 8, t) / 8)  # no redundancy: unchanged


@pytest.mark.parametrize("engine", ["sglang", "vllm", "trtllm", "generic"])
def test_redundant_weights_every_engine(engine):
    # QA's hand check: 8 more experts per GPU x 58 layers x 44.04 M fp8 weights (+ block scales)
    plain, extra = h200_ep8(0, engine), h200_ep8(64, engine)
    added = 8 * MOE_LAYERS * EXPERT_FP8_BLOCK_BYTES
    assert weights(extra) - weights(plain) == pytest.approx(added, rel=1e-9)
    assert added / GIB == pytest.approx(19.03, abs=0.01)


def test_redundant_experts_read_and_slow_decode_at_full_coverage():
    # batch 256: all 256 tokens route to every rank's copies, 256 x 8 draws over 320 copies
    # touch 99.8 % of them (100 % of 256 without redundancy): about +25 % bytes read
    plain, extra = h200_ep8(0), h200_ep8(64)
    read = [p.breakdown["moe"]["decode_step"]["routed_expert_weight_bytes_per_gpu"]
            for p in (plain, extra)]
    cover = [O.local_active_experts(256, r, 8, 256, 8) for r in (0, 64)]
    for got, c in zip(read, cover, strict=True):
        assert got == pytest.approx(c * MOE_LAYERS * EXPERT_FP8_BLOCK_BYTES, rel=1e-9)
    assert read[1] / read[0] == pytest.approx(40 / 32, rel=2e-3)  # +25 %
    assert extra.tpot_s > plain.tpot_s
    assert extra.kv_cache_bytes_per_sequence == plain.kv_cache_bytes_per_sequence
    assert extra.max_concurrent_sequences < plain.max_concurrent_sequences


def test_gb200_example_experts_and_decode_rate():
    p = predict(str(ROOT / "examples/deepseek-r1-wide-ep-gb200-nvl72.yaml"))
    moe = p.breakdown["moe"]["decode_step"]
    # 4 experts per GPU ((256 + 32) / 72), all touched at 256 sequences per GPU
    assert moe["routed_expert_weight_bytes_per_gpu"] == pytest.approx(
        4 * MOE_LAYERS * EXPERT_FP8_BLOCK_BYTES, rel=1e-6)
    assert moe["routed_expert_weight_bytes_per_gpu"] / GIB == pytest.approx(9.52, abs=0.01)
    # the embedding and LM head stay bf16 (formats.KEPT_16BIT; DeepSeek-R1's checkpoint keeps
    # them so): 2 x 129,280 x 7,168 x (2 - 1 - 4/16384) B = 1.73 GiB above all-fp8_block 25.56
    assert weights(p) / GIB == pytest.approx(25.56 + 2 * 129280 * 7168 * (1 - 4 / 16384) / GIB,
                                             abs=0.01)
    assert weights(p) / GIB == pytest.approx(27.29, abs=0.01)
    # the decode steps alone: 18,432 sequences per TPOT, over 72 GPUs
    assert p.decode_tokens_per_s == pytest.approx(18_432 / p.tpot_s, rel=1e-12)
    assert p.decode_tokens_per_s_per_gpu == pytest.approx(18_432 / p.tpot_s / 72, rel=1e-12)
    # the headline rate includes the whole batch's prefill: b o / (TTFT + (o - 1) TPOT)
    assert p.tokens_per_s == pytest.approx(
        18_432 * 100 / (p.ttft_s + 99 * p.tpot_s), rel=1e-9)
    assert p.tokens_per_s < p.decode_tokens_per_s / 5
    data = p.to_json_dict()
    assert {"decode_tokens_per_s", "decode_tokens_per_s_per_gpu"} <= set(data)


def test_decode_step_breakdown_adds_up_to_tpot():
    # examples/deepseek-r1-wide-ep-h200.yaml: the breakdown is the mean over TPOT's contexts
    p = predict(str(ROOT / "examples/deepseek-r1-wide-ep-h200.yaml"))
    step = p.breakdown["decode_step"]
    assert step["total_s"] == pytest.approx(p.tpot_s, rel=1e-12)
    assert sum(v for k, v in step.items() if k != "total_s") == pytest.approx(
        step["total_s"], rel=1e-12)
    first, last, mean = p.decode_context_tokens
    # 8 bin midpoints of the 1023 generated positions after the 1024-token prompt, + 1
    assert first == pytest.approx(1024 + 0.5 / 8 * 1023 + 1)
    assert last == pytest.approx(1024 + 7.5 / 8 * 1023 + 1)
    assert mean == pytest.approx(1024 + 1023 / 2 + 1)
    assert p.decode_tokens_per_s == pytest.approx(256 / p.tpot_s, rel=1e-12)
    from perfmodel.report import render_prediction

    text = render_prediction(p)
    assert "decode step: mean over the contexts TPOT averages (1,089-1,984 tokens" in text
    assert "decode tokens/s (system)" in text


@settings(max_examples=12, deadline=None)
@given(ep=st.sampled_from([8, 16, 32]), extra=st.integers(1, 4),
       engine=st.sampled_from(["sglang", "generic"]))
def test_redundant_experts_never_lower_weights_nor_speed_decode(ep, extra, engine):
    # redundant copies: a multiple of ep so (256 + R) / ep stays whole; batch 512 per GPU's
    # share covers every local copy. Default efficiencies: the rule's own monotonicity (a
    # measured grouped-GEMM table may interpolate a faster efficiency at another group count)
    red = extra * ep
    gpus = ep

    def run(r):
        sc = {"kind": "inference", "model": R1,
              "system": {"device": "h200-sxm-141gb", "num_gpus": gpus},
              "parallelism": {"tp": 1, "attention_dp": gpus, "ep": ep, "redundant_experts": r},
              "engine": engine,
              "inference": {"batch": 64 * gpus, "prompt_len": 256, "output_len": 16,
                            "weight_dtype": "fp8_block", "activation_dtype": "fp8",
                            "kv_dtype": "bf16"}}
        if engine == "sglang":
            sc["engine"] = {"name": "sglang", "mem_fraction_static": 0.95}
        return predict(sc, str(ROOT / "calibration/default.json"))

    plain, more = run(0), run(red)
    assert weights(more) > weights(plain)
    assert more.memory_per_gpu_bytes >= plain.memory_per_gpu_bytes - 1.0
    assert more.breakdown["moe"]["decode_step"]["routed_expert_weight_bytes_per_gpu"] > \
        plain.breakdown["moe"]["decode_step"]["routed_expert_weight_bytes_per_gpu"]
    assert more.tpot_s >= plain.tpot_s
