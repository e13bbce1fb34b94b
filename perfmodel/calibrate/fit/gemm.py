"""GEMM tables: per table, efficiency over (m, n, k) of the core's ``ops.gemm``
(t = kernel_overhead_s + max(compute, memory) / eff).

A table is a dtype's records: the device's reference table under the dtype's name, another
engine's kernel's under ``<dtype>@<kernel>`` (the converter's ``by_kernel`` records: their
``table`` param, ``profile.gemm_key``), each installed with the kernel its records ran
(``gemm_kernel``, from their ``kernel_source`` through calibration/gemm_kernels.yaml): the
core picks a table by the engine's kernel (``CalibrationProfile.gemm_table``), as it picks the
grouped-GEMM tables (``fit/moe.py``)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ... import ops as O
from ...profile import CalibrationProfile
from ...roofline import Roofline, op_times
from ...specs.hardware import DeviceSpec
from ..moe_kernels import kernel_labels
from .table import Table, invert_time, ok_records, precision_for, unit_profile


def _gemm_op(recs: list[dict], dtype: str) -> O.Op:
    m, n, k = (np.array([r["params"][x] for r in recs], float) for x in ("m", "n", "k"))
    return O.gemm("gemm", m, n, k, precision_for(dtype))


def gemm_table_kernel(recs: list[dict]) -> str | None:
    """The kernel all of a table's records ran (the calibration/gemm_kernels.yaml label of their
    upstream ``kernel_source``), or None when they do not name one or name several."""
    labels = kernel_labels("gemm")
    kernels = {labels.get(r.get("stats", {}).get("kernel_source") or "") for r in recs}
    return kernels.pop() if len(kernels) == 1 and None not in kernels else None


def as_dtype_table(prof: CalibrationProfile, key: str, dtype: str) -> CalibrationProfile:
    """``prof`` with the table ``key`` (``<dtype>@<kernel>``) standing as its dtype's reference
    table, so that the core reads it for that dtype as it does for an engine naming its kernel
    (``CalibrationProfile.gemm_table``): the held-out test of a kernel's table."""
    if key == dtype or key not in prof.gemm:
        return prof
    return prof.model_copy(update={
        "gemm": {**prof.gemm, dtype: prof.gemm[key]},
        "gemm_kernel": {k: v for k, v in prof.gemm_kernel.items() if k != dtype}})


def gemm_tables(records: list[dict], device: DeviceSpec, base: CalibrationProfile) -> list[Table]:
    """Per table (the records' ``table`` param, else their dtype): efficiency over (m, n, k)
    of ``ops.gemm`` (bytes = (mk + kn + mn) x size)."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in ok_records(records, "gemm"):
        by_key[r["params"].get("table") or r["params"]["dtype"]].append(r)
    unit = Roofline(device, unit_profile(base))
    tables = []
    for key, recs in sorted(by_key.items()):
        dtype = recs[0]["params"]["dtype"]
        op = _gemm_op(recs, dtype)
        t = np.array([r["time_s"] for r in recs])
        inv = invert_time(op_times([op], unit).time[0], t, base.kernel_overhead_s)
        kernel = gemm_table_kernel(recs)

        def times(prof, idx, dtype=dtype, recs=recs, key=key):
            return op_times([_gemm_op([recs[i] for i in idx], dtype)],
                            Roofline(device, as_dtype_table(prof, key, dtype))).time[0]

        def install(prof, curve, fit_idx, key=key, kernel=kernel):
            labels = {**prof.gemm_kernel, key: kernel} if kernel else prof.gemm_kernel
            return prof.model_copy(update={"gemm": {**prof.gemm, key: curve},
                                           "gemm_kernel": labels})

        tables.append(Table(f"gemm.{key}", "gemm", ("m", "n", "k"), np.stack(op.shape, axis=1),
                            t, recs, lambda idx, inv=inv: inv, install, times))
    return tables
