"""Hand figures of the engines' fused residual add + RMSNorm (engines/<id>.yaml
kernels.fused_residual_norm; ops.fuse_residual_norms), shared by the tests that compare an
engine's decode step with the generic engine's."""

from __future__ import annotations

import numpy as np

from perfmodel.profile import CalibrationProfile
from perfmodel.specs import registry


def elementwise_s(prof: CalibrationProfile, device: str, elems: float, bytes_per_elem: float,
                  kind: str) -> float:
    """One element-wise kernel over ``elems`` elements moving ``bytes_per_elem`` each: the
    profile's kernel floor + the larger of the measured rate of ``kind`` (or its closest
    measured relative, ``CalibrationProfile.elementwise_elements_per_s``; none: bytes alone) and
    the bytes at the device's bandwidth x the profile's memory efficiency at that size."""
    bw = registry.get_device(device).memory_bandwidth_gbps * 1e9
    nbytes = bytes_per_elem * elems
    eff = float(prof.memory_efficiency(np.array(nbytes)))
    rate = prof.elementwise_elements_per_s(kind)
    return prof.kernel_overhead_s + max(elems / rate if rate else 0.0, nbytes / (bw * eff))


def fusion_s(prof: CalibrationProfile, device: str, tokens: float, hidden: int,
             layers: int, width: float = 2.0) -> float:
    """What the fused residual add + RMSNorm changes in a decode step against the generic
    engine: per layer two fused kernels (reads x and residual, writes both: 4 elements of
    ``width`` bytes, the hidden-state width: 2 B under fp8 / fp4 activations too, the residual
    stream and the norms stay 16-bit, ops.Precision.hidden) instead of two RMSNorms (2 elements)
    and two adds (3); the first layer's input norm and the dropped final norm are the same
    kernel over the same tokens at decode, so they cancel."""
    e = tokens * hidden
    return layers * 2 * (elementwise_s(prof, device, e, 4 * width, "rmsnorm")
                         - elementwise_s(prof, device, e, 2 * width, "rmsnorm")
                         - elementwise_s(prof, device, e, 3 * width, "add"))
