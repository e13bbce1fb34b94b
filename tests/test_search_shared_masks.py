"""The sweep computes each (sequence parallelism, ZeRO) choice's rule and capability masks once
and shares them across the recompute policies, and each record's model FLOPs once per
(micro-batch, recompute): both equal what a choice computes on its own (issue 10 item 5)."""

from dataclasses import replace

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import search as S
from perfmodel.api import resolve_profile
from perfmodel.specs.assemble import resolve_system
from perfmodel.training import flops_utilization, model_flops_per_step

SPACE = S.SearchSpace(tp=(1, 2, 4), pp=(1, 2, 4), cp=(1, 2), vp=(1, 2), micro_batch=(1, 2),
                      ep=(1,), recompute=("none", "selective", "full"))


def _sweep(framework: str):
    sc = pm.Scenario(kind="training", model="llama-3-8b",
                     system={"device": "h100-sxm5-80gb", "num_gpus": 16},
                     training={"seq_len": 4096, "global_batch": 32, "framework": framework})
    system = resolve_system(sc.system)
    counts = [4, 8, 16]
    sw = S.sweep(sc.model, system, resolve_profile(sc), S.base_plan(sc), SPACE, counts)
    return sw, counts


# torchtitan: no ZeRO-1, DDP only as the sole dimension (capability masks that bind)
@pytest.mark.parametrize("framework", ["megatron-core", "torchtitan"])
def test_shared_masks_equal_each_choices_own(framework):
    sw, counts = _sweep(framework)
    assert sw.choices
    for c in sw.choices:
        plan = S._mesh_plan(sw.base, c.axes, c.recompute, c.sequence_parallel, c.zero_stage)
        # the stage-free rules as the sweep reads them (at stage 0: the search derives each
        # ZeRO-3 plan's resharding itself), the framework's rules at the choice's own stage
        rules = S._rules_mask(sw.model, S._mesh_plan(sw.base, c.axes, c.recompute,
                                                     c.sequence_parallel, 0))
        own = np.broadcast_to(
            rules & S._real_plans(c.axes, np.asarray(counts, float))
            & S._capability_mask(sw.model, plan), c.step.shape)
        assert np.array_equal(c.valid, own), (c.recompute, c.sequence_parallel, c.zero_stage)


def test_records_flops_equal_their_own_computation():
    sw, _ = _sweep("megatron-core")
    recs = S.best_per_gpu_count(sw)
    assert recs and len(sw.flops) >= 1
    for rec in recs:
        plan = replace(sw.base, micro_batch=rec["micro_batch"], recompute=rec["recompute"])
        flops = float(model_flops_per_step(sw.model, plan)[0])
        mfu = flops_utilization(flops, rec["step_time_s"], rec["gpus"],
                                sw.system.device.peak_flops(sw.base.precision))
        assert rec["mfu"] == float(mfu)
