"""Plain-text building blocks for terminal output: aligned tables, seconds, GiB, percentages. Every text
renderer (``report``, ``serving.report``, the CLI commands) formats numbers with these."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

GIB = 2**30


def table(rows: Iterable[Sequence], header: Sequence[str] | None = None) -> str:
    """Text columns: the first (names) left-aligned, values right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    if header:
        rows.insert(0, [str(h) for h in header])
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]

    def fmt(r: list[str]) -> str:
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)]
        return "  ".join(cells).rstrip()

    lines = [fmt(r) for r in rows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def sig3(x: float) -> str:
    """The planners' number style: 3 significant digits below 1,000, whole numbers with
    thousands separators above (1.44, 35.4, 8,192)."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def percent(x: float | None) -> str:
    """A utilisation as a percentage; '-' when the prediction leaves it out (see warnings)."""
    return "-" if x is None else f"{100 * x:.1f}%"


def peak(x: float | None) -> str:
    """A device's peak TFLOP/s for one dtype; '-' for a null ``peak_tflops`` entry: no tensor
    cores for that dtype (T4 and V100 bf16, A100 fp8) or no sourced figure (A10G; RTX 6000
    Ada fp8), as the device file's notes say. Never a 0 or another dtype's figure."""
    return "-" if x is None else f"{x:g}"


def seconds(x: float) -> str:
    if x >= 1:
        return f"{x:.3f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3f} ms"
    return f"{x * 1e6:.1f} us"


def gib(x: float) -> str:
    return f"{x / GIB:.2f} GiB"


def joules(x: float) -> str:
    """Energy in J, kJ, MJ or GJ."""
    for unit, scale in (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3f} {unit}"
    return f"{x:.3g} J"


def with_bands(rows: list[tuple], ranges: dict | None, banded: dict) -> list[tuple]:
    """``rows`` (label, value) with a third cell "(80 % range lo - hi)" where ``banded`` maps
    the label to (field of ``ranges``, formatter) and the prediction has that band."""
    out = []
    for row in rows:
        field, fmt = banded.get(row[0], (None, None))
        band = (ranges or {}).get(field) if field else None
        out.append((*row, f"(80 % range {fmt(band[0])} - {fmt(band[1])})") if band else row)
    return out
