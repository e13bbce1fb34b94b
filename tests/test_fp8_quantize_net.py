"""Issue 13 item 3: W8A8 must not decode slower than weight-only fp8 (or bf16).

aiconfigurator's TRT-LLM fp8 GEMM rows time TensorRT-LLM's dynamic activation quantise
(``quantize_e4m3_per_tensor``: the collector loads no ``input_scale``) with each GEMM; engines
run a static scale fused into the preceding kernel. The reference build subtracts the same
collector's quantize tables (``computescale_perf`` + ``scale_matrix_perf``, same device,
TRT-LLM version and (m, k)) from every per-tensor fp8 row, floored at the fp8 memory roofline
(``converters.aic_gemm(fp8_net_of=..., device=...)``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel import ops as O
from perfmodel.calibrate import converters as C
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.scenario import Scenario

US = 1e-6


def _write(path, rows):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_fp8_rows_are_net_of_the_measured_quantize_with_floors(tmp_path):
    """Hand numbers: a 16 x 8192 quantise of 10.5 us (2.5 static + 8.0 amax) off a 26.5 us row
    leaves 16 us. Floors: a row shorter than its quantise stops at the file's fastest non-fp8
    row (2 us, the kernel floor); a large row at its fp8 bytes / HBM bandwidth."""
    root = tmp_path / "measured"
    qdir = root / "q"
    qdir.mkdir(parents=True)
    big = 65536
    _write(qdir / "scale_matrix_perf.parquet",
           [{"m": m, "k": k, "quant_dtype": "fp8", "latency": 0.0025}
            for m, k in ((16, 8192), (1, 64))] +
           [{"m": 16, "k": big, "quant_dtype": "fp8", "latency": 0.05}])
    _write(qdir / "computescale_perf.parquet",
           [{"m": m, "k": k, "quant_dtype": "fp8", "latency": 0.008}
            for m, k in ((16, 8192), (1, 64))] +
           [{"m": 16, "k": big, "quant_dtype": "fp8", "latency": 0.05}])
    gemm = root / "gemm_perf.parquet"
    fp8 = [(16, 8192, 8192, 0.0265), (1, 64, 64, 0.010), (16, big, big, 0.600)]
    _write(gemm, [{"gemm_dtype": "fp8", "m": m, "n": n, "k": k, "latency": t,
                   "kernel_source": "torch_flow"} for m, n, k, t in fp8] +
           [{"gemm_dtype": "bfloat16", "m": 1, "n": 64, "k": 64, "latency": 0.002,
             "kernel_source": "torch_flow"}])
    assert C.fp8_quantize_times(qdir)[(16, 8192)] == pytest.approx(10.5 * US)
    recs = C.aic_gemm(gemm, kernel_source="torch_flow", fp8_net_of="q", device="b200")
    t = {(r["params"]["dtype"], r["params"]["m"], r["params"]["k"]): r["time_s"] for r in recs}
    assert t[("fp8", 16, 8192)] == pytest.approx(16.0 * US)
    assert t[("bf16", 1, 64)] == pytest.approx(2.0 * US)  # bf16 rows untouched
    assert t[("fp8", 1, 64)] == pytest.approx(2.0 * US)  # 10 - 10.5 us < 0: kernel floor
    # 600 - 100 us = 500 us < (16 x 65536 + 65536^2 + 2 x 16 x 65536) B / 7.7 TB/s = 558 us
    roofline = (16 * big + big * big + 2 * 16 * big) / 7.7e12
    assert roofline > 500 * US
    assert t[("fp8", 16, big)] == pytest.approx(roofline)
    plain = C.aic_gemm(gemm, kernel_source="torch_flow")
    assert sorted(r["time_s"] for r in plain if r["params"]["dtype"] == "fp8") == \
        pytest.approx([10.0 * US, 26.5 * US, 600 * US])


def test_fp8_floor_is_the_roofline_memory_or_compute():
    """B200 (7.7 TB/s, 4.5 PFLOP/s dense fp8): 8192^3 is compute-bound, 244 us; m 1 is
    memory-bound, (8192 + 8192^2 + 2 x 8192) B / 7.7 TB/s = 8.72 us."""
    assert C.fp8_gemm_floor_s(8192, 8192, 8192, 7700, 4500) == pytest.approx(2 * 8192**3 / 4.5e15)
    assert C.fp8_gemm_floor_s(1, 8192, 8192, 7700, 4500) == \
        pytest.approx((8192 + 8192**2 + 2 * 8192) / 7.7e12)


def test_missing_quantize_point_is_an_error(tmp_path):
    root = tmp_path / "measured"
    (root / "q").mkdir(parents=True)
    for name in ("scale_matrix_perf.parquet", "computescale_perf.parquet"):
        _write(root / "q" / name, [{"m": 16, "k": 4096, "quant_dtype": "fp8", "latency": 0.001}])
    _write(root / "g.parquet", [{"gemm_dtype": "fp8", "m": 16, "n": 64, "k": 8192,
                                 "latency": 0.01, "kernel_source": "torch_flow"}])
    with pytest.raises(ValueError, match="m=16 k=8192 has no quantize row"):
        C.aic_gemm(root / "g.parquet", fp8_net_of="q", device="b200")


# Llama-3.1-70B at TP8, one layer: qkv (64 + 2 x 8) x 128 / 8 = 1280 x 8192, o 8192 x 1024,
# gate-up 2 x 28672 / 8 = 7168 x 8192, down 8192 x 3584.
LAYER_70B_TP8 = [(1280, 8192), (8192, 1024), (7168, 8192), (8192, 3584)]


def _layer_gemm_s(device_id: str, precision: O.Precision, m: int = 16) -> float:
    device = registry.get_device(device_id)
    ops = [O.gemm(f"g{i}", m, n, k, precision) for i, (n, k) in enumerate(LAYER_70B_TP8)]
    return float(op_times(ops, Roofline(device, registry.profile_for(device_id))).total())


def test_b200_fp8_layer_matches_vllm_cutlass_net_of_quantize():
    """vLLM 0.24.0's CutlassFP8ScaledMMLinearKernel rows (aiconfigurator-core 0.12.0
    b200_sxm/gemm/vllm/0.24.0) at m 16, net of vLLM's static quantise (its scale_matrix_perf):
    37.2 us per layer (the issue's research figure; re-derived here: qkv interpolated in n
    between the 768 and 1536 rows, as the n 1024 row at k 8192 is a 30.5 us outlier, gives
    35.5). TRT-LLM's bf16 rows: 49.1 us (qkv linear in n between 1024 and 1536)."""
    fp8 = _layer_gemm_s("b200", O.Precision.inference("fp8", "fp8", "bf16"))
    bf16 = _layer_gemm_s("b200", O.Precision.inference("bf16", "bf16", "bf16"))
    assert fp8 == pytest.approx(37.2 * US, rel=0.10)
    assert fp8 == pytest.approx(35.5 * US, rel=0.10)
    assert bf16 == pytest.approx(49.1 * US, rel=0.10)
    assert fp8 < bf16


def _decode_s(device_id: str, gpus: int, batch: int, wd: str, ad: str) -> float:
    sc = Scenario(kind="inference", model="llama-3.1-70b",
                  system={"device": device_id, "num_gpus": gpus}, parallelism={"tp": gpus},
                  inference={"batch": batch, "prompt_len": 1024, "output_len": 64,
                             "weight_dtype": wd, "activation_dtype": ad})
    return pm.predict(sc).tpot_s


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(system=st.sampled_from([("b200", 8), ("h100-sxm5-80gb", 2)]),
       batch=st.sampled_from([1, 4, 16, 64]))
def test_w8a8_decodes_no_slower_than_weight_only_fp8_or_bf16(system, batch):
    device_id, gpus = system
    w8a8 = _decode_s(device_id, gpus, batch, "fp8", "fp8")
    assert w8a8 <= _decode_s(device_id, gpus, batch, "fp8", "bf16") * (1 + 1e-9)
    assert w8a8 <= _decode_s(device_id, gpus, batch, "bf16", "bf16")
