"""Shipped hardware data (hardware_specs/): presence, citations, cross-references and spot checks.

The spot-check figures below are typed in here from the vendor documents cited next to each one,
independently of the YAML files, so a wrong edit to a spec file (a sparse figure taken for a dense
one, a bidirectional bandwidth stored as per-direction, a typo) fails here.
"""

from __future__ import annotations

import math
import re

import pytest

from perfmodel.errors import SpecError
from perfmodel.paths import data_dir
from perfmodel.specs import registry
from perfmodel.specs.hardware import PEAK_KEYS, DeviceSpec, InterconnectSpec, NodeSpec, ScaleUpLink

REQUIRED_DEVICES = [
    "v100-sxm2-32gb", "a100-sxm4-40gb", "a100-sxm4-80gb", "a100-pcie-80gb", "h100-sxm5-80gb",
    "h100-pcie-80gb", "h100-nvl-94gb", "h200-sxm-141gb", "gh200", "b200", "l40s", "l4", "a10g",
    "a10", "t4", "rtx-a6000", "rtx-6000-ada", "rtx-3090", "rtx-3090-ti", "rtx-4080", "rtx-4090",
    "rtx-5090", "mi250x", "mi300x", "mi325x", "b300", "gb200", "gb300", "mi355x",
]
REQUIRED_INTERCONNECTS = [
    "nvlink2-hybrid-cube-mesh", "nvlink3-nvswitch", "nvlink4-nvswitch", "nvlink5-nvswitch",
    "nvlink5-nvl72", "nvlink3-bridge", "nvlink4-bridge", "nvlink-c2c", "pcie-gen3-x16",
    "pcie-gen4-x16", "pcie-gen5-x16", "ib-edr-100", "ib-hdr-200", "ib-ndr-400", "ib-xdr-800",
    "roce-100", "roce-200", "roce-400", "infinity-fabric-mi250x", "infinity-fabric-mi300x",
    "infinity-fabric-mi355x",
]
REQUIRED_NODES = [
    "dgx-a100", "dgx-h100", "hgx-h200", "dgx-b200", "dgx-1-v100", "mi300x-platform",
    "pcie-workstation", "l40s-server", "gh200-node", "hgx-b300", "gb200-nvl72", "gb300-nvl72",
    "mi355x-platform",
]

HOST_LINK_KINDS = {"pcie", "nvlink-c2c"}
SCALE_UP_KINDS = {"nvlink", "nvswitch", "infinity-fabric"}
SCALE_OUT_KINDS = {"infiniband", "roce", "ethernet", "efa"}
URL = re.compile(r"^https?://\S+$")


def _all_specs():
    for table in (registry.devices(), registry.interconnects(), registry.nodes()):
        yield from table.items()


ALL_IDS = [
    pytest.param(spec, id=f"{type(spec).__name__}:{key}") for key, spec in _all_specs()
]


# ---------------------------------------------------------------------------------------------
# Presence and loading
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "required"),
    [
        (registry.devices, REQUIRED_DEVICES),
        (registry.interconnects, REQUIRED_INTERCONNECTS),
        (registry.nodes, REQUIRED_NODES),
    ],
)
def test_required_ids_exist(table, required):
    missing = sorted(set(required) - set(table()))
    assert not missing, f"missing spec files: {missing}"


@pytest.mark.parametrize(
    ("folder", "table"),
    [
        ("devices", registry.devices),
        ("interconnects", registry.interconnects),
        ("nodes", registry.nodes),
    ],
)
def test_every_file_is_loaded(folder, table):
    path = data_dir("hardware_specs") / folder
    stray = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix != ".yaml")
    assert not stray, f"files the registry would ignore (only *.yaml load): {stray}"
    stems = {p.stem for p in path.glob("*.yaml")}
    assert stems == set(table())


