"""Add the linear-attention curves (roofline.LINEAR_KINDS: ``prefill_gdn``, ``decode_gdn``,
``prefill_kda``, ``decode_kda``, ``prefill_ssd``) to the NVIDIA reference profiles, fitted from
aiconfigurator's measured linear-attention kernel tables (``converters_linear``,
``fit.linear_attention``) on the profile as it stands: the rest of each profile is kept as it
is (its other curves, fixed times, fit errors and uncertainty), the curves of these names, their
``attention_overhead_s``, fit errors and uncertainty are replaced. All profiles are written or
none (``atomic.atomic_paths``).

    python -m perfmodel.calibrate.linear_attention_refit [--data DIR] [--calibration DIR]
        [--device ID ...] [--dry-run]

``--data``: the aiconfigurator ``systems/data`` folder (default: the project's copy,
calibration/sources/measured/aiconfigurator/systems/data); per system it reads
``linear_attention/<framework>/<version>/gdn_perf.parquet`` and ``mamba2_perf.parquet``
and ``kda/<framework>/<version>/kda_perf.parquet`` (every framework and version; the fit keeps
the fastest backend per curve, ``fit.attention.fastest_backend``). ``--calibration``: the
folder of ``<device>.reference.json`` (default: calibration/). ``--dry-run``: print the
held-out errors, write nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..atomic import atomic_paths
from ..paths import data_dir
from ..profile import CalibrationProfile
from ..specs import registry
from .converters_linear import aic_linear_attention
from .fit.linear_attention import fit_linear_attention
from .reference import dumps, sources_dir

#: reference profile id -> aiconfigurator system folder (the NVIDIA systems with tables)
SYSTEMS = {"h100-sxm5-80gb": "h100_sxm", "h200-sxm-141gb": "h200_sxm", "b200": "b200_sxm",
           "b300": "b300_sxm", "gb200": "gb200", "gb300": "gb300"}
TABLES = ("linear_attention/*/*/gdn_perf.parquet", "linear_attention/*/*/mamba2_perf.parquet",
          "kda/*/*/kda_perf.parquet")
NOTE = ("linear attention (calibrate.linear_attention_refit): prefill_gdn / decode_gdn / "
        "prefill_kda / decode_kda / prefill_ssd are the measured core kernels of aiconfigurator's "
        "linear-attention tables (gdn_perf, kda_perf, mamba2_perf: chunked prefill and recurrent "
        "decode, conv1d rows left out; converters_linear), the fastest backend per curve, over "
        "the FLOPs and bytes the core charges (ops.linear_attention_ops / mamba_ops), prefill at "
        "(sequences x heads, q_len); roofline.LINEAR_KINDS.")


def records_for(system: str, root: Path) -> tuple[list[dict], list[str]]:
    """The records of one system's linear-attention tables and the files they came from."""
    recs, files = [], []
    for pattern in TABLES:
        for f in sorted((root / system).glob(pattern)):
            rows = aic_linear_attention(f)
            if rows:
                recs += rows
                files.append(str(f))
    return recs, files


def refit(device_id: str, profile_path: Path, root: Path) -> tuple[dict, list, list[str]]:
    """(the profile JSON with the curves, their fit errors, the tables read)."""
    recs, files = records_for(SYSTEMS[device_id], root)
    data = json.loads(profile_path.read_text())
    if not recs:
        return data, [], files
    base = registry.load_profile(profile_path)
    prof, errs, unc = fit_linear_attention(recs, registry.get_device(device_id), base)
    names = {e.table for e in errs} | {f"attention.{k}" for k in prof.attention
                                       if k not in base.attention}
    keys = sorted(n.split(".", 1)[1] for n in names)  # a stable order, run after run
    fitted = prof.model_dump(mode="json", exclude_none=True)
    data["attention"] = {**data.get("attention", {}),
                         **{k: fitted["attention"][k] for k in keys}}
    over = dict(data.get("attention_overhead_s", {}))  # a refit keeps each key's place
    for k in keys:
        if k in fitted["attention_overhead_s"]:
            over[k] = fitted["attention_overhead_s"][k]
        else:
            over.pop(k, None)
    data["attention_overhead_s"] = over
    kept = [e for e in data.get("fit_errors", []) if e["table"] not in names]
    last = [e for e in kept if e["table"] in QUANTIZE_TABLES]  # with_quantize_rates' own, last
    data["fit_errors"] = [e for e in kept if e["table"] not in QUANTIZE_TABLES] + \
        [e.model_dump(mode="json", exclude_none=True) for e in errs] + last
    data["uncertainty"] = {**{k: v for k, v in data.get("uncertainty", {}).items()
                              if k not in names}, **unc}
    data["notes"] = _with_note(data.get("notes", ""))
    CalibrationProfile.model_validate({k: v for k, v in data.items()
                                       if k != "moe_curves_file"})  # still a valid profile
    return data, errs, files


#: the held-out tables reference.with_quantize_rates appends last (converters.fp8_quantize_rates)
QUANTIZE_TABLES = frozenset(f"elementwise.{k}" for k in ("cast", "fp8_quant", "fp8_amax"))


def _with_note(notes: str) -> str:
    """``notes`` with this refit's sentence once, and the quantise-rate sentence last, where
    ``reference.with_quantize_rates`` puts it (a rebuild strips it from the end and re-adds it;
    sentences spliced in after it, e.g. the MLA curves', move before it)."""
    from .reference import QUANTIZE_NOTES

    for sentence in (NOTE, QUANTIZE_NOTES):
        if sentence:
            notes = notes.replace(" " + sentence, "").replace(sentence, "")
    return " ".join(x for x in (notes, NOTE, QUANTIZE_NOTES) if x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perfmodel.calibrate.linear_attention_refit",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=sources_dir() / "aiconfigurator" / "systems"
                    / "data")
    ap.add_argument("--calibration", type=Path, default=data_dir("calibration"))
    ap.add_argument("--device", action="append", choices=sorted(SYSTEMS))
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    out: dict[Path, dict] = {}
    for dev in args.device or sorted(SYSTEMS):
        path = args.calibration / f"{dev}.reference.json"
        data, errs, files = refit(dev, path, args.data)
        print(f"{dev}: {len(files)} tables" + ("" if files else f" (none under {args.data})"))
        for e in errs:
            print(f"  {e.table:26s} n_fit {e.n_fit:5d} n_test {e.n_test:5d} "
                  f"median APE {e.median_ape:.2%} p90 APE {e.p90_ape:.2%}")
        if errs:
            out[path] = data
    if args.dry_run or not out:
        return 0
    with atomic_paths(*out) as tmps:
        for tmp, data in zip(tmps, out.values(), strict=True):
            Path(tmp).write_text(dumps(data) + "\n")
    print("wrote " + ", ".join(str(p) for p in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
