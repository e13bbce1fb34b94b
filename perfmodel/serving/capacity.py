"""Capacity planning: the fewest GPUs, per device type and TP degree, that serve a request
rate within latency SLOs -- and what that costs per hour, per million tokens and in energy.

For each (device, tp) the search simulates the workload on R replicas (``Deployment``) and
finds the smallest R whose SLO percentiles all hold: it starts from a throughput estimate
(a replica decoding its KV-limited batch back to back after prefilling each prompt at batch
1), grows R by doubling until the SLOs hold and bisects below. Latency falls and goodput
rises with R (more replicas share the same arrivals), which the bisection relies on; a
candidate whose zero-load latency already misses an SLO is infeasible at any R. Candidates
are visited cheapest estimate first, and one whose optimistic cost cannot beat the best
found so far is skipped. The answer is the cheapest feasible candidate by $/hour (fewer GPUs
on a tie); every candidate is reported with its reason.

Aggregated schedulers only (static, continuous, chunked); sizing DistServe's two pools is a
two-dimensional search left to ``perfmodel predict`` with explicit pool sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..profile import CalibrationProfile
from ..specs import registry
from ..specs.assemble import resolve_system
from ..specs.model import ModelSpec
from ..specs.registry import profile_for
from ..specs.scenario import (
    ArrivalConfig,
    EngineConfig,
    InferenceConfig,
    LengthDistribution,
    Parallelism,
    Scenario,
    SchedulerConfig,
    ServingConfig,
    SLOConfig,
    SystemConfig,
)
from .deploy import Deployment, zero_load
from .economics import PriceTable, cost_report, energy_report, load_prices
from .metrics import latencies, slo_report
from .predict import deployment_for
from .workload import Workload, build_workload

DEFAULT_TPS = (1, 2, 4, 8)
DEFAULT_PLAN_REQUESTS = 600


@dataclass
class PlanInputs:
    model: ModelSpec
    rate_per_s: float
    slo: SLOConfig
    prompt_len: LengthDistribution
    output_len: LengthDistribution
    devices: list[str] | None = None  # default: every device with a price
    tps: tuple[int, ...] = DEFAULT_TPS
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    inference: InferenceConfig = field(default_factory=lambda: InferenceConfig(prompt_len=1))
    arrival: str = "poisson"
    cv: float = 1.0
    num_requests: int = DEFAULT_PLAN_REQUESTS
    seed: int = 0
    max_gpus: int = 512
    prices: PriceTable | None = None
    calibration: str | Path | None = None
    # the serving engine: its KV rule and max_num_seqs default size each instance (generic:
    # perfmodel's engine-neutral rule and serving.scheduler.max_batch)
    engine: EngineConfig = field(default_factory=EngineConfig)


def _scheduler_kind(inp: PlanInputs) -> str:
    """The scheduler every candidate runs: the given kind, else the named engine's own
    (engines/<id>.yaml scheduler.policy, as ``deploy._engine_scheduler`` applies it)."""
    sched = inp.scheduler
    if "kind" in sched.model_fields_set or inp.engine.name == "generic":
        return sched.kind
    from ..engines import engine_for

    return engine_for(inp.engine).scheduler.policy or sched.kind


@dataclass
class Candidate:
    device: str
    tp: int
    feasible: bool
    reason: str = ""
    replicas: int = 0
    gpus: int = 0
    simulations: int = 0
    metrics: dict = field(default_factory=dict)
    cost: dict | None = None
    energy: dict | None = None

    def to_dict(self) -> dict:
        return {"device": self.device, "tp": self.tp, "feasible": self.feasible,
                "reason": self.reason, "replicas": self.replicas, "gpus": self.gpus,
                "simulations": self.simulations, "metrics": self.metrics, "cost": self.cost,
                "energy": self.energy}


@dataclass
class PlanResult:
    inputs: dict
    candidates: list[Candidate]
    warnings: list[str] = field(default_factory=list)
    frontier: list[dict] = field(default_factory=list)  # throughput vs interactivity points

    @property
    def best(self) -> Candidate | None:
        ok = [c for c in self.candidates if c.feasible and c.cost]
        if not ok:
            ok = [c for c in self.candidates if c.feasible]
            return min(ok, key=lambda c: c.gpus) if ok else None
        return min(ok, key=lambda c: (c.cost["usd_per_hour"], c.gpus))

    def to_dict(self) -> dict:
        best = self.best
        return {"inputs": self.inputs, "best": best.to_dict() if best else None,
                "candidates": [c.to_dict() for c in self.candidates],
                "frontier": [p for p in self.frontier if p["pareto"]],
                "frontier_points": list(self.frontier),
                "warnings": list(self.warnings)}


def _serving(inp: PlanInputs) -> ServingConfig:
    return ServingConfig(
        arrival=ArrivalConfig(process=inp.arrival, rate_per_s=inp.rate_per_s, cv=inp.cv),
        num_requests=inp.num_requests, prompt_len=inp.prompt_len, output_len=inp.output_len,
        scheduler=inp.scheduler, slo=inp.slo, seed=inp.seed)


def _scenario(inp: PlanInputs, device: str, tp: int) -> Scenario:
    return Scenario(kind="serving", model=inp.model,
                    system=SystemConfig(device=device, num_gpus=tp),
                    parallelism=Parallelism(tp=tp), inference=inp.inference,
                    serving=_serving(inp), engine=inp.engine)


def _profile(device: str, calibration: str | Path | None) -> CalibrationProfile:
    if calibration:
        prof = profile_for(device, calibration)
        if prof.device in (None, device):
            return prof
    return profile_for(device)


def _zero_load_misses(dep: Deployment, wl: Workload, slo: SLOConfig) -> str | None:
    """An SLO that a single request on an idle replica already misses (then no replica
    count helps): TTFT at the bound's percentile of prompt lengths, TPOT and E2E at the
    median request."""
    p50, o50 = int(np.median(wl.prompt)), int(np.median(wl.output))
    for key, bound in slo.model_dump().items():
        if bound is None:
            continue
        metric, pct = key.removesuffix("_s").split("_p")
        p = int(np.percentile(wl.prompt, float(pct))) if metric == "ttft" else p50
        z = zero_load(dep, p, max(o50, 2))
        value = z[f"{metric}_s"]
        if value > bound:
            return (f"unreachable: {key} = {bound:g} s but one request on an idle replica "
                    f"takes {value:.4g} s")
    return None


def _replica_estimate(dep: Deployment, wl: Workload) -> float:
    """Requests/s one replica can at most sustain: prefill each mean prompt at batch 1,
    decode a KV- and max_batch-limited batch at the mean context."""
    inst = dep.instances[0]
    p, o = float(wl.prompt.mean()), float(wl.output.mean())
    batch = max(1, int(min(dep.scheduler.max_batch, inst.kv.tokens / max(p + o, 1.0))))
    t_pre = inst.cost.iteration_time([p], [p])
    t_dec = inst.cost.iteration_time([], [], [p + o / 2] * batch)
    per_request = t_pre + max(o - 1, 0) * t_dec / batch
    return 1.0 / per_request


def _evaluate(dep: Deployment, wl: Workload, slo: SLOConfig, replicas: int) -> dict:
    res = dep.with_counts(replicas).simulate(wl)
    lat = latencies(res.reqs)
    makespan = float(np.nanmax(res.reqs.finish) - res.reqs.arrival.min())
    rep = slo_report(lat, slo, makespan)
    out_tps = float(res.reqs.output.sum()) / makespan if makespan > 0 else 0.0
    return {
        "slo_met": rep["slo_met"],
        "ttft_p90_s": float(np.nanpercentile(lat["ttft"], 90)),
        "tpot_p90_s": float(np.nanpercentile(lat["tpot"], 90))
        if np.any(~np.isnan(lat["tpot"])) else 0.0,
        "e2e_p90_s": float(np.nanpercentile(lat["e2e"], 90)),
        "checks": rep["checks"], "attainment": rep["attainment"],
        "goodput_rps": rep["goodput_rps"], "output_tokens_per_s": out_tps,
        "requests_per_s": len(res.reqs) / makespan if makespan > 0 else 0.0,
    }


def _search(dep: Deployment, wl: Workload, inp: PlanInputs, tp: int, start: int
            ) -> tuple[int, dict, int] | tuple[None, dict, int]:
    """Smallest replica count meeting the SLOs (None above max_gpus), its metrics, and the
    number of simulations run."""
    cache: dict[int, dict] = {}

    def ok(r: int) -> bool:
        if r not in cache:
            cache[r] = _evaluate(dep, wl, inp.slo, r)
        return cache[r]["slo_met"]

    limit = max(inp.max_gpus // tp, 0)
    if limit < 1:
        return None, {}, 0
    r = min(max(start, 1), limit)
    if ok(r):
        lo, hi = 0, r
    else:
        lo = r
        while True:
            if lo >= limit:
                return None, cache[lo], len(cache)
            hi = min(lo * 2, limit)
            if ok(hi):
                break
            lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi, cache[hi], len(cache)


def _devices(inp: PlanInputs, prices: PriceTable) -> list[str]:
    if inp.devices:
        for d in inp.devices:
            registry.get_device(d)  # raises with suggestions
        return list(inp.devices)
    known = registry.devices()
    return [d for d in prices.devices if d in known]


def plan_serving(inp: PlanInputs) -> PlanResult:
    if inp.scheduler.kind == "disaggregated":
        raise SpecError("plan-serving sizes aggregated deployments (one scheduler on every "
                        "instance); predict a disaggregated scenario with explicit "
                        "prefill_gpus / decode_gpus instead")
    if not any(v is not None for v in inp.slo.model_dump().values()):
        raise SpecError("plan-serving needs at least one SLO (e.g. --ttft-p90 0.5 "
                        "--tpot-p90 0.05)")
    prices = inp.prices or load_prices()
    wl = build_workload(_serving(inp))
    staged = []
    frontier: list[dict] = []
    candidates: list[Candidate] = []
    uncalibrated: list[str] = []  # devices answered with the documented default efficiencies
    warnings: list[str] = []
    for device in _devices(inp, prices):
        for tp in inp.tps:
            sc = _scenario(inp, device, tp)
            try:
                system = resolve_system(sc.system)
                profile = _profile(device, inp.calibration)
                _note_profile(profile, system, uncalibrated, warnings)
                dep = deployment_for(sc, system, profile, sc.inference, wl, counts=(1,))
            except SpecError as err:
                candidates.append(Candidate(device, tp, False, f"does not apply: {err}"))
                continue
            frontier += batch_points(dep, wl, device, tp) + _ep_points(sc, system, profile,
                                                                       wl, device, tp)
            miss = _zero_load_misses(dep, wl, inp.slo)
            if miss:
                candidates.append(Candidate(device, tp, False, miss))
                continue
            est = inp.rate_per_s / _replica_estimate(dep, wl)
            price = prices.devices.get(device)
            floor = math.floor(0.7 * est)
            optimistic = (price.usd_per_gpu_hour * tp * max(floor, 1)) if price else math.inf
            staged.append((optimistic, device, tp, dep, system, profile, max(1, round(est))))
    staged.sort(key=lambda s: (s[0], s[1], s[2]))
    best_cost = math.inf
    for optimistic, device, tp, dep, system, profile, start in staged:
        if optimistic > best_cost:
            candidates.append(Candidate(device, tp, False,
                                        f"skipped: cannot beat {best_cost:.2f} USD/h "
                                        f"(needs >= {optimistic:.2f} USD/h by its throughput "
                                        "estimate)"))
            continue
        replicas, metrics, sims = _search(dep, wl, inp, tp, start)
        if replicas is None:
            candidates.append(Candidate(device, tp, False,
                                        f"SLOs not met within max_gpus = {inp.max_gpus}",
                                        simulations=sims, metrics=metrics))
            continue
        gpus = replicas * tp
        cost = cost_report(prices, device, gpus, metrics["output_tokens_per_s"])
        energy = energy_report(system.device, profile, gpus, metrics["output_tokens_per_s"])
        cand = Candidate(device, tp, True, "meets the SLOs", replicas, gpus, sims, metrics,
                         cost, energy)
        candidates.append(cand)
        if cost:
            best_cost = min(best_cost, cost["usd_per_hour"])
    candidates.sort(key=lambda c: (not c.feasible,
                                   c.cost["usd_per_hour"] if c.cost else math.inf,
                                   c.device, c.tp))
    inputs = {"model": inp.model.id, "rate_per_s": inp.rate_per_s,
              "slo": {k: v for k, v in inp.slo.model_dump().items() if v is not None},
              "prompt_len": inp.prompt_len.model_dump(exclude_none=True),
              "output_len": inp.output_len.model_dump(exclude_none=True),
              "scheduler": _scheduler_kind(inp), "arrival": inp.arrival,
              "num_requests": inp.num_requests, "seed": inp.seed,
              "prices": {"basis": prices.basis, "currency": prices.currency},
              "engine": inp.engine.name, "profiles": _profile_kinds(staged, candidates)}
    if uncalibrated:
        warnings.insert(0, "uncalibrated: documented default efficiencies (no measured or "
                        f"reference profile) for {', '.join(uncalibrated)}; their answers "
                        "are rougher than the calibrated devices'")
    return PlanResult(inputs, candidates, warnings, mark_pareto(frontier))


FRONTIER_BATCHES = tuple(2 ** k for k in range(11))  # 1 ... 1024 sequences


def _ep_points(sc: Scenario, system, profile, wl: Workload, device: str, tp: int
               ) -> list[dict]:
    """For a MoE model, the same TP with its experts spread over the TP ranks (ep = tp,
    vLLM's --enable-expert-parallel) as frontier points of their own."""
    if sc.model.moe is None or tp == 1:
        return []
    ep = sc.model_copy(update={"parallelism": sc.parallelism.model_copy(update={"ep": tp})})
    try:
        dep = deployment_for(ep, system, profile, ep.inference, wl, counts=(1,))
    except SpecError:
        return []
    return batch_points(dep, wl, device, tp, ep=tp)


def batch_points(dep: Deployment, wl: Workload, device: str, tp: int, ep: int = 1
                 ) -> list[dict]:
    """Throughput per GPU vs interactivity of one replica at each decode batch up to its KV-
    and max_batch-limited size: tokens/s/user = 1 / TPOT(batch, mean context), tokens/s/GPU =
    batch x output / (batch x prefill(mean prompt) + output x TPOT) / GPUs (each request's
    prompt prefilled once at batch 1, as ``_replica_estimate``; the curve hardware is compared
    by, e.g. SemiAnalysis InferenceMAX's throughput-vs-interactivity plots)."""
    inst = dep.instances[0]
    p, o = float(wl.prompt.mean()), float(wl.output.mean())
    top = max(1, int(min(dep.scheduler.max_batch, inst.kv.tokens / max(p + o, 1.0))))
    t_pre = inst.cost.iteration_time([p], [p])
    gpus = int(inst.plan.instance_gpus)
    out = []
    for b in sorted({x for x in FRONTIER_BATCHES if x <= top} | {top}):
        tpot = inst.cost.iteration_time([], [], [p + o / 2] * b)
        out.append({"device": device, "tp": tp, "ep": ep, "batch": b, "tpot_s": tpot,
                    "tokens_per_s_per_user": 1.0 / tpot,
                    "tokens_per_s_per_gpu": b * o / (b * t_pre + max(o - 1, 0) * tpot) / gpus,
                    "pareto": False})
    return out


def mark_pareto(points: list[dict]) -> list[dict]:
    """Flag the points no other point beats in both tokens/s/GPU and tokens/s/user; sorted
    by interactivity."""
    points = sorted(points, key=lambda q: (-q["tokens_per_s_per_user"],
                                           -q["tokens_per_s_per_gpu"]))
    best = -1.0
    for q in points:
        if q["tokens_per_s_per_gpu"] > best:
            q["pareto"], best = True, q["tokens_per_s_per_gpu"]
    return points


def render_frontier(result: PlanResult) -> list[str]:
    """The Pareto points, most interactive first."""
    from ..textfmt import table

    rows = [(q["device"], q["tp"], q["ep"], q["batch"], f"{q['tokens_per_s_per_user']:.1f}",
             f"{q['tokens_per_s_per_gpu']:.1f}", f"{q['tpot_s'] * 1e3:.1f}")
            for q in result.frontier if q["pareto"]]
    if not rows:
        return []
    return ["", "throughput vs interactivity (Pareto over device x TP/EP x batch, one replica "
            "at the mean prompt / output):",
            table(rows, header=("device", "tp", "ep", "batch", "tok/s/user", "tok/s/GPU",
                                "TPOT ms"))]


def _profile_kinds(staged: list, candidates: list[Candidate]) -> dict[str, str]:
    """Which kind of calibration profile answered for each device that was sized: measured
    (a reference or user profile fitted to measured kernels) or default (uncalibrated)."""
    kinds = {}
    for s in staged:
        device, profile = s[1], s[5]
        kinds[device] = "default" if profile.kind == "default" else "measured"
    return dict(sorted(kinds.items()))


def _note_profile(profile: CalibrationProfile, system, uncalibrated: list[str],
                  warnings: list[str]) -> None:
    """Collect what a device's profile should warn about, once per device / message."""
    from ..resolve import profile_warnings

    if profile.kind == "default":
        if system.device.id not in uncalibrated:
            uncalibrated.append(system.device.id)
        return
    for w in profile_warnings(profile, system):
        if w not in warnings:
            warnings.append(w)


def render_plan(result: PlanResult) -> str:
    """A table of every candidate, cheapest first, and the answer."""
    from ..textfmt import table

    rows = []
    for c in result.candidates:
        if c.feasible:
            m = c.metrics
            rows.append((c.device, c.tp, c.replicas, c.gpus,
                         f"{m['ttft_p90_s'] * 1e3:.0f}", f"{m['tpot_p90_s'] * 1e3:.1f}",
                         f"{c.cost['usd_per_hour']:.2f}" if c.cost else "-",
                         f"{c.cost['usd_per_million_output_tokens']:.3f}" if c.cost else "-",
                         f"{c.energy['joules_per_output_token']:.2f}"
                         if c.energy and "joules_per_output_token" in c.energy else "-"))
    out = []
    inp = result.inputs
    slo = ", ".join(f"{k} <= {v:g}" for k, v in inp["slo"].items())
    out.append(f"plan-serving: {inp['model']} at {inp['rate_per_s']:g} req/s ({inp['arrival']}),"
               f" {inp['scheduler']} batching; SLOs: {slo}")
    if inp.get("engine", "generic") != "generic":
        out.append(f"engine: {inp['engine']} (its KV-cache rule and max_num_seqs default size "
                   "each instance; docs/engines.md)")
    kinds = inp.get("profiles") or {}
    if kinds:
        measured = [d for d, k in kinds.items() if k == "measured"]
        default = [d for d, k in kinds.items() if k == "default"]
        out.append("measured profiles: " + (", ".join(measured) or "none")
                   + ("; uncalibrated: " + ", ".join(default) if default else ""))
    out.append("")
    if rows:
        out.append(table(rows, header=("device", "tp", "replicas", "GPUs", "TTFT p90 ms",
                                       "TPOT p90 ms", "USD/h", "USD/M out tok", "J/out tok")))
    else:
        out.append("no device / TP meets the SLOs")
    skipped = [f"{c.device} tp{c.tp}" for c in result.candidates
               if c.reason.startswith("skipped")]
    others = [c for c in result.candidates if not c.feasible and c not in skipped
              and not c.reason.startswith("skipped")]
    if others:
        out.append("")
        out.append("not feasible:")
        out += [f"  {c.device} tp {c.tp}: {c.reason}" for c in others]
    if skipped:
        out.append("")
        out.append("not simulated (even their throughput estimate costs more than the "
                   f"cheapest): {', '.join(skipped)}")
    best = result.best
    out.append("")
    if best:
        price = best.cost["price"] if best.cost else "no price in the table"
        out.append(f"cheapest: {best.replicas} x {best.device} (tp {best.tp}) = {best.gpus} GPUs"
                   + (f", {best.cost['usd_per_hour']:.2f} USD/h, "
                      f"{best.cost['usd_per_million_output_tokens']:.3f} USD per million "
                      "output tokens" if best.cost else ""))
        out.append(f"price basis: {price}")
        if best.energy and "joules_per_output_token" in best.energy:
            out.append(f"energy: {best.energy['joules_per_output_token']:.3f} J per output "
                       f"token at {best.energy['power_basis']}")
    out += render_frontier(result)
    if result.warnings:
        out.append("")
        out += [f"warning: {w}" for w in result.warnings]
    return "\n".join(out)