# ---------------------------------------------------------------------------------------------
# Citations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_IDS)
def test_sources_have_title_and_single_http_url(spec):
    ids = [s.id for s in spec.sources]
    assert all(ids), "every source needs an id so field_sources can point at it"
    assert len(ids) == len(set(ids)), f"duplicate source ids {ids}"
    for s in spec.sources:
        assert s.title.strip(), f"source {s.id} has no title"
        assert URL.match(s.url), f"source {s.id}: url must be one http(s) URL, got {s.url!r}"


def _field_tokens(spec) -> list[str]:
    return [t.strip() for key in spec.field_sources for t in key.split(",") if t.strip()]


def _valid_field_path(spec, token: str) -> bool:
    head, _, rest = token.partition(".")
    if head not in type(spec).model_fields:
        return False
    if not rest:
        return True
    if head == "peak_tflops":
        return rest in PEAK_KEYS
    if head == "scale_up":
        return rest in ScaleUpLink.model_fields
    return False


@pytest.mark.parametrize("spec", ALL_IDS)
def test_field_sources_point_at_real_fields_and_sources(spec):
    source_ids = {s.id for s in spec.sources}
    assert spec.field_sources, "field_sources is empty: say which source backs which field"
    for key, ids in spec.field_sources.items():
        assert ids, f"field_sources[{key!r}] lists no source"
        unknown = sorted(set(ids) - source_ids)
        assert not unknown, f"field_sources[{key!r}] names {unknown}, not in this file's sources"
    bad = [t for t in _field_tokens(spec) if not _valid_field_path(spec, t)]
    assert not bad, f"field_sources keys that are not fields of {type(spec).__name__}: {bad}"


def _sourced_paths(spec) -> list[str]:
    """Every non-null number (and link choice) of a spec, as a field path."""
    paths: list[str] = []
    if isinstance(spec, DeviceSpec):
        for name in ("sm_count", "boost_clock_mhz", "memory_gb", "memory_bandwidth_gbps",
                     "l2_cache_mb", "smem_per_sm_kb", "tdp_w", "host_link"):
            if getattr(spec, name) is not None:
                paths.append(name)
        paths += [f"peak_tflops.{k}" for k, v in spec.peak_tflops.items() if v is not None]
        if spec.scale_up is not None:
            paths.append("scale_up.bandwidth_gbps_bidir")
            if spec.scale_up.links is not None:
                paths.append("scale_up.links")
    elif isinstance(spec, InterconnectSpec):
        for name in ("bandwidth_gbps", "latency_us", "domain_size", "peer_bandwidth_gbps"):
            if getattr(spec, name) is not None:
                paths.append(name)
    else:
        # gpus_per_node / nics_per_node of generic presets are configuration choices that the
        # notes explain; measured host figures must be sourced.
        for name in ("host_memory_gb", "host_memory_bandwidth_gbps", "nvme_read_gbps"):
            if getattr(spec, name) is not None:
                paths.append(name)
    return paths


@pytest.mark.parametrize("spec", ALL_IDS)
def test_every_number_carries_a_source(spec):
    tokens = _field_tokens(spec)
    unsourced = [
        p for p in _sourced_paths(spec)
        if not any(p == t or p.startswith(t + ".") for t in tokens)
    ]
    assert not unsourced, f"values without an entry in field_sources: {unsourced}"


# ---------------------------------------------------------------------------------------------
# Cross-references and consistency
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", REQUIRED_DEVICES)
def test_device_references_resolve(device_id):
    d = registry.get_device(device_id)
    links = registry.interconnects()
    assert d.default_node in registry.nodes(), f"default_node {d.default_node!r} has no file"
    if d.host_link is not None:
        assert d.host_link in links
        assert links[d.host_link].kind in HOST_LINK_KINDS
    if d.scale_up is not None:
        assert d.scale_up.interconnect in links
        assert links[d.scale_up.interconnect].kind in SCALE_UP_KINDS


