"""Published measurement tables -> calibration records (the format ``fit.fit_profile`` reads).

One record per measured point: ``{"bench", "key", "params", "time_s", "stats", "status",
"error"}``. Units and semantics follow calibration/sources/measured/README.md (a copy of the
upstream notes): aiconfigurator latencies are milliseconds of CUDA-graph replays, NCCL
``message_size`` is in ELEMENTS (fp16 -> x2 bytes) with the nccl-tests "size" convention,
attention ``step`` is the number of tokens already in the KV cache, vidur times are
milliseconds of CUPTI kernel time.

CSV is read with the standard library; Parquet needs ``pyarrow`` (a [dev] dependency, only
needed to rebuild the reference profiles).
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path

DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "fp16": "fp16", "bf16": "bf16",
          "fp8": "fp8", "float32": "fp32", "float": "fp32", "int8": "int8",
          # block-scaled GEMMs (aiconfigurator gemm_perf.parquet ``gemm_dtype``): fp8 with
          # 128x128 weight / 1x128 activation scales (DeepGEMM, TRT-LLM fp8 block scales),
          # NVFP4 weights and activations (16-element blocks, e4m3 scales); perfmodel.dtypes
          "fp8_block": "fp8_block", "nvfp4": "nvfp4"}
NCCL_OPS = {"all_reduce": "all_reduce", "all_gather": "all_gather",
            "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all"}
MS = 1e-3


def record(bench: str, params: dict, time_s: float, source: str, **stats) -> dict:
    key = bench + ":" + ",".join(f"{k}={v}" for k, v in params.items())
    return {"bench": bench, "key": key, "params": params, "time_s": float(time_s),
            "stats": {"source": source, **stats}, "status": "ok", "error": None}


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a CSV (numbers parsed) or Parquet table as dicts: fresh dicts on every call (the
    caller may change them), built from a parse kept per file (``_parsed``), so a table several
    converters read (one per dtype, kernel or phase) is parsed once while it is unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    columns, rows = _parsed(str(path), st.st_mtime_ns, st.st_size)
    return [dict(zip(columns, row, strict=True)) for row in rows]


@functools.lru_cache(maxsize=4)  # a few tables: the largest (MoE parquet) are ~70 MB parsed
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
    """A table's column names and rows as tuples (equal strings shared), for ``read_rows``;
    keyed by the file's modification time and size as well, so an edited file is read anew."""
    file = Path(path)
    if file.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(f"reading {file.name} needs pyarrow (pip install "
                              "'perfmodel[dev]')") from err
        table = pq.read_table(file)
        columns, data = tuple(table.column_names), [c.to_pylist() for c in table.columns]
        text = [str(c.type) in ("string", "large_string") for c in table.columns]
    else:
        with file.open(newline="") as f:
            dicts = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
        columns = tuple(dicts[0]) if dicts else ()
        data = [[d[k] for d in dicts] for k in columns]
        text = [all(type(v) is str for v in col) for col in data]
    for i in (i for i, t in enumerate(text) if t):  # one object per distinct text (dtypes, ...)
        shared: dict = {}
        data[i] = list(map(shared.setdefault, data[i], data[i]))
    return columns, tuple(zip(*data, strict=True))


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def source_label(path: str | Path) -> str:
    """A table's path relative to calibration/sources/measured/ (how records cite it)."""
    parts = Path(path).parts
    return "/".join(parts[parts.index("measured") + 1:]) if "measured" in parts else str(path)


# ---- aiconfigurator (ai-dynamo/aiconfigurator "silicon" database) --------------------------

