"""Hardware schemas: devices (GPUs and other accelerators), interconnects, node presets.

One YAML file per item under ``hardware_specs/{devices,interconnects,nodes}/``; every number
is traceable to a source (``sources`` with title and URL; ``field_sources`` maps groups of
fields to source ids). Conventions (from shared/reference/hardware_reference.md):

* FLOP/s are dense (no 2:4 sparsity), in TFLOP/s (TOPS for int8/int4), decimal units.
* fp16/bf16/fp8 on GeForce cards are the FP32-accumulate tensor rates (what cuBLAS GEMMs in
  PyTorch use), i.e. half the marketed FP16-accumulate rate.
* Bandwidths are GB/s = 1e9 B/s. Link bandwidths are stored per direction.
* GPU memory capacity ``memory_gb`` is the vendor's figure, which for GPU memory is binary
  (an "80 GB" A100 reports 81920 MiB in nvidia-smi), so ``memory_bytes`` = memory_gb * 2**30.
* What the driver reports is less: ``usable_memory_gib`` is the total that CUDA reports
  (cudaMemGetInfo / torch.cuda.mem_get_info, e.g. 79.22 GiB on an "80 GB" H100 SXM), the figure
  serving engines budget from (vLLM's gpu_memory_utilization multiplies it);
  ``nvidia_smi_memory_mib`` is nvidia-smi's memory.total (81559 MiB on the same H100). When a file
  gives neither, ``usable_memory_bytes`` falls back to nvidia-smi's figure, then to the nominal
  capacity (``usable_memory_source`` says which).
"""


from itertools import pairwise
from typing import Literal

from pydantic import Field, model_validator

from ..errors import SpecError
from .common import Source, Strict
from .types import MAX_GPUS_PER_NODE, MAX_NICS_PER_NODE, Bool, Float, Int

PEAK_KEYS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4")


class ScaleUpLink(Strict):
    """The GPU's own high-bandwidth peer link (NVLink, Infinity Fabric)."""

    interconnect: str  # id of a file in hardware_specs/interconnects/
    links: Int | None = Field(default=None, ge=1)
    bandwidth_gbps_bidir: Float = Field(gt=0)


class CalibrationProxy(Strict):
    """The device whose measured calibration profile this one borrows because it is the same
    silicon (same die, same kernels), with what differs (memory, clocks, power, fabric).

    A profile stores efficiencies as fractions of the device's own roofline (peak FLOP/s,
    HBM bandwidth, link bandwidth: ``perfmodel.profile``), so the borrowed curves are applied
    to this device's own peaks and bandwidths; the few absolute rates a profile holds are
    rescaled (``perfmodel.specs.registry.borrow_profile``; docs/calibration.md "Calibration by
    proxy"). Only for the same die: a different die or architecture is no proxy."""

    device: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")  # a device with its own profile
    why: str = Field(min_length=10)  # the same silicon, as the datasheet says it
    differs: str = Field(min_length=3)  # what is not the same (memory, clocks, TDP, fabric)
    sources: list[str] = Field(min_length=1)  # ids of this file's ``sources`` that say so


