"""``fit_profile``: every table found in a set of records, fitted into one calibration profile.

Order: the per-kernel overhead first (``kernel_overhead``: the launch benchmark's median, or
for published CUDA-graph tables, which carry no launch cost, 0.95 x the smallest kernel time,
the floor every kernel pays), then GEMM, grouped GEMM (MoE), attention, memory (+ elementwise
rates) and collective tables, each fitted on a random part and tested on the rest through the core
(``heldout_error``), then refitted on all points and installed where the core reads it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from ...profile import CalibrationProfile, FitError
from ...specs.common import Source
from ...specs.hardware import DeviceSpec
from ...specs.registry import default_profile
from .attention import attention_scale_tables, attention_tables
from .collectives import LATENCY_FLOOR_FRACTION, collective_tables, device_links
from .curves import errors, holdout_split, log_ratio_quantiles, round4
from .gemm import gemm_tables
from .host import stand_in_device
from .memory import elementwise_rates, memory_table, record_bytes
from .moe import curve_errors, curves_only, moe_curve_parts, moe_tables
from .table import OVERHEAD_FLOOR_FRACTION, Table, ok_records

KERNEL_BENCHES = ("gemm", "attention", "memory", "elementwise")


@dataclass
class FitResult:
    """A fitted profile with its tables and held-out predictions (for reports)."""

    profile: CalibrationProfile
    tables: list[Table]
    heldout: dict[str, tuple[np.ndarray, np.ndarray]]  # table -> (test idx, predicted s)


def kernel_overhead(records: list[dict]) -> tuple[float, str]:
    """Per-kernel overhead and how it was chosen (recorded in the profile notes)."""
    launch = ok_records(records, "launch")
    if launch:
        return (float(np.median([r["time_s"] for r in launch])),
                f"median of {len(launch)} launch-benchmark records")
    times = [r["time_s"] for b in KERNEL_BENCHES for r in ok_records(records, b)]
    if times:
        floor = float(min(times))
        return OVERHEAD_FLOOR_FRACTION * floor, (
            f"{OVERHEAD_FLOOR_FRACTION:g} x the smallest measured kernel time ({floor * 1e6:.3g}"
            " us): CUDA-graph tables carry no launch cost, so the floor every kernel pays "
            "stands in for it")
    return 0.0, "no kernel records"


def measured_peaks(records: list[dict], cache_bytes: float = 0.0
                   ) -> tuple[dict[str, float], float | None]:
    """Best measured GEMM rate per dtype (TFLOP/s) and best memory bandwidth (GB/s, from
    ``memory`` records, else ``elementwise`` ones, of working sets >= 2 x ``cache_bytes``
    where there are some): the peaks of a device without a datasheet (a CPU)."""
    peaks: dict[str, float] = {}
    for r in ok_records(records, "gemm"):
        p = r["params"]
        rate = 2.0 * p["m"] * p["n"] * p["k"] / r["time_s"] / 1e12
        peaks[p["dtype"]] = max(peaks.get(p["dtype"], 0.0), rate)
    bw = None
    for bench in ("memory", "elementwise"):
        recs = ok_records(records, bench)
        big = [r for r in recs if record_bytes(r) >= 2 * cache_bytes]
        rates = [record_bytes(r) / r["time_s"] / 1e9 for r in (big or recs)]
        if rates:
            bw = max(rates)
            break
    return {k: round4(v) for k, v in peaks.items()}, (round4(bw) if bw else None)


def heldout_error(table: Table, base: CalibrationProfile, holdout: float, seed: int
                  ) -> tuple[FitError, float, np.ndarray, np.ndarray] | None:
    """Fit on a random part of ``table``, predict the rest through the core: (FitError,
    p90 |log ratio|, test indices, predicted seconds), or None for a table too small."""
    fit_idx, test_idx = holdout_split(len(table), holdout, seed, table.name)
    if len(test_idx) == 0:
        return None
    pred = table.predict(base, table.fit(fit_idx), test_idx, fit_idx)
    med, p90, logp90 = errors(pred, table.measured[test_idx])
    fe = FitError(table=table.name, n_fit=len(fit_idx), n_test=len(test_idx),
                  median_ape=round4(med), p90_ape=round4(p90),
                  log_ratio_quantiles=log_ratio_quantiles(pred, table.measured[test_idx]))
    return fe, round4(logp90), test_idx, pred


@dataclass
class _Fitting:
    """The profile as tables are added to it, with what the fit found on the way."""

    profile: CalibrationProfile
    holdout: float
    seed: int
    fit_errors: list[FitError] = field(default_factory=list)
    uncertainty: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, tuple] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, table: Table) -> None:
        """Held-out error of ``table``, then its curve fitted on all points and installed."""
        result = heldout_error(table, self.profile, self.holdout, self.seed)
        if result is not None:
            fe, unc, test_idx, pred = result
            self.fit_errors.append(fe)
            self.uncertainty[table.name] = unc
            self.heldout[table.name] = (test_idx, pred)
        self.tables.append(table)
        self.profile = table.install(self.profile, table.fit(), np.arange(len(table)))


def _start_profile(records: list[dict], device: DeviceSpec | None, kind: str, profile_id: str,
                   sources: Sequence[Source | dict], peak_tflops: dict[str, float] | None,
                   memory_bandwidth_gbps: float | None
                   ) -> tuple[CalibrationProfile, DeviceSpec, str]:
    """(profile with peaks, overhead and documented defaults but no curves, the device the
    tables are timed on, how the overhead was chosen)."""
    meta = next((r for r in records if r.get("bench") == "meta"), None)
    facts = {k: v for k, v in (meta or {}).items() if k != "bench"}
    overhead, overhead_how = kernel_overhead(records)
    peaks = dict(peak_tflops or {})
    bw = memory_bandwidth_gbps
    if device is None or device.kind == "cpu":
        # beyond the cache the harness flushes between reps, the bandwidth is DRAM's
        measured, measured_bw = measured_peaks(records, float(facts.get("flush_bytes") or 0))
        peaks = {**measured, **peaks}
        bw = bw or measured_bw
    dev = device or stand_in_device(peaks, bw, facts)
    fallback = default_profile()  # documented defaults for tables the records lack
    prof = CalibrationProfile(
        id=profile_id, device=device.id if device else None, kind=kind,
        created=date.today().isoformat(),
        sources=[s if isinstance(s, Source) else Source(**s) for s in sources],
        defaults=fallback.defaults, kernel_overhead_s=round4(overhead),
        memory_overheads=fallback.memory_overheads, peak_tflops=peaks,
        memory_bandwidth_gbps=bw, device_facts=facts)
    return prof, dev, overhead_how


def _attention_notes(records: list[dict], fitting: _Fitting) -> list[str]:
    """Which backend each phase's curve holds (when several ran), and the fixed times."""
    out = []
    measured_backends: dict[str, set] = defaultdict(set)
    for r in ok_records(records, "attention"):
        measured_backends[r["params"]["phase"]].add(str(r["params"].get("backend")))
    chosen = [f"{t.name.split('.')[1]}: {t.records[0]['params'].get('backend')} of "
              f"{'/'.join(sorted(measured_backends[t.name.split('.')[1]]))}"
              for t in fitting.tables if t.kind == "attention"
              and len(measured_backends[t.name.split(".")[1]]) > 1]
    if chosen:
        out.append("attention: per phase the fastest backend (" + "; ".join(chosen) + ").")
    scaled = [t.name for t in fitting.tables if t.kind == "attention_scale"]
    if scaled:
        out.append(
            "attention_scale: per phase, the efficiency of other head dims and sliding windows "
            "over the curve's (fitted on head_dim 128, full causal attention), a curve over "
            "the same axes fitted the same way (tables " + ", ".join(scaled) + "); between "
            "measured head dims and windows interpolated in log2 (profile.attention_factor).")
    if fitting.profile.attention_overhead_s:
        out.append(
            "attention_overhead_s: per phase, the fixed time of an attention call beyond "
            f"kernel_overhead_s = {OVERHEAD_FLOOR_FRACTION:g} x its fastest call - "
            "kernel_overhead_s, for tables that sweep down to that floor.")
    return out


