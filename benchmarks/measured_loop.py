"""The measured end-to-end loop as a benchmark figure: real torch workloads on this machine
vs perfmodel's predictions from this machine's calibration (target on this CPU: median APE
<= 20 %).

Run: python benchmarks/measured_loop.py [--device cpu|cuda] [--calibration FILE]
(without --calibration, the device's measured profile is used, calibrated first if missing)
"""

from __future__ import annotations

import argparse
import time

from perfmodel.validate.measured import render, resolve_profile, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--calibration")
    args = parser.parse_args()
    t0 = time.perf_counter()
    profile = resolve_profile(argparse.Namespace(measure=args.device,
                                                 calibration=args.calibration))
    result = run(args.device, profile)
    print(render(result))
    print(f"({time.perf_counter() - t0:.1f} s)")
