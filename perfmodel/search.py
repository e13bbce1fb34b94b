"""Vectorised search over parallel training plans.

Enumerates every (tp, pp, cp, dp, ep, vp, micro-batch) that could run a training scenario's
model on its system, evaluates all of them in one call per categorical choice (recompute,
sequence parallelism, ZeRO stage) through the same ``training_step`` a single prediction uses,
drops the plans that break a rule or do not fit in memory, and ranks the rest by step time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from .memory import memory_fits
from .plan import TrainPlan, training_rules, valid_mask
from .profile import CalibrationProfile
from .specs.model import ModelSpec
from .specs.scenario import Scenario
from .specs.system import System
from .training import flops_utilization, training_step

NUMERIC = ("tp", "pp", "cp", "dp", "ep", "vp", "micro_batch")


@dataclass(frozen=True)
class SearchSpace:
    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    cp: tuple[int, ...] = (1, 2, 4)
    vp: tuple[int, ...] = (1, 2, 4)
    micro_batch: tuple[int, ...] = (1, 2, 4, 8)
    ep: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    recompute: tuple[str, ...] = ("none", "selective", "full")
    sequence_parallel: tuple[bool, ...] = (True, False)
    zero_stage: tuple[int, ...] = (0, 1, 3)


@dataclass
class SearchResult:
    plans: list[dict]  # best first
    evaluated: int
    valid: int
    fitting: int


def candidate_grid(model: ModelSpec, num_gpus: int, space: SearchSpace) -> dict[str, np.ndarray]:
    """All numeric combinations whose GPU count works out (dp = GPUs / (tp pp cp))."""
    eps = space.ep if model.moe else (1,)
    rows = []
    for tp, pp, cp, ep, vp, mb in itertools.product(space.tp, space.pp, space.cp, eps,
                                                     space.vp, space.micro_batch):
        mp = tp * pp * cp
        if num_gpus % mp or (vp > 1 and pp == 1):
            continue
        rows.append((tp, pp, cp, num_gpus // mp, ep, vp, mb))
    grid = np.array(rows, dtype=float).reshape(-1, len(NUMERIC))
    return {name: grid[:, i] for i, name in enumerate(NUMERIC)}


def search(sc: Scenario, system: System, profile: CalibrationProfile,
           space: SearchSpace | None = None, top: int = 10) -> SearchResult:
    """Rank every valid, fitting plan for the scenario's model, system and workload."""
    space = space or SearchSpace()
    base = TrainPlan.from_scenario(sc)
    grid = candidate_grid(sc.model, system.num_gpus, space)
    rules = training_rules(sc.model, system.num_gpus)
    peak = system.device.peak_flops(base.precision)
    found: list[dict] = []
    evaluated = valid_count = fitting_count = 0
    for recompute, sp, zero in itertools.product(space.recompute, space.sequence_parallel,
                                                 space.zero_stage):
        plan = replace(base, tp=grid["tp"], pp=grid["pp"], cp=grid["cp"], dp=grid["dp"],
                       ep=grid["ep"], etp=grid["tp"], vp=grid["vp"],
                       micro_batch=grid["micro_batch"], recompute=recompute,
                       sequence_parallel=sp,
                       zero_stage=zero, schedule="interleaved")
        mask = valid_mask(rules, plan) & ((grid["tp"] > 1) | (not sp))
        r = training_step(sc.model, system, plan, profile)
        step = np.broadcast_to(r.step_time, mask.shape)
        memory = np.broadcast_to(r.memory_total, mask.shape)
        mfu = np.broadcast_to(flops_utilization(r.model_flops, r.step_time, system.num_gpus,
                                                peak), mask.shape)
        fits = memory_fits(memory, system.device)
        evaluated += mask.size
        valid_count += int(mask.sum())
        fitting_count += int((mask & fits).sum())
        for i in np.flatnonzero(mask & fits):
            found.append({
                **{k: int(grid[k][i]) for k in NUMERIC},
                "sequence_parallel": sp, "recompute": recompute, "zero_stage": zero,
                "step_time_s": float(step[i]), "memory_per_gpu_bytes": float(memory[i]),
                "tokens_per_s": float(base.global_batch * base.seq_len / step[i]),
                "mfu": float(mfu[i]),
            })
    found.sort(key=lambda p: (p["step_time_s"], p["memory_per_gpu_bytes"]))
    return SearchResult(plans=found[:top], evaluated=evaluated, valid=valid_count,
                        fitting=fitting_count)
