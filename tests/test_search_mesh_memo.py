"""The sweep shares across the recompute x ZeRO calls on one mesh what reads neither choice
(training_step ``mesh_memo``: the DP collective passes, the times of the operators other than
the recompute passes, the model states and buffers in memory) and sums a search's memory
without the per-kind dict (training._memory ``by_kind``). Each choice's step time and memory
must equal, bit for bit, a call of its own with none of that: no memo, one ZeRO stage, the
full breakdown (issue 10 item 5)."""

import numpy as np
import pytest

import perfmodel as pm
from perfmodel import search as S
from perfmodel.api import resolve_profile
from perfmodel.specs.assemble import resolve_system
from perfmodel.training import training_step

SPACE = S.SearchSpace(tp=(1, 2, 4), pp=(1, 2, 4), cp=(1, 2), vp=(1, 2), micro_batch=(1, 2),
                      ep=(1, 2), recompute=("none", "selective", "full"))


@pytest.mark.parametrize(("model", "framework", "precision"), [
    ("llama-3-8b", "megatron-core", "bf16"),
    ("llama-3-8b", "torchtitan", "fp8"),  # FSDP terms, fp8 casts; ZeRO-3 unsharded under PP
    ("mixtral-8x7b", "deepspeed", "bf16"),  # MoE: expert parallelism, grouped GEMMs
])
def test_each_choice_equals_its_own_call(model, framework, precision):
    sc = pm.Scenario(kind="training", model=model,
                     system={"device": "h100-sxm5-80gb", "num_gpus": 16},
                     training={"seq_len": 4096, "global_batch": 32, "framework": framework,
                               "precision": precision})
    system, profile = resolve_system(sc.system), resolve_profile(sc)
    sw = S.sweep(sc.model, system, profile, S.base_plan(sc), SPACE, [4, 8, 16])
    unsharded = S._unsharded_under_pp(sw.base)
    checked = 0
    for c in sw.choices:
        if c.valid is None or not c.valid.any():
            continue
        plan = S._mesh_plan(sw.base, c.axes, c.recompute, c.sequence_parallel, c.zero_stage)
        with np.errstate(all="ignore"):
            own = training_step(sw.model, system, plan, profile)
            if unsharded and c.zero_stage == 3:  # ZeRO-1's numbers where pp > 1 (the sweep's)
                one = training_step(sw.model, system, S._mesh_plan(
                    sw.base, c.axes, c.recompute, c.sequence_parallel, 1), profile)
                piped = S._columns(c.axes)["pp"] > 1
                own.step_time = np.where(piped, one.step_time, own.step_time)
                own.memory_total = np.where(piped, one.memory_total, own.memory_total)
        shape = c.step.shape
        step = np.broadcast_to(own.step_time, shape)
        memory = np.broadcast_to(own.memory_total, shape)
        ok = c.ok
        assert np.array_equal(c.step[ok], step[ok]), (c.recompute, c.sequence_parallel,
                                                       c.zero_stage)
        assert np.array_equal(c.memory[c.valid], memory[c.valid]), (
            c.recompute, c.sequence_parallel, c.zero_stage)
        checked += int(ok.sum())
    assert checked > 0
