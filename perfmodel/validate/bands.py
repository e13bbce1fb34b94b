"""Validation error bands: the signed error of comparable published cases, per group, as
``perfmodel.uncertainty`` reads them (validation/error_bands.json), and their honest check.

A case's signed error is log(true / predicted) of the quantity its metric measures (step
time, TTFT, TPOT, end-to-end latency, memory per GPU; a rate metric is the inverse of its
time: ``uncertainty.METRIC_QUANTITY``). Quantiles use Weibull plotting positions k / (n + 1)
(numpy ``method="weibull"``; Hyndman & Fan 1996, "Sample quantiles in statistical packages",
The American Statistician 50(4), definition 6): E[F(x_(k))] = k / (n + 1) for the k-th of n
draws of any continuous distribution (David & Nagaraja, Order Statistics, 3rd ed. 2003), so
the 10 % and 90 % quantiles of a group of n >= 9 cases hold about 80 % of a new case's
probability on average (exactly where they fall on order statistics; a normal sample of 10:
81 %, tests/test_uncertainty.py); the default linear positions hold about
0.8 (n - 1) / (n + 1) (n = 10: 65 %).

Coverage is checked leave-one-source-out: each case file's cases are judged by bands built
from the other files only (a band built from the cases it is checked on would be circular).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from ..uncertainty import (
    HI_P,
    LEVEL,
    LO_P,
    METRIC_QUANTITY,
    MIN_GROUP_CASES,
    calibration_ratios,
    combine,
    device_class,
    group_keys,
    stack_of,
    validation_ratio,
)
from .cases import LoadedCase, case_scenario, load_cases

QUANTILE_METHOD = "weibull"
COMMAND = "perfmodel validate --write-bands"


def signed_error(row: dict) -> float:
    """log(true / predicted) of the case's quantity (metric ~ quantity^power, power +-1)."""
    _, power = METRIC_QUANTITY[row["metric"]]
    return power * math.log(row["measured"] / row["predicted"])


def _usable(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and r.get("predicted")
            and r["metric"] in METRIC_QUANTITY]


def _keys(row: dict, classes: dict[str, str | None]) -> list[str]:
    quantity, _ = METRIC_QUANTITY[row["metric"]]
    return group_keys(row["kind"], quantity, row.get("stack"), classes.get(row.get("device")))


def _classes(rows: Sequence[dict]) -> dict[str, str | None]:
    return {d: device_class(d) for d in {r.get("device") for r in rows}}


