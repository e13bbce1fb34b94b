"""The dashboard's calls into perfmodel beyond ``pm.predict``, each cached and each the same
call its CLI command makes: ``perfmodel search`` (plan search), ``perfmodel plan-serving``
(capacity), ``perfmodel validate`` (published cases), the calibration report's tables, and
the serving simulation's per-request latencies (for CDFs).

Kept in one module so that the pages stay thin and a change of these entry points is one
edit here.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from common import pm


# --------------------------------------------------------------------------- frameworks
def framework_stages(framework: str | None) -> dict[int, str]:
    """The ZeRO stages a training framework offers, each with its own switch
    (frameworks/<id>.yaml capabilities; None: megatron-core, the default)."""
    from perfmodel.frameworks import framework_spec

    stages = framework_spec(framework or "megatron-core").capabilities.zero_stages
    return {z: stage.setting for z, stage in sorted(stages.items())}


# --------------------------------------------------------------------------- plan search
@st.cache_data(show_spinner=False, max_entries=64)
def search_plans(scenario: dict, top: int) -> dict:
    """`perfmodel search`: the best ``top`` training plans for the scenario's model, system
    and workload, and how many plans were evaluated / valid / fitting."""
    from perfmodel.resolve import resolve_profile
    from perfmodel.search import search
    from perfmodel.specs.assemble import resolve_system

    sc = pm.as_scenario(scenario)
    if sc.kind != "training":
        raise pm.SpecError("plan search ranks training plans: give a training scenario")
    system = resolve_system(sc.system)
    result = search(sc, system, resolve_profile(sc, None), top=top)
    # plans carry ``ranges`` / ``range_basis`` (80 % bands, as the CLI's table); with no plan
    # the explanation says why nothing fits (``explanation["message"]``, the CLI's line)
    return {"plans": result.plans, "evaluated": result.evaluated, "valid": result.valid,
            "fitting": result.fitting, "explanation": getattr(result, "explanation", None),
            "headroom": getattr(result, "headroom", None),
            "warnings": list(getattr(result, "warnings", []))}


def plan_training_api():
    """perfmodel's training capacity planner (`perfmodel plan-training`), or None when this
    perfmodel has none (the page then hides the "train N tokens" planner)."""
    fn = getattr(pm, "plan_training", None)  # the public API's, when exported
    if callable(fn):
        return fn
    try:
        from perfmodel.planning.training import plan_training
    except ImportError:
        return None
    return plan_training


@st.cache_data(show_spinner=False, max_entries=16)
def plan_training(model: str, tokens: str, devices: tuple[str, ...], max_gpus: int,
                  seq_len: int, batch_tokens: int, precision: str, days: float | None,
                  budget_usd: float | None, framework: str | None = None) -> dict:
    """`perfmodel plan-training`: per device and GPU count the fastest fitting plan, its days
    (with its 80 % band), GPU-hours, dollars, energy (and its basis), MFU (6ND) and Megatron
    TFLOP/s to train ``tokens`` in ``framework`` (None: the planner's default), the Pareto
    set and the answer."""
    run = plan_training_api()
    extra = {"framework": framework} if framework else {}
    result = run(model=model, tokens=tokens, devices=list(devices) or None, max_gpus=max_gpus,
                 seq_len=seq_len, global_batch_tokens=batch_tokens, precision=precision,
                 days=days, budget_usd=budget_usd, **extra)
    return result.to_dict()


@st.cache_data(show_spinner=False)
def gpu_prices() -> dict[str, dict]:
    """USD per GPU-hour per device, with the price's basis (hardware_specs/prices.yaml)."""
    from perfmodel.serving.economics import load_prices

    table = load_prices()
    out = {}
    for device, offer in table.devices.items():
        out[device] = {"usd_per_gpu_hour": float(offer.usd_per_gpu_hour),
                       "basis": f"{offer.provider}, {offer.offer} ({offer.date})"}
    return out


# --------------------------------------------------------------------------- capacity
@st.cache_data(show_spinner=False, max_entries=32)
def plan_serving(model: str, rate: float, prompt_len: int, output_len: int, slo: dict,
                 devices: tuple[str, ...], tps: tuple[int, ...], scheduler: str,
                 num_requests: int, max_gpus: int, engine: str | None = None,
                 max_num_seqs: str = "") -> dict:
    """`perfmodel plan-serving`: the cheapest device / TP / replica count meeting the SLOs,
    the chosen max_num_seqs and why, 80 % bands, and the throughput-vs-interactivity frontier.

    The inputs go through the CLI's own ``plan_inputs`` (the flags' defaults, then these
    values as the flags would give them), so the page and the command answer the same
    question; ``max_num_seqs`` is the --max-num-seqs text ("" = the engine's default caps)."""
    import argparse

    from perfmodel.serving.capacity import plan_serving as run
    from perfmodel.serving.cli import add_arguments, plan_inputs

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    args.model, args.rate, args.scheduler = model, rate, scheduler
    args.prompt_len, args.output_len = str(prompt_len), str(output_len)
    args.ttft_p90, args.tpot_p90 = slo.get("ttft_p90_s"), slo.get("tpot_p90_s")
    args.devices = ",".join(devices) or None
    args.tp = ",".join(str(t) for t in tps) or None
    args.num_requests, args.max_gpus = num_requests, max_gpus
    args.engine = engine or None
    args.max_num_seqs = max_num_seqs.strip() or None
    return run(plan_inputs(args)).to_dict()


# --------------------------------------------------------------------------- serving
def save_upload(data: bytes, suffix: str = ".csv") -> str:
    """An uploaded file saved under the temp dir by its content hash (stable cache keys)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "perfmodel-dashboard"
    folder.mkdir(exist_ok=True)
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


@st.cache_data(show_spinner=False, max_entries=32)
def request_latencies(scenario: dict) -> dict[str, list[float]] | None:
    """Per-request TTFT / TPOT / E2E (s) of the serving simulation ``pm.predict`` runs (same
    seed, same workload): the data behind the latency CDFs. None if the simulator's
    entry points have moved (the page then plots the percentiles only)."""
    try:
        from perfmodel.resolve import resolve
        from perfmodel.serving.metrics import latencies
        from perfmodel.serving.predict import deployment_for, serving_inputs
    except ImportError:
        return None
    rs = resolve(scenario, None)
    inf, wl = serving_inputs(rs.scenario)
    dep = deployment_for(rs.scenario, rs.system, rs.profile, inf, wl)
    lat = latencies(dep.simulate(wl).reqs)
    return {k: [float(x) for x in v if np.isfinite(x)] for k, v in lat.items()}


# --------------------------------------------------------------------------- validation
@st.cache_resource(show_spinner=False)
def loaded_cases() -> dict:
    """Every published case in validation/, by id (perfmodel.validate.load_cases)."""
    from perfmodel.validate import load_cases

    return {lc.case.id: lc for lc in load_cases(None, "all", None)}


@st.cache_data(show_spinner=False)
def validation_rows() -> tuple[list[dict], dict]:
    """One row per case in validation/: the last report's result (validation/report.json,
    written by `perfmodel validate`), or an unpredicted row for a case added since; and what
    the report says about itself. Predicting all cases takes tens of seconds, so the page
    starts from the report and predicts on request (``predict_case``)."""
    from perfmodel.paths import data_dir
    from perfmodel.validate import CANONICAL_UNIT, METRIC_DIMENSION

    path = data_dir("validation") / "report.json"
    report = json.loads(path.read_text()) if path.exists() else {"cases": []}
    by_id = {c["id"]: c for c in report.get("cases", [])}
    rows = []
    for case_id, lc in loaded_cases().items():
        c = lc.case
        if case_id in by_id:
            rows.append({**by_id[case_id], "origin": "report"})
            continue
        sc = c.scenario if isinstance(c.scenario, dict) else {}
        model = sc.get("model")
        rows.append({"id": c.id, "source": lc.group, "kind": c.kind, "metric": c.metric,
                     "unit": CANONICAL_UNIT[METRIC_DIMENSION[c.metric]],
                     "measured": c.measured.canonical, "predicted": None, "ape": None,
                     "status": "not predicted", "error": None,
                     "measured_as_printed": f"{c.measured.value:g} {c.measured.unit}",
                     "warnings": [], "model": model if isinstance(model, str) else None,
                     "device": sc.get("system", {}).get("device"),
                     "num_gpus": sc.get("system", {}).get("num_gpus"), "origin": "new"})
    meta = {"note": report.get("note", ""), "version": report.get("perfmodel_version"),
            "count": len(by_id), "path": str(path)}
    return rows, meta


@st.cache_data(show_spinner=False, max_entries=2048)
def predict_case(case_id: str) -> dict:
    """One case predicted now (`perfmodel validate`'s run_case): its report row."""
    from dataclasses import asdict

    from perfmodel.validate import run_case

    return {**asdict(run_case(loaded_cases()[case_id])), "origin": "now"}


@st.cache_data(show_spinner=False)
def validation_cases() -> dict[str, dict]:
    """Per case id: its source (title, url, location), assumptions and notes."""
    out = {}
    for lc in loaded_cases().values():
        c = lc.case
        sc = c.scenario if isinstance(c.scenario, dict) else {}
        stack = (_stack_name(sc.get("training", {}).get("framework"), "megatron-core")
                 if c.kind == "training" else _stack_name(sc.get("engine"), "generic"))
        out[c.id] = {"source": c.source.model_dump(exclude_none=True),
                     "assumptions": list(c.assumptions),
                     "notes": getattr(c, "notes", None) or "", "stack": stack}
    return out


def _stack_name(value: Any, default: str) -> str:
    """A case's framework / engine as written (a name or {name: ...}); unset: the default."""
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value else f"{default} (default)"


# --------------------------------------------------------------------------- calibration
def _calibration_dir() -> Path:
    from perfmodel.paths import data_dir

    return data_dir("calibration")


def profile_files() -> dict[str, Path]:
    """Shipped and user profiles in calibration/ (not the defaults, nor the measured MoE curves
    a profile keeps beside it, ``*.moe_curves.json``), by file stem."""
    out = {}
    for path in sorted(_calibration_dir().glob("*.json")):
        if path.stem in ("default", "theoretical-peak") or path.name.endswith(".moe_curves.json"):
            continue
        out[path.stem] = path
    return out


@st.cache_data(show_spinner=False)
def profile_summary() -> list[dict]:
    """Every device and the profile its predictions use (measured > reference > default)."""
    rows = []
    files = {}
    for stem, path in profile_files().items():
        try:
            prof = pm.load_profile(path)
        except pm.PerfModelError:
            continue
        files.setdefault(prof.device, []).append((prof.kind, stem))
    devices = pm.devices()
    names = {d: spec.name for d, spec in devices.items()}
    names |= {d: "(not in hardware_specs: a measured host)" for d in files
              if d and d not in devices}
    for device_id, name in sorted(names.items()):
        mine = files.get(device_id, [])
        kinds = sorted({k for k, _ in mine})
        rows.append({"device": device_id, "name": name,
                     "profiles": ", ".join(s for _, s in mine) or "—",
                     "measured": "measured" in kinds, "reference": "reference" in kinds,
                     "uses": "measured" if "measured" in kinds else
                     "reference" if "reference" in kinds else "default (uncalibrated)"})
    return rows


def reference_devices() -> list[str]:
    from perfmodel.calibrate.reference import REFERENCES

    return list(REFERENCES)


@st.cache_resource(show_spinner=False, max_entries=4)
def reference_tables(device: str, profile_path: str) -> list:
    """The fit tables of a device's reference records, with the profile they are fitted
    into (calibration report's ``build_tables``); loading the records takes a few seconds."""
    from perfmodel.calibrate.reference import reference_records
    from perfmodel.calibrate.report import build_tables

    profile = pm.load_profile(profile_path)
    return build_tables(reference_records(device), profile)


def load_records(data: bytes) -> list[dict]:
    """Raw calibration records (JSON Lines, one record per line, as `perfmodel calibrate`
    writes them); a bad line is a one-line ValueError naming it."""
    out = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"records line {n} is not JSON: {err.msg}") from None
        if isinstance(rec, dict):
            out.append(rec)
    return out


