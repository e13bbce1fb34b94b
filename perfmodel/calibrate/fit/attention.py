"""Attention tables: per phase (prefill, decode, backward), efficiency over (q_len, kv_len)
(decode: (streams, kv_len)) of the core's attention operator (``ops.attention_ops`` with
its FlashAttention IO model, arXiv 2205.14135 / 2307.08691, and causal pairs;
``ops.backward`` for the backward pass: reused, not re-derived), plus the phase's fixed time
per call (``attention_floor``): an attention op runs several kernels, so a table that
sweeps down to its own floor gets ``attention_overhead_s[phase]`` = 0.95 x its fastest call
- kernel_overhead_s.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from functools import cache

import numpy as np

from ... import ops as O
from ...attention_variants import windowed_keys
from ...profile import AttentionScale, CalibrationProfile, Curve
from ...roofline import FP8_CURVE_SUFFIX, FP8_PREFILL_CURVE, MLA, Roofline, op_times
from ...specs.hardware import DeviceSpec
from ...specs.model import MLASpec, ModelSpec
from ...specs.registry import default_profile
from .curves import round4
from .host import stand_in_device
from .table import (
    OVERHEAD_FLOOR_FRACTION,
    Table,
    invert_time,
    ok_records,
    precision_for,
    unit_profile,
)


def _attention_model(heads: int, kv_heads: int, head_dim: int) -> ModelSpec:
    """The smallest ModelSpec that gives ``ops.attention_ops`` these heads."""
    return ModelSpec(id="attention-bench", name="attention microbenchmark", num_layers=1,
                     hidden_size=heads * head_dim, num_heads=heads, num_kv_heads=kv_heads,
                     head_dim=head_dim, ffn_hidden_size=1, vocab_size=1)


def _mla_model(p: dict) -> ModelSpec:
    """The smallest ModelSpec whose ``ops.attention_ops`` prefill core is a record's MLA
    context kernel (``variant`` "mla", ``converters.aic_mla_context``): ``heads`` query heads
    and as many KV heads, Q / K of ``qk_nope_head_dim`` + ``qk_rope_head_dim``, V of
    ``v_head_dim`` (the decompressed multi-head attention the core charges MLA prefill as)."""
    heads = int(p["heads"])
    mla = MLASpec(q_lora_rank=p.get("q_lora_rank"), kv_lora_rank=int(p["kv_lora_rank"]),
                  qk_nope_head_dim=int(p["qk_nope_head_dim"]),
                  qk_rope_head_dim=int(p["qk_rope_head_dim"]), v_head_dim=int(p["v_head_dim"]))
    return ModelSpec(id="mla-bench", name="MLA context microbenchmark", num_layers=1,
                     hidden_size=heads * int(p["v_head_dim"]), num_heads=heads,
                     num_kv_heads=int(p.get("kv_heads") or heads), ffn_hidden_size=1,
                     vocab_size=1, mla=mla)


def attention_curve(p: dict) -> str:
    """The profile curve a record is fitted into: its phase's, except a prefill record with
    fp8 Q, K, V and an fp8 KV cache (aiconfigurator's ``attn_dtype`` fp8 context rows: the
    engine quantises them for the context kernel), which is the fp8 prefill kernel
    (``roofline.FP8_PREFILL_CURVE``, efficiency relative to the fp8 peak on fp8 bytes), and a
    prefill record of an attention kind with curves of its own (``variant``: "mla", the
    context-MLA tables, ``converters.aic_mla_context``), which is that kind's curve
    (``prefill_mla``, fp8 kernels ``prefill_mla_fp8``: ``roofline._attention_curve``)."""
    fp8 = (p["phase"] == "prefill" and p.get("dtype") == "fp8"
           and p.get("kv_dtype", "fp8") == "fp8")
    kind = p.get("variant", "")
    if p["phase"] == "prefill" and kind:
        return f"prefill_{kind}" + (FP8_CURVE_SUFFIX if fp8 else "")
    if fp8:
        return FP8_PREFILL_CURVE
    return p["phase"]


def attention_op(recs: list[dict]) -> O.Op:
    """The core's attention operator (``ops.attention_ops``, FlashAttention IO, causal pairs;
    ``ops.backward`` for the backward phase) for records sharing heads, head_dim, dtypes,
    causality, variant and phase; batch, q_len and kv_len broadcast over the records. An MLA
    record (``variant`` "mla") is the core's MLA prefill core (``_mla_model``), with the FLOPs
    and bytes the core charges MLA prefill with."""
    p0 = recs[0]["params"]
    b, q, kv = (np.array([r["params"][x] for r in recs], float)
                for x in ("batch", "q_len", "kv_len"))
    prec = precision_for(p0.get("dtype", "bf16"), p0.get("kv_dtype"))
    if p0.get("variant") == MLA:
        model = _mla_model(p0)
    else:
        model = _attention_model(int(p0["heads"]), int(p0.get("kv_heads") or p0["heads"]),
                                 int(p0["head_dim"]))
    phase = p0["phase"]
    core_phase = "decode" if phase == "decode" else "prefill"
    shard = O.Shard()
    if attention_curve(p0).endswith(FP8_CURVE_SUFFIX):  # the engine's fp8 context kernel
        prec = replace(prec, attention="fp8")
        shard = O.Shard(fp8_prefill_attention=True)
    if p0.get("window"):  # a sliding window: the layer's own windowed core
        (op,) = O.causal_attention_ops(model, b, q, kv, shard, prec, core_phase,
                                       float(p0["window"]))
    else:
        pairs = O.attention_pairs(q, kv, bool(p0.get("causal", True)))
        (op,) = O.attention_ops(model, b, q, kv, pairs, shard, prec, True, core_phase)
    if phase == "backward":
        (op,) = O.backward(op, prec)
    return op


def _attention_point(p: dict) -> tuple:
    """The record's coordinates on its phase's curve, as the core places the same call
    (``ops.attention_curve_point``)."""
    kv_heads = int(p.get("kv_heads") or p["heads"])
    kv = p["kv_len"]
    if p.get("window"):  # the keys a windowed call reads (ops._attention_core)
        kv = float(windowed_keys(p["q_len"], kv, float(p["window"])))
    return O.attention_curve_point(p["phase"], p["batch"], p["q_len"], kv, kv_heads)


def _attention_key(p: dict) -> tuple:
    return (p["phase"], int(p["heads"]), int(p.get("kv_heads") or p["heads"]),
            int(p["head_dim"]), p.get("dtype", "bf16"), p.get("kv_dtype"),
            bool(p.get("causal", True)), int(p.get("window") or 0), p.get("variant", ""),
            int(p.get("v_head_dim") or 0))


@cache
def core_applies_attention_overhead() -> bool:
    """Whether ``roofline.op_times`` adds ``profile.attention_overhead_s`` (a schema field
    the calibration fit introduced; probed once so that the held-out predictions are always
    the core's, with the fixed time added here only while the core does not add it)."""
    dev = stand_in_device({"bf16": 1.0}, 1.0, {})
    prof = default_profile().model_copy(update={"kernel_overhead_s": 0.0,
                                                "attention_overhead_s": {"prefill": 1.0}})
    op = attention_op([{"params": {"phase": "prefill", "batch": 1, "heads": 1, "head_dim": 8,
                                   "q_len": 1, "kv_len": 1}}])
    return bool(np.all(np.asarray(op_times([op], Roofline(dev, prof)).time[0]) >= 1.0))


def attention_times(recs: list[dict], roof: Roofline) -> np.ndarray:
    """Core times of attention records, one op_times call per group of equal heads."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        groups[_attention_key(r["params"])].append(i)
    out = np.empty(len(recs))
    for rows in groups.values():
        out[rows] = op_times([attention_op([recs[i] for i in rows])], roof).time[0]
    if not core_applies_attention_overhead():
        extra = roof.profile.attention_overhead_s
        out += np.array([extra.get(attention_curve(r["params"]), 0.0) for r in recs])
    return out


# the fastest call of a table that reaches the latency floor runs below this fraction of its
# roofline bound (it is dominated by fixed costs)
FLOOR_MAX_EFFICIENCY = 0.1


def attention_floor(t: np.ndarray, bound: np.ndarray, overhead: float) -> float:
    """Fixed time per attention call beyond ``overhead``: ``OVERHEAD_FLOOR_FRACTION`` of the
    fastest call, less the kernel overhead, when the table sweeps down to the latency floor
    (>= 20 points spanning >= 100x in roofline bound, and the fastest call latency-bound:
    under ``FLOOR_MAX_EFFICIENCY`` of its roofline); else 0. (The engine tables' fastest
    calls run at 0.01-1.4 % of their roofline; a sweep of large calls only, such as the
    MI355X flash-attention files whose fastest call runs at 27 %, has no floor to measure.)"""
    if len(t) < 20 or bound.max() < 100 * bound.min():
        return 0.0
    fastest = int(np.argmin(t))
    if bound[fastest] >= FLOOR_MAX_EFFICIENCY * t[fastest]:
        return 0.0
    return max(0.0, OVERHEAD_FLOOR_FRACTION * float(t.min()) - overhead)


def fastest_backend(recs: list[dict]) -> str | None:
    """The backend with the lowest geometric-mean time over the points every backend ran:
    the one a framework's dispatcher would use. One curve per phase cannot hold two kernels
    (a fused flash kernel and the unfused "math" path differ several-fold)."""
    by_backend: dict[str, dict[str, float]] = defaultdict(dict)
    for r in recs:
        p = r["params"]
        shape = tuple(sorted((k, str(v)) for k, v in p.items() if k != "backend"))
        by_backend[p.get("backend")][shape] = r["time_s"]
    if len(by_backend) < 2:
        return next(iter(by_backend), None)
    common = set.intersection(*(set(v) for v in by_backend.values()))
    if not common:  # no shared points: the backend that ran the most of them
        return max(by_backend, key=lambda b: len(by_backend[b]))
    return min(by_backend, key=lambda b: sum(np.log(by_backend[b][k]) for k in common))


def attention_tables(records: list[dict], device: DeviceSpec,
                     base: CalibrationProfile) -> list[Table]:
    """Per phase (prefill, decode, backward): efficiency over (q_len, kv_len) of the
    fastest backend (``fastest_backend``), and the phase's fixed time per call
    (``attention_floor``), on the full-attention records of the base head dim
    (``base_head_dim``); the other head dims and windows are ``attention_scale_tables``."""
    by_phase: dict[str, list[dict]] = defaultdict(list)
    for r in ok_records(records, "attention"):
        p = r["params"]
        if int(p["heads"]) % int(p.get("kv_heads") or p["heads"]) == 0:
            by_phase[attention_curve(p)].append(r)
    for phase, recs in by_phase.items():
        best, base_hd = fastest_backend(recs), base_head_dim(recs)
        by_phase[phase] = [r for r in recs if r["params"].get("backend") == best
                           and scale_group(r["params"], base_hd) is None]
    unit = Roofline(device, unit_profile(base))
    tables = []
    for phase, recs in sorted(by_phase.items()):
        coords = np.array([_attention_point(r["params"]) for r in recs], float)
        axes = ("streams", "kv_len") if phase == "decode" else ("q_len", "kv_len")
        tables.append(curve_table(phase, axes, coords, recs, attention_times, unit, device,
                                  base.kernel_overhead_s))
    return tables


def curve_table(curve: str, axes: tuple[str, str], coords: np.ndarray, recs: list[dict],
                timer, unit: Roofline, device: DeviceSpec, overhead: float) -> Table:
    """The table of one attention curve (``attention.<curve>``): efficiency over ``coords``
    implied by the records' times through ``timer(recs, roofline)`` (the core's time on a
    profile), and the curve's fixed time per call (``attention_floor``) installed beside it
    in ``attention_overhead_s``. Shared by every attention kind's fit."""
    t = np.array([r["time_s"] for r in recs])
    bound = timer(recs, unit)

    def floor(idx):
        return attention_floor(t[idx], bound[idx], overhead)

    def implied(fit_idx):
        return invert_time(bound, t, overhead + floor(fit_idx))

    def install(prof, c, fit_idx):
        extra = {k: v for k, v in prof.attention_overhead_s.items() if k != curve}
        if floor(fit_idx) > 0:
            extra[curve] = round4(floor(fit_idx))
        return prof.model_copy(update={"attention": {**prof.attention, curve: c},
                                       "attention_overhead_s": extra})

    def times(prof, idx):
        return timer([recs[i] for i in idx], Roofline(device, prof))

    return Table(f"attention.{curve}", "attention", axes, coords, t, recs, implied, install,
                 times)


