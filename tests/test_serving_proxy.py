"""A serving prediction on a device that borrows its calibration (hardware_specs
``calibration_proxy``) says so as inference and training predictions do (review of 0fa08e8:
serving/predict.py used ``profile.summary()``, so it showed the ``@device`` profile id but not
the proxy, and its bands did not say their residuals were borrowed). Expected values are read
from hardware_specs/devices/mi325x.yaml: proxy mi300x, 'CDNA 3' in why, '6.0 TB/s' in differs."""

from __future__ import annotations

from functools import lru_cache

from perfmodel.api import predict
from perfmodel.report import render_prediction


def _serving(device: str, kind: str = "serving") -> dict:
    sc = {"kind": kind, "model": "llama-3.1-8b", "engine": "vllm",
          "system": {"device": device, "num_gpus": 1}, "parallelism": {"tp": 1},
          "inference": {"prompt_len": 512, "output_len": 32}}
    if kind == "serving":
        sc["serving"] = {"arrival": {"process": "closed", "concurrency": 4}, "num_requests": 20}
    else:
        sc["inference"] |= {"batch": 1}
    return sc


@lru_cache(maxsize=4)
def _pred(device: str, kind: str = "serving"):
    return predict(_serving(device, kind))


def test_serving_on_mi325x_names_the_proxy_and_why():
    pred = _pred("mi325x")
    cal = pred.calibration
    assert cal["id"] == "mi300x.reference@mi325x"
    proxy = cal["proxy"]
    assert proxy["device"] == "mi300x"
    assert "CDNA 3" in proxy["why"] and "6.0 TB/s" in proxy["differs"]
    assert proxy["basis"].startswith("mi300x.reference (same silicon: ")
    assert "borrowed from mi300x: mi300x.reference (same silicon" in render_prediction(pred)


def test_serving_bands_say_the_residuals_are_borrowed():
    pred = _pred("mi325x")
    borrowed = "borrowed: mi300x's tables' held-out residuals, measured on mi300x, not on mi325x"
    said = [k for k, v in pred.range_basis.items() if "calibration residuals" in v]
    assert said  # the serving quantities carry kernel-level residuals at all
    assert all(borrowed in pred.range_basis[k] for k in said)


def test_all_kinds_say_the_same():
    """The serving prediction's calibration block is the inference prediction's, key for key,
    on the proxied device and on the device measured itself (no proxy there)."""
    assert _pred("mi325x").calibration == _pred("mi325x", "inference").calibration
    own = _pred("mi300x")
    assert own.calibration == _pred("mi300x", "inference").calibration
    assert "proxy" not in own.calibration
    assert not any("borrowed" in v for v in own.range_basis.values())
