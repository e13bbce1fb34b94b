"""Fit raw microbenchmark records into a calibration profile, with honest held-out errors.

Every efficiency is the inverse of the core's own time formula (``perfmodel.profile``), so a
fitted curve reproduces its measurements when the core evaluates it:

* GEMM, grouped GEMM (MoE tables), attention: ``eff = bound / (t - fixed)``, ``bound`` = max(compute, memory) of the
  same operator as ``perfmodel.ops`` builds it (``ops.gemm``; ``ops.attention_ops`` with its
  FlashAttention IO model and causal pairs, and ``ops.backward`` for the backward pass:
  reused, not re-derived), from ``roofline.op_times`` with unit efficiency; ``fixed`` is
  ``kernel_overhead_s`` (plus, for attention, ``attention_overhead_s[phase]``);
* memory-bound kernels: ``eff = (bytes / bw) / (t - kernel_overhead_s)``;
* collectives: ``comm.collective_time`` / ``comm.p2p_time`` solved for ``eff`` at every
  measured size, with the nccl-tests bus factors (``comm.bus_factor``).

Fixed times. ``kernel_overhead_s``: the launch benchmark's median, or (published CUDA-graph
tables, which carry no launch cost) 0.95 x the smallest kernel time, the floor every kernel
pays. An attention op runs several kernels, so a table that sweeps down to its own floor
gets ``attention_overhead_s[phase]`` = 0.95 x its fastest call - kernel_overhead_s. A
collective's latency makes its fixed time 0.95 x the table's fastest call.

Curves are multilinear on a log2 grid (``profile.Curve``), fitted as ``curves`` describes.

Held-out error, honestly: each table is split at random (seeded per table) into a fitted
part and a test part; fixed times are taken from the fitted part only, and the test points
are predicted THROUGH THE CORE (``op_times``, ``collective_time``, ``p2p_time``) with a
profile holding the curve fitted on the other points. That gives ``FitError`` and
``uncertainty[table]`` (p90 of |log(predicted / measured)| on the test part). The shipped
curve is then refitted on all points. Errors are fractions (``median_ape`` 0.05 = 5 %).

Modules, by table kind: ``curves`` (grid curve fitting, held-out split, errors), ``table``
(the Table record and time inversion), ``gemm``, ``moe`` (grouped GEMM), ``attention``, ``memory`` (bandwidth and
elementwise rates), ``collectives``, ``host`` (stand-in device of a measured machine),
``compose`` (``fit_profile``: kernel overhead, measured peaks, every table in order).
"""

from __future__ import annotations

from .attention import (
    attention_floor,
    attention_op,
    attention_scale_tables,
    attention_tables,
    attention_times,
    core_applies_attention_overhead,
    fastest_backend,
)
from .collectives import (
    LATENCY_FLOOR_FRACTION,
    Links,
    collective_geometry,
    collective_tables,
    collective_times,
    device_links,
)
from .compose import (
    KERNEL_BENCHES,
    FitResult,
    fit_profile,
    heldout_error,
    kernel_overhead,
    measured_peaks,
)
from .curves import (
    GRID_DECIMALS,
    MIN_TEST_POINTS,
    MIN_WORK_FRACTION,
    SMOOTH,
    errors,
    fit_curve,
    grid_nodes,
    holdout_split,
    interpolation_matrix,
    log_ratio_quantiles,
    round4,
)
from .gemm import gemm_tables
from .host import host_device, stand_in_device
from .memory import (
    ELEMENTWISE_IO,
    elementwise_bytes,
    elementwise_op,
    elementwise_rate,
    elementwise_rates,
    elementwise_times,
    memory_table,
    record_bytes,
)
from .moe import moe_geometry, moe_ops, moe_tables, moe_times
from .table import (
    MAX_NODES,
    OVERHEAD_FLOOR_FRACTION,
    Table,
    invert_time,
    ok_records,
    precision_for,
    unit_profile,
)

__all__ = [
    "ELEMENTWISE_IO", "GRID_DECIMALS", "KERNEL_BENCHES", "LATENCY_FLOOR_FRACTION", "MAX_NODES",
    "MIN_TEST_POINTS", "MIN_WORK_FRACTION", "OVERHEAD_FLOOR_FRACTION", "SMOOTH", "FitResult",
    "Links", "Table", "attention_floor", "attention_op", "attention_scale_tables",
    "attention_tables", "attention_times",
    "collective_geometry", "collective_tables", "collective_times",
    "core_applies_attention_overhead", "device_links", "elementwise_bytes", "elementwise_op",
    "elementwise_rate", "elementwise_rates", "elementwise_times", "errors", "fastest_backend",
    "fit_curve", "fit_profile", "gemm_tables", "grid_nodes", "heldout_error", "holdout_split",
    "host_device", "interpolation_matrix", "invert_time", "kernel_overhead",
    "log_ratio_quantiles", "measured_peaks",
    "memory_table", "moe_geometry", "moe_ops", "moe_tables", "moe_times", "ok_records", "precision_for", "record_bytes", "round4", "stand_in_device",
    "unit_profile",
]