class DeviceSpec(Strict):
    """One accelerator (or a CPU used as a calibration target)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    kind: Literal["gpu", "accelerator", "cpu"] = "gpu"
    vendor: str
    name: str
    architecture: str | None = None
    chip: str | None = None
    compute_capability: str | None = None
    sm_count: Int | None = Field(default=None, ge=1)  # SMs (NVIDIA) or CUs (AMD)
    boost_clock_mhz: Float | None = Field(default=None, gt=0)
    peak_tflops: dict[str, Float | None]  # dense, keys from PEAK_KEYS; int8/int4 in TOPS
    # the block-scaled 4-bit formats the ``fp4`` peak runs (perfmodel.formats.native_formats):
    # Blackwell runs NVFP4 and MXFP4; CDNA 4 scales by e8m0 per 32 (OCP MX) only
    fp4_formats: list[Literal["nvfp4", "mxfp4"]] = Field(default_factory=lambda: ["nvfp4",
                                                                               "mxfp4"])
    memory_gb: Float = Field(gt=0)
    # total device memory as CUDA reports it (cudaMemGetInfo), GiB; None: no source found
    usable_memory_gib: Float | None = Field(default=None, gt=0)
    nvidia_smi_memory_mib: Float | None = Field(default=None, gt=0)  # nvidia-smi memory.total
    memory_type: str | None = None
    memory_bandwidth_gbps: Float = Field(gt=0)
    l2_cache_mb: Float | None = Field(default=None, ge=0)
    smem_per_sm_kb: Float | None = Field(default=None, gt=0)
    tdp_w: Float | None = Field(default=None, gt=0)
    # settable board power limits (nvidia-smi -q "Min/Max Power Limit"; max default: tdp_w)
    # and board power with no kernel running; read by perfmodel.power
    min_power_limit_w: Float | None = Field(default=None, gt=0)
    max_power_limit_w: Float | None = Field(default=None, gt=0)
    idle_power_w: Float | None = Field(default=None, gt=0)
    host_link: str | None = None  # interconnect id, e.g. pcie-gen4-x16
    scale_up: ScaleUpLink | None = None
    default_node: str | None = None  # node preset id used when a scenario names none
    # the same silicon as a device with a measured profile: its profile is borrowed
    # (``CalibrationProxy``; perfmodel.specs.registry.profile_for)
    calibration_proxy: CalibrationProxy | None = None
    sources: list[Source] = Field(min_length=1)
    field_sources: dict[str, list[str]] = Field(default_factory=dict)
    notes: str | None = None

    @model_validator(mode="after")
    def _check_peaks(self) -> "DeviceSpec":
        unknown = set(self.peak_tflops) - set(PEAK_KEYS)
        if unknown:
            raise SpecError(
                f"peak_tflops has unknown dtype(s) {sorted(unknown)}; valid: {list(PEAK_KEYS)}"
            )
        for key, value in self.peak_tflops.items():
            if value is not None and value <= 0:
                raise SpecError(f"peak_tflops.{key} must be > 0 or null, got {value}")
        for key, value in (("usable_memory_gib", self.usable_memory_gib),
                           ("nvidia_smi_memory_mib", self.nvidia_smi_memory_mib and
                            self.nvidia_smi_memory_mib / 1024)):
            if value is not None and value > self.memory_gb:
                raise SpecError(f"{key} ({value:g} GiB) must not exceed memory_gb "
                                f"({self.memory_gb:g}): the driver reports at most the nominal "
                                "capacity")
        self._check_power()
        self._check_proxy()
        return self

    def _check_proxy(self) -> None:
        proxy = self.calibration_proxy
        if proxy is None:
            return
        if proxy.device == self.id:
            raise SpecError(f"calibration_proxy.device: {self.id!r} cannot be its own proxy")
        known = {s.id for s in self.sources}
        missing = [s for s in proxy.sources if s not in known]
        if missing:
            raise SpecError(f"calibration_proxy.sources: {missing} are not ids of this file's "
                            f"sources ({sorted(k for k in known if k)})")

    def _check_power(self) -> None:
        """idle < min limit <= TDP <= max limit, where given."""
        order = [(k, getattr(self, k)) for k in
                 ("idle_power_w", "min_power_limit_w", "tdp_w", "max_power_limit_w")]
        given = [(k, v) for k, v in order if v is not None]
        for (k1, v1), (k2, v2) in pairwise(given):
            if v1 > v2:
                raise SpecError(f"{k1} ({v1:g} W) must not exceed {k2} ({v2:g} W)")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 2**30

    @property
    def usable_memory_bytes(self) -> float:
        """Device memory as the driver reports it to CUDA: the sourced ``usable_memory_gib``,
        else nvidia-smi's memory.total, else the nominal capacity (see the module docstring)."""
        if self.usable_memory_gib is not None:
            return self.usable_memory_gib * 2**30
        if self.nvidia_smi_memory_mib is not None:
            return self.nvidia_smi_memory_mib * 2**20
        return self.memory_bytes

    @property
    def usable_memory_source(self) -> str:
        """Which figure ``usable_memory_bytes`` rests on: cuda, nvidia-smi or nominal."""
        if self.usable_memory_gib is not None:
            return "cuda"
        return "nvidia-smi" if self.nvidia_smi_memory_mib is not None else "nominal"

    @property
    def memory_bandwidth(self) -> float:
        """Peak memory bandwidth in B/s."""
        return self.memory_bandwidth_gbps * 1e9

    def supported_dtypes(self) -> list[str]:
        return [k for k in PEAK_KEYS if self.peak_tflops.get(k)]

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s (OP/s for integer formats) for matrix math in ``dtype``.

        A format without a hardware path falls back to the next wider one that the device
        runs (bf16 on V100 runs at the fp32 rate: Volta tensor cores take fp16 only; fp8 on
        A100 at the 16-bit rate), because frameworks upcast in that case; int4 weight-only
        kernels compute in fp16/bf16.
        """
        for key in _FALLBACK.get(dtype, (dtype,)):
            value = self.peak_tflops.get(key)
            if value:
                return value * 1e12
        if not self.supported_dtypes():
            raise SpecError(
                f"device {self.id!r} has no sourced peak FLOP/s (every peak_tflops entry of "
                f"its file, hardware_specs/devices/{self.id}.yaml, is null; its notes say why), "
                "so it cannot be modelled: use another device, or add a sourced peak to its file")
        raise SpecError(
            f"device {self.id!r} has no peak for dtype {dtype!r}; "
            f"it defines {self.supported_dtypes()}"
        )


_FALLBACK: dict[str, tuple[str, ...]] = {
    "fp32": ("fp32",),
    "tf32": ("tf32", "fp32"),
    "fp16": ("fp16", "fp32"),
    "bf16": ("bf16", "fp32"),
    "fp8": ("fp8", "bf16", "fp16", "fp32"),
    "int8": ("int8", "fp16", "bf16", "fp32"),
    "int4": ("int4", "int8", "fp16", "bf16", "fp32"),
    # Block-scaled formats run on the tensor cores of their element type: NVFP4 and MXFP4 at
    # the fp4 rate (Blackwell, CDNA 4), fp8 with block scales at the fp8 rate. Without fp4
    # tensor cores, engines run fp4 weights through fp8 or 16-bit math (as int4 -> int8).
    "nvfp4": ("fp4", "fp8", "bf16", "fp16", "fp32"),
    "mxfp4": ("fp4", "fp8", "bf16", "fp16", "fp32"),
    "fp8_block": ("fp8", "bf16", "fp16", "fp32"),
    # MXFP8 training (TE MXFP8BlockScaling: e4m3 elements, one e8m0 scale per 32) runs the fp8
    # tensor cores' block-scaled MMA at the fp8 rate (training.precision mxfp8; MFU peak)
    "mxfp8": ("fp8", "bf16", "fp16", "fp32"),
}


class InterconnectSpec(Strict):
    """A link or fabric. Bandwidth is per direction: per GPU for scale-up fabrics, per port
    (NIC) for scale-out networks and per x16 slot for PCIe."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    kind: Literal[
        "nvlink", "nvswitch", "pcie", "infiniband", "roce", "ethernet", "infinity-fabric",
        "nvlink-c2c", "efa",
    ]
    name: str
    bandwidth_gbps: Float = Field(gt=0)  # per direction, GB/s
    latency_us: Float | None = Field(default=None, gt=0)
    nvls: Bool = False  # in-switch reductions (NVLink SHARP)
    # GPUs that this fabric connects all-to-all (8 for an HGX NVSwitch board, 2 for NVLink
    # bridge pairs); None = no limit. Traffic between GPUs outside one domain falls back to
    # the device's host link (PCIe).
    domain_size: Int | None = Field(default=None, ge=2)
    # How the GPUs of one domain are wired: "switch" (NVSwitch: every pair at full
    # bandwidth), "full-mesh" (one direct link per pair, e.g. AMD Infinity Fabric on an
    # 8-GPU board), "partial-mesh" (not every pair is directly linked, e.g. the DGX-1
    # hybrid cube-mesh), "bridge" (NVLink bridge pairs), "point-to-point" (one link, e.g.
    # CPU-GPU NVLink-C2C), "tree" (PCIe through root complexes/switches), "network".
    topology: Literal[
        "switch", "full-mesh", "partial-mesh", "bridge", "point-to-point", "tree", "network",
    ] | None = None
    # Per-direction bandwidth between ONE pair of GPUs when it is lower than
    # ``bandwidth_gbps`` (a full mesh gives each pair a single link: 64 GB/s on MI300X vs
    # 448 GB/s aggregate per GPU). None = a pair can use the full ``bandwidth_gbps``.
    peer_bandwidth_gbps: Float | None = Field(default=None, gt=0)
    # Channels (one CTA, i.e. one SM, each) of an NCCL collective whose communicator this
    # fabric carries (the scale-out one's when the group spans nodes), as NCCL logs show them
    # at its defaults; None = not known (parallel_comm.nccl_sm_share charges nothing)
    nccl_channels: Int | None = Field(default=None, ge=1)
    sources: list[Source] = Field(min_length=1)
    field_sources: dict[str, list[str]] = Field(default_factory=dict)
    notes: str | None = None

    @property
    def bandwidth(self) -> float:
        """Per-direction bandwidth in B/s."""
        return self.bandwidth_gbps * 1e9


