"""The tensor-parallel all-reduce as a serving engine runs it, by message size.

Engines do not call NCCL for a decode step's small all-reduces: each has its own kernel below a
size limit, on GPUs all linked by NVLink, and falls back to NCCL above it (facts and sources in
engines/<id>.yaml, ``comm``):

* vLLM ``CustomAllreduce`` (vllm/distributed/device_communicators/custom_all_reduce.py):
  world sizes 2, 4, 6, 8; ``should_custom_ar``: ``inp_size < max_size`` (8 MiB) when
  ``world_size == 2 or fully_connected``; NCCL otherwise.
* SGLang ``CustomAllreduce`` (python/sglang/srt/distributed/device_communicators/
  custom_all_reduce.py, a port of vLLM's): the same sizes and rule, ``_MAX_CAR_SIZE`` 8 MiB, up
  to 0.5.11; from 0.5.12 CUDA builds take the JIT ``CustomAllReduceV2`` (2-8 GPUs, up to 16 MiB,
  one host: engines/versions/sglang-0.5.12.yaml), the facts read at the scenario's version.
* TensorRT-LLM ``AllreduceOp::selectImplementation`` (cpp/tensorrt_llm/thop/allreduceOp.cpp):
  NCCL when the message exceeds ``getMaxRequiredWorkspaceSize`` (16 MB at TP <= 2, 8 MB above,
  cpp/tensorrt_llm/common/customAllReduceUtils.h) or the group lacks NVLink / P2P; else the
  one-shot / two-shot / NCCL-symmetric choice of its lookup table (AUTO strategy).

The kernel's time is the profile's ``custom_allreduce_<engine>`` fit, made from the engine's own
measured table (aiconfigurator ``custom_allreduce_perf``: the engine's all-reduce call, CUDA
graph replays), which already contains the engine's one-shot / two-shot switch. Without that
fit (a device with no table, the default profile), NCCL's fit applies, as for ``generic``.
The measured tables come from NVSwitch nodes, so only groups inside one NVLink domain use
them (a PCIe pair, which vLLM also serves with its kernel, stays on NCCL: not measured).

A table measured the engine's own all-reduce call (aiconfigurator collector/network/
collect_all_reduce.py @ 095f58a: ``tensor_model_parallel_all_reduce`` of vLLM L532 and SGLang
L764, TensorRT-LLM's ``AllReduce`` op with AUTO strategy), so a row holds whatever that engine
runs at that group size on that device: its kernel, or its NCCL / PyNCCL fallback where the
engine declines the kernel (a message above the workspace, a group across hosts), on the
collection's own host layout. Where the engine's table holds a row at exactly the group's size
(``measured_at``; one node, all NVLinked, a release that has its own all-reduce, the message
below its workspace: ``below_workspace``), that row is the time, whatever the kernel's world
sizes and reach say (``custom_eligible``). Above the workspace the rows also hold the engine's
NCCL call (B200 SGLang TP8 16 MiB: 58 us, where nccl-tests' fit gives 99), but the model keeps
NCCL's fit there, as before (not changed here: it would move the prefill of most engine
cases). aiconfigurator's GB300 NVL72 SGLang table (sglang 0.5.14, CUDA graph) holds 3.4-4.2 us
at 2-4 GPUs (one 4-GPU compute tray) and 27-30 us at 8: its collection_meta.yaml says the 8 /
16-GPU rows ran on a 4-node x 4-GPU GB300 NVL fleet (4 GPUs per OS node), where SGLang 0.5.14's
custom_all_reduce.py rejects the cross-host group and falls back to PyNCCL, so those rows
measured exactly what SGLang runs at TP8 there (27.8 us at 16 KiB), and TP8 reads them.
TensorRT-LLM's GB300 rows time its MNNVL kernel at 4.1-4.7 us on
8 and 16 GPUs.

A group size the table does not measure goes by the kernel's rules: its own kernel
(``custom_eligible``) where the table measured a group at least as large (``measured_group``,
interpolating between measured sizes), else NCCL's fit. A smaller group's time is no measure of
a larger one's (GB300 SGLang: 4 us at 4 GPUs, 28 at 8), so GB200's 4-GPU tables (they stop at
4) do not serve its TP8: that reads NCCL's fit, for every engine (GB300's TensorRT-LLM rows are
another device's table, not carried over). NCCL's fit on GB200 / GB300 is measured on at most
4 GPUs (aiconfigurator-core 0.12.0 nccl-tests, NCCL 2.29.2, on one compute tray), so a
cross-tray group reads it unmeasured: an extrapolation of one tray's NVLink times, no
measurement of NCCL over MNNVL.

A kernel reaches only as far as its buffers (engines/<id>.yaml ``comm.custom_allreduce_reach``):
vLLM's and SGLang's share them by CUDA IPC and decline a group that is not on one OS host
(``in_the_same_node_as``), so ``host``; TensorRT-LLM's AUTO strategy takes its MNNVL kernel
(fabric memory) where the group leaves the host on a Grace NVLink rack, so ``nvlink_domain``.
A node file's ``gpus_per_host`` says where a host ends (GB200 / GB300 NVL72: 4-GPU compute
trays of a 72-GPU NVLink domain): a TP8 vLLM / SGLang group there spans two hosts, so the
kernel is not eligible; the time is the engine's measured 8-GPU row where its table has one
(GB300 SGLang), else NCCL's fit (GB300 vLLM, GB200). ``custom_eligible`` still decides the
fusions that need the kernel itself (TensorRT-LLM's residual + RMSNorm fusion,
inference.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .comm import collective_time
from .profile import CalibrationProfile
from .specs.system import System
from .topology import GroupSpan

Array = Any
#: engines whose TP all-reduce has its own kernel (engines/<id>.yaml ``comm``)
CUSTOM_ENGINES = ("vllm", "sglang", "trtllm")


def fully_nvlinked(system: System, n: Array) -> Array:
    """Whether ``n`` GPUs of one node are all linked to each other by NVLink (an NVSwitch
    board, or a bridge pair for n <= 2): the engines' precondition for their kernels."""
    link = system.intra
    n = np.asarray(n, dtype=float)
    if link.kind not in ("nvlink", "nvswitch") or link.topology not in ("switch", "bridge"):
        return np.zeros(n.shape, dtype=bool)
    return n <= (link.domain_size or np.inf)


