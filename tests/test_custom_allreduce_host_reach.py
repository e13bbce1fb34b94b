"""The engines' own TP all-reduce stops where its buffers stop: vLLM's and SGLang's kernels share
them by CUDA IPC inside one OS host (``custom_allreduce_reach: host``), TensorRT-LLM crosses the
hosts of one NVLink domain with its MNNVL kernel (``nvlink_domain``). A GB200 / GB300 NVL72 rack
is one node of 72 GPUs (one NVLink domain) made of 18 compute trays of 4 GPUs, each one host
(NVIDIA GB200 NVL72 spec: 72 GPUs + 36 Grace CPUs, two 2-GPU superchips per tray); a DGX B200
is one host of 8 (perfmodel.engine_comm.custom_eligible)."""

from __future__ import annotations

import pytest

from perfmodel.comm import collective_time
from perfmodel.engine_comm import custom_eligible, hosts_spanned, tp_all_reduce_time
from perfmodel.errors import SpecError
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.hardware import NodeSpec
from perfmodel.specs.registry import get_node, reference_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan

# one decode token of an 8B model (hidden 4096, bf16): 8 KiB, far below every workspace
SMALL = 4096 * 2


def _span(n):
    return GroupSpan(size=n, local=n, nodes=1)


def _system(device, n):
    return resolve_system(SystemConfig(device=device, num_gpus=n))


@pytest.mark.parametrize("node", ["gb200-nvl72", "gb300-nvl72"])
def test_an_nvl72_rack_is_18_hosts_of_4(node):
    spec = get_node(node)
    assert spec.gpus_per_node == 72 and spec.host_gpus == 4
    assert spec.gpus_per_node // spec.host_gpus == 18  # compute trays


def test_a_dgx_node_is_one_host():
    assert get_node("dgx-b200").host_gpus == 8  # default: the node's GPU count


def test_hosts_must_tile_the_node():
    with pytest.raises((SpecError, ValueError), match="gpus_per_host 5 must divide"):
        NodeSpec(id="x", name="x", gpus_per_node=72, gpus_per_host=5, intra_node="nvlink5-nvl72",
                 sources=[{"id": "s", "title": "test", "url": "https://example.com"}])


@pytest.mark.parametrize("device", ["gb200", "gb300"])
def test_hosts_spanned_by_tp_groups_on_a_rack(device):
    system = _system(device, 8)
    assert hosts_spanned(_span(2), system) == 1
    assert hosts_spanned(_span(4), system) == 1
    assert hosts_spanned(_span(8), system) == 2
    assert hosts_spanned(_span(8), _system("b200", 8)) == 1


@pytest.mark.parametrize("device", ["gb200", "gb300"])
@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_host_kernels_stop_at_a_tray(device, engine):
    system = _system(device, 8)
    assert bool(custom_eligible(engine, SMALL, _span(4), system))      # one tray: own kernel
    assert not bool(custom_eligible(engine, SMALL, _span(8), system))  # two trays: NCCL


@pytest.mark.parametrize("device", ["gb200", "gb300"])
def test_trtllm_crosses_trays_with_mnnvl(device):
    system = _system(device, 8)
    assert bool(custom_eligible("trtllm", SMALL, _span(4), system))
    assert bool(custom_eligible("trtllm", SMALL, _span(8), system))


@pytest.mark.parametrize("engine", ["sglang", "vllm", "trtllm"])
def test_an_8_gpu_host_keeps_its_kernel_at_tp8(engine):
    assert bool(custom_eligible(engine, SMALL, _span(8), _system("b200", 8)))


KIB16 = 16384.0  # 8192 bf16 elements: aiconfigurator's message_size 8192 rows


def _t(engine, device, n, nbytes=KIB16, version=None):
    return float(tp_all_reduce_time(engine, nbytes, _span(n), _system(device, 8),
                                    reference_profile(device), version))


def _nccl(device, n, nbytes=KIB16):
    return float(collective_time("all_reduce", nbytes, _span(n), _system(device, 8),
                                 reference_profile(device)))


def test_a_measured_8_gpu_row_beats_the_kernels_reach():
    """GB300's SGLang table has 8-GPU rows, collected across 4-GPU hosts (collection_meta.yaml),
    where SGLang declines its kernel and runs PyNCCL: the row measured what SGLang runs at TP8
    there, so TP8 reads it (aiconfigurator-core 0.12.0 gb300 sglang 0.5.14 sglang_graph,
    world 8, message_size 8192 bf16: 27.8 us), although the kernel is not eligible."""
    system = _system("gb300", 8)
    assert not bool(custom_eligible("sglang", KIB16, _span(8), system))
    assert _t("sglang", "gb300", 8) == pytest.approx(27.8e-6, rel=0.15)
    # NCCL's fit there (measured on 2-4 GPUs of one tray) would say ~16 us: not taken
    assert _t("sglang", "gb300", 8) > 1.4 * _nccl("gb300", 8)
    # TP4 (one tray) keeps the kernel's row: 4.0 us at 16 KiB
    assert _t("sglang", "gb300", 4) == pytest.approx(4.0e-6, rel=0.25)


@pytest.mark.parametrize("device, engine", [("gb300", "vllm"), ("gb200", "sglang"),
                                            ("gb200", "vllm")])
def test_an_unmeasured_cross_host_group_reads_nccl(device, engine):
    """GB300's vLLM table and GB200's tables stop at 4 GPUs: TP8 spans two hosts, the kernel is
    not eligible and no row measured the fallback, so NCCL's fit."""
    assert _t(engine, device, 8) == pytest.approx(_nccl(device, 8), rel=1e-9)


def test_trtllm_mnnvl_at_tp8_on_gb300():
    # trtllm 1.3.0rc20 AUTO, world 8 across two trays (MNNVL), 16 KiB: 4.4 us
    assert _t("trtllm", "gb300", 8) == pytest.approx(4.4e-6, rel=0.25)


def test_an_8_gpu_host_keeps_its_table():
    # B200 (one 8-GPU host) sglang 0.5.14 sglang_graph world 8, 16 KiB: 5.311 us
    assert _t("sglang", "b200", 8) == pytest.approx(5.311e-6, rel=0.25)


def test_a_release_without_its_own_all_reduce_keeps_nccl():
    """TensorRT-LLM 0.6.1 runs NCCL (engines/versions/trtllm-0.6.yaml): the 1.3.0rc20 table's
    8-GPU row does not describe it."""
    assert _t("trtllm", "b200", 8, version="0.6.1") == pytest.approx(_nccl("b200", 8), rel=1e-9)
    assert _t("trtllm", "b200", 8) < 0.5 * _nccl("b200", 8)


def test_above_the_workspace_nccl_fit_even_where_a_row_exists():
    # SGLang's workspace is 8 MiB (_MAX_CAR_SIZE): a 16 MiB message keeps NCCL's fit
    mib16 = 16 * 1024 * 1024.0
    assert _t("sglang", "gb300", 8, mib16) == pytest.approx(_nccl("gb300", 8, mib16), rel=1e-9)
