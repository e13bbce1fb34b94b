"""The measured MoE rows' timed region (calibration/moe_kernels.yaml ``timed_regions``) and the
fit taking the core's own top-k / activation / combine out of them (``fit.moe.net_times``), so
the core, which charges those as operators of their own, does not count them twice.

Hand calculation on one row: Mixtral-8x7B's MoE layer on one H200 (hidden 4096, 8 experts of
14336, top-2, no TP / EP), 128 tokens, bf16: 0.717979 ms in aiconfigurator-core 0.12.0's
TensorRT-LLM 1.3.0rc20 table (kernel_source moe_torch_flow_cutlass). The collector
(ai-dynamo/aiconfigurator collector/trtllm/collect_moe.py at dec5f4cd2, ``run_forward_pass``)
times ``moe.forward(hidden_states, logits)`` on precomputed logits: top-k routing of the 128
tokens, both grouped GEMMs with the SwiGLU, and the finalize (top-k weighted sum into 128 rows);
the gate GEMM is not in the call. So the core's moe.topk, moe.expert.act and moe.combine are in
the row, moe.router is not. On a profile with a 3 us kernel overhead and the default memory
efficiency 0.88 of the H200's 4.8 TB/s (all three memory-bound, bf16 = 2 B):

* top-k: 128 x 8 logits in, 128 x 2 out: 2 x (1024 + 256) = 2,560 B
* SwiGLU: 256 rows (128 x 2) x 2 x 14336 in, 256 x 14336 out: 2 x 256 x 43008 = 22,020,096 B
* combine: 256 x 4096 in, 128 x 4096 out: 2 x 384 x 4096 = 3,145,728 B

25,168,384 B / (0.88 x 4.8e12 B/s) = 5.958 us, plus 3 x 3 us: 14.958 us taken out, 703.02 us
left to the two grouped GEMMs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.calibrate import converters_amd as CA
from perfmodel.calibrate import fit as F
from perfmodel.calibrate.fit.moe import net_times, part_times
from perfmodel.calibrate.moe_kernels import kernel_file, kernel_labels, timed_parts
from perfmodel.paths import data_dir
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.registry import default_profile

SOURCES = data_dir("calibration") / "sources" / "measured"
AIC = SOURCES / "aiconfigurator/systems/data"
H200 = registry.get_device("h200-sxm-141gb")
H100 = registry.get_device("h100-sxm5-80gb")
OVERHEAD = 3e-6
HAND_BYTES = 2 * (1024 + 256) + 2 * 256 * 43008 + 2 * 384 * 4096


def _mixtral_row():
    recs = C.aic_moe(AIC / "h200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet", dtypes=("bfloat16",))
    (r,) = [r for r in recs if r["params"] == {
        "dtype": "bf16", "tokens": 128, "hidden": 4096, "inter": 14336, "experts": 8,
        "topk": 2, "tp": 1, "ep": 1, "gated": True}]
    return r


def test_hand_parts_of_one_row():
    pytest.importorskip("pyarrow")
    r = _mixtral_row()
    assert r["time_s"] == pytest.approx(0.717979e-3)
    assert r["stats"]["kernel_source"] == "moe_torch_flow_cutlass"
    assert timed_parts(r) == ("topk", "act", "combine")  # the collector's region, no router
    assert HAND_BYTES == 25_168_384
    prof = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    roof = Roofline(H200, prof)
    hand = 3 * OVERHEAD + HAND_BYTES / (0.88 * 4.8e12)
    assert hand == pytest.approx(14.958e-6, rel=1e-4)
    assert part_times([r], "bf16", roof)[0] == pytest.approx(hand, rel=1e-6)
    net, parts = net_times([r], "bf16", roof)
    assert parts[0] == pytest.approx(hand, rel=1e-6)
    assert net[0] == pytest.approx(703.02e-6, rel=1e-5)


def test_every_measured_source_states_its_region():
    """Every kernel label of the MoE tables names a timed region; the aiconfigurator
    collectors time top-k, activation and combine (module docstring; vLLM: moe_module(hidden,
    router_logits); SGLang: moe_layer(hidden, topk_layer(hidden, logits)) or select_experts +
    fused_moe), aiter's tuner the two stages only (routing made before timing); no harness
    times the router GEMM."""
    f = kernel_file("moe")
    assert all(label.timed for label in f.labels.values())
    assert all("router" not in region.parts for region in f.timed_regions.values())
    for ks in ("moe_torch_flow_cutlass", "deepgemm", "vllm_fp8moe_triton_tritonexperts",
               "sglang_flashinfer_trtllm_moe", "sglang_marlin_moe"):
        assert ks in kernel_labels("moe")
        assert timed_parts({"stats": {"kernel_source": ks}}) == ("topk", "act", "combine")
    recs = CA.aiter_fmoe(SOURCES / "aiter/ca781d8197cc/aiter/configs/model_configs/"
                         "qwen3_235b_bf16_tuned_fmoe.csv", cu_num=256)
    assert recs and {timed_parts(r) for r in recs} == {("act", "combine")}
    # a record naming no harness (a synthetic or user table) is taken as the GEMMs alone
    assert timed_parts({"stats": {}}) == ()


def _rec(params: dict, t: float, kernel_source: str | None) -> dict:
    stats = {"kernel_source": kernel_source} if kernel_source else {}
    return {"bench": "moe", "key": json.dumps(params, sort_keys=True), "params": params,
            "time_s": float(t), "stats": stats, "status": "ok", "error": None}


def test_fit_takes_the_parts_out_and_the_core_adds_them_back():
    """Synthetic rows timed as a TRT-LLM row is (grouped GEMMs at a known efficiency + the
    kernel overhead, plus top-k, SwiGLU and combine by hand at the default 0.88 x 3.35 TB/s):
    the fit recovers the GEMMs' efficiency (parts out), and the core's layer (the table's two
    calls + its own moe.topk / moe.expert.act / moe.combine) gives back the row."""
    base = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    unit = Roofline(H100, F.unit_profile(base))

    def eff(m, groups):
        return 0.2 + 0.5 * np.log2(m) / 10 + 0.05 * np.log2(groups) / 6

    recs, hands = [], []
    for tokens in (64, 96, 128, 192, 256, 384, 512, 768, 1024):
        for ep in (1, 2, 4, 8):
            p = {"dtype": "bf16", "tokens": tokens, "hidden": 4096, "inter": 2048,
                 "experts": 64, "topk": 8, "tp": 1, "ep": ep, "gated": True}
            geo = F.moe_geometry([_rec(p, 1.0, "moe_torch_flow_cutlass")])
            bound = float(F.moe_times([_rec(p, 1.0, "moe_torch_flow_cutlass")], "bf16", unit)[0])
            rows = tokens * 8 / ep
            nbytes = 2 * (tokens * 64 + tokens * 8) + 2 * rows * (4096 + 2048) \
                + 2 * (rows + tokens) * 4096
            hand = 3 * OVERHEAD + nbytes / (0.88 * 3.35e12)
            t = bound / eff(geo["m"][0], geo["groups"][0]) + 2 * OVERHEAD + hand
            recs.append(_rec(p, t, "moe_torch_flow_cutlass"))
            hands.append(hand)
    (table,) = F.moe_tables(recs, H100, base)
    assert np.allclose(table.eff, eff(table.coords[:, 0], table.coords[:, 1]), rtol=1e-6)
    assert np.allclose(table.measured, [r["time_s"] for r in recs], rtol=1e-9)
    prof = table.install(base, table.fit(), np.arange(len(table)))
    # the core's own separate operators for the EP 1, 1024-token layer, as layer_forward_ops
    # builds them, plus the table's two calls
    i = next(k for k, r in enumerate(recs) if r["params"]["tokens"] == 1024
             and r["params"]["ep"] == 1)
    prec = F.precision_for("bf16")
    roof = Roofline(H100, prof)
    sep = [O.moe_topk_op(1024, 64, 8, prec),
           O.activation_op("moe.expert.act", 8192 * 4096, 8192 * 2048, prec, "silu", True),
           O.moe_combine_op(8192, 1024, 4096, prec)]
    own = sum(float(t) for t in op_times(sep, roof).time)
    assert own == pytest.approx(hands[i], rel=1e-6)
    layer = float(F.moe_times([recs[i]], "bf16", roof)[0]) + own
    assert layer == pytest.approx(recs[i]["time_s"], rel=0.02)
