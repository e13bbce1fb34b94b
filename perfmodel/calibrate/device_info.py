"""Facts about the measured device: NVML for NVIDIA GPUs, /proc and /sys for CPUs.

Everything here degrades to a clear record instead of an exception: no NVML library, no GPU,
a query the GPU does not support (GeForce cards lack several) all become ``None`` fields or an
``{"nvml": "unavailable", "error": ...}`` record. NVML is the ``nvidia-ml-py`` package (module
``pynvml``); without a driver ``nvmlInit`` raises ``NVMLError_LibraryNotFound``.
"""

from __future__ import annotations

import os
import platform
import re
import threading
import time
from functools import cache
from pathlib import Path

GIB = 1024**3

# Clock-event ("throttle") reasons that lower the clocks below what the workload asks for.
# GpuIdle and the clock settings are not slow-downs (nvml.h, nvmlClocksEventReason*).
SLOWDOWN_REASONS = ("SwPowerCap", "HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown",
                    "HwPowerBrakeSlowdown")
OTHER_REASONS = ("GpuIdle", "ApplicationsClocksSetting", "SyncBoost", "DisplayClockSetting")


# ---- device id matching ------------------------------------------------------------------
def _norm(name: str) -> str:
    return " ".join(name.lower().split())


@cache
def _name_table() -> list[dict]:
    from ..paths import data_dir
    from ..specs.registry import read_mapping

    return read_mapping(data_dir("hardware_specs") / "nvml_device_names.json")["names"]


def match_device(name: str | None, memory_bytes: int | None = None) -> str | None:
    """The hardware_specs id of an NVML device name (hardware_specs/nvml_device_names.json), or None."""
    if not name:
        return None
    for entry in _name_table():
        if _norm(entry["nvml_name"]) != _norm(name):
            continue
        bounds = entry.get("memory_gib")
        if bounds and memory_bytes is not None and not (
                bounds[0] <= memory_bytes / GIB <= bounds[1]):
            continue
        return entry["device"]
    return None


