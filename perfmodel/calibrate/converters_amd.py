"""Published AMD Instinct measurements -> calibration records (the format ``fit.fit_profile``
reads), for the MI300X / MI355X reference profiles.

Three kinds of source, each copied with its licence under calibration/sources/measured/
(what, where from and how it was timed: calibration/sources/measured/README.md):

* ``aiter_gemm`` / ``aiter_fmoe``: the tuned-kernel tables of ROCm/aiter (MIT,
  ``aiter/configs/**/*tuned*.csv``). AMD's tuners (``aiter/utility/base_tuner.py``, timing by
  ``aiter.test_common.perftest``: torch-profiler kernel time, mean of 101 calls after warm-up,
  inputs rotated over more than the cache) store the time ``us`` of the fastest kernel per
  shape, per GPU kind: ``cu_num`` 304 = MI300X/MI325X (gfx942), 256 = MI350X/MI355X (gfx950),
  80 = MI308X (not used). GEMM rows are Y = X W^T, X M x K, W N x K (FLOP = 2 M N K, the
  ``tflops`` column checks it); fused-MoE rows are one MoE layer's routed experts on one GPU
  (``token`` tokens routed top-``topk`` of ``expert`` experts of ``model_dim`` x ``inter_dim``,
  ``use_g1u1`` = gate and up fused), ``us`` = both stages (activation and top-k weighted sum
  inside them, routing outside: ``AITER_FMOE_TIMED``).
* ``hipkittens_attention``: HazyResearch/HipKittens (MIT) ``analysis/attn/{fwd,bkwd}/
  benchmark/*.json``: aiter's ``flash_attn_func`` (the ``*_ref`` fields) on MI355X, bf16,
  head_dim 128, q_len = kv_len = N, timed with CUDA events, mean of 100 calls; backward =
  ``out.backward`` alone. The batch is recovered from the file's own FLOP count
  (``test_python.py``: 4 B N^2 H D, halved when causal, x 2.5 for backward).
* ``hipkittens_gemm``: the same repository's square bf16 GEMM files (torch.matmul, the
  ``*_pytorch`` fields), large calls only.
* ``published_amd``: single published points with their citations
  (``published/amd_points.json``): maximum-achievable-matmul (one GEMM at its best shape),
  measured HBM bandwidth (one ``memory`` record), RCCL all-reduce bus bandwidth.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..paths import data_dir
from ..profile import gemm_key, moe_key
from .converters import allreduce_busbw_time, read_rows, record, source_label
from .moe_kernels import kernel_labels

US = 1e-6
# aiter GEMM files name no dtype per row for the block-scaled kernels; the file says which
GEMM_DTYPES = ("bf16", "fp8", "int8", "fp8_block", "mxfp4")
# fused-MoE rows: (q_dtype_w, q_type) -> the core's dtype name
FMOE_DTYPES = {("torch.bfloat16", "QuantType.No"): "bf16",
               ("torch.float8_e4m3fnuz", "QuantType.per_Token"): "fp8",
               ("torch.float8_e4m3fn", "QuantType.per_Token"): "fp8",
               ("torch.float8_e4m3fnuz", "QuantType.per_Tensor"): "fp8",
               ("torch.float8_e4m3fn", "QuantType.per_Tensor"): "fp8",
               ("torch.float8_e4m3fnuz", "QuantType.per_1x128"): "fp8_block",
               ("torch.float8_e4m3fn", "QuantType.per_1x128"): "fp8_block",
               ("torch.float4_e2m1fn_x2", "QuantType.per_1x32"): "mxfp4"}


#: the timed region of the fmoe tuner's rows (calibration/moe_kernels.yaml ``timed_regions``:
#: both stages with the activation and the weighted sum; routing and sorting made before timing)
AITER_FMOE_TIMED = "aiter_tuner"


def _keep_row(row: dict, cu_num: int, gfx: str | None) -> bool:
    if int(row["cu_num"]) != int(cu_num):
        return False
    return gfx is None or row.get("gfx", gfx) == gfx


def _table_key(kind: str, dtype: str, kernel_source: str | None, src: str) -> str | None:
    """``<dtype>@<label>`` of rows tagged ``kernel_source`` (its label in
    calibration/<kind>_kernels.yaml: a table an engine selects by name and version, e.g. the
    aiter release an SGLang image pins), None without one; an unlabelled source stops."""
    if kernel_source is None:
        return None
    labels = kernel_labels(kind)
    if kernel_source not in labels:
        raise ValueError(f"{src}: kernel_source {kernel_source!r} has no kernel label "
                         f"(calibration/{kind}_kernels.yaml)")
    return (gemm_key if kind == "gemm" else moe_key)(dtype, labels[kernel_source])


def aiter_gemm(path: str | Path, dtype: str, cu_num: int, gfx: str | None = None,
               q_dtype_w: str | None = None, pow2_m: bool = False,
               kernel_source: str | None = None) -> list[dict]:
    """aiter tuned-GEMM rows of one GPU kind (``cu_num``, ``gfx`` where the file has the
    column; ``q_dtype_w``: only rows of that weight type, for files mixing int8 and fp8) as
    ``gemm`` records of ``dtype`` (the file's format: bf16, fp8 per-token, int8, fp8_block =
    1x128 / 128x128 block scales, mxfp4 = a4w4 per-1x32 scales); ``us`` -> s. Batched-GEMM
    files are not read (the core has no batched GEMM). ``pow2_m``: keep the rows whose M is a
    power of two: some files add thousands of workload-specific M values to the tuner's
    power-of-two sweep, and the fitted curve's grid is the product of the distinct M, N and K
    (fit/curves.py), which those would make millions of nodes. ``kernel_source``: the rows are
    the tables of one aiter release (e.g. ``aiter_v0.1.7.post1``, the tuned CSVs at the commit an
    engine image pins), installed as ``gemm.<dtype>@<label>`` (calibration/gemm_kernels.yaml)
    for the engine versions that name that label (engines/<id>.yaml / engines/versions
    ``gemm.kernels``), not as the device's reference table."""
    if dtype not in GEMM_DTYPES:
        raise ValueError(f"aiter_gemm dtype: {dtype!r}; valid: {', '.join(GEMM_DTYPES)}")
    out = []
    src = source_label(path)
    table = _table_key("gemm", dtype, kernel_source, src)
    for row in read_rows(path):
        if not _keep_row(row, cu_num, gfx) or float(row["us"]) <= 0:
            continue
        if q_dtype_w is not None and row.get("q_dtype_w") != q_dtype_w:
            continue
        if pow2_m and int(row["M"]) & (int(row["M"]) - 1):
            continue
        params = {"dtype": dtype, "m": int(row["M"]), "n": int(row["N"]), "k": int(row["K"])}
        if table:
            params["table"] = table
        out.append(record("gemm", params, float(row["us"]) * US, src,
                          kernel=str(row.get("kernelName", ""))[:80],
                          libtype=row.get("libtype"),
                          **({"kernel_source": kernel_source} if kernel_source else {})))
    return out


