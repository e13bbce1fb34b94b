"""Collective tables: ``comm.collective_time`` / ``comm.p2p_time`` solved for efficiency at
every measured size, with the nccl-tests bus factors (``comm.bus_factor``, nccl-tests
PERFORMANCE.md); a collective's latency makes its fixed time 0.95 x the table's fastest
call.

A fitted collective never gets faster with a larger message (issue 12: a published B200
two-node all-reduce table has 925 us at 128 KiB and 439 us at 256 KiB, a protocol switch
that the alpha-beta model cannot express): the fitted curve is capped so that the time it
implies never decreases with size, between its nodes too (``monotone_curve``: the lower
envelope of time, taking the long transfers as the firm points)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ...comm import (
    bus_factor,
    collective_time,
    intra_bandwidth,
    is_all_to_all,
    network_time,
    p2p_time,
)
from ...profile import CalibrationProfile, CollectiveFit, Curve
from ...specs.common import Source
from ...specs.hardware import DeviceSpec, InterconnectSpec
from ...specs.system import System
from ...topology import GroupSpan
from .curves import GRID_DECIMALS, round4
from .table import Table, invert_time, ok_records

# Collectives: latency chosen so that the fixed time is this fraction of the fastest call.
LATENCY_FLOOR_FRACTION = 0.95


@dataclass(frozen=True)
class Links:
    """The links collectives are measured against, as the core's ``System`` holds them."""

    intra: InterconnectSpec | None
    inter: InterconnectSpec | None
    nics_per_node: int
    gpus_per_node: int
    host_link: InterconnectSpec | None
    label: dict

    def system(self, device: DeviceSpec, num_gpus: int) -> System:
        return System(device=device, num_gpus=num_gpus, gpus_per_node=self.gpus_per_node,
                      intra=self.intra or _synthetic_link("intra", 1.0), inter=self.inter,
                      nics_per_node=self.nics_per_node, host_link=self.host_link, node=None)

    def inter_per_gpu(self) -> float:
        """Per-GPU share of a full node's NICs (B/s), as System.inter_bandwidth_per_gpu."""
        if self.inter is None or not self.nics_per_node:
            return 0.0
        return self.inter.bandwidth * self.nics_per_node / self.gpus_per_node


def _synthetic_link(scope: str, gbps: float, what: str = "given") -> InterconnectSpec:
    return InterconnectSpec(
        id=f"calibration-{scope}", kind="ethernet" if scope == "inter" else "pcie",
        name=f"{scope}-node link ({what})", bandwidth_gbps=gbps,
        sources=[Source(title="link bandwidth given to perfmodel.calibrate.fit_profile",
                        url="local://perfmodel-calibrate")])


def device_links(device: DeviceSpec | None, link_bandwidths: dict | None,
                 records: list[dict]) -> Links:
    """Intra-node fabric (per GPU per direction) and the per-GPU share of a full node's
    NICs, from the device's default node; ``link_bandwidths`` ({"intra": GB/s, "inter":
    GB/s per GPU}) override; with neither, the best measured bus bandwidth of the scope."""
    from ...specs import registry

    given = dict(link_bandwidths or {})
    intra = inter = host = None
    nics, per_node = 0, 8
    label: dict[str, str] = {}
    if device is not None and device.default_node:
        node = registry.get_node(device.default_node)
        intra = registry.get_interconnect(node.intra_node)
        per_node = node.gpus_per_node
        label["intra"] = (f"{intra.id} of {node.id} ({intra.bandwidth_gbps:g} GB/s per GPU "
                          "per direction)")
        if node.inter_node and node.nics_per_node:
            inter = registry.get_interconnect(node.inter_node)
            nics = node.nics_per_node
            label["inter"] = (f"{inter.id} x{nics} per {per_node} GPUs of {node.id} "
                              f"({inter.bandwidth_gbps * nics / per_node:g} GB/s per GPU)")
    if device is not None and device.host_link:
        host = registry.get_interconnect(device.host_link)
    for scope in ("intra", "inter"):
        gbps, what = given.get(scope), "given"
        if gbps is None and (intra if scope == "intra" else inter) is None:
            best = _best_busbw(records, scope)
            gbps, what = (best / 1e9, "best measured bus bandwidth") if best else (None, "")
        if gbps is None:
            continue
        link = _synthetic_link(scope, gbps, what)
        label[scope] = f"{what}: {gbps:.4g} GB/s per GPU per direction"
        if scope == "intra":
            intra, host = link, None
        else:  # a per-GPU figure: one link per GPU
            inter, nics = link, per_node
    return Links(intra, inter, nics, per_node, host, label)


