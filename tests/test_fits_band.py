"""predict's "fits" row flags a prediction whose memory fits on the point estimate while its
80 % band reaches past the device, as plan-training and search flag such rows."""

from __future__ import annotations

from pathlib import Path

from perfmodel.api import predict
from perfmodel.report import _fits

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / \
    "serving-llama3-70b-h100-disaggregated.yaml"
GIB = 2**30


def test_a_band_past_the_device_is_flagged_and_a_clear_fit_is_not():
    p = predict(EXAMPLE)
    lo, hi = p.ranges["memory_per_gpu_bytes"]
    assert p.fits and p.memory_per_gpu_bytes <= p.memory_capacity_bytes < hi
    text = _fits(p)
    assert text.startswith("yes at the point estimate; MAY NOT FIT")
    assert f"{hi / GIB:.2f} GiB" in text
    roomy = p.model_copy(update={"ranges": {**p.ranges, "memory_per_gpu_bytes": (lo, lo)}})
    assert _fits(roomy) == "yes"
    assert _fits(p.model_copy(update={"fits": False})) == "NO"
