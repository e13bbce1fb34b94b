"""Reference calibration profiles of A100 / H100 / H200 / B200 and MI300X / MI355X, fitted
from measured tables published upstream (copied, with licenses, under
calibration/sources/measured/).

The tables are converted into records (``converters``; AMD sources: ``converters_amd``) and
fitted by the same code as a measurement on this machine (``fit.fit_profile``). What each device uses, and why a table
is left out, is data in calibration/references.yaml; ``build_reference`` writes
calibration/<device>.reference.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import PerfModelError
from ..paths import data_dir
from ..profile import CalibrationProfile
from ..specs import registry
from ..specs.common import Source
from ..specs.registry import read_yaml
from . import converters as C
from . import converters_amd as CA
from .fit import FitResult, fit_profile

PUBLISHED = "published/group_c_points.json"  # group C points, as the converter reads them


def config_file() -> Path:
    """calibration/references.yaml: per device, the tables, sources and notes it is fitted on."""
    return data_dir("calibration") / "references.yaml"


def sources_dir() -> Path:
    return data_dir("calibration") / "sources" / "measured"


@dataclass(frozen=True)
class Table:
    """One copied table and how to convert it; ``ship=False`` tables are fitted and
    reported by benchmarks/calibration_fit.py but kept out of the shipped profile."""

    path: str  # under calibration/sources/measured/
    convert: Callable[..., list[dict]]
    kwargs: dict = field(default_factory=dict)
    ship: bool = True
    why: str = ""

    def records(self) -> list[dict]:
        return self.convert(sources_dir() / self.path, **self.kwargs)


@dataclass(frozen=True)
class Reference:
    """A device's tables, sources and notes; ``uncertainty``: bands a source states for a
    table with too few points for a held-out test (table -> |log ratio|); ``quantize_rates``:
    the TRT-LLM quantize folder whose fp8 quantise kernels become the profile's
    ``elementwise_rate`` cast / fp8_quant / fp8_amax (``with_quantize_rates``)."""

    tables: list[Table]
    sources: list[Source]
    notes: str
    uncertainty: dict[str, float] = field(default_factory=dict)
    quantize_rates: str | None = None  # TRT-LLM quantize folder under sources_dir()


def converter(name: str) -> Callable[..., list[dict]]:
    """The converter function named ``name`` (``converters``, then ``converters_amd``)."""
    for module in (C, CA):
        fn = getattr(module, name, None)
        if callable(fn) and not name.startswith("_"):
            return fn
    raise PerfModelError(f"calibration/references.yaml: convert: {name!r} is not a converter "
                         "in perfmodel/calibrate/converters.py or converters_amd.py")


def _load() -> tuple[dict[str, Reference], str]:
    """The per-device table lists of references.yaml (converters named by function)."""
    data = read_yaml(config_file())
    refs = {}
    for device, d in data["devices"].items():
        tables = [Table(t["path"], converter(t["convert"]), t.get("kwargs", {}),
                        t.get("ship", True), t.get("why", "")) for t in d["tables"]]
        refs[device] = Reference(tables, [Source(**s) for s in d["sources"]], d["notes"],
                                 d.get("uncertainty", {}), d.get("quantize_rates"))
    return refs, data["common_notes"], data.get("quantize_notes", "")


REFERENCES, COMMON_NOTES, QUANTIZE_NOTES = _load()


def reference_records(device_id: str, shipped: bool = True) -> list[dict]:
    """All records a device's reference profile is fitted on (``shipped=False``: only the
    tables kept out of it)."""
    ref = _reference(device_id)
    out: list[dict] = []
    for table in ref.tables:
        if table.ship == shipped:
            out += table.records()
    return out


def _reference(device_id: str) -> Reference:
    if device_id not in REFERENCES:
        raise PerfModelError(f"--reference {device_id}: no measured reference tables for this "
                             f"device; reference profiles exist for {', '.join(REFERENCES)}")
    return REFERENCES[device_id]


def fit_reference(device_id: str, *, holdout: float = 0.3, seed: int = 0) -> FitResult:
    """Fit a device's reference profile (records, held-out errors and tables)."""
    ref = _reference(device_id)
    device = registry.get_device(device_id)
    records = reference_records(device_id)
    result = fit_profile(records, device, kind="reference", profile_id=f"{device_id}.reference",
                         sources=ref.sources, holdout=holdout, seed=seed,
                         notes=ref.notes + " " + COMMON_NOTES, return_result=True)
    unc = {**result.profile.uncertainty, **ref.uncertainty}
    result.profile = result.profile.model_copy(update={"uncertainty": unc})
    if ref.quantize_rates:
        result.profile = with_quantize_rates(result.profile, device_id, ref.quantize_rates)
    return result


