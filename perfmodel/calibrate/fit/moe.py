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
includes that difference.

What a row's time holds beside the two GEMMs (``timed_parts``). Every measured harness times
more than the grouped GEMMs: aiconfigurator's collectors call the framework's MoE module on
precomputed router logits (top-k routing, permute, both GEMMs with the activation, finalize:
the top-k weighted sum), aiter's tuner its two stages (activation and weighted sum fused,
routing made before timing); calibration/moe_kernels.yaml ``timed_regions`` says which, per
kernel source, with the collector code it is read from. The core charges the top-k, the
activation and the combine as operators of their own (``ops.moe_topk_op``,
``ops.activation_op``, ``ops.moe_combine_op``, the router GEMM too, which no harness times),
so before fitting each row loses the core's own time of the parts its harness timed
(``part_times``: those operators at the sizes the harness ran them, num_tokens tokens routed,
the rank's tokens x topk / ep rows activated, num_tokens rows combined, timed by
``roofline.op_times`` on the profile being fitted: its kernel overhead, and its memory curve
and element-wise rates where the build has them, ``fit.compose``). The table then stands for
the two grouped GEMM calls alone: the core's layer (GEMMs from the table, the parts as it
times them) adds back to the row's time, nothing charged twice. What remains beside the GEMMs
(permute, the collectors' global-batch routing, activation quantisation) stays in the table:
a fixed part of it is ``moe_overhead_s`` (``moe_floor``: the fastest record's floor, shared by
the two calls), the part that grows with the work is carried by the efficiency. The held-out
error is of the whole layer as the core charges it (table + parts) against the row.

Each table is installed under its format's key (``moe.<format>``: bf16, fp8, fp8_block, nvfp4,
w4a16_mxfp4, ...; another engine's table of a format under ``moe.<format>@<kernel>``, from the
converter's ``by_kernel`` records, e.g. ``w4a16_mxfp4@triton_ogs``) with the kernel its records ran (``moe_kernel``, from their
``kernel_source`` through calibration/moe_kernels.yaml), which is how the core picks it
(``CalibrationProfile.moe_table``: by weight format, compute dtype and the engine's kernel).
The core uses this curve for a GEMM with ``groups > 1`` (``roofline.op_times``); a call over
one expert or fewer is a dense GEMM of that expert, on the dense curve. Records with at most
one active expert per GPU are therefore left out of the table (the core would not read the
curve for them).

EP floor (``ep_floor``), before fitting. The core's grouped GEMMs are the rank's own work:
tokens x topk / ep rows over its E / ep experts. At fixed rows per GPU, a larger EP puts the
same rows on a subset of the experts (more rows per expert, fewer weights to read), so the
rank's time cannot rise with EP. In the measured tables it does (GB200 SGLang nvfp4
FlashInfer, DeepSeek 7168/2048/256/top-8, 2048 rows per GPU, EP 1..64: 602, 625, 424, 337,
481, 846, 1568 us), because every aiconfigurator MoE collector times more than the rank's
work, on the global batch (ai-dynamo/aiconfigurator):

* SGLang 0.5.14, collector/sglang/collect_moe.py at e23be5a79438356de7d8ff9cd4bec38ccb1f4670
  (unchanged at 095f58a51c4c): ``_benchmark_framework_quantized_moe`` (nvfp4, MXFP4, and
  every backend other than Triton) runs the whole ``FusedMoE`` layer (with ``moe_ep_size``
  patched, rank 0) and ``TopK`` on all ``num_tokens`` tokens, balanced over all E experts:
  routing, activation quantisation and finalize over the global batch. Its Triton path
  (``benchmark_config`` with ``build_rank0_workloads``) keeps rank 0's tokens but clamps their
  remote expert ids (-1) to expert 0 ("the zero weight still ensures no contribution"), so
  expert 0 computes every remote slot: rank0_tokens x topk rows, up to topk x the rank's own.
* vLLM 0.24.0, collector/vllm/collect_moe.py at a77804e3619a0fc9eb92e7161ea7802325030fc2:
  ``moe_module(hidden_states, router_logits)``, the FusedMoE module on all ``num_tokens``
  tokens with the rank-0 expert map.
