"""The engines' own TP all-reduce stops where its buffers stop: vLLM's and SGLang's kernels share
them by CUDA IPC inside one OS host (``custom_allreduce_reach: host``), TensorRT-LLM crosses the
hosts of one NVLink domain with its MNNVL kernel (``nvlink_domain``). A GB200 / GB300 NVL72 rack
is one node of 72 GPUs (one NVLink domain) made of 18 compute trays of 4 GPUs, each one host
(NVIDIA GB200 NVL72 spec: 72 GPUs + 36 Grace CPUs, two 2-GPU superchips per tray); a DGX B200
is one host of 8 (perfmodel.engine_comm.custom_eligible)."""

from __future__ import annotations

import numpy as np
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


def test_sglang_tp8_on_gb300_is_timed_as_nccl():
    """GB300's SGLang table holds 8-GPU rows (27-30 us, collected across 4-GPU hosts, where
    SGLang declines its kernel): TP8 now reads NCCL's fit, TP4 the engine's kernel."""
    system, prof = _system("gb300", 8), reference_profile("gb300")
    sizes = np.array([SMALL, 64 * SMALL])
    nccl = collective_time("all_reduce", sizes, _span(8), system, prof)
    np.testing.assert_allclose(tp_all_reduce_time("sglang", sizes, _span(8), system, prof), nccl)
    own4 = collective_time("custom_allreduce_sglang", sizes, _span(4), system, prof)
    np.testing.assert_allclose(tp_all_reduce_time("sglang", sizes, _span(4), system, prof), own4)