def build_groups(rows: Sequence[dict], classes: dict[str, str | None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Group key -> n, quantiles (log true / predicted) and the sources, over ``rows`` (every
    level of every case: the lookup picks the first with >= MIN_GROUP_CASES)."""
    rows = _usable(rows)
    classes = _classes(rows) if classes is None else classes
    errors: dict[str, list[float]] = defaultdict(list)
    sources: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        e = signed_error(r)
        for key in _keys(r, classes):
            errors[key].append(e)
            sources[key].add(r["source"])
    out = {}
    for key in sorted(errors):
        x = np.asarray(errors[key])
        lo, mid, hi = np.quantile(x, [LO_P, 0.5, HI_P], method=QUANTILE_METHOD)
        out[key] = {"n": len(x), "q_lo": round(float(lo), 5), "q_median": round(float(mid), 5),
                    "q_hi": round(float(hi), 5), "sources": sorted(sources[key])}
    return out


def leave_one_source_out(rows: Sequence[dict]) -> dict[str, Any]:
    """Coverage of the LEVEL bands when each source's cases are judged by bands built from the
    other sources: combined (as predictions state them), validation-only and calibration-only,
    overall, per kind and per source; cases with no comparable group count as not covered by
    the validation-only band."""
    rows = _usable(rows)
    classes = _classes(rows)
    per_source: dict[str, dict[str, int]] = {}
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for source in sorted({r["source"] for r in rows}):
        groups = build_groups([r for r in rows if r["source"] != source], classes)
        counts = defaultdict(int)
        for r in (r for r in rows if r["source"] == source):
            ratio = math.exp(signed_error(r))
            calib = tuple(r.get("calibration_band") or (1.0, 1.0))
            found = validation_ratio(groups, _keys(r, classes))
            val = found[0] if found else None
            hits = {"combined": _inside(ratio, combine(calib, val)),
                    "validation_only": val is not None and _inside(ratio, combine((1.0, 1.0),
                                                                                  val)),
                    "calibration_only": _inside(ratio, combine(calib, None))}
            for name in ("all", r["kind"]):
                tally[name]["n"] += 1
                for k, v in hits.items():
                    tally[name][k] += int(v)
            counts["n"] += 1
            counts["combined"] += int(hits["combined"])
        per_source[source] = {"n": counts["n"], "combined": counts["combined"] / counts["n"]}

    def frac(t: dict[str, int]) -> dict[str, Any]:
        return {"n": t["n"], **{k: round(t[k] / t["n"], 4) for k in
                                ("combined", "validation_only", "calibration_only")}}

    return {"level": LEVEL, "overall": frac(tally["all"]),
            "by_kind": {k: frac(v) for k, v in sorted(tally.items()) if k != "all"},
            "by_source": {k: {"n": v["n"], "combined": round(v["combined"], 4)}
                          for k, v in per_source.items()}}


def _inside(ratio: float, band: tuple[float, float]) -> bool:
    return band[0] <= ratio <= band[1]


def band_inputs(cases: Iterable[LoadedCase]) -> dict[str, dict[str, Any]]:
    """Case id -> its stack and its calibration-residual band (true / predicted at LEVEL) of
    the metric's quantity: what a prediction's band is made of besides the validation
    groups. Cases that do not predict are left out (their report row is an error)."""
    from ..api import predict
    from ..errors import PerfModelError
    from ..resolve import resolve_profile

    out = {}
    for lc in cases:
        if lc.case.metric not in METRIC_QUANTITY:  # not a ranged quantity (engine start-up
            continue  # KV capacity, weights): no band is stated for it
        try:
            sc = case_scenario(lc)
            pred = predict(sc)
            band = calibration_ratios(pred, resolve_profile(sc), sc)
        except PerfModelError:
            continue
        quantity, _ = METRIC_QUANTITY[lc.case.metric]
        lo, hi = band.get(quantity, (1.0, 1.0))
        out[lc.case.id] = {"stack": stack_of(sc), "calibration_band": [lo, hi]}
    return out


def with_band_inputs(rows: Sequence[dict], inputs: dict[str, dict[str, Any]]) -> list[dict]:
    """Report rows with ``stack`` and ``calibration_band`` added (the report stays as is)."""
    return [{**r, **inputs.get(r["id"], {})} for r in rows]


def bands_document(report: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """The content of validation/error_bands.json for a full validation report (the cases
    under ``root``, default the shipped validation/ folder)."""
    rows = with_band_inputs(report["cases"], band_inputs(load_cases(root)))
    return {
        "created": date.today().isoformat(),
        "command": COMMAND,
        "level": LEVEL,
        "quantiles": [LO_P, 0.5, HI_P],
        "quantile_method": QUANTILE_METHOD,
        "min_group_cases": MIN_GROUP_CASES,
        "error": "log(true / predicted) of the quantity (step_time_s, ttft_s, tpot_s, "
                 "e2e_latency_s, memory_per_gpu_bytes); a band is predicted x exp(q_lo .. q_hi)",
        "group_key": "kind/quantity/stack/device_class; * = any; the first group with >= "
                     "min_group_cases cases is used (perfmodel.uncertainty.group_keys)",
        "cases": len(_usable(rows)),
        "leave_one_source_out": leave_one_source_out(rows),
        "groups": build_groups(rows),
    }
