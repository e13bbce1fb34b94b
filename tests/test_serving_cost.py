"""The serving iteration time has one home (serving/cost.py, issue 8): the simulator's scalar
fast path (``step_time``) and its decode runs (``decode_run_times``) add the same terms as the
vectorised ``iteration_time`` that is tested against the inference model in test_serving.py."""

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.resolve import inference_plan, resolve_profile
from perfmodel.serving.cost import IterationCostModel
from perfmodel.specs.assemble import resolve_system


@pytest.fixture(scope="module", params=[(1, 1), (2, 2)], ids=["tp1-pp1", "tp2-pp2"])
def cost(request):
    tp, pp = request.param
    sc = pm.Scenario(kind="inference", model="llama-3-8b",
                     system={"device": "h100-sxm5-80gb", "num_gpus": tp * pp},
                     parallelism={"tp": tp, "pp": pp},
                     inference={"batch": 1, "prompt_len": 8, "output_len": 2})
    system = resolve_system(sc.system)
    plan = inference_plan(sc.model, sc.parallelism, sc.inference, system.num_gpus,
                          request=False)
    return IterationCostModel(sc.model, system, plan, resolve_profile(sc), max_tokens=8192,
                              max_context=8192, max_batch=256)


@pytest.mark.parametrize("chunks,decode_kv", [
    ([(512, 512)], []),
    ([(300, 1324), (17, 17)], []),
    ([], [901.0] * 32),
    ([], [3.0, 77.0, 4000.0]),
    ([(256, 2304)], [1200.0] * 8),
])
def test_step_time_is_iteration_time(cost, chunks, decode_kv):
    """Same terms, scalar interpolation in place of numpy: equal to rounding."""
    q = [c for c, _ in chunks]
    kv = [k for _, k in chunks]
    dkv = np.asarray(decode_kv) if decode_kv else None
    n = len(chunks) + len(decode_kv)
    fast = cost.step_time(chunks, dkv, n)
    ref = cost.iteration_time(q, kv, decode_kv)
    assert fast == pytest.approx(ref, rel=1e-12)
    assert cost.step_time(chunks, dkv, n, overhead=1e-3) == pytest.approx(ref + 1e-3,
                                                                          rel=1e-12)


def test_lm_head_runs_for_sequences_that_sample(cost):
    """H(L) counts the sequences that sample a token, per micro-batch: four chunks that end
    their prompts differ from one that does by the LM-head term alone."""
    chunks = [(128, 128)] * 4
    four = cost.step_time(chunks, None, 4)
    one = cost.step_time(chunks, None, 1)
    m = cost.micro(4)
    assert four - one == pytest.approx(cost.dense(512 / m, 4 / m) - cost.dense(512 / m, 1 / m),
                                       rel=1e-9)


@pytest.mark.parametrize("k", [1, 5, 16, 40, 300])
def test_decode_run_is_a_sequence_of_decode_iterations(cost, k):
    """k steps of one batch: step j has every context advanced by j; beyond 16 steps the
    attention work is interpolated between 9 knots (linear in context, so near-exact)."""
    ctx = np.array([10, 500, 2047, 3000], np.int64)
    times = cost.decode_run_times(ctx, k, overhead=2e-4)
    assert times.shape == (k,)
    for j in sorted({0, k // 2, k - 1}):
        one = cost.step_time([], ctx + j + 1.0, ctx.size, overhead=2e-4)
        assert times[j] == pytest.approx(one, rel=1e-12 if k <= 16 else 1e-3)