def aic_gemm(path: str | Path, dtypes: Iterable[str] = ("bfloat16", "fp8"),
             kernel_source: str | None = None, fp8_net_of: str | None = None,
             device: str | None = None, nvfp4_net_of: str | None = None,
             by_kernel: bool = False) -> list[dict]:
    """GEMM latency tables: Y = X W^T, X m x k, W n x k; latency ms -> s. ``dtypes``
    ["fp8_block"] / ["nvfp4"] read the block-scaled rows (with the kernel_source that table
    measured them with: TRT-LLM's torch_flow, or deepgemm for fp8_block on B200), fitted
    as ``gemm[fp8_block]`` / ``gemm[nvfp4]`` with those formats' bytes (scales included).

    ``fp8_net_of``: the folder (under calibration/sources/measured/) of the same device and
    TRT-LLM version's quantize tables; per-tensor ``fp8`` rows are then net of the dynamic
    activation quantisation they include (``fp8_quantize_times``, same (m, k): the grids
    match, nothing is interpolated), floored at the larger of the GEMM's fp8 roofline on
    ``device`` (``fp8_gemm_floor_s``: memory and compute) and the file's fastest directly measured GEMM (its
    non-fp8 rows: the CUDA-graph floor every kernel pays; a difference of two measurements
    can fall below it where the quantise is most of a small GEMM's time).

    ``nvfp4_net_of``: likewise for the ``nvfp4`` rows (W4A4). Both collectors hand the timed
    layer a bf16 input, so every nvfp4 call includes the activation's fp4 quantise:
    TensorRT-LLM's ``NVFP4LinearMethod._input_prepare`` runs ``torch.ops.trtllm.fp4_quantize``
    with the ``input_scale`` the collector loads (a given global scale, 16-element e4m3 block
    scales computed in the kernel: one pass), vLLM's compressed-tensors W4A4 scheme
    ``scaled_fp4_quant`` (static ``input_global_scale``). No fp4 quantise table was measured
    (aiconfigurator-core 0.12.0 quantize tables are fp8 only), so the nearest measured kernel
    stands for it: the same framework version's static per-tensor quantise
    (``scale_matrix_perf``: one pass over the same bf16 input with a given scale,
    ``static_quantize_times``) at the same (m, k); it writes 1 B per element where fp4
    writes 0.5 + 1/16, which matters only on calls large enough to be bandwidth-bound. Floored
    at the nvfp4 roofline (``gemm_floor_s`` at 0.5 + 1/16 B per element, the fp4 peak) and
    the file's fastest directly measured GEMM of another dtype (the CUDA-graph floor). vLLM's
    and SGLang's rows are netted the same way by their own version's ``scale_matrix_perf``
    (vLLM ``static_scaled_fp8_quant``).

    ``by_kernel``: the rows make a table of their kernel, ``table`` = ``<dtype>@<kernel>``
    (``profile.gemm_key``, the kernel by calibration/gemm_kernels.yaml of ``kernel_source``):
    another engine's GEMM table of the format next to the device's reference one (the
    grouped GEMMs' ``aic_moe(by_kernel=True)``); a ``kernel_source`` without a label is an
    error."""
    keep = set(dtypes)
    labels: dict[str, str] = {}
    if by_kernel:
        from ..profile import gemm_key
        from .moe_kernels import kernel_labels

        labels = kernel_labels("gemm")
    # gemm dtype -> (quantise seconds by (m, k), the option and the table it names, bytes per
    # element and tensor-core peak of the roofline floor)
    nets: dict[str, tuple[dict, str, str, float, float]] = {}
    if fp8_net_of is not None or nvfp4_net_of is not None:
        if device is None:
            raise ValueError("aic_gemm: fp8_net_of / nvfp4_net_of need device (the roofline floor)")
        from ..specs import registry

        spec = registry.get_device(device)
        if fp8_net_of is not None:
            nets["fp8"] = (fp8_quantize_times(measured_root(path) / fp8_net_of), "fp8_net_of",
                           fp8_net_of, 1.0, spec.peak_tflops["fp8"])
        if nvfp4_net_of is not None:
            nets["nvfp4"] = (static_quantize_times(measured_root(path) / nvfp4_net_of),
                             "nvfp4_net_of", nvfp4_net_of, NVFP4_ELEM_BYTES,
                             spec.peak_tflops["fp4"])
    netted = set(nets)
    out = []
    src = source_label(path)
    rows = read_rows(path)
    kernel_floor = min((row["latency"] * MS for row in rows if row["gemm_dtype"] not in netted),
                       default=0.0) if netted else 0.0
    for row in rows:
        if row["gemm_dtype"] not in keep or row["gemm_dtype"] not in DTYPES:
            continue
        if kernel_source and row.get("kernel_source") != kernel_source:
            continue
        params = {"dtype": DTYPES[row["gemm_dtype"]], "m": int(row["m"]), "n": int(row["n"]),
                  "k": int(row["k"])}
        if by_kernel:
            kernel = row.get("kernel_source")
            if kernel not in labels:
                raise ValueError(f"{src}: kernel_source {kernel!r} has no kernel label "
                                 "(calibration/gemm_kernels.yaml)")
            params["table"] = gemm_key(params["dtype"], labels[kernel])
        time_s = row["latency"] * MS
        stats = {"kernel_source": row.get("kernel_source")}
        if row["gemm_dtype"] in nets:
            quant, option, table, elem_bytes, peak = nets[row["gemm_dtype"]]
            mk = (params["m"], params["k"])
            if mk not in quant:
                raise ValueError(f"{src}: {row['gemm_dtype']} row m={mk[0]} k={mk[1]} has no "
                                 f"quantize row in {table} ({option} needs the same (m, k) "
                                 "grid)")
            floor = max(kernel_floor,
                        gemm_floor_s(params["m"], params["n"], params["k"],
                                     spec.memory_bandwidth_gbps, peak, elem_bytes))
            stats.update(measured_s=time_s, quantize_s=quant[mk])
            time_s = max(time_s - quant[mk], floor)
        out.append(record("gemm", params, time_s, src, **stats))
    return out


def measured_root(path: str | Path) -> Path:
    """calibration/sources/measured/ of a table path under it."""
    parts = Path(path).parts
    if "measured" not in parts:
        raise ValueError(f"{path}: not under calibration/sources/measured/")
    return Path(*parts[:len(parts) - parts[::-1].index("measured")])


def fp8_quantize_times(folder: str | Path) -> dict[tuple[int, int], float]:
    """(m, k) -> seconds of TRT-LLM's dynamic per-tensor bf16 -> fp8 activation quantisation
    (``torch.ops.tensorrt_llm.quantize_e4m3_per_tensor``: an amax pass for the scale, then
    the quantise), from aiconfigurator's collector/trtllm/collect_computescale.py tables:
    ``scale_matrix_perf`` = the static quantise (``static_quantize_e4m3_per_tensor``),
    ``computescale_perf`` = dynamic - static (floored at 0 by the collector); their sum is
    the dynamic kernel's time, which aiconfigurator's fp8 GEMM rows include (collect_gemm.py
    loads no ``input_scale``, so TRT-LLM's FP8QDQLinearMethod quantises dynamically)."""
    folder = Path(folder)
    total: dict[tuple[int, int], float] = {}
    for name in ("scale_matrix_perf.parquet", "computescale_perf.parquet"):
        for row in read_rows(folder / name):
            if row.get("quant_dtype", "fp8") != "fp8":
                continue
            mk = (int(row["m"]), int(row["k"]))
            total[mk] = total.get(mk, 0.0) + row["latency"] * MS
    return total


def static_quantize_times(folder: str | Path) -> dict[tuple[int, int], float]:
    """(m, k) -> seconds of one framework version's static per-tensor bf16 -> fp8 quantise
    (aiconfigurator ``scale_matrix_perf``: TensorRT-LLM ``static_quantize_e4m3_per_tensor``,
    vLLM ``static_scaled_fp8_quant``): one pass over the bf16 input with a given scale, the
    measured kernel ``aic_gemm(nvfp4_net_of=...)`` nets the nvfp4 rows' fp4 quantise by."""
    return {(int(r["m"]), int(r["k"])): r["latency"] * MS
            for r in read_rows(Path(folder) / "scale_matrix_perf.parquet")
            if r.get("quant_dtype", "fp8") == "fp8"}


