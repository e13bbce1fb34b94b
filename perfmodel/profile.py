"""Calibration profiles: fitted efficiency curves that turn roofline bounds into times.

A profile is data (JSON, versioned schema). The core reads one; the harness in
``perfmodel.calibrate`` writes one, from this machine's measurements or from measured tables
published upstream. Every efficiency is relative to the roofline bound of the same work:

* GEMM:      t = max(FLOPs / peak[dtype], bytes / HBM bw) / eff_gemm(m, n, k) + overhead
  (a grouped GEMM over groups > 1 problems: eff_moe(m, groups, n k) + moe_overhead_s per call,
  where the profile has that curve)
* attention: t = max(FLOPs / peak, bytes / bw) / eff_attn(phase)(q_len, kv_len) + overhead
* memory-bound kernels: t = bytes / (bw * eff_mem(bytes)) + overhead
* collectives: t = latency + bytes * algorithm factor / (link bw * eff_coll(bytes))
  (NCCL bus-bandwidth convention, nccl-tests doc/PERFORMANCE.md)

so that the bound (compute vs memory) of an operator stays a physical statement, and an
efficiency near 1 means "at the roofline". With no profile the ``default`` profile applies:
constants taken from published microbenchmarks (documented in calibration/default.json) and
labelled uncalibrated in every output.
"""


import re
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from .errors import SpecError
from .gemm_bound import contained_efficiency
from .specs.common import Source, Strict
from .specs.types import Bool, Float, Int

SCHEMA_VERSION = 1
NonNegative = Annotated[Float, Field(ge=0)]  # times, spreads: finite (Strict) and >= 0
Positive = Annotated[Float, Field(gt=0)]  # rates and peaks: finite and > 0
ProfileKind = Literal["default", "reference", "measured"]
KIND_LABELS = {
    "default": "default (uncalibrated)",
    "reference": "reference (measured upstream)",
    "measured": "measured (this machine)",
}


class Curve(Strict):
    """A function on a regular grid over log2 of its axes, multilinear, clamped at the edges.

    ``values`` is the flattened (C-order) table over the grid; with no axes it is a constant.
    Clamping means: beyond the measured range the nearest measured efficiency holds (large
    shapes saturate; the smallest measured kernel bounds tiny ones).
    """

    axes: tuple[str, ...] = ()
    log2_grid: tuple[tuple[float, ...], ...] = ()
    values: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "Curve":
        if len(self.axes) != len(self.log2_grid):
            raise SpecError("curve: one log2_grid per axis is required")
        size = int(np.prod([len(g) for g in self.log2_grid])) if self.axes else 1
        if len(self.values) != size:
            raise SpecError(f"curve: {len(self.values)} values for a grid of {size} points")
        for g in self.log2_grid:
            if len(g) < 1 or any(b <= a for a, b in pairwise(g)):
                raise SpecError("curve: each log2_grid axis must be strictly increasing")
        values = np.asarray(self.values, dtype=float)  # one conversion of the table
        if not np.isfinite(values).all() or values.min() <= 0:
            raise SpecError("curve: values must be finite and > 0")
        return self

    @cached_property
    def best(self) -> float:
        """The largest value of the table (a sweep asks for it once per model call)."""
        return max(self.values)

    @cached_property
    def _table(self) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
        grids = [np.asarray(g, dtype=float) for g in self.log2_grid]
        shape = tuple(len(g) for g in grids)
        strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
        return grids, np.asarray(self.values, dtype=float), strides

    def __call__(self, *points) -> np.ndarray:
        """Evaluate at ``points`` (one array-like per axis, broadcast together, in linear units)."""
        if not self.axes:
            if points:
                return np.full(np.broadcast(*points).shape, self.values[0])
            return np.asarray(self.values[0])
        if len(points) != len(self.axes):
            raise ValueError(f"curve over {self.axes} needs {len(self.axes)} coordinates")
        grids, flat, strides = self._table
        logs = [np.log2(np.maximum(np.asarray(p, dtype=float), 1e-30)) for p in points]
        if len(grids) == 1:  # np.interp clamps at the ends, as the curve does
            g = grids[0]
            return np.interp(logs[0], g, flat) if len(g) > 1 else np.full(logs[0].shape,
                                                                           flat[0])
        logs = np.broadcast_arrays(*logs)
        base = np.zeros(logs[0].shape, dtype=np.intp)
        axes = []  # (stride, fraction) of the axes with more than one node
        for g, u, stride in zip(grids, logs, strides, strict=True):
            if len(g) == 1:
                continue
            u = np.minimum(np.maximum(u, g[0]), g[-1])
            i = np.minimum(np.maximum(np.searchsorted(g, u, side="right") - 1, 0), len(g) - 2)
            base = base + i * stride
            axes.append((stride, (u - g[i]) / (g[i + 1] - g[i])))
        out = 0.0
        for corner in range(1 << len(axes)):  # fixed order: grids and points sum alike
            weight, index = 1.0, base
            for bit, (stride, frac) in enumerate(axes):
                if corner >> bit & 1:
                    weight, index = weight * frac, index + stride
                else:
                    weight = weight * (1.0 - frac)
            out = out + weight * flat[index]
        return np.asarray(out)


#: the fields of a measured MoE shape, in the order of its ``moe_curves`` key
MOE_SHAPE_FIELDS = ("hidden", "inter", "experts", "topk", "tp", "ep", "gated")


