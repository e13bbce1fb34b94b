"""Accuracy benchmark of the calibration fit: rebuild the reference profiles from the tables
copied under calibration/sources/measured/ and print the held-out error of every table.

Each table is fitted on a random 70 % of its points and the other 30 % are predicted through
the core's own time formulas (perfmodel.calibrate.fit); the shipped curves are refitted on
all points. Tables kept out of the shipped profiles (REFERENCES[...].tables with ship=False)
are fitted and reported separately, with the reason. A figure to track, not a pass/fail test.

    PYTHONPATH=. python benchmarks/calibration_fit.py [--devices h100-sxm5-80gb ...]
        [--write] [--report DIR] [--seed 0]

``--write`` also writes calibration/<device>.reference.json (what `perfmodel calibrate
--reference DEVICE` does); ``--report DIR`` writes one PNG per device.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from perfmodel.calibrate import reference as R
from perfmodel.calibrate.fit import fit_profile
from perfmodel.paths import data_dir
from perfmodel.specs import registry


def _rows(fit_errors) -> list[str]:
    return [f"  {fe.table:38s} {fe.n_fit:7d} {fe.n_test:7d} {fe.median_ape:10.1%} "
            f"{fe.p90_ape:8.1%}" for fe in fit_errors]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="*", default=list(R.REFERENCES))
    parser.add_argument("--write", action="store_true", help="write the reference profiles")
    parser.add_argument("--report", help="folder for one PNG report per device")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    header = f"  {'table':38s} {'n_fit':>7s} {'n_test':>7s} {'median APE':>10s} {'p90 APE':>8s}"
    for device_id in args.devices:
        start = time.perf_counter()
        result = R.fit_reference(device_id, seed=args.seed)
        profile = result.profile
        print(f"{device_id}  ({time.perf_counter() - start:.0f} s, "
              f"kernel_overhead {profile.kernel_overhead_s * 1e6:.2f} us, attention overhead "
              + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in
                          profile.attention_overhead_s.items()) + ")")
        print(header)
        print("\n".join(_rows(profile.fit_errors)))
        gemm = [fe for fe in profile.fit_errors if fe.table.startswith("gemm.")]
        nccl = [fe for fe in profile.fit_errors if fe.table.startswith("collective.")]
        for name, group in (("GEMM", gemm), ("collectives", nccl)):
            if group:
                worst = max(group, key=lambda fe: fe.p90_ape)
                print(f"  {name}: median of medians "
                      f"{sorted(fe.median_ape for fe in group)[len(group) // 2]:.1%}, worst p90 "
                      f"{worst.p90_ape:.1%} ({worst.table})")
        held_back = [t for t in R.REFERENCES[device_id].tables if not t.ship]
        if held_back:
            records = [r for r in R.reference_records(device_id) if r["bench"] == "collective"]
            records += R.reference_records(device_id, shipped=False)
            extra = fit_profile(records, profile_id=f"{device_id}.unshipped", kind="reference",
                                device=registry.get_device(device_id), sources=[],
                                seed=args.seed)
            shipped = {fe.table for fe in profile.fit_errors}
            print("  not shipped: " + held_back[0].why)
            print("\n".join(_rows([fe for fe in extra.fit_errors if fe.table not in shipped])))
        if args.write:
            out = data_dir("calibration") / f"{device_id}.reference.json"
            R.write_profile(profile, out)
            print(f"  wrote {out}")
        if args.report:
            from perfmodel.calibrate.report import write_report

            path = Path(args.report) / f"{device_id}.reference.png"
            write_report(R.reference_records(device_id), profile, path)
            print(f"  wrote {path}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
