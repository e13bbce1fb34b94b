"""The MoE fit reads each measured row against the experts its harness's routing touched.

aiconfigurator-core 0.12.0's "balanced" rows route with collector/helper.py ``balanced_logits``
(ai-dynamo/aiconfigurator at dec5f4cd2 / a77804e36 / e23be5a79): stride s = ceil(E / k), token t
takes experts (t + j s) mod E when T >= s, else int((t s / T + j s) mod E), so a row touches
min(E, T k) experts when k divides E, not the uniform expectation E (1 - (1 - k/E)^T) the core
charges real routing. Hand numbers below; the H200 row is read from the copied table."""

from __future__ import annotations

import pytest

from perfmodel.calibrate import converters as C
from perfmodel.calibrate import fit as F
from perfmodel.calibrate.fit.moe import (
    balanced_logits_experts,
    fit_records,
    to_uniform_routing,
)
from perfmodel.paths import data_dir
from perfmodel.roofline import Roofline
from perfmodel.specs import registry
from perfmodel.specs.registry import default_profile

SOURCES = data_dir("calibration") / "sources" / "measured" / "aiconfigurator/systems/data"
H200_MOE = SOURCES / "h200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet"
TRT_SRC = "aiconfigurator/systems/data/h200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet"


def rec(tokens: int, hidden: int = 6144, inter: int = 3072, experts: int = 128, topk: int = 4,
        ep: int = 1, t: float = 1e-3, source: str = TRT_SRC,
        kernel: str | None = "moe_torch_flow_cutlass") -> dict:
    p = {"dtype": "bf16", "tokens": tokens, "hidden": hidden, "inter": inter,
         "experts": experts, "topk": topk, "tp": 1, "ep": ep, "gated": True}
    return {"bench": "moe", "key": str(p), "params": p, "time_s": t,
            "stats": {"source": source, "kernel_source": kernel}, "status": "ok", "error": None}


def test_balanced_logits_expert_counts_by_hand():
    # E 128, top-4: stride 32. 16 tokens (< 32): int(2 t) + 32 j, t < 16 -> the 16 even numbers
    # of [0, 32) in each of 4 strides = 64 experts; 32 and 64 tokens (>= 32): all 128.
    assert balanced_logits_experts(128, 4, 16) == 64
    assert balanced_logits_experts(128, 4, 32) == 128
    assert balanced_logits_experts(128, 4, 64) == 128
    assert balanced_logits_experts(128, 4, 1) == 4
    # rank 0 of EP 8 holds experts [0, 16): the even ones, 8
    assert balanced_logits_experts(128, 4, 16, 8) == 8
    # k not dividing E: E 128, top-6, stride 22; 11 tokens take 2 t + 22 j (t < 11, j < 6):
    # 66 slots, of which 2 t + 110 wraps past 127 for t = 9, 10 onto experts 0 and 2 (j = 0): 64
    assert balanced_logits_experts(128, 6, 11) == 64
    # GLM-5-like E 160, top-8, stride 20: 4 tokens take 5 t + 20 j: 32 distinct
    assert balanced_logits_experts(160, 8, 4) == 32