def aic_quantize(folder: str | Path, mode: str = "dynamic", min_bytes: float = 0.0) -> list[dict]:
    """The measured bf16 -> fp8 per-tensor activation quantize kernel as ``elementwise``
    records of kind ``cast`` (elems = m x k, bf16 in), from aiconfigurator's quantize tables
    (``collector/trtllm/collect_computescale.py``): ``mode`` "dynamic" = the amax pass plus the
    quantise (``scale_matrix_perf`` + ``computescale_perf``, what TRT-LLM's
    ``quantize_e4m3_per_tensor`` runs and what ``ops.fp8_cast`` models: an fp8 training
    recipe's cast of a GEMM operand), "static" = the quantise with a given scale alone
    (``scale_matrix_perf``: ``static_quantize_e4m3_per_tensor``). ``min_bytes``: drop calls
    that move fewer bytes (``ops.FP8_CAST_BYTES`` = 5 per element dynamic, 3 static), where the
    kernels' fixed time (8-11 us dynamic, 1.3-2 us static, measured) rather than the bandwidth
    sets the time.

    Inference's activation quantise kernels (``ops.activation_quant_ops``, engines/<id>.yaml
    ``quantization.fp8_activation``) read the two tables apart: mode "static" as kernel kind
    ``fp8_quant`` (the quantise pass, 3 B per element), mode "computescale" = ``computescale_perf``
    alone as kind ``fp8_amax`` (the dynamic scale's amax pass over the bf16 input, 2 B per
    element read; TensorRT-LLM cudaFp8Utils.cu ``invokeComputeScalesAndQuantizeMatrix``
    PER_TENSOR: cudaMemsetAsync of the scale, ``computeFP8QuantizeScale``, then
    ``invokeQuantizeMatrix``)."""
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"aic_quantize: mode {mode!r} is not one of {sorted(QUANTIZE_MODES)}")
    folder = Path(folder)
    if mode == "dynamic":
        times = fp8_quantize_times(folder)
    else:
        table = "scale_matrix_perf.parquet" if mode == "static" else "computescale_perf.parquet"
        times = {(int(r["m"]), int(r["k"])): r["latency"] * MS
                 for r in read_rows(folder / table) if r.get("quant_dtype", "fp8") == "fp8"}
    src = source_label(folder / "scale_matrix_perf.parquet")
    kind, per_elem = QUANTIZE_MODES[mode]
    return [record("elementwise", {"op": kind, "elems": m * k, "dtype": "bf16"}, t, src,
                   m=m, k=k, mode=mode)
            for (m, k), t in sorted(times.items()) if per_elem * m * k >= min_bytes]


#: aic_quantize mode -> (elementwise kernel kind it is the rate of, bytes moved per element)
QUANTIZE_MODES = {"dynamic": ("cast", 5.0), "static": ("fp8_quant", 3.0),
                  "computescale": ("fp8_amax", 2.0)}


def fp8_quantize_rate(folder: str | Path, device: str, profile, *, min_bytes: float = 1e8,
                      holdout: float = 0.3, seed: int = 0, mode: str = "dynamic",
                      ) -> tuple[float, list, dict]:
    """The measured dynamic quantize kernel of ``folder`` (``aic_quantize``) as the element rate
    of ``cast`` kernels in ``profile`` (``CalibrationProfile.elementwise_rate["cast"]``, what
    the core times ``ops.fp8_cast`` at: kernel_overhead_s + elements / rate where the rate
    binds), on calls of at least ``min_bytes`` (10^8 B, 20 M elements, as the H100 bandwidth
    fit's quantize records: training casts, m = tokens of a micro-batch, are this size; smaller
    calls are dominated by the kernels' fixed time, 8-11 us measured, which the core counts as
    one ``kernel_overhead_s``). The rate is the least-squares one in relative error
    (``_relative_rate``), not the best point's (``fit.memory.elementwise_rate``): the amax
    kernel's fixed time stays in every call the rate has to carry. Held out as every table:
    fitted on 70 %, the core's time of the rest against their measurements. Returns (rate,
    [FitError elementwise.cast], {"elementwise.cast": p90 |log ratio|}). Kept out of
    ``fit_profile``: on a device without bandwidth records (B200, B300, GB200, GB300)
    elementwise records would also fit its memory curve (docs/calibration.md).

    ``mode`` (``aic_quantize``): "dynamic" gives ``cast``, "static" ``fp8_quant`` (the
    quantise pass alone) and "computescale" ``fp8_amax`` (the dynamic scale's amax pass), the kinds
    inference's activation quantise kernels are timed at; the table is
    ``elementwise.<kind>``."""
    import numpy as np

    from ..profile import FitError
    from ..specs import registry
    from .fit.curves import errors, holdout_split, log_ratio_quantiles, round4
    from .fit.memory import elementwise_times

    dev = registry.get_device(device)
    kind = QUANTIZE_MODES[mode][0] if mode in QUANTIZE_MODES else mode
    recs = aic_quantize(folder, mode, min_bytes)
    if len(recs) < 2:
        raise ValueError(f"{folder}: fewer than 2 quantize calls of >= {min_bytes:g} bytes")
    overhead = profile.kernel_overhead_s
    rate = round4(_relative_rate(recs, overhead))
    fit_idx, test_idx = holdout_split(len(recs), holdout, seed, f"elementwise.{kind}")
    trial = profile.model_copy(update={"elementwise_rate": {
        **profile.elementwise_rate, kind: _relative_rate([recs[i] for i in fit_idx], overhead)}})
    test = [recs[i] for i in test_idx]
    meas = np.array([r["time_s"] for r in test])
    if mode == "dynamic":
        pred = elementwise_times(test, dev, trial)
    else:  # the operator inference runs (ops.fp8_quant_pass), at its own bytes per element
        from ..ops import fp8_quant_pass
        from ..roofline import Roofline, op_times

        per, roof = QUANTIZE_MODES[mode][1], Roofline(dev, trial)
        pred = np.array([float(op_times([fp8_quant_pass(kind, kind, e, e * per)], roof).time[0])
                         for e in (float(r["params"]["elems"]) for r in test)])
    med, p90, logp90 = errors(pred, meas)
    err = FitError(table=f"elementwise.{kind}", n_fit=len(fit_idx), n_test=len(test_idx),
                   median_ape=round4(med), p90_ape=round4(p90),
                   log_ratio_quantiles=log_ratio_quantiles(pred, meas))
    return rate, [err], {f"elementwise.{kind}": round4(logp90)}


