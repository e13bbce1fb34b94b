"""``perfmodel validate``: published cases (table, JSON, plot, report file), or with
``--measure`` the on-machine end-to-end check (``measured``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import PerfModelError
from .cases import validation_root
from .output import plot_report, render, write_json_atomic
from .run import validate_published


def run_cli(args) -> int:
    """``perfmodel validate [--json] [--plot FILE] [--kind K] [--case TEXT] [--calibration
    FILE] [--write] [--write-bands] [--band-coverage]``; ``--calibration FILE`` predicts every
    published case with that profile (e.g. calibration/default.json: how wrong the documented
    default efficiencies are) instead of its own; ``--write-bands`` and ``--band-coverage``
    also predict every case with the default profile (its groups, docs/uncertainty.md);
    ``--measure cpu|cuda`` hands over to the on-machine end-to-end check instead."""
    if getattr(args, "measure", None):
        from .measured import run_cli as measure_cli

        return measure_cli(args)
    for flag in ("write_bands", "band_coverage"):
        if getattr(args, flag, False) and (
                (getattr(args, "kind", "all") or "all") != "all" or getattr(args, "case", None)):
            raise PerfModelError(f"--{flag.replace('_', '-')} builds the bands from every "
                                 "case: drop --kind and --case")
    bands = getattr(args, "write_bands", False) or getattr(args, "band_coverage", False)
    calibration = getattr(args, "calibration", None)
    if calibration and (bands or getattr(args, "write", False)):
        raise PerfModelError(
            "--calibration predicts every published case with one profile; --write, "
            "--write-bands and --band-coverage use each case's own profile (and the default "
            "profile's re-predictions for the uncalibrated groups): drop --calibration")
    if calibration and not Path(calibration).is_file():
        raise PerfModelError(f"--calibration: {calibration} not found (a calibration profile "
                             "JSON, e.g. calibration/default.json)")
    predicted: dict | None = {} if bands else None  # the run's predictions, for the bands
    report = validate_published(kind=getattr(args, "kind", "all") or "all",
                                match=getattr(args, "case", None), keep=predicted,
                                calibration=calibration or None)
    uncalibrated = _default_pass() if bands else None  # the default profile's groups
    if getattr(args, "band_coverage", False):  # the check's tables instead of the report's
        _band_coverage(args, report, predicted, uncalibrated)
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
        _write_bands(args, report, predicted, uncalibrated)
    return 0


def _default_pass():
    """(report, predictions) of every published case of a timed metric predicted again with
    the default profile (calibration/default.json: the default profile's groups, which hold
    times only, ``bands.banded_rows``), said on stderr."""
    from ..specs.registry import default_profile
    from .bands import timed_metrics

    print("predicting every timed case again with the default profile "
          "(calibration/default.json) for the uncalibrated predictions' groups ...",
          file=sys.stderr)
    predicted: dict = {}
    report = validate_published(keep=predicted, calibration=default_profile(),
                                metrics=timed_metrics())
    return report, predicted


def _write_bands(args, report, predicted=None, uncalibrated=None) -> None:
    """validation/error_bands.json from every case, with the leave-one-source-out check
    (``uncalibrated``: the default profile's (report, predictions), ``_default_pass``)."""
    from ..uncertainty import bands_path
    from .bands import bands_document

    d_report, d_predicted = uncalibrated or (None, None)
    doc = bands_document(report, predicted=predicted, default_report=d_report,
                         default_predicted=d_predicted)
    out = write_json_atomic(doc, bands_path())
    cov = doc["leave_one_source_out"]["overall"]
    print(f"error bands written to {out} ({doc['cases']} cases, {len(doc['groups'])} groups); "
          f"leave-one-source-out coverage of the {100 * doc['level']:.0f} % band: "
          f"{100 * cov['combined']:.1f} % of the {cov['stated']} cases with a band "
          f"({cov['no_band']} without one); details: perfmodel validate --band-coverage",
          file=sys.stderr)
    if "default_profile" in doc:
        d = doc["default_profile"]["leave_one_source_out"]["overall"]
        print(f"uncalibrated (default profile) groups: leave-one-source-out coverage "
              f"{100 * (d['combined'] or 0):.1f} % of the {d['stated']} cases with a band, "
              f"median width {d['median_width']}x", file=sys.stderr)


def _band_coverage(args, report, predicted=None, uncalibrated=None) -> None:
    """The cross-validated check of the 80 % bands (docs/uncertainty.md), as Markdown tables
    (or JSON with --json); writes nothing."""
    from .bands import banded_rows, coverage_document, render_coverage

    d_report, d_predicted = uncalibrated or (None, None)
    doc = coverage_document(banded_rows(report, predicted=predicted, default_report=d_report,
                                        default_predicted=d_predicted))
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    else:
        print(render_coverage(doc), end="")