@pytest.mark.parametrize("node_id", sorted(registry.nodes()))
def test_node_references_resolve(node_id):
    n = registry.get_node(node_id)
    links = registry.interconnects()
    assert n.intra_node in links
    if n.device is not None:
        assert n.device in registry.devices()
    if n.inter_node is None:
        assert n.nics_per_node == 0, "NICs counted but no inter_node interconnect named"
    else:
        assert n.inter_node in links
        assert links[n.inter_node].kind in SCALE_OUT_KINDS
        assert n.nics_per_node >= 1
    domain = links[n.intra_node].domain_size
    if domain is not None and n.gpus_per_node > 1:
        assert n.gpus_per_node % domain == 0 or domain >= n.gpus_per_node


@pytest.mark.parametrize("device_id", REQUIRED_DEVICES)
def test_default_node_fits_the_device(device_id):
    d = registry.get_device(device_id)
    n = registry.get_node(d.default_node)
    assert n.device in (None, d.id), f"{n.id} is built for {n.device}, not {d.id}"
    own_links = {d.host_link, d.scale_up.interconnect if d.scale_up else None}
    assert n.intra_node in own_links, (
        f"{n.id} connects its GPUs with {n.intra_node}, which is neither the host link nor "
        f"the scale-up link of {d.id} ({sorted(x for x in own_links if x)})"
    )


@pytest.mark.parametrize(
    "device_id", [d for d in REQUIRED_DEVICES if registry.get_device(d).scale_up is not None]
)
def test_scale_up_per_direction_is_half_the_bidirectional_figure(device_id):
    d = registry.get_device(device_id)
    link = registry.get_interconnect(d.scale_up.interconnect)
    assert link.bandwidth_gbps == pytest.approx(d.scale_up.bandwidth_gbps_bidir / 2)


@pytest.mark.parametrize("device_id", REQUIRED_DEVICES)
def test_peaks_are_ordered_like_dense_tensor_rates(device_id):
    # Narrower formats never run slower than wider ones on the same tensor cores; a sparse
    # figure slipped in for one dtype usually breaks this order.
    p = registry.get_device(device_id).peak_tflops
    chain = [p.get(k) for k in ("tf32", "bf16", "fp8", "fp4")]
    present = [v for v in chain if v is not None]
    assert present == sorted(present)
    if p.get("fp16") and p.get("bf16"):
        assert p["fp16"] == pytest.approx(p["bf16"])


def test_device_without_any_peak_fails_loudly():
    # A10G: NVIDIA publishes no datasheet; the peaks are null on purpose.
    with pytest.raises(SpecError):
        registry.get_device("a10g").peak_flops("bf16")


@pytest.mark.parametrize("device_id", [d for d in REQUIRED_DEVICES if d != "a10g"])
def test_every_other_device_has_a_half_precision_peak(device_id):
    assert registry.get_device(device_id).peak_flops("fp16") > 1e12


# ---------------------------------------------------------------------------------------------
# Spot checks against datasheet figures (typed in from the cited documents, not from the YAML)
# ---------------------------------------------------------------------------------------------