def own_records(profile_path: str) -> list[dict] | None:
    """The raw records `perfmodel calibrate` kept beside a profile it measured
    (``<profile>.raw.jsonl``), or None."""
    from perfmodel.calibrate.raw import raw_path

    raw = raw_path(profile_path)
    if not raw.exists():
        return None
    try:
        return load_records(raw.read_bytes())
    except ValueError:
        return None


def records_tables(records: list[dict], profile) -> list:
    from perfmodel.calibrate.report import build_tables

    return build_tables(records, profile)


def table_points(table, profile, limit: int = 1500) -> dict[str, Any]:
    """Measured vs fitted of one table: the x coordinate the report plots (M, bytes, sequence
    length), the measured efficiency (roofline bound / measured time) and the fitted one
    (bound / the core's time with the profile), thinned evenly to ``limit`` points."""
    from perfmodel.calibrate import fit as F

    n = len(table)
    idx = np.arange(n)
    if n > limit:
        idx = np.unique(np.linspace(0, n - 1, limit).round().astype(int))
    bound = table.times(F.unit_profile(profile), idx)
    measured = table.measured[idx]
    fitted = table.times(profile, idx)
    axis = 0
    if table.kind == "attention" and table.name.endswith("decode"):
        axis = 1  # kv_len
    x = table.coords[idx, axis] if table.coords.size else np.arange(len(idx), dtype=float)
    if table.kind == "collective":
        x = np.array([float(table.records[i]["params"]["bytes"]) for i in idx])
    return {"x": x.tolist(), "x_label": table.axes[axis] if table.axes else "point",
            "measured_eff": (bound / measured).tolist(), "fitted_eff": (bound / fitted).tolist(),
            "measured_s": measured.tolist(), "fitted_s": fitted.tolist(),
            "ape": float(np.median(np.abs(fitted / measured - 1))) if n else math.nan,
            "n": n}