class NodeSpec(Strict):
    """A server preset: GPUs per node, intra-node fabric, scale-out NICs, host memory."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    device: str | None = None  # device id this preset is built around (None: any)
    gpus_per_node: Int = Field(ge=1, le=MAX_GPUS_PER_NODE)
    # GPUs under one operating system (one host: CUDA IPC, shared memory) when a "node" is a
    # larger NVLink domain: a GB200 / GB300 NVL72 rack is one node of 72 GPUs but 18 compute
    # trays of 4 GPUs, each its own host. None: the node is one host (a DGX / HGX board).
    # The engines' CUDA-IPC all-reduce kernels stop at a host (engine_comm.custom_eligible).
    gpus_per_host: Int | None = Field(default=None, ge=1, le=MAX_GPUS_PER_NODE)
    intra_node: str  # interconnect id
    inter_node: str | None = None  # interconnect id of one NIC port
    nics_per_node: Int = Field(default=0, ge=0, le=MAX_NICS_PER_NODE)
    host_memory_gb: Float | None = Field(default=None, gt=0)
    host_memory_bandwidth_gbps: Float | None = Field(default=None, gt=0)
    nvme_read_gbps: Float | None = Field(default=None, gt=0)
    sources: list[Source] = Field(min_length=1)
    field_sources: dict[str, list[str]] = Field(default_factory=dict)
    notes: str | None = None

    @model_validator(mode="after")
    def _host_in_node(self) -> "NodeSpec":
        if self.gpus_per_host is not None and self.gpus_per_node % self.gpus_per_host:
            raise SpecError(f"node {self.id!r}: gpus_per_host {self.gpus_per_host} must divide "
                            f"gpus_per_node {self.gpus_per_node} (whole hosts per node)")
        return self

    @property
    def host_gpus(self) -> int:
        """GPUs per host (``gpus_per_host``, default the whole node)."""
        return self.gpus_per_host or self.gpus_per_node
