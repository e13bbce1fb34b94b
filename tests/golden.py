"""Comparing a fresh run with a stored golden copy.

Equal to the last digit is not portable: numpy picks SIMD kernels by CPU (AVX2 / AVX-512
sums, exp, log), and their rounding differs in the last bits between machines, so the same
code gives ~1e-15 relative differences on another CI runner. Floats are therefore compared to
a relative 1e-9 (any modelling change moves a prediction by far more), everything else (keys,
strings, counts, None) exactly.
"""

from __future__ import annotations

import math

REL = 1e-9


def differences(now, stored, path: str = "") -> list[str]:
    """Where ``now`` and ``stored`` differ, as dotted paths (floats within REL are equal)."""
    if isinstance(now, dict) and isinstance(stored, dict):
        if now.keys() != stored.keys():
            return [f"{path}: keys {sorted(set(now) ^ set(stored))}"]
        return [d for k in now for d in differences(now[k], stored[k], f"{path}.{k}")]
    if isinstance(now, list) and isinstance(stored, list):
        if len(now) != len(stored):
            return [f"{path}: length {len(now)} != {len(stored)}"]
        return [d for i, (a, b) in enumerate(zip(now, stored, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    if (isinstance(now, float) and isinstance(stored, (int, float))
            and not isinstance(stored, bool)):
        return [] if math.isclose(now, stored, rel_tol=REL, abs_tol=0.0) else [
            f"{path}: {now!r} != {stored!r}"]
    return [] if now == stored and type(now) is type(stored) else [
        f"{path}: {now!r} != {stored!r}"]