def with_quantize_rates(profile: CalibrationProfile, device_id: str, folder: str
                        ) -> CalibrationProfile:
    """``profile`` with the fp8 quantise kernels of a TRT-LLM quantize ``folder`` (under
    calibration/sources/measured/) as ``elementwise_rate`` cast / fp8_quant / fp8_amax, their
    held-out tables ``elementwise.<kind>`` (fit errors, uncertainty) and references.yaml's
    ``quantize_notes`` (``converters.fp8_quantize_rates``; kept out of ``fit_profile``: on a
    device without bandwidth records elementwise records would also fit its memory curve)."""
    rates, errs, unc = C.fp8_quantize_rates(sources_dir() / folder, device_id, profile)
    return profile.model_copy(update={
        "elementwise_rate": {**profile.elementwise_rate, **rates},
        "fit_errors": [*profile.fit_errors, *errs],
        "uncertainty": {**profile.uncertainty, **unc},
        "notes": f"{profile.notes} {QUANTIZE_NOTES}" if QUANTIZE_NOTES else profile.notes})


def build_reference(device_id: str, out_path: str | Path | None = None, *,
                    holdout: float = 0.3, seed: int = 0) -> CalibrationProfile:
    """Fit and write calibration/<device>.reference.json (or ``out_path``)."""
    profile = fit_reference(device_id, holdout=holdout, seed=seed).profile
    out = Path(out_path) if out_path else data_dir("calibration") / f"{device_id}.reference.json"
    write_profile(profile, out)
    return profile.model_copy(update={"path": str(out)})


def write_profile(profile: CalibrationProfile, path: str | Path) -> None:
    """Write a profile as JSON (lists of numbers on one line), atomically. Its measured MoE
    curves go to a file beside it (``<stem>.moe_curves.json``, ``profile.MoeCurveSet``) that
    the profile names (``moe_curves_file``), read only when a MoE model is timed."""
    from ..profile import MoeCurveSet

    path = Path(path)
    data = profile.model_dump(mode="json", exclude_none=True)
    if profile.moe_curves:
        side = path.with_name(path.name.removesuffix(".json") + ".moe_curves.json")
        curves = MoeCurveSet(curves=profile.moe_curves).model_dump(mode="json")
        write_text_atomic(side, dumps(curves) + "\n")
        named = profile.model_copy(update={"moe_curves": {}, "moe_curves_file": side.name})
        data = named.model_dump(mode="json", exclude_none=True)
        data.pop("moe_curves")
    write_text_atomic(path, dumps(data) + "\n")


def dumps(obj, indent: int = 0) -> str:
    """JSON with nested objects indented and flat lists kept on one line (small, diffable)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in obj):
            return "[" + ",".join(json.dumps(v) for v in obj) + "]"
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def run_reference_cli(args) -> int:
    """``perfmodel calibrate --reference DEVICE [--out PATH] [--report PNG]``."""
    device_id = args.reference
    result = fit_reference(device_id)
    out = Path(args.out) if getattr(args, "out", None) else \
        data_dir("calibration") / f"{device_id}.reference.json"
    write_profile(result.profile, out)
    print(f"wrote {out} ({result.profile.label}, {len(result.profile.sources)} sources)")
    print(f"{'table':40s} {'n_fit':>7s} {'n_test':>7s} {'median APE':>11s} {'p90 APE':>9s}")
    for fe in result.profile.fit_errors:
        print(f"{fe.table:40s} {fe.n_fit:7d} {fe.n_test:7d} {fe.median_ape:11.1%} "
              f"{fe.p90_ape:9.1%}")
    report = getattr(args, "report", None)
    if report:
        from .report import write_report

        write_report(reference_records(device_id), result.profile, report)
        print(f"wrote {report}")
    return 0
