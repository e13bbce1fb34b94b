"""A PNG that shows a calibration fit: measured points against the fitted curves, and the
residuals of every table, all predicted through the core with the profile itself.

Panels: GEMM efficiency vs M for a few (N, K); achieved memory bandwidth vs size; attention
efficiency vs sequence length; collective bus bandwidth vs size; histograms of
log(predicted / measured) per kind of table; the held-out errors the profile carries.
Drawn with matplotlib's object API on an Agg canvas (no global backend switch) and written
atomically (temporary file, then rename).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..atomic import atomic_path
from ..comm import bus_factor
from ..profile import CalibrationProfile
from . import fit as F

KINDS = ("gemm", "moe", "attention", "memory", "collective")


def build_tables(records: list[dict], profile: CalibrationProfile,
                 link_bandwidths: dict | None = None) -> list[F.Table]:
    """The fit's tables for ``records``, with the profile's own overheads."""
    device = F.host_device(profile)
    tables = F.gemm_tables(records, device, profile) + F.moe_tables(records, device, profile)
    tables += F.attention_tables(records, device, profile)
    mem, elem = F.ok_records(records, "memory"), F.ok_records(records, "elementwise")
    if mem or elem:
        tables.append(F.memory_table(mem or elem, device, profile))
    if mem and elem:
        tables.append(F.memory_table(elem, device, profile, name="elementwise.check"))
    links = F.device_links(None if profile.device is None else device, link_bandwidths, records)
    for scope in ("intra", "inter"):
        tables += F.collective_tables(records, device, links, profile, scope)
    return tables


def _bound(table: F.Table, profile: CalibrationProfile) -> np.ndarray:
    return table.times(F.unit_profile(profile), np.arange(len(table)))


def _measured_eff(table: F.Table, profile: CalibrationProfile) -> np.ndarray:
    fixed = profile.kernel_overhead_s
    if table.kind == "attention":
        fixed += profile.attention_overhead_s.get(table.name.split(".", 1)[1], 0.0)
    return _bound(table, profile) / np.maximum(table.measured - fixed,
                                                F.MIN_WORK_FRACTION * table.measured)


def _gemm_panel(ax, table: F.Table, profile: CalibrationProfile) -> None:
    dtype = table.name.split(".", 1)[1]
    eff = _measured_eff(table, profile)
    n, k = table.coords[:, 1], table.coords[:, 2]
    pairs, counts = np.unique(np.stack([n, k], axis=1), axis=0, return_counts=True)
    pairs = pairs[counts >= min(5, counts.max())]  # (N, K) with an M sweep
    if np.any(pairs.min(axis=1) >= 512):  # shapes of real layers, where there are some
        pairs = pairs[pairs.min(axis=1) >= 512]
    if len(pairs) == 0:
        return
    order = np.argsort(pairs[:, 0] * pairs[:, 1])
    picks = pairs[order[np.unique(np.linspace(0, len(order) - 1, 3).round().astype(int))]]
    curve = profile.gemm[dtype]
    for i, (nn, kk) in enumerate(picks):
        sel = (n == nn) & (k == kk)
        m = table.coords[sel, 0]
        line = np.geomspace(m.min(), m.max(), 200)
        color = f"C{i}"
        ax.scatter(m, eff[sel], s=8, color=color, alpha=0.6)
        ax.plot(line, curve(line, nn, kk), color=color, lw=1.2, label=f"N={nn:.0f} K={kk:.0f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M")
    ax.set_ylabel("efficiency (roofline bound / time)")
    ax.set_title(f"GEMM {dtype}: measured (dots) vs fitted")
    ax.legend(fontsize=7)


def _memory_panel(ax, tables: list[F.Table], profile: CalibrationProfile) -> None:
    lo, hi = np.inf, 0.0
    for i, table in enumerate(tables):
        nb = table.coords[:, 0]
        ax.scatter(nb, nb / table.measured / 1e9, s=8, color=f"C{i}", alpha=0.6,
                   label=f"{table.name} (measured)")
        lo, hi = min(lo, nb.min()), max(hi, nb.max())
    line = np.geomspace(lo, hi, 200)
    ref = F.memory_table([{"bench": "memory", "params": {"bytes": float(b)}, "time_s": 1.0}
                          for b in line], F.host_device(profile), profile)
    pred = ref.times(profile, np.arange(len(line)))
    ax.plot(line, line / pred / 1e9, color="k", lw=1.2, label="fitted (core time)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes moved")
    ax.set_ylabel("achieved GB/s")
    ax.set_title("memory-bound kernels")
    ax.legend(fontsize=7)


def _attention_panel(ax, tables: list[F.Table], profile: CalibrationProfile) -> None:
    for i, table in enumerate(tables):
        phase = table.name.split(".", 1)[1]
        eff = _measured_eff(table, profile)
        q, kv = table.coords[:, 0], table.coords[:, 1]
        x = kv if phase == "decode" else q
        few = len(x) < 50
        ax.scatter(x, eff, s=24 if few else 4, color=f"C{i}", alpha=0.8 if few else 0.25)
        line = np.geomspace(x.min(), x.max(), 200)
        streams = float(np.median(q))  # decode: sequences x KV heads
        qq = np.full_like(line, streams) if phase == "decode" else line
        label = (f"kv_len at {streams:g} streams" if phase == "decode" else "q_len = kv_len")
        ax.plot(line, profile.attention[phase](qq, line), color=f"C{i}", lw=1.5,
                label=f"{phase} ({label})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("efficiency")
    ax.set_title("attention: measured (dots) vs fitted")
    ax.legend(fontsize=7)


def _collective_panel(ax, tables: list[F.Table], profile: CalibrationProfile) -> None:
    shown = [t for t in tables if t.name.startswith("collective.all_reduce.")
             or t.name.endswith(".8") or ".inter." in t.name or "send_recv" in t.name][:8]
    for i, table in enumerate(shown):
        _, coll, scope, n = table.name.split(".")
        nb = np.array([float(r["params"]["bytes"]) for r in table.records])
        factor = float(bus_factor(coll, int(n)))
        order = np.argsort(nb)
        pred = table.times(profile, np.arange(len(table)))
        color = f"C{i % 10}"
        ax.scatter(nb, nb * factor / table.measured / 1e9, s=6, color=color, alpha=0.5)
        ax.plot(nb[order], (nb * factor / pred / 1e9)[order], color=color, lw=1.2,
                label=f"{coll} {scope} n={n}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes (nccl-tests size)")
    ax.set_ylabel("bus bandwidth GB/s")
    ax.set_title("collectives: measured (dots) vs core time")
    ax.legend(fontsize=6)


def _residual_panel(ax, tables: list[F.Table], profile: CalibrationProfile) -> None:
    bins = np.linspace(-1.0, 1.0, 61)
    for i, kind in enumerate(KINDS):
        res = [np.log(t.times(profile, np.arange(len(t))) / t.measured)
               for t in tables if t.kind == kind and t.name != "elementwise.check"]
        if res:
            values = np.clip(np.concatenate(res), bins[0], bins[-1])
            ax.hist(values, bins=bins, histtype="step", color=f"C{i}", lw=1.5,
                    label=f"{kind} (n={len(values)})", density=True)
    ax.set_xlabel("log(predicted / measured), all points, clipped to +-1")
    ax.set_title("residuals (in-sample, through the core)")
    ax.legend(fontsize=7)


def _errors_panel(ax, profile: CalibrationProfile) -> None:
    ax.axis("off")
    lines = [f"{profile.id}  [{profile.label}]", "held-out errors (median / p90 APE):"]
    for fe in profile.fit_errors[:34]:
        lines.append(f"{fe.table:34s} {fe.median_ape:6.1%} {fe.p90_ape:7.1%}  n={fe.n_test}")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=6.5,
            transform=ax.transAxes)


def write_report(records: list[dict], profile: CalibrationProfile, path_png: str | Path,
                 link_bandwidths: dict | None = None) -> Path:
    """Draw the report for ``records`` fitted into ``profile`` and write it to ``path_png``."""
    records = list(records)
    tables = build_tables(records, profile, link_bandwidths)
    fig = Figure(figsize=(18, 11), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    gemm = [t for t in tables if t.kind == "gemm"]
    if gemm:
        _gemm_panel(axes[0, 0], gemm[0], profile)
    mem = [t for t in tables if t.kind == "memory"]
    if mem and profile.memory is not None:
        _memory_panel(axes[0, 1], mem, profile)
    attn = [t for t in tables if t.kind == "attention" and t.name.split(".", 1)[1]
            in profile.attention]
    if attn:
        _attention_panel(axes[0, 2], attn, profile)
    coll = [t for t in tables if t.kind == "collective"]
    if coll:
        _collective_panel(axes[1, 0], coll, profile)
    _residual_panel(axes[1, 1], tables, profile)
    _errors_panel(axes[1, 2], profile)
    for ax in axes.flat:
        if not ax.has_data() and ax.axison:
            ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"calibration fit: {profile.id} ({profile.label})")
    fig.tight_layout()
    path = Path(path_png)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
