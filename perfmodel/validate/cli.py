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
    """``perfmodel validate [--json] [--plot FILE] [--kind K] [--case TEXT] [--write]``;
    ``--measure cpu|cuda`` hands over to the on-machine end-to-end check instead."""
    if getattr(args, "measure", None):
        from .measured import run_cli as measure_cli

        return measure_cli(args)
    if getattr(args, "calibration", None):
        raise PerfModelError("--calibration is used with --measure; published cases are "
                             "predicted with each device's shipped calibration profile")
    report = validate_published(kind=getattr(args, "kind", "all") or "all",
                                match=getattr(args, "case", None))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, default=float))
    else:
        print(render(report))
    if getattr(args, "plot", None):
        out = plot_report(report, args.plot)
        print(f"plot written to {out}", file=sys.stderr)
    if getattr(args, "write", False):
        out = write_json_atomic(report, validation_root() / "report.json")
        print(f"report written to {out}", file=sys.stderr)
    return 0
