"""MoE tables: per format (compute dtype, or a ``profile.MOE_MIXED`` weight-only format), the efficiency of the core's grouped GEMM (``ops.grouped_gemm``)
over (m: rows per active expert, groups: active experts per GPU, weights: n x k of one
expert's matrix).

A measured MoE layer (tokens routed top-k over E experts, EP ``ep`` ways, each expert's
intermediate dimension ``tp`` ways) is, as the core builds it (``ops.layer_forward_ops``),
two grouped GEMM calls on one GPU over its active experts ``ops.active_experts(E, k,
tokens) / ep``: up (gate+up fused when gated: n = 2 inter / tp, k = hidden) and down
(n = hidden, k = inter / tp), tokens x topk / ep rows in all. Both calls share (m, groups);
on the weights axis a record sits at the geometric mean of its two calls' n x k (a factor
sqrt(2) from either when gated), and one curve value per record is the inverse of the core's
time: eff = (bound_up + bound_down) / (t - 2 (kernel_overhead_s + moe_overhead_s)). The
core looks each call up at its own n x k; the held-out error, predicted through the core,
includes that difference. The measured op also routes, permutes tokens,
applies the activation and finalizes (un-permutes and weights) the expert outputs: a fixed
part of that is ``moe_overhead_s`` (``moe_floor``: the fastest record's floor, ~20 us on
H100/H200, shared by the two calls), the part that grows with the work is carried by the
efficiency; the core's separate activation and combine kernels count it once more (small
next to the GEMMs except at the smallest sizes).

Each table is installed under its format's key (``moe.<format>``: bf16, fp8, fp8_block, nvfp4,
w4a16_mxfp4, ...; another engine's table of a format under ``moe.<format>@<kernel>``, from the
converter's ``by_kernel`` records, e.g. ``w4a16_mxfp4@triton_ogs``) with the kernel its records ran (``moe_kernel``, from their
``kernel_source`` through calibration/moe_kernels.yaml), which is how the core picks it
(``CalibrationProfile.moe_table``: by weight format, compute dtype and the engine's kernel).
The core uses this curve for a GEMM with ``groups > 1`` (``roofline.op_times``); a call over
one expert or fewer is a dense GEMM of that expert, on the dense curve. Records with at most
one active expert per GPU are therefore left out of the table (the core would not read the
curve for them).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ... import ops as O
from ...profile import MOE_MIXED, CalibrationProfile, moe_key_format
from ...roofline import Roofline, op_times
from ...specs.hardware import DeviceSpec
from ..moe_kernels import kernel_labels
from .curves import round4
from .table import (
    OVERHEAD_FLOOR_FRACTION,
    Table,
    invert_time,
    ok_records,
    precision_for,
    unit_profile,
)

CALLS = 2  # grouped GEMM calls per record: up (gate+up) and down
AXES = ("m", "groups", "weights")  # rows per problem, problems per call, n x k per problem


def moe_precision(dtype: str) -> O.Precision:
    """The core's precision of a table's grouped GEMMs: all operands in ``dtype``, or for a
    weight-only / mixed format (``profile.MOE_MIXED``: weight format, activation dtype) as
    ``ops.Precision.inference`` runs it, weights dequantised to the activation dtype, whose
    tensor cores they use (the curve has its own key, ``profile.moe_format``)."""
    if dtype in MOE_MIXED:
        weight, act = MOE_MIXED[dtype]
        return O.Precision.inference(weight, act, act)
    return precision_for(dtype)


def moe_geometry(recs: list[dict]) -> dict[str, np.ndarray]:
    """Per record: rows (token-expert assignments on one GPU), groups (active experts on it),
    m = rows / groups, the up projection's n and the expert's hidden and inter (per GPU)."""
    p = {x: np.array([float(r["params"][x]) for r in recs]) for x in
         ("tokens", "hidden", "inter", "experts", "topk", "tp", "ep")}
    gated = np.array([bool(r["params"].get("gated", True)) for r in recs])
    rows = p["tokens"] * p["topk"] / p["ep"]
    groups = O.active_experts(p["experts"], p["topk"], p["tokens"]) / p["ep"]
    inter = p["inter"] / p["tp"]
    up_n = np.where(gated, 2.0, 1.0) * inter
    return {"rows": rows, "groups": groups, "m": rows / groups, "hidden": p["hidden"],
            "inter": inter, "up_n": up_n,
            # the record's point on the weights axis: the geometric mean of its two calls'
            # n x k (the core looks each call up at its own)
            "weights": np.sqrt(up_n * p["hidden"] * inter * p["hidden"])}


def moe_ops(recs: list[dict], dtype: str) -> list[O.Op]:
    """The core's two grouped GEMM calls of each record (up, down), vectorised over records."""
    g = moe_geometry(recs)
    prec = moe_precision(dtype)
    return [O.grouped_gemm("moe.expert.up", g["rows"], g["up_n"], g["hidden"], g["groups"], prec),
            O.grouped_gemm("moe.expert.down", g["rows"], g["hidden"], g["inter"], g["groups"],
                           prec)]


