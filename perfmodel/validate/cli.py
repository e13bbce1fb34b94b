"""``perfmodel validate``: published cases (table, JSON, plot, report file), or with
``--measure`` the on-machine end-to-end check (``measured``)."""

from __future__ import annotations

import json
import sys

from ..errors import PerfModelError
from .cases import validation_root
from .output import plot_report, render, write_json_atomic
from .run import validate_published


def run_cli(args) -> int:
    """``perfmodel validate [--json] [--plot FILE] [--kind K] [--case TEXT] [--write]
    [--write-bands] [--band-coverage]``;
    ``--measure cpu|cuda`` hands over to the on-machine end-to-end check instead."""
    if getattr(args, "measure", None):
        from .measured import run_cli as measure_cli

        return measure_cli(args)
    for flag in ("write_bands", "band_coverage"):
        if getattr(args, flag, False) and (
                (getattr(args, "kind", "all") or "all") != "all" or getattr(args, "case", None)):
            raise PerfModelError(f"--{flag.replace('_', '-')} builds the bands from every "
                                 "case: drop --kind and --case")
    if getattr(args, "calibration", None):
        raise PerfModelError("--calibration is used with --measure; published cases are "
                             "predicted with each device's shipped calibration profile")
    bands = getattr(args, "write_bands", False) or getattr(args, "band_coverage", False)
    predicted: dict | None = {} if bands else None  # the run's predictions, for the bands
    report = validate_published(kind=getattr(args, "kind", "all") or "all",
                                match=getattr(args, "case", None), keep=predicted)
    if getattr(args, "band_coverage", False):  # the check's tables instead of the report's
        _band_coverage(args, report, predicted)
    elif getattr(args, "json", False):
        print(json.dumps(report, indent=2, default=float))
    else:
        print(render(report))
    if getattr(args, "plot", None):
        out = plot_report(report, args.plot)
        print(f"plot written to {out}", file=sys.stderr)
    if getattr(args, "write", False):
        out = write_json_atomic(report, validation_root() / "report.json")
        print(f"report written to {out}", file=sys.stderr)
    if getattr(args, "write_bands", False):
        _write_bands(args, report, predicted)
    return 0


def _write_bands(args, report, predicted=None) -> None:
    """validation/error_bands.json from every case, with the leave-one-source-out check."""
    from ..uncertainty import bands_path
    from .bands import bands_document

    doc = bands_document(report, predicted=predicted)
    out = write_json_atomic(doc, bands_path())
    cov = doc["leave_one_source_out"]["overall"]
    print(f"error bands written to {out} ({doc['cases']} cases, {len(doc['groups'])} groups); "
          f"leave-one-source-out coverage of the {100 * doc['level']:.0f} % band: "
          f"{100 * cov['combined']:.1f} % of the {cov['stated']} cases with a band "
          f"({cov['no_band']} without one); details: perfmodel validate --band-coverage",
          file=sys.stderr)


def _band_coverage(args, report, predicted=None) -> None:
    """The cross-validated check of the 80 % bands (docs/uncertainty.md), as Markdown tables
    (or JSON with --json); writes nothing."""
    from .bands import banded_rows, coverage_document, render_coverage

    doc = coverage_document(banded_rows(report, predicted=predicted))
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    else:
        print(render_coverage(doc), end="")