def aiter_fmoe(path: str | Path, cu_num: int, dtypes: Iterable[str] = ("bf16",),
               gfx: str | None = None, kernel_source: str | None = None,
               kernels_file: str | None = None, one_stage: bool | None = None) -> list[dict]:
    """aiter tuned fused-MoE rows of one GPU kind as ``moe`` records (the params of
    ``converters.aic_moe``: tokens, hidden, inter, experts, topk, tp = ep = 1 since
    ``inter_dim`` is already the per-GPU width, gated, dtype). Rows whose weight format is not
    in ``dtypes`` (the core's names, ``FMOE_DTYPES``) are skipped; of duplicated shapes
    (several activations) the fastest is kept, as a tuned deployment would run it; rows that
    repeat another token count's times exactly are dropped (copied configs).

    A release's default kernel where it has no tuned row (aiter ``fused_moe.get_2stage_cfgs``:
    no row -> the 1-stage asm kernel of ``fused_moe_1stage_dict``, chosen among the kernels the
    release ships by ``get_heuristic_kernel``) is priced from rows of another file that timed
    those very kernels on the same GPU kind: ``kernels_file`` (a kernel list of the release,
    e.g. ``hsa/gfx942/fmoe/silu/fmoe_bf16_blockscaleFp8_g1u1_silu.csv``, path relative to the
    measured-sources folder, column ``knl_name``) keeps the rows whose ``kernelName1`` is one
    of them, ``one_stage`` the rows of that mode (``run_1stage``); ``kernel_source`` labels them
    (calibration/moe_kernels.yaml) as the table ``moe.<dtype>@<label>`` an engine version
    selects (``_table_key``)."""
    keep = set(dtypes)
    best: dict[tuple, tuple[float, dict]] = {}
    rows = [r for r in read_rows(path) if _keep_row(r, cu_num, gfx)]
    if kernels_file is not None:
        measured = data_dir("calibration") / "sources" / "measured"
        names = {r["knl_name"] for r in read_rows(measured / kernels_file)}
        rows = [r for r in rows if r.get("kernelName1") in names]
    if one_stage is not None:
        rows = [r for r in rows if bool(int(r.get("run_1stage") or 0)) == one_stage]
    # rows whose stage times repeat exactly across token counts of one problem are a tuned
    # config filled into other batch sizes, not measurements (tuned_fmoe.csv of 0d38e26f:
    # tokens 1-16 of a 256-expert layer all 200.78 us, 32768 tokens "as fast as" 16384, above
    # the bf16 peak); which one of them was measured is not recorded, so none is kept
    def same(r: dict) -> tuple:
        return (r["model_dim"], r["inter_dim"], r["expert"], r["topk"], r["q_dtype_w"],
                r["q_type"], r["act_type"], r["us1"], r["us2"], r["us"])

    count: dict[tuple, int] = {}
    for r in rows:
        count[same(r)] = count.get(same(r), 0) + 1
    for row in rows:
        if count[same(row)] > 1:
            continue
        dtype = FMOE_DTYPES.get((row["q_dtype_w"], row["q_type"]))
        t = float(row["us"]) * US
        if dtype not in keep or t <= 0:
            continue
        params = {"dtype": dtype, "tokens": int(row["token"]), "hidden": int(row["model_dim"]),
                  "inter": int(row["inter_dim"]), "experts": int(row["expert"]),
                  "topk": int(row["topk"]), "tp": 1, "ep": 1,
                  "gated": int(row["use_g1u1"]) == 1}
        key = tuple(params.values())
        if key not in best or t < best[key][0]:
            best[key] = (t, params)
    src = source_label(path)
    out = []
    for t, params in best.values():
        table = _table_key("moe", params["dtype"], kernel_source, src)
        if table:
            params = {**params, "table": table}
        out.append(record("moe", params, t, src, timed=AITER_FMOE_TIMED,
                          **({"kernel_source": kernel_source} if kernel_source else {})))
    return out


