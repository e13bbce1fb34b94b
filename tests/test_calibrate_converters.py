"""Calibration converters (perfmodel.calibrate.converters): the copied upstream tables
(aiconfigurator, vidur, published points) read into records with the right units; every table
a reference profile uses converts; the manifest matches the copied files and licenses."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from perfmodel.calibrate import converters as C
from perfmodel.calibrate import fit as F
from perfmodel.calibrate import reference as R
from perfmodel.comm import bus_factor
from perfmodel.paths import data_dir

SOURCES = data_dir("calibration") / "sources" / "measured"


def _first(records, **match):
    return next(r for r in records if all(r["params"].get(k) == v for k, v in match.items()))


def test_gemm_converter_units_h100_sanity_row():
    recs = C.aic_gemm(SOURCES / "aiconfigurator/csv/gemm/h100_sxm__trtllm_1.3.0rc20__bfloat16.csv")
    r = _first(recs, m=8192, n=8192, k=8192)
    assert r["params"]["dtype"] == "bf16"
    assert 2 * 8192**3 / r["time_s"] / 1e12 == pytest.approx(783, abs=1)  # README table
    small = min(x["time_s"] for x in recs)
    assert small == pytest.approx(2.58e-6, rel=0.05)  # smallest bf16 latency (m = 1)


def test_nccl_converter_message_size_is_elements():
    path = SOURCES / "aiconfigurator/csv/nccl/h100_sxm__nccl_2.29.2.csv"
    with path.open() as f:
        row = next(r for r in csv.DictReader(f) if r["op_name"] == "all_reduce"
                   and r["num_gpus"] == "8" and r["nccl_dtype"] == "half")
    recs = C.aic_nccl(path)
    r = _first(recs, collective="all_reduce", group_size=8,
               bytes=int(row["message_size"]) * 2)
    assert r["time_s"] == pytest.approx(float(row["latency"]) * 1e-3)
    assert {x["params"]["dtype"] for x in recs} == {"fp16"}
    assert "all_to_all" in {x["params"]["collective"] for x in recs}
    biggest = max((x for x in recs if x["params"]["collective"] == "all_reduce"
                   and x["params"]["group_size"] == 8), key=lambda x: x["params"]["bytes"])
    assert biggest["params"]["bytes"] == 512 * 2**20
    busbw = biggest["params"]["bytes"] * 1.75 / biggest["time_s"] / 1e9
    assert busbw == pytest.approx(445, abs=3)  # README: H100 8-GPU all_reduce at 512 MiB


def test_attention_converters_phase_semantics():
    gen = C.aic_attention(SOURCES / "aiconfigurator/csv/attention/"
                          "a100_sxm__trtllm_1.0.0__generation.csv", "decode")
    with (SOURCES / "aiconfigurator/csv/attention/a100_sxm__trtllm_1.0.0__generation.csv"
          ).open() as f:
        row = next(csv.DictReader(f))
    r = gen[0]
    assert r["params"]["q_len"] == 1 and r["params"]["kv_len"] == int(row["step"]) + 1
    assert r["time_s"] == pytest.approx(float(row["latency"]) * 1e-3)
    ctx = C.aic_attention(SOURCES / "aiconfigurator/csv/attention/"
                          "h100_sxm__trtllm_1.3.0rc20__context__hd128_nowindow.csv", "prefill")
    assert all(x["params"]["q_len"] == x["params"]["kv_len"] for x in ctx)
    assert {x["params"]["dtype"] for x in ctx} == {"bf16"}  # the fp8 FMHA rows are left out


def test_vidur_converters():
    net = C.vidur_network(SOURCES / "vidur/data/profiling/network/h100_dgx/send_recv.csv")
    inter = [r for r in net if r["params"]["scope"] == "inter"]
    assert inter and all(r["params"]["per_node"] == 1 for r in inter)
    top = max(inter, key=lambda r: r["params"]["bytes"])
    assert top["params"]["bytes"] == 64 * 2**20
    assert top["params"]["bytes"] / top["time_s"] / 1e9 == pytest.approx(36, abs=1.5)
    elem = C.vidur_elementwise(SOURCES / "vidur/data/profiling/compute/h100/meta-llama/"
                               "Llama-2-70b-hf/mlp.csv", min_bytes=1e8)
    add = max((r for r in elem if r["params"]["op"] == "add"), key=lambda r: r["time_s"])
    assert add["params"]["elems"] == 4096 * 8192  # tokens x hidden
    assert F.elementwise_bytes(add["params"]) == 3 * 2 * 4096 * 8192


def test_parquet_converters():
    pytest.importorskip("pyarrow")
    gemm = C.aic_gemm(SOURCES / "aiconfigurator/systems/data/b200_sxm/gemm/trtllm/1.3.0rc20/"
                      "gemm_perf.parquet", kernel_source="torch_flow")
    r = _first(gemm, m=8192, n=8192, k=8192, dtype="bf16")
    assert 2 * 8192**3 / r["time_s"] / 1e12 == pytest.approx(1492, abs=2)  # README table
    mem = C.aic_scale_matrix(SOURCES / "aiconfigurator/systems/data/h100_sxm/quantize/trtllm/"
                             "1.3.0rc20/scale_matrix_perf.parquet", min_bytes=1e8)
    assert all(r["params"]["bytes"] >= 1e8 for r in mem)
    assert max(r["params"]["bytes"] / r["time_s"] for r in mem) < 3.35e12  # below HBM peak


def test_published_points_converter():
    path = SOURCES / R.PUBLISHED
    (stream,) = C.published(path, ["C-HBM-STREAM-A100_80"])
    assert stream["params"]["bytes"] / stream["time_s"] / 1e9 == pytest.approx(1759)
    (fa,) = C.published(path, ["C-FA2-A100-PEAK"])
    assert F.attention_op([fa]).flops[0] / fa["time_s"] / 1e12 == pytest.approx(230)
    efa = C.published(path, ["C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA"])
    assert min(r["params"]["bytes"] for r in efa) == 128 * 2**10  # warm-up points dropped
    r = max(efa, key=lambda r: r["params"]["bytes"])
    assert r["params"]["bytes"] * 2 * 31 / 32 / r["time_s"] / 1e9 == pytest.approx(381.8)


ALL_TABLES = sorted({(t.path, t.convert.__name__, json.dumps(t.kwargs, sort_keys=True))
                     for ref in R.REFERENCES.values() for t in ref.tables})


@pytest.mark.parametrize("path,convert,kwargs", ALL_TABLES)
def test_every_copied_table_converts_with_plausible_units(path, convert, kwargs):
    if path.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    records = R.converter(convert)(SOURCES / path, **json.loads(kwargs))
    assert records
    for r in records:
        assert set(r) == {"bench", "key", "params", "time_s", "stats", "status", "error"}
        assert 5e-7 < r["time_s"] < 5.0, r  # seconds: no ms or us left unconverted
        p = r["params"]
        # below any B200 peak of the record's format: fp8 4.5, fp4 9 PFLOP/s (dense)
        peak = 1e16 if p.get("dtype") in ("nvfp4", "mxfp4") else 5e15
        if r["bench"] == "gemm":
            rate = 2 * p["m"] * p["n"] * p["k"] / r["time_s"]
            assert rate < peak
        elif r["bench"] == "collective":
            busbw = p["bytes"] * float(bus_factor(p["collective"], p["group_size"])) / r["time_s"]
            assert p["bytes"] >= 512 and busbw < 1e12  # bytes, not elements; < NVLink 5
        elif r["bench"] == "attention":
            assert p["q_len"] <= p["kv_len"]
        elif r["bench"] == "moe":
            mats = 3 if p["gated"] else 2  # gate + up + down, or up + down (ReLU^2 experts)
            flops = 2 * mats * p["tokens"] * p["topk"] * p["hidden"] * p["inter"] / p["ep"] / p["tp"]
            assert flops / r["time_s"] < peak and p["topk"] <= p["experts"]
        else:
            assert F.record_bytes(r) / r["time_s"] < 8e12  # below any HBM


def test_manifest_matches_the_copied_files():
    rows = list(csv.DictReader((SOURCES / "MANIFEST.csv").open()))
    listed = {r["path"] for r in rows}
    on_disk = {str(p.relative_to(SOURCES)) for p in SOURCES.rglob("*")
               if p.is_file() and p.name not in ("MANIFEST.csv", "README.md")}
    on_disk |= {"aiconfigurator/csv/README.md"}
    assert listed == on_disk
    for r in rows:
        data = (SOURCES / r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"], r["path"]
        assert int(r["bytes"]) == len(data)
    licenses = {p.parent.name for p in SOURCES.rglob("LICENSE")}
    assert licenses == {"aiconfigurator", "vidur", "aiter", "hipkittens"}
    for table in (t for ref in R.REFERENCES.values() for t in ref.tables):
        assert table.path in listed, table.path


def test_trtllm_custom_allreduce_keeps_the_mnnvl_kernels():
    """GB300 TensorRT-LLM 1.3.0rc20 TP 8 / 16 across compute trays: AUTO takes the MNNVL
    one-shot / two-shot kernels (kernel_source names them; collection_meta.yaml); read by hand:
    2^20 elements at 8 GPUs 0.009898 ms (two-shot), 256 elements at 16 GPUs 0.004914 ms
    (one-shot); 2 and 4 GPUs stay the plain TRTLLM rows."""
    pytest.importorskip("pyarrow")
    path = SOURCES / "aiconfigurator/systems/data/gb300/comm/trtllm/1.3.0rc20/custom_allreduce_perf.parquet"
    recs = C.aic_custom_allreduce(path, engine="trtllm")
    by = {(r["params"]["group_size"], r["params"]["bytes"]): r for r in recs}
    assert {g for g, _ in by} == {2, 4, 8, 16}
    r = by[(8, 2 * 2**20)]
    assert r["time_s"] == pytest.approx(9.898e-6, rel=1e-3)
    assert r["stats"]["kernel_source"] == "TRTLLM_MNNVL_twoshot"
    r = by[(16, 512)]
    assert r["time_s"] == pytest.approx(4.914e-6, rel=1e-3)
    assert r["stats"]["kernel_source"] == "TRTLLM_MNNVL_oneshot"
    assert {by[(g, 512)]["stats"]["kernel_source"] for g in (2, 4)} == {"TRTLLM"}