def moe_times(recs: list[dict], dtype: str, roof: Roofline) -> np.ndarray:
    """The core's time of each record's routed experts: up + down."""
    t = op_times(moe_ops(recs, dtype), roof).time
    return np.asarray(t[0] + t[1], float)


def moe_floor(t: np.ndarray, bound: np.ndarray, overhead: float) -> float:
    """Fixed time per grouped-GEMM call beyond ``overhead``: ``OVERHEAD_FLOOR_FRACTION`` of
    the fastest record, shared by its CALLS calls, less the kernel overhead, when the table
    sweeps down to the latency floor (>= 20 points spanning >= 100x in roofline bound); else
    0 (``attention_floor``'s rule)."""
    if len(t) < 20 or bound.max() < 100 * bound.min():
        return 0.0
    return max(0.0, OVERHEAD_FLOOR_FRACTION * float(t.min()) / CALLS - overhead)


def table_kernel(recs: list[dict]) -> str | None:
    """The kernel all of a table's records ran (the calibration/moe_kernels.yaml label of
    their upstream ``kernel_source``), or None when they do not name one or name several."""
    labels = kernel_labels()
    kernels = {labels.get(r.get("stats", {}).get("kernel_source") or "") for r in recs}
    return kernels.pop() if len(kernels) == 1 and None not in kernels else None


def as_format_table(prof: CalibrationProfile, key: str) -> CalibrationProfile:
    """``prof`` with the table ``key`` (``<format>@<kernel>``) standing as its format's
    reference table, so that the core reads it for that format as it does for an engine naming
    its kernel (``CalibrationProfile.moe_table``): the held-out test of a kernel's table."""
    fmt = moe_key_format(key)
    if key == fmt or key not in prof.moe:
        return prof
    return prof.model_copy(update={
        "moe": {**prof.moe, fmt: prof.moe[key]},
        "moe_overhead_s": {**prof.moe_overhead_s, fmt: prof.moe_overhead_s.get(key, 0.0)},
        "moe_kernel": {k: v for k, v in prof.moe_kernel.items() if k != fmt}})


def moe_tables(records: list[dict], device: DeviceSpec, base: CalibrationProfile) -> list[Table]:
    """Per table (the records' ``table`` param, ``<format>@<kernel>`` for another engine's
    kernel, else their dtype): efficiency over (m, groups) of the core's grouped GEMMs
    (records with more than one active expert per GPU; module docstring)."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in ok_records(records, "moe"):
        by_key[r["params"].get("table") or r["params"]["dtype"]].append(r)
    unit = Roofline(device, unit_profile(base))
    overhead = base.kernel_overhead_s
    tables = []
    for key, recs in sorted(by_key.items()):
        dtype = recs[0]["params"]["dtype"]
        recs = [r for r, g in zip(recs, moe_geometry(recs)["groups"], strict=True) if g > 1]
        if not recs:
            continue
        geo = moe_geometry(recs)
        t = np.array([r["time_s"] for r in recs])
        bound = moe_times(recs, dtype, unit)
        def floor(idx, t=t, bound=bound):
            return moe_floor(t[idx], bound[idx], overhead)

        def implied(fit_idx, t=t, bound=bound, floor=floor):
            return invert_time(bound, t, CALLS * (overhead + floor(fit_idx)))

        def times(prof, idx, dtype=dtype, recs=recs, key=key):
            return moe_times([recs[i] for i in idx], dtype,
                             Roofline(device, as_format_table(prof, key)))

        kernel = table_kernel(recs)

        def install(prof, curve, fit_idx, key=key, floor=floor, kernel=kernel):
            labels = {**prof.moe_kernel, key: kernel} if kernel else prof.moe_kernel
            return prof.model_copy(update={
                "moe": {**prof.moe, key: curve},
                "moe_overhead_s": {**prof.moe_overhead_s, key: round4(floor(fit_idx))},
                "moe_kernel": labels})

        tables.append(Table(f"moe.{key}", "moe", AXES,
                            np.stack([geo["m"], geo["groups"], geo["weights"]], axis=1), t, recs,
                            implied, install, times))
    return tables
