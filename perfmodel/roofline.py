"""Operator time on a device: the roofline bound under calibrated efficiencies.

For every operator (Williams et al. 2009, "Roofline", CACM 52(4)):

    compute = FLOPs / peak[dtype] + vector FLOPs / peak[fp32]
    memory  = bytes / HBM bandwidth
    GEMM, attention: time = max(compute, memory) / eff(shape) + overhead
    (a grouped GEMM over groups > 1 problems, a MoE layer's experts: eff_moe(m, groups, n k)
    of the profile's grouped-GEMM table for its format and the engine's kernel, plus its
    fixed time per call, moe_overhead_s (``profile.CalibrationProfile.moe_table``: keyed by
    weight format and compute dtype, the kernel from engines/<id>.yaml ``moe``); without
    one the dense GEMM curve, as for one problem)
    memory-bound kernels: time = max(compute, memory / eff_mem(bytes)) + overhead

The bound is the larger of the two terms *before* efficiencies, so "memory-bound" is a
statement about arithmetic intensity vs the device's ridge point, not about the fit.
Where a measured curve gives a dense GEMM or a decode attention call its time, the time is at
most that of the same kernel padded to 2x, 4x, ... the rows (``padding.padded_minimum``: the
engines pad decode batches to captured CUDA-graph sizes), so twice the batch is never faster.
Efficiencies of all operators of a class are evaluated in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .dtypes import nbytes as dtype_bytes
from .ops import ATTENTION, ELEMENTWISE, GEMM, Op
from .padding import padded_minimum
from .profile import CalibrationProfile, moe_format, moe_key_format
from .specs.hardware import DeviceSpec


@dataclass(frozen=True)
class Roofline:
    """A device's peaks as the model uses them (profile overrides win: a measured CPU).
    ``clock_ratio`` scales the compute roof: the sustained SM clock under the system's power
    cap over the clock at the default limit (perfmodel/power.py); HBM bandwidth and the
    measured element-wise rates (achieved bandwidth) are not capped.
    ``padded``: measured GEMM / decode-attention times are bounded by the padded kernel's
    (``padding``), as in a model step (``for_system``); off for a kernel replayed on its own
    (the calibration fit and its held-out test time the kernel the table measured).
    ``engine``: whose MoE kernels run the grouped GEMMs (engines/<id>.yaml ``moe``; "generic":
    the profile's tables as measured). ``moe_a2a``: True where the plan's MoE layers move their
    tokens by a dispatch / combine all-to-all (``moe_parallel.all_to_all``; a bool, or a mask
    over a sweep of plans), which selects the engine's kernels where they depend on it;
    ``moe_ep`` the plan's expert-parallel size (an int or an array over the plans), likewise
    (engines.MoeFacts ``ep1`` / ``ep_gt1`` kernel lists)."""

    device: DeviceSpec
    profile: CalibrationProfile
    clock_ratio: float = 1.0
    padded: bool = False
    engine: str = "generic"
    engine_version: str | None = None  # the engine release whose kernels run (engine_facts)
    engine_variant: str | None = None
    # the framework runs a rank's experts as one dense GEMM each (frameworks/<id>.yaml
    # ``moe.grouped_gemm: per_expert``): a GEMM with groups > 1 reads the dense curve at its
    # rows per expert, never the grouped-GEMM tables
    per_expert_gemm: bool = False
    moe_a2a: Any = False
    moe_ep: Any = 1
    # an inference engine deploys the model: the generic engine (it names no MoE kernel) runs
    # one production kernel for the step's grouped GEMMs, the fastest measured (``_moe_pick``,
    # ``_fastest_moe_kernel``); off for a training step (the profile's tables as measured) and
    # a kernel replayed on its own (the calibration fit and its held-out test time the table
    # that measured it)
    moe_race: bool = False
    # the model's routed experts (experts, top-k, expert intermediate size), which tells a
    # table's measured curves apart where the grouped GEMMs' rows and active experts alone do
    # not (``_moe_efficiency``); None: matched on the operators alone
    moe_routing: tuple[int, int, int] | None = None

    @classmethod
    def for_system(cls, system, profile: CalibrationProfile, engine: str | None = None,
                   version: str | None = None, variant: str | None = None,
                   moe_a2a: Any = False, moe_ep: Any = 1,
                   moe_routing: tuple[int, int, int] | None = None) -> Roofline:
        """The roofline of ``system``'s device at its power limit; ``engine`` the inference
        engine (``generic`` included) that runs the model, None for a training step."""
        from .power import compute_clock_ratio

        return cls(system.device, profile,
                   compute_clock_ratio(system.device, system.power_limit_w), padded=True,
                   engine=engine or "generic", engine_version=version, engine_variant=variant,
                   moe_a2a=moe_a2a, moe_ep=moe_ep, moe_race=engine is not None,
                   moe_routing=moe_routing)

    def moe_table(self, dtype: str, weight_format: str = "",
                  a2a: str = "none", ep: int = 1) -> tuple[str, str]:
        """(key, why) of the profile's grouped-GEMM table for experts of this format, run by
        this roofline's engine under all-to-all backend ``a2a`` (``engines.A2A_BACKENDS``) at
        expert-parallel size ``ep`` (``CalibrationProfile.moe_table``); for the generic engine,
        the format's reference table (``moe_alternatives`` adds the production kernels' tables
        it is raced against)."""
        return self._moe_pick(dtype, weight_format, a2a, ep)[:2]

    def _moe_pick(self, dtype: str, weight_format: str, a2a: str, ep: int
                  ) -> tuple[str, str, tuple[str, ...]]:
        """(key, why, alternatives): ``moe_table``'s pick and, for the generic engine in an
        inference step when the table is of the experts' own format, the other tables of that
        format measured by a production kernel (``moe_alternatives``)."""
        from .engines import moe_kernels  # engine files: read only when experts are timed

        fmt = moe_format(dtype, weight_format)
        kernels, proxy = moe_kernels(self.engine, fmt, self.engine_version,
                                     self.engine_variant, a2a, ep,
                                     self.device.compute_capability)
        key, why = self.profile.moe_table(dtype, weight_format, kernels, proxy)
        # the generic engine's inference step only (``moe_race``): a named engine runs its own
        # kernels (one whose file names none for a format, e.g. llama.cpp's ggml MoE, reads
        # the format's reference table), and a table of a proxy format (int4 W4A16 ->
        # w4a16_mxfp4) is not raced: other formats' kernels do not run these weights
        race = (self.moe_race and self.engine == "generic" and not kernels and bool(key)
                and moe_key_format(key) == fmt)
        others = self.moe_alternatives(moe_key_format(key), key) if race else ()
        if others:
            why = (f"{why}, or the faster in sum of {', '.join('moe.' + k for k in others)} "
                   f"(the generic engine: one production kernel for the step's grouped GEMMs, the "
                   f"fastest measured)")
        return key, why, others

    def moe_alternatives(self, fmt: str, key: str) -> tuple[str, ...]:
        """The profile's ``fmt@kernel`` tables other than ``key`` whose kernel an engine file
        selects for ``fmt`` (a production path: engines/<id>.yaml ``moe.kernels``,
        ``engines.production_kernels``). The generic engine runs, for the step's
        grouped GEMMs, the fastest in sum of ``key`` and these (calibration/moe_kernels.yaml
        ``generic``): not TensorRT-LLM's reference table alone, which on Blackwell timed W4A16
        MXFP4 on a path TRT-LLM serving does not select there, untuned (2.1x FlashInfer's)."""
        from .engines import production_kernels  # engine files: read only when experts are timed
        from .profile import moe_key

        prod = production_kernels(fmt)
        return tuple(k for k in sorted(self.profile.moe) if k != key and "@" in k
                     and k == moe_key(fmt, self.profile.moe_kernel.get(k, ""))
                     and self.profile.moe_kernel[k] in prod)

    def gemm_kernels(self, dtype: str) -> tuple[str, ...]:
        """The dense GEMM kernels this roofline's engine runs for ``dtype`` (engines/<id>.yaml
        ``gemm.kernels``; () for generic): the key of the profile's table
        (``CalibrationProfile.gemm_table``)."""
        if self.engine == "generic":
            return ()
        from .engines import gemm_kernels  # engine files: read only for a named engine

        return gemm_kernels(self.engine, dtype, self.engine_version, self.engine_variant)

    def moe_tables(self, dtype: str, weight_format: str = "") -> list[tuple[Any, str, str]]:
        """(where, key, why) of the grouped-GEMM table per all-to-all backend (``moe_a2a``) and
        EP case (``moe_ep``: 1 or > 1) the plans use: one entry with ``where`` True when every
        plan reads the same table, else one per case with its mask over the plans."""
        return [(where, key, why) for where, key, why, _ in self.moe_picks(dtype, weight_format)]

    def moe_picks(self, dtype: str, weight_format: str = ""
                  ) -> list[tuple[Any, str, str, tuple[str, ...]]]:
        """``moe_tables`` with each case's alternatives (``_moe_pick``): the tables the generic
        engine's grouped GEMMs are raced against (one winner for the step's calls,
        ``_fastest_moe_kernel``)."""
        a2a = np.asarray(self.moe_a2a, bool)
        wide = np.asarray(self.moe_ep) > 1
        picks = [(a2a_on & ep_on, f"{label}, EP {'> 1' if ep > 1 else '1'}",
                  *self._moe_pick(dtype, weight_format, backend, ep))
                 for backend, a2a_on, label in (("deepep", a2a, "all-to-all"),
                                                ("none", ~a2a, "no all-to-all"))
                 for ep, ep_on in ((2, wide), (1, ~wide)) if np.any(a2a_on & ep_on)]
        if len({(key, alt) for _, _, key, _, alt in picks}) == 1:
            return [(True, picks[0][2], picks[0][3], picks[0][4])]
        return [(where, key, f"{label}: {why}", alt) for where, label, key, why, alt in picks]

    def peak(self, dtype: str) -> float:
        measured = self.profile.peak_tflops.get(dtype)
        peak = measured * 1e12 if measured else self.device.peak_flops(dtype)
        return peak * self.clock_ratio

    @property
    def vector_peak(self) -> float:
        return self.peak("fp32")

    @property
    def bandwidth(self) -> float:
        bw = self.profile.memory_bandwidth_gbps
        return bw * 1e9 if bw else self.device.memory_bandwidth


@dataclass(repr=False, eq=False)  # holds arrays: no generated ==, repr
class OpTimes:
    """Per-call times of a list of operators: one entry per operator, each a scalar or an
    array over plans (entries keep their own broadcast shape, so an open-mesh grid of plans
    is never expanded before it has to be)."""

    ops: list[Op]
    time: list
    compute: list
    memory: list
    # grouped GEMM (op name) -> the MoE table it read and why (``Roofline.moe_table``)
    moe_tables: dict = field(default_factory=dict)
    # grouped GEMM (op name) -> ``moe_curve.<key>`` where a measured curve of its table timed
    # it (for some plan; ``_moe_efficiency``); the profile states that curve's interpolation
    # error under that name, while a prediction's band still reads the grid table's residuals
    moe_curves: dict = field(default_factory=dict)
    # per operator, (table, how) of the profile table whose fit decided its time: ("gemm.<key>",
    # "curve") a dense GEMM on its curve (``CalibrationProfile.gemm_table``), ("gemm.<key>",
    # "floor") a weight-only GEMM its format's own measured kernel floored for every plan
    # (``weight_only_floor``), ("attention.<curve>", "curve") an attention call on its curve
    # (``_attention_curve``, ``CalibrationProfile.attention_curve_key``); ("", "") where no
    # fitted table did (a default efficiency, a grouped GEMM: ``moe_tables``, memory-bound
    # kernels). A prediction's band reads it (uncertainty: each share of time takes the
    # held-out residuals of the table that decided it); [] where not recorded
    decided: list = field(default_factory=list)

    def weighted(self) -> list:
        """count x time per operator (the step's time in it)."""
        return [op.count * t for op, t in zip(self.ops, self.time, strict=True)]

    def total(self):
        return row_sum(self.weighted(), range(len(self.ops)))

    def by_class(self) -> dict:
        out: dict = {}
        for op, w in zip(self.ops, self.weighted(), strict=True):
            out[op.cls] = out.get(op.cls, 0.0) + w
        return out


def row_sum(rows_of, rows):
    """Sum of ``rows_of[i]`` over ``rows`` in a fixed order, so that a sweep of plans and a
    single plan give bit-identical totals (numpy's pairwise summation would not)."""
    acc = 0.0
    for i in rows:
        acc = acc + rows_of[i]
    return acc


def stack(values: list, shape: tuple) -> np.ndarray:
    """Rows of ``values`` (scalars or arrays) broadcast to ``shape``, as one float array."""
    if not shape:
        return np.array(values, dtype=float)
    out = np.empty((len(values), *shape))
    for i, v in enumerate(values):
        out[i] = v
    return out


def _shape_of(values) -> tuple:
    return np.broadcast_shapes(*(np.shape(v) for v in values if isinstance(v, np.ndarray)))


def op_times(ops: list[Op], roof: Roofline) -> OpTimes:
    """Time every operator. Operators are grouped by efficiency table (GEMM per dtype,
    attention per phase, memory-bound kernels); each group is evaluated in one vectorised
    call over the group's own broadcast shape."""
    profile = roof.profile
    groups: dict[tuple, list[int]] = {}
    for i, op in enumerate(ops):
        key = (op.cls, op.dtype if op.cls == GEMM else _attention_group(op)
               if op.cls == ATTENTION else "", op.weight_format if op.cls == GEMM else "")
        groups.setdefault(key, []).append(i)
    stream = profile.stream_efficiency
    time: list = [None] * len(ops)
    compute: list = [None] * len(ops)
    memory: list = [None] * len(ops)
    decided: list = [("", "")] * len(ops)
    tables: dict = {}
    curves: dict = {}
    vector_peak, bandwidth = roof.vector_peak, roof.bandwidth
    for (cls, sub, wfmt), rows in groups.items():
        members = [ops[i] for i in rows]
        extra = [x for op in members for x in op.shape] if cls in (GEMM, ATTENTION) else []
        shape = _shape_of([x for op in members for x in (op.flops, op.bytes, op.vector_flops)]
                          + extra)
        flops = stack([op.flops for op in members], shape)
        vec = stack([op.vector_flops for op in members], shape)
        nbytes = stack([op.bytes for op in members], shape)
        if cls == ATTENTION:  # each kernel at its own dtype (the fp8 DSA indexer beside MLA)
            peak = stack([roof.peak(attention_peak_dtype(op, profile)) for op in members],
                         shape)
        else:
            peak = roof.peak(sub) if cls == GEMM else vector_peak
        t_c = flops / peak + vec / vector_peak
        t_m = nbytes / bandwidth
        if cls == GEMM:
            m, n, k = (stack([op.shape[j] for op in members], shape) for j in range(3))
            kernels = roof.gemm_kernels(sub)  # the engine's GEMM table of the format
            eff = profile.gemm_efficiency(sub, m, n, k, kernels)
            fixed = 0.0
            grouped_rows = any(np.any(np.asarray(op.groups) > 1) for op in members)
            if grouped_rows and roof.per_expert_gemm:
                tables.update({op.name: "per-expert GEMMs (framework): dense GEMM curve"
                               for op in members if np.any(np.asarray(op.groups) > 1)})
                grouped_rows = False
            if grouped_rows:  # per all-to-all backend of the plans, the engine's table
                chosen = roof.moe_picks(sub, wfmt)
                picks = [(where, key, profile.moe.get(key), alt) for where, key, _, alt in chosen]
                why = "; ".join(w for _, _, w, _ in chosen)
                grouped_rows = any(table is not None for _, _, table, _ in picks)
                tables.update({op.name: why for op in members
                               if np.any(np.asarray(op.groups) > 1)})
            on = False  # where a grouped-GEMM table times the op
            if grouped_rows:
                g = stack([op.groups for op in members], shape)
                geo = _MoeGeometry(members, shape, m, n, k, g, np.maximum(t_c, t_m))
                for where, key, grouped, alt in picks:
                    if grouped is None:
                        continue
                    use = (g > 1) & where
                    e, hit = _moe_efficiency(profile, key, geo, roof.moe_routing)
                    eff = np.where(use, e, eff)
                    fixed = np.where(use, float(profile.moe_overhead_s.get(key, 0.0)), fixed)
                    curves.update({op.name: f"moe_curve.{key}" for j, op in enumerate(members)
                                   if np.any(hit[j] & use[j])})
                    on = on | use
                    if alt:  # the generic engine: the fastest production kernel
                        eff, fixed = _fastest_moe_kernel(profile, alt, use, eff, fixed, geo,
                                                         t_c, t_m, stream, roof.moe_routing)
            t = np.maximum(t_c, t_m) / _streaming(eff, t_c, t_m, stream)
            table = profile.gemm_curve(sub, kernels) if roof.padded else None
            if table is not None:  # a measured table: the padded kernel's time, if faster
                padded = np.minimum(t, _padded_gemm(table, m, n, k, flops / peak,
                                                    vec / vector_peak, nbytes, dtype_bytes(sub),
                                                    bandwidth, stream))
                t = np.where(on, t, padded)  # on: False without grouped rows
            t = t + fixed
            key, _ = profile.gemm_table(sub, kernels)
            grouped = [bool(np.any(np.asarray(on)[j] if np.ndim(on) else on))
                       for j in range(len(members))]  # a grouped-GEMM table timed it
            own = [("", "") if g or not key else (f"gemm.{key}", "curve") for g in grouped]
        elif cls == ATTENTION:
            q, kv = (stack([op.shape[j] for op in members], shape) for j in range(2))
            curve = _attention_curve(sub, profile)
            if curve in _LINEAR_PREFILL_CURVES:  # (streams, q_len): LINEAR_KINDS
                q, kv = stack([op.batch for op in members], shape), q
            hd, win = (stack([getattr(op, f) for op in members], shape)
                       for f in ("head_dim", "window"))
            # without a curve: the fused kernel the device's compute capability runs
            # (profile.attention_kernels)
            # a prefill core timed as the bf16 kernel its curve was fitted on reads the bytes
            # that kernel reads (attention_peak_dtype); decode keeps its own (fp8 KV) bytes
            t_mc = t_m * stack([_curve_bytes_ratio(op, profile) for op in members], shape)
            # a linear-attention curve is the measured kernel's time over the traffic the core
            # charges (ops.gdn_core_bytes: fla's unfused chain), which a fused kernel beats
            # (efficiency > 1): no streaming cap on it (LINEAR_KINDS)
            cap = np.inf if curve in _LINEAR_CURVES else stream
            t = np.maximum(t_c, t_mc) / _streaming(
                profile.attention_efficiency(curve, q, kv, hd, win,
                                             roof.device.compute_capability)
                * _fewer_streams(profile, curve, q), t_c, t_mc, cap)
            table = profile.attention.get(curve) if curve == "decode" and roof.padded else None
            if table is not None and len(table.axes) == 2:
                factor = profile.attention_factor(curve, hd, win, q, kv)
                t = np.minimum(t, _padded_decode(table, q, kv, t_c, t_m, stream, factor))
            # fixed cost of the kernel, of the curve it reads (an fp8 prefill kernel without
            # its own curve: the prefill call's)
            t = t + profile.attention_overhead_s.get(curve, 0.0)
            key = profile.attention_curve_key(curve)
            own = [(f"attention.{key}", "curve") if key else ("", "")] * len(members)
        else:
            own = [("", "")] * len(members)
            t_stream = t_m / profile.memory_efficiency(nbytes)
            if cls == ELEMENTWISE and profile.elementwise_rate:
                t_stream = np.maximum(t_stream, _elementwise_rate_time(members, profile, shape))
            t = np.maximum(t_c, t_stream)
        t = t + profile.kernel_overhead_s
        if cls == GEMM and wfmt and wfmt != sub:  # weight-only: narrow weights, 16-bit GEMM
            floor = weight_only_floor(members, roof, wfmt, shape)
            if floor is not None:
                t = np.where(on, t, np.maximum(t, floor))
                key, _ = profile.gemm_table(wfmt, roof.gemm_kernels(wfmt))
                own = [(f"gemm.{key}", "floor") if not grouped[j]
                       and np.all(floor[j] >= t[j] * (1 - 1e-9)) else own[j]
                       for j in range(len(members))]
        for j, i in enumerate(rows):
            time[i], compute[i], memory[i], decided[i] = t[j], t_c[j], t_m[j], own[j]
    return OpTimes(ops, time, compute, memory, tables, curves, decided)


def weight_only_floor(members: list[Op], roof: Roofline, wfmt: str, shape: tuple
                      ) -> np.ndarray | None:
    """The time of the device's own ``wfmt`` GEMM kernel for each of ``members`` (dense
    weight-only GEMMs: ``wfmt`` weights in a 16-bit GEMM, ``ops.Precision.inference``
    ``weight_only``), the floor a weight-only GEMM's time never goes below; None where there is
    no such kernel to compare with: the device has no tensor cores for ``wfmt``
    (``formats.native_formats``: fp8 on A100, the engines' Marlin W8A16 path) or the profile
    has no measured table of ``wfmt`` itself (``CalibrationProfile.gemm_table`` falling back
    to another format's).

    The rule, and why. A weight-only GEMM is timed as the 16-bit GEMM curve (cuBLAS bf16 rows)
    on its narrow weight bytes plus the in-kernel dequantise at the vector rate: a proxy, as no
    measured table of a mixed-input kernel (W8A16 / W4A16: bf16 activations against fp8 / fp4
    weights, Marlin or CUTLASS mixed-input) exists for a device that has tensor cores for the
    weight format (aiconfigurator-core 0.12.0 measures bfloat16, fp8, fp8_block and nvfp4 dense
    GEMMs on H100 / H200 / B200 / B300 / GB200 / GB300; its mixed-input rows are A100 TRT-LLM
    1.0.0 ``int8_wo`` / ``int4_wo``, a device without fp8, and H100 SGLang 0.5.6.post2
    ``int8_wo``, torchao's ``int8_weight_only`` on int8 weights, slower than the bf16 rows at
    every shape: neither is the kernel fp8 / fp4 weights run). The proxy reads the bf16 kernel's
    efficiency, which was reached with 2-byte weights, for half the bytes: it can beat the
    measured ``wfmt`` kernel (W8A8 / W4A4) that reads the same weights, which a mixed-input
    kernel does not: it reads at least the same weight bytes and 16-bit activations instead of
    8-bit, converts every weight element to 16 bits in registers before the MMA, and runs the
    MMA at the 16-bit rate, half the fp8 one. The engines agree: vLLM's ``Fp8LinearMethod``
    takes Marlin W8A16 only below SM 8.9 (``use_marlin = not
    current_platform.has_device_capability(89) or envs.VLLM_TEST_FORCE_FP8_MARLIN``,
    vllm/model_executor/layers/quantization/fp8.py), ``ModelOptNvFp4LinearMethod`` Marlin
    W4A16 only where neither FlashInfer nor CUTLASS fp4 runs (modelopt.py), and TensorRT-LLM
    has no fp8 weight-only QuantAlgo (tensorrt_llm/quantization/mode.py: FP8 and
    FP8_BLOCK_SCALES are W8A8). So a weight-only GEMM takes at least the time of the measured
    ``wfmt`` kernel on the same operator (the same FLOPs and bytes, 16-bit activations
    included, no dequantise: ``dtype`` ``wfmt``, the engine's kernel for it, padded as any
    GEMM of the step): W8A8 never decodes slower than W8A16 (issue 13 item 3). A measured
    mixed-input table would replace the proxy (``profile.gemm`` keyed by the weight-only
    format), not this floor."""
    from .formats import native_formats

    if wfmt not in native_formats(roof.device):
        return None
    key, _ = roof.profile.gemm_table(wfmt, roof.gemm_kernels(wfmt))
    if key.split("@", 1)[0] != wfmt:
        return None
    twins = [replace(op, dtype=wfmt, vector_flops=0.0, weight_format="", groups=1.0)
             for op in members]
    return stack(op_times(twins, roof).time, shape)


def _fastest_moe_kernel(profile: CalibrationProfile, alt: tuple[str, ...], use, eff, fixed,
                        geo: _MoeGeometry, t_c, t_m, stream,
                        routing: tuple[int, int, int] | None = None):
    """(eff, fixed) of the grouped GEMMs ``use`` selects, from the one table among the current
    one and ``alt`` whose calls of the step take the least time in sum (count-weighted over
    every grouped GEMM of the format, per plan): an engine runs one MoE backend for all of a
    layer's grouped GEMMs, so the up and down GEMMs never mix kernels (each table is fitted
    on whole-layer times, calibrate/fit/moe.py) and no pick beats every real kernel."""
    count = stack([op.count for op in geo.members], geo.shape)

    def step_time(e, f):
        t = np.maximum(t_c, t_m) / _streaming(e, t_c, t_m, stream) + f
        return np.sum(np.where(use, count * t, 0.0), axis=0, keepdims=True)

    best = step_time(eff, fixed)
    for other in alt:
        e, _ = _moe_efficiency(profile, other, geo, routing)
        f = float(profile.moe_overhead_s.get(other, 0.0))
        total = step_time(e, f)
        win = use & (total < best)
        eff, fixed = np.where(win, e, eff), np.where(win, f, fixed)
        best = np.minimum(total, best)
    return eff, fixed


@dataclass(frozen=True, repr=False, eq=False)  # holds arrays: no generated ==, repr
class _MoeGeometry:
    """A GEMM group's operators as the grouped-GEMM tables read them: per member (first axis)
    rows per problem ``m``, its ``n`` x ``k``, problems ``g`` and roofline bound
    max(compute, memory) before efficiencies, each broadcast to (members, *shape)."""

    members: list[Op]
    shape: tuple
    m: np.ndarray
    n: np.ndarray
    k: np.ndarray
    g: np.ndarray
    bound: np.ndarray

    def pairs(self) -> list[tuple[int, int]]:
        """(up, down) member indices of each MoE layer's routed experts (``ops.mlp_ops``:
        ``<prefix>.up`` and ``<prefix>.down`` of one phase, grouped): the two calls a measured
        MoE row times together (calibrate/fit/moe.py)."""
        index = {(op.name, op.phase): j for j, op in enumerate(self.members)}
        out = []
        for (name, phase), j in index.items():
            if name.endswith(".up") and phase != "bwd":
                down = index.get((name[:-3] + ".down", phase))
                if down is not None:
                    out.append((j, down))
        return out


def moe_routing(model) -> tuple[int, int, int] | None:
    """(experts, top-k, expert intermediate size) of a ModelSpec's routed experts, which picks a
    MoE table's measured curve (``Roofline.moe_routing``); None for a dense model."""
    moe = model.moe
    if moe is None:
        return None
    return int(moe.num_experts), int(moe.top_k), int(moe.expert_ffn_hidden_size)


def _moe_efficiency(profile: CalibrationProfile, key: str, geo: _MoeGeometry,
                    routing: tuple[int, int, int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(efficiency, hit) of table ``key`` for the group's GEMMs: its fitted grid at
    (m, groups, n k), except where an up / down pair has exactly the per-GPU shape of one of
    the table's measured curves (``CalibrationProfile.moe_shape_curves``) and a token count
    inside its measured range (``hit``). There the pair's efficiency is the one the fit defines
    for a measured row (calibrate/fit/moe.py: eff = (bound_up + bound_down) / (t - 2 fixed),
    fixed = kernel_overhead_s + moe_overhead_s[key] per call), with t the curve's time by
    log-log interpolation in tokens: up + down then take the measured time (the streaming cap
    on memory-bound calls and the separate activation / combine kernels apply as for the grid).

    The pair matches a curve of (hidden, inter, experts E, topk k, tp, ep, gated) when the
    down call's n x k is hidden x inter / tp, the up call's n is (2 if gated else 1) inter / tp,
    and its rows and problems are those of T = rows x ep / k tokens routed uniformly:
    problems = E (1 - (1 - k / E)^T) / ep (``ops.active_experts``; an imbalanced rank's rows
    and experts are those of T tokens; redundant experts or padded shapes do not match), and,
    with ``routing`` (the model's experts, top-k and expert intermediate size,
    ``Roofline.moe_routing``), E, k and inter are the model's; without it a plan that more
    than one measured shape fits (one token: any E) keeps the grid."""
    eff = np.array(profile.moe[key](geo.m, np.maximum(geo.g, 1.0), geo.n * geo.k), float)
    hit = np.zeros(eff.shape, bool)
    if not profile.has_moe_curves:
        return eff, hit
    from .specs.registry import measured_moe_curves  # read only when experts are timed

    index = profile.moe_shape_curves(key, measured_moe_curves(profile))
    if not index:
        return eff, hit
    fixed = 2.0 * (profile.kernel_overhead_s + float(profile.moe_overhead_s.get(key, 0.0)))
    for up, down in geo.pairs():
        hidden, inter = geo.n[down], geo.k[down]
        count = np.zeros(np.shape(hidden), int)  # curves that match each plan
        t_hit = np.zeros(np.shape(hidden))
        rows, groups = geo.m[down] * geo.g[down], geo.g[down]
        same_rows = (geo.m[up] * geo.g[up] == rows) & (geo.g[up] == groups) & (groups > 1)
        gated = np.isclose(geo.n[up], 2.0 * inter, rtol=1e-9)
        plain = np.isclose(geo.n[up], inter, rtol=1e-9)
        same_rows = same_rows & np.isclose(geo.k[up], hidden, rtol=1e-9)
        for h, i, gate in {(float(a), float(b), bool(c)) for a, b, c in
                           zip(np.ravel(hidden), np.ravel(inter), np.ravel(gated), strict=True)}:
            cands = index.get((h, i, gate))
            if not cands:
                continue
            shape_on = same_rows & (hidden == h) & (inter == i) & (gated if gate else plain)
            for experts, topk, ep, full_inter, curve in cands:
                if routing is not None and (experts, topk, full_inter) != routing:
                    continue
                tokens = rows * ep / topk
                expect = experts * (1.0 - (1.0 - topk / experts) ** tokens) / ep
                t = _padded_curve(curve, tokens)
                on = shape_on & np.isclose(groups, expect, rtol=1e-6) & np.isfinite(t)
                count = count + on
                t_hit = np.where(on, t, t_hit)
        # one curve only: rows and experts alone do not tell the routing apart everywhere (one
        # token reaches top-k experts whatever their number), so without ``routing`` a plan
        # that several measured shapes fit keeps the grid
        on = (count == 1) & (t_hit > fixed)
        if not np.any(on):
            continue
        pair = (geo.bound[up] + geo.bound[down]) / np.where(on, t_hit - fixed, 1.0)
        for j in (up, down):
            eff[j] = np.where(on, pair, eff[j])
            hit[j] = hit[j] | on
    return eff, hit


def _padded_curve(curve, tokens) -> np.ndarray:
    """A measured MoE curve's time at ``tokens`` inside its range (NaN outside), bounded by its
    time at 2x, 4x, ... the tokens up to its last point: the layer of T tokens can run as the
    padded one of 2T (``padding``: the rule the measured GEMM tables follow; a measured row at
    2T, with every token real, bounds the padded kernel from above)."""
    t = curve(tokens)
    top = float(curve.tokens[-1])
    x = np.asarray(tokens, float) * 2.0
    while np.any(np.isfinite(t) & (x <= top)):
        t = np.where(np.isfinite(t) & (x <= top), np.fmin(t, curve(x)), t)
        x = x * 2.0
    return t


def _elementwise_rate_time(members: list[Op], profile: CalibrationProfile, shape: tuple):
    """Time of each element-wise kernel at its kind's measured element rate (0 where none).
    The rate is an achieved-bandwidth roof, not a compute one: it is fitted on kernels that
    stream a few bytes per element (``calibrate.fit.memory.elementwise_rate``), so it sits on
    the memory side of the roofline (the kernel stays memory-bound) and is not scaled by the
    power cap's SM clock ratio: the board power limit does not lower the HBM clock
    (hardware_specs/power_capping.yaml memory_bound_power.hbm_clock_not_capped; memory-bound
    decode never triggers a cap, arXiv 2605.11999). ``shape[0]`` is every element the
    operator's kernels process (an fp8 cast: all of the recipe's casts of the operand,
    ``frameworks_costs.fp8_recipe_costs``); a kind with neither a rate nor a fallback (a
    one-pass fp8 cast, ``frameworks_costs.FP8_ONE_PASS_CAST``) is timed by its bytes alone."""
    rates = [profile.elementwise_elements_per_s(op.kernel) if op.shape else None
             for op in members]
    if not any(rates):
        return 0.0
    elems = stack([op.shape[0] if r else 0.0 for op, r in zip(members, rates, strict=True)],
                  shape)
    per_elem = np.array([1.0 / r if r else 0.0 for r in rates]).reshape(
        (-1,) + (1,) * len(shape))
    return elems * per_elem


def _padded_gemm(table, m, n, k, t_flops, t_vec, nbytes, act, bandwidth, stream):
    """The best time of the same GEMM padded to m' = m x 2^i rows (``padding``): FLOPs grow
    with m', bytes by (m' - m)(n + k) activation elements of ``act`` bytes (``ops.gemm``)."""
    def terms(rows, cols):
        m0, n0, k0, fl, vec, nb = cols
        return fl * rows / m0 + vec, (nb + (rows - m0) * (n0 + k0) * act) / bandwidth

    def time_at(rows, cols):
        t_c, t_m = terms(rows, cols)
        return np.maximum(t_c, t_m) / _streaming(table(rows, cols[1], cols[2]), t_c, t_m, stream)

    def bound_at(rows, cols):
        return np.maximum(*terms(rows, cols))

    return padded_minimum(m, (m, n, k, t_flops, t_vec, nbytes), time_at, bound_at,
                          2.0 ** table.log2_grid[0][-1], table.best)


def _padded_decode(table, streams, kv, t_c, t_m, stream, factor=1.0):
    """The best time of a decode attention call padded to more (sequence, KV head) streams:
    FLOPs and bytes grow in proportion (``ops.attention_ops``); ``factor``: the call's own
    head-dim / window factor on the curve (``profile.attention_factor`` at its unpadded
    point: a property of the kernel the call runs, not of the padding)."""
    def time_at(s, cols):
        s0, kv0, c, mem, f = cols
        scale = s / s0
        return np.maximum(c, mem) * scale / _streaming(table(s, kv0) * f, c * scale,
                                                       mem * scale, stream)

    def bound_at(s, cols):
        s0, _, c, mem, _ = cols
        return np.maximum(c, mem) * s / s0

    return padded_minimum(streams, (streams, kv, t_c, t_m, factor), time_at, bound_at,
                          2.0 ** table.log2_grid[0][-1], table.best * float(np.max(factor)))


def _streaming(eff: np.ndarray, t_c: np.ndarray, t_m: np.ndarray, cap: float) -> np.ndarray:
    """A memory-bound GEMM or attention kernel of a model pass streams its weights or KV
    cache from main memory (all layers' together exceed the caches), so it runs at most at
    the streaming plateau of the bandwidth curve. Microbenchmarks that replay one kernel keep
    small operands in cache and show more (shared/reference measured/README caveat)."""
    return np.where(t_m > t_c, np.minimum(eff, cap), eff)


#: the dtype the profiles' attention curves are fitted at: every measured context / generation
#: table is read by calibrate.converters.aic_attention with its defaults attn_dtype "bfloat16",
#: kv_cache_dtype "bfloat16" (calibration/references.yaml passes no other), so a curve's
#: efficiency is relative to the bf16 peak
ATTENTION_CURVE_DTYPE = "bf16"


def attention_peak_dtype(op: Op, profile: CalibrationProfile) -> str:
    """The dtype whose peak an attention operator's efficiency is relative to: its own, except
    a fused attention core (``attn.core``: FlashAttention / FMHA, MHA, GQA or MLA) in fp8 timed
    on a measured curve, which is fitted on bf16 kernels (``ATTENTION_CURVE_DTYPE``): such a
    core runs at the bf16 peak under that curve (its bytes: ``_curve_bytes_ratio``, the bf16
    kernel's in prefill and backward, its own fp8 KV read in decode).

    Why: an fp8 attention kernel is not twice as fast as the bf16 one of the same shape, the
    fp8 tensor-core peak over the bf16 one; the softmax work per score (exp, max, sum: MUFU
    and FP32 units) does not shrink with the operands' width. Measured (aiconfigurator-core
    0.12.0, TensorRT-LLM 1.3.0rc20 context_attention_perf, full causal attention, 1k-16k
    tokens, every batch and head count both dtypes ran: time with fp8 query + fp8 KV over time
    with bf16 + bf16, median (10th-90th percentile)): B200 head dim 64 0.88 (0.84-0.91), 128
    0.85 (0.77-0.93), 256 0.78 (0.71-0.91); H200 64 0.89, 128 0.81, 256 0.71; H100 64 0.89,
    128 0.80, 256 0.70 (B200, head dim 64, 16 heads, 2 KV heads, 8192 tokens: 0.2446 vs
    0.2732 ms). Under the bf16 peak such a core is timed at 1.1-1.4x the measured fp8
    kernel (medians by head dim; the bf16 kernel's own time), under the fp8 peak at 0.55-0.7x.
    Engine tables agree: SGLang 0.5.14's trtllm_mla context table on B200 (8192 tokens, 16
    heads) 0.306 ms with an fp8 KV cache vs 0.315 ms with bf16; vLLM 0.24.0's FlashInfer
    TRT-LLM prefill on B200 (head dim 64, 16 / 2 heads, 8192 tokens) 0.230 ms with an fp8 KV
    cache vs 0.250 ms with bf16. Timing the fp8 core at the fp8 peak on a bf16-fitted curve
    halved its compute time (0.124 ms predicted for that 0.23-0.27 ms gpt-oss-120b TP 4 call).
    A profile without a curve for the phase (its ``defaults.attention``) and the other
    attention operators (the fp8 DSA indexer, the unfused path's batched GEMMs)
    keep their own dtype.

    A prefill core the engine runs in fp8 (``op.fp8_attention``: Q, K and V quantised to
    e4m3 for the context kernel, ``ops.attention_ops``; engines/<id>.yaml
    ``attention.fp8_prefill``) runs at the fp8 peak on its fp8 bytes only on the profile's
    fp8 prefill curve (``FP8_PREFILL_CURVE``), fitted on measured fp8 context kernels.
    Without that curve it is timed like any fp8 core on the bf16 prefill curve, at the bf16
    peak, but on its own fp8 bytes (``_curve_bytes_ratio``): no credit for fp8 compute that
    no profile measured. The bf16 curve at the fp8 peak would credit the fp8 kernel with the
    whole fp8 / bf16 peak ratio, which the measured kernels reach only in part (the ratios
    above; aiconfigurator-core 0.12.0 context MLA, SGLang 0.5.14 trtllm_mla and TensorRT-LLM
    1.3.0rc20, 128 heads, one sequence, fp8 over bf16 KV cache (the fp8 rows quantise Q, K,
    V): 0.78-0.95 at 6-8k tokens, 0.60-0.68 at 32k on GB200 / GB300; GQA context FMHA
    0.7-0.9): it timed the fp8 core at about 0.5x the bf16 kernel, below the measured fp8
    kernel at every length measured, and moved the validation median APE from 11.53 to
    11.88 % (H13, issue 13; most short-prompt TTFTs worse). NVIDIA / SGLang's GB300 long-context
    blog (2026-02-19, "Kernel Comparison") measured the fp8 MLA context kernel
    (fmhaSm103a / fmhaSm100f ``QkvE4m3OBfloat16HQk192HV128``) at 205 ms (GB300) and 277 ms
    (GB200) per 128k-token causal prefill of 128 heads: 3.3 and 2.4 PFLOP/s on 6.7e14 FLOPs,
    above GB300's dense bf16 peak, so only fp8 tensor cores can run it."""
    curve = _attention_curve(_attention_group(op), profile)
    if op.fp8_attention and curve.endswith(FP8_CURVE_SUFFIX):
        return op.dtype
    if (op.name == "attn.core" and op.dtype.startswith("fp8")
            and profile.attention_curve_key(curve)):
        return ATTENTION_CURVE_DTYPE
    return op.dtype


def _curve_bytes_ratio(op: Op, profile: CalibrationProfile) -> float:
    """Bytes of the kernel an attention operator is timed as over its own: 2 for an fp8
    prefill (or backward) core on a bf16-fitted curve (``attention_peak_dtype``; Q, O and the
    K / V it reads at bf16 width instead of fp8), else 1. Measured (aiconfigurator-core 0.12.0,
    TensorRT-LLM 1.3.0rc20, fp8 + fp8 over bf16 + bf16): the sliding-window prefill kernel
    that is memory-bound by its FLOPs per byte (window 128, head dim 64) takes 0.92 of the
    bf16 time on B200 (median of 3,260 rows) and 1.32 on H200, not the half its bytes would
    give; vLLM 0.24.0's FlashInfer TRT-LLM prefill on B200 (16 / 2 heads, 8192 tokens, window
    128) 0.0479 ms with an fp8 KV cache vs 0.0440 ms with bf16. Decode keeps its fp8 bytes:
    the generation kernels at >= 64k cached tokens per call take 0.60 (B200) / 0.56 (H200) of
    the bf16 time with an fp8 KV cache (medians), the memory-bound gain. A prefill core the
    engine runs in fp8 (``op.fp8_attention``) reads its own fp8 Q, K, V: 1, on either curve."""
    dtype = attention_peak_dtype(op, profile)
    if dtype == op.dtype or op.phase == "decode" or op.fp8_attention:
        return 1.0
    return dtype_bytes(dtype) / dtype_bytes(op.dtype)


#: a profile's attention curve of fp8 prefill kernels (fp8 Q, K, V: ``Op.fp8_attention``),
#: efficiency relative to the fp8 peak; without it such a kernel reads the bf16 prefill curve
#: at the bf16 peak on its fp8 bytes (``attention_peak_dtype``)
FP8_PREFILL_CURVE = "prefill_fp8"
#: the suffix of an attention curve fitted on fp8 kernels (efficiency over the fp8 peak)
FP8_CURVE_SUFFIX = "_fp8"
#: attention kinds with prefill curves of their own (``attention_kind``); a kind's curve is
#: ``prefill_<kind>`` (bf16 kernels) and ``prefill_<kind>_fp8`` (fp8 kernels)
MLA = "mla"
MLA_PREFILL_CURVE = f"prefill_{MLA}"
MLA_FP8_PREFILL_CURVE = f"prefill_{MLA}{FP8_CURVE_SUFFIX}"
#: linear-attention cores with curves of their own, by operator name (``ops.linear_attention_ops``,
#: ``ops.mamba_ops``): the gated delta rule (Gated DeltaNet, arXiv 2412.06464), Kimi delta
#: attention (arXiv 2510.26692) and Mamba-2's SSD (arXiv 2405.21060). An inference prefill core
#: reads ``prefill_<kind>``, a decode core ``decode_<kind>`` where the profile has it (fitted
#: on measured chunked-prefill and recurrent-decode kernels: calibrate.fit.linear_attention);
#: on its own prefill curve the core sits at (streams = ``Op.batch``, the independent
#: (sequence, head) recurrences, q_len): the chunked kernels run the chunks of one recurrence
#: in order and the recurrences in parallel
GDN, KDA, SSD = "gdn", "kda", "ssd"
LINEAR_KINDS = {"attn.gdn_core": GDN, "attn.kda_core": KDA, "attn.ssd_core": SSD}


_LINEAR_PREFILL_CURVES = frozenset(f"prefill_{k}" for k in LINEAR_KINDS.values())
_LINEAR_CURVES = _LINEAR_PREFILL_CURVES | {f"decode_{k}" for k in LINEAR_KINDS.values()}


def _fewer_streams(profile: CalibrationProfile, curve: str, streams) -> np.ndarray | float:
    """A linear-attention prefill call with fewer streams than its curve's fewest measured
    ones takes the time of those (efficiency x streams / fewest): the chunked kernels run the
    recurrences in parallel, one per SM or more, so below the SM count the time is that of one
    recurrence's chunks in order (measured flat: vLLM 0.24.0's FlashInfer GDN kernel on B200,
    8,192 tokens, 0.33 ms from 2 to 128 streams; TensorRT-LLM 1.3.0rc15's
    mamba_chunk_scan_combined on B200, 2,048 tokens, 180 us at 64 streams, 186 us at 128),
    where the curve would hold its edge efficiency (``profile.Curve`` clamps). 1 elsewhere."""
    c = profile.attention.get(curve) if curve in _LINEAR_PREFILL_CURVES else None
    if c is None or not c.axes:
        return 1.0
    return np.minimum(1.0, np.asarray(streams, float) / 2.0 ** c.log2_grid[0][0])


def attention_kind(op: Op) -> str:
    """The attention kind whose own curve an attention operator may read: ``MLA`` for a
    multi-head latent attention prefill core, a ``LINEAR_KINDS`` kind for a linear-attention
    core of inference prefill or decode (its ``prefill_<kind>`` / ``decode_<kind>`` curve;
    training passes keep the phase's curves: the tables time inference kernels only), "" for
    every other operator (GQA / MHA cores, other decode, training passes, indexers: the
    phase's curves).

    ``ops.attention_ops`` builds MLA's prefill core as the decompressed multi-head attention
    the engines' context kernels run (DeepSeek-V2 arXiv 2405.04434 Sec. 2.1; TensorRT-LLM's
    context MLA, SGLang's trtllm_mla / FlashInfer ragged prefill: Q and K of qk_nope + qk_rope
    = 192, V of 128 per head for DeepSeek-V3 / Kimi K2, one KV head per query head) and marks
    it ``Op.attention_kind`` "mla"; a DSA core past its top-k runs MLA's MQA mode (FlashMLA's
    sparse kernel, ``ops._attention_core``) and DeepSeek-V4's compressed core a kernel of its
    own: neither is marked. Only an inference prefill core (phase "prefill") reads it;
    training passes (fwd / recompute / bwd: training.py builds its forward cores with phase
    "fwd") run other kernels (FlashAttention-3 / cuDNN) and keep the phase's curves."""
    if op.cls == ATTENTION and op.phase in ("prefill", "decode") and op.name in LINEAR_KINDS:
        return LINEAR_KINDS[op.name]  # a linear-attention core (LINEAR_KINDS), inference only
    if op.cls == ATTENTION and op.phase == "prefill" and op.attention_kind == MLA:
        return MLA
    return ""


def _attention_group(op: Op) -> str:
    """The group an attention operator is timed in (``op_times``): its phase, its attention
    kind (``attention_kind``) and fp8 prefill kernels (``Op.fp8_attention``) apart, as each
    may read its own curve: "<phase>[/<kind>][/fp8]"."""
    kind = attention_kind(op)
    return "/".join([op.phase] + ([kind] if kind else []) + (["fp8"] if op.fp8_attention
                                                                else []))


def _attention_curve(phase: str, profile: CalibrationProfile | None = None) -> str:
    """The profile curve of an attention group ("<phase>[/<kind>][/fp8]", ``_attention_group``).
    Decode kernels (one query token) and backward kernels have their own curves; forward
    and recompute passes use the prefill curve. A prefill group of an attention kind reads the
    profile's curve of that kind where it has one (``prefill_<kind>``, fp8 kernels
    ``prefill_<kind>_fp8``: e.g. ``MLA_PREFILL_CURVE``, fitted on measured MLA context
    kernels), a decode group of a linear-attention kind ``decode_<kind>`` (``LINEAR_KINDS``);
    otherwise, as every group without a kind, fp8 prefill kernels the profile's
    ``FP8_PREFILL_CURVE`` where it has one, and the prefill curve."""
    base, *tags = phase.split("/")
    fp8 = "fp8" in tags
    kind = next((t for t in tags if t != "fp8"), "")
    curve = {"decode": "decode", "bwd": "backward"}.get(base, "prefill")
    if profile is None or curve == "backward":
        return curve
    own = f"{curve}_{kind}{FP8_CURVE_SUFFIX if fp8 else ''}" if kind else ""
    if own and own in profile.attention:
        return own
    if curve == "decode":  # a decode group of a kind without ``decode_<kind>``
        return curve
    if fp8 and FP8_PREFILL_CURVE in profile.attention:
        return FP8_PREFILL_CURVE
    return curve
