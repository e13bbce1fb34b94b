"""Issue 13 item 3 (QA 2026-12-03 b, item 1): nvfp4 GEMM tables net of the activation quantise
their rows include, as the per-tensor fp8 tables are.

aiconfigurator's collectors hand the timed NVFP4 layer a bf16 input, so every nvfp4 row times
the fp4 quantise too: TensorRT-LLM ``NVFP4LinearMethod._input_prepare`` ->
``torch.ops.trtllm.fp4_quantize(input, module.input_scale, 16, False)`` (collector/trtllm/
collect_gemm.py loads ``input_scale``: a given global scale, one pass), vLLM's compressed-tensors
W4A4 scheme ``scaled_fp4_quant``. No fp4 quantise table was measured, so the build nets each
row by the same engine version's static quantise (``scale_matrix_perf``) at the same (m, k),
floored at the nvfp4 roofline and the file's fastest GEMM of another dtype
(``converters.aic_gemm(nvfp4_net_of=..., device=...)``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfmodel.calibrate import converters as C

US = 1e-6
ROOT = Path(__file__).resolve().parents[1]
B200 = "aiconfigurator/systems/data/b200_sxm"


def _write(path, rows):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_nvfp4_rows_net_of_the_static_quantise_with_floors(tmp_path):
    """Hand numbers: 21.8 us - 2.1 us = 19.7 us. Floors: a row shorter than its quantise stops
    at the fastest bf16 row (3 us); a large row at its nvfp4 bytes over 7.7 TB/s:
    (16 x 65536 + 65536^2) x (0.5 + 1/16) B + 2 x 16 x 65536 B = 2,416.6 MB -> 313.8 us."""
    root = tmp_path / "measured"
    qdir = root / "q"
    qdir.mkdir(parents=True)
    big = 65536
    _write(qdir / "scale_matrix_perf.parquet",
           [{"m": 1, "k": 8192, "quant_dtype": "fp8", "latency": 0.0021},
            {"m": 1, "k": 256, "quant_dtype": "fp8", "latency": 0.0050},
            {"m": 16, "k": big, "quant_dtype": "fp8", "latency": 0.0100}])
    # an amax table that must not be subtracted from nvfp4 rows (their global scale is given)
    _write(qdir / "computescale_perf.parquet",
           [{"m": m, "k": k, "quant_dtype": "fp8", "latency": 0.009}
            for m, k in ((1, 8192), (1, 256), (16, big))])
    gemm = root / "gemm_perf.parquet"
    rows = [(1, 5120, 8192, 0.0218), (1, 256, 256, 0.0060), (16, big, big, 0.300)]
    _write(gemm, [{"gemm_dtype": "nvfp4", "m": m, "n": n, "k": k, "latency": t,
                   "kernel_source": "torch_flow"} for m, n, k, t in rows] +
           [{"gemm_dtype": "bfloat16", "m": 1, "n": 256, "k": 256, "latency": 0.003,
             "kernel_source": "torch_flow"}])
    assert C.static_quantize_times(qdir)[(1, 8192)] == pytest.approx(2.1 * US)
    recs = C.aic_gemm(gemm, dtypes=["nvfp4", "bfloat16"], kernel_source="torch_flow",
                      nvfp4_net_of="q", device="b200")
    t = {(r["params"]["dtype"], r["params"]["m"], r["params"]["k"]): r for r in recs}
    assert t[("nvfp4", 1, 8192)]["time_s"] == pytest.approx(19.7 * US)
    assert t[("nvfp4", 1, 8192)]["stats"]["measured_s"] == pytest.approx(21.8 * US)
    assert t[("nvfp4", 1, 8192)]["stats"]["quantize_s"] == pytest.approx(2.1 * US)
    assert t[("bf16", 1, 256)]["time_s"] == pytest.approx(3.0 * US)  # untouched
    assert t[("nvfp4", 1, 256)]["time_s"] == pytest.approx(3.0 * US)  # 6 - 5 us < bf16 floor
    roof = ((16 * big + big * big) * (0.5 + 1 / 16) + 2 * 16 * big) / 7.7e12
    assert roof == pytest.approx(313.8 * US, rel=1e-3)
    assert t[("nvfp4", 16, big)]["time_s"] == pytest.approx(roof)  # 300 - 10 us < roofline
    with pytest.raises(ValueError, match="nvfp4_net_of need device"):
        C.aic_gemm(gemm, dtypes=["nvfp4"], nvfp4_net_of="q")


def test_nvfp4_missing_quantize_point_is_refused(tmp_path):
    root = tmp_path / "measured"
    (root / "q").mkdir(parents=True)
    _write(root / "q" / "scale_matrix_perf.parquet",
           [{"m": 2, "k": 8192, "quant_dtype": "fp8", "latency": 0.002}])
    _write(root / "g.parquet", [{"gemm_dtype": "nvfp4", "m": 1, "n": 512, "k": 8192,
                                 "latency": 0.01, "kernel_source": "torch_flow"}])
    with pytest.raises(ValueError, match="m=1 k=8192 has no quantize row"):
        C.aic_gemm(root / "g.parquet", dtypes=["nvfp4"], nvfp4_net_of="q", device="b200")


def test_b200_shipped_point_by_hand():
    """The copied B200 tables, one decode point read by hand from the parquet files
    (TensorRT-LLM 1.3.0rc20, m 1, n 5120, k 8192: Llama-3-70B TP2 attn.qkv): gemm_perf nvfp4
    torch_flow 0.021810 ms, scale_matrix_perf 0.002142 ms -> 19.668 us net, far above the
    nvfp4 roofline ((8192 + 5120 x 8192) x 0.5625 + 2 x 5120 B / 7.7 TB/s = 3.07 us)."""
    pytest.importorskip("pyarrow")
    base = ROOT / "calibration" / "sources" / "measured" / B200
    raw = [r for r in C.read_rows(base / "gemm" / "trtllm" / "1.3.0rc20" / "gemm_perf.parquet")
           if r["gemm_dtype"] == "nvfp4" and (r["m"], r["n"], r["k"]) == (1, 5120, 8192)]
    quant = [r for r in C.read_rows(base / "quantize" / "trtllm" / "1.3.0rc20" /
                                    "scale_matrix_perf.parquet") if (r["m"], r["k"]) == (1, 8192)]
    assert len(raw) == 1 and len(quant) == 1
    assert raw[0]["latency"] == pytest.approx(0.021810, abs=5e-6)
    assert quant[0]["latency"] == pytest.approx(0.002142, abs=5e-6)
    recs = C.aic_gemm(base / "gemm" / "trtllm" / "1.3.0rc20" / "gemm_perf.parquet",
                      dtypes=["nvfp4"], kernel_source="torch_flow", device="b200",
                      nvfp4_net_of=f"{B200}/quantize/trtllm/1.3.0rc20")
    point = [r for r in recs if (r["params"]["m"], r["params"]["n"], r["params"]["k"])
             == (1, 5120, 8192)]
    assert point[0]["time_s"] == pytest.approx(19.668 * US, abs=0.01 * US)
    roof = ((8192 + 5120 * 8192) * 0.5625 + 2 * 5120) / 7.7e12
    assert roof == pytest.approx(3.07 * US, abs=0.01 * US)


def test_references_net_every_blackwell_nvfp4_table():
    """calibration/references.yaml builds every shipped dense nvfp4 curve net of the quantise,
    each from its own engine version's quantize folder on the same device (TensorRT-LLM's rows
    by TRT-LLM 1.3.0rc20's, vLLM's FlashInfer rows by vLLM 0.24.0's); the shipped profiles say
    so."""
    import yaml

    refs = yaml.safe_load((ROOT / "calibration" / "references.yaml").read_text())["devices"]
    for dev, folder in (("b200", "b200_sxm"), ("b300", "b300_sxm"), ("gb200", "gb200"),
                        ("gb300", "gb300")):
        nv = [t for t in refs[dev]["tables"] if t.get("convert") == "aic_gemm"
              and (t.get("kwargs") or {}).get("dtypes") == ["nvfp4"]]
        assert len(nv) == 2, dev
        for t in nv:
            engine = "trtllm/1.3.0rc20" if "/trtllm/" in t["path"] else "vllm/0.24.0"
            assert t["path"] == f"aiconfigurator/systems/data/{folder}/gemm/{engine}/gemm_perf.parquet"
            assert t["kwargs"]["nvfp4_net_of"] == \
                f"aiconfigurator/systems/data/{folder}/quantize/{engine}"
            assert t["kwargs"]["device"] == dev
        notes = json.loads((ROOT / "calibration" / f"{dev}.reference.json").read_text())["notes"]
        assert "net of the fp4 activation quantise" in notes