LN2 = math.log(2.0)


def _best_busbw(records: list[dict], scope: str) -> float | None:
    rates = [float(r["params"]["bytes"]) * float(bus_factor(r["params"]["collective"],
                                                            int(r["params"]["group_size"])))
             / r["time_s"] for r in ok_records(records, "collective")
             if r["params"].get("scope", "intra") == scope]
    return max(rates) if rates else None


def monotone_curve(curve: Curve, per_octave: int = 8) -> Curve:
    """``curve`` (efficiency over log2 bytes, linear between nodes) raised so that the time
    bytes / eff(bytes) never decreases with size. With u = log2 bytes and eff linear between
    nodes, d/du log(2^u / eff) = ln 2 - eff'/eff >= 0 holds on a segment iff its slope is at
    most ln 2 x eff at the segment's start: e[i] >= e[i+1] / (1 + ln 2 (u[i+1] - u[i])).

    The curve is walked from the largest message down, raising a smaller message's efficiency
    where it implies a longer time than the next larger one: the long transfers, timed over
    milliseconds, are the firm points, and a slow small message (a protocol switch, a spike)
    is taken as the exception (the lower envelope of time). A segment that breaks the
    condition is cut into ``per_octave`` pieces per octave, interpolated geometrically, so
    the raised curve follows the data closely ((1 + ln 2 / 8)^8 = 1.94x per octave where one
    segment would allow 1.69x)."""
    if len(curve.axes) != 1 or len(curve.values) < 2:
        return curve
    u, e = curve.log2_grid[0], curve.values
    out_u, out_e = [u[-1]], [e[-1]]  # built from the largest size down
    for u0, e0 in zip(reversed(u[:-1]), reversed(e[:-1]), strict=True):
        u1, e1 = out_u[-1], out_e[-1]
        if e0 * (1.0 + LN2 * (u1 - u0)) >= e1:
            out_u.append(u0)
            out_e.append(e0)
            continue
        steps = max(1, math.ceil((u1 - u0) * per_octave))
        for k in range(steps - 1, -1, -1):
            uk = round(u0 + (u1 - u0) * k / steps, GRID_DECIMALS)
            need = out_e[-1] / (1.0 + LN2 * (out_u[-1] - uk))
            out_u.append(uk)
            out_e.append(_ceil4(max(e0 * (e1 / e0) ** (k / steps), need)))
    out_u, out_e = out_u[::-1], out_e[::-1]
    if out_u == list(u) and out_e == list(e):
        return curve
    return Curve(axes=curve.axes, log2_grid=(tuple(out_u),), values=tuple(out_e))


def _ceil4(x: float) -> float:
    """Four significant digits, rounded up (a raised value must stay at or over its floor)."""
    scale = 10.0 ** (3 - math.floor(math.log10(x)))
    return math.ceil(x * scale) / scale