# --------------------------------------------------------------------------- engines, clients
@st.cache_data(show_spinner=False)
def engine_versions(engine: str, variant: str | None = None) -> list[dict]:
    """The version families of ``engine`` (``pm.engine_version_families``), each as its label,
    version ranges [(since, until, variant)] and whether a scenario naming no version (and
    ``variant``) gets it; [] when the engine has no families."""
    return pm.engine_version_families(engine, variant)


def version_starts(engine: str) -> dict[str, str]:
    """Per first version of a family's range (sorted as ``pm.engine_version_sort_key``
    sorts releases), which families start there: the engine version picker's options."""
    starts: dict[str, list[str]] = {}
    for fam in engine_versions(engine):
        for since, _until, variant in fam["ranges"]:
            starts.setdefault(since, []).append(
                fam["label"] + (f" ({variant})" if variant else ""))
    return {v: ", ".join(starts[v]) for v in sorted(starts, key=pm.engine_version_sort_key)}


def engine_variants(engine: str) -> list[str]:
    """The variants an engine's version ranges name (vLLM: v0 / v1 engine core)."""
    return sorted({v for fam in engine_versions(engine) for _s, _u, v in fam["ranges"] if v})


@st.cache_data(show_spinner=False)
def benchmark_clients() -> dict[str, dict]:
    """The closed-loop benchmark clients of clients/*.yaml (``pm.benchmark_clients``),
    the default first: name, whether it can measure in time windows, its ITL definition."""
    out = {}
    for cid, spec in pm.benchmark_clients().items():
        out[cid] = {"name": spec.name, "windows": spec.measurement == "time_windows",
                    "interval_ms": spec.windows.interval_ms if spec.windows else None,
                    "itl": spec.itl}
    return out