def fp8_quantize_rates(folder: str | Path, device: str, profile,
                       modes: Iterable[str] = ("dynamic", "static", "computescale"),
                       ) -> tuple[dict[str, float], list, dict[str, float]]:
    """Every quantize kind the shipped profiles carry from one device's TRT-LLM quantize
    folder (``fp8_quantize_rate`` per mode: ``cast``, ``fp8_quant``, ``fp8_amax``), as
    (elementwise_rate entries, FitErrors, uncertainty entries) to merge into the profile
    (calibration/references.yaml header: how the six reference profiles got them)."""
    rates, errs, spread = {}, [], {}
    for mode in modes:
        rate, err, unc = fp8_quantize_rate(folder, device, profile, mode=mode)
        rates[QUANTIZE_MODES[mode][0]] = rate
        errs += err
        spread |= unc
    return rates, errs, spread


def _relative_rate(recs: list[dict], overhead: float) -> float:
    """Elements per second r minimising sum ((overhead + e / r) / t - 1)^2 over records of
    e elements measured at t seconds (closed form in 1 / r)."""
    e = [float(r["params"]["elems"]) for r in recs]
    t = [r["time_s"] for r in recs]
    num = sum(x / y * (1.0 - overhead / y) for x, y in zip(e, t, strict=True))
    den = sum((x / y) ** 2 for x, y in zip(e, t, strict=True))
    return den / num


def fp8_gemm_floor_s(m: int, n: int, k: int, bandwidth_gbps: float,
                     peak_tflops: float) -> float:
    """An fp8 GEMM's roofline: the larger of its memory time (fp8 activations m x k and
    weights n x k read once, the bf16 output m x n written once, at the device's HBM
    bandwidth) and its compute time (2 m n k at the datasheet dense fp8 peak)."""
    return gemm_floor_s(m, n, k, bandwidth_gbps, peak_tflops, 1.0)


#: NVFP4 bytes per element: e2m1 values (0.5 B) plus one e4m3 scale per 16 elements
#: (perfmodel.dtypes ``nvfp4``; the fp32 per-tensor scale is negligible)
NVFP4_ELEM_BYTES = 0.5 + 1.0 / 16.0


def gemm_floor_s(m: int, n: int, k: int, bandwidth_gbps: float, peak_tflops: float,
                 elem_bytes: float) -> float:
    """A quantised GEMM's roofline: the larger of its memory time (activations m x k and
    weights n x k at ``elem_bytes`` per element read once, the bf16 output m x n written once,
    at the device's HBM bandwidth) and its compute time (2 m n k at ``peak_tflops``)."""
    return max(((m * k + n * k) * elem_bytes + 2 * m * n) / (bandwidth_gbps * 1e9),
               2.0 * m * n * k / (peak_tflops * 1e12))


def aic_attention(path: str | Path, phase: str, *, head_dim: int | Iterable[int] | None = 128,
                  windows: Iterable[int] = (0,), attn_dtype: str = "bfloat16",
                  kv_cache_dtype: str = "bfloat16",
                  kernel_source: str | None = "torch_flow") -> list[dict]:
    """Attention tables. ``phase`` "prefill" (context table: ``batch_size`` sequences of
    ``isl`` tokens, nothing cached: q_len = kv_len = isl, causal) or "decode" (generation
    table: one new token per sequence with ``step`` tokens already cached: q_len = 1,
    kv_len = step + 1). ``head_dim``: one head dim, several, or None (all); ``windows``: the
    sliding windows (``window_size``, 0 = full causal attention) to keep. A windowed row
    whose window does not bind (window >= kv_len: every key in reach) is left out: the core
    runs such a call as full attention (``ops._attention_core``)."""
    if phase not in ("prefill", "decode"):
        raise ValueError("phase must be prefill or decode")
    dims = None if head_dim is None else (
        {int(head_dim)} if isinstance(head_dim, int) else {int(h) for h in head_dim})
    keep = {int(w) for w in windows}
    out = []
    src = source_label(path)
    for row in read_rows(path):
        window = int(row.get("window_size", 0) or 0)
        if window not in keep or row.get("beam_width", 1) != 1:
            continue
        if row["attn_dtype"] != attn_dtype or row["kv_cache_dtype"] != kv_cache_dtype:
            continue
        if dims is not None and row["head_dim"] not in dims:
            continue
        if kernel_source and row.get("kernel_source", kernel_source) != kernel_source:
            continue
        isl = int(row["isl"])
        q, kv = (isl, isl) if phase == "prefill" else (1, int(row["step"]) + 1)
        if window and window >= kv:
            continue
        params = {"phase": phase, "backend": row.get("kernel_source", "trtllm"),
                  "dtype": DTYPES[attn_dtype], "kv_dtype": DTYPES[kv_cache_dtype],
                  "batch": int(row["batch_size"]), "heads": int(row["num_heads"]),
                  "kv_heads": int(row["num_key_value_heads"]), "head_dim": int(row["head_dim"]),
                  "q_len": q, "kv_len": kv, "causal": True}
        if window:
            params["window"] = window
        out.append(record("attention", params, row["latency"] * MS, src))
    return out