def _fit_memory(records: list[dict], dev: DeviceSpec, fitting: _Fitting) -> None:
    """Memory: fitted on ``memory`` records when there are any, the ``elementwise`` ones are
    then checked against that curve (table ``elementwise.check``); otherwise fitted on the
    elementwise ones. Then the elementwise rates."""
    mem_recs, elem_recs = ok_records(records, "memory"), ok_records(records, "elementwise")
    if mem_recs or elem_recs:
        fitting.run(memory_table(mem_recs or elem_recs, dev, fitting.profile))
        if mem_recs and elem_recs:
            prof = fitting.profile
            check = memory_table(elem_recs, dev, prof, name="elementwise.check")
            pred = check.times(prof, np.arange(len(check)))
            med, p90, logp90 = errors(pred, check.measured)
            fitting.fit_errors.append(FitError(
                table=check.name, n_fit=0, n_test=len(check), median_ape=round4(med),
                p90_ape=round4(p90),
                log_ratio_quantiles=log_ratio_quantiles(pred, check.measured)))
            fitting.uncertainty[check.name] = round4(logp90)
            fitting.heldout[check.name] = (np.arange(len(check)), pred)
            fitting.tables.append(check)
            fitting.notes.append("memory: fitted on the bandwidth records; the elementwise "
                                 "kernels are checked against that curve (table "
                                 "elementwise.check, every kernel a test point).")
        elif elem_recs:
            fitting.notes.append("memory: fitted on the elementwise kernels (no bandwidth "
                                 "records).")
    if elem_recs:
        rates, errs, spread = elementwise_rates(elem_recs, dev, fitting.profile,
                                                fitting.holdout, fitting.seed)
        fitting.profile = fitting.profile.model_copy(update={"elementwise_rate": rates})
        fitting.fit_errors.extend(errs)
        fitting.uncertainty.update(spread)
        fitting.notes.append("elementwise_rate: per kernel kind, the best measured elements "
                             "per second, the compute roof of kernels the bandwidth does not "
                             "bound (tables elementwise.<kind>: rate fitted on part, the rest "
                             "predicted).")


