"""The reference recipe builds the fp8 quantise rates the shipped profiles carry
(references.yaml ``quantize_rates``, ``reference.with_quantize_rates``): applied to the shipped
H100 profile stripped of them, it gives back exactly the shipped elementwise_rate cast /
fp8_quant / fp8_amax, their fit errors, uncertainty and notes."""

from __future__ import annotations

import pytest

from perfmodel.calibrate import reference as R
from perfmodel.paths import data_dir
from perfmodel.specs.registry import load_profile

KINDS = ("cast", "fp8_quant", "fp8_amax")
QUANTIZE_DEVICES = ["h100-sxm5-80gb", "h200-sxm-141gb", "b200", "b300", "gb200", "gb300"]


def test_six_devices_name_their_quantize_folder():
    """Each device whose fp8 GEMM rows are netted of a quantize folder builds its rates from
    the same folder."""
    for device, ref in R.REFERENCES.items():
        netted = {t.kwargs["fp8_net_of"] for t in ref.tables if "fp8_net_of" in t.kwargs}
        assert ({ref.quantize_rates} if ref.quantize_rates else set()) == netted, device
    assert sorted(d for d, r in R.REFERENCES.items() if r.quantize_rates) == sorted(
        QUANTIZE_DEVICES)


def test_recipe_rebuilds_the_shipped_quantize_rates():
    pytest.importorskip("pyarrow")
    device = "h100-sxm5-80gb"
    shipped = load_profile(data_dir("calibration") / f"{device}.reference.json")
    tables = {f"elementwise.{k}" for k in KINDS}
    suffix = " " + R.QUANTIZE_NOTES
    assert shipped.notes.endswith(suffix)
    stripped = shipped.model_copy(update={
        "elementwise_rate": {k: v for k, v in shipped.elementwise_rate.items() if k not in KINDS},
        "fit_errors": [fe for fe in shipped.fit_errors if fe.table not in tables],
        "uncertainty": {k: v for k, v in shipped.uncertainty.items() if k not in tables},
        "notes": shipped.notes[:-len(suffix)]})
    rebuilt = R.with_quantize_rates(stripped, device, R.REFERENCES[device].quantize_rates)
    assert rebuilt.elementwise_rate == shipped.elementwise_rate
    assert rebuilt.fit_errors == shipped.fit_errors
    assert rebuilt.uncertainty == shipped.uncertainty
    assert rebuilt.notes == shipped.notes
