"""Accuracy benchmark of the engine memory rules: every case of
validation/inference/engine_startup.yaml predicted twice, with its engine (engines/*.yaml via
perfmodel.engine_memory) and with the generic engine (perfmodel's engine-neutral rule), and the
median / p90 / max absolute percentage error of each, per metric.

A figure to track, not a pass/fail test; no constant is fitted to these cases. Run from the
repository root:

    PYTHONPATH=. python benchmarks/engine_startup.py
"""

from __future__ import annotations

import numpy as np

from perfmodel.report import table
from perfmodel.validate.cases import load_case_file, validation_root
from perfmodel.validate.run import run_case


def _generic(lc):
    """The case with its scenario's engine replaced by the generic one."""
    scenario = {**lc.case.scenario, "engine": "generic"}
    case = lc.case.model_copy(update={"scenario": scenario})
    return type(lc)(case, lc.file)


def _stats(apes: list[float]) -> tuple[str, str, str]:
    if not apes:
        return "-", "-", "-"
    a = np.asarray(apes)
    return (f"{100 * np.median(a):.1f}%", f"{100 * np.percentile(a, 90):.1f}%",
            f"{100 * a.max():.1f}%")


def main() -> int:
    cases = load_case_file(validation_root() / "inference" / "engine_startup.yaml")
    rows, by_metric = [], {}
    for lc in cases:
        after, before = run_case(lc), run_case(_generic(lc))
        rows.append((lc.case.id, lc.case.metric, f"{lc.case.measured.value:g}",
                     "-" if before.ape is None else f"{100 * before.ape:.1f}%",
                     "-" if after.ape is None else f"{100 * after.ape:.1f}%"))
        for label, row in (("generic", before), ("engine", after)):
            if row.ape is not None:
                by_metric.setdefault((lc.case.metric, label), []).append(row.ape)
                by_metric.setdefault(("all", label), []).append(row.ape)
    print(table(rows, header=("case", "metric", "measured", "APE generic", "APE engine")))
    print()
    summary = []
    for metric in sorted({m for m, _ in by_metric}):
        for label in ("generic", "engine"):
            apes = by_metric.get((metric, label), [])
            summary.append((metric, label, len(apes), *_stats(apes)))
    print(table(summary, header=("metric", "rule", "cases", "median APE", "p90 APE", "max APE")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