def collective_geometry(p: dict) -> tuple[int, int, int]:
    """(group size, members per node, nodes) of a collective record; an inter-node record
    without ``per_node`` has one member per node."""
    n = int(p["group_size"])
    local = n if p.get("scope", "intra") == "intra" else int(p.get("per_node") or 1)
    return n, local, max(1, n // local)


def collective_times(coll: str, scope: str, nb: np.ndarray, geom: tuple[int, int, int],
                     system: System, prof: CalibrationProfile) -> np.ndarray:
    """The core's time: ``comm.p2p_time`` for send_recv, else ``comm.collective_time``."""
    n, local, nodes = geom
    if coll == "send_recv":
        return np.asarray(p2p_time(nb, np.full(nb.shape, scope == "inter"), system, prof))
    return np.asarray(collective_time(coll, nb, GroupSpan(n, local, nodes), system, prof))


def collective_tables(records: list[dict], device: DeviceSpec, links: Links,
                      base: CalibrationProfile, scope: str) -> list[Table]:
    """One table per (collective, scope, group size). Intra-node, comm.collective_time is
    t = latency + S factor(n) / (fabric bw eff(S)); inter-node (k nodes of ``local``
    members) t = latency + comm.network_time(wire), wire = S/local factor(k) / (NIC share
    eff(S/local)) (all_to_all S (n-local)/n instead): the core's own step latencies (NCCL's
    ring model for all-gather / reduce-scatter, ``comm.ring_time``; n-1 / 2 log2 k / one
    step x the network step latency otherwise), inverted here by ``invert_network_time``;
    send_recv t = latency + S / (bw eff(S)). Each is solved for eff at every measured size;
    latency makes the fixed time ``LATENCY_FLOOR_FRACTION`` of the table's fastest call (a
    table of one size, a published bus-bandwidth point, keeps the profile's default
    ``collective_latency_s``)."""
    if scope == "intra" and links.intra is None:
        return []
    if scope == "inter" and links.inter_per_gpu() <= 0:
        return []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in ok_records(records, "collective"):
        p = r["params"]
        if p.get("scope", "intra") == scope:
            groups[(p["collective"], *collective_geometry(p))].append(r)
    tables = []
    for (coll, n, local, nodes), recs in sorted(groups.items()):
        geom = (n, local, nodes)
        system = links.system(device, n)
        nb = np.array([float(r["params"]["bytes"]) for r in recs])
        t = np.array([r["time_s"] for r in recs])
        # inter-node collectives also pay the core's network step latencies (comm.network_time)
        networked = scope == "inter" and coll != "send_recv"
        stepped = (float(network_time(coll, 0.0, n, nodes, system, base))
                   if networked else 0.0)
        if coll == "send_recv":
            bw = system.intra.bandwidth if scope == "intra" else links.inter_per_gpu()
            moved, axis = nb, nb
        elif scope == "intra":
            bw = float(intra_bandwidth(system, local))
            moved, axis = nb * float(bus_factor(coll, local)), nb
        else:
            bw = links.inter_per_gpu()
            moved = (nb * (n - local) / n if is_all_to_all(coll)
                     else nb / local * float(bus_factor(coll, nodes)))
            axis = nb / local

        # one measured size (a published busbw point) cannot separate latency from
        # bandwidth: the profile's default latency then, not 0.95 x the only call
        single = float(base.defaults.collective_latency_s) if len(set(nb)) == 1 else None

        def latency(idx, t=t, stepped=stepped, single=single):
            floor = LATENCY_FLOOR_FRACTION * float(t[idx].min())
            return max(0.0, (floor if single is None else min(single, floor)) - stepped)

        def implied(fit_idx, t=t, moved=moved, bw=bw, stepped=stepped, latency=latency,
                    networked=networked, coll=coll, geom=geom, system=system):
            latency_s = latency(fit_idx)
            eff, phi = invert_time(moved / bw, t, latency_s + stepped)
            if not networked:
                return eff, phi
            # the wire time whose network time fills the measured time over the latency
            # (at least invert_time's work share: a point at or below the fixed time)
            target = latency_s + stepped + phi * t
            wire = invert_network_time(coll, target - latency_s, geom[0], geom[2], system, base)
            return moved / bw / wire, phi

        def install(prof, curve, fit_idx, coll=coll, n=n, latency=latency):
            fit = CollectiveFit(collective=coll, scope=scope, group_size=n,
                                latency_s=round4(latency(fit_idx)),
                                efficiency=monotone_curve(curve), link=links.label.get(scope))
            keep = [f for f in prof.collectives
                    if (f.collective, f.scope, f.group_size) != (coll, scope, n)]
            return prof.model_copy(update={"collectives": [*keep, fit]})

        def times(prof, idx, coll=coll, geom=geom, nb=nb, system=system):
            return collective_times(coll, scope, nb[idx], geom, system, prof)

        tables.append(Table(f"collective.{coll}.{scope}.{n}", "collective", ("bytes",),
                            axis[:, None], t, recs, implied, install, times))
    return tables


def invert_network_time(collective: str, target, n: int, nodes: int, system: System,
                        profile: CalibrationProfile, rel_tol: float = 1e-12) -> np.ndarray:
    """The wire time w >= 0 with ``comm.network_time(collective, w, ...)`` == ``target``:
    the fit's inverse of the core's own network latency model (one source of truth). The
    network time is continuous and strictly increasing in w (NCCL's ring model is the
    minimum over protocols of latency + w / bandwidth share, the other collectives w + a
    fixed step latency), so bisection on [0, hi] converges; hi doubles until it covers the
    target. A target at or below the zero-byte time gives 0."""
    target = np.asarray(target, dtype=float)

    def f(w):
        return np.asarray(network_time(collective, w, n, nodes, system, profile), float)

    if not np.all(np.isfinite(target)):
        raise ValueError("invert_network_time: the target times must be finite")
    lo = np.zeros_like(target)
    hi = np.maximum(target, 1e-12)
    for _ in range(200):  # f(w) >= w / (largest bandwidth share): a few doublings at most
        short = f(hi) < target
        if not np.any(short):
            break
        hi = np.where(short, 2.0 * hi, hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = f(mid) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        if np.all(hi - lo <= rel_tol * hi):
            break
    return hi