def moe_shape_key(hidden, inter, experts, topk, tp, ep, gated) -> str:
    """The ``moe_curves`` key of a measured MoE shape: ``hidden=7168,inter=2048,experts=256,
    topk=8,tp=8,ep=1,gated=1`` (inter is the expert's whole intermediate size, split ``tp``
    ways, as the upstream tables state it)."""
    values = (hidden, inter, experts, topk, tp, ep, int(bool(gated)))
    return ",".join(f"{f}={int(v)}" for f, v in zip(MOE_SHAPE_FIELDS, values, strict=True))


def parse_moe_shape(key: str) -> dict[str, int]:
    """The fields of a ``moe_shape_key`` (an error naming the key if it is not one)."""
    try:
        pairs = dict(part.split("=", 1) for part in key.split(","))
        shape = {f: int(pairs[f]) for f in MOE_SHAPE_FIELDS}
    except (KeyError, ValueError) as exc:
        raise SpecError(f"moe_curves: {key!r} is not a shape key like "
                        f"{moe_shape_key(7168, 2048, 256, 8, 8, 1, True)!r}") from exc
    if set(pairs) != set(MOE_SHAPE_FIELDS) or min(shape.values()) < 0 or \
            min(shape[f] for f in MOE_SHAPE_FIELDS[:-1]) < 1:
        raise SpecError(f"moe_curves: {key!r}: fields {', '.join(MOE_SHAPE_FIELDS)} "
                        "(positive integers, gated 0 or 1) expected")
    return shape


def check_curve_tables(curves: dict, moe: dict) -> None:
    """Every measured curve belongs to one of the profile's ``moe`` tables (it is read with
    that table's fixed time), under a valid shape key."""
    for key, shapes in curves.items():
        if key not in moe:
            raise SpecError(f"moe_curves[{key!r}]: no moe table {key!r} beside it (a "
                            "measured curve is read with its table's fixed time and as "
                            "its stand-in only at the shapes it measured)")
        for shape in shapes:
            parse_moe_shape(shape)


