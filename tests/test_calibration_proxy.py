"""Calibration by proxy (hardware_specs ``calibration_proxy``; perfmodel.specs.registry
``profile_for`` / ``proxied_profile`` / ``borrow_profile``): a device of the same silicon as one with a measured
profile borrows that profile, applied to its own peaks and bandwidths. Checked by hand against
the datasheet ratios, and against the one pair of the same die whose both profiles were fitted
from their own measured tables (H100 SXM -> H200)."""

import numpy as np
import pytest

from perfmodel.api import predict
from perfmodel.errors import SpecError
from perfmodel.ops import GEMM, Op
from perfmodel.report import render_prediction
from perfmodel.resolve import device_mismatch
from perfmodel.roofline import Roofline, op_times
from perfmodel.specs import registry
from perfmodel.specs.common import validate
from perfmodel.specs.hardware import CalibrationProxy, DeviceSpec
from perfmodel.specs.registry import (
    borrow_profile,
    get_device,
    profile_for,
    proxied_profile,
    proxy_source,
    reference_profile,
)

PROXIES = {"mi325x": "mi300x", "a100-sxm4-40gb": "a100-sxm4-80gb",
           "a100-pcie-80gb": "a100-sxm4-80gb", "h100-sxm5-96gb": "h100-sxm5-80gb",
           "h100-nvl-94gb": "h100-sxm5-80gb", "h100-pcie-80gb": "h100-sxm5-80gb",
           "gh200": "h100-sxm5-80gb"}


def _decode(device: str, model: str = "llama-3.1-8b", gpus: int = 1, dtype: str = "bf16"):
    return {"kind": "inference", "model": model, "system": {"device": device, "num_gpus": gpus},
            "parallelism": {"tp": gpus},
            "inference": {"batch": 1, "prompt_len": 2048, "output_len": 256,
                          "weight_dtype": dtype, "kv_dtype": dtype}}


@pytest.mark.parametrize("device,source", sorted(PROXIES.items()))
def test_proxied_devices_borrow_their_source_profile(device, source):
    p = profile_for(device)
    assert p.device == source and p.kind == "reference"
    assert p.id == f"{source}.reference@{device}"
    assert p is proxied_profile(device)  # cached: one borrowed profile per device
    assert reference_profile(device) is None  # none measured on the device itself
    assert device in (p.notes or "") and "calibration_proxy" in (p.notes or "")


def test_own_profile_wins_and_unproxied_devices_stay_uncalibrated():
    assert reference_profile("h200-sxm-141gb").id == "h200-sxm-141gb.reference"
    assert reference_profile("l40s") is None and proxied_profile("l40s") is None
    assert proxied_profile("cpu") is None
    pred = predict(_decode("l40s"))
    assert pred.calibration["kind"] == "default" and "proxy" not in pred.calibration
    assert any(w.startswith("uncalibrated") for w in pred.warnings)


def test_mi325x_decode_between_mi300x_and_its_bandwidth_ratio():
    """Memory-bound decode (Llama-3.1-8B, batch 1): the same CDNA 3 die with 6.0 instead of
    5.3 TB/s, so at most 6.0 / 5.3 = 1.132x faster than the MI300X and never slower (the QA
    tour found 1.95x with the uncalibrated defaults)."""
    t300 = predict(_decode("mi300x")).tpot_s
    t325 = predict(_decode("mi325x")).tpot_s
    assert t300 * 5300 / 6000 <= t325 < t300
    big300 = predict(_decode("mi300x", "llama-3.1-70b", 8, "fp8")).tpot_s
    big325 = predict(_decode("mi325x", "llama-3.1-70b", 8, "fp8")).tpot_s
    assert big300 * 5300 / 6000 <= big325 < big300


def _gemm(m: int, n: int, k: int) -> Op:
    return Op(name="g", cls=GEMM, phase="decode", flops=2.0 * m * n * k,
              bytes=2.0 * (m * k + k * n + m * n), dtype="bf16", shape=(m, n, k))


def _time(device: str, op: Op) -> float:
    roof = Roofline(get_device(device), profile_for(device))
    return float(op_times([op], roof).time[0]) - roof.profile.kernel_overhead_s


def test_h100_nvl_gemm_times_by_hand():
    """The same efficiency curve on the NVL's own roofline: a memory-bound decode GEMM takes
    the SXM5's time x 3350 / 3900 GB/s, a compute-bound one x 989.4 / 835.5 TFLOP/s."""
    small, large = _gemm(1, 4096, 4096), _gemm(8192, 8192, 8192)
    assert _time("h100-nvl-94gb", small) == pytest.approx(
        _time("h100-sxm5-80gb", small) * 3350 / 3900, rel=1e-9)
    assert _time("h100-nvl-94gb", large) == pytest.approx(
        _time("h100-sxm5-80gb", large) * 989.4 / 835.5, rel=1e-9)


