"""Plain-text building blocks for terminal output: aligned tables, seconds, GiB, percentages. Every text
renderer (``report``, ``serving.report``, the CLI commands) formats numbers with these."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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


def slo_summary(statuses: Mapping[str, str]) -> str:
    """One line over a prediction's SLO checks, each SLO's status as ``serving.report.
    slo_status`` gives it ("MISSED", "met, may miss (band)", "met"): every missed SLO first,
    then every one that may miss (its 80 % band's upper end above the bound): "missed
    ttft_p90_s, e2e_p90_s; may miss tpot_p90_s". "met" when every SLO is met across its
    band, "" with no SLO."""
    missed = [k for k, v in statuses.items() if v == "MISSED"]
    maybe = [k for k, v in statuses.items() if v.startswith("met, may miss")]
    parts = ([f"missed {', '.join(missed)}"] if missed else []) + (
        [f"may miss {', '.join(maybe)} (80 % band above the bound)"] if maybe else [])
    return "; ".join(parts) or ("met" if statuses else "")


def seconds(x: float) -> str:
    if x >= 1:
        return f"{x:.3f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3f} ms"
    return f"{x * 1e6:.1f} us"


def short_seconds(x: float) -> str:
    """A time in running text, 3 significant digits in s, ms or us (``sig3``): "2.15 s",
    "34.8 ms", "51 ms" (a bound computed as SLO / band, 0.0347998 s, reads 34.8 ms)."""
    for unit, scale in (("s", 1.0), ("ms", 1e3)):
        if abs(x) * scale >= 0.9995:  # what rounds to 1 at 3 digits reads 1 ms, not 1e+03 us
            return f"{sig3(x * scale)} {unit}"
    return f"{sig3(x * 1e6)} us"


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
