"""The device a profile describes when it has no hardware_specs entry (a CPU, a machine
measured by ``perfmodel calibrate``): a stand-in DeviceSpec built from measured peaks."""

from __future__ import annotations

from ...profile import CalibrationProfile
from ...specs.common import Source
from ...specs.hardware import DeviceSpec


def stand_in_device(peaks: dict[str, float], bw: float | None, facts: dict) -> DeviceSpec:
    """A stand-in DeviceSpec for a machine without a hardware_specs entry."""
    peak = {k: v for k, v in peaks.items() if k in ("fp32", "tf32", "fp16", "bf16", "fp8",
                                                     "int8", "int4", "fp64")}
    if "fp32" not in peak:
        peak["fp32"] = max(peak.values()) if peak else 1.0
    return DeviceSpec(id="calibration-host", kind="cpu", vendor=str(facts.get("vendor", "host")),
                      name=str(facts.get("name", "measured host")), peak_tflops=peak,
                      memory_gb=float(facts.get("memory_gb") or 1.0),
                      memory_bandwidth_gbps=bw or 1.0,
                      sources=[Source(title="measured by perfmodel calibrate",
                                      url="local://perfmodel-calibrate")])


def host_device(profile: CalibrationProfile) -> DeviceSpec:
    """The device a profile was fitted on: its hardware_specs entry, else a stand-in built
    from the profile's measured peaks."""
    if profile.device:
        from ...specs import registry

        return registry.get_device(profile.device)
    return stand_in_device(profile.peak_tflops, profile.memory_bandwidth_gbps, profile.device_facts)
