"""Issue 10 QA: GPU counts of rack-scale nodes are whole racks (64 of 72 GPUs each when the
batch cannot divide over 72: the rack rule); the search's counters keep
whole plans and mesh cells apart; a plan whose memory band passes the device's memory is
flagged "may not fit"."""

import itertools
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.planning.render import render
from perfmodel.planning.training import _dp_factor, gpu_counts
from perfmodel.search import GIB, SearchSpace, may_not_fit, search_table
from perfmodel.specs import registry

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_counts_whole_nodes_and_racks():
    assert gpu_counts(8, 100) == [1, 2, 4, 8, 16, 32, 64]
    assert gpu_counts(8, 96) == [1, 2, 4, 8, 16, 32, 64, 96]
    assert gpu_counts(4, 16) == [1, 2, 4, 8, 16]
    assert gpu_counts(72, 300) == [72, 144, 288]  # NVL72: whole racks only, no 128 or 256
    assert gpu_counts(72, 16384) == [72 * 2 ** k for k in range(8)]  # ... 9,216
    assert gpu_counts(72, 64) == []
    assert gpu_counts(36, 108) == [36, 72, 108]  # any node of more than 8 GPUs


@pytest.mark.parametrize("device", ["gb200", "gb300"])
def test_nvl72_devices_are_planned_in_racks(device):
    """The node size is the node file's gpus_per_node (72), not a device name; 72 = 8 x 9 and
    pp 3 holds one 3, so dp carries a 3: 576 sequences (9 x 64) per step plan, 512 do not."""
    node = registry.get_node(registry.get_device(device).default_node)
    assert node.gpus_per_node == 72
    assert _dp_factor(72, SearchSpace()) == 3 and _dp_factor(8, SearchSpace()) == 1
    res = pm.plan_training(model="llama-3-8b", tokens="1T", devices=device, max_gpus=300,
                           global_batch_tokens=576 * 8192)
    assert res.rows and {r.gpus for r in res.rows} <= {72, 144, 288}
    assert res.work["per_device"][device]["gpu_counts"] == [72, 144, 288]
    # 512 sequences: the rack rule runs 64 of each rack's 72 GPUs, racks paid for whole
    odd = pm.plan_training(model="llama-3-8b", tokens="1T", devices=device, max_gpus=144)
    assert {r.gpus for r in odd.rows} <= {64, 128} and odd.rows
    assert all(r.gpus_billed == r.gpus // 64 * 72 for r in odd.rows)
    assert all(r.gpu_hours == pytest.approx(r.days * 24 * r.gpus_billed) for r in odd.rows)
    assert any(n.startswith(f"{device}: 64 of each 72-GPU rack used (8 spares)")
               for n in odd.notes)
    small = pm.plan_training(model="llama-3-8b", tokens="1T", devices=[device,
                             "h100-sxm5-80gb"], max_gpus=64)
    assert {r.device for r in small.rows} == {"h100-sxm5-80gb"}
    assert any(w.startswith(f"{device}: skipped") and "--max-gpus 72" in w
               for w in small.warnings)


def test_counters_whole_plans_vs_mesh_cells():
    """tp, pp, cp in {1, 2} on counts 1-16 (8-GPU nodes), one choice: whole plans by hand are
    the (count, tp, pp, cp) with tp pp cp dividing the count: 1 + 4 + 7 + 8 + 8 = 28. The mesh
    is dp {1, 2, 4, 8, 16} x 8 = 40 cells, 12 of them off the counts (e.g. dp 16 x tp 2)."""
    space = SearchSpace(tp=(1, 2), pp=(1, 2), cp=(1, 2), vp=(1,), micro_batch=(1,),
                        recompute=("none",), sequence_parallel=(False,), zero_stage=(1,))
    counts = gpu_counts(8, 16)
    hand = sum(1 for g in counts for t, p, c in itertools.product((1, 2), repeat=3)
               if g % (t * p * c) == 0)
    assert hand == 28
    res = pm.plan_training(model="llama-3-8b", tokens="100B", devices="h100-sxm5-80gb",
                           max_gpus=16, space=space)
    w = res.work
    assert w["considered"] == 28
    assert w["fitting"] <= w["valid"] <= w["plans_modelled"] <= w["considered"]
    assert w["modelled"] >= w["plans_modelled"]  # cells: plans and off-count products
    line = next(x for x in render(res).splitlines() if x.startswith("searched"))
    assert line.startswith("searched 28 whole plans (") and "mesh cells" in line


def test_may_not_fit_flag():
    cap = 80 * GIB
    assert may_not_fit({"memory_per_gpu_bytes": [65 * GIB, 82 * GIB]}, cap)
    assert not may_not_fit({"memory_per_gpu_bytes": [60 * GIB, 76 * GIB]}, cap)
    assert not may_not_fit(None, cap) and not may_not_fit({}, cap)


def test_search_flags_the_mixtral_rows_whose_band_passes_80_gib():
    """The QA case: examples/mixtral-8x7b-train-h100.yaml on an 80 GiB H100. With no
    headroom the top plans sit at ~77.5 GiB with a band past 80 GiB: each row is flagged
    exactly when its band's upper end passes the card (the bands move with validation, so
    the rows flagged are not fixed; some must be for the check to bite)."""
    from perfmodel.resolve import as_scenario, resolve_profile
    from perfmodel.search import search
    from perfmodel.specs.assemble import resolve_system

    sc = as_scenario(ROOT / "examples/mixtral-8x7b-train-h100.yaml")
    res = search(sc, resolve_system(sc.system), resolve_profile(sc, None), top=10,
                 headroom=0.0)
    cap = 80 * GIB
    rows, header = search_table(res.plans)
    assert header[-1] == "memory band"
    for p, row in zip(res.plans, rows, strict=True):
        over = p["ranges"]["memory_per_gpu_bytes"][1] > cap
        assert p["may_not_fit"] == over and (row[-1] == "may not fit") == over
        assert p["memory_per_gpu_bytes"] <= cap
    assert any(p["may_not_fit"] for p in res.plans)
    assert res.to_dict()["plans_modelled"] <= res.evaluated