SPOT_CHECKS = [
    # NVIDIA H100 Tensor Core GPU Architecture whitepaper, Table 3: H100 SXM5 BF16 989.4 dense
    # (1978.9 with sparsity), FP8 1978.9 dense; H100 PCIe BF16 756 dense.
    ("h100-sxm5-80gb", "peak_tflops.bf16", 989.4),
    ("h100-sxm5-80gb", "peak_tflops.fp8", 1978.9),
    ("h100-pcie-80gb", "peak_tflops.bf16", 756),
    # NVIDIA H100 product page: SXM 80 GB HBM3 at 3.35 TB/s, 18 NVLinks 900 GB/s.
    ("h100-sxm5-80gb", "memory_bandwidth_gbps", 3350),
    ("h100-sxm5-80gb", "scale_up.bandwidth_gbps_bidir", 900),
    # NVIDIA H100 product page, NVL column: 94 GB at 3.9 TB/s.
    ("h100-nvl-94gb", "memory_gb", 94),
    ("h100-nvl-94gb", "memory_bandwidth_gbps", 3900),
    # NVIDIA A100 datasheet: 80GB SXM 2,039 GB/s, 80GB PCIe 1,935 GB/s; BF16 312 | 624*,
    # TF32 156 | 312* (* = with sparsity); NVLink 600 GB/s.
    ("a100-sxm4-80gb", "memory_bandwidth_gbps", 2039),
    ("a100-pcie-80gb", "memory_bandwidth_gbps", 1935),
    ("a100-sxm4-80gb", "peak_tflops.bf16", 312),
    ("a100-sxm4-80gb", "peak_tflops.tf32", 156),
    ("a100-sxm4-80gb", "scale_up.bandwidth_gbps_bidir", 600),
    # NVIDIA Ampere architecture in-depth blog, Table 3: A100 40GB HBM2 at 1555 GB/s.
    ("a100-sxm4-40gb", "memory_bandwidth_gbps", 1555),
    # NVIDIA H200 product page: 141 GB HBM3e at 4.8 TB/s.
    ("h200-sxm-141gb", "memory_gb", 141),
    ("h200-sxm-141gb", "memory_bandwidth_gbps", 4800),
    # NVIDIA exemplar-performance 'Peak Theoretical Throughput' (non-sparse) for B200:
    # BF16 2250, FP8 4500, NVFP4 9000; HGX B200 page: 180 GB, 7.7 TB/s, NVLink 1.8 TB/s.
    ("b200", "peak_tflops.bf16", 2250),
    ("b200", "peak_tflops.fp8", 4500),
    ("b200", "peak_tflops.fp4", 9000),
    ("b200", "memory_gb", 180),
    ("b200", "memory_bandwidth_gbps", 7700),
    ("b200", "scale_up.bandwidth_gbps_bidir", 1800),
    # Same exemplar table (non-sparse) for Blackwell Ultra and the Grace-Blackwell parts:
    # GB300 2450 / 4900 / NVFP4 14700, GB200 2450 / 4900 / 9800, B300 2250 / 4500 / 13500;
    # reference architectures: B300 270 GB, 7.7 TB/s, 1100 W; GB200 186 GB, 8 TB/s;
    # GB300 279 GB, 8 TB/s, up to 1,400 W. HGX B300 page: FP4 108 PF dense for 8 GPUs.
    ("b300", "peak_tflops.bf16", 2250),
    ("b300", "peak_tflops.fp8", 4500),
    ("b300", "peak_tflops.fp4", 108000 / 8),
    ("b300", "memory_gb", 270),
    ("b300", "memory_bandwidth_gbps", 7700),
    ("b300", "tdp_w", 1100),
    ("gb200", "peak_tflops.bf16", 2450),
    ("gb200", "peak_tflops.fp8", 4900),
    ("gb200", "peak_tflops.fp4", 9800),
    ("gb200", "memory_gb", 186),
    ("gb200", "memory_bandwidth_gbps", 8000),
    ("gb300", "peak_tflops.bf16", 2450),
    ("gb300", "peak_tflops.fp8", 4900),
    ("gb300", "peak_tflops.fp4", 14700),
    ("gb300", "memory_gb", 279),
    ("gb300", "memory_bandwidth_gbps", 8000),
    ("gb300", "tdp_w", 1400),
    # AMD MI355X (launch reports): 288 GB HBM3E, 8 TB/s, 1.4 kW, 10 PF FP4 dense, 5 PF FP8.
    ("mi355x", "memory_gb", 288),
    ("mi355x", "memory_bandwidth_gbps", 8000),
    ("mi355x", "tdp_w", 1400),
    ("mi355x", "peak_tflops.fp4", 10000),
    ("mi355x", "peak_tflops.fp8", 5000),
    # NVIDIA Tesla V100 (Ampere in-depth blog, Table 3): FP16 tensor 125, HBM2 900 GB/s;
    # DGX-1 V100 white paper: NVLink 2, 300 GB/s per GPU.
    ("v100-sxm2-32gb", "peak_tflops.fp16", 125),
    ("v100-sxm2-32gb", "memory_bandwidth_gbps", 900),
    ("v100-sxm2-32gb", "scale_up.bandwidth_gbps_bidir", 300),
    # AMD Instinct MI300X data sheet (dense): BF16 1307.4, FP8 2614.9; 192 GB HBM3, 5.3 TB/s.
    ("mi300x", "peak_tflops.bf16", 1307.4),
    ("mi300x", "peak_tflops.fp8", 2614.9),
    ("mi300x", "memory_gb", 192),
    ("mi300x", "memory_bandwidth_gbps", 5300),
    # AMD Instinct MI325X: 256 GB HBM3E, 6 TB/s; MI250X: 128 GB HBM2e, 3.2 TB/s, BF16 383.
    ("mi325x", "memory_gb", 256),
    ("mi325x", "memory_bandwidth_gbps", 6000),
    ("mi250x", "memory_bandwidth_gbps", 3200),
    ("mi250x", "peak_tflops.bf16", 383),
    # NVIDIA Ada whitepaper Appendix A, RTX 4090: FP16 tensor with FP32 accumulate 165.2 dense,
    # FP8 with FP32 accumulate 330.3 dense; GDDR6X 1008 GB/s.
    ("rtx-4090", "peak_tflops.fp16", 165.2),
    ("rtx-4090", "peak_tflops.fp8", 330.3),
    ("rtx-4090", "memory_bandwidth_gbps", 1008),
    # NVIDIA RTX Blackwell whitepaper Table 3, RTX 5090: BF16 (FP32 acc) 209.5 dense; 1792 GB/s.
    ("rtx-5090", "peak_tflops.bf16", 209.5),
    ("rtx-5090", "memory_bandwidth_gbps", 1792),
    # NVIDIA L40S datasheet: 48 GB GDDR6, 864 GB/s. L4 datasheet: 300 GB/s. T4: 65 TFLOPS
    # mixed precision, 320 GB/s. RTX A6000 (GA102 whitepaper): 768 GB/s, BF16 154.8 dense.
    ("l40s", "memory_bandwidth_gbps", 864),
    ("l4", "memory_bandwidth_gbps", 300),
    ("t4", "peak_tflops.fp16", 65),
    ("t4", "memory_bandwidth_gbps", 320),
    ("rtx-a6000", "memory_bandwidth_gbps", 768),
    ("rtx-a6000", "peak_tflops.bf16", 154.8),
]