* TensorRT-LLM 1.3.0rc20, collector/trtllm/collect_moe.py at
  dec5f4cd21b7a91c19fa3d23eb70988f3965fd47: ``moe.forward(hidden_states, logits)`` on all
  ``num_tokens`` tokens with ``mapping.moe_ep_size`` set (routing, permute and finalize over
  the global batch; its smallest excess of the three).

So for every source the floor applies: per (table, kernel_source, hidden, inter, experts,
topk, tp, gated, rows per GPU) a record's time is the least of its own and those of the
records at a smaller EP (the same rows over a superset of the experts). What the floor
removes is the part of the collectors' global-batch term that grows with EP; the smaller-EP
record it keeps still carries its own (smaller) global-batch excess, so large-EP tables stay
biased slow, by less. That term an engine's rank does not pay under an all-to-all (DeepEP),
and the core does not model it. Tables measured at one EP (the aiter
tables of MI300X / MI355X) are unchanged. The held-out error is measured against the floored
times (what the table stands for).

Smoothing: the MoE tables' membrane weight is ``MOE_SMOOTH`` (``Table.smooth``), not the
generic ``curves.SMOOTH``: 16^3 nodes shared by 20-30 model shapes swung from 0.02 to 3.03
between neighbours at 0.01. It was chosen by the fits' own held-out error (the seeded 30 %
split, every device's MoE tables, floored times; never an end-to-end case): docs/calibration.md
"Grouped GEMMs" gives the figures.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from functools import cache

import numpy as np

from ... import ops as O
from ...profile import (
    MOE_MIXED,
    CalibrationProfile,
    FitError,
    MoeCurve,
    moe_format,
    moe_key_format,
    moe_shape_key,
)
from ...roofline import Roofline, op_times
from ...specs.hardware import DeviceSpec
from ..moe_kernels import kernel_labels, routing, timed_parts
from .curves import errors, log_ratio_quantiles, round4
from .table import (
    OVERHEAD_FLOOR_FRACTION,
    Table,
    invert_time,
    ok_records,
    precision_for,
    unit_profile,
)

CALLS = 2  # grouped GEMM calls per record: up (gate+up) and down
# The least share of a measured time left to the grouped GEMMs once the core's own time of the
# parts its harness timed is taken out (``net_times``). Rows reach it where the collector's
# global-batch top-k and combine dwarf the rank's GEMMs (H100 TRT-LLM bf16: 42 of 15,552 rows,
# 6k-16k tokens at EP 8-256, e.g. 16,384 tokens of hidden 4096 combined at the profile's
# measured `add` rate, 107 us, in a 167 us row); the EP floor then gives them a smaller EP's time.
#
# NOT DERIVED FROM A MEASURED FACT: 0.25 is a choice (any value in (0, 1) keeps the net time
# positive, which is all the fit needs to invert it); no source states it and no figure was
# fitted to it. It is not a physical bound either. Checked against one (2026-12-05, aiconfigurator
# h100_sxm moe tables, parts timed on calibration/h100-sxm5-80gb.reference.json, which
# reproduces the 42 rows): the two grouped GEMMs cannot take less than their roofline bound
# (every routed expert's weights read once at the H100's 3.35 TB/s, FLOPs at its peak;
# ``moe_ops`` on ``unit_profile``). On the 42 clamped rows that bound is 7.0 % - 33.9 % of the
# row's measured time, above 25 % on 7 of them (tokens 12,288 / 16,384 of hidden 5120 / 6144 at
# EP 32 / 64 / 128): there the clamp leaves the GEMMs less time than the hardware allows, an
# efficiency above 1 before the EP floor. The core's parts alone reach 75.4 % - 103 % of those
# rows: its global-batch combine / top-k estimate, not the GEMMs, is what the clamp absorbs. A
# floor with a physical meaning would be max(fraction x t, that roofline bound); changing it
# means a refit of the MoE tables (calibration/*.json), left to their owner.
# tests/test_moe_net_fraction.py pins what the clamp does on a hand-made row.
MIN_NET_FRACTION = 0.25
# Membrane penalty weight of the MoE tables (curves.fit_curve ``smooth``), chosen by held-out
# error among 0.01 / 0.03 / 0.1 / 0.3 (module docstring; docs/calibration.md "Grouped GEMMs").
MOE_SMOOTH = 0.1
AXES = ("m", "groups", "weights")  # rows per problem, problems per call, n x k per problem


