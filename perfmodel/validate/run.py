"""Predicting the cases: one case -> one result row (an error row when the scenario is bad or
the plan unsupported, so one case never stops the others), and the whole published set."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PerfModelError
from .aggregate import CaseResult, build_report
from .cases import (
    CANONICAL_UNIT,
    METRIC_DIMENSION,
    LoadedCase,
    case_scenario,
    load_cases,
    validation_root,
)
from .conventions import ape, metric_value

if TYPE_CHECKING:  # the core loads when a case is predicted
    from ..resolve import CalibrationLike


def run_case(lc: LoadedCase, keep: dict[str, tuple[Any, Any]] | None = None,
             calibration: CalibrationLike = None) -> CaseResult:
    """Predict one case; a bad scenario or an unsupported plan becomes an 'error' row.
    ``keep``: filled with case id -> (scenario, prediction) of each case that predicts, None
    where the scenario or the prediction is refused (what ``bands.band_inputs`` reads, so
    ``--write-bands`` does not predict every case twice). ``calibration`` (a profile or its
    path): predict with it instead of the case's own (its scenario's ``calibration:``, else
    the device's shipped profile), as ``perfmodel.predict`` takes it; the default profile's
    validation groups re-predict every case with ``calibration/default.json``
    (docs/uncertainty.md, "Uncalibrated predictions")."""
    from ..api import predict

    c = lc.case
    unit = CANONICAL_UNIT[METRIC_DIMENSION[c.metric]]
    where = " ".join(x for x in (c.source.title, c.source.location) if x)
    row = CaseResult(id=c.id, source=lc.group, kind=c.kind, metric=c.metric, unit=unit,
                     measured=c.measured.canonical, predicted=None, ape=None, status="error",
                     measured_as_printed=f"{c.measured.value:g} {c.measured.unit}",
                     assumptions=len(c.assumptions), citation=where)
    try:
        sc = case_scenario(lc)
        row.model, row.num_gpus = sc.model.id, sc.system.num_gpus
        row.device = sc.system.device
        pred = predict(sc, calibration)
        if keep is not None:
            keep[c.id] = (sc, pred)
        value = metric_value(c, pred, sc)
    except PerfModelError as err:
        row.error = str(err)
        if keep is not None:  # the case has no band either (bands.band_inputs)
            keep.setdefault(c.id, None)
        return row
    except Exception as err:  # a bug in the core must not stop the other cases
        row.error = f"internal error ({type(err).__name__}): {err}"
        return row
    if not math.isfinite(value) or value <= 0:
        row.error = f"prediction is not a positive finite number: {value!r}"
        return row
    row.predicted, row.ape, row.status = value, ape(value, row.measured), "ok"
    row.warnings = [w for w in pred.warnings if not w.startswith("uncalibrated")]
    row.fits = pred.fits
    row.calibration = pred.calibration.get("id") or pred.calibration.get("label")
    return row


def run_cases(cases: Iterable[LoadedCase], keep: dict[str, tuple[Any, Any]] | None = None,
              calibration: CalibrationLike = None) -> list[CaseResult]:
    """``run_case`` over ``cases``, in order (``keep``, ``calibration``: as ``run_case``)."""
    return [run_case(lc, keep, calibration) for lc in cases]


def validate_published(kind: str = "all", match: str | None = None,
                       root: Path | None = None, keep: dict[str, tuple[Any, Any]] | None = None,
                       calibration: CalibrationLike = None,
                       metrics: Iterable[str] | None = None) -> dict[str, Any]:
    """Load, predict and summarise the published cases: the report as a dict (``keep``,
    ``calibration``: as ``run_case``; ``metrics``: only cases of these metrics)."""
    cases = load_cases(root, kind, match)
    if metrics is not None:
        wanted = set(metrics)
        cases = [lc for lc in cases if lc.case.metric in wanted]
    if not cases:
        what = f" matching {match!r}" if match else ""
        raise PerfModelError(f"no {kind if kind != 'all' else ''} validation case{what} found "
                             f"under {root or validation_root()}".replace("  ", " "))
    return build_report(run_cases(cases, keep, calibration))