# the head dim a phase's curve is fitted on when its records have it (the reference tables'
# common one: TensorRT-LLM's and the older aiconfigurator tables' default, Llama's)
BASE_HEAD_DIM = 128


def base_head_dim(recs: list[dict]) -> int | None:
    """The head dim a phase's curve is fitted on: ``BASE_HEAD_DIM`` if its full-attention
    records have it, else None (all of them pooled, as before head dims were told apart)."""
    dims = {int(r["params"]["head_dim"]) for r in recs if not r["params"].get("window")}
    return BASE_HEAD_DIM if BASE_HEAD_DIM in dims and len(dims) > 1 else None


def scale_group(p: dict, base_hd: int | None) -> tuple[int, int] | None:
    """(head_dim, window) of a record timed against its phase's curve by a scale factor,
    None for a record of the curve itself."""
    window = int(p.get("window") or 0)
    if base_hd is None:
        return None if not window else (int(p["head_dim"]), window)
    if window or int(p["head_dim"]) != base_hd:
        return int(p["head_dim"]), window
    return None


def attention_scale_tables(records: list[dict], device: DeviceSpec,
                           prof: CalibrationProfile) -> list[Table]:
    """Per phase with a fitted curve in ``prof``, one table per (head_dim, window) group of
    the fastest backend's records that the curve is not fitted on: their efficiency over
    the curve's (``profile.attention_scale``), a curve over the same axes fitted like the
    phase's own (same time inversion, the phase's fixed time)."""
    by_phase: dict[str, list[dict]] = defaultdict(list)
    for r in ok_records(records, "attention"):
        p = r["params"]
        if int(p["heads"]) % int(p.get("kv_heads") or p["heads"]) == 0:
            by_phase[attention_curve(p)].append(r)
    unit = Roofline(device, unit_profile(prof))
    overhead = prof.kernel_overhead_s
    tables: list[Table] = []
    for phase, recs in sorted(by_phase.items()):
        curve = prof.attention.get(phase)
        if curve is None:
            continue
        best, base_hd = fastest_backend(recs), base_head_dim(recs)
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in recs:
            key = scale_group(r["params"], base_hd)
            if key is not None and r["params"].get("backend") == best:
                groups[key].append(r)
        fixed = overhead + prof.attention_overhead_s.get(phase, 0.0)
        for (hd, window), grp in sorted(groups.items()):
            t = np.array([r["time_s"] for r in grp])
            bound = attention_times(grp, unit)
            coords = np.array([_attention_point(r["params"]) for r in grp], float)
            on_curve = curve(*coords.T)

            def implied(fit_idx, t=t, bound=bound, on_curve=on_curve, fixed=fixed):
                eff, phi = invert_time(bound, t, fixed)
                return eff / on_curve, phi

            def install(p, c, fit_idx, phase=phase, hd=hd, window=window, base_hd=base_hd):
                pts = [x for x in p.attention_scale.get(phase, [])
                       if (x.head_dim, x.window) not in ((hd, window), (base_hd or 0, 0))]
                pts.append(AttentionScale(head_dim=hd, window=window, factor=c))
                if base_hd:
                    pts.append(AttentionScale(head_dim=base_hd, window=0,
                                              factor=Curve(values=(1.0,))))
                pts.sort(key=lambda x: (x.window, x.head_dim))
                return p.model_copy(update={"attention_scale": {**p.attention_scale,
                                                                phase: pts}})

            def times(p, idx, grp=grp):
                return attention_times([grp[i] for i in idx], Roofline(device, p))

            name = f"attention.{phase}.hd{hd}" + (f".w{window}" if window else "")
            axes = ("streams", "kv_len") if phase == "decode" else ("q_len", "kv_len")
            tables.append(Table(name, "attention_scale", axes, coords, t, grp, implied,
                                install, times))
    return tables