def gpus_per_host(system: System) -> int:
    """GPUs under one OS host in ``system``: the node file's ``gpus_per_host`` (a GB200 /
    GB300 NVL72 compute tray: 4 of the rack's 72), else the whole node; never more than the
    system's GPUs per node."""
    per_host = system.node.host_gpus if system.node is not None else system.gpus_per_node
    return max(1, min(per_host, system.gpus_per_node))


def hosts_spanned(span: GroupSpan, system: System) -> Array:
    """Hosts a group's members sit on: its nodes x the hosts its ``local`` members of one node
    fill, the members contiguous from a host's start (a TP group: innermost in the placement,
    topology.group_spans)."""
    return np.asarray(span.nodes, dtype=float) * np.ceil(
        np.asarray(span.local, dtype=float) / gpus_per_host(system))


def custom_eligible(engine: str, nbytes: Array, span: GroupSpan, system: System,
                    version: str | None = None, variant: str | None = None) -> Array:
    """Where the engine (at ``version`` / ``variant``: engines.engine_facts) runs its own
    kernel instead of NCCL (module docstring): its world sizes, one node, all NVLinked, below
    its workspace, and inside its kernel's reach (``custom_allreduce_reach``): ``host`` (CUDA
    IPC buffers; None reads as host) needs the group on one OS host (``hosts_spanned``: a TP8
    group on a GB200 NVL72 spans two 4-GPU trays and gets NCCL), ``nvlink_domain`` (TensorRT-LLM's
    MNNVL kernel across the trays) one NVLink domain (one node here)."""
    from .engines import get_engine

    facts = get_engine(engine, version, variant).comm
    n = np.asarray(span.size, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    if not facts.custom_allreduce_world_sizes or facts.custom_allreduce_max_bytes is None:
        return np.zeros(np.broadcast(n, nbytes).shape, dtype=bool)
    reach = np.asarray(span.nodes) == 1
    if facts.custom_allreduce_reach != "nvlink_domain":
        reach = reach & (hosts_spanned(span, system) <= 1)
    return (np.isin(n, facts.custom_allreduce_world_sizes) & reach
            & fully_nvlinked(system, n) & below_workspace(engine, nbytes, n, version, variant))


def below_workspace(engine: str, nbytes: Array, n: Array, version: str | None = None,
                    variant: str | None = None) -> Array:
    """Where a message of ``nbytes`` over ``n`` GPUs fits the engine's all-reduce workspace
    (engines/<id>.yaml ``comm.custom_allreduce_max_bytes``, ``_tp2`` at n <= 2); False
    everywhere for a release without its own all-reduce."""
    from .engines import get_engine

    facts = get_engine(engine, version, variant).comm
    n = np.asarray(n, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    if not facts.custom_allreduce_world_sizes or facts.custom_allreduce_max_bytes is None:
        return np.zeros(np.broadcast(n, nbytes).shape, dtype=bool)
    limit = np.where(n <= 2, facts.custom_allreduce_max_bytes_tp2
                     or facts.custom_allreduce_max_bytes, facts.custom_allreduce_max_bytes)
    return nbytes < limit


def _measured_sizes(profile: CalibrationProfile, collective: str) -> list[int]:
    return [f.group_size for f in profile.collectives
            if f.collective == collective and f.scope == "intra"]


def measured_group(profile: CalibrationProfile, collective: str, n: Array) -> Array:
    """Where a group of ``n`` GPUs is no larger than the largest group the profile measured
    ``collective`` (intra-node) on: only there does the fit of a measured group stand for it
    (module docstring); False everywhere when the profile has no such fit."""
    sizes = _measured_sizes(profile, collective)
    n = np.asarray(n, dtype=float)
    return n <= (max(sizes) if sizes else 0)


def measured_at(profile: CalibrationProfile, collective: str, n: Array) -> Array:
    """Where the profile holds a row of ``collective`` (intra-node) measured at exactly ``n``
    GPUs: the engine's table timed what that engine runs there, kernel or fallback (module
    docstring); False everywhere when the profile has no such fit."""
    return np.isin(np.asarray(n, dtype=float), _measured_sizes(profile, collective))


def tp_all_reduce_time(engine: str, nbytes: Array, span: GroupSpan, system: System,
                       profile: CalibrationProfile, version: str | None = None,
                       variant: str | None = None) -> Array:
    """Seconds of one TP all-reduce of ``nbytes`` as ``engine`` runs it: the engine's table
    where it measured exactly this group size (``measured_at``; one node, all NVLinked, below
    the engine's workspace: ``below_workspace``), whatever else ``custom_eligible`` says (the
    row holds the engine's fallback where it declines its kernel across hosts); else its own kernel
    where eligible and measured for a group at least as large (``measured_group``); else NCCL
    (``generic`` and other engines: NCCL, today's model)."""
    nccl = collective_time("all_reduce", nbytes, span, system, profile)
    name = f"custom_allreduce_{engine}"
    if engine not in CUSTOM_ENGINES or not any(f.collective == name
                                               for f in profile.collectives):
        return nccl
    n = span.size
    row = (measured_at(profile, name, n) & (np.asarray(span.nodes) == 1)
           & fully_nvlinked(system, n) & below_workspace(engine, nbytes, n, version, variant))
    use = row | (custom_eligible(engine, nbytes, span, system, version, variant)
                 & measured_group(profile, name, n))
    if not np.any(use):
        return nccl
    return np.where(use, collective_time(name, nbytes, span, system, profile), nccl)


#: experts' input formats whose MoE dispatch is quantised where the engine file is silent
#: (DeepEP's fp8 dispatch as SGLang / vLLM run it for DeepGEMM and fp8 MoE)
QUANTISED_EXPERT_INPUTS = ("fp8", "fp8_block", "nvfp4", "mxfp4")


def dispatch_format(engine: str, weight_dtype: str, activation_dtype: str,
                    version: str | None = None, variant: str | None = None) -> str:
    """The format a MoE all-to-all dispatch sends in (``formats.dispatch_elem_bytes`` gives
    its bytes), as ``engine`` runs it: the experts' input format (the activation dtype where
    it is quantised, else the weight format) looked up in engines/<id>.yaml ``moe.dispatch``
    (sources there: TensorRT-LLM quantises NVFP4 before its all-to-all, SGLang dispatches
    NVFP4 to its CuTe DSL experts, vLLM sends bf16 unless VLLM_DEEPEPLL_NVFP4_DISPATCH); not
    listed, and for ``generic``: ``fp8`` (DeepEP's fp8 dispatch) for fp8 / fp4 experts, else
    ``bf16`` (the activations as they are)."""
    from .engines import engine_facts

    inputs = [d for d in (activation_dtype, weight_dtype) if d in QUANTISED_EXPERT_INPUTS]
    if not inputs:
        return "bf16"
    spec = engine_facts(engine, version, variant)
    if spec is not None:
        listed = spec.moe.dispatch
        for fmt in inputs:
            if fmt in listed:
                return listed[fmt]
    return "fp8"
