"""Operator time on the roofline: element-rate compute roofs and the streaming cap, by hand."""

import pytest

from perfmodel import ops as O
from perfmodel.profile import Curve
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs.registry import default_profile, get_device


def test_elementwise_rate_is_a_compute_roof():
    """A kernel kind with a measured rate r takes max(elements / r, bytes / bw)."""
    device = get_device("a100-sxm4-80gb")
    base = default_profile().model_copy(update={"kernel_overhead_s": 0.0,
                                                "memory": Curve(values=(1.0,))})
    op = O.elementwise("act", 1e6, 1e6, 2.0, kind="gelu")
    slow = base.model_copy(update={"elementwise_rate": {"gelu": 1e9}})
    assert float(op_times([op], Roofline(device, slow)).time[0]) == pytest.approx(1e6 / 1e9)
    assert float(op_times([op], Roofline(device, base)).time[0]) == pytest.approx(
        4e6 / device.memory_bandwidth)


def test_memory_bound_gemm_streams_at_the_bandwidth_plateau():
    """A decode GEMM (m = 1) whose fitted efficiency exceeds the bandwidth curve's plateau
    runs at the plateau: weights / (bw x plateau)."""
    device = get_device("a100-sxm4-80gb")
    prof = default_profile().model_copy(update={
        "kernel_overhead_s": 0.0, "gemm": {"bf16": Curve(values=(3.0,))},
        "memory": Curve(axes=("bytes",), log2_grid=((10.0, 30.0),), values=(2.0, 0.8))})
    op = O.gemm("w", 1, 8192, 8192, O.Precision.training("bf16"))
    t = float(op_times([op], Roofline(device, prof)).time[0])
    assert t == pytest.approx(op.bytes / (device.memory_bandwidth * 0.8))

