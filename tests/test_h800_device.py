"""The NVIDIA H800 SXM5 (hardware_specs/devices/h800-sxm5-80gb.yaml), its NVLink
(interconnects/nvlink4-nvswitch-h800.yaml) and DeepSeek-V3's node (nodes/hgx-h800.yaml).

The expected figures are typed in here from the documents, independently of the YAML files:
the H800 datasheet as listed in astroC86/gpu-datasheet (80 GB, 3.35 TB/s, 1979 TFLOPS BF16 and
3958 FP8 with 2:4 sparsity, so half of each dense), DeepSeek's papers (arXiv 2412.19437 §3.1,
§3.2.2, §3.5.1; arXiv 2505.09343 §4.1, §4.3, Table 4) and DeepSeek's kernel READMEs (DeepEP,
DeepGEMM, FlashMLA first releases). No mocks: the registry, the borrowed profile and the
collective model run as they do for a user.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.api import predict
from perfmodel.comm import bus_factor, collective_time
from perfmodel.specs import registry
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan

H800, H100 = "h800-sxm5-80gb", "h100-sxm5-80gb"


def test_h800_loads_with_the_datasheet_and_deepseek_figures():
    d = registry.get_device(H800)
    assert (d.architecture, d.chip, d.compute_capability) == ("Hopper", "GH100", "9.0")
    assert d.sm_count == 132                      # 2412.19437 §3.5.1 '132 SMs ... in the H800'
    assert d.boost_clock_mhz == 1980              # DeepGEMM #120: 'from 1980 to 1575 MHz'
    assert d.memory_gb == 80 and d.memory_type == "HBM3"
    assert d.memory_bandwidth_gbps == pytest.approx(3350)          # 3.35 TB/s
    assert d.peak_tflops["bf16"] == pytest.approx(1979 / 2, rel=1e-3)  # sparse 1979
    assert d.peak_tflops["fp16"] == pytest.approx(1979 / 2, rel=1e-3)
    assert d.peak_tflops["fp8"] == pytest.approx(3958 / 2, rel=1e-3)   # sparse 3958
    assert d.peak_tflops["fp64"] == pytest.approx(1)             # the export cut
    assert d.peak_tflops["fp4"] is None and d.fp4_formats == []
    # 2505.09343 §4.1: 'reduced from 900 GB/s to 400 GB/s'; §4.3: 'NVLink provides 200GB/s'
    assert d.scale_up.bandwidth_gbps_bidir == pytest.approx(400)
    assert registry.get_interconnect(d.scale_up.interconnect).bandwidth_gbps == pytest.approx(200)
    assert d.scale_up.links is None  # no source read gives the H800's link count


def test_deepseek_measurements_sit_under_the_peaks():
    """What DeepSeek measured on H800s stays below the file's peaks, and its MFU arithmetic
    gives the file's dense BF16 peak: Table 4 of 2505.09343, 432 TFLOPS = 43.73 % and
    385 TFLOPS = 38.94 % of the BF16 peak; DeepGEMM 1358 FP8 TFLOPS (4096 x 7168 x 16384);
    FlashMLA 3000 GB/s memory-bound; DeepEP 153 / 158 GB/s intranode over NVLink."""
    d = registry.get_device(H800)
    assert d.peak_tflops["bf16"] == pytest.approx(432 / 0.4373, rel=2e-3)
    assert d.peak_tflops["bf16"] == pytest.approx(385 / 0.3894, rel=2e-3)
    assert d.peak_tflops["bf16"] < 1358 < d.peak_tflops["fp8"]
    assert d.memory_bandwidth_gbps > 3000
    link = registry.get_interconnect(d.scale_up.interconnect)
    assert link.bandwidth_gbps > max(153, 158, 160)


def test_deepseek_node_preset():
    """2412.19437 §3.1: 8 GPUs per node over NVLink + NVSwitch, InfiniBand across nodes
    ('IB (50 GB/s)', §3.2.2); 2505.09343 §4.1: 'eight 400G Infiniband (IB) CX7 NICs'."""
    n = registry.get_node("hgx-h800")
    d = registry.get_device(H800)
    assert (n.device, n.gpus_per_node, n.nics_per_node) == (H800, 8, 8)
    assert d.default_node == n.id and n.intra_node == d.scale_up.interconnect
    link = registry.get_interconnect(n.intra_node)
    assert (link.kind, link.topology, link.domain_size) == ("nvswitch", "switch", 8)
    assert registry.get_interconnect(n.inter_node).bandwidth_gbps == pytest.approx(400 / 8)
    system = resolve_system(SystemConfig(device=H800, num_gpus=2048))
    assert (system.intra.id, system.inter.id) == ("nvlink4-nvswitch-h800", "ib-ndr-400")


def test_h800_borrows_the_h100_profile_without_its_nvswitch_collectives():
    """No profile was measured on an H800: the H100 SXM5's is borrowed through the device's
    calibration_proxy, and its collective fits measured over the 900 GB/s NVSwitch board are
    dropped (only the NIC-to-NIC send_recv across nodes stays)."""
    assert registry.reference_profile(H800) is None
    p = registry.profile_for(H800)
    assert p.id == f"{H100}.reference@{H800}" and p.device == H100
    assert {(f.collective, f.scope) for f in p.collectives} == {("send_recv", "inter")}
    scenario = {"kind": "inference", "model": "llama-3.1-8b",
                "system": {"device": H800, "num_gpus": 1},
                "inference": {"batch": 1, "prompt_len": 512, "output_len": 64}}
    pred = predict(scenario)
    assert pred.calibration["proxy"]["device"] == H100
    assert "NVLink 400 GB/s" in pred.calibration["proxy"]["differs"]


def test_nvlink_bus_bandwidth_is_deepseeks_achievable_figure():
    """A large 8-GPU all-gather on one H800 node runs at the documented default collective
    efficiency of the 200 GB/s link (not fitted to DeepSeek): within 10 % of the ~160 GB/s
    DeepSeek quotes as achievable (2412.19437 §3.2.2; 2505.09343 §4.3; DeepEP README)."""
    system = resolve_system(SystemConfig(device=H800, num_gpus=8))
    span = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    size = 4 << 30
    t = float(collective_time("all_gather", size, span, system, registry.profile_for(H800)))
    busbw = size * float(bus_factor("all_gather", 8)) / t / 1e9
    assert busbw == pytest.approx(160, rel=0.10)


@cache
def _system(device: str, gpus: int):
    return resolve_system(SystemConfig(device=device, num_gpus=gpus)), registry.profile_for(device)


@settings(max_examples=200, deadline=None)
@given(log2_bytes=st.floats(min_value=0, max_value=36),
       local=st.sampled_from([2, 4, 8]), log2_nodes=st.integers(min_value=0, max_value=8))
def test_all_reduce_on_h800_is_never_faster_than_on_h100(log2_bytes, local, log2_nodes):
    """Same die, same NICs, NVLink 200 instead of 450 GB/s per direction: an all-reduce of any
    size over any group (one node or many) never takes less time on H800s."""
    nodes = 2 ** log2_nodes
    if nodes > 1:
        local = 8  # a group that spans nodes takes whole nodes here
    gpus = local * nodes
    span = GroupSpan(size=float(gpus), local=float(local), nodes=float(nodes))
    nbytes = float(2 ** log2_bytes)
    times = {}
    for device in (H100, H800):
        system, profile = _system(device, max(gpus, 8))
        times[device] = float(collective_time("all_reduce", nbytes, span, system, profile))
    assert times[H800] >= times[H100]


def test_intra_node_all_reduce_is_slower_by_at_least_the_link_ratio_at_scale():
    """At 1 GiB on one 8-GPU node the all-reduce is bandwidth-bound: the H800 takes at least
    450 / 200 = 2.25x the H100's time less the latency share (the H100 board also reduces in
    the switch, NVLS, which the H800 file does not claim)."""
    span = GroupSpan(size=8.0, local=8.0, nodes=1.0)
    t = {}
    for device in (H100, H800):
        system, profile = _system(device, 8)
        t[device] = float(collective_time("all_reduce", 1 << 30, span, system, profile))
    assert t[H800] / t[H100] > 2.0


def test_deepseek_v3_training_step_is_never_faster_on_h800():
    """The same DeepSeek-V3 plan on 2,048 H800s and H100s (fp8, tp1 pp16 vp2 cp4 ep16 dp32,
    the plan-training row of docs/planning.md): every compute term is the same die's, so the
    H800's slower NVLink can only add time."""
    def step(device):
        return predict({
            "kind": "training", "model": "deepseek-v3",
            "system": {"device": device, "num_gpus": 2048},
            "parallelism": {"tp": 1, "pp": 16, "vp": 2, "cp": 4, "ep": 16, "dp": 32,
                            "zero_stage": 1, "uneven_pipeline": True},
            "training": {"seq_len": 4096, "global_batch": 15360, "micro_batch": 1,
                         "precision": "fp8", "recompute": "none"}}).step_time_s
    h100, h800 = step(H100), step(H800)
    assert np.isfinite(h800) and h800 > h100