def hipkittens_attention(path: str | Path, phase: str, heads: int, kv_heads: int,
                         head_dim: int = 128, causal: bool = True) -> list[dict]:
    """aiter flash attention (the ``*_ref`` fields) of a HipKittens result file, one record
    per sequence length: ``phase`` prefill (forward) or backward, q_len = kv_len = N."""
    if phase not in ("prefill", "backward"):
        raise ValueError("phase must be prefill or backward")
    data = json.loads(Path(path).read_text())
    mult = 2.5 if phase == "backward" else 1.0
    out = []
    src = source_label(path)
    for entry in data.values():
        n, t_ms, tflops = int(entry["N"]), float(entry["avg_time_ref"]), float(entry["tflops_ref"])
        per_batch = 4 * n * n * heads * head_dim / (2 if causal else 1) * mult
        batch = round(tflops * 1e12 * t_ms * 1e-3 / per_batch)
        params = {"phase": phase, "backend": "aiter", "dtype": "bf16", "kv_dtype": "bf16",
                  "batch": int(batch), "heads": heads, "kv_heads": kv_heads,
                  "head_dim": head_dim, "q_len": n, "kv_len": n, "causal": causal}
        out.append(record("attention", params, t_ms * 1e-3, src, tflops=tflops))
    return out


def hipkittens_gemm(path: str | Path, field: str = "pytorch", dtype: str = "bf16",
                    min_time_s: float = 1e-4) -> list[dict]:
    """Square bf16 GEMMs (M = N = K = the file's keys) of a HipKittens result file:
    ``avg_time_<field>`` ms of one eager call between CUDA events, mean of 100 (``pytorch`` =
    torch.matmul, hipBLASLt). A single eager call carries its launch latency, which kernel
    tables do not: calls under ``min_time_s`` are dropped (N <= 2048 in the MI300X and MI355X
    files: 32-63 us, 57-328 TFLOP/s, where 4096 reaches 625-1139)."""
    data = json.loads(Path(path).read_text())
    out = []
    src = source_label(path)
    for key, entry in data.items():
        n = int(key)
        t = float(entry[f"avg_time_{field}"]) * 1e-3
        if t < min_time_s:
            continue
        out.append(record("gemm", {"dtype": dtype, "m": n, "n": n, "k": n}, t, src,
                          tflops=float(entry[f"tflops_{field}"]), library=field))
    return out


def published_amd(path: str | Path, ids: Iterable[str]) -> list[dict]:
    """Records from ``amd_points.json`` (each point carries its citation):

    * ``kind: mamf``: one ``gemm`` record at the best shape, time = 2 M N K / TFLOP/s;
    * ``kind: memory``: one ``memory`` record of ``bytes`` moved at ``GBps``;
    * ``kind: allreduce_busbw``: ``collective`` all_reduce records (scope intra), time =
      bytes x 2 (n - 1) / n / busbw (nccl-tests bus-bandwidth convention).
    """
    points = {p["id"]: p for p in json.loads(Path(path).read_text())["points"]}
    out = []
    for pid in ids:
        if pid not in points:
            raise ValueError(f"published_amd: no point {pid!r} in {Path(path).name}")
        p = points[pid]
        m, kind = p["measured"], p["kind"]
        if kind == "mamf":
            mm, nn, kk = (int(x) for x in m["best_shape_MxNxK"].split("x"))
            t = 2.0 * mm * nn * kk / (m["tflops"] * 1e12)
            out.append(record("gemm", {"dtype": m["dtype"], "m": mm, "n": nn, "k": kk}, t, pid,
                              tflops=m["tflops"]))
        elif kind == "memory":
            nb = float(m["bytes"])
            out.append(record("memory", {"op": m["op"], "bytes": nb}, nb / (m["GBps"] * 1e9),
                              pid, GBps=m["GBps"]))
        elif kind == "allreduce_busbw":
            n = int(m["group_size"])
            for nb, busbw in zip(m["bytes"], m["busbw_GBps"], strict=True):
                t = allreduce_busbw_time(nb, n, busbw)
                params = {"collective": "all_reduce", "group_size": n, "scope": "intra",
                          "dtype": m.get("dtype"), "bytes": int(nb)}
                out.append(record("collective", params, t, pid, busbw_GBps=busbw))
        else:
            raise ValueError(f"published_amd: point {pid}: unknown kind {kind!r}")
    return out
