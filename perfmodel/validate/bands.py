"""Validation error bands: the signed error of comparable published cases, per group, as
``perfmodel.uncertainty`` reads them (validation/error_bands.json), and their honest check.

A case's signed error is log(true / predicted) of the quantity its metric measures (step
time, TTFT, TPOT, end-to-end latency, memory per GPU; a rate metric is the inverse of its
time: ``uncertainty.METRIC_QUANTITY``). A group's band is the split-conformal pair of
one-sided bounds of those errors (``uncertainty.conformal_interval``: the ceil((n + 1) 0.9)-th
smallest and largest; Lei et al. 2018, Angelopoulos & Bates 2021), so for a new case
exchangeable with the group's the band holds >= 80 % of it, and a one-sided model error
(most training step times are under-predicted) gives a one-sided band.

The check (``coverage``) is cross-validated: each case is judged by groups built without it.
Grouped by source (``leave_one_source_out``, the figure docs/uncertainty.md reports): a
source's cases share a setup, a measurement method and usually one modelling gap, so they are
not exchangeable with one another and a case's own source must not widen its band (a new
prediction is a new setup, i.e. a new source); a case file's ``group_by: case_source`` makes
each case's own citation its source (independent measurements collected in one file, e.g.
engine start-up logs from separate GitHub threads: ``LoadedCase.band_source``, carried as the
row's ``band_source``); the tables "by source" still aggregate by case file. Leave-one-case-out
is reported beside it as the check under case-level exchangeability, which the conformal
guarantee assumes. Cases whose prediction would state no band (no qualifying group and no
calibration residual) are counted apart, not as misses of a zero-width band.

Uncalibrated predictions (docs/uncertainty.md): every case is also predicted with the default
profile (calibration/default.json; rows marked ``repredicted``, ``profile`` "default"); those
errors make the ``default/kind/...`` groups that predictions with the default profile read,
the calibrated rows the others (``build_groups``), and ``coverage(..., judged="default")``
checks them the same way (a source's re-predictions leave with it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..uncertainty import (
    DEFAULT_PREFIX,
    DEFAULT_PROFILE,
    DERIVED_QUANTITY,
    HI_P,
    LEVEL,
    LO_P,
    METRIC_QUANTITY,
    MIN_GROUP_CASES,
    MIN_GROUP_SOURCES,
    calibration_ratios,
    combine,
    conformal_interval,
    device_class,
    dimension,
    group_keys,
    stack_of,
    validation_ratio,
)
from .cases import SERVING_METRICS, LoadedCase, case_scenario, load_cases

QUANTILE_METHOD = "split-conformal: ceil((n + 1) 0.9)-th smallest / largest"
COMMAND = "perfmodel validate --write-bands"


def signed_error(row: dict) -> float:
    """log(true / predicted) of the case's quantity (metric ~ quantity^power, power +-1)."""
    _, power = METRIC_QUANTITY[row["metric"]]
    return power * math.log(row["measured"] / row["predicted"])


def _source(row: dict) -> str:
    """The source a row counts as in the groups and the folds (``band_source``, else its
    case file)."""
    return row.get("band_source") or row["source"]


def _usable(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and r.get("predicted")
            and r["metric"] in METRIC_QUANTITY]


def _is_default(row: dict) -> bool:
    """The row was predicted with the default (uncalibrated) profile: re-predicted with it
    (``repredicted``), or a case whose device has no calibrated profile (``profile``)."""
    return row.get("profile") == DEFAULT_PROFILE


@cache
def timed_metrics() -> frozenset[str]:
    """The case metrics whose band quantity is a time: the ones the default profile's groups
    hold (``uncertainty.group_keys``)."""
    return frozenset(m for m, (q, _) in METRIC_QUANTITY.items() if dimension(q) == "time")


def _timed(row: dict) -> bool:
    """The row's quantity is a time (the default profile's groups are times only)."""
    return row["metric"] in timed_metrics()


def shipped_rows(rows: Iterable[dict]) -> list[dict]:
    """The cases as shipped (each predicted with its own profile): not the re-predictions."""
    return [r for r in rows if not r.get("repredicted")]


