"""Speed of the core: one training prediction, and plans per second over a grid.

Prints (a) the time of one 3D-parallel training prediction through the core (target: well
under 1 ms) and through the full public API (scenario validation + report), and (b) plans
evaluated per second when training_step takes numpy arrays over >= 100,000 plans (TP, PP,
DP, VP, micro-batch; categorical choices looped outside) — target >= 1e5 plans/s — both for a
Cartesian grid passed as broadcastable axes (how a plan search calls it) and for a flat
array of random plans. Best of several runs; this 2-core machine is noisy.

Run: python benchmarks/prediction_speed.py
"""

from __future__ import annotations

import time

import numpy as np

import perfmodel as pm
from perfmodel.plan import TrainPlan, training_rules, valid_mask
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.registry import get_model, profile_for
from perfmodel.specs.scenario import SystemConfig
from perfmodel.training import training_step

MODEL = get_model("gpt-175b")
SYSTEM = resolve_system(SystemConfig(device="a100-sxm4-80gb", num_gpus=1024,
                                     inter_node="ib-hdr-200x8"))
PROFILE = profile_for("a100-sxm4-80gb")


def best(fn, repeat: int = 5, number: int = 1) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return min(times)


def single() -> None:
    plan = TrainPlan(tp=8, pp=8, dp=16, cp=1, ep=1, etp=8, vp=1, micro_batch=1, seq_len=2048,
                     global_batch=1536)
    core = best(lambda: training_step(MODEL, SYSTEM, plan, PROFILE), number=200)
    print(f"one training prediction (core, GPT-3 175B, TP8 PP8 DP16): {core * 1e3:.3f} ms")
    sc = pm.load_scenario("examples/gpt3-175b-1024-a100.yaml")
    api = best(lambda: pm.predict(sc), number=50)
    print(f"one training prediction (public API incl. per-operator report): {api * 1e3:.3f} ms")


def grid() -> None:
    # Cartesian grid as broadcastable axes: 4 tp x 6 pp x 5 dp x 4 vp x 6 mb x 45 global
    # batch sizes = 129,600 plans
    tp = np.array([1, 2, 4, 8.0]).reshape(-1, 1, 1, 1, 1, 1)
    pp = np.array([1, 2, 4, 8, 12, 16.0]).reshape(1, -1, 1, 1, 1, 1)
    dp = np.array([8, 16, 32, 64, 128.0]).reshape(1, 1, -1, 1, 1, 1)
    vp = np.array([1, 2, 3, 4.0]).reshape(1, 1, 1, -1, 1, 1)
    mb = np.array([1, 2, 4, 8, 16, 32.0]).reshape(1, 1, 1, 1, -1, 1)
    gb = (512 * np.arange(1, 46.0)).reshape(1, 1, 1, 1, 1, -1)
    plan = TrainPlan(tp=tp, pp=pp, dp=dp, cp=1, ep=1, etp=tp, vp=vp, micro_batch=mb,
                     seq_len=2048, global_batch=gb, schedule="interleaved")
    n = int(np.broadcast(tp, pp, dp, vp, mb, gb).size)

    def run():
        r = training_step(MODEL, SYSTEM, plan, PROFILE)
        mask = valid_mask(training_rules(MODEL, 1024), plan)
        return np.broadcast_to(r.step_time, mask.shape), np.broadcast_to(r.memory_total,
                                                                          mask.shape)

    t = best(run, repeat=3)
    print(f"grid of {n:,} plans (broadcast axes): {t:.3f} s -> {n / t:,.0f} plans/s")

    rng = np.random.default_rng(0)
    m = 100_000
    tpf = rng.choice([1, 2, 4, 8], m).astype(float)
    ppf = rng.choice([1, 2, 4, 8, 16], m).astype(float)
    flat = TrainPlan(tp=tpf, pp=ppf, dp=1024 / (tpf * ppf), cp=1, ep=1, etp=tpf,
                     vp=rng.choice([1, 2], m).astype(float),
                     micro_batch=rng.choice([1, 2, 4], m).astype(float), seq_len=2048,
                     global_batch=1536)
    t = best(lambda: training_step(MODEL, SYSTEM, flat, PROFILE), repeat=3)
    print(f"flat array of {m:,} random plans: {t:.3f} s -> {m / t:,.0f} plans/s")


if __name__ == "__main__":
    single()
    grid()
