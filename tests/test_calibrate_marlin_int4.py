"""SGLang 0.5.10's int4 W4A16 Marlin MoE rows in the W4A16 MXFP4 Marlin table of H100 / H200
(calibration/references.yaml: moe.w4a16_mxfp4@marlin, pooled with vLLM 0.24.0's Kimi-K3 rows).

Independent numbers: the copied aiconfigurator-core 0.12.0 Parquet rows themselves (read here with
pyarrow, not through the converter) and the bytes per weight of the two formats by hand: int4
with one bf16 scale per 128 weights, 0.5 + 2/128 = 0.515625 B (the collector's group 128, bf16
scales: ai-dynamo/aiconfigurator cb4d907c7 collector/sglang/collect_moe.py); MXFP4, 4 bits + one
8-bit scale per 32, 0.53125 B (OCP MX v1.0). No row was measured at gpt-oss's own expert shape
(2880 x 2880, 128 experts, top-4): the rows nearest it are the 128-expert shapes (hidden 2048 /
4096), checked here against the table's grid (the core's read where no measured curve exists,
which is what gpt-oss gets), as are the Kimi-K3 rows the table was fitted on before. A row's time
holds the top-k, activation and combine too (calibration/moe_kernels.yaml timed_regions), which
the core charges as operators of its own: the core's layer is the grid's two grouped GEMMs plus
those (fit.moe.part_times)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from perfmodel.calibrate import converters as C
from perfmodel.calibrate.fit.moe import as_format_table, moe_precision, moe_times, part_times
from perfmodel.calibrate.reference import sources_dir
from perfmodel.roofline import Roofline
from perfmodel.specs import registry

KEY = "w4a16_mxfp4@marlin"
DEVICES = {"h100-sxm5-80gb": "h100_sxm", "h200-sxm-141gb": "h200_sxm"}
SGLANG = "aiconfigurator/systems/data/{}/moe/sglang/0.5.10/moe_perf.parquet"
VLLM = "aiconfigurator/systems/data/{}/moe/vllm/0.24.0/moe_perf.parquet"
KIMI = "vllm_compressedtensorsw4a4mxfp4moe_marlin_marlinexperts_situ_as_silu"
DECODE_TOKENS = (1, 2, 4, 8, 16, 32, 64)


def _rows(path: str, kernel_source: str, dtype: str, shape: tuple[int, int, int, int]
          ) -> list[dict]:
    """Balanced-routing rows at tp 1, ep 1 of one (hidden, inter, experts, topk) shape."""
    t = pq.read_table(sources_dir() / path).to_pylist()
    return [r for r in t if r["kernel_source"] == kernel_source and r["moe_dtype"] == dtype
            and r["distribution"] == "balanced" and r["moe_tp_size"] == 1
            and r["moe_ep_size"] == 1 and r["num_tokens"] in DECODE_TOKENS
            and (r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"]) == shape]


def _as_records(rows: list[dict], weight_format: str = "") -> list[dict]:
    out = []
    for r in rows:
        p = {"dtype": "w4a16_mxfp4", "tokens": r["num_tokens"], "hidden": r["hidden_size"],
             "inter": r["inter_size"], "experts": r["num_experts"], "topk": r["topk"],
             "tp": 1, "ep": 1, "gated": True}
        if weight_format:
            p["weight_format"] = weight_format
        out.append({"params": p, "stats": {"kernel_source": r["kernel_source"]}})
    return out


def _grid_times(device_id: str, recs: list[dict], weight_formats=()) -> np.ndarray:
    """The core's time of the MoE layer a row timed: the routed experts through the shipped
    table's grid plus its own top-k, activation and combine."""
    prof = registry.reference_profile(device_id)
    device = registry.get_device(device_id)
    roof = Roofline(device, as_format_table(prof, KEY, weight_formats))
    return moe_times(recs, "w4a16_mxfp4", roof) + part_times(recs, "w4a16_mxfp4",
                                                             Roofline(device, prof))


def _stated(device_id: str) -> tuple[float, float, tuple[float, ...]]:
    """(median, p90) held-out APE and the held-out log(measured / predicted) quantiles the
    profile states for the table."""
    prof = registry.reference_profile(device_id)
    fe = next(f for f in prof.fit_errors if f.table == f"moe.{KEY}")
    return fe.median_ape, fe.p90_ape, fe.log_ratio_quantiles