def test_absolute_rates_scale_and_foreign_fabrics_are_dropped():
    sxm = reference_profile("h100-sxm5-80gb")
    pcie = profile_for("h100-pcie-80gb")
    for kind, rate in sxm.elementwise_rate.items():  # achieved-bandwidth roofs: x 2000 / 3350
        assert pcie.elementwise_rate[kind] == pytest.approx(rate * 2000 / 3350)
    # efficiency curves are the source's own
    assert pcie.gemm["bf16"] == sxm.gemm["bf16"] and pcie.memory == sxm.memory


def test_measured_peak_overrides_scale_by_the_datasheets():
    src, dst = get_device("h100-sxm5-80gb"), get_device("h100-pcie-80gb")
    base = reference_profile("h100-sxm5-80gb").model_copy(
        update={"peak_tflops": {"bf16": 900.0, "fp4": 1.0}, "memory_bandwidth_gbps": 3000.0})
    out = borrow_profile(base, src, dst)
    assert out.peak_tflops == {"bf16": pytest.approx(900.0 * 756 / 989.4)}  # fp4: neither has one
    assert out.memory_bandwidth_gbps == pytest.approx(3000.0 * 2000 / 3350)


def test_an_explicit_source_profile_is_borrowed_too():
    path = registry.data_dir("calibration") / "mi300x.reference.json"
    assert profile_for("mi325x", path).id == "mi300x.reference@mi325x"
    assert profile_for("mi300x", path).id == "mi300x.reference"


def test_the_output_names_the_proxy_and_why():
    pred = predict(_decode("mi325x"))
    proxy = pred.calibration["proxy"]
    assert pred.calibration["id"] == "mi300x.reference@mi325x"
    assert proxy["device"] == "mi300x" and "CDNA 3" in proxy["why"] and "6.0 TB/s" in proxy["differs"]
    assert proxy["basis"].startswith("mi300x.reference (same silicon: ")
    text = render_prediction(pred)
    assert "borrowed from mi300x: mi300x.reference (same silicon" in text
    # the band says its kernel residuals are the proxied device's, not this one's
    assert "borrowed: mi300x's tables' held-out residuals" in pred.range_basis["tpot_s"]
    own = predict(_decode("mi300x"))
    assert "proxy" not in own.calibration and "borrowed" not in own.range_basis["tpot_s"]


def _with_proxy(device_id: str, **proxy) -> object:
    d = get_device(device_id)
    return d.model_copy(update={"calibration_proxy": CalibrationProxy(
        **{**d.calibration_proxy.model_dump(), **proxy})})


@pytest.mark.parametrize("proxy,says", [
    ({"device": "mi30x"}, "calibration_proxy.device 'mi30x' is not a known device"),
    ({"device": "mi250x"}, "calibration_proxy.device 'mi250x' has no reference profile"),
    ({"device": "mi355x"}, "a proxy must be the same silicon"),
])
def test_a_bad_proxy_is_one_clear_error(proxy, says):
    with pytest.raises(SpecError) as err:
        proxy_source(_with_proxy("mi325x", **proxy))
    msg = str(err.value)
    assert says in msg and "\n" not in msg and "hardware_specs/devices/mi325x.yaml" in msg


@pytest.mark.parametrize("proxy,says", [
    ({"device": "mi325x"}, "cannot be its own proxy"),
    ({"sources": ["NOPE"]}, "calibration_proxy.sources: ['NOPE']"),
])
def test_the_schema_refuses_a_self_proxy_and_unknown_sources(proxy, says):
    data = get_device("mi325x").model_dump()
    data["calibration_proxy"].update(proxy)
    with pytest.raises(SpecError) as err:
        validate(DeviceSpec, data, what="mi325x.yaml")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_transfer_across_one_die_with_two_measured_profiles():
    """H100 SXM and H200 are the same GH100 die with HBM3 3.35 vs HBM3e 4.8 TB/s, each with a
    profile fitted from its own measured kernel tables: the H100's borrowed for the H200
    predicts its batch-1 decode within 12 % and its prefill within 5 % of the H200's own
    (measured 2026-12-04: 0.905x and 1.017x; docs/calibration.md 'Calibration by proxy')."""
    src, dst = get_device("h100-sxm5-80gb"), get_device("h200-sxm-141gb")
    borrowed = borrow_profile(reference_profile(src.id), src, dst)
    own, bor = predict(_decode(dst.id)), predict(_decode(dst.id), borrowed)
    assert abs(np.log(bor.tpot_s / own.tpot_s)) < np.log(1.12)
    assert abs(np.log(bor.ttft_s / own.ttft_s)) < np.log(1.05)


def _fits(profile) -> set[str]:
    return {f"{f.collective}.{f.scope}.{f.group_size}" for f in profile.collectives}