def test_h200_row_efficiency_by_hand():
    """The H200 TensorRT-LLM bf16 rows of E 128, top-4, hidden 6144, inter 3072 (TP 1, EP 1):
    1.714395 ms at 16 tokens, 3.321653 at 32, 3.335749 at 64: time in step with the balanced
    count (64, 128, 128 experts), not with the uniform one (51.0, 81.7, 111.2)."""
    pytest.importorskip("pyarrow")
    rows = {r["params"]["tokens"]: r for r in C.aic_moe(H200_MOE, dtypes=("bfloat16",))
            if (r["params"]["hidden"], r["params"]["inter"], r["params"]["experts"],
                r["params"]["topk"], r["params"]["tp"], r["params"]["ep"])
            == (6144, 3072, 128, 4, 1, 1)}
    r = rows[16]
    assert r["time_s"] == pytest.approx(1.714395e-3)
    assert rows[32]["time_s"] / r["time_s"] == pytest.approx(128 / 64, rel=0.05)
    uniform = 128 * (1 - (1 - 4 / 128) ** 16)  # 50.98
    assert uniform == pytest.approx(50.981, abs=1e-3)
    geo = F.moe_geometry([r])
    assert geo["groups"][0] == 64 and geo["m"][0] == pytest.approx(1.0)
    assert F.moe_geometry([r], routed=False)["groups"][0] == pytest.approx(uniform)
    # bytes by hand, bf16: one expert's up (6144 x 6144) and down (6144 x 3072) weights,
    # 113,246,208 B; activations of 64 rows: up in 64 x 6144 and out 64 x 6144, down in
    # 64 x 3072 and out 64 x 6144, 2 B each = 2,752,512 B. Memory-bound at 4.8 TB/s
    # (3.2 GFLOP at 989 TFLOP/s is 3.2 us).
    expert, act, bw = 113_246_208, 2_752_512, 4.8e12
    bound_c, bound_u = (64 * expert + act) / bw, (uniform * expert + act) / bw
    assert bound_c == pytest.approx(1.5105e-3, rel=1e-3)
    h200 = registry.get_device("h200-sxm-141gb")
    base = default_profile().model_copy(update={"kernel_overhead_s": 2.321e-6})
    unit = Roofline(h200, F.unit_profile(base))
    assert F.moe_times([r], "bf16", unit)[0] == pytest.approx(bound_c, rel=0.01)
    assert F.moe_times([r], "bf16", unit, routed=False)[0] == pytest.approx(bound_u, rel=0.01)
    # the efficiency the fit derives (two calls' fixed time 2 x (2.321 + 4.139) us, the H200
    # profile's kernel and bf16 MoE overheads): 0.888 at the 64 experts the row read, where the
    # uniform count would have made it 0.707 (x 1.255 too low)
    fixed = 2 * (2.321e-6 + 4.139e-6)
    eff_c, eff_u = bound_c / (r["time_s"] - fixed), bound_u / (r["time_s"] - fixed)
    assert eff_c == pytest.approx(0.888, abs=0.002) and eff_u == pytest.approx(0.707, abs=0.002)
    # the measured curve stands for uniform routing at that efficiency:
    # t' = fixed + (t - fixed) x bound_u / bound_c = 12.92 us + 1701.5 us x 0.7967 = 1.3684 ms
    fitted = base.model_copy(update={"moe_overhead_s": {"bf16": 4.139e-6}})
    moved = to_uniform_routing([r], [r["time_s"]], "bf16", h200, fitted, "bf16")[0]
    assert moved == pytest.approx(fixed + (r["time_s"] - fixed) * bound_u / bound_c, rel=0.01)
    assert moved == pytest.approx(1.3684e-3, rel=0.002)


def test_uniform_and_undetermined_routing():
    # a record naming no timed region (and aiter's tuner: i.i.d. scores) keeps the uniform
    # expectation
    plain = rec(16, kernel=None, source="")
    assert F.moe_geometry([plain])["groups"][0] == pytest.approx(128 * (1 - (1 - 4 / 128) ** 16))
    amd = rec(16, kernel=None, source="")
    amd["stats"]["timed"] = "aiter_tuner"
    assert F.moe_geometry([amd])["groups"][0] == pytest.approx(128 * (1 - (1 - 4 / 128) ** 16))
    # DeepSeek-V3 experts: group-limited routing in the vLLM 0.24.0 / SGLang 0.5.14 collectors
    # ties all 8 groups on balanced logits (left out); TensorRT-LLM's and SGLang 0.5.10's plain
    # top-k rows of that shape stay, at 8 x 16 = 128 experts for 16 tokens (stride 32)
    ds = {"hidden": 7168, "inter": 2048, "experts": 256, "topk": 8}
    sg14 = rec(16, **ds, source="aiconfigurator/systems/data/h200_sxm/moe/sglang/0.5.14/"
               "moe_perf.parquet", kernel="sglang_fused_moe_triton")
    vl = rec(16, **ds, source="aiconfigurator/systems/data/h200_sxm/moe/vllm/0.24.0/"
             "moe_perf.parquet", kernel="vllm_fp8moe_triton_tritonexperts")
    sg10 = rec(16, **ds, source="aiconfigurator/systems/data/h200_sxm/moe/sglang/0.5.10/"
               "moe_perf.parquet", kernel="sglang_marlin_moe")
    trt = rec(16, **ds)
    assert fit_records([sg14, vl, sg10, trt]) == [sg10, trt]
    assert F.moe_geometry([trt])["groups"][0] == 128
