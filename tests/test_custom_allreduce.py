"""Engines' own TP all-reduce: the aiconfigurator custom-all-reduce converter, its fitted
collectives in the reference profiles, and the engine's choice by message size
(perfmodel.engine_comm)."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel.calibrate.converters import aic_custom_allreduce
from perfmodel.calibrate.reference import sources_dir
from perfmodel.comm import collective_time
from perfmodel.engine_comm import custom_eligible, fully_nvlinked, tp_all_reduce_time
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import default_profile, reference_profile
from perfmodel.specs.scenario import SystemConfig
from perfmodel.topology import GroupSpan

TABLE = "aiconfigurator/systems/data/h100_sxm/comm/{}/custom_allreduce_perf.parquet"
H100 = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=8))
MiB = 2**20


def _span(n, nodes=1):
    return GroupSpan(size=n, local=n // nodes, nodes=nodes)


def test_converter_reads_elements_as_bf16_bytes_and_keeps_one_variant():
    pytest.importorskip("pyarrow")
    graph = aic_custom_allreduce(sources_dir() / TABLE.format("vllm/0.24.0"), "vllm")
    eager = aic_custom_allreduce(sources_dir() / TABLE.format("vllm/0.24.0"), "vllm", "eager")
    assert len(graph) == len(eager) == 66  # 22 sizes x 2/4/8 GPUs (>= 512 B), each variant
    p = graph[0]["params"]
    assert p["collective"] == "custom_allreduce_vllm" and p["scope"] == "intra"
    # message_size 256 elements of bfloat16 (the collector's [1, 256] tensor) = 512 bytes
    assert min(r["params"]["bytes"] for r in graph) == 512
    every = aic_custom_allreduce(sources_dir() / TABLE.format("vllm/0.24.0"), "vllm",
                                 min_bytes=0)
    assert min(r["params"]["bytes"] for r in every) == 256 and len(every) == 69
    assert {r["params"]["group_size"] for r in graph} == {2, 4, 8}
    # upstream row: vLLM 0.24.0 graph, 8 GPUs, 524288 elements: 0.0150 ms (1 MiB of bf16)
    t = {(r["params"]["group_size"], r["params"]["bytes"]): r["time_s"] for r in graph}
    assert t[(8, 1 * MiB)] == pytest.approx(15.0e-6, rel=0.01)
    with pytest.raises(ValueError, match="engine"):
        aic_custom_allreduce(sources_dir() / TABLE.format("vllm/0.24.0"), "llamacpp")


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_reference_profiles_fit_each_engines_table(engine):
    prof = reference_profile("h100-sxm5-80gb")
    for n in (2, 4, 8):
        fit = prof.collective_fit(f"custom_allreduce_{engine}", "intra", n)
        assert fit is not None and fit.group_size == n
    errors = {fe.table: fe for fe in prof.fit_errors}
    fe = errors[f"collective.custom_allreduce_{engine}.intra.8"]
    assert fe.n_test >= 5 and fe.median_ape < 0.15  # held out, predicted through the core


def test_fitted_curve_reproduces_the_measured_small_message_time():
    """H100, vLLM 0.24.0 graph, 8 GPUs: 4.6-5.0 us from 256 B to 8 KiB in the table (a
    one-shot kernel), three times below NCCL's host-timed 15.6 us (nccl-tests 2.29.2)."""
    prof = reference_profile("h100-sxm5-80gb")
    span = _span(8)
    custom = collective_time("custom_allreduce_vllm", np.array([1024.0, 8192.0]), span, H100,
                             prof)
    assert np.all((custom > 3.5e-6) & (custom < 6.5e-6))
    nccl = collective_time("all_reduce", 8192.0, span, H100, prof)
    assert nccl > 2.5 * custom[1]


def test_vllm_uses_its_kernel_below_8_mib_and_nccl_from_there():
    below, at = 8 * MiB - 16, 8 * MiB  # vLLM: inp_size < max_size (8192 * 1024)
    use = custom_eligible("vllm", np.array([below, at]), _span(4), H100)
    assert use.tolist() == [True, False]
    prof = reference_profile("h100-sxm5-80gb")
    t = tp_all_reduce_time("vllm", np.array([below, at]), _span(4), H100, prof)
    assert t[1] == pytest.approx(float(collective_time("all_reduce", at, _span(4), H100, prof)))
    assert t[0] == pytest.approx(float(collective_time("custom_allreduce_vllm", below, _span(4),
                                                       H100, prof)))


def test_trtllm_workspace_is_16_mb_at_tp2_and_8_mb_above():
    nb = np.array([12e6])
    assert custom_eligible("trtllm", nb, _span(2), H100).tolist() == [True]
    assert custom_eligible("trtllm", nb, _span(4), H100).tolist() == [False]
    # TP 6 is not in TRT-LLM's lookup table (2, 4, 8); vLLM / SGLang support it
    assert not custom_eligible("trtllm", 1e5, _span(6), H100)
    assert custom_eligible("vllm", 1e5, _span(6), H100)


def test_nccl_where_the_engine_would_not_use_its_kernel():
    prof = reference_profile("h100-sxm5-80gb")
    # a group across nodes, and GPUs without NVLink (PCIe): NCCL, as generic
    two_nodes = resolve_system(SystemConfig(device="h100-sxm5-80gb", num_gpus=16))
    assert not custom_eligible("vllm", 1e5, _span(16, nodes=2), two_nodes)
    pcie = resolve_system(SystemConfig(device="rtx-4090", num_gpus=2))
    assert not fully_nvlinked(pcie, 2)
    # generic and llama.cpp keep NCCL; so does a profile without the engine's table
    for engine, profile in (("generic", prof), ("llamacpp", prof), ("vllm", default_profile())):
        t = tp_all_reduce_time(engine, 1e5, _span(8), H100, profile)
        assert t == pytest.approx(float(collective_time("all_reduce", 1e5, _span(8), H100,
                                                        profile)))


def test_engine_scenario_decodes_faster_than_generic_at_small_batch_and_tp8():
    import perfmodel as pm

    def tpot(engine):
        sc = {"kind": "inference", "model": "llama-3-70b",
              "system": {"device": "h100-sxm5-80gb", "num_gpus": 8}, "parallelism": {"tp": 8},
              "inference": {"batch": 1, "prompt_len": 1024, "output_len": 128}}
        if engine:
            sc["engine"] = engine
        return pm.predict(sc).tpot_s

    generic = tpot(None)
    for engine in ("vllm", "sglang", "trtllm"):
        # 160 all-reduces of 16 KiB per step: ~16 us each with NCCL, ~4-5 us custom
        assert 0.7 * generic < tpot(engine) < 0.95 * generic