def _get(spec, path: str):
    head, _, rest = path.partition(".")
    value = getattr(spec, head)
    if not rest:
        return value
    return value.get(rest) if isinstance(value, dict) else getattr(value, rest)


@pytest.mark.parametrize(("device_id", "path", "expected"), SPOT_CHECKS)
def test_datasheet_spot_checks(device_id, path, expected):
    assert _get(registry.get_device(device_id), path) == pytest.approx(expected)


# GeForce marketing quotes FP16-ACCUMULATE tensor rates; the spec stores the FP32-accumulate
# rate (what PyTorch GEMMs use), which is half. Dense FP16-accumulate figures:
GEFORCE_FP16_ACC_DENSE = {
    "rtx-3090": 142,      # GA102 whitepaper Appendix A: 142 / 284 (dense / sparse)
    "rtx-3090-ti": 160,   # NVIDIA CES 2022: '320 Tensor TFLOPS' (sparse)
    "rtx-4080": 195,      # NVIDIA launch table: 'FP16 with sparsity 390'
    "rtx-4090": 330.3,    # Ada whitepaper Appendix A: 330.3 / 660.6
    "rtx-5090": 419,      # RTX Blackwell whitepaper Table 3: 419 / 838
}


@pytest.mark.parametrize(("device_id", "fp16_acc"), sorted(GEFORCE_FP16_ACC_DENSE.items()))
def test_geforce_fp16_is_half_the_fp16_accumulate_figure(device_id, fp16_acc):
    d = registry.get_device(device_id)
    assert d.peak_tflops["fp16"] == pytest.approx(fp16_acc / 2, rel=0.01)
    assert d.peak_tflops["bf16"] == pytest.approx(fp16_acc / 2, rel=0.01)
    fp8 = d.peak_tflops.get("fp8")
    if fp8 is not None:  # FP8 with FP32 accumulate = FP16 with FP16 accumulate on Ada/Blackwell
        assert fp8 == pytest.approx(fp16_acc, rel=0.01)