def test_bytes_per_weight_by_hand():
    assert moe_precision("w4a16_mxfp4", "int4").weight == pytest.approx(0.5 + 2 / 128)
    assert moe_precision("w4a16_mxfp4").weight == pytest.approx((4 + 8 / 32) / 8)
    assert moe_precision("w4a16_mxfp4", "int4").compute == "bf16"


@pytest.mark.parametrize("device_id", DEVICES)
def test_converter_keeps_every_balanced_marlin_row(device_id):
    path = SGLANG.format(DEVICES[device_id])
    rows = [r for r in pq.read_table(sources_dir() / path).to_pylist()
            if r["moe_dtype"] == "int4_wo" and r["distribution"] == "balanced"]
    recs = C.aic_moe(sources_dir() / path, dtypes=["int4_wo"],
                     kernel_sources=["sglang_marlin_moe"], by_kernel=True,
                     as_format="w4a16_mxfp4", weight_format="int4")
    assert len(recs) == len(rows) > 6000
    assert {r["params"]["table"] for r in recs} == {KEY}
    assert {r["params"]["weight_format"] for r in recs} == {"int4"}
    assert sorted(r["time_s"] for r in recs) == pytest.approx(
        sorted(r["latency"] * 1e-3 for r in rows))


@pytest.mark.parametrize("device_id", DEVICES)
@pytest.mark.parametrize("shape", [(2048, 768, 128, 8), (4096, 1536, 128, 8)])
def test_grid_reproduces_128_expert_rows(device_id, shape):
    """The 128-expert shapes nearest gpt-oss's, 1-64 tokens (decode), each row timed by the
    grid at its own (int4) bytes: median APE within the table's stated p90 held-out APE, every
    row of 1-16 tokens inside the stated held-out log-ratio range (5 % - 95 % quantiles). Not
    asserted, seen: at 2048 x 768 the grid is 1.4-1.8x slower than the rows at 48-64 tokens
    (H100 / H200), where the collector's balanced routing has every expert active (the rows are
    flat from 16 to 64 tokens) and the core counts the expected distinct experts of uniform
    routing."""
    rows = _rows(SGLANG.format(DEVICES[device_id]), "sglang_marlin_moe", "int4_wo", shape)
    assert len(rows) == len(DECODE_TOKENS)
    meas = np.array([r["latency"] * 1e-3 for r in rows])
    pred = _grid_times(device_id, _as_records(rows, "int4"), ("int4",))
    ape = np.abs(pred / meas - 1)
    _, p90, q = _stated(device_id)
    assert np.median(ape) <= p90, (shape, pred, meas)
    small = np.array([r["num_tokens"] <= 16 for r in rows])
    logr = np.log(meas / pred)[small]
    assert np.all((logr >= q[0]) & (logr <= q[-1])), (shape, logr, q)


@pytest.mark.parametrize("device_id", DEVICES)
def test_grid_stays_near_kimi_rows(device_id):
    """The Kimi-K3 rows the table held alone before (vLLM 0.24.0, 3584 x 3072, 896 experts,
    top-16, MXFP4): still within the stated p90 held-out APE at 1-64 tokens."""
    rows = _rows(VLLM.format(DEVICES[device_id]), KIMI, "w4a16_mxfp4", (3584, 3072, 896, 16))
    assert len(rows) == len(DECODE_TOKENS)
    meas = np.array([r["latency"] * 1e-3 for r in rows])
    pred = _grid_times(device_id, _as_records(rows))
    ape = np.abs(pred / meas - 1)
    _, p90, _ = _stated(device_id)
    assert np.median(ape) <= p90, (pred, meas)


@pytest.mark.parametrize("device_id", DEVICES)
def test_mxfp4_priced_at_its_own_bytes(device_id):
    """The same rows read as MXFP4 weights take longer than as int4 (more bytes at the same
    efficiency), by at most the byte ratio 0.53125 / 0.515625."""
    rows = _rows(SGLANG.format(DEVICES[device_id]), "sglang_marlin_moe", "int4_wo",
                 (4096, 1536, 128, 8))
    as_int4 = _grid_times(device_id, _as_records(rows, "int4"), ("int4",))
    as_mxfp4 = _grid_times(device_id, _as_records(rows))
    ratio = as_mxfp4 / as_int4
    assert np.all(ratio >= 1.0) and np.all(ratio <= 0.53125 / 0.515625 + 1e-9)
