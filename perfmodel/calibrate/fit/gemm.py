"""GEMM tables: per dtype, efficiency over (m, n, k) of the core's ``ops.gemm``
(t = kernel_overhead_s + max(compute, memory) / eff)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ... import ops as O
from ...profile import CalibrationProfile
from ...roofline import Roofline, op_times
from ...specs.hardware import DeviceSpec
from .table import Table, invert_time, ok_records, precision_for, unit_profile


def _gemm_op(recs: list[dict], dtype: str) -> O.Op:
    m, n, k = (np.array([r["params"][x] for r in recs], float) for x in ("m", "n", "k"))
    return O.gemm("gemm", m, n, k, precision_for(dtype))


def gemm_tables(records: list[dict], device: DeviceSpec, base: CalibrationProfile) -> list[Table]:
    """Per dtype: efficiency over (m, n, k) of ``ops.gemm`` (bytes = (mk + kn + mn) x size)."""
    by_dtype: dict[str, list[dict]] = defaultdict(list)
    for r in ok_records(records, "gemm"):
        by_dtype[r["params"]["dtype"]].append(r)
    unit = Roofline(device, unit_profile(base))
    tables = []
    for dtype, recs in sorted(by_dtype.items()):
        op = _gemm_op(recs, dtype)
        t = np.array([r["time_s"] for r in recs])
        inv = invert_time(op_times([op], unit).time[0], t, base.kernel_overhead_s)

        def times(prof, idx, dtype=dtype, recs=recs):
            return op_times([_gemm_op([recs[i] for i in idx], dtype)],
                            Roofline(device, prof)).time[0]

        def install(prof, curve, fit_idx, dtype=dtype):
            return prof.model_copy(update={"gemm": {**prof.gemm, dtype: curve}})

        tables.append(Table(f"gemm.{dtype}", "gemm", ("m", "n", "k"), np.stack(op.shape, axis=1),
                            t, recs, lambda idx, inv=inv: inv, install, times))
    return tables