def _parts_profile(records: list[dict], dev: DeviceSpec, fitting: _Fitting) -> CalibrationProfile:
    """The profile that times the operators the core charges beside a MoE layer's grouped
    GEMMs (top-k, activation, combine), which the MoE fit takes out of the measured rows
    (``moe.net_times``): ``fitting``'s profile with the memory curve and element-wise rates
    ``_fit_memory`` fits on these records (on a scratch copy: the tables fitted before the
    memory stage keep the profile they were fitted on; the same fit installs them later)."""
    if not ok_records(records, "moe"):
        return fitting.profile
    scratch = _Fitting(fitting.profile, fitting.holdout, fitting.seed)
    _fit_memory(records, dev, scratch)
    return scratch.profile


def _measured_moe_curves(records: list[dict], dev: DeviceSpec, fitting: _Fitting,
                         parts: CalibrationProfile) -> None:
    """Each fitted MoE table's own per-shape curves (``moe.moe_curves``: the core reads one
    where its grouped GEMMs have that measured shape; times less the parts the core charges
    separately, timed on ``parts``) and their interpolation error (``moe.curve_errors``:
    ``moe_curve.<key>``, the band of a curve hit)."""
    both = {k: c for k, c in moe_curve_parts(records, dev, parts, fitting.profile).items()
            if k in fitting.profile.moe}
    if not both:
        return
    curves = curves_only(both)
    fitting.profile = fitting.profile.model_copy(update={"moe_curves": curves})
    for key, shapes in curves.items():
        err = curve_errors(key, shapes, {shape: e for shape, (_, e) in both[key].items()})
        if err is not None:
            fitting.fit_errors.append(err[0])
            fitting.uncertainty[err[0].table] = err[1]
    fitting.notes.append(
        "moe_curves: per MoE table, its measured shapes' times over tokens (the records the "
        "table is fitted on, net of the top-k / activation / combine the core charges "
        "separately, each row at its own efficiency over the experts its harness's routing "
        "touched, moved to the uniform routing the core matches a curve by); the core reads "
        "a shape's curve, log-log in tokens inside its "
        "measured range, where a step's grouped GEMMs have exactly that shape on one GPU, the "
        "fitted grid elsewhere (tables moe_curve.<key>: each interior point predicted from its "
        "two neighbours, curve + those parts against the row).")


def fit_profile(records: Iterable[dict], device: DeviceSpec | None, *, kind: str,
                profile_id: str, sources: Sequence[Source | dict],
                peak_tflops: dict[str, float] | None = None,
                memory_bandwidth_gbps: float | None = None,
                link_bandwidths: dict[str, float] | None = None, holdout: float = 0.3,
                seed: int = 0, notes: str | None = None,
                return_result: bool = False) -> CalibrationProfile | FitResult:
    """Fit every table found in ``records`` (module docstring) into a profile.

    ``device`` None or a CPU: peaks and bandwidth are the best measured ones and are stored
    in the profile; otherwise the datasheet applies unless ``peak_tflops`` /
    ``memory_bandwidth_gbps`` are given. ``link_bandwidths`` = {"intra": GB/s per GPU per
    direction, "inter": GB/s per GPU} overrides the device's default node. Memory: see
    ``_fit_memory``.
    """
    records = list(records)
    prof, dev, overhead_how = _start_profile(records, device, kind, profile_id, sources,
                                             peak_tflops, memory_bandwidth_gbps)
    fitting = _Fitting(prof, holdout, seed, notes=[notes] if notes else [])
    fitting.notes.append(f"kernel_overhead_s: {overhead_how}.")
    for table in gemm_tables(records, dev, fitting.profile):
        fitting.run(table)
    parts = _parts_profile(records, dev, fitting)
    for table in moe_tables(records, dev, fitting.profile, parts):
        fitting.run(table)
    _measured_moe_curves(records, dev, fitting, parts)
    for table in attention_tables(records, dev, fitting.profile):
        fitting.run(table)
    for table in attention_scale_tables(records, dev, fitting.profile):  # on those curves
        fitting.run(table)
    fitting.notes += _attention_notes(records, fitting)
    _fit_memory(records, dev, fitting)
    links = device_links(device, link_bandwidths, records)
    for scope in ("intra", "inter"):  # inter-node times include the intra-node hop
        for table in collective_tables(records, dev, links, fitting.profile, scope):
            fitting.run(table)
    if fitting.profile.collectives:
        fitting.notes.append(
            f"collectives: latency_s makes the fixed time {LATENCY_FLOOR_FRACTION:g} x the "
            "fastest call of each table (inter-node: less the network latency "
            "comm.network_time adds, NCCL's ring model for all-gather / reduce-scatter); "
            "efficiency = "
            "the core's time formula solved at each measured size.")
    prof = fitting.profile.model_copy(update={
        "fit_errors": fitting.fit_errors, "uncertainty": fitting.uncertainty,
        "notes": " ".join(fitting.notes)})
    prof = CalibrationProfile.model_validate(prof.model_dump())
    if return_result:
        return FitResult(prof, fitting.tables, fitting.heldout)
    return prof