def default_rows(rows: Iterable[dict]) -> list[dict]:
    """Each case predicted with the default profile once: its re-prediction, else (a case
    that was not re-predicted) its shipped row where that already used the default profile
    (the same prediction)."""
    again = {r["id"] for r in rows if r.get("repredicted")}
    return [r for r in rows if _is_default(r)
            and (r.get("repredicted") or r["id"] not in again)]


def case_kind(row: dict) -> str:
    """The kind whose groups a case belongs to: "serving" for a closed-loop benchmark's
    metric (``SERVING_METRICS``), else the case's own kind."""
    return "serving" if row["metric"] in SERVING_METRICS else row["kind"]


def _keys(row: dict, classes: dict[str, str | None]) -> list[str]:
    """The groups a case's prediction reads, in order (a default-profile one: the default
    profile's chain first, ``uncertainty.group_keys``)."""
    quantity, _ = METRIC_QUANTITY[row["metric"]]
    return group_keys(case_kind(row), quantity, row.get("stack"),
                      classes.get(row.get("device")), row.get("profile"))


def _own_keys(row: dict, classes: dict[str, str | None]) -> list[str]:
    """The groups a case's error goes into: a default-profile prediction of a time only into
    the default profile's groups, any other only into the calibrated groups; a closed-loop
    benchmark's only into the serving groups of its own quantity (the inference groups a
    serving prediction falls back to hold single passes only; a mean TTFT's errors stay out of
    the TTFT percentiles' groups its chain falls back to, ``uncertainty.DERIVED_QUANTITY``)."""
    keys = _keys(row, classes)
    mine = _is_default(row) and _timed(row)
    keys = [k for k in keys if k.startswith(DEFAULT_PREFIX) == mine]
    if case_kind(row) == "serving":  # and only its own quantity's (not a derived one's base)
        quantity = METRIC_QUANTITY[row["metric"]][0]
        keys = [k for k in keys if k.removeprefix(DEFAULT_PREFIX).split("/")[:2]
                == ["serving", quantity]]
    return keys


def _classes(rows: Sequence[dict]) -> dict[str, str | None]:
    return {d: device_class(d) for d in {r.get("device") for r in rows}}


