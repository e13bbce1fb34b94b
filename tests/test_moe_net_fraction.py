"""What ``fit.moe.MIN_NET_FRACTION`` does, pinned on a hand-made row (the value is a choice, not
a measured fact: its comment in perfmodel/calibrate/fit/moe.py says so and why).

The row: the shape of Mixtral-8x7B's MoE layer on one H200 (hidden 4096, 8 experts of 14336,
top-2, no TP / EP), 128 tokens, bf16, timed by the TensorRT-LLM collector's region (kernel
source moe_torch_flow_cutlass: top-k, activation and combine inside the row). On a profile with
a 3 us kernel overhead and the default memory efficiency 0.88 of the H200's 4.8 TB/s the core's
own time of those parts is (tests/test_moe_timed_parts.py, by hand):

    3 x 3 us + 25,168,384 B / (0.88 x 4.8e12 B/s) = 14.958 us

The clamp keeps at least 25 % of the row for the grouped GEMMs, so it acts on a row shorter
than 14.958 / 0.75 = 19.944 us; the row times below are made up around that edge.
"""

from __future__ import annotations

import pytest

from perfmodel.calibrate.fit.moe import MIN_NET_FRACTION, net_times, part_times
from perfmodel.roofline import Roofline
from perfmodel.specs import registry
from perfmodel.specs.registry import default_profile

OVERHEAD = 3e-6
PARTS = 3 * OVERHEAD + 25_168_384 / (0.88 * 4.8e12)  # 14.958 us, by hand


def _row(time_s: float) -> dict:
    return {"bench": "moe", "time_s": time_s, "status": "ok", "error": None,
            "params": {"dtype": "bf16", "tokens": 128, "hidden": 4096, "inter": 14336,
                       "experts": 8, "topk": 2, "tp": 1, "ep": 1, "gated": True},
            "stats": {"source": "hand-made", "kernel_source": "moe_torch_flow_cutlass"}}


def _roof() -> Roofline:
    prof = default_profile().model_copy(update={"kernel_overhead_s": OVERHEAD})
    return Roofline(registry.get_device("h200-sxm-141gb"), prof)


def test_the_fraction_is_the_one_pinned_here():
    assert MIN_NET_FRACTION == 0.25  # a change means a refit of the MoE tables


@pytest.mark.parametrize(("t", "net", "parts"), [
    # 14.958 < 0.75 x 20 = 15: not clamped, the GEMMs keep 20 - 14.958 = 5.042 us
    (20e-6, 20e-6 - PARTS, PARTS),
    # 0.75 x 16 = 12 < 14.958: clamped, the GEMMs keep 0.25 x 16 = 4 us, the parts 12 us
    (16e-6, 4e-6, 12e-6),
    # the core's parts alone exceed the row (as on one H100 TRT-LLM row, 103 %): 2.5 / 7.5 us
    (10e-6, 2.5e-6, 7.5e-6),
])
def test_clamp_by_hand(t, net, parts):
    rows = [_row(t)]
    roof = _roof()
    assert part_times(rows, "bf16", roof)[0] == pytest.approx(PARTS, rel=1e-6)
    got_net, got_parts = net_times(rows, "bf16", roof)
    assert got_net[0] == pytest.approx(net, rel=1e-6)
    assert got_parts[0] == pytest.approx(parts, rel=1e-6)
    assert got_net[0] + got_parts[0] == pytest.approx(t, rel=1e-12)  # nothing lost or added