# NVIDIA per-GPU bidirectional NVLink bandwidth by generation (NVLink and NVLink Switch page;
# DGX-1 V100 white paper for NVLink 2; A100/H100/H200 datasheets; HGX B200 page).
NVLINK_BIDIR = {
    "nvlink2-hybrid-cube-mesh": (300, ["v100-sxm2-32gb"]),
    "nvlink3-nvswitch": (600, ["a100-sxm4-40gb", "a100-sxm4-80gb"]),
    "nvlink3-bridge": (600, ["a100-pcie-80gb"]),
    "nvlink4-nvswitch": (900, ["h100-sxm5-80gb", "h200-sxm-141gb", "gh200"]),
    "nvlink4-bridge": (600, ["h100-pcie-80gb", "h100-nvl-94gb"]),  # H100 PCIe / NVL bridge
    "nvlink5-nvswitch": (1800, ["b200", "b300"]),
    "nvlink5-nvl72": (1800, ["gb200", "gb300"]),
    "nvlink3-bridge-ga102": (112.5, ["rtx-a6000"]),  # RTX A6000 2-way bridge
}


@pytest.mark.parametrize(("link_id", "bidir", "devices"),
                         [(k, *v) for k, v in sorted(NVLINK_BIDIR.items())])
def test_nvlink_per_direction_is_half_of_bidirectional(link_id, bidir, devices):
    assert registry.get_interconnect(link_id).bandwidth_gbps == pytest.approx(bidir / 2)
    for device_id in devices:
        d = registry.get_device(device_id)
        assert d.scale_up.interconnect == link_id
        assert d.scale_up.bandwidth_gbps_bidir == pytest.approx(bidir)


# Per-direction bandwidth of one link / port: PCIe x16 after 128b/130b encoding (8, 16, 32 GT/s
# per lane), InfiniBand and Ethernet port rates / 8, AMD Infinity Fabric (ROCm docs: MI300X
# 7 links x 64 GB/s; MI250X 8 links x 50 GB/s per OAM).
LINK_PER_DIRECTION = {
    "pcie-gen3-x16": 16 * 8 * 128 / 130 / 8,
    "pcie-gen4-x16": 31.5,
    "pcie-gen5-x16": 63,
    "ib-edr-100": 100 / 8,
    "ib-hdr-200": 200 / 8,
    "ib-ndr-400": 400 / 8,
    "ib-xdr-800": 800 / 8,
    "roce-100": 100 / 8,
    "roce-200": 200 / 8,
    "roce-400": 400 / 8,
    "infinity-fabric-mi300x": 7 * 64,
    "infinity-fabric-mi250x": 8 * 50,
    "infinity-fabric-mi355x": 7 * 153.6 / 2,  # MI355X: 7 links of 153.6 GB/s bidirectional
    "nvlink-c2c": 900 / 2,  # NVLink-C2C 900 GB/s bidirectional
}


@pytest.mark.parametrize(("link_id", "gbps"), sorted(LINK_PER_DIRECTION.items()))
def test_link_per_direction_bandwidth(link_id, gbps):
    assert registry.get_interconnect(link_id).bandwidth_gbps == pytest.approx(gbps, rel=2e-3)


def test_fabric_domains_and_nvls():
    links = registry.interconnects()
    for bridge in ("nvlink3-bridge", "nvlink4-bridge", "nvlink3-bridge-ga102"):
        assert links[bridge].domain_size == 2
        assert links[bridge].topology == "bridge"
    for board in ("nvlink3-nvswitch", "nvlink4-nvswitch", "nvlink5-nvswitch",
                  "infinity-fabric-mi300x", "infinity-fabric-mi355x"):
        assert links[board].domain_size == 8
    assert links["nvlink5-nvl72"].domain_size == 72
    # NVLink SHARP arrived with 3rd-generation NVSwitch (H100).
    assert not links["nvlink3-nvswitch"].nvls
    assert links["nvlink4-nvswitch"].nvls and links["nvlink5-nvswitch"].nvls
    # DGX-1: 8 GPUs but not all-to-all (hybrid cube-mesh).
    cube = links["nvlink2-hybrid-cube-mesh"]
    assert cube.domain_size == 8 and cube.topology == "partial-mesh"
    assert "not all-to-all" in (cube.notes or "")
    # MI300X full mesh: a GPU pair shares a single 64 GB/s link.
    assert links["infinity-fabric-mi300x"].peer_bandwidth_gbps == pytest.approx(64)