def build_groups(rows: Sequence[dict], classes: dict[str, str | None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Group key -> n, split-conformal bounds ``q_lo`` / ``q_hi`` (None when the group is too
    small for a finite bound), the median and the sources of log(true / predicted), over
    ``rows`` (every level of every case: the lookup picks the first that qualifies).
    Calibrated predictions make the ``kind/...`` groups; default-profile predictions
    (``default_rows``: each case re-predicted with calibration/default.json, and the cases
    whose device has no calibrated profile) the ``default/kind/...`` groups, each case once;
    memory, which the default profile does not move, only the ``kind/...`` groups, as
    shipped."""
    rows = _usable(rows)
    classes = _classes(rows) if classes is None else classes
    errors: dict[str, list[float]] = defaultdict(list)
    sources: dict[str, set[str]] = defaultdict(set)
    # each case once per chain: times of calibrated predictions + times of default-profile
    # ones (re-predicted, or shipped so); memory as shipped, whatever the profile
    rows = [r for r in shipped_rows(rows) if not (_is_default(r) and _timed(r))] \
        + [r for r in default_rows(rows) if _timed(r)]
    for r in rows:
        e = signed_error(r)
        for key in _own_keys(r, classes):
            errors[key].append(e)
            sources[key].add(_source(r))
    out = {}
    for key in sorted(errors):
        x = np.asarray(errors[key])
        band = conformal_interval(x)
        out[key] = {"n": len(x),
                    "q_lo": None if band is None else round(band[0], 5),
                    "q_median": round(float(np.median(x)), 5),
                    "q_hi": None if band is None else round(band[1], 5),
                    "sources": sorted(sources[key])}
    return out


def _level(key: str | None) -> str:
    """The fallback level of a group key (uncertainty.group_keys)."""
    if key is None:
        return "none"
    if key.startswith(DEFAULT_PREFIX):
        return "default profile: " + _level(key[len(DEFAULT_PREFIX):])
    kind, quantity, stack, dev = key.split("/")
    if kind == "*":
        return "any kind, dimension"
    if quantity in ("time", "memory"):
        return "kind, dimension"
    if stack != "*":
        return "kind, quantity, stack, device class"
    return "kind, quantity, device class" if dev != "*" else "kind, quantity"


def judge(row: dict, groups: dict[str, dict], classes: dict[str, str | None]
          ) -> dict[str, Any]:
    """One case against bands built without it: which bands are stated, which hold it."""
    ratio = math.exp(signed_error(row))
    calib = tuple(row.get("calibration_band") or (1.0, 1.0))
    has_calib = calib != (1.0, 1.0)
    found = validation_ratio(groups, _keys(row, classes))
    val = found[0] if found else None
    stated = has_calib or val is not None  # as prediction_ranges: else "no band"
    band = combine(calib, val)
    return {"stated": stated, "combined": stated and _inside(ratio, band),
            "width": math.log(band[1] / band[0]) if stated else None,
            "has_validation": val is not None,
            "validation_only": val is not None and _inside(ratio, combine((1.0, 1.0), val)),
            "has_calibration": has_calib,
            "calibration_only": has_calib and _inside(ratio, combine(calib, None)),
            "level": _level(found[1] if found else None)}


def _summary(judged: list[dict]) -> dict[str, Any]:
    stated = [j for j in judged if j["stated"]]
    val = [j for j in judged if j["has_validation"]]
    cal = [j for j in judged if j["has_calibration"]]

    def frac(js: list[dict], k: str) -> float | None:
        return round(sum(j[k] for j in js) / len(js), 4) if js else None

    return {"n": len(judged), "stated": len(stated), "no_band": len(judged) - len(stated),
            "combined": frac(stated, "combined"),
            "n_validation": len(val), "validation_only": frac(val, "validation_only"),
            "n_calibration": len(cal), "calibration_only": frac(cal, "calibration_only"),
            "median_width": (round(float(np.exp(np.median([j["width"] for j in stated]))), 3)
                             if stated else None)}


def coverage(rows: Sequence[dict], holdout: str = "source", judged: str = "shipped"
             ) -> dict[str, Any]:
    """Cross-validated coverage of the LEVEL bands: each case judged by groups built from the
    rows outside its fold (``holdout`` "source": its source's cases, ``_source``; "case":
    itself; a case's re-prediction with the default profile leaves with it), with its own
    calibration band. Combined (as predictions state them), validation-only and
    calibration-only, overall and per kind, quantity, group level and case file
    (``by_source``); the fraction is over the cases where that band is stated;
    ``median_width`` is hi / lo of the band. ``judged``: "shipped", the cases as shipped
    (``shipped_rows``: each with its own profile); "default", each case predicted with the
    default profile (``default_rows``), by the default profile's groups."""
    rows = _usable(rows)
    classes = _classes(rows)
    fold = _source if holdout == "source" else (lambda r: r["id"])
    # the default profile's own check: its times only (memory reads no efficiency it replaces,
    # so its groups hold times only and a memory case is the shipped check's)
    targets = (shipped_rows(rows) if judged == "shipped"
               else [r for r in default_rows(rows) if _timed(r)])
    per: list[tuple[dict, dict]] = []
    for f in sorted({fold(r) for r in targets}):
        groups = build_groups([r for r in rows if fold(r) != f], classes)
        per += [(r, judge(r, groups, classes)) for r in targets if fold(r) == f]

    def by(key) -> dict[str, dict[str, Any]]:
        split: dict[str, list[dict]] = defaultdict(list)
        for r, j in per:
            split[key(r, j)].append(j)
        return {k: _summary(v) for k, v in sorted(split.items())}

    return {"level": LEVEL, "holdout": holdout, "judged": judged,
            "overall": _summary([j for _, j in per]),
            "by_kind": by(lambda r, j: case_kind(r)),
            "by_quantity": by(lambda r, j: f"{case_kind(r)}/{METRIC_QUANTITY[r['metric']][0]}"),
            "by_level": by(lambda r, j: j["level"]),
            "by_source": by(lambda r, j: r["source"])}


def leave_one_source_out(rows: Sequence[dict]) -> dict[str, Any]:
    """``coverage`` with each source's cases judged by the other sources' groups."""
    return coverage(rows, "source")


def _inside(ratio: float, band: tuple[float, float]) -> bool:
    return band[0] <= ratio <= band[1]


def band_inputs(cases: Iterable[LoadedCase],
                predicted: dict[str, tuple[Any, Any]] | None = None,
                calibration: Any = None) -> dict[str, dict[str, Any]]:
    """Case id -> its stack, its calibration-residual band (true / predicted at LEVEL) of
    the metric's quantity, the source it counts as (``LoadedCase.band_source``) and the kind
    of the profile it was predicted with (``profile``: default, reference, measured): what a
    prediction's band is made of besides the validation groups. Cases that do not predict are
    left out (their report row is an error). ``predicted``: case id -> (scenario, prediction)
    of the validation run that made the report (``run.run_case``'s ``keep``; None: refused),
    used instead of predicting those cases again (the core is pure: the same prediction).
    ``calibration``: the profile (or its path) that run predicted every case with, None for
    each case's own (``run.validate_published``)."""
    from ..api import predict
    from ..errors import PerfModelError
    from ..resolve import resolve_profile

    predicted = predicted or {}
    out = {}
    for lc in cases:
        if lc.case.metric not in METRIC_QUANTITY:  # not a ranged quantity: no band
            continue
        try:
            if lc.case.id in predicted:
                if predicted[lc.case.id] is None:  # refused in that run: no band
                    continue
                sc, pred = predicted[lc.case.id]
            else:
                sc = case_scenario(lc)
                pred = predict(sc, calibration)
            profile = resolve_profile(sc, calibration)
            band = calibration_ratios(pred, profile, sc)
        except PerfModelError:
            continue
        quantity, _ = METRIC_QUANTITY[lc.case.metric]
        # a derived quantity (the mean TTFT) has its base's calibration residuals, as a
        # prediction's quantity_ratios reads them
        lo, hi = band.get(DERIVED_QUANTITY.get(quantity, quantity), (1.0, 1.0))
        out[lc.case.id] = {"stack": stack_of(sc), "calibration_band": [lo, hi],
                           "band_source": lc.band_source, "profile": profile.kind}
    return out


def with_band_inputs(rows: Sequence[dict], inputs: dict[str, dict[str, Any]]) -> list[dict]:
    """Report rows with ``stack``, ``calibration_band`` and ``band_source`` added (the
    report stays as is)."""
    return [{**r, **inputs.get(r["id"], {})} for r in rows]


def banded_rows(report: dict[str, Any], root: Path | None = None,
                predicted: dict[str, tuple[Any, Any]] | None = None,
                default_report: dict[str, Any] | None = None,
                default_predicted: dict[str, tuple[Any, Any]] | None = None) -> list[dict]:
    """A full validation report's rows with what their bands are made of (the cases under
    ``root``, default the shipped validation/ folder; ``predicted``: as ``band_inputs``),
    and, given ``default_report`` (the same cases predicted with the default profile,
    ``run.validate_published(calibration=default_profile())``; ``default_predicted`` its
    predictions), its rows marked ``repredicted``: what the default profile's groups are
    made of."""
    cases = load_cases(root)
    rows = with_band_inputs(report["cases"], band_inputs(cases, predicted))
    if default_report is not None:
        from ..specs.registry import default_profile

        inputs = band_inputs(cases, default_predicted, default_profile())
        rows += [{**r, "repredicted": True}
                 for r in with_band_inputs(default_report["cases"], inputs)]
    return rows


def coverage_document(rows: Sequence[dict]) -> dict[str, Any]:
    """Both cross-validated checks: by source (the reported figure) and by case, of the cases
    as shipped and (``default_profile``) of the cases predicted with the default profile."""
    usable = _usable(rows)
    defaults = [r for r in default_rows(usable) if _timed(r)]
    doc = {"level": LEVEL, "cases": len(shipped_rows(usable)),
           "leave_one_source_out": coverage(rows, "source"),
           "leave_one_case_out": coverage(rows, "case")}
    if defaults:
        doc["default_profile"] = {"cases": len(defaults),
                                  "leave_one_source_out": coverage(rows, "source", "default"),
                                  "leave_one_case_out": coverage(rows, "case", "default")}
    return doc


def bands_document(report: dict[str, Any], root: Path | None = None,
                   predicted: dict[str, tuple[Any, Any]] | None = None,
                   default_report: dict[str, Any] | None = None,
                   default_predicted: dict[str, tuple[Any, Any]] | None = None
                   ) -> dict[str, Any]:
    """The content of validation/error_bands.json for a full validation report (the cases
    under ``root``, default the shipped validation/ folder; ``predicted``: as
    ``band_inputs``; ``default_report``, ``default_predicted``: as ``banded_rows``, for the
    ``default/...`` groups)."""
    rows = banded_rows(report, root, predicted, default_report, default_predicted)
    check = coverage_document(rows)
    return {
        "created": date.today().isoformat(),
        "command": COMMAND,
        "level": LEVEL,
        "quantiles": [LO_P, 0.5, HI_P],
        "quantile_method": QUANTILE_METHOD,
        "min_group_cases": MIN_GROUP_CASES,
        "min_group_sources": MIN_GROUP_SOURCES,
        "error": "log(true / predicted) of the quantity (step_time_s, ttft_s, tpot_s, "
                 "e2e_latency_s, memory_per_gpu_bytes); a band is predicted x exp(q_lo .. q_hi)",
        "group_key": "kind/quantity/stack/device_class; * = any; the first group with >= "
                     "min_group_cases cases from >= min_group_sources sources is used "
                     "(perfmodel.uncertainty.group_keys)",
        "profiles": "kind/... groups: each case predicted with its own (calibrated) profile; "
                    "default/kind/... groups (times only): each case predicted with the "
                    "default profile (calibration/default.json), read by predictions whose "
                    "profile is the default one (perfmodel.uncertainty.group_keys)",
        "cases": check["cases"],
        "leave_one_source_out": check["leave_one_source_out"],
        "leave_one_case_out": check["leave_one_case_out"]["overall"],
        **({"default_profile": {
            "cases": check["default_profile"]["cases"],
            "leave_one_source_out": check["default_profile"]["leave_one_source_out"],
            "leave_one_case_out": check["default_profile"]["leave_one_case_out"]["overall"]}}
           if "default_profile" in check else {}),
        "groups": build_groups(rows),
    }


# ---- the printed check (perfmodel validate --band-coverage) -------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _width(s: dict[str, Any]) -> str:
    return "-" if s["median_width"] is None else f"{s['median_width']:.2f}x"


def _table(title: str, part: dict[str, dict[str, Any]]) -> list[str]:
    out = [f"| {title} | n | stated | combined | validation only (n) | calibration only (n) "
           "| median hi/lo |", "|---|---|---|---|---|---|---|"]
    for name, s in part.items():
        out.append(f"| {name} | {s['n']} | {s['stated']} | **{_pct(s['combined'])}** | "
                   f"{_pct(s['validation_only'])} ({s['n_validation']}) | "
                   f"{_pct(s['calibration_only'])} ({s['n_calibration']}) | {_width(s)} |")
    return out


def render_coverage(doc: dict[str, Any]) -> str:
    """The check as Markdown tables, for docs/uncertainty.md."""
    src, case = doc["leave_one_source_out"], doc["leave_one_case_out"]
    head = (f"Coverage of the stated {100 * doc['level']:.0f} % band on {doc['cases']} "
            f"published cases with a ranged metric, cross-validated "
            f"({date.today().isoformat()}; "
            f"`perfmodel validate --band-coverage`). \"combined\" is the band as predictions "
            "state it, over the cases that have one (\"stated\"); the other two columns are "
            "its parts alone, over the cases that have that part.")
    out = [head, "", "Each source judged by the other sources' groups (leave-one-source-out):",
           "", *_table("cases", {"all": src["overall"], **src["by_kind"]}), "",
           *_table("quantity", src["by_quantity"]), "",
           *_table("group used", src["by_level"]), "",
           *_table("source", src["by_source"]), "",
           "Each case judged by all the other cases (leave-one-case-out, the exchangeable "
           "check):", "", *_table("cases", {"all": case["overall"], **case["by_kind"]})]
    if "default_profile" in doc:
        d = doc["default_profile"]
        src, case = d["leave_one_source_out"], d["leave_one_case_out"]
        out += ["", f"Uncalibrated predictions: the {d['cases']} cases predicted with the "
                "default profile (calibration/default.json), each judged by the default "
                "profile's groups built without its source (leave-one-source-out):", "",
                *_table("cases", {"all": src["overall"], **src["by_kind"]}), "",
                *_table("quantity", src["by_quantity"]), "",
                *_table("group used", src["by_level"]), "",
                *_table("source", src["by_source"]), "",
                "The same, each case judged by all the other cases (leave-one-case-out):", "",
                *_table("cases", {"all": case["overall"], **case["by_kind"]})]
    return "\n".join(out) + "\n"
