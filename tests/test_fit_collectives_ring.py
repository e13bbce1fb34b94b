"""Inter-node all-gather / reduce-scatter fits use the core's own network latency model
(comm.network_time: NCCL's ring steps, tuning.cc), so a table the core itself generates is
fitted back to its own latency and bus efficiency (round trip); the former n-1 x
network_step_latency_s subtraction would not recover it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmodel.calibrate import fit as F
from perfmodel.calibrate.fit.collectives import invert_network_time
from perfmodel.comm import collective_time, network_time
from perfmodel.paths import data_dir
from perfmodel.profile import CollectiveFit, Curve
from perfmodel.specs import registry
from perfmodel.specs.registry import load_profile
from perfmodel.topology import GroupSpan

H100 = registry.get_device("h100-sxm5-80gb")
BASE = load_profile(data_dir("calibration") / "default.json")
SIZES = 2.0 ** np.arange(22, 35)  # 4 MiB .. 16 GiB, nccl-tests "size"


def rec(params: dict, t: float) -> dict:
    return {"bench": "collective", "key": json.dumps(params, sort_keys=True),
            "params": params, "time_s": float(t), "stats": {}, "status": "ok", "error": None}


def true_eff(axis_bytes):
    """A known bus efficiency over the per-GPU bytes S/local (the inter-node curve's axis)."""
    u = np.log2(axis_bytes)
    return 0.3 + 0.5 * np.clip((u - 13.0) / 17.0, 0.0, 1.0)


def core_table(coll: str, n: int, local: int):
    """Times of ``coll`` over n ranks, ``local`` per node, from comm.collective_time with a
    profile holding a known fit. Its latency is the one the fit will choose (fixed time 0.95
    x the fastest call), so the whole fit can be recovered, not only its large-size tail."""
    links = F.device_links(H100, None, [])
    system = links.system(H100, n)
    nodes = n // local
    stepped = float(network_time(coll, 0.0, n, nodes, system, BASE))
    axis = SIZES / local
    grid = np.log2(axis)
    curve = Curve(axes=("bytes",), log2_grid=(tuple(grid.tolist()),),
                  values=tuple(true_eff(axis).tolist()))

    def times(latency):
        fit = CollectiveFit(collective=coll, scope="inter", group_size=n, latency_s=latency,
                            efficiency=curve)
        prof = BASE.model_copy(update={"collectives": [fit]})
        return np.asarray(collective_time(coll, SIZES, GroupSpan(n, local, nodes), system,
                                          prof))

    # t_min = L + r, r independent of L: L = 0.95 (L + r) - stepped
    r = float(times(0.0)[0])
    latency = (F.LATENCY_FLOOR_FRACTION * r - stepped) / (1 - F.LATENCY_FLOOR_FRACTION)
    assert latency > 0
    t = times(latency)
    recs = [rec({"collective": coll, "group_size": n, "per_node": local, "scope": "inter",
                 "dtype": "bf16", "bytes": float(s)}, ti) for s, ti in zip(SIZES, t,
                                                                         strict=True)]
    return recs, latency, axis, t


@pytest.mark.parametrize("coll,n,local", [("all_gather", 64, 8), ("reduce_scatter", 128, 8),
                                          ("all_gather", 8, 1), ("all_gather", 32, 4)])
def test_ring_fit_recovers_the_cores_own_latency_and_efficiency(coll, n, local):
    recs, latency, axis, t = core_table(coll, n, local)
    result = F.fit_profile(recs, H100, kind="measured", profile_id="rt", sources=[],
                           return_result=True)
    (fit,) = result.profile.collectives
    assert (fit.collective, fit.scope, fit.group_size) == (coll, "inter", n)
    assert fit.latency_s == pytest.approx(latency, rel=2e-3)
    assert np.allclose(fit.efficiency(axis), true_eff(axis), rtol=2e-3)
    (table,) = [x for x in result.tables if x.name == f"collective.{coll}.inter.{n}"]
    assert np.allclose(table.times(result.profile, np.arange(len(t))), t, rtol=2e-3)


def test_the_old_step_count_would_not_recover_it():
    """A fixed (n-1) x 6.6 us subtraction (before this change) misses the ring's latency
    at mid sizes by more than the tolerance above: the test can fail."""
    n, local = 64, 8
    _, latency, _, t = core_table("all_gather", n, local)
    old_stepped = (n - 1) * BASE.defaults.network_step_latency_s
    new_stepped = float(network_time("all_gather", 0.0, n, n // local,
                                     F.device_links(H100, None, []).system(H100, n), BASE))
    assert abs(old_stepped - new_stepped) > 50e-6  # 416 us vs NCCL's 134 us (LL128)
    mid = len(SIZES) // 2
    wire_new = t[mid] - latency - new_stepped
    wire_old = t[mid] - latency - old_stepped
    assert abs(wire_old / wire_new - 1) > 0.01


def test_invert_network_time_is_the_inverse():
    system = F.device_links(H100, None, []).system(H100, 64)
    wire = np.array([0.0, 1e-6, 3e-5, 1e-3, 0.2])
    for coll, nodes in (("all_gather", 8), ("all_gather", 64), ("all_reduce", 8),
                        ("ep_dispatch_normal", 8)):
        target = network_time(coll, wire, 64, nodes, system, BASE)
        back = invert_network_time(coll, target, 64, nodes, system, BASE)
        assert np.allclose(back, wire, rtol=1e-9, atol=1e-15)