def test_nvswitch_nodes_scale_out_per_gpu():
    # DGX A100 / H100 / B200 datasheets: one compute NIC per GPU (HDR 200, NDR 400, NDR 400).
    for node_id, link in (("dgx-a100", "ib-hdr-200"), ("dgx-h100", "ib-ndr-400"),
                          ("dgx-b200", "ib-ndr-400"), ("hgx-h200", "ib-ndr-400"),
                          ("hgx-b300", "ib-xdr-800")):
        n = registry.get_node(node_id)
        assert (n.gpus_per_node, n.nics_per_node, n.inter_node) == (8, 8, link)


def test_nvl72_racks_are_one_nvlink_node():
    # GB200 / GB300 NVL72: 72 GPUs in one NVLink domain, one scale-out NIC per GPU
    # (ConnectX-7 400 Gb/s on GB200, ConnectX-8 800 Gb/s on GB300).
    for node_id, device, link in (("gb200-nvl72", "gb200", "ib-ndr-400"),
                                  ("gb300-nvl72", "gb300", "ib-xdr-800")):
        n = registry.get_node(node_id)
        assert (n.device, n.gpus_per_node, n.intra_node) == (device, 72, "nvlink5-nvl72")
        assert (n.nics_per_node, n.inter_node) == (72, link)
        assert registry.get_device(device).default_node == node_id


def test_memory_bytes_are_binary_vendor_gigabytes():
    d = registry.get_device("a100-sxm4-80gb")
    assert d.memory_bytes == 80 * 2**30
    assert math.isclose(d.memory_bandwidth, 2039e9)


def test_schema_types():
    assert all(isinstance(d, DeviceSpec) for d in registry.devices().values())
    assert all(isinstance(i, InterconnectSpec) for i in registry.interconnects().values())
    assert all(isinstance(n, NodeSpec) for n in registry.nodes().values())


# NVIDIA RTX 6000 Ada datasheet: 'Tensor performance 1,457.0 TFLOPS', footnote 'Effective FP8
# TFLOPS using the new sparsity feature': dense FP8 is half, 728.5; = 2 x the 364 dense BF16
# (RTX PRO Blackwell whitepaper Table 4) and 142 SMs x 2,048 FP8 FLOP / clock x 2.505 GHz.
# Every Ada (SM 8.9) device has FP8 tensor cores, so none has a null fp8 peak and fp8 training
# is not refused on any (plan.training_precision_problem).
ADA_DEVICES = ["rtx-6000-ada", "l4", "l40s", "rtx-4090", "rtx-4080"]


def test_rtx_6000_ada_dense_fp8_is_half_the_datasheet_sparse_figure():
    spec = registry.get_device("rtx-6000-ada")
    assert spec.peak_tflops["fp8"] == pytest.approx(1457.0 / 2)
    assert spec.peak_tflops["fp8"] == pytest.approx(142 * 2048 * 2.505e9 / 1e12, rel=1e-3)
    assert spec.peak_tflops["fp8"] == pytest.approx(2 * spec.peak_tflops["bf16"], rel=1e-3)


@pytest.mark.parametrize("device_id", ADA_DEVICES)
def test_ada_devices_have_an_fp8_peak_and_train_in_fp8(device_id):
    from perfmodel.plan import training_precision_problem

    spec = registry.get_device(device_id)
    assert spec.compute_capability == "8.9"
    assert spec.peak_tflops["fp8"] and spec.peak_tflops["fp8"] >= spec.peak_tflops["bf16"]
    assert training_precision_problem(spec, "fp8") is None
