"""Per-case results and their aggregation (pure): APE per case, median and maximum APE
overall, per kind, per source file and per metric, and the JSON report document."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class CaseResult:
    """One row of the report: predicted vs measured in the metric's canonical unit, or the
    error that stopped the prediction."""

    id: str
    source: str  # case file stem
    kind: str
    metric: str
    unit: str  # canonical unit of predicted / measured
    measured: float
    predicted: float | None
    ape: float | None
    status: Literal["ok", "error"]
    error: str | None = None
    measured_as_printed: str = ""
    warnings: list[str] = field(default_factory=list)
    assumptions: int = 0
    model: str | None = None
    device: str | None = None
    num_gpus: int | None = None
    fits: bool | None = None
    calibration: str | None = None
    citation: str = ""


def _stats(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Count, errors, median and max APE and the worst case of ``results``."""
    ok = [r for r in results if r.status == "ok" and r.ape is not None]
    apes = [r.ape for r in ok]
    worst = max(ok, key=lambda r: r.ape).id if ok else None
    return {"count": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "median_ape": statistics.median(apes) if apes else None,
            "max_ape": max(apes) if apes else None, "worst_case": worst}


def summarize(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Median and maximum APE overall, per kind, per source file and per metric (cases that
    errored are counted but carry no APE)."""

    def grouped(key: str) -> dict[str, Any]:
        keys = sorted({getattr(r, key) for r in results})
        return {k: _stats([r for r in results if getattr(r, key) == k]) for k in keys}

    return {"overall": _stats(results), "by_kind": grouped("kind"),
            "by_source": grouped("source"), "by_metric": grouped("metric")}


def build_report(results: Sequence[CaseResult]) -> dict[str, Any]:
    """The JSON document of ``perfmodel validate --json`` and validation/report.json."""
    from .. import __version__

    summary = summarize(results)
    overall = summary["overall"]
    return {
        "perfmodel_version": __version__,
        "cases": [asdict(r) for r in results],
        "median_ape": overall["median_ape"],
        "max_ape": overall["max_ape"],
        "count": overall["count"],
        "errors": overall["errors"],
        **{k: v for k, v in summary.items() if k != "overall"},
        "note": "APE = |predicted - measured| / measured (fractions); median/max over cases "
                "that ran. Predictions use each device's shipped calibration profile; no "
                "constant is fitted to these cases.",
    }
