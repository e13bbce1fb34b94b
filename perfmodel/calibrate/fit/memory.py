"""Memory-bound kernels: bandwidth efficiency over bytes moved (t = kernel_overhead_s +
bytes / (bw eff)), and per elementwise kind the element rate, the compute roof of kernels
the bandwidth does not bound."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ... import ops as O
from ...dtypes import BYTES
from ...profile import CalibrationProfile, FitError
from ...roofline import Roofline, op_times
from ...specs.hardware import DeviceSpec
from .curves import errors, holdout_split, log_ratio_quantiles, round4
from .table import Table, invert_time

# Elements moved (read + written) per output element of an elementwise op, matching
# perfmodel.ops: binary ops read two inputs, unary ops and norms one; gated activations
# (SiLU-and-mul, GeGLU) read two halves per output element.
ELEMENTWISE_IO = {
    "add": 3.0, "sub": 3.0, "mul": 3.0, "residual": 3.0, "triad": 3.0,
    "copy": 2.0, "scale": 2.0, "relu": 2.0, "gelu": 2.0, "silu": 2.0, "exp": 2.0, "neg": 2.0,
    "softmax": 2.0, "layernorm": 2.0, "rmsnorm": 2.0, "cast": 2.0,
    "silu_and_mul": 3.0, "swiglu": 3.0, "geglu": 3.0,
}


def elementwise_bytes(p: dict) -> float:
    """Bytes an elementwise record moves (explicit ``bytes``, else elems x IO x dtype size)."""
    if p.get("bytes"):
        return float(p["bytes"])
    return float(p["elems"]) * ELEMENTWISE_IO.get(p["op"], 2.0) * BYTES[p.get("dtype", "fp32")]


def record_bytes(r: dict) -> float:
    return float(r["params"]["bytes"]) if r["bench"] == "memory" else elementwise_bytes(r["params"])


def memory_table(recs: list[dict], device: DeviceSpec, base: CalibrationProfile,
                 name: str = "memory") -> Table:
    """Memory-bound kernels (``memory`` records: bytes moved; ``elementwise``: see
    ``elementwise_bytes``): efficiency over bytes of t = bytes / (bw eff) + overhead."""
    nb = np.array([record_bytes(r) for r in recs])
    t = np.array([r["time_s"] for r in recs])
    inv = invert_time(nb / Roofline(device, base).bandwidth, t, base.kernel_overhead_s)

    def times(prof, idx):
        op = O.Op("memory", O.ELEMENTWISE, 0.0, nb[idx], "fp32")
        return op_times([op], Roofline(device, prof)).time[0]

    def install(prof, curve, fit_idx):
        return prof.model_copy(update={"memory": curve})

    return Table(name, "memory", ("bytes",), nb[:, None], t, recs, lambda idx: inv, install,
                 times)


def elementwise_op(p: dict) -> O.Op:
    """The core's operator for an elementwise record (``ops.elementwise`` of that kind)."""
    io = ELEMENTWISE_IO.get(p["op"], 2.0)
    elems = float(p["elems"])
    return O.elementwise(p["op"], (io - 1.0) * elems, elems, BYTES[p.get("dtype", "fp32")],
                         kind=p["op"])


def elementwise_rate(recs: list[dict], overhead: float) -> float:
    """Best element rate of a kernel kind (elements / second of kernel time)."""
    return max(float(r["params"]["elems"]) / max(r["time_s"] - overhead, 1e-12) for r in recs)


def elementwise_times(recs: list[dict], device: DeviceSpec, prof: CalibrationProfile
                      ) -> np.ndarray:
    return np.array([float(op_times([elementwise_op(r["params"])], Roofline(device, prof))
                           .time[0]) for r in recs])


def elementwise_rates(recs: list[dict], device: DeviceSpec, prof: CalibrationProfile,
                      holdout: float, seed: int
                      ) -> tuple[dict[str, float], list[FitError], dict[str, float]]:
    """Per kernel kind: its element rate (fitted on all records), the held-out error of the
    core's time for it (rate fitted on a random part, the rest predicted) and the residual
    spread (p90 |log ratio|)."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_kind[r["params"]["op"]].append(r)
    rates, errs, spread = {}, [], {}
    for kind, rows in sorted(by_kind.items()):
        rates[kind] = round4(elementwise_rate(rows, prof.kernel_overhead_s))
        fit_idx, test_idx = holdout_split(len(rows), holdout, seed, f"elementwise.{kind}")
        if len(test_idx) == 0 or len(fit_idx) == 0:
            continue
        trial = prof.model_copy(update={"elementwise_rate": {
            **prof.elementwise_rate,
            kind: elementwise_rate([rows[i] for i in fit_idx], prof.kernel_overhead_s)}})
        test = [rows[i] for i in test_idx]
        pred, meas = elementwise_times(test, device, trial), np.array([r["time_s"] for r in test])
        med, p90, logp90 = errors(pred, meas)
        errs.append(FitError(table=f"elementwise.{kind}", n_fit=len(fit_idx),
                             n_test=len(test_idx), median_ape=round4(med),
                             p90_ape=round4(p90),
                             log_ratio_quantiles=log_ratio_quantiles(pred, meas)))
        spread[f"elementwise.{kind}"] = round4(logp90)
    return rates, errs, spread