def moe_precision(dtype: str, weight_format: str = "") -> O.Precision:
    """The core's precision of a table's grouped GEMMs: all operands in ``dtype``, or for a
    weight-only / mixed format (``profile.MOE_MIXED``: weight format, activation dtype) as
    ``ops.Precision.inference`` runs it, weights dequantised to the activation dtype, whose
    tensor cores they use (the curve has its own key, ``profile.moe_format``).
    ``weight_format``: the weights a record's rows actually read when they differ from the
    table's format (``converters.aic_moe`` ``weight_format``: SGLang's int4 Marlin rows in
    the W4A16 MXFP4 Marlin table), in the same activation dtype, group scales included
    (``dtypes.quantized_weight_bytes``: int4 with one bf16 scale per 128, 0.515625 B per
    weight, against MXFP4's 0.53125)."""
    if weight_format:
        act = MOE_MIXED[dtype][1] if dtype in MOE_MIXED else dtype
        return O.Precision.inference(weight_format, act, act)
    if dtype in MOE_MIXED:
        weight, act = MOE_MIXED[dtype]
        return O.Precision.inference(weight, act, act)
    return precision_for(dtype)


def weight_groups(recs: list[dict]) -> dict[str, list[int]]:
    """Record indices by the weights their rows read (``params.weight_format``; "" = the
    table's own format), in first-seen order."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        out[r["params"].get("weight_format", "")].append(i)
    return out


@cache
def balanced_logits_experts(experts: int, topk: int, tokens: int, ep: int = 1) -> int:
    """Distinct experts of rank 0 (experts [0, E / ep)) that a row of aiconfigurator's
    ``balanced`` distribution routes tokens to: collector/helper.py ``balanced_logits``
    (ai-dynamo/aiconfigurator, the same function at dec5f4cd21b7a91c19fa3d23eb70988f3965fd47
    (TensorRT-LLM 1.3.0rc20 collector), a77804e3619a0fc9eb92e7161ea7802325030fc2 (vLLM 0.24.0),
    e23be5a79438356de7d8ff9cd4bec38ccb1f4670 (SGLang 0.5.14), cb4d907c7c5525ed1523eb527b7433350348b4b8
    (SGLang 0.5.10); calibration/moe_kernels.yaml ``aic_balanced_logits``): stride
    s = ceil(E / k); token t of T takes experts (t + j s) mod E, j < k, when T >= s, else
    int((t s / T + j s) mod E) in float32 (torch's default dtype for the division), and plain
    top-k of softmax(one_hot sum) picks exactly those. With k dividing E that is
    min(E, T k) experts, spread by the stride (E = 128, k = 4: 64 at 16 tokens, all 128 at
    32), not the uniform expectation ``ops.active_experts`` (51.2, 82.3) the core charges real
    routing. Rank 0 holds [0, E / ep) (the collectors' ``experts_per_rank``, the default
    linear expert map); its share of the set is counted exactly."""
    s = -(-experts // topk)
    t = np.arange(tokens, dtype=np.int64)[:, None]
    j = np.arange(topk, dtype=np.int64)[None, :]
    if tokens >= s:
        chosen = (t + j * s) % experts
    else:
        x = (t * s).astype(np.float32) / np.float32(tokens) + (j * s).astype(np.float32)
        chosen = np.mod(x, np.float32(experts)).astype(np.int64)
    local = np.unique(chosen)
    return int(np.count_nonzero(local < experts // ep))


def routed_groups(recs: list[dict]) -> np.ndarray:
    """Per record, the experts its rows touched on the timed GPU, as its harness routed them
    (``moe_kernels.routing``): ``balanced_logits_experts`` for aiconfigurator's balanced rows,
    the uniform expectation ``ops.active_experts(E, k, T) / ep`` for i.i.d. routing (aiter's
    tuner); NaN where the source does not determine it (``fit_records`` leaves those out).
    The one rule the grid fit (``moe_geometry``) and the measured curves (``moe_curve_parts``)
    read; the core keeps the uniform expectation for real routing."""
    out = np.empty(len(recs))
    for i, r in enumerate(recs):
        p = r["params"]
        how = routing(r)
        if how == "balanced_logits":
            out[i] = balanced_logits_experts(int(p["experts"]), int(p["topk"]),
                                             int(p["tokens"]), int(p["ep"]))
        elif how == "uniform":
            out[i] = float(O.active_experts(float(p["experts"]), int(p["topk"]),
                                            float(p["tokens"]))) / float(p["ep"])
        else:
            out[i] = np.nan
    return out


def fit_records(records: list[dict]) -> list[dict]:
    """The measured MoE records the fit reads: ``ok_records`` less those whose touched experts
    their source does not determine (``moe_kernels.routing`` None: calibration/moe_kernels.yaml
    ``routing_undetermined``, DeepSeek-V3's group-limited routing in the vLLM 0.24.0 and SGLang
    0.5.14 collectors)."""
    return [r for r in ok_records(records, "moe") if routing(r) is not None]


def moe_geometry(recs: list[dict], routed: bool = True) -> dict[str, np.ndarray]:
    """Per record: rows (token-expert assignments on one GPU), groups (active experts on it:
    those its harness's routing touched, ``routed_groups``; ``routed`` False: the uniform
    expectation ``ops.active_experts / ep``, the core's for real routing), m = rows / groups,
    the up projection's n and the expert's hidden and inter (per GPU)."""
    p = {x: np.array([float(r["params"][x]) for r in recs]) for x in
         ("tokens", "hidden", "inter", "experts", "topk", "tp", "ep")}
    gated = np.array([bool(r["params"].get("gated", True)) for r in recs])
    rows = p["tokens"] * p["topk"] / p["ep"]
    groups = (routed_groups(recs) if routed
              else O.active_experts(p["experts"], p["topk"], p["tokens"]) / p["ep"])
    inter = p["inter"] / p["tp"]
    up_n = np.where(gated, 2.0, 1.0) * inter
    return {"rows": rows, "groups": groups, "m": rows / groups, "hidden": p["hidden"],
            "inter": inter, "up_n": up_n,
            # the record's point on the weights axis: the geometric mean of its two calls'
            # n x k (the core looks each call up at its own)
            "weights": np.sqrt(up_n * p["hidden"] * inter * p["hidden"])}


def moe_ops(recs: list[dict], dtype: str, weight_format: str = "",
            routed: bool = True) -> list[O.Op]:
    """The core's two grouped GEMM calls of each record (up, down), vectorised over records
    (all reading ``weight_format`` weights, "" = the table's format: ``moe_precision``), over
    the experts the record's routing touched (``moe_geometry``; ``routed`` False: the uniform
    expectation)."""
    g = moe_geometry(recs, routed)
    prec = moe_precision(dtype)  # only its 16-bit hidden width is read
    return [O.grouped_gemm("moe.expert.up", g["rows"], g["up_n"], g["hidden"], g["groups"], prec),
            O.grouped_gemm("moe.expert.down", g["rows"], g["hidden"], g["inter"], g["groups"],
                           prec)]


def moe_times(recs: list[dict], dtype: str, roof: Roofline, routed: bool = True) -> np.ndarray:
    """The core's time of each record's routed experts: up + down, each record at the bytes
    of the weights its rows read (``weight_groups``) and over the experts its routing touched
    (``routed`` False: the uniform expectation). A record of other weights than the
    table's format is timed by the same table (``as_format_table`` installs it under that
    format's name too), so its efficiency is read against its own bytes and the core applies
    it to the format's."""
    out = np.empty(len(recs))
    for wf, idx in weight_groups(recs).items():
        sub = [recs[i] for i in idx]
        t = op_times(moe_ops(sub, dtype, wf, routed), roof).time
        out[idx] = np.asarray(t[0] + t[1], float)
    return out


def part_ops(recs: list[dict], dtype: str, parts: tuple[str, ...],
             gated: bool = True) -> list[O.Op]:
    """The core's operators for the ``parts`` (``moe_kernels.TIMED_PARTS``) of records of one
    gating kind, vectorised over records, at the
    sizes the harness ran them: the top-k over all ``tokens`` (``ops.moe_topk_op``), the
    activation of the rank's tokens x topk / ep rows (``ops.activation_op``: SwiGLU's
    silu_and_mul when ``gated``, else ReLU^2's elementwise kind), the combine of those rows into
    ``tokens`` rows (``ops.moe_combine_op``); elementwise widths ``moe_precision(...).hidden``."""
    g = moe_geometry(recs)
    prec = moe_precision(dtype)  # only its 16-bit hidden width is read
    tokens = np.array([float(r["params"]["tokens"]) for r in recs])
    ops: list[O.Op] = []
    if "topk" in parts:
        experts = np.array([float(r["params"]["experts"]) for r in recs])
        topk = np.array([float(r["params"]["topk"]) for r in recs])
        ops.append(O.moe_topk_op(tokens, experts, topk, prec))
    if "act" in parts:
        ops.append(O.activation_op("moe.expert.act", g["rows"] * g["up_n"],
                                   g["rows"] * g["inter"], prec, "silu" if gated else "relu",
                                   gated))
    if "combine" in parts:
        ops.append(O.moe_combine_op(g["rows"], tokens, g["hidden"], prec))
    return ops


def part_times(recs: list[dict], dtype: str, roof: Roofline) -> np.ndarray:
    """Per record, the core's time (``roofline.op_times`` on ``roof``: kernel overhead per
    kernel included) of the operators it charges separately that the record's harness timed
    with the grouped GEMMs (``timed_parts``, ``part_ops``); 0 for a record whose harness
    timed none."""
    out = np.zeros(len(recs))
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        groups[(tuple(timed_parts(r)), bool(r["params"].get("gated", True)))].append(i)
    for (parts, gated), idx in groups.items():
        if not parts:
            continue
        times = op_times(part_ops([recs[i] for i in idx], dtype, parts, gated), roof).time
        out[idx] = np.sum([np.broadcast_to(np.asarray(t, float), (len(idx),)) for t in times],
                          axis=0)
    return out


def net_times(recs: list[dict], dtype: str, roof: Roofline) -> tuple[np.ndarray, np.ndarray]:
    """(times less their parts, the parts' times): each record's measured time less
    ``part_times``, kept at least ``MIN_NET_FRACTION`` of the measurement (the parts are
    then charged ``(1 - MIN_NET_FRACTION) x t``, so net + parts is always the measured time;
    the fraction is a choice, not a measured fact: see its comment)."""
    t = np.array([float(r["time_s"]) for r in recs])
    parts = np.minimum(part_times(recs, dtype, roof), (1.0 - MIN_NET_FRACTION) * t)
    return t - parts, parts


def moe_floor(t: np.ndarray, bound: np.ndarray, overhead: float) -> float:
    """Fixed time per grouped-GEMM call beyond ``overhead``: ``OVERHEAD_FLOOR_FRACTION`` of
    the fastest record, shared by its CALLS calls, less the kernel overhead, when the table
    sweeps down to the latency floor (>= 20 points spanning >= 100x in roofline bound); else
    0 (``attention_floor``'s rule)."""
    if len(t) < 20 or bound.max() < 100 * bound.min():
        return 0.0
    return max(0.0, OVERHEAD_FLOOR_FRACTION * float(t.min()) / CALLS - overhead)


def ep_floor(recs: list[dict], times: np.ndarray | None = None) -> np.ndarray:
    """Each record's time (``times``, default its measured one) floored at the records of the
    same table, kernel_source, expert shape (hidden, inter, experts, topk, gated), tp and rows
    per GPU (tokens x topk / ep, exactly) at a smaller EP: t(ep) = min(t(ep), min over
    ep' < ep of t(ep')) (module docstring: the collectors time the global batch)."""
    t = (np.array([float(r["time_s"]) for r in recs]) if times is None
         else np.asarray(times, float))
    same: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        p = r["params"]
        same[(p.get("table") or p["dtype"], (r.get("stats") or {}).get("kernel_source"),
              p["hidden"], p["inter"], p["experts"], p["topk"], p["tp"],
              bool(p.get("gated", True)),
              Fraction(int(p["tokens"]) * int(p["topk"]), int(p["ep"])))].append(i)
    out = t.copy()
    for idx in same.values():
        best = np.inf  # the least time at the smaller EPs seen so far
        by_ep: dict[int, list[int]] = defaultdict(list)
        for i in idx:
            by_ep[int(recs[i]["params"]["ep"])].append(i)
        for ep in sorted(by_ep):
            members = by_ep[ep]
            out[members] = np.minimum(t[members], best)
            best = min(best, float(t[members].min()))
    return out


def table_kernel(recs: list[dict]) -> str | None:
    """The kernel all of a table's records ran (the calibration/moe_kernels.yaml label of
    their upstream ``kernel_source``), or None when they do not name one or name several."""
    labels = kernel_labels()
    kernels = {labels.get(r.get("stats", {}).get("kernel_source") or "") for r in recs}
    return kernels.pop() if len(kernels) == 1 and None not in kernels else None


def as_format_table(prof: CalibrationProfile, key: str,
                    weight_formats: tuple[str, ...] = ()) -> CalibrationProfile:
    """``prof`` with the table ``key`` (``<format>@<kernel>``) standing as its format's
    reference table, so that the core reads it for that format as it does for an engine naming
    its kernel (``CalibrationProfile.moe_table``): the held-out test of a kernel's table.
    ``weight_formats``: other weights some of its records read (``weight_groups``); the table
    stands for those formats too (``profile.moe_format`` of the activation dtype), so their
    records are timed by it at their own bytes."""
    fmt = moe_key_format(key)
    if key not in prof.moe or (key == fmt and not weight_formats):
        return prof
    act = MOE_MIXED[fmt][1] if fmt in MOE_MIXED else fmt
    names = ([fmt] if key != fmt else []) + [moe_format(act, wf) for wf in weight_formats if wf]
    return prof.model_copy(update={
        "moe": {**prof.moe, **{n: prof.moe[key] for n in names}},
        "moe_overhead_s": {**prof.moe_overhead_s,
                           **{n: prof.moe_overhead_s.get(key, 0.0) for n in names}},
        "moe_kernel": {k: v for k, v in prof.moe_kernel.items() if k not in names}})


def moe_tables(records: list[dict], device: DeviceSpec, base: CalibrationProfile,
               parts: CalibrationProfile | None = None) -> list[Table]:
    """Per table (the records' ``table`` param, ``<format>@<kernel>`` for another engine's
    kernel, else their dtype): efficiency over (m, groups) of the core's grouped GEMMs
    (records with more than one active expert per GPU, times less the core's own time of the
    parts their harness timed, ``net_times`` on ``parts`` (default ``base``: the profile whose
    kernel overhead, memory curve and element-wise rates time those operators), floored along
    EP by ``ep_floor``, smoothed with ``MOE_SMOOTH``; module docstring). A table's measured
    times are the floored net times plus the parts (the layer as the core charges it)."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in fit_records(records):
        by_key[r["params"].get("table") or r["params"]["dtype"]].append(r)
    unit = Roofline(device, unit_profile(base))
    part_roof = Roofline(device, parts or base)
    overhead = base.kernel_overhead_s
    tables = []
    for key, recs in sorted(by_key.items()):
        dtype = recs[0]["params"]["dtype"]
        net, extra_all = net_times(recs, dtype, part_roof)
        floored = ep_floor(recs, net)
        keep = moe_geometry(recs)["groups"] > 1
        recs = [r for r, k in zip(recs, keep, strict=True) if k]
        if not recs:
            continue
        geo = moe_geometry(recs)
        t, extra = floored[keep], extra_all[keep]
        bound = moe_times(recs, dtype, unit)
        def floor(idx, t=t, bound=bound):
            return moe_floor(t[idx], bound[idx], overhead)

        def implied(fit_idx, t=t, bound=bound, floor=floor):
            return invert_time(bound, t, CALLS * (overhead + floor(fit_idx)))

        wfs = tuple(wf for wf in weight_groups(recs) if wf)

        def times(prof, idx, dtype=dtype, recs=recs, key=key, wfs=wfs, extra=extra):
            return moe_times([recs[i] for i in idx], dtype,
                             Roofline(device, as_format_table(prof, key, wfs))) + extra[idx]

        kernel = table_kernel(recs)

        def install(prof, curve, fit_idx, key=key, floor=floor, kernel=kernel):
            labels = {**prof.moe_kernel, key: kernel} if kernel else prof.moe_kernel
            return prof.model_copy(update={
                "moe": {**prof.moe, key: curve},
                "moe_overhead_s": {**prof.moe_overhead_s, key: round4(floor(fit_idx))},
                "moe_kernel": labels})

        tables.append(Table(f"moe.{key}", "moe", AXES,
                            np.stack([geo["m"], geo["groups"], geo["weights"]], axis=1),
                            t + extra, recs, implied, install, times, smooth=MOE_SMOOTH))
    return tables


# ---- measured curves: each table's own per-shape rows (profile.MoeCurve) -------------------

CURVE_DIGITS = 4  # significant digits a curve keeps of a measured time (the tables: ~1 % noise)


def moe_curves(records: list[dict]) -> dict[str, dict[str, MoeCurve]]:
    """Per table (the key ``moe_tables`` gives it), per measured shape
    (``profile.moe_shape_key``: hidden, inter, experts, topk, tp, ep, gated), its time over
    tokens as the fit reads it: the same records (``fit_records``, balanced routing, more than
    one active expert per GPU), as measured, floored along EP by ``ep_floor``; at least two
    token counts. A profile build takes them net of the harness's parts and moved to the
    core's routing (``moe_curve_parts`` with a device and profiles). Two records of one shape
    at one token count (none in the shipped tables) keep the faster."""
    return curves_only(moe_curve_parts(records))


def curves_only(with_parts: dict) -> dict[str, dict[str, MoeCurve]]:
    """``moe_curve_parts``' curves without their parts' times."""
    return {key: {shape: curve for shape, (curve, _) in shapes.items()}
            for key, shapes in with_parts.items()}


def to_uniform_routing(recs: list[dict], t: np.ndarray, dtype: str, device: DeviceSpec,
                       fitted: CalibrationProfile, key: str) -> np.ndarray:
    """Records' times (two grouped GEMM calls) moved from the experts their harness's routing
    touched (``routed_groups``) to the uniform expectation ``ops.active_experts / ep``, the
    experts the core's plan of those tokens reads and the one it matches a measured curve by
    (``roofline._moe_efficiency``, which times a hit at the curve's time): each record at its
    own efficiency, t' = fixed + (t - fixed) x bound(uniform) / bound(routed), bound the
    roofline time of its two calls (``moe_times`` at efficiency 1), fixed =
    ``CALLS`` x (``kernel_overhead_s`` + ``moe_overhead_s[key]``) of ``fitted`` (the core's
    fixed time of a curve hit); a time at or below ``fixed`` is kept. The same
    per-byte efficiency the grid fit reads off the row (``moe_tables``), at the bytes a
    uniformly routed plan reads: aiconfigurator's balanced rows read more experts at mid token
    counts (E = 128, k = 4, 16 tokens: 64 against 51.2), so their measured time over-charges
    real routing. Records routed uniformly are unchanged."""
    unit = Roofline(device, unit_profile(fitted))
    routed = moe_times(recs, dtype, unit)
    uniform = moe_times(recs, dtype, unit, routed=False)
    fixed = CALLS * (fitted.kernel_overhead_s + float(fitted.moe_overhead_s.get(key, 0.0)))
    t = np.asarray(t, float)
    return np.where(t > fixed, fixed + (t - fixed) * uniform / routed, t)


def moe_curve_parts(records: list[dict], device: DeviceSpec | None = None,
                    parts: CalibrationProfile | None = None,
                    fitted: CalibrationProfile | None = None
                    ) -> dict[str, dict[str, tuple[MoeCurve, tuple[float, ...]]]]:
    """``moe_curves`` with, per curve, the parts' time at each of its token counts (the
    core's own operators the curve's time was taken net of, ``part_times``; zeros without
    ``device`` and ``parts``): the curve plus these is the layer as the core charges it."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in fit_records(records):
        by_key[r["params"].get("table") or r["params"]["dtype"]].append(r)
    part_roof = Roofline(device, parts) if device is not None and parts is not None else None
    out: dict[str, dict[str, tuple[MoeCurve, tuple[float, ...]]]] = {}
    for key, recs in sorted(by_key.items()):
        dtype = recs[0]["params"]["dtype"]
        net, extra = (net_times(recs, dtype, part_roof)
                      if part_roof is not None else (None, np.zeros(len(recs))))
        floored = ep_floor(recs, net)
        keep = moe_geometry(recs)["groups"] > 1
        if device is not None and fitted is not None and np.any(keep):
            idx = np.flatnonzero(keep)
            floored = floored.copy()
            floored[idx] = to_uniform_routing([recs[i] for i in idx], floored[idx], dtype,
                                              device, fitted, key)
        points: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
        for r, t, e, k in zip(recs, floored, extra, keep, strict=True):
            if not k:
                continue
            p = r["params"]
            shape = moe_shape_key(p["hidden"], p["inter"], p["experts"], p["topk"], p["tp"],
                                  p["ep"], p.get("gated", True))
            x = int(p["tokens"])
            if float(t) < points[shape].get(x, (np.inf, 0.0))[0]:
                points[shape][x] = (float(t), float(e))
        curves = {}
        for shape, pts in sorted(points.items()):
            if len(pts) < 2:
                continue
            xs = sorted(pts)
            curves[shape] = (MoeCurve(tokens=tuple(xs), time_s=tuple(
                float(f"{pts[x][0]:.{CURVE_DIGITS}g}") for x in xs)),
                tuple(pts[x][1] for x in xs))
        if curves:
            out[key] = curves
    return out


def curve_errors(key: str, curves: dict[str, MoeCurve],
                 parts: dict[str, tuple[float, ...]] | None = None
                 ) -> tuple[FitError, float] | None:
    """Held-out error of reading a table's curves between measured token counts: every
    interior point of every curve predicted from its two neighbours by the core's log-log
    interpolation (``MoeCurve.__call__``), as ``moe_curve.<key>`` (``FitError`` and the p90
    |log ratio|, the band of a curve hit); with ``parts`` (per shape, the parts' time at each
    token count, ``moe_curve_parts``) of the layer as the core charges it, curve + parts. Leaving a point out doubles the gap the
    interpolation bridges, so this bounds the error between the measured points from above;
    at a measured point the curve is the table's time (its own noise is not stated upstream).
    None when no curve has three points."""
    pred, meas = [], []
    for shape, curve in curves.items():
        x, t = np.log(curve.tokens), np.log(curve.time_s)
        extra = (parts or {}).get(shape) or (0.0,) * len(x)
        for i in range(1, len(x) - 1):
            w = (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1])
            pred.append(np.exp(t[i - 1] + w * (t[i + 1] - t[i - 1])) + extra[i])
            meas.append(curve.time_s[i] + extra[i])
    if not pred:
        return None
    pred_a, meas_a = np.asarray(pred), np.asarray(meas)
    med, p90, p90_log = errors(pred_a, meas_a)
    n_fit = sum(len(c.tokens) for c in curves.values())
    return (FitError(table=f"moe_curve.{key}", n_fit=n_fit, n_test=len(pred_a),
                     median_ape=round4(med), p90_ape=round4(p90),
                     log_ratio_quantiles=log_ratio_quantiles(pred_a, meas_a)),
            round4(p90_log))