#: the MLA geometry aiconfigurator's context-MLA collector times (DeepSeek-V3's:
#: collector/trtllm/collect_mla.py ``Scenario`` at ai-dynamo/aiconfigurator 095f58a, which
#: refuses any other geometry; collector/sglang/collect_mla.py the same model's)
AIC_MLA_GEOMETRY = {"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                    "qk_rope_head_dim": 64, "v_head_dim": 128}


def aic_mla_context(path: str | Path, *, kv_cache_dtype: str = "bfloat16",
                    kernel_source: str | None = None) -> list[dict]:
    """Context-MLA tables (``context_mla_perf.parquet``, op ``mla_context``): ``batch_size``
    sequences of ``isl`` tokens, nothing cached (q_len = kv_len = isl, causal), on
    ``num_heads`` query heads of one GPU (the collector's heads / TP: ``num_heads //
    tp_size``; ``tp_size`` is only the label of that split). The timed call is the engine's
    context MLA (collector/trtllm/collect_mla.py at ai-dynamo/aiconfigurator 095f58a:
    ``TrtllmAttention.forward`` with ``AttentionInputType.context_only`` on Q [tokens, heads x
    192], K [tokens, heads x 192] and V [tokens, heads x 128], the latent written to the KV
    cache): decompressed multi-head attention with Q / K of qk_nope + qk_rope head dims and V
    of v_head_dim, one KV head per query head (``AIC_MLA_GEOMETRY``, ``variant`` "mla": the
    core's MLA prefill core, ``ops.attention_ops``). ``kv_cache_dtype`` selects the rows: with
    an fp8 cache the engine quantises Q, K and V for an fp8 context kernel (TensorRT-LLM's
    ``mFP8ContextMLA`` on SM 90 / 100 / 103, cpp/tensorrt_llm/thop/attentionOp.cpp; SGLang's
    trtllm_mla ``_quantize_fp8_qkv`` since v0.5.7), so those rows are fp8 kernels (``dtype``
    fp8); ``mla_dtype`` (activations) is bfloat16 in every row. ``kernel_source``: keep one
    backend (None: all)."""
    out = []
    src = source_label(path)
    fp8 = DTYPES[kv_cache_dtype] == "fp8"
    for row in read_rows(path):
        if row.get("op_name", "mla_context") != "mla_context":
            continue
        if row["kv_cache_dtype"] != kv_cache_dtype or row["mla_dtype"] != "bfloat16":
            continue
        if kernel_source and row.get("kernel_source") != kernel_source:
            continue
        isl, heads = int(row["isl"]), int(row["num_heads"])
        g = AIC_MLA_GEOMETRY
        params = {"phase": "prefill", "variant": "mla",
                  "backend": row.get("kernel_source", "default"),
                  "dtype": "fp8" if fp8 else "bf16", "kv_dtype": DTYPES[kv_cache_dtype],
                  "batch": int(row["batch_size"]), "heads": heads, "kv_heads": heads,
                  "head_dim": g["qk_nope_head_dim"] + g["qk_rope_head_dim"], **g,
                  "q_len": isl, "kv_len": isl, "causal": True}
        out.append(record("attention", params, row["latency"] * MS, src,
                          tp_size=int(row["tp_size"])))
    return out


def aic_nccl(path: str | Path, dtype: str = "half") -> list[dict]:
    """nccl-tests tables: ``message_size`` in ELEMENTS of ``nccl_dtype`` (half = 2 bytes);
    ``latency`` = out-of-place time in ms; one node (scope intra)."""
    size = {"half": 2, "int8": 1}[dtype]
    out = []
    src = source_label(path)
    for row in read_rows(path):
        if row["nccl_dtype"] != dtype or row["op_name"] not in NCCL_OPS:
            continue
        params = {"collective": NCCL_OPS[row["op_name"]], "group_size": int(row["num_gpus"]),
                  "scope": "intra", "dtype": DTYPES[dtype],
                  "bytes": int(row["message_size"]) * size}
        out.append(record("collective", params, row["latency"] * MS, src))
    return out


def aic_scale_matrix(path: str | Path, min_bytes: float = 0.0) -> list[dict]:
    """Static BF16 -> FP8 quantize of an m x k matrix: reads 2 B and writes 1 B per element
    (a memory-bound kernel). ``min_bytes``: drop working sets that fit in L2."""
    out = []
    src = source_label(path)
    for row in read_rows(path):
        moved = 3 * int(row["m"]) * int(row["k"])
        if moved < min_bytes:
            continue
        params = {"op": "quantize_bf16_fp8", "bytes": moved}
        out.append(record("memory", params, row["latency"] * MS, src,
                          m=int(row["m"]), k=int(row["k"])))
    return out


# ---- vidur (microsoft/vidur profiling data) -----------------------------------------------

def vidur_network(path: str | Path, collectives: Iterable[str] = ("all_reduce", "send_recv"),
                  scopes: Iterable[str] = ("intra", "inter")) -> list[dict]:
    """NCCL via torch.distributed, fp16 buffers; ``size`` in bytes (send_recv: bytes sent);
    median of three samples, ms. A configuration with num_workers > devices_per_node spans
    nodes (scope inter, ``per_node`` = devices_per_node)."""
    out = []
    src = source_label(path)
    keep_c, keep_s = set(collectives), set(scopes)
    for row in read_rows(path):
        coll = row["collective"]
        n, per_node = int(row["num_workers"]), int(row["devices_per_node"])
        scope = "inter" if n > per_node else "intra"
        if coll not in keep_c or scope not in keep_s:
            continue
        params = {"collective": coll, "group_size": n, "scope": scope, "dtype": "fp16",
                  "bytes": int(row["size"])}
        if scope == "inter":
            params["per_node"] = per_node
        out.append(record("collective", params, row[f"time_stats.{coll}.median"] * MS, src,
                          min_s=row[f"time_stats.{coll}.min"] * MS,
                          max_s=row[f"time_stats.{coll}.max"] * MS))
    return out


# op column -> (record op, width: "h" hidden or "f" FFN / tp)
VIDUR_ELEMENTWISE = {"add": ("add", "h"), "input_layernorm": ("rmsnorm", "h"),
                     "post_attention_layernorm": ("rmsnorm", "h"),
                     "mlp_act": ("silu_and_mul", "f")}


def vidur_elementwise(path: str | Path, min_bytes: float = 0.0) -> list[dict]:
    """Memory-bound ops of a transformer layer (fp16, kernel time, median of 20 repeats):
    residual add (reads 2, writes 1 per element), RMSNorm (1, 1), SiLU-and-mul over the
    gated FFN width / tp (2, 1). ``min_bytes`` drops L2-resident working sets."""
    from .fit import elementwise_bytes

    out = []
    src = source_label(path)
    for row in read_rows(path):
        tokens, tp = int(row["num_tokens"]), int(row["num_tensor_parallel_workers"])
        for col, (op, width) in VIDUR_ELEMENTWISE.items():
            value = row.get(f"time_stats.{col}.median")
            if value in (None, "") or (width == "h" and tp != 1):
                continue  # norms and adds do not depend on tp: keep them once
            elems = tokens * (int(row["n_embd"]) if width == "h"
                              else int(row["n_expanded_embd"]) // tp)
            params = {"op": op, "dtype": "fp16", "elems": elems}
            if elementwise_bytes(params) < min_bytes:
                continue
            out.append(record("elementwise", params, float(value) * MS, src, column=col,
                              tokens=tokens, tp=tp))
    return out


# ---- published points (shared/reference group C, copied with their citations) ------------

# gpu-stream (te42kyfo/gpu-benches gpu-stream/main.cu): arrays of 128 Mi + 2 doubles; triad
# reads two and writes one.
STREAM_TRIAD_BYTES = 3 * (128 * 1024 * 1024 + 2) * 8
_SIZE = re.compile(r"^(\d+)(KiB|MiB|GiB)$")


def _payload_bytes(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"payload {text!r}")
    return int(m[1]) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[m[2]]


def allreduce_busbw_time(nbytes: float, n: int, busbw_gbps: float) -> float:
    """Time of an all-reduce of ``nbytes`` over ``n`` ranks reported at ``busbw_gbps`` bus
    bandwidth: bytes x 2(n-1)/n / busbw (nccl-tests doc/PERFORMANCE.md, all-reduce bus
    bandwidth; ``comm.bus_factor``)."""
    return nbytes * 2 * (n - 1) / n / (busbw_gbps * 1e9)


def published(path: str | Path, ids: Iterable[str]) -> list[dict]:
    """Records from published group-C points (``published_points.json``):

    * ``C-HBM-STREAM-*``: one ``memory`` record, STREAM triad (best over block sizes) on
      3 x 1 GiB arrays;
    * ``C-FA2-*-PEAK``: one ``attention`` backward record: FlashAttention-2's reported
      maximum fwd+bwd rate (seqlen 16k, batch 1, 16 heads of 128, non-causal) taken as the
      backward kernel's rate (the paper gives no split; backward is 2.5/3.5 of the FLOPs);
    * ``C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA``: the 4-node (8 GPUs each) all_reduce sweep as
      ``collective`` inter records, time = bytes x 2(n-1)/n / busbw; the 32 and 64 KiB points
      (slower than every size up to 2 MiB) are dropped as warm-up artefacts.
    """
    from .fit import attention_op

    points = {p["id"]: p for p in json.loads(Path(path).read_text())}
    out = []
    for pid in ids:
        p = points[pid]
        m = p["measured"]
        if pid.startswith("C-HBM-STREAM-"):
            t = STREAM_TRIAD_BYTES / (m["triad_GBps_max"] * 1e9)
            out.append(record("memory", {"op": "stream_triad", "bytes": STREAM_TRIAD_BYTES},
                              t, pid, triad_GBps=m["triad_GBps_max"]))
        elif pid.startswith("C-FA2-") and pid.endswith("-PEAK"):
            params = {"phase": "backward", "backend": "flash-attn-2", "dtype": "bf16",
                      "batch": 1, "heads": 16, "kv_heads": 16, "head_dim": 128,
                      "q_len": 16384, "kv_len": 16384, "causal": False}
            flops = float(attention_op([{"params": params}]).flops[0])
            out.append(record("attention", params, flops / (m["max_tflops"] * 1e12), pid,
                              max_tflops=m["max_tflops"]))
        elif pid == "C-NCCL-ALLREDUCE-B200-1vs4NODES-EFA":
            n = 32
            for payload, busbw in zip(m["payload"], m["busbw_GBps_4nodes"], strict=True):
                nb = _payload_bytes(payload)
                if nb < 128 * 2**10:
                    continue
                t = allreduce_busbw_time(nb, n, busbw)
                params = {"collective": "all_reduce", "group_size": n, "scope": "inter",
                          "dtype": None, "bytes": nb, "per_node": 8}
                out.append(record("collective", params, t, pid, busbw_GBps=busbw))
        else:
            raise ValueError(f"no converter for published point {pid}")
    return out


# MoE tables: upstream moe_dtype -> (core compute dtype); formats the core has no name for yet
# (fp8_block, nvfp4, the mxfp4 mixes, int4 weight-only) are skipped unless asked for by name
MOE_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8"}
# kernels whose first GEMM is gate+up with a gated activation (SwiGLU); ``*_nongated`` runs
# one up projection (ReLU^2 experts)
MOE_NONGATED = "moe_torch_flow_nongated"


def aic_moe(path: str | Path, dtypes: Iterable[str] = ("bfloat16", "fp8"),
            distribution: str = "balanced", kernel_sources: Iterable[str] | None = None,
            by_kernel: bool = False, nongated: Iterable[Iterable[int]] = (),
            as_format: str | None = None, weight_format: str | None = None) -> list[dict]:
    """Fused MoE tables (``moe_perf``): one MoE layer's routed experts on one GPU, latency ms
    -> s. ``num_tokens`` tokens enter the layer, each routed to ``topk`` of ``num_experts``
    experts of ``hidden_size`` x ``inter_size``; experts are split ``moe_ep_size`` ways (EP)
    and each expert's intermediate dimension ``moe_tp_size`` ways. ``distribution`` keeps one
    routing distribution (``balanced``: tokens spread evenly over the experts, the core's
    uniform routing; ``power_law_*``: skewed). Params: tokens, hidden, inter, experts, topk,
    tp, ep, gated, dtype (the core's dtype name).

    ``by_kernel``: each kernel's rows make their own table, ``table`` = ``<dtype>@<kernel>``
    (``profile.moe_key``, the kernel by calibration/moe_kernels.yaml of ``kernel_source``): another
    engine's tables (vLLM, SGLang), next to the device's reference (TensorRT-LLM) table of the
    format; a ``kernel_source`` without a label is an error. ``nongated``: (hidden, inter,
    experts, topk) shapes whose experts have one up projection (ReLU^2, Nemotron-3), for
    tables whose ``kernel_source`` does not say so (TensorRT-LLM's ``*_nongated``).

    ``as_format`` (with ``weight_format``): the rows join the table of another format of the
    same kernel, ``<as_format>@<kernel>``, as rows that read ``weight_format`` weights
    (params ``dtype`` = ``as_format``, ``weight_format``): SGLang 0.5.10's int4 W4A16 Marlin
    rows (``int4_wo``, group 128, bf16 scales) in the W4A16 MXFP4 Marlin table, the same
    fused_marlin_moe kernel on 4-bit weights; the fit reads each row's efficiency against its
    own bytes (``fit.moe.moe_precision``), so the table prices MXFP4 at MXFP4's bytes."""
    from ..profile import moe_key
    from .moe_kernels import kernel_labels

    labels = kernel_labels()
    keep = {d: MOE_DTYPES.get(d, d) for d in dtypes}
    kernels = set(kernel_sources) if kernel_sources is not None else None
    plain = {tuple(int(x) for x in shape) for shape in nongated}
    out = []
    src = source_label(path)
    for row in read_rows(path):
        if row["moe_dtype"] not in keep or row.get("distribution") != distribution:
            continue
        kernel = row.get("kernel_source")
        if kernels is not None and kernel not in kernels:
            continue
        shape = (int(row["hidden_size"]), int(row["inter_size"]), int(row["num_experts"]),
                 int(row["topk"]))
        params = {"dtype": as_format or keep[row["moe_dtype"]], "tokens": int(row["num_tokens"]),
                  "hidden": shape[0], "inter": shape[1], "experts": shape[2], "topk": shape[3],
                  "tp": int(row["moe_tp_size"]), "ep": int(row["moe_ep_size"]),
                  "gated": kernel != MOE_NONGATED and shape not in plain}
        if by_kernel:
            if kernel not in labels:
                raise ValueError(f"{src}: kernel_source {kernel!r} has no kernel label "
                                 "(calibration/moe_kernels.yaml)")
            params["table"] = moe_key(params["dtype"], labels[kernel])
        if weight_format:
            params["weight_format"] = weight_format
        out.append(record("moe", params, row["latency"] * MS, src, kernel_source=kernel))
    return out


# DeepEP dispatch / combine tables of SGLang's wide-EP collector: one row per (nodes, hidden,
# tokens per rank, top-k, experts) (normal mode also per SM count); microseconds.
DEEPEP_MODES = {"ll": ("dispatch_avg_t_us", "combine_avg_t_us"),
                "normal": (("dispatch_transmit_us", "dispatch_notify_us"),
                           ("combine_transmit_us", "combine_notify_us"))}
US = 1e-6
# Routing groups a token keeps in the multi-node DeepEP collector: ``--num-topk-groups``
# default min(num_nodes, 4) (ai-dynamo/aiconfigurator collector/deep_collector/test_internode.py
# at 97c28ba6fcc0a1e29987f4848df5ba786d71653e, run with its defaults per its README.md).
INTERNODE_TOPK_GROUPS = 4


def aic_deepep(path: str | Path, mode: str, nodes: Iterable[int] | None = None,
               gpus_per_node: int = 8) -> list[dict]:
    """DeepEP all-to-all tables (``wideep_deepep_ll_perf`` / ``wideep_deepep_normal_perf``,
    SGLang collector): ``num_token`` tokens on each of ``node_num`` x ``gpus_per_node`` ranks,
    each routed to ``num_topk`` of ``num_experts`` experts; dispatch in fp8 with per-128-channel
    scales (the LL table's dispatch bandwidth x time = tokens x topk x (hidden + hidden/128 x 4
    + 16) bytes; the normal collector times the FP8 input first), combine in bf16. Records
    ``ep_dispatch_<mode>`` / ``ep_combine_<mode>`` collectives sized as the core sizes them
    (``moe_parallel.a2a_bytes``: tokens x copies x hidden x bytes per element, copies = topk
    for low latency, the expected destination ranks for normal); the normal table's
    several SM counts keep the fastest (a tuned deployment's choice). ``nodes``: keep these
    node counts (one node: scope intra; more: inter, ``per_node`` = gpus_per_node).

    Routing of the rows, as each collector drew it: one node (collector/deep_collector/
    test_intranode.py, ai-dynamo/aiconfigurator at 901d06862053ce18c2b2ba283aca1e44106d43ce)
    takes the top-k of i.i.d. scores, uniform routing; several nodes (test_internode.py at
    97c28ba6fcc0a1e29987f4848df5ba786d71653e, run without ``--num-topk-groups`` as the
    collector's README.md at 25e61f7b76d3fac77b06aa06517f1c527e56b961 says) route node-limited:
    the experts form one group per node (``scores.view(num_tokens, num_nodes, -1)``), a token
    keeps the ``min(num_nodes, 4)`` groups of highest max score and its top-k among them. The
    normal rows over several nodes are therefore sized with that routing,
    ``copies_per_token(..., domains=node_num, n_group=node_num, topk_group=min(node_num, 4))``,
    the unit the core uses for a model's group-limited routing: at 8 nodes 4.0 destination
    nodes instead of uniform routing's 5.29 (a simulation of the collector's gate on i.i.d.
    scores gives 3.98; tests/test_deepep_collector_routing.py); at 2 and 4 nodes every node is
    a selected group: uniform routing."""
    from ..moe_parallel import COMBINE_BYTES, DEEPEP_FP8_BYTES, a2a_bytes, copies_per_token

    if mode not in DEEPEP_MODES:
        raise ValueError(f"mode must be one of {sorted(DEEPEP_MODES)}")
    keep = set(nodes) if nodes is not None else None
    cols = DEEPEP_MODES[mode]
    best: dict[tuple, list[float]] = {}
    for row in read_rows(path):
        node_num = int(row["node_num"])
        if keep is not None and node_num not in keep:
            continue
        key = (node_num, int(row["hidden_size"]), int(row["num_token"]), int(row["num_topk"]),
               int(row["num_experts"]))
        times = [sum(float(row[c]) for c in ((col,) if isinstance(col, str) else col)) * US
                 for col in cols]
        old = best.get(key)
        best[key] = times if old is None else [min(a, b) for a, b in zip(old, times, strict=True)]
    out = []
    src = source_label(path)
    for (node_num, hidden, tokens, topk, experts), (t_disp, t_comb) in sorted(best.items()):
        n = node_num * gpus_per_node
        scope = "intra" if node_num == 1 else "inter"
        limit = {} if node_num == 1 else {"domains": node_num, "n_group": node_num,
                                          "topk_group": min(node_num, INTERNODE_TOPK_GROUPS)}
        copies = float(copies_per_token(mode, topk, experts, n, **limit))
        for phase, t, elem in (("dispatch", t_disp, DEEPEP_FP8_BYTES),
                               ("combine", t_comb, COMBINE_BYTES)):
            params = {"collective": f"ep_{phase}_{mode}", "group_size": n, "scope": scope,
                      "dtype": "fp8" if phase == "dispatch" else "bf16",
                      "bytes": float(a2a_bytes(tokens, copies, hidden, elem)),
                      "tokens": tokens, "hidden": hidden, "topk": topk, "experts": experts}
            if scope == "inter":
                params["per_node"] = gpus_per_node
            out.append(record("collective", params, t, src))
    return out


# Custom all-reduce tables (``custom_allreduce_perf``): the engine's own TP all-reduce call as
# it dispatches by size (aiconfigurator collector/collect_all_reduce.py: TensorRT-LLM
# ``AllReduce`` with strategy AUTO, vLLM ``tensor_model_parallel_all_reduce``, SGLang's
# CustomAllReduce), timed in CUDA graphs; ``message_size`` in ELEMENTS of ``allreduce_dtype``
# (the collector allocates [tokens, 4096] or [1, size] tensors of that many elements).
# TensorRT-LLM rows are graph-captured (one variant); across GB300 compute trays (TP 8 / 16 in
# one multi-node NVLink domain) its AUTO strategy takes the MNNVL kernels, which the table
# records by name (``TRTLLM_MNNVL_oneshot`` below ~64-128 KiB, ``_twoshot`` above: the GB300
# collection_meta.yaml, citing tensorrt_llm/_torch/distributed/ops.py and
# cpp/tensorrt_llm/thop/allreduceOp.cpp of v1.3.0rc20): all of them are the engine's call.
_TRTLLM_AR = ("TRTLLM", "TRTLLM_MNNVL_oneshot", "TRTLLM_MNNVL_twoshot")
CUSTOM_AR_VARIANTS = {"vllm": (("vLLM_custom_graph",), ("vLLM_custom_eager",)),
                      "sglang": (("SGLang_CustomAllReduce_graph",),
                                 ("SGLang_CustomAllReduce_eager",)),
                      "trtllm": (_TRTLLM_AR, _TRTLLM_AR)}


def aic_custom_allreduce(path: str | Path, engine: str, variant: str = "graph",
                         min_bytes: int = 512) -> list[dict]:
    """``custom_allreduce_<engine>`` collective records (scope intra, group = num_gpus),
    bytes = message_size x element size; ``variant`` graph (decode runs in CUDA graphs) or
    eager (vLLM / SGLang only; TensorRT-LLM's table is graph-captured). ``min_bytes`` drops
    the 128-element (256 B) row: below any TP all-reduce of a model (one token's hidden
    vector) and below the smallest size of the NCCL tables it is compared with."""
    if engine not in CUSTOM_AR_VARIANTS or variant not in ("graph", "eager"):
        raise ValueError(f"engine must be one of {sorted(CUSTOM_AR_VARIANTS)}, variant graph "
                         "or eager")
    kernels = CUSTOM_AR_VARIANTS[engine][variant == "eager"]
    size = {"bfloat16": 2, "float16": 2, "half": 2}
    out = []
    src = source_label(path)
    for row in read_rows(path):
        kernel = row.get("kernel_source")
        if kernel not in kernels or row["allreduce_dtype"] not in size:
            continue
        nbytes = int(row["message_size"]) * size[row["allreduce_dtype"]]
        if nbytes < min_bytes:
            continue
        params = {"collective": f"custom_allreduce_{engine}", "group_size": int(row["num_gpus"]),
                  "scope": "intra", "dtype": DTYPES[row["allreduce_dtype"]], "bytes": nbytes}
        out.append(record("collective", params, row["latency"] * MS, src, kernel_source=kernel))
    return out
