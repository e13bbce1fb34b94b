"""Showing a report: plain-text tables, the predicted-vs-measured plot, the report file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, write_text_atomic
from .cases import KINDS


def _fmt(x: float | None) -> str:
    """A number for a table cell: 4 significant digits, thousands separated, '-' for none."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e5 or ax < 1e-3:
        return f"{x:.3g}"
    if ax >= 100:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def render(report: dict[str, Any]) -> str:
    """Plain-text tables: one row per case, then the aggregates."""
    from ..report import table

    out = []
    for kind in KINDS:
        rows = [r for r in report["cases"] if r["kind"] == kind]
        if not rows:
            continue
        out.append(f"{kind} cases")
        lines = []
        for r in rows:
            if r["status"] == "ok":
                flag = "" if r["fits"] in (None, True) else " (does not fit)"
                lines.append((r["id"], r["metric"], _fmt(r["predicted"]), _fmt(r["measured"]),
                              r["unit"], f"{100 * r['ape']:.1f}%{flag}"))
            else:
                msg = r["error"] or ""
                lines.append((r["id"], r["metric"], "error", _fmt(r["measured"]), r["unit"],
                              "error: " + msg[:70] + ("..." if len(msg) > 70 else "")))
        out.append(table(lines, header=("id", "metric", "predicted", "measured", "unit", "APE")))
        out.append("")

    def agg_rows(groups: dict[str, Any]) -> list[tuple]:
        return [(k, v["ok"], v["errors"],
                 "-" if v["median_ape"] is None else f"{100 * v['median_ape']:.1f}%",
                 "-" if v["max_ape"] is None else f"{100 * v['max_ape']:.1f}%",
                 v["worst_case"] or "-") for k, v in groups.items()]

    header = ("", "ran", "errors", "median APE", "max APE", "worst case")
    overall = {"count": report["count"], "errors": report["errors"],
               "ok": report["count"] - report["errors"], "median_ape": report["median_ape"],
               "max_ape": report["max_ape"], "worst_case": None}
    out.append(table(agg_rows({**report["by_kind"], "all": overall}), header=header))
    out.append("")
    out.append(table(agg_rows(report["by_source"]), header=("source", *header[1:])))
    out.append("")
    out.append(table(agg_rows(report["by_metric"]), header=("metric", *header[1:])))
    out.append("")
    out.append("APE = |predicted - measured| / measured. " + report["note"].split(". ", 1)[1])
    return "\n".join(out)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Predicted vs measured, log-log, one panel per kind, coloured by source file, with the
    y = x line and +-10 % / +-25 % bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["cases"] if r["status"] == "ok"]
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)] or ["training"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 6), squeeze=False)
    sources = sorted({r["source"] for r in rows})
    cmap = plt.get_cmap("tab20")
    colour = {s: cmap(i % 20) for i, s in enumerate(sources)}
    for ax, kind in zip(axes[0], kinds, strict=True):
        mine = [r for r in rows if r["kind"] == kind]
        values = [v for r in mine for v in (r["predicted"], r["measured"])] or [1.0, 10.0]
        lo, hi = min(values) / 2, max(values) * 2
        xs = [lo, hi]
        ax.fill_between(xs, [x * 0.75 for x in xs], [x * 1.25 for x in xs], color="0.92",
                        label="±25 %")
        ax.fill_between(xs, [x * 0.9 for x in xs], [x * 1.1 for x in xs], color="0.82",
                        label="±10 %")
        ax.plot(xs, xs, color="0.3", lw=1, label="y = x")
        for s in sources:
            pts = [r for r in mine if r["source"] == s]
            if pts:
                ax.scatter([r["measured"] for r in pts], [r["predicted"] for r in pts], s=18,
                           color=colour[s], label=s, edgecolor="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured (s, tokens/s, TFLOP/s, fraction or GiB)")
        ax.set_ylabel("predicted (same unit)")
        stats = report["by_kind"].get(kind, {})
        med, mx = stats.get("median_ape"), stats.get("max_ape")
        title = f"{kind}: {stats.get('ok', 0)} cases"
        if med is not None:
            title += f", median APE {100 * med:.1f} %, max {100 * mx:.0f} %"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=float) + "\n")
