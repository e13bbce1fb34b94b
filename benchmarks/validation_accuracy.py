"""Accuracy benchmark: predict every published case in validation/ and print the median and
maximum absolute percentage error per kind, per source and per metric.

A figure to track, not a pass/fail test: no constant is ever fitted to these cases (DESIGN.md,
"Validation, honestly"). Run from the repository root:

    PYTHONPATH=. python benchmarks/validation_accuracy.py [--kind training] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

from perfmodel.report import table
from perfmodel.validate import validate_published, write_json_atomic


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["training", "inference", "all"], default="all")
    parser.add_argument("--json", help="also write the full report to this file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    report = validate_published(kind=args.kind)
    elapsed = time.perf_counter() - start

    for title, groups in (("kind", report["by_kind"]), ("source", report["by_source"]),
                          ("metric", report["by_metric"])):
        rows = [(k, v["ok"], v["errors"], _pct(v["median_ape"]), _pct(v["max_ape"]))
                for k, v in groups.items()]
        print(table(rows, header=(title, "ran", "errors", "median APE", "max APE")))
        print()
    print(f"all: {report['count']} cases, {report['errors']} errors, median APE "
          f"{_pct(report['median_ape'])}, max APE {_pct(report['max_ape'])} "
          f"({elapsed:.1f} s)")
    if args.json:
        write_json_atomic(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
