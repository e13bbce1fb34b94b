"""Megatron-Core's per-MoE-layer host sync and token-count all-gather (training.moe_dispatch_sync).
Hand calculations from Megatron-LM @44151194: token_dispatcher.py MoEAlltoAllTokenDispatcher.
preprocess (gather_from_sequence_parallel_region of the int64 counts over tp_ep_group, then
_maybe_dtoh_and_synchronize at "before_ep_alltoall") and experts.py TEGroupedMLP.forward
(tokens_per_expert.tolist() under the flex dispatchers)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import perfmodel as pm
from perfmodel import training as T
from perfmodel.comm import collective_time
from perfmodel.frameworks import common_facts
from perfmodel.resolve import resolve, training_plan
from perfmodel.topology import group_spans
from perfmodel.training import moe_dispatch_sync, training_step

QWEN3_30B = "tests/data/hf_configs/aiconfigurator-0.12.0/Qwen--Qwen3-30B-A3B_config.json"
LLAMA_8B = "llama-3-8b"


def _scenario(model=QWEN3_30B, name="nemo", dispatcher=None, ep=16, recompute="none",
              zero_stage=1):
    fw = {"name": name} | ({"moe_dispatcher": dispatcher} if dispatcher else {})
    return pm.Scenario(
        kind="training", model=model,
        system={"device": "h100-sxm5-80gb", "num_gpus": 16, "node": "dgx-h100"},
        parallelism={"tp": 1, "pp": 1, "dp": 16, "ep": ep, "etp": 1, "zero_stage": zero_stage},
        training={"framework": fw, "seq_len": 4096, "global_batch": 64, "micro_batch": 1,
                  "precision": "bf16", "recompute": recompute})


def _sync(sc):
    rs = resolve(sc)
    plan = training_plan(rs.scenario, rs.system)
    spans = group_spans(rs.system.gpus_per_node, plan.placement, tp=plan.tp, cp=plan.cp,
                        ep=plan.ep, dp=plan.dp, pp=plan.pp, etp=plan.etp)
    return rs, plan, spans, moe_dispatch_sync(rs.scenario.model, plan, spans["ep"], rs.system,
                                              rs.profile)


def test_alltoall_gather_and_host_round_trip_by_hand():
    """EP 16 over two DGX H100 nodes, 128 experts: an all-gather of 16 x 128 x 8 = 16,384 bytes
    over the EP group, plus one eager call (dispatch.forward_s) and one kernel launch."""
    rs, _, spans, (total, comm) = _sync(_scenario())
    gather = float(collective_time("all_gather", 16 * 128 * 8.0, spans["ep"], rs.system,
                                   rs.profile))
    host = common_facts().dispatch.forward_s + rs.profile.kernel_overhead_s
    assert float(comm) == pytest.approx(gather)
    assert float(total) == pytest.approx(gather + host)
    assert 0.0 < gather < 1e-3  # latency-bound: far below a millisecond


def test_full_recompute_pays_twice_and_flex_has_no_gather():
    base = float(_sync(_scenario())[3][0])
    assert float(_sync(_scenario(recompute="full"))[3][0]) == pytest.approx(2 * base)
    rs, _, _, (total, comm) = _sync(_scenario(dispatcher="flex-hybridep"))
    assert float(comm) == 0.0
    assert float(total) == pytest.approx(common_facts().dispatch.forward_s
                                         + rs.profile.kernel_overhead_s)


def test_only_megatron_family_moe():
    """No MoE facts (torchtitan) or a dense model: nothing."""
    # torchtitan offers DDP or FSDP2, no ZeRO-1 (frameworks/torchtitan.yaml capabilities)
    assert _sync(_scenario(name="torchtitan", ep=1, zero_stage=3))[3] == (0.0, 0.0)
    assert _sync(_scenario(model=LLAMA_8B, ep=1))[3] == (0.0, 0.0)


def test_the_sync_is_the_framework_files_fact():
    """Gated by ``moe.host_sync`` (not by having a moe section): NeMo with it set to none
    charges nothing."""
    rs, plan, spans, charged = _sync(_scenario())
    assert charged[0] > 0
    spec = plan.framework.spec
    no_sync = spec.model_copy(update={"moe": spec.moe.model_copy(update={"host_sync": "none"})})
    plan = replace(plan, framework=replace(plan.framework, spec=no_sync))
    assert moe_dispatch_sync(rs.scenario.model, plan, spans["ep"], rs.system,
                             rs.profile) == (0.0, 0.0)


def test_step_adds_sync_per_moe_layer_and_microbatch(monkeypatch):
    """The exposed EP time grows by microbatches x MoE layers x the per-layer sync."""
    sc = _scenario()
    rs, plan, _, (total, _) = _sync(sc)
    model = rs.scenario.model
    with_sync = training_step(model, rs.system, plan, rs.profile)
    monkeypatch.setattr(T, "moe_dispatch_sync", lambda *a, **k: (0.0, 0.0))
    without = training_step(model, rs.system, plan, rs.profile)
    extra = float(plan.num_microbatches) * model.num_moe_layers * float(total)
    assert float(with_sync.time["ep_comm"] - without.time["ep_comm"]) == pytest.approx(extra)
    assert float(with_sync.step_time - without.step_time) == pytest.approx(extra)