# ---- NVML ----------------------------------------------------------------------------------
class Nvml:
    """An NVML session; ``ok`` is False (with ``error``) when NVML cannot start."""

    def __init__(self) -> None:
        self.ok, self.error, self._nv = False, None, None
        try:
            import pynvml
        except ImportError:
            self.error = "nvidia-ml-py (pynvml) is not installed"
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as err:
            self.error = f"{type(err).__name__}: {err}"
            return
        self.ok, self._nv = True, pynvml

    def close(self) -> None:
        if self.ok:
            self._q(self._nv.nvmlShutdown)
            self.ok = False

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _q(self, fn, *args):
        """One NVML query; None when the device or driver does not support it."""
        try:
            value = fn(*args)
        except self._nv.NVMLError:
            return None
        return value.decode() if isinstance(value, bytes) else value

    def handle(self, index: int = 0, uuid: str | None = None):
        """The NVML handle of a CUDA device: by UUID (robust to CUDA_VISIBLE_DEVICES), else index."""
        if not self.ok:
            return None
        if uuid:
            h = self._q(self._nv.nvmlDeviceGetHandleByUUID, uuid)
            if h is not None:
                return h
        return self._q(self._nv.nvmlDeviceGetHandleByIndex, index)

    def device_facts(self, handle) -> dict:
        nv, q = self._nv, self._q
        mem = q(nv.nvmlDeviceGetMemoryInfo, handle)
        cc = q(nv.nvmlDeviceGetCudaComputeCapability, handle)
        links = [q(nv.nvmlDeviceGetNvLinkState, handle, i)
                 for i in range(nv.NVML_NVLINK_MAX_LINKS)]
        name = q(nv.nvmlDeviceGetName, handle)
        power_limit = q(nv.nvmlDeviceGetPowerManagementLimit, handle)
        power = q(nv.nvmlDeviceGetPowerUsage, handle)
        facts = {
            "name": name,
            "uuid": q(nv.nvmlDeviceGetUUID, handle),
            "driver_version": q(nv.nvmlSystemGetDriverVersion),
            "cuda_driver_version": q(nv.nvmlSystemGetCudaDriverVersion),
            "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
            "memory_total_bytes": mem.total if mem else None,
            "sm_clock_mhz": q(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
            "sm_clock_max_mhz": q(nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_SM),
            "mem_clock_mhz": q(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM),
            "mem_clock_max_mhz": q(nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_MEM),
            "power_limit_w": power_limit / 1000 if power_limit is not None else None,
            "power_draw_w": power / 1000 if power is not None else None,
            "temperature_c": q(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
            "pcie_gen": q(nv.nvmlDeviceGetCurrPcieLinkGeneration, handle),
            "pcie_width": q(nv.nvmlDeviceGetCurrPcieLinkWidth, handle),
            "pcie_gen_max": q(nv.nvmlDeviceGetMaxPcieLinkGeneration, handle),
            "pcie_width_max": q(nv.nvmlDeviceGetMaxPcieLinkWidth, handle),
            "nvlink_links_up": sum(1 for s in links if s == nv.NVML_FEATURE_ENABLED),
            "clock_event_reasons": self.reasons(handle),
        }
        facts["device_id"] = match_device(name, facts["memory_total_bytes"])
        return facts

    def reasons(self, handle) -> list[str] | None:
        """Names of the active clock-event (throttle) reasons."""
        nv = self._nv
        getter = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or nv.nvmlDeviceGetCurrentClocksThrottleReasons)
        mask = self._q(getter, handle)
        if mask is None:
            return None
        return [r for r in SLOWDOWN_REASONS + OTHER_REASONS
                if mask & getattr(nv, f"nvmlClocksThrottleReason{r}", 0)]

    def sample(self, handle) -> dict:
        """The fast-changing values, sampled during a run."""
        nv, q = self._nv, self._q
        power = q(nv.nvmlDeviceGetPowerUsage, handle)
        return {"sm_clock_mhz": q(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
                "mem_clock_mhz": q(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM),
                "power_w": power / 1000 if power is not None else None,
                "temperature_c": q(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
                "reasons": self.reasons(handle) or []}


def gpu_facts(index: int = 0, uuid: str | None = None) -> dict:
    """NVML facts of one GPU, or ``{"nvml": "unavailable", "error": ...}``; never raises."""
    with Nvml() as nvml:
        if not nvml.ok:
            return {"nvml": "unavailable", "error": nvml.error}
        handle = nvml.handle(index, uuid)
        if handle is None:
            return {"nvml": "unavailable", "error": f"no NVML device for CUDA device {index}"}
        count = nvml._q(nvml._nv.nvmlDeviceGetCount)
        return {"nvml": "ok", "gpu_count": count, **nvml.device_facts(handle)}


# ---- CPU -------------------------------------------------------------------------------------
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni",
             "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "sve", "asimd")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_mhz(cpuinfo: str | None = None) -> float | None:
    """Mean current frequency over cores: cpufreq in /sys, else "cpu MHz" of /proc/cpuinfo."""
    freqs = []
    for f in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        text = _read(f)
        if text and text.strip().isdigit():
            freqs.append(int(text) / 1000)
    if not freqs:
        cpuinfo = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo") or ""
        freqs = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
    return round(sum(freqs) / len(freqs), 1) if freqs else None


def cpu_caches() -> dict[str, int]:
    """Total bytes per cache level over the cores this process can see, from /sys."""
    out: dict[str, int] = {}
    ncpu = os.cpu_count() or 1
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level, kind, size = (_read(idx / f) for f in ("level", "type", "size"))
        shared = _read(idx / "shared_cpu_list")
        if not (level and kind and size) or kind.strip() == "Instruction":
            continue
        m = re.match(r"(\d+)([KMG]?)", size.strip())
        if not m:
            continue
        nbytes = int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": GIB}[m.group(2)]
        sharing = _count_cpus(shared) if shared else 1
        out[f"L{level.strip()}"] = nbytes * max(1, ncpu // max(1, sharing))
    return out


def _count_cpus(cpu_list: str) -> int:
    n = 0
    for part in cpu_list.strip().split(","):
        lo, _, hi = part.partition("-")
        n += int(hi) - int(lo) + 1 if hi else 1
    return n


def cpu_facts() -> dict:
    """Model, cores, threads, memory, caches, ISA flags of interest, frequency; never raises."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    vendor = re.search(r"^vendor_id\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.M)
    flagset = set(flags.group(1).split()) if flags else set()
    cores = {(p, c) for p, c in re.findall(
        r"^physical id\s*:\s*(\d+)$.*?^core id\s*:\s*(\d+)$", cpuinfo, re.M | re.S)}
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo") or "", re.M)
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    return {
        "model_name": model.group(1).strip() if model else platform.processor() or None,
        "vendor": vendor.group(1).strip() if vendor else None,
        "machine": platform.machine(),
        "cores": len(cores) or None,
        "logical_cpus": os.cpu_count(),
        "memory_total_bytes": int(mem.group(1)) * 1024 if mem else None,
        "caches_bytes": cpu_caches(),
        "isa_flags": [f for f in CPU_FLAGS if f in flagset],
        "cpu_mhz": cpu_mhz(cpuinfo),
        "cpu_max_mhz": int(max_khz) / 1000 if max_khz and max_khz.strip().isdigit() else None,
    }


# ---- sampling during a run -------------------------------------------------------------------
class Monitor:
    """Samples clocks (and, on a GPU, power, temperature and throttle reasons) in a thread.

    ``window()`` returns a summary of the samples since the previous call: the min and max of
    each number and the union of the reasons; the run attaches it to each point's record.
    """

    def __init__(self, sample, period_s: float = 0.2) -> None:
        self._sample, self._period = sample, period_s
        self._samples: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="perfmodel-monitor")

    def __enter__(self) -> Monitor:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _take(self) -> None:
        try:
            s = self._sample()
        except Exception:  # a failed sample must never stop a calibration
            return
        with self._lock:
            self._samples.append(s)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._take()

    def window(self) -> dict:
        self._take()
        with self._lock:
            samples, self._samples = self._samples, []
        return summarize(samples)


def summarize(samples: list[dict]) -> dict:
    out: dict = {"samples": len(samples)}
    keys = sorted({k for s in samples for k in s if k != "reasons"})
    for key in keys:
        vals = [s[key] for s in samples if isinstance(s.get(key), int | float)]
        if vals:
            out[f"{key}_min"], out[f"{key}_max"] = min(vals), max(vals)
    if any("reasons" in s for s in samples):
        reasons = sorted({r for s in samples for r in s.get("reasons", [])})
        out["reasons"] = reasons
        out["throttled"] = any(r in SLOWDOWN_REASONS for r in reasons)
    return out


def cpu_sampler():
    return lambda: {"cpu_mhz": cpu_mhz()}


def gpu_sampler(nvml: Nvml, handle):
    return lambda: nvml.sample(handle)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