class MoeCurve(Strict):
    """One measured MoE shape of a grouped-GEMM table: the routed experts' time (the core's up
    + down grouped GEMM calls, ``calibrate.fit.moe``) at each measured token count, derived
    from the measured rows: the parts the harness timed that the core charges itself taken out
    (``net_times``), moved from the collector's routing to the core's uniform expectation at
    the row's own efficiency (``to_uniform_routing``), floored along EP as the fit reads them
    (``calibrate.fit.moe.ep_floor``).
    The core reads it by log-log interpolation in tokens inside the measured range
    (``roofline``: a curve hit), the fitted grid elsewhere."""

    tokens: tuple[Annotated[Int, Field(ge=1)], ...] = Field(min_length=2)
    time_s: tuple[Positive, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> "MoeCurve":
        if len(self.tokens) != len(self.time_s):
            raise SpecError(f"moe curve: {len(self.tokens)} tokens but {len(self.time_s)} "
                            "times")
        if any(b <= a for a, b in pairwise(self.tokens)):
            raise SpecError("moe curve: tokens must be strictly increasing")
        return self

    def __call__(self, tokens) -> np.ndarray:
        """Time at ``tokens`` by linear interpolation in log(tokens), log(time); NaN outside
        the measured range (the caller falls back to the fitted grid there)."""
        x = np.log(np.maximum(np.asarray(tokens, float), 1e-30))
        lx, lt = self._logs
        t = np.exp(np.interp(x, lx, lt))
        # a relative tolerance at the ends: a token count computed from rows x ep / topk
        inside = (x >= lx[0] - 1e-9) & (x <= lx[-1] + 1e-9)
        return np.where(inside, t, np.nan)

    @cached_property
    def _logs(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.log(np.asarray(self.tokens, float)), np.log(np.asarray(self.time_s, float)))


class MoeCurveSet(Strict):
    """A profile's measured MoE curves in their own file (``moe_curves_file``): MoE table key ->
    shape key -> curve, as ``CalibrationProfile.moe_curves`` holds them inline."""

    schema_version: Literal[1] = 1
    curves: dict[str, dict[str, MoeCurve]] = Field(default_factory=dict)


class CollectiveFit(Strict):
    """Achieved bus bandwidth of one collective for one group size over one kind of link."""

    collective: Literal[
        "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv", "broadcast",
        # MoE dispatch / combine, DeepEP low-latency and normal kernels (comm.EP_ALL_TO_ALL)
        "ep_dispatch_ll", "ep_combine_ll", "ep_dispatch_normal", "ep_combine_normal",
        # an engine's own TP all-reduce by message size (comm.CUSTOM_ALL_REDUCE)
        "custom_allreduce_vllm", "custom_allreduce_sglang", "custom_allreduce_trtllm"
    ]
    scope: Literal["intra", "inter"]  # inside one node's fabric, or across the network
    group_size: Int = Field(ge=2)
    latency_s: Float = Field(ge=0)
    efficiency: Curve  # bus bandwidth / link bandwidth, over "bytes"
    link: str | None = None  # interconnect the efficiency was measured on (documentation)
    nvls: Bool = False  # measured with NVLink SHARP active


# probability levels of ``FitError.log_ratio_quantiles`` (perfmodel.uncertainty reads them)
RESIDUAL_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


class FitError(Strict):
    """Held-out accuracy of one fitted table (fit on a random part, test on the rest)."""

    table: str
    n_fit: Int
    n_test: Int
    median_ape: Float
    p90_ape: Float
    # signed log(measured / predicted) of the test points at RESIDUAL_LEVELS (> 0: the kernel
    # ran slower than the core says); absent in profiles written before they were recorded
    log_ratio_quantiles: tuple[Float, ...] | None = None

    @model_validator(mode="after")
    def _check_quantiles(self) -> "FitError":
        q = self.log_ratio_quantiles
        if q is not None and (len(q) != len(RESIDUAL_LEVELS)
                              or any(b < a for a, b in pairwise(q))):
            raise SpecError(f"fit_errors[{self.table}].log_ratio_quantiles: "
                            f"{len(RESIDUAL_LEVELS)} non-decreasing values expected "
                            f"(levels {RESIDUAL_LEVELS})")
        return self


class MemoryOverheads(Strict):
    """Explicit non-model memory terms (Sec. 'Memory' of docs/modelling.md)."""

    cuda_context_gib: Float = Field(ge=0)  # CUDA context + cuBLAS/cuDNN workspaces
    allocator_fraction: Float = Field(ge=0, lt=1)  # caching-allocator fragmentation reserve


class RingProtocol(Strict):
    """One NCCL algorithm / protocol of an all-gather / reduce-scatter across nodes, from NCCL's
    own tuning model (src/graph/tuning.cc, ncclTopoTuneModel): latency (nRanks - nNodes) x
    ``intra_step_s`` + (nNodes - 1) x ``inter_step_s`` (a ring's steps inside a node and across
    the network; ``inter_step_one_per_node_s`` instead with one rank per node) + nRanks x
    ``rank_step_s`` + log2(nNodes) x ``log2_node_step_s`` (PAT's terms), bandwidth ``bandwidth``
    x that of the Simple ring; NCCL runs the one of least modelled time. ``intra_kinds``: the
    node fabrics NCCL enables it on (None: all); ``one_per_node_only``: only for groups of one
    rank per node (PAT)."""

    protocol: str
    intra_step_s: Float = Field(ge=0)
    inter_step_s: Float = Field(ge=0)
    bandwidth: Float = Field(gt=0, le=1)
    intra_kinds: list[str] | None = None
    inter_step_one_per_node_s: Float | None = Field(default=None, ge=0)
    rank_step_s: Float = Field(default=0.0, ge=0)
    log2_node_step_s: Float = Field(default=0.0, ge=0)
    one_per_node_only: Bool = False


class AttentionScale(Strict):
    """A measured attention kernel's efficiency relative to its phase's curve (fitted on the
    curve's own head dim, full causal attention), for one head dim and sliding window
    (0: none): ``factor`` = eff(head_dim, window) / eff_curve, itself a curve over the same
    axes (or a constant) (``CalibrationProfile.attention_factor``)."""

    head_dim: Int = Field(ge=1)
    window: Int = Field(default=0, ge=0)
    factor: Curve


def capability_tuple(capability) -> tuple[int, int] | None:
    """An NVIDIA compute capability ``"major.minor"`` (DeviceSpec.compute_capability) as a
    comparable pair; None for anything else (an AMD ``gfx942``, a CPU, unknown)."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(capability)) if capability is not None else None
    return (int(m.group(1)), int(m.group(2))) if m else None




class AttentionKernel(Strict):
    """A fused attention kernel and the lowest NVIDIA compute capability it runs on (its own
    source's gate), with its efficiency on the attention roofline: ``efficiency`` None means
    the profile's ``defaults.attention`` (the kernel that constant was measured for)."""

    kernel: str = Field(min_length=3)
    min_compute_capability: str
    efficiency: Float | None = Field(default=None, gt=0, le=1.5)
    # the attention curves (calls) the kernel runs and its efficiency describes; a call of
    # another phase (e.g. decode, which engines run with their own paged kernels) keeps
    # defaults.attention
    phases: tuple[Literal["prefill", "decode", "backward"], ...] = ("prefill", "decode",
                                                                    "backward")
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _check(self) -> "AttentionKernel":
        if capability_tuple(self.min_compute_capability) is None:
            raise SpecError(f"attention_kernels[{self.kernel!r}].min_compute_capability: "
                            f"{self.min_compute_capability!r} is not a compute capability "
                            "like \"8.0\"")
        return self


class DefaultEfficiency(Strict):
    """Fallback constants when a table is missing from a profile."""

    gemm: Float = Field(gt=0, le=1.5)
    attention: Float = Field(gt=0, le=1.5)
    memory: Float = Field(gt=0, le=1.5)
    collective: Float = Field(gt=0, le=1.5)
    collective_latency_s: Float = Field(ge=0)
    # optional in a file: unset ones are filled from calibration/default.json on loading
    host_link: Float | None = Field(default=None, gt=0, le=1.5)  # PCIe copies (offloading)
    # per-step latency of a collective across the network (ring: n-1 steps, tree: 2 log2 k)
    network_step_latency_s: Float | None = Field(default=None, ge=0)
    # NCCL ring all-gather / reduce-scatter latency per protocol across nodes (RingProtocol)
    ring_protocols: list[RingProtocol] | None = None


class ProfileQuality(Strict):
    """How far a measured profile can be trusted (``perfmodel.calibrate.quality``): poor when
    most points did not converge (a loaded machine), partial when the time budget left points
    unmeasured. Predictions from a poor profile carry a warning."""

    verdict: Literal["good", "partial", "poor"]
    points_ok: Int = Field(ge=0)
    converged_fraction: Float = Field(ge=0, le=1)
    not_measured: Int = Field(default=0, ge=0)  # points the time budget left out
    unsupported_dtypes: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class CalibrationProfile(Strict):
    """Fitted efficiencies for one device (or the documented defaults)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    device: str | None = None  # hardware_specs id the profile was measured on
    kind: ProfileKind
    created: str | None = None
    sources: list[Source] = Field(default_factory=list)
    notes: str | None = None
    defaults: DefaultEfficiency
    kernel_overhead_s: Float = Field(ge=0)
    # fixed time per attention call ON TOP of kernel_overhead_s, per curve (prefill | decode |
    # backward): a framework attention op runs several kernels (QKV preprocessing, KV-cache
    # write, FMHA), so its floor is well above one kernel's (perfmodel.calibrate.fit)
    attention_overhead_s: dict[str, NonNegative] = Field(default_factory=dict)
    # dtype -> eff over (m, n, k): the device's reference table of a format under its name,
    # another engine's kernel's table under ``<dtype>@<kernel>`` (``gemm_key``, ``gemm_table``)
    gemm: dict[str, Curve] = Field(default_factory=dict)
    # GEMM table key -> the kernel its measured rows ran (a label of calibration/gemm_kernels.yaml:
    # "trtllm_torch_flow", "flashinfer_cutedsl"); absent: the kernel is not known
    gemm_kernel: dict[str, str] = Field(default_factory=dict)
    # dtype -> eff of a grouped GEMM (a MoE layer's experts, ``groups`` > 1) over (m, groups,
    # weights): rows per problem, problems per call, n x k of one problem's weight matrix;
    # none for a dtype: grouped GEMMs use the ``gemm`` curve at one problem's shape
    moe: dict[str, Curve] = Field(default_factory=dict)
    # dtype -> fixed time per grouped-GEMM call (groups > 1) ON TOP of kernel_overhead_s, read
    # with the ``moe`` curve: a framework MoE op runs routing, permute and finalize kernels
    # around its grouped GEMMs, so its floor is well above one kernel's
    moe_overhead_s: dict[str, NonNegative] = Field(default_factory=dict)
    # MoE table key -> the kernel implementation its measured table ran (a label of
    # calibration/moe_kernels.yaml: "trtllm_cutlass", "deepgemm", ...); an engine that runs another kernel for that format
    # reads the proxy its engine file names (``moe_table``); absent: the kernel is not known
    moe_kernel: dict[str, str] = Field(default_factory=dict)
    # MoE table key -> measured shape (``moe_shape_key``) -> its measured curve over tokens:
    # the table's own rows, read where the core's grouped GEMMs have exactly that shape on
    # one GPU (``moe_shape_curves``; roofline: the fitted ``moe`` grid elsewhere)
    moe_curves: dict[str, dict[str, MoeCurve]] = Field(default_factory=dict)
    # or, in a written profile, the file beside it that holds them (``MoeCurveSet``; write_profile
    # moves them there): read only when a MoE model's experts are timed
    # (``specs.registry.measured_moe_curves``),
    # so the ~3,000 curves of a reference profile cost nothing to a dense prediction
    moe_curves_file: str | None = None
    attention: dict[str, Curve] = Field(default_factory=dict)  # prefill|decode|backward: (q, kv)
    # fused attention kernels by the compute capability each needs, most demanding first: a
    # device without a measured attention curve gets the efficiency of the first one it can
    # run (``attention_default``), so a device below FlashAttention's gate does not get
    # FlashAttention's efficiency; none (measured and reference profiles): defaults.attention
    attention_kernels: list[AttentionKernel] = Field(default_factory=list)
    # per curve, its efficiency at other head dims and sliding windows (``attention_factor``);
    # none (older profiles, one head dim measured): factor 1
    attention_scale: dict[str, list[AttentionScale]] = Field(default_factory=dict)
    memory: Curve | None = None  # eff over (bytes)
    # measured throughput of elementwise kernels by kind (elements per second, best size):
    # their compute roof where it is lower than the memory one (erf, exp on CPUs)
    elementwise_rate: dict[str, Positive] = Field(default_factory=dict)
    collectives: list[CollectiveFit] = Field(default_factory=list)
    memory_overheads: MemoryOverheads
    fit_errors: list[FitError] = Field(default_factory=list)
    # relative spread of residuals (e.g. p90 |log ratio|) per table: an uncertainty band
    uncertainty: dict[str, NonNegative] = Field(default_factory=dict)
    # measured peaks where no datasheet applies (a CPU), or where the device ran off-spec
    peak_tflops: dict[str, Positive] = Field(default_factory=dict)
    memory_bandwidth_gbps: Float | None = Field(default=None, gt=0)
    device_facts: dict = Field(default_factory=dict)  # NVML / CPU facts at measurement time
    quality: ProfileQuality | None = None  # measured profiles: convergence and coverage
    path: str | None = Field(default=None, exclude=True)

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    @model_validator(mode="after")
    def _check_moe_curves(self) -> "CalibrationProfile":
        check_curve_tables(self.moe_curves, self.moe)
        if self.moe_curves and self.moe_curves_file:
            raise SpecError("a calibration profile holds moe_curves inline or names its "
                            "moe_curves_file, not both")
        return self

    @property
    def has_moe_curves(self) -> bool:
        """Whether the profile holds measured MoE curves, inline or in its ``moe_curves_file``."""
        return bool(self.moe_curves or self.moe_curves_file)

    def moe_curves_path(self) -> Path | None:
        """Where ``moe_curves_file`` is: beside the profile's ``path`` (None: curves inline or
        none; specs.registry.measured_moe_curves reads it)."""
        if self.moe_curves or not self.moe_curves_file:
            return None
        if self.path is None:
            raise SpecError(f"calibration profile {self.id}: moe_curves_file "
                            f"{self.moe_curves_file!r} but no path to find it beside")
        return Path(self.path).parent / self.moe_curves_file

    def moe_shape_curves(self, key: str, curves: dict[str, dict[str, MoeCurve]]
                         ) -> dict[tuple[float, float, bool], list[tuple]]:
        """The measured curves of MoE table ``key`` by the per-GPU expert shape the core's
        grouped GEMMs carry, (hidden, inter / tp, gated) -> [(experts, topk, ep, inter, curve)]
        (``roofline``: a grouped GEMM pair of that shape whose rows and active experts are
        those of the curve's routing reads it). ``curves``: the profile's measured curves
        (``specs.registry.measured_moe_curves``). Built once per profile and key."""
        owner, cache = self.__dict__.get("_moe_curve_memo", (None, None))
        if owner is not curves:
            cache = {}
            self.__dict__["_moe_curve_memo"] = (curves, cache)
        if key not in cache:
            index: dict[tuple[float, float, bool], list[tuple]] = {}
            for shape, curve in curves.get(key, {}).items():
                s = parse_moe_shape(shape)
                index.setdefault((float(s["hidden"]), s["inter"] / s["tp"], bool(s["gated"])),
                                 []).append((s["experts"], s["topk"], s["ep"], s["inter"],
                                             curve))
            cache[key] = index
        return cache[key]

    # ---- evaluation (vectorised; inputs broadcast) ------------------------------------------
    def gemm_table(self, dtype: str, kernels: tuple[str, ...] = ()) -> tuple[str, str]:
        """(key of ``gemm``, why) of the dense GEMM table that serves ``dtype`` run by one of
        ``kernels`` (the engine's candidates for that format in its selection order,
        engines/<id>.yaml ``gemm.kernels``; () = not stated: the generic engine). The same
        mechanism as the grouped GEMMs (``moe_table``): a format may have several tables, one
        per kernel measured, the device's reference table under the format's name (which one
        it is: calibration/references.yaml) and other kernels' under ``dtype@kernel``
        (``gemm_key``). Order:

        1. a table of ``dtype`` that measured one of ``kernels`` (the first with a table);
        2. the format's reference table as measured (no kernel stated, or none of the
           engine's kernels measured on this device);
        3. the fallback dtype's reference table (``fallback_key``: fp16 -> bf16, nvfp4 -> mxfp4
           -> fp8 ...), never another kernel's ``@`` table. ("", reason) if none: the default
           efficiency.
        """
        for kernel in kernels:
            for key in (dtype, gemm_key(dtype, kernel)):
                if key in self.gemm and self.gemm_kernel.get(key) == kernel:
                    return key, f"gemm.{key}" + ("" if "@" in key else f" ({kernel})")
        key = fallback_key(dtype, {k: v for k, v in self.gemm.items() if "@" not in k})
        if not key:
            return "", f"no GEMM table for {dtype}: default efficiency"
        measured = self.gemm_kernel.get(key)
        why = f"gemm.{key}" + (f" ({measured})" if measured else "")
        if key != dtype:
            why += f" (no gemm.{dtype} table)"
        elif kernels and measured is not None:
            why += f", standing in for {'/'.join(kernels)}"
        return key, why

    def gemm_curve(self, dtype: str, kernels: tuple[str, ...] = ()) -> Curve | None:
        """The fitted GEMM curve ``gemm_table`` picks for ``dtype`` run by one of ``kernels``
        (or its fallback dtype's), if the profile has one."""
        return self.gemm.get(self.gemm_table(dtype, kernels)[0])

    def gemm_efficiency(self, dtype: str, m, n, k, kernels: tuple[str, ...] = ()) -> np.ndarray:
        curve = self.gemm_curve(dtype, kernels)
        if curve is None:
            return np.full(np.broadcast(m, n, k).shape, self.defaults.gemm)
        return contained_efficiency(curve, m, n, k)  # never slower than a larger GEMM

    def moe_table(self, dtype: str, weight_format: str = "",
                  kernels: tuple[str, ...] = (), proxy: str | None = None) -> tuple[str, str]:
        """(key of ``moe``, why) of the grouped-GEMM table that serves experts computing in
        ``dtype`` with weights in ``weight_format`` ("" = ``dtype``), run by one of ``kernels``
        (the engine's candidates for that format in its selection order, engines/<id>.yaml
        ``moe.kernels``; () = not stated: the generic engine), with ``proxy`` the format whose
        table the engine file names for a kernel no table here measured. ("", reason) if
        none: the dense curve. A format may have several tables, one per kernel measured: the
        device's reference table under the format's name (``fmt``: TensorRT-LLM's) and other
        engines' under ``fmt@kernel`` (``moe_key``). Fallback order (docs/calibration.md
        "Grouped GEMMs"):

        1. a table of the experts' format (``moe_format``: ``w4a16_mxfp4`` for MXFP4 weights
           in a bf16 GEMM, else the compute dtype) that measured one of ``kernels`` (the
           first of them with a table), or, no kernel stated on either side, the format's
           reference table;
        2. the format's tables measured other kernels: the ``proxy`` format's table, if the
           engine file names one and the profile has it; else the format's reference table
           as measured (the same format's nearest measurement);
        3. no table of a weight-only mix that ``WEIGHT_ONLY_PROXY`` maps to a measured one
           (NVFP4 weights in a bf16 GEMM -> ``w4a16_mxfp4``): that table, said as a proxy;
        4. no table of the format: the compute dtype's table or its fallback dtype's
           (``fallback_key``: fp8_block -> fp8, ...), never a weight-only format's or another
           engine's kernel table (a bf16 expert never reads ``w4a16_mxfp4``).
        """
        fmt = moe_format(dtype, weight_format)
        for kernel in kernels:
            for key in (fmt, moe_key(fmt, kernel)):
                if key in self.moe and self.moe_kernel.get(key) == kernel:
                    return key, f"moe.{key}" + ("" if "@" in key else f" ({kernel})")
        if fmt in self.moe:
            measured = self.moe_kernel.get(fmt)
            if not kernels or measured is None:
                return fmt, f"moe.{fmt}" + (f" ({measured})" if measured else "")
            if proxy and proxy in self.moe:
                return proxy, (f"moe.{proxy} as proxy for {'/'.join(kernels)} {fmt} "
                               f"(moe.{fmt} measured {measured})")
            return fmt, f"moe.{fmt} ({measured}, standing in for {'/'.join(kernels)})"
        near = WEIGHT_ONLY_PROXY.get(fmt)
        if near in self.moe:
            measured = self.moe_kernel.get(near) or "kernel not recorded"
            return near, (f"moe.{near} ({measured}) as proxy for {fmt}: the measured 4-bit "
                          f"weight-only grouped GEMM (no moe.{fmt} table)")
        key = fallback_key(dtype, {k: v for k, v in self.moe.items()
                                if k not in MOE_MIXED and "@" not in k})
        if key and kernels and fmt != key:
            # the engine runs another kernel on another format: a proxy, said as one
            measured = self.moe_kernel.get(key) or "kernel not recorded"
            return key, (f"moe.{key} ({measured}) as proxy for {'/'.join(kernels)} {fmt}: "
                         f"no measured {fmt} grouped-GEMM table on this device")
        if key:
            return key, f"moe.{key} (no moe.{fmt} table)"
        return "", f"no grouped-GEMM table for {fmt}: dense GEMM curve"

    def moe_curve(self, dtype: str, weight_format: str = "", kernels: tuple[str, ...] = (),
                  proxy: str | None = None) -> Curve | None:
        """The grouped-GEMM curve ``moe_table`` picks, if any."""
        return self.moe.get(self.moe_table(dtype, weight_format, kernels, proxy)[0])

    def attention_default(self, capability=None, phase: str = "prefill") -> tuple[float, str]:
        """(efficiency, kernel) of a fused attention call of curve ``phase`` (prefill | decode
        | backward) without a measured curve on a device of compute ``capability``
        (DeviceSpec.compute_capability): the first of ``attention_kernels`` whose
        ``min_compute_capability`` the device meets (none met: the last, the least demanding
        kernel), if it runs that phase; ``defaults.attention`` (kernel "") where the profile
        lists no kernels, the capability is not an NVIDIA one, or the kernel does not run the
        phase."""
        cc = capability_tuple(capability)
        if not self.attention_kernels or cc is None:
            return float(self.defaults.attention), ""
        chosen = next((k for k in self.attention_kernels
                       if cc >= capability_tuple(k.min_compute_capability)),
                      self.attention_kernels[-1])
        if phase not in chosen.phases:
            return float(self.defaults.attention), ""
        eff = self.defaults.attention if chosen.efficiency is None else chosen.efficiency
        return float(eff), chosen.kernel

    def attention_curve_key(self, phase: str) -> str:
        """The attention curve a call of ``phase`` reads: its own, a backward call without
        one the prefill (forward) curve, else "" (none: ``attention_default``)."""
        if phase in self.attention:
            return phase
        return "prefill" if phase == "backward" and "prefill" in self.attention else ""

    def attention_efficiency(self, phase: str, q_len, kv_len, head_dim=0.0,
                             window=0.0, capability=None) -> np.ndarray:
        """Efficiency of an attention call on ``phase``'s curve at (q_len, kv_len) (decode:
        (streams, kv_len)), times ``attention_factor`` for its head dim and window; the
        backward pass without its own scale takes the prefill (forward) scale, as it takes
        the prefill curve when it has no curve of its own. Without a curve: the fused
        kernel's efficiency on a device of compute ``capability`` (``attention_default``).
        Every attention-class operator is a fused kernel (FlashAttention / FMHA, MLA, DSA,
        linear-attention cores); the unfused path's batched GEMMs are GEMM-class operators
        (``ops.unfused_attention_ops``) and never come here."""
        key = self.attention_curve_key(phase)
        curve = self.attention.get(key)
        if curve is None:
            shape = np.broadcast(q_len, kv_len).shape
            return np.full(shape, self.attention_default(capability, phase)[0])
        scale = key if key in self.attention_scale else ("prefill" if key == "backward"
                                                           else key)
        return curve(q_len, kv_len) * self.attention_factor(scale, head_dim, window, q_len,
                                                            kv_len)

    def attention_factor(self, phase: str, head_dim, window, q_len, kv_len) -> np.ndarray:
        """The ``attention_scale`` factor of ``phase``'s curve at (q_len, kv_len) for calls
        with ``head_dim`` (0: not a GQA/MHA head, e.g. MLA: 1) and a binding sliding
        ``window`` (0: none). Head dim: the full-attention (window 0) factors interpolated
        linearly in log2(head_dim) between the two nearest measured head dims, clamped
        beyond them; window: each windowed factor over its head dim's full-attention factor,
        interpolated in log2(head_dim) between the head dims measured at that window and in
        log2(window) between windows (both clamped), times the head-dim factor. Exact at every measured
        (head_dim, window); 1 with no scale (older profiles)."""
        points = self.attention_scale.get(phase)
        hd, w = np.asarray(head_dim, float), np.asarray(window, float)
        shape = np.broadcast(hd, w, np.asarray(q_len), np.asarray(kv_len)).shape
        out = np.ones(shape)
        if not points:
            return out
        full = sorted((p.head_dim, p.factor) for p in points if p.window == 0)
        if not full:
            full = [(1, Curve(values=(1.0,)))]

        def by_head(h: float) -> np.ndarray:  # log factor at one head dim
            dims = [d for d, _ in full]
            i = int(np.searchsorted(dims, h))
            if i == 0 or i == len(dims):
                return np.log(full[min(i, len(dims) - 1)][1](q_len, kv_len))
            (d0, c0), (d1, c1) = full[i - 1], full[i]
            if h == d1:
                return np.log(c1(q_len, kv_len))
            u = (np.log2(h) - np.log2(d0)) / (np.log2(d1) - np.log2(d0))
            return (1 - u) * np.log(c0(q_len, kv_len)) + u * np.log(c1(q_len, kv_len))

        windowed: dict[int, list[AttentionScale]] = {}
        for p in points:
            if p.window > 0:
                windowed.setdefault(p.window, []).append(p)
        wins = sorted(windowed) if np.any(w > 0) else []
        # window -> its measured head dims' log factors over the full-attention factor
        measured = {win: sorted((p.head_dim, np.log(p.factor(q_len, kv_len)) - by_head(
            p.head_dim)) for p in windowed[win]) for win in wins}

        def residual_at(win: int, h: float) -> np.ndarray:  # in log2(head dim), clamped
            dims = [d for d, _ in measured[win]]
            i = int(np.searchsorted(dims, h))
            if (i < len(dims) and dims[i] == h) or i == 0 or i == len(dims):
                return measured[win][min(i, len(dims) - 1)][1]
            (d0, r0), (d1, r1) = measured[win][i - 1], measured[win][i]
            u = (np.log2(h) - np.log2(d0)) / (np.log2(d1) - np.log2(d0))
            return (1 - u) * r0 + u * r1
        for h in np.unique(hd):
            if h <= 0:
                continue
            log_f = np.broadcast_to(by_head(float(h)), shape)
            for v in np.unique(w):
                if v <= 0 or not wins:
                    if v <= 0:
                        out = np.where((hd == h) & (w == v), np.exp(log_f), out)
                    continue
                j = int(np.searchsorted(wins, v))
                if j == 0 or j == len(wins) or v == wins[j]:
                    r = residual_at(wins[min(j, len(wins) - 1)], float(h))
                else:
                    u = (np.log2(v) - np.log2(wins[j - 1])) / (np.log2(wins[j]) -
                                                              np.log2(wins[j - 1]))
                    r = (1 - u) * residual_at(wins[j - 1], float(h)) + u * residual_at(
                        wins[j], float(h))
                out = np.where((hd == h) & (w == v), np.exp(log_f + r), out)
            if not wins:
                out = np.where((hd == h) & (w > 0), np.exp(log_f), out)
        return out

    def elementwise_elements_per_s(self, kind: str) -> float | None:
        """Measured element rate of a kernel kind, trying close relatives: a gated
        activation by its activation, and every kind by the generic ``add``-class rate only
        when nothing closer was measured."""
        for k in (kind, _EW_FALLBACK.get(kind, "")):
            if k in self.elementwise_rate:
                return self.elementwise_rate[k]
        return None

    @property
    def stream_efficiency(self) -> float:
        """Efficiency of a memory-bound kernel that streams from main memory: the bandwidth
        curve at its largest measured working set (HBM, or DRAM beyond a CPU's caches)."""
        if self.memory is None:
            return float(self.defaults.memory)
        top = 2.0 ** self.memory.log2_grid[0][-1] if self.memory.axes else 1.0
        return float(min(self.memory(top), 1.0))

    def memory_efficiency(self, nbytes) -> np.ndarray:
        if self.memory is None:
            return np.full(np.shape(nbytes), self.defaults.memory)
        return self.memory(nbytes)

    def collective_fit(self, collective: str, scope: str, group_size: int) -> CollectiveFit | None:
        """The fit for this collective and scope with the nearest group size (log distance)."""
        key = (collective, scope, group_size)
        cache = self._fit_cache
        if key not in cache:
            cache[key] = self._nearest_fit(collective, scope, group_size)
        return cache[key]

    @property
    def _fit_cache(self) -> dict:
        """Lookups of ``collective_fit``, valid for this profile's list of fits only: a
        ``model_copy(update=...)`` carries the instance dict over, so the cache is keyed on
        the identity of ``collectives``."""
        owner, cache = self.__dict__.get("_fits_memo", (None, None))
        if owner is not self.collectives:
            cache = {}
            self.__dict__["_fits_memo"] = (self.collectives, cache)
        return cache

    def _nearest_fit(self, collective: str, scope: str, group_size: int) -> CollectiveFit | None:
        fits = [f for f in self.collectives if f.collective == collective and f.scope == scope]
        if not fits and collective in ("all_gather", "reduce_scatter", "broadcast"):
            fits = [f for f in self.collectives if f.collective == "all_reduce" and f.scope == scope]
        if not fits:
            return None
        return min(fits, key=lambda f: (abs(np.log2(f.group_size) - np.log2(group_size)),
                                        -f.group_size))

    def summary(self) -> dict:
        return {"id": self.id, "kind": self.kind, "label": self.label, "device": self.device,
                "path": self.path}


_EW_FALLBACK = {"silu_and_mul": "silu", "gelu_and_mul": "gelu", "relu": "add",
                "rope": "add", "copy": "add", "cast": "add", "other": "add"}
# per-tensor fp8 without a table of its own reads the block-scaled fp8 curve first (the same
# fp8 tensor-core path and weight bytes but the scales), then int8's (same peak, another
# kernel): MI300X has fp8_block (aiter, from M = 1) and int8 (aiter, M >= 64) tables only, and
# int8's curve extrapolated to ~0.2 of HBM bandwidth for decode (fp8 decoded slower than bf16)
_GEMM_FALLBACK = {"fp16": ("bf16",), "bf16": ("fp16",), "tf32": ("fp32",), "int8": ("fp8",),
                  "fp8": ("fp8_block", "int8")}
# Block-scaled formats without a measured curve borrow the nearest format's, in this order
# (docs/calibration.md "Block-scaled GEMMs"): an efficiency is a fraction of the format's own
# roofline (its peak, its bytes with scales), so the borrowed curve is rescaled by the peak
# ratio where compute-bound and by the bytes ratio where memory-bound. Held-out check on the
# B200 / H100 / H200 tables: docs/calibration.md, tests/test_formats.py.
_BLOCK_FALLBACK = {"fp8_block": ("fp8", "int8"),
                   "nvfp4": ("mxfp4", "fp8", "fp8_block", "int8"),
                   "mxfp4": ("nvfp4", "fp8", "fp8_block", "int8")}


#: MoE tables of weight-only / mixed formats (aiconfigurator ``moe_dtype`` names, TensorRT-LLM
#: 1.3.0rc20): table name -> (weight format, compute dtype), the GEMM ``ops.Precision.inference``
#: builds for them (weights dequantised into the activation dtype's GEMM)
MOE_MIXED = {"w4a16_mxfp4": ("mxfp4", "bf16"), "w4a8_mxfp4_mxfp8": ("mxfp4", "fp8")}
_MIXED_NAME = {pair: name for name, pair in MOE_MIXED.items()} | {("mxfp4", "fp16"):
                                                                   "w4a16_mxfp4"}
#: weight-only mixes without a table -> the measured table of the nearest mix: NVFP4 weights in
#: a 16-bit GEMM (vLLM runs ModelOpt NVFP4 experts through Marlin where no fp4 tensor cores
#: run them: vllm/model_executor/layers/quantization/modelopt.py ``ModelOptNvFp4FusedMoE``,
#: ``prepare_moe_fp4_layer_for_marlin``) dequantise the same e2m1 elements as W4A16 MXFP4, with
#: one e4m3 scale per 16 instead of one e8m0 per 32 (dtypes.BLOCK_SCALED); the efficiency is
#: read against the experts' own bytes, scales included
WEIGHT_ONLY_PROXY = {"w_nvfp4_bf16": "w4a16_mxfp4", "w_nvfp4_fp16": "w4a16_mxfp4"}


def moe_key(fmt: str, kernel: str = "") -> str:
    """The ``moe`` key of a table of format ``fmt`` measured for ``kernel``: ``fmt@kernel``
    (another engine's kernel table), or ``fmt`` itself without a kernel (the reference
    table)."""
    return f"{fmt}@{kernel}" if kernel else fmt


def gemm_key(dtype: str, kernel: str = "") -> str:
    """The ``gemm`` key of a dense GEMM table of ``dtype`` measured for ``kernel``:
    ``dtype@kernel`` (another kernel's table), or ``dtype`` itself without one (the device's
    reference table); the same convention as ``moe_key``."""
    return f"{dtype}@{kernel}" if kernel else dtype


def moe_key_format(key: str) -> str:
    """The format of a ``moe`` key (``w4a16_mxfp4@triton_ogs`` -> ``w4a16_mxfp4``)."""
    return key.split("@", 1)[0]


def moe_format(dtype: str, weight_format: str = "") -> str:
    """The MoE table name of experts computing in ``dtype`` with ``weight_format`` weights:
    ``dtype`` itself unless the weights are a weight-only format of a ``MOE_MIXED`` table
    (another mix, e.g. int4 in bf16, has no table name: its own pair)."""
    if not weight_format or weight_format == dtype:
        return dtype
    return _MIXED_NAME.get((weight_format, dtype), f"w_{weight_format}_{dtype}")


def fallback_key(dtype: str, table: dict) -> str:
    """The key of ``table`` whose curve serves ``dtype`` ("" if none)."""
    for key in (dtype, *_BLOCK_FALLBACK.get(dtype, _GEMM_FALLBACK.get(dtype, ()))):
        if key in table:
            return key
    return ""