# The H100 SXM5 reference's collective fits, listed by hand from its notes: NCCL all_gather /
# all_reduce / all_to_all / reduce_scatter and the three engines' custom all-reduces at 2, 4, 8
# GPUs, DeepEP dispatch / combine (low latency and normal) at 8 on one NVSwitch node and at
# 16 / 32 / 64 across 2 / 4 / 8 nodes, send_recv between 2 GPUs in a node and between 2 nodes
# (vidur's DGX pair, one GPU per node).
H100_INTRA = {f"{c}.intra.{n}" for c in ("all_gather", "all_reduce", "all_to_all",
                                         "reduce_scatter", "custom_allreduce_sglang",
                                         "custom_allreduce_trtllm", "custom_allreduce_vllm")
              for n in (2, 4, 8)} | {f"ep_{p}_{m}.intra.8" for p in ("dispatch", "combine")
                                     for m in ("ll", "normal")} | {"send_recv.intra.2"}
H100_DEEPEP_INTER = {f"ep_{p}_{m}.inter.{n}" for p in ("dispatch", "combine")
                     for m in ("ll", "normal") for n in (16, 32, 64)}


def test_h100_reference_holds_the_fits_listed_by_hand():
    assert _fits(reference_profile("h100-sxm5-80gb")) == (
        H100_INTRA | H100_DEEPEP_INTER | {"send_recv.inter.2"})
    assert len(H100_INTRA) == 26 and len(H100_DEEPEP_INTER) == 12


@pytest.mark.parametrize("device", ["h100-pcie-80gb", "h100-nvl-94gb"])
def test_without_the_scale_up_fabric_only_nic_only_fits_are_borrowed(device):
    """NVLink bridge pairs, not NVSwitch: the intra-node fits and the DeepEP internode ones
    (NVLink forwarding inside each node, normal and low latency as the collector runs them)
    are dropped with their residuals; the cross-node point-to-point (GPU -> NIC -> NIC -> GPU,
    one GPU per node) is the one fit kept."""
    p = profile_for(device)
    assert _fits(p) == {"send_recv.inter.2"}
    borrowed = {k for k in p.uncertainty if k.startswith("collective.")}
    borrowed |= {fe.table for fe in p.fit_errors if fe.table.startswith("collective.")}
    assert borrowed == {"collective.send_recv.inter.2"}
    assert "point-to-point" in (p.notes or "")


def test_a100_pcie_borrows_no_collective_fit():
    """The A100 SXM4 80GB reference has intra-node NCCL fits only (NVSwitch): none is borrowed
    for the NVLink-bridge PCIe card."""
    assert _fits(reference_profile("a100-sxm4-80gb")) and not _fits(profile_for("a100-pcie-80gb"))


@pytest.mark.parametrize("device", ["gh200", "h100-sxm5-96gb"])
def test_the_same_scale_up_fabric_keeps_every_fit(device):
    """NVLink 4 / NVSwitch like the H100 SXM5 80GB: every fit kept, the DeepEP internode ones
    too."""
    p = profile_for(device)
    assert _fits(p) == H100_INTRA | H100_DEEPEP_INTER | {"send_recv.inter.2"}
    assert {k for k in p.uncertainty if k.startswith("collective.")} == {
        f"collective.{k}" for k in _fits(p)}


def _mismatch(pred) -> list[str]:
    return [w for w in pred.warnings if "was measured on" in w]


def test_a_borrowed_profile_is_not_called_a_mismatch():
    """mi325x borrows mi300x's reference (shipped, or given as --calibration / calibration:
    file): the output names the proxy, and no line says the profile is another device's."""
    shipped = predict(_decode("mi325x"))
    assert shipped.calibration["id"] == "mi300x.reference@mi325x" and not _mismatch(shipped)
    path = str(registry.data_dir("calibration") / "mi300x.reference.json")
    explicit = predict({**_decode("mi325x"), "calibration": path})
    assert explicit.calibration["id"] == "mi300x.reference@mi325x" and not _mismatch(explicit)
    assert device_mismatch(profile_for("h100-pcie-80gb"), "h100-pcie-80gb") == []


def test_a_real_mismatch_still_warns():
    """Another device's profile that is not the proxy (H200's for the MI325X; H100 SXM5's for
    the A100 PCIe), and the proxy's profile used as it is (not borrowed: rates not rescaled),
    keep the one line."""
    path = str(registry.data_dir("calibration") / "h200-sxm-141gb.reference.json")
    pred = predict({**_decode("mi325x"), "calibration": path})
    assert _mismatch(pred) == ["calibration profile 'h200-sxm-141gb.reference' was measured on "
                               "'h200-sxm-141gb', not on 'mi325x': its efficiencies describe "
                               "'h200-sxm-141gb'"]
    assert len(device_mismatch(reference_profile("h100-sxm5-80gb"), "a100-pcie-80gb")) == 1
    raw = reference_profile("mi300x")  # the proxy's own, as measured
    assert len(device_mismatch(raw, "mi325x")) == 1
    # borrowed for another device: not this one's proxy profile
    assert len(device_mismatch(profile_for("h100-pcie-80gb"), "h100-nvl-94gb")) == 1
