"""Capacity planning: the fewest GPUs, per device type and layout (TP x PP; MoE: attention
TP x DP, EP), that serve a request rate within latency SLOs -- and what that costs per hour,
per million tokens and in energy. A replica of tp x pp GPUs may span nodes (TP16 over two 8-GPU nodes, or PP across
them): its iterations pay the inter-node all-reduces and hops as an inference plan does; a pp
that does not divide the layers splits them as the engine does (vLLM's split for generic).

For each (device, layout) the search simulates the workload on R replicas (``Deployment``) and
finds the smallest R whose SLO percentiles all hold: it starts from a throughput estimate
(a replica decoding its KV-limited batch back to back after prefilling each prompt at batch
1), grows R by doubling until the SLOs hold and bisects below. Latency falls and goodput
rises with R (more replicas share the same arrivals), which the bisection relies on; a
candidate whose zero-load latency already misses an SLO is infeasible at any R. Candidates
are visited cheapest estimate first, and one whose optimistic cost cannot beat the best
found so far is skipped. The answer is the cheapest feasible candidate by $/hour (fewer GPUs,
then the most SLO headroom, on a tie); every candidate is reported with its reason.

The engine's batch cap (max_num_seqs, ``serving.scheduler.max_batch``) is searched too: for a
(device, tp) that meets the SLOs at the engine's default cap with R replicas, each smaller cap
of ``seqs_candidates`` (powers of two from 8, or the stated set) is tried on R - 1 replicas
(then bisected below): a smaller cap shortens decode steps (lower TPOT) at the price of
queueing (higher TTFT), so it can save a replica when TPOT or E2E binds. Caps are tried only
for configurations otherwise feasible; not when one replica fewer already missed a TTFT bound
at a larger cap (a smaller cap only adds queueing before the first token) or cannot carry the
rate by the throughput estimate (``_cap_may_help``); and a cap above an earlier run's peak
batch gives the same simulation and is not run again. The KV cache stays sized at the
default cap (vLLM's start-up profile run and CUDA-graph captures grow with max_num_seqs, so a
smaller cap leaves slightly more KV: the plan is conservative there).

Every latency carries an 80 % band by predict's rule (``serving_bands``: per side the wider of
the calibration residuals through the zero-load breakdown and the validation error of
comparable cases, ``uncertainty.quantity_ratios``), as a ``ranges`` dict metric -> [lo, hi]:
the p90s, every SLO percentile, and the throughputs (the inverse of the end-to-end latency's band, capped at the offered
rate). A row whose value meets an SLO but whose band's upper end does not "may miss" it
(``may_miss_slo``); the answer prefers the cheapest row that meets every SLO across its band,
and falls back to the cheapest row that meets them at the point when none does
(``PlanResult.best``). Only such a row bounds the skip of dearer candidates, so a skipped
candidate could not have been a cheaper answer.

A row that may miss an SLO is also sized across its band (``size_across_band``): the same
search with each SLO bound divided by the upper end of its quantity's band (the band's upper
end meets a bound exactly when the value meets bound / hi), from one replica more; the result
is a second row for the same device / TP ("meets SLO across band", ``Candidate.point_replicas``
naming the count that meets the SLOs at the point), so a planner can see what the certainty
costs, and it can be the answer. It is not tried when the point row already costs at least the
cheapest row meeting the SLOs across its band, nor when an idle replica already misses a
tightened bound (then no replica count meets it across the band; the row says so).

Layouts (``layouts``): a dense model's replica is TP over each size of ``tps`` (x pp). A MoE
model's replica of n GPUs per stage is also split into attention TP x attention DP (every
divisor of n, where the engine runs DP attention: ``dp_attention_supported``) with the experts
as TP shards over the instance (ep 1) or one expert group per GPU (ep n), the serving layouts of
SGLang / vLLM DP attention + EP (perfmodel/moe_parallel.py). A scenario's own layout (its whole
parallelism section) is always a candidate, and the fields the planner replaces are listed
(``PlanInputs.replaced``, one line in the output). The throughput-vs-interactivity frontier is
the Pareto set of every evaluated (device, layout, batch) point (``mark_pareto``). A layout
that breaks a tp / ep rule of ``plan.inference_rules`` (tp 9 of a 128-head model, ep not
dividing the experts) is filtered before it is modelled, its rule counted once
(``layout_refusal``, ``inputs['layouts_refused']``); EP layouts carry EPLB's redundant experts
as given (``PlanInputs.redundant_experts``: a count, or "auto", ``redundant_for``).

Aggregated schedulers only (static, continuous, chunked); sizing DistServe's two pools is a
two-dimensional search left to ``perfmodel predict`` with explicit pool sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DoesNotFitError, SpecError
from ..profile import CalibrationProfile
from ..resolve import resolve
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
    redundant_experts_for,
)
from .deploy import Deployment, zero_load
from .economics import PriceTable, cost_report, energy_report, load_prices
from .metrics import latencies, slo_report
from .predict import deployment_for
from .workload import Workload, build_workload

DEFAULT_TPS = (1, 2, 4, 8)
DEFAULT_PLAN_REQUESTS = 600
MIN_SEQS_CANDIDATE = 8  # smallest max_num_seqs tried by default (powers of two from here)


@dataclass
class PlanInputs:
    model: ModelSpec
    rate_per_s: float
    slo: SLOConfig
    prompt_len: LengthDistribution
    output_len: LengthDistribution
    devices: list[str] | None = None  # default: every device with a price
    tps: tuple[int, ...] = DEFAULT_TPS
    pps: tuple[int, ...] = (1,)  # pipeline degrees (replica = tp x pp GPUs)
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
    # max_num_seqs caps to try (None: powers of two from MIN_SEQS_CANDIDATE below the engine's
    # default, and the default); a cap the scenario sets (serving.scheduler.max_batch or
    # engine.max_num_seqs) is used alone
    max_num_seqs: tuple[int, ...] | None = None
    # the scenario's own parallelism (plan-serving SCENARIO): its layout is always a candidate
    parallelism: Parallelism | None = None
    # MoE models: the attention-DP degrees tried per instance size (None: every divisor of it,
    # where the engine runs DP attention: ``dp_attention_supported``)
    attention_dps: tuple[int, ...] | None = None
    # one line per scenario field the planner replaces (``replaced_fields``), printed as given
    replaced: list[str] = field(default_factory=list)
    # MoE layouts with ep > 1: EPLB's redundant expert replicas (SGLang
    # --ep-num-redundant-experts, vLLM --eplb-config num_redundant_experts), a count or "auto"
    # (per EP degree the fewest that make ep divide the experts: ``redundant_for``)
    redundant_experts: int | str = 0


@dataclass(frozen=True)
class Layout:
    """One instance's parallel layout: attention TP ``tp`` x attention DP ``attention_dp`` x
    ``pp`` GPUs, the routed experts over ``ep`` groups of the tp x attention_dp GPUs of a
    stage (perfmodel/moe_parallel.py)."""

    tp: int
    pp: int = 1
    attention_dp: int = 1
    ep: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.attention_dp * self.pp

    @property
    def label(self) -> str:
        """"tp 8", "tp 8 ep 8", "tp 1 dp 8 ep 8" (attention DP), with " pp 2" when pipelined."""
        return layout_label(self.tp, self.pp, self.attention_dp, self.ep)


def layout_label(tp: int, pp: int = 1, attention_dp: int = 1, ep: int = 1) -> str:
    return (f"tp {tp}" + (f" dp {attention_dp}" if attention_dp > 1 else "")
            + (f" ep {ep}" if ep > 1 else "") + (f" pp {pp}" if pp > 1 else ""))


def dp_attention_supported(engine: EngineConfig) -> bool:
    """Whether the engine runs attention data parallelism: a named engine whose data file
    states how its DP-attention ranks relate to its TP group (engines/<id>.yaml
    ``memory.attention_dp_in_tp_group``: SGLang true, --enable-dp-attention inside the TP
    group; vLLM false, each --data-parallel-size rank its own engine core, with
    --enable-expert-parallel over all of them, docs.vllm.ai v0.12.0 serving/
    data_parallel_deployment); one that states nothing (TensorRT-LLM, llama.cpp) is not
    searched with it. The generic engine models any layout."""
    if engine.name == "generic":
        return True
    from ..engines import engine_for

    return engine_for(engine).memory.attention_dp_in_tp_group is not None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layouts(inp: PlanInputs) -> list[Layout]:
    """The instance layouts tried on every device: per instance size n in ``inp.tps`` (GPUs
    per pipeline stage) and pp in ``inp.pps``, TP over n for a dense model; for a MoE model
    every attention TP x attention DP split of n (attention DP where the engine runs it,
    ``dp_attention_supported``; ``inp.attention_dps`` restricts the degrees) with the experts
    over the instance as tensor-parallel shards (ep 1) or one group per GPU (ep n: vLLM
    --enable-expert-parallel, SGLang --ep-size, DeepEP). The scenario's own layout
    (``inp.parallelism``) is always one, first."""
    out: list[Layout] = []
    p = inp.parallelism
    if p is not None:
        out.append(Layout(p.tp, p.pp, p.attention_dp, p.ep))
    moe = inp.model.moe is not None
    dp_ok = moe and dp_attention_supported(inp.engine)
    for n in inp.tps:
        for pp in inp.pps:
            if not moe:
                out.append(Layout(n, pp))
                continue
            for adp in _divisors(n):
                if adp > 1 and not dp_ok:
                    continue
                if inp.attention_dps is not None and adp not in inp.attention_dps:
                    continue
                for ep in sorted({1, n}):
                    out.append(Layout(n // adp, pp, adp, ep))
    return list(dict.fromkeys(out))


def redundant_for(inp: PlanInputs, ep: int) -> int:
    """EPLB's redundant experts of a layout with ``ep`` expert groups: 0 without EP (or a dense
    model), else the given count or "auto" resolved by the scenario's one rule
    (``specs.scenario.redundant_experts_for``)."""
    moe = inp.model.moe
    if ep <= 1 or moe is None:
        return 0
    return redundant_experts_for(inp.redundant_experts, moe.num_experts, ep)


def layout_refusal(inp: PlanInputs, lay: Layout) -> tuple[str, str] | None:
    """(rule, message) when the layout breaks a divisibility rule of inference (attention heads
    and KV heads by tp, experts + redundant by ep, ep within the instance: the rules
    ``plan.inference_rules`` states, read from there), else None: such a layout is filtered
    before it is modelled and its refusal counted (``PlanResult.inputs['layouts_refused']``)."""
    from types import SimpleNamespace

    from ..plan import inference_rules

    p = SimpleNamespace(tp=lay.tp, pp=lay.pp, attention_dp=lay.attention_dp, ep=lay.ep,
                        redundant_experts=redundant_for(inp, lay.ep))
    for i, rule in enumerate(inference_rules(inp.model, lay.gpus)):
        if rule.field not in ("parallelism.tp", "parallelism.ep"):
            continue
        if not bool(np.all(rule.ok(p))):  # the planner's input for EPLB, not the scenario's
            message = rule.message(p).replace(
                "parallelism.redundant_experts",
                "redundant experts (plan-serving --redundant-experts N or auto)")
            return f"{rule.field}#{i}", f"{rule.field}: {message}"
    return None


def seqs_candidates(inp: PlanInputs, default: int) -> tuple[int, ...]:
    """The max_num_seqs caps tried for a configuration whose engine default is ``default``,
    largest first (the default is always tried: it is what the engine runs unasked)."""
    if "max_batch" in inp.scheduler.model_fields_set or inp.engine.max_num_seqs:
        return (default,)
    if inp.max_num_seqs:
        given = {int(b) for b in inp.max_num_seqs if int(b) <= default}
        return tuple(sorted(given | {default}, reverse=True))
    powers = {2 ** k for k in range(MIN_SEQS_CANDIDATE.bit_length() - 1, 20)
              if 2 ** k < default}
    return tuple(sorted(powers | {default}, reverse=True))


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
    max_num_seqs: int | None = None  # the chosen batch cap (engine max_num_seqs)
    max_num_seqs_default: int | None = None  # the engine's own default on this device / TP
    why: str = ""  # one line: why this cap and replica count (what binds)
    profile: str | None = None  # measured | default (uncalibrated)
    ranges: dict = field(default_factory=dict)  # metric -> [lo, hi], 80 % band
    range_basis: dict = field(default_factory=dict)  # metric -> how its band was made
    pp: int = 1  # pipeline stages of a replica (tp x pp GPUs)
    # SLOs the value meets but the upper end of its 80 % band does not (may_miss_slo)
    may_miss: list = field(default_factory=list)
    # a row sized to meet every SLO across its 80 % band: the replicas the same device / TP /
    # pp needs at the point estimate (None for a row sized at the point)
    point_replicas: int | None = None
    # on a row that may miss an SLO: what sizing it across its band gave (replicas, or why not)
    across_band: str = ""
    attention_dp: int = 1  # attention DP groups of tp GPUs per replica (MoE layouts)
    ep: int = 1  # expert-parallel groups of a replica's tp x attention_dp GPUs
    # no instance holds the weights and one request's KV cache (errors.DoesNotFitError): more
    # GPUs per instance or a larger device help, not more replicas
    out_of_memory: bool = False

    @property
    def meets_across_band(self) -> bool:
        """Feasible, and every SLO also holds at the upper end of its 80 % band."""
        return self.feasible and not self.may_miss

    @property
    def label(self) -> str:
        """"tp 8", "tp 8 pp 2" or "tp 1 dp 8 ep 8" (``layout_label``)."""
        return layout_label(self.tp, self.pp, self.attention_dp, self.ep)

    @property
    def replica_gpus(self) -> int:
        return self.tp * self.attention_dp * self.pp

    def to_dict(self) -> dict:
        return {"device": self.device, "tp": self.tp, "pp": self.pp,
                "attention_dp": self.attention_dp, "ep": self.ep, "layout": self.label,
                "feasible": self.feasible,
                "reason": self.reason, "out_of_memory": self.out_of_memory,
                "replicas": self.replicas, "gpus": self.gpus,
                "max_num_seqs": self.max_num_seqs,
                "max_num_seqs_default": self.max_num_seqs_default, "why": self.why,
                "profile": self.profile, "simulations": self.simulations,
                "metrics": self.metrics, "ranges": self.ranges,
                "range_basis": self.range_basis, "cost": self.cost, "energy": self.energy,
                "may_miss_slo": list(self.may_miss),
                "slo_met_across_band": self.meets_across_band,
                "sized_across_band": self.point_replicas is not None,
                "replicas_at_point": self.point_replicas, "across_band": self.across_band}


@dataclass
class PlanResult:
    inputs: dict
    candidates: list[Candidate]
    warnings: list[str] = field(default_factory=list)
    frontier: list[dict] = field(default_factory=list)  # throughput vs interactivity points

    @property
    def best(self) -> Candidate | None:
        """The cheapest feasible row by USD/h (fewest GPUs on a tie, then the most headroom:
        the smallest largest SLO value / bound, as layouts of one device and size often tie;
        by GPUs when no row has a price), among the rows that meet every SLO across their 80 %
        band when any does, else among the rows that meet them at the point estimate."""
        feasible = [c for c in self.candidates if c.feasible]
        robust = [c for c in feasible if c.meets_across_band]
        pool = robust or feasible
        ok = [c for c in pool if c.cost]
        if not ok:
            return min(pool, key=lambda c: (c.gpus, _load(c))) if pool else None
        return min(ok, key=lambda c: (c.cost["usd_per_hour"], c.gpus, _load(c)))

    def choice_note(self) -> str:
        """Why the answer is the row it is, as far as the SLO bands go (empty with no answer)."""
        best = self.best
        if best is None:
            return ""
        if best.may_miss:
            return ("no row meets every SLO across its 80 % band; this is the cheapest that "
                    f"meets them at the point estimate, and it may miss {may_miss_text(best)}")
        cheaper = [c for c in self.candidates if c.feasible and c.may_miss and c.cost
                   and best.cost and c.cost["usd_per_hour"] < best.cost["usd_per_hour"]]
        head = "meets every SLO across its 80 % band"
        if best.point_replicas is not None:
            extra = best.replicas - best.point_replicas
            head += (f" with {best.replicas} replicas, {extra} more than the "
                     f"{best.point_replicas} that meet them at the point estimate")
        if not cheaper:
            return head
        return (head + "; preferred to cheaper rows that meet "
                "them only at the point estimate: " + "; ".join(
                    f"{c.device} {c.label} may miss {may_miss_text(c)}" for c in cheaper))

    def to_dict(self) -> dict:
        best = self.best
        return {"inputs": self.inputs, "best": best.to_dict() if best else None,
                "choice": self.choice_note(),
                "candidates": [c.to_dict() for c in self.candidates],
                "frontier": [p for p in self.frontier if p["pareto"]],
                "frontier_points": list(self.frontier),
                "warnings": list(self.warnings)}


def _load(c: Candidate) -> float:
    """The row's largest SLO value / bound (how close it runs to its tightest SLO)."""
    checks = (c.metrics or {}).get("checks") or {}
    return max((v["value_s"] / v["bound_s"] for v in checks.values()), default=0.0)


def _serving(inp: PlanInputs) -> ServingConfig:
    return ServingConfig(
        arrival=ArrivalConfig(process=inp.arrival, rate_per_s=inp.rate_per_s, cv=inp.cv),
        num_requests=inp.num_requests, prompt_len=inp.prompt_len, output_len=inp.output_len,
        scheduler=inp.scheduler, slo=inp.slo, seed=inp.seed)


def _scenario(inp: PlanInputs, device: str, layout: Layout | int, pp: int = 1) -> Scenario:
    """One replica of ``layout.gpus`` GPUs (an int: TP over that many, x ``pp``); a pp that
    does not divide the layers splits them unevenly (the engine's default split, vLLM's for
    generic: ``pipeline.engine_split``). The scenario's own layout keeps its parallelism section
    whole (DeepEP mode, overlap, redundant experts, layer split)."""
    if not isinstance(layout, Layout):
        layout = Layout(int(layout), pp)
    p = inp.parallelism
    if p is not None and layout == Layout(p.tp, p.pp, p.attention_dp, p.ep):
        par = p
    else:
        par = Parallelism(tp=layout.tp, pp=layout.pp, attention_dp=layout.attention_dp,
                          ep=layout.ep, uneven_pipeline=bool(inp.model.num_layers % layout.pp),
                          redundant_experts=redundant_for(inp, layout.ep))
    return Scenario(kind="serving", model=inp.model,
                    system=SystemConfig(device=device, num_gpus=layout.gpus),
                    parallelism=par, inference=inp.inference, serving=_serving(inp),
                    engine=inp.engine)


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


def _peak_running(reqs) -> int:
    """Most requests between admission and finish at once over all replicas: an upper bound of
    any one engine's batch (a preempted request still counts). A cap above it gives the same
    simulation: every ``e.n < e.max_batch`` test of the schedulers (admission, interruptible
    decode runs) holds in both runs."""
    ok = ~np.isnan(reqs.start)
    if not ok.any():
        return 0
    times = np.concatenate([reqs.start[ok], reqs.finish[ok]])
    step = np.concatenate([np.ones(ok.sum()), -np.ones(ok.sum())])
    order = np.lexsort((-step, times))  # at equal times an admission counts before a finish
    return int(np.cumsum(step[order]).max())


def _kv_sequences(dep: Deployment, wl: Workload) -> float:
    """Sequences one replica's KV cache holds at the mean prompt + output."""
    return dep.instances[0].kv.tokens / max(float((wl.prompt + wl.output).mean()), 1.0)


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
        "peak_running_requests": _peak_running(res.reqs),
    }


def with_max_seqs(dep: Deployment, cap: int) -> Deployment:
    """The deployment with its batch cap (max_num_seqs) at ``cap`` (<= the default it was
    built with: the iteration-cost grid and the KV cache stay the default's)."""
    if cap == dep.scheduler.max_batch:
        return dep
    return replace(dep, scheduler=dep.scheduler.model_copy(update={"max_batch": cap}))


Runs = dict[int, list[tuple[int, dict]]]  # replicas -> [(max_num_seqs, metrics)] simulated


def _search(dep: Deployment, wl: Workload, inp: PlanInputs, gpus: int, start: int,
            runs: Runs | None = None, below: int | None = None
            ) -> tuple[int, dict, int] | tuple[None, dict, int]:
    """Smallest replica count meeting the SLOs at ``dep``'s batch cap (None above max_gpus, or
    at or above ``below``), its metrics, and the number of simulations run. ``runs`` holds the
    simulations of other caps on the same configuration: one whose peak batch stayed below
    this cap is the same simulation and is reused. ``gpus``: GPUs of one replica."""
    cap = dep.scheduler.max_batch
    runs = {} if runs is None else runs
    cache: dict[int, dict] = {}
    simulated = 0

    def ok(r: int) -> bool:
        nonlocal simulated
        if r not in cache:
            same = [m for c, m in runs.get(r, ())
                    if c == cap or (c > cap and m["peak_running_requests"] < cap)]
            if same:
                cache[r] = same[0]
            else:
                cache[r] = _evaluate(dep, wl, inp.slo, r)
                simulated += 1
                runs.setdefault(r, []).append((cap, cache[r]))
        return cache[r]["slo_met"]

    limit = max(inp.max_gpus // gpus, 0)
    if below is not None:
        limit = min(limit, below - 1)
    if limit < 1:
        return None, {}, simulated
    r = min(max(start, 1), limit)
    if ok(r):
        lo, hi = 0, r
    else:
        lo = r
        while True:
            if lo >= limit:
                return None, cache[lo], simulated
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
    return hi, cache[hi], simulated


@dataclass
class Sized:
    """A configuration's answer: replicas at the chosen max_num_seqs, and what was tried."""

    replicas: int
    max_num_seqs: int
    metrics: dict
    simulations: int
    default: int
    default_replicas: int
    runs: Runs
    tried: tuple[int, ...]  # smaller caps simulated (the rest ruled out by _cap_may_help)


def size_configuration(dep: Deployment, wl: Workload, inp: PlanInputs, gpus: int, start: int,
                       runs: Runs | None = None) -> tuple[Sized | None, dict, int]:
    """Fewest replicas over the max_num_seqs caps, the largest cap on a tie (the default wins
    unless a smaller cap saves a replica): the default cap's replica search first, then each
    smaller cap on one replica fewer than the best so far (bisected below when it holds).
    (None, metrics, simulations) when even the default misses within max_gpus. ``gpus``:
    GPUs of one replica (tp x pp); ``runs``: simulations already judged against ``inp.slo``
    (reused, not run again)."""
    default = dep.scheduler.max_batch
    runs = {} if runs is None else runs
    replicas, metrics, sims = _search(dep, wl, inp, gpus, start, runs)
    if replicas is None:
        return None, metrics, sims
    caps = seqs_candidates(inp, default)
    best = (replicas, default, metrics)
    tried = []
    for cap in caps[1:]:
        if best[0] == 1 or not _cap_may_help(runs, best, inp, dep, wl, cap):
            break
        tried.append(cap)
        r, m, n = _search(with_max_seqs(dep, cap), wl, inp, gpus, best[0] - 1, runs,
                          below=best[0])
        sims += n
        if r is not None:
            best = (r, cap, m)
    return (Sized(best[0], best[1], best[2], sims, default, replicas, runs, tuple(tried)),
            best[2], sims)


def _cap_may_help(runs: Runs, best: tuple[int, int, dict], inp: PlanInputs, dep: Deployment,
                  wl: Workload, cap: int) -> bool:
    """Whether ``cap`` (and so any smaller cap) may meet the SLOs on one replica fewer than
    the best so far. No when the smallest cap run on that many replicas so far missed a TTFT
    bound (a smaller cap only adds queueing before the first token), or when that many replicas
    cannot carry the rate at this cap by the throughput estimate with the same 30 % margin the
    configuration skip uses (``_replica_estimate``: it falls with the cap)."""
    r = best[0] - 1
    tried = sorted(runs.get(r, ()), key=lambda cm: cm[0])
    if tried:  # the smallest cap run on r replicas so far
        missed = [k for k, c in tried[0][1].get("checks", {}).items() if not c["met"]]
        if any(k.startswith("ttft_") for k in missed):
            return False
    need = math.floor(0.7 * inp.rate_per_s / _replica_estimate(with_max_seqs(dep, cap), wl))
    return need <= r


def _failed(metrics: dict) -> str:
    from ..textfmt import short_seconds as sec

    return ", ".join(f"{k} ({sec(c['value_s'])} > {sec(c['bound_s'])})"
                     for k, c in metrics.get("checks", {}).items() if not c["met"]) or "none"


def explain_choice(sized: Sized, kv_seqs: float) -> str:
    """One line: why this max_num_seqs and replica count, and what binds (the SLO closest to
    its bound; KV capacity when it admits fewer sequences than the cap)."""
    cap, r, default = sized.max_num_seqs, sized.replicas, sized.default
    m = sized.metrics
    parts = []
    if cap == default:
        head = f"max_num_seqs {cap} (engine default)"
        if r == 1:
            parts.append("one replica meets the SLOs")
        else:
            fewer = [mm for c, mm in sized.runs.get(r - 1, ()) if c == default]
            miss = _failed(fewer[0]) if fewer else "an SLO"
            why_not = (f"no smaller cap tried ({', '.join(map(str, sized.tried))}) fixes it"
                       if sized.tried else "a smaller cap cannot fix it (more queueing "
                       "before the first token, or too little throughput)")
            parts.append(f"{r - 1} replica(s) miss {miss} and {why_not}")
    else:
        head = f"max_num_seqs {cap} (default {default})"
        fewer = [mm for c, mm in sized.runs.get(sized.default_replicas - 1, ()) if c == default]
        miss = _failed(fewer[0]) if fewer else "an SLO"
        parts.append(f"the smaller cap shortens decode batches, so {r} replica(s) suffice where "
                     f"the default needs {sized.default_replicas} (on "
                     f"{sized.default_replicas - 1} it misses {miss})")
    checks = m.get("checks", {})
    if checks:
        key, c = max(checks.items(), key=lambda kv: kv[1]["value_s"] / kv[1]["bound_s"])
        from ..textfmt import short_seconds as sec

        parts.append(f"binds: {key} {sec(c['value_s'])} of {sec(c['bound_s'])} "
                     f"({100 * c['value_s'] / c['bound_s']:.0f} %)")
    if kv_seqs < cap:
        parts.append(f"KV capacity (~{kv_seqs:.0f} sequences at the mean context) binds "
                     "before max_num_seqs")
    return head + ": " + "; ".join(parts)


# ---- 80 % bands (uncertainty.py: validation error of comparable serving cases) -------------
BAND_QUANTITY = {"ttft_p90_s": "ttft_s", "tpot_p90_s": "tpot_s", "e2e_p90_s": "e2e_latency_s"}
SLO_QUANTITY = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_latency_s"}  # SLO key prefix
RATE_METRICS = ("output_tokens_per_s", "requests_per_s")  # ~ 1 / E2E (Little's law)


def serving_bands(sc: Scenario, device: str, dep: Deployment | None = None,
                  profile: CalibrationProfile | None = None, wl: Workload | None = None,
                  ttft_s: float | None = None, e2e_s: float | None = None,
                  base=None) -> dict[str, tuple[tuple[float, float], str]]:
    """quantity -> ((lo, hi) of true / predicted, basis) for ttft_s, tpot_s, e2e_latency_s,
    as ``predict`` bands a serving prediction (``uncertainty.quantity_ratios``): per side the
    wider of the calibration residuals propagated through the zero-load prefill / decode
    breakdown of one instance (``predict._baseline`` at the workload's median prompt and
    output, the breakdown predict prints) and the first qualifying validation group of
    ``group_keys("serving", ...)``. The end-to-end band weights the prefill and decode
    residuals by the simulated median TTFT and E2E (``ttft_s``, ``e2e_s``; default the zero-load
    request's), as predict does with its simulation's. Without ``dep`` / ``profile`` / ``wl``
    the validation groups alone; a quantity with no band is left out. ``base``: the zero-load
    Prediction (``band_baseline``) when the caller has it already."""
    from ..uncertainty import (
        combine,
        device_class,
        group_keys,
        quantity_ratios,
        shipped_groups,
        stack_of,
        validation_ratio,
    )

    if dep is not None and profile is not None and wl is not None:
        base = base or band_baseline(sc, dep, profile, wl)
        pred = base.model_copy(update={
            "kind": "serving",
            "ttft_s": base.ttft_s if ttft_s is None else ttft_s,
            "e2e_latency_s": base.e2e_latency_s if e2e_s is None else e2e_s})
        ratios = quantity_ratios(pred, profile, sc)
        return {q: (r, how) for q, (r, how) in ratios.items()
                if q in ("ttft_s", "tpot_s", "e2e_latency_s") and r is not None}
    groups = shipped_groups()
    stack, dev = stack_of(sc), device_class(device)
    out = {}
    for q in ("ttft_s", "tpot_s", "e2e_latency_s"):
        b = validation_ratio(groups, group_keys("serving", q, stack, dev))
        if b is None:
            continue
        g = groups[b[1]]
        out[q] = (combine((1.0, 1.0), b[0]),
                  f"validation group {b[1]} (n={g['n']}, {len(g.get('sources', ()))} "
                  f"sources) {b[0][0]:.2f}-{b[0][1]:.2f}x, 80 %")
    return out


def band_baseline(sc: Scenario, dep: Deployment, profile: CalibrationProfile, wl: Workload):
    """The zero-load Prediction predict explains a serving scenario with and bands it by (the
    same inference prediction as ``predict.simulate_serving``'s baseline: one request per
    attention-DP group on one instance, at the median prompt and output; the band test in
    tests/test_plan_serving_layouts.py holds the two together)."""
    from ..predictors import predict_inference
    from ..resolve import Resolved

    inst = dep.instances[0]
    adp = int(inst.plan.attention_dp)
    one = sc.model_copy(update={
        "kind": "inference",
        "system": sc.system.model_copy(update={"num_gpus": int(inst.plan.instance_gpus)}),
        "parallelism": sc.parallelism.model_copy(update={"tp": int(inst.plan.tp)}),
        "inference": sc.inference_or_default().model_copy(update={
            "batch": adp, "prompt_len": int(np.median(wl.prompt)),
            "output_len": int(np.median(wl.output))}),
    })
    return predict_inference(Resolved(one, resolve_system(one.system), profile, []))


def metric_ranges(metrics: dict, bands: dict, offered_rps: float | None = None
                  ) -> tuple[dict, dict]:
    """(metric -> [lo, hi], metric -> basis) for the simulated p90 latencies, every SLO
    percentile (``checks``) and the throughputs: the per-pass model error scales the
    latencies (queueing is not re-simulated, as predict's serving bands); a throughput takes
    the inverse of the end-to-end band, its upper end capped at the point scaled by offered /
    served requests per second (an open loop serves at most what arrives; never below the
    point)."""
    from ..uncertainty import apply_ratio

    ranges, basis = {}, {}
    values = {m: (q, metrics.get(m)) for m, q in BAND_QUANTITY.items()}
    for key, c in (metrics.get("checks") or {}).items():
        values[key] = (SLO_QUANTITY.get(key.split("_p")[0]), c.get("value_s"))
    for metric, (q, v) in values.items():
        if v is None or q not in bands or not np.isfinite(v) or v <= 0:
            continue
        (lo, hi), how = bands[q]
        ranges[metric] = apply_ratio(v, (lo, hi), 1)
        basis[metric] = how
    served = metrics.get("requests_per_s")
    for metric in RATE_METRICS:
        v = metrics.get(metric)
        if v is None or "e2e_latency_s" not in bands or not np.isfinite(v) or v <= 0:
            continue
        (lo, hi), how = bands["e2e_latency_s"]
        band = apply_ratio(v, (lo, hi), -1)
        if offered_rps and served:
            band[1] = max(v, min(band[1], v * offered_rps / served))
        ranges[metric] = band
        basis[metric] = (f"inverse of the end-to-end band ({how})"
                         + (", upper end capped at the offered rate" if offered_rps else ""))
    return ranges, basis


# a benchmark result's keys (bench.benchmark_metrics, vllm bench serve's names) -> (quantity,
# power): latencies by their suffix, throughputs ~ 1 / E2E (closed loop: C / E2E), tokens/s per
# user = 1000 / median TPOT
_BENCH_SUFFIX = {"_ttft_ms": "ttft_s", "_tpot_ms": "tpot_s", "_itl_ms": "tpot_s",
                 "_e2el_ms": "e2e_latency_s"}
_BENCH_RATES = {"request_throughput", "input_throughput", "output_throughput",
                "total_token_throughput", "output_throughput_per_gpu",
                "total_token_throughput_per_gpu"}


def benchmark_ranges(point: dict, bands: dict) -> dict:
    """key -> [lo, hi] for a closed-loop benchmark result's latencies (mean / median / p99 /
    ... TTFT, TPOT, ITL, E2E in ms; max and first-wave figures left out) and throughputs,
    from ``serving_bands`` (no offered-load cap: a closed loop's throughput is C / E2E)."""
    from ..uncertainty import apply_ratio

    out = {}
    for key, v in point.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) \
                or v <= 0 or key.startswith("max_") or "wave" in key:
            continue
        q, power = next(((q, 1) for suf, q in _BENCH_SUFFIX.items() if key.endswith(suf)),
                        (None, 0))
        if key in _BENCH_RATES:
            q, power = "e2e_latency_s", -1
        elif key == "output_throughput_per_user":
            q, power = "tpot_s", -1
        if q in bands:
            band = apply_ratio(float(v), bands[q][0], power)
            if band is not None:
                out[key] = band
    return out


def band_slo(slo: SLOConfig, bands: dict) -> SLOConfig:
    """The SLOs with each bound divided by the upper end of its quantity's 80 % band (never
    loosened; a bound with no band kept): a latency's band is value x [lo, hi]
    (``metric_ranges``), so the value meets the divided bound when the band's upper end meets
    the SLO (a relative 1e-12 below, so that rounding cannot leave a "may miss")."""
    update = {}
    for key, bound in slo.model_dump().items():
        q = SLO_QUANTITY.get(key.split("_p")[0])
        if bound is not None and q in bands:
            update[key] = bound / max(bands[q][0][1], 1.0) * (1 - 1e-12)
    return slo.model_copy(update=update)


def _rechecked(metrics: dict, slo: SLOConfig) -> dict:
    """A simulation's metrics with its SLO checks judged against other bounds (the simulation
    does not depend on the SLOs; attainment and goodput are left as they were)."""
    bounds = {k: v for k, v in slo.model_dump().items() if v is not None}
    checks = {k: {**c, "bound_s": bounds[k], "met": bool(c["value_s"] <= bounds[k])}
              for k, c in (metrics.get("checks") or {}).items() if k in bounds}
    return {**metrics, "checks": checks, "slo_met": all(c["met"] for c in checks.values())}


def size_across_band(dep: Deployment, wl: Workload, inp: PlanInputs, gpus: int, point: Sized,
                     bands: dict) -> tuple[Sized | None, dict, int, str]:
    """The fewest replicas (over the same max_num_seqs caps) whose every SLO holds at the
    upper end of its 80 % band, for a configuration ``point`` sized at the point estimate:
    ``size_configuration`` against ``band_slo`` from one replica more, reusing the point
    search's simulations (re-judged). (sized, metrics judged against the SLOs themselves,
    simulations run, "") or (None, {}, simulations, why not)."""
    tight = replace(inp, slo=band_slo(inp.slo, bands))
    miss = _zero_load_misses(dep, wl, tight.slo)
    if miss:
        return None, {}, 0, ("no replica count meets every SLO across its 80 % band (bound / "
                             "band's upper end): " + miss.removeprefix("unreachable: "))
    runs: Runs = {r: [(c, _rechecked(m, tight.slo)) for c, m in ms]
                  for r, ms in point.runs.items()}
    sized, _, sims = size_configuration(dep, wl, tight, gpus, point.replicas + 1, runs)
    if sized is None:
        return None, {}, sims, (f"no replica count within max_gpus = {inp.max_gpus} meets "
                                "every SLO across its 80 % band")
    cap = sized.max_num_seqs
    same = [m for c, m in point.runs.get(sized.replicas, ()) if c == cap]
    if same:
        return sized, same[0], sims, ""
    return sized, _evaluate(with_max_seqs(dep, cap), wl, inp.slo, sized.replicas), sims + 1, ""


def may_miss_slo(metrics: dict, ranges: dict) -> list[str]:
    """The SLOs whose value meets the bound but whose 80 % band's upper end does not."""
    return [k for k, c in (metrics.get("checks") or {}).items()
            if c["met"] and k in ranges and ranges[k][1] > c["bound_s"]]


def may_miss_text(c: Candidate) -> str:
    """"tpot_p90_s (band up to 45.6 ms > 40 ms)" for each SLO the row may miss."""
    checks = c.metrics.get("checks") or {}
    return ", ".join(f"{k} (band up to {1e3 * c.ranges[k][1]:.1f} ms > "
                     f"{1e3 * checks[k]['bound_s']:g} ms)" for k in c.may_miss)


def _own(inp: PlanInputs) -> Layout | None:
    """The scenario's own layout (checked whole when the scenario was read), if any."""
    p = inp.parallelism
    return None if p is None else Layout(p.tp, p.pp, p.attention_dp, p.ep)


def _redundant(inp: PlanInputs, lay: Layout) -> int:
    """The layout's redundant experts: the scenario's own for its layout, else ``redundant_for``."""
    return inp.parallelism.redundant_experts if lay == _own(inp) else redundant_for(inp, lay.ep)


def _layout_fields(lay: Layout) -> dict:
    """A Candidate's layout keywords besides its tp."""
    return {"pp": lay.pp, "attention_dp": lay.attention_dp, "ep": lay.ep}


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
    if inp.max_num_seqs is not None and (not inp.max_num_seqs or any(
            int(b) != b or b < 1 for b in inp.max_num_seqs)):
        raise SpecError(f"max_num_seqs: {list(inp.max_num_seqs)} must be a non-empty list of "
                        "positive whole numbers (batch caps to try, e.g. 16,64,256)")
    prices = inp.prices or load_prices()
    wl = build_workload(_serving(inp))
    staged = []
    frontier: list[dict] = []
    candidates: list[Candidate] = []
    uncalibrated: list[str] = []  # devices answered with the documented default efficiencies
    warnings: list[str] = []
    kinds: dict[str, str] = {}  # device -> measured | default profile
    tried, refused = [], {}  # layouts modelled; rule -> (message, labels) of those filtered
    for lay in layouts(inp):
        why = layout_refusal(inp, lay) if lay != _own(inp) else None
        if why is None:
            tried.append(lay)
        else:
            refused.setdefault(why[0], (why[1], []))[1].append(lay.label)
    for device, lay in ((d, x) for d in _devices(inp, prices) for x in tried):
            sc = _scenario(inp, device, lay)
            try:
                profile = _profile(device, inp.calibration)
                # predict's resolution, one path: the system, and the model as the engine
                # keeps it (resolve.with_engine_state: linear-attention / Mamba state dtypes)
                rs = resolve(sc, profile)
                sc, system = rs.scenario, rs.system
                warnings += [w for w in rs.device_notes if w not in warnings]
                kinds[device] = "default" if profile.kind == "default" else "measured"
                _note_profile(profile, system, uncalibrated, warnings)
                dep = deployment_for(sc, system, profile, sc.inference, wl, counts=(1,))
            except SpecError as err:
                candidates.append(Candidate(device, lay.tp, False, f"does not apply: {err}",
                                            out_of_memory=isinstance(err, DoesNotFitError),
                                            profile=kinds.get(device), **_layout_fields(lay)))
                continue
            bands = serving_bands(sc, device, dep, profile, wl)
            frontier += batch_points(dep, wl, device, lay.tp, ep=lay.ep, bands=bands,
                                     pp=lay.pp, attention_dp=lay.attention_dp)
            miss = _zero_load_misses(dep, wl, inp.slo)
            if miss:
                candidates.append(Candidate(device, lay.tp, False, miss, profile=kinds[device],
                                            max_num_seqs_default=dep.scheduler.max_batch,
                                            **_layout_fields(lay)))
                continue
            est = inp.rate_per_s / _replica_estimate(dep, wl)
            price = prices.devices.get(device)
            floor = math.floor(0.7 * est)
            optimistic = (price.usd_per_gpu_hour * lay.gpus * max(floor, 1)) if price \
                else math.inf
            staged.append((optimistic, device, lay, dep, system, profile,
                           max(1, round(est)), bands))
    staged.sort(key=lambda s: (s[0], s[1], s[2].gpus, s[2].tp, s[2].pp, s[2].attention_dp,
                               s[2].ep))
    best_cost = math.inf
    for optimistic, device, lay, dep, system, profile, start, bands in staged:
        kind, default = kinds[device], dep.scheduler.max_batch
        # a device without a price is simulated: its cost cannot be compared, its replicas,
        # latencies and frontier still answer the planner (shown with "no price")
        if math.isfinite(optimistic) and optimistic > best_cost:
            candidates.append(Candidate(device, lay.tp, False,
                                        f"skipped: cannot beat {best_cost:.2f} USD/h "
                                        f"(needs >= {optimistic:.2f} USD/h by its throughput "
                                        "estimate)", profile=kind,
                                        max_num_seqs_default=default, **_layout_fields(lay)))
            continue
        sized, metrics, sims = size_configuration(dep, wl, inp, lay.gpus, start)
        if sized is None:
            ranges, basis = metric_ranges(metrics, bands, inp.rate_per_s)
            candidates.append(Candidate(device, lay.tp, False,
                                        f"SLOs not met within max_gpus = {inp.max_gpus}",
                                        simulations=sims, metrics=metrics, profile=kind,
                                        max_num_seqs=default, max_num_seqs_default=default,
                                        ranges=ranges, range_basis=basis, **_layout_fields(lay)))
            continue
        gpus = sized.replicas * lay.gpus
        cost = cost_report(prices, device, gpus, metrics["output_tokens_per_s"])
        energy = energy_report(system.device, profile, gpus, metrics["output_tokens_per_s"])
        ranges, basis = metric_ranges(metrics, bands, inp.rate_per_s)
        miss = may_miss_slo(metrics, ranges)
        cand = Candidate(device, lay.tp, True, "meets the SLOs" + (
                         " at the point estimate; may miss SLO " + ", ".join(miss)
                         + " across its 80 % band" if miss else ""),
                         sized.replicas, gpus, sims,
                         metrics, cost, energy, sized.max_num_seqs, default,
                         explain_choice(sized, _kv_sequences(dep, wl)), kind, ranges, basis,
                         **_layout_fields(lay), may_miss=miss)
        candidates.append(cand)
        if cost and not miss:  # only a row meeting the SLOs across its band can be the
            best_cost = min(best_cost, cost["usd_per_hour"])  # answer while such rows exist
        if not miss:
            continue
        if cost and cost["usd_per_hour"] >= best_cost:
            cand.across_band = ("not sized across its band: at the point estimate it already "
                                f"costs at least {best_cost:.2f} USD/h, the cheapest row "
                                "meeting every SLO across its band")
            continue
        wide, wm, wsims, why_not = size_across_band(dep, wl, inp, lay.gpus, sized, bands)
        if wide is None:
            cand.across_band = why_not
            continue
        wgpus = wide.replicas * lay.gpus
        wcost = cost_report(prices, device, wgpus, wm["output_tokens_per_s"])
        wranges, wbasis = metric_ranges(wm, bands, inp.rate_per_s)
        tight = band_slo(inp.slo, bands).model_dump()
        robust = Candidate(
            device, lay.tp, True, f"meets the SLOs across its 80 % band ({sized.replicas} "
            "replica(s) meet them at the point estimate)", wide.replicas, wgpus, wsims, wm,
            wcost, energy_report(system.device, profile, wgpus, wm["output_tokens_per_s"]),
            wide.max_num_seqs, default,
            explain_choice(wide, _kv_sequences(dep, wl)) + "; sized against each SLO bound "
            "divided by its band's upper end (" + ", ".join(
                f"{k} <= {tight[k]:.4g} s" for k in wm.get("checks", {})) + ")",
            kind, wranges, wbasis, **_layout_fields(lay), may_miss=may_miss_slo(wm, wranges),
            point_replicas=sized.replicas)
        candidates.append(robust)
        cand.across_band = (f"{wide.replicas} replica(s) meet every SLO across its 80 % band"
                            + (f" (+{wcost['usd_per_hour'] - cost['usd_per_hour']:.2f} USD/h)"
                               if cost and wcost else ""))
        if wcost and not robust.may_miss:
            best_cost = min(best_cost, wcost["usd_per_hour"])
    candidates.sort(key=lambda c: (not c.feasible,
                                   c.cost["usd_per_hour"] if c.cost else math.inf,
                                   c.device, c.replica_gpus, c.tp, c.pp, c.attention_dp,
                                   c.ep, c.replicas))
    inputs = {"model": inp.model.id, "rate_per_s": inp.rate_per_s,
              "slo": {k: v for k, v in inp.slo.model_dump().items() if v is not None},
              "prompt_len": inp.prompt_len.model_dump(exclude_none=True),
              "output_len": inp.output_len.model_dump(exclude_none=True),
              "scheduler": _scheduler_kind(inp), "arrival": inp.arrival,
              "num_requests": inp.num_requests, "seed": inp.seed,
              "prices": {"basis": prices.basis, "currency": prices.currency},
              "engine": inp.engine.name, "profiles": dict(sorted(kinds.items())),
              # the engine's overrides (scenario engine: section, --max-model-len, ...)
              "engine_settings": inp.engine.model_dump(exclude_none=True, exclude={"name"}),
              "tp": list(inp.tps), "pp": list(inp.pps),
              "layouts": [x.label for x in tried],
              "layouts_refused": [{"reason": msg, "count": len(labels), "layouts": labels}
                                  for msg, labels in refused.values()],
              "redundant_experts": {x.label: r for x in tried if (r := _redundant(inp, x))},
              "scenario_layout": (layout_label(inp.parallelism.tp, inp.parallelism.pp,
                                               inp.parallelism.attention_dp, inp.parallelism.ep)
                                  if inp.parallelism is not None else None),
              "replaced": list(inp.replaced),
              "max_num_seqs": list(inp.max_num_seqs) if inp.max_num_seqs else
              f"engine default and powers of two from {MIN_SEQS_CANDIDATE} below it"}
    if uncalibrated:
        warnings.insert(0, "uncalibrated: documented default efficiencies (no measured or "
                        f"reference profile) for {', '.join(uncalibrated)}; their answers "
                        "are rougher than the calibrated devices'")
    return PlanResult(inputs, candidates, warnings, mark_pareto(frontier))


FRONTIER_BATCHES = tuple(2 ** k for k in range(11))  # 1 ... 1024 sequences


def batch_points(dep: Deployment, wl: Workload, device: str, tp: int, ep: int = 1,
                 bands: dict | None = None, pp: int = 1, attention_dp: int = 1) -> list[dict]:
    """Throughput per GPU vs interactivity of one replica at each decode batch up to its KV-
    and max_batch-limited size: tokens/s/user = 1 / TPOT(batch, mean context), tokens/s/GPU =
    batch x output / (batch x prefill(mean prompt) + output x TPOT) / GPUs (each request's
    prompt prefilled once at batch 1, as ``_replica_estimate``; the curve hardware is compared
    by, e.g. SemiAnalysis InferenceMAX's throughput-vs-interactivity plots). With attention
    DP (g groups) a prompt is prefilled at batch 1 on its group while the other groups prefill
    theirs in the same pass (SGLang runs every DP rank's prefill batch in one forward,
    serving/attention_dp.py), so its share is the pass of g prompts / g; g = 1 is the batch-1
    prefill. With ``bands`` (``serving_bands``) each point carries ``ranges``: TPOT and
    tokens/s/user from the TPOT band, tokens/s/GPU with prefill and decode both at their
    band's end (both bounds taken together: a little wider than 80 %)."""
    inst = dep.instances[0]
    p, o = float(wl.prompt.mean()), float(wl.output.mean())
    top = max(1, int(min(dep.scheduler.max_batch, inst.kv.tokens / max(p + o, 1.0))))
    g = int(inst.cost.groups)
    t_pre = inst.cost.iteration_time([p] * g, [p] * g) / g
    gpus = int(inst.plan.instance_gpus)
    out = []
    batches = sorted({x for x in FRONTIER_BATCHES if x <= top} | {top})
    inst.cost.prepare_decode(batches, p + o / 2)  # their decode rows in one pass
    for b in batches:
        tpot = inst.cost.iteration_time([], [], [p + o / 2] * b)
        point = {"device": device, "tp": tp, "pp": pp, "ep": ep, "attention_dp": attention_dp,
                 "layout": layout_label(tp, pp, attention_dp, ep), "batch": b, "tpot_s": tpot,
                 "tokens_per_s_per_user": 1.0 / tpot,
                 "tokens_per_s_per_gpu": b * o / (b * t_pre + max(o - 1, 0) * tpot) / gpus,
                 "pareto": False}
        if bands and "tpot_s" in bands and "ttft_s" in bands:
            (plo, phi), (dlo, dhi) = bands["ttft_s"][0], bands["tpot_s"][0]

            def per_gpu(fp: float, fd: float, b=b, tpot=tpot) -> float:
                return b * o / (b * t_pre * fp + max(o - 1, 0) * tpot * fd) / gpus

            point["ranges"] = {"tpot_s": [tpot * dlo, tpot * dhi],
                               "tokens_per_s_per_user": [1.0 / (tpot * dhi), 1.0 / (tpot * dlo)],
                               "tokens_per_s_per_gpu": [per_gpu(phi, dhi), per_gpu(plo, dlo)]}
        out.append(point)
    return out


def mark_pareto(points: list[dict]) -> list[dict]:
    """Flag exactly the points no other point dominates (at least as good in tokens/s/GPU and
    tokens/s/user, better in one); sorted by interactivity. Equal points are all kept."""
    points = sorted(points, key=lambda q: (-q["tokens_per_s_per_user"],
                                           -q["tokens_per_s_per_gpu"]))
    best, last = -math.inf, None
    for q in points:
        here = (q["tokens_per_s_per_user"], q["tokens_per_s_per_gpu"])
        q["pareto"] = q["tokens_per_s_per_gpu"] > best or here == last
        if q["pareto"]:
            best, last = q["tokens_per_s_per_gpu"], here
    return points


def render_frontier(result: PlanResult) -> list[str]:
    """The Pareto points, most interactive first."""
    from ..textfmt import table

    rows = [(q["device"], q.get("layout") or layout_label(q["tp"], q.get("pp", 1),
                                                           q.get("attention_dp", 1), q["ep"]),
             q["batch"], _ranged(q, "tokens_per_s_per_user", 1.0, ".1f"),
             _ranged(q, "tokens_per_s_per_gpu", 1.0, ".1f"), _ranged(q, "tpot_s", 1e3, ".1f"))
            for q in result.frontier if q["pareto"]]
    if not rows:
        return []
    return ["", "throughput vs interactivity (Pareto over every evaluated device x layout "
            "(attention TP x DP, EP) x batch, one replica "
            "at the mean prompt / output; [80 % band]):",
            table(rows, header=("device", "layout", "batch", "tok/s/user", "tok/s/GPU",
                                "TPOT ms"))]


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


def _ranged(item: dict, key: str, scale: float, fmt: str) -> str:
    """``value [lo-hi]`` of ``item[key]`` and its band in ``item["ranges"]`` (value alone
    without one), scaled for display."""
    v = item.get(key)
    if v is None and "metrics" in item:
        v = item["metrics"].get(key)
    text = format(v * scale, fmt)
    band = (item.get("ranges") or {}).get(key)
    if band:
        text += f" [{format(band[0] * scale, fmt)}-{format(band[1] * scale, fmt)}]"
    return text


def _grouped_reasons(candidates: list[Candidate]) -> list[str]:
    """One line per (tp / pp, reason): a reason shared by several devices (a TP the model
    does not allow is refused on every device) is printed once with the devices it covers."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in candidates:
        groups.setdefault((c.label, c.reason), []).append(c.device)
    return [f"  {', '.join(devices)} {label}: {reason}"
            for (label, reason), devices in groups.items()]


def _nothing_feasible(candidates: list[Candidate]) -> str:
    """The headline when no row is feasible: memory where no candidate holds the weights and
    one request's KV cache (more SLO headroom would not help), else the SLOs."""
    if candidates and all(c.out_of_memory for c in candidates):
        return ("nothing fits in memory: no device / layout holds the weights and the KV cache "
                "of one request; split each replica over more GPUs (--tp, --pp 2,4: a replica "
                "is tp x pp GPUs) or use devices with more memory")
    return "no device / TP meets the SLOs"


def render_plan(result: PlanResult) -> str:
    """A table of every candidate, cheapest first, and the answer."""
    from ..textfmt import table

    rows = []
    for c in result.candidates:
        if c.feasible:
            d = c.to_dict()
            rows.append((c.device, c.label, c.replicas, c.gpus, c.max_num_seqs,
                         _ranged(d, "ttft_p90_s", 1e3, ".0f"),
                         _ranged(d, "tpot_p90_s", 1e3, ".1f"),
                         f"{c.cost['usd_per_hour']:.2f}" if c.cost else "no price",
                         f"{c.cost['usd_per_million_output_tokens']:.3f}" if c.cost
                         else "no price",
                         f"{c.energy['joules_per_output_token']:.2f}"
                         if c.energy and "joules_per_output_token" in c.energy else "-",
                         "may miss SLO" if c.may_miss else "yes" + (
                             f", +{c.replicas - c.point_replicas} replica(s)"
                             if c.point_replicas is not None else "")))
    out = []
    inp = result.inputs
    slo = ", ".join(f"{k} <= {v:g}" for k, v in inp["slo"].items())
    out.append(f"plan-serving: {inp['model']} at {inp['rate_per_s']:g} req/s ({inp['arrival']}),"
               f" {inp['scheduler']} batching; SLOs: {slo}")
    if inp.get("replaced"):
        out.append("scenario fields replaced: " + "; ".join(inp["replaced"]))
    if inp.get("engine", "generic") != "generic":
        settings = ", ".join(f"{k} {v}" for k, v in (inp.get("engine_settings") or {}).items())
        out.append(f"engine: {inp['engine']} (" + (f"{settings}; " if settings else "")
                   + "its KV-cache rule and max_num_seqs default size each instance; "
                   "docs/engines.md)")
    kinds = inp.get("profiles") or {}
    if kinds:
        measured = [d for d, k in kinds.items() if k == "measured"]
        default = [d for d, k in kinds.items() if k == "default"]
        out.append("measured profiles: " + (", ".join(measured) or "none")
                   + ("; uncalibrated: " + ", ".join(default) if default else ""))
    out.append("")
    if rows:
        out.append(table(rows, header=("device", "layout", "replicas", "GPUs", "max seqs",
                                       "TTFT p90 ms [80 %]", "TPOT p90 ms [80 %]", "USD/h",
                                       "USD/M out tok", "J/out tok", "SLOs across band")))
    else:
        out.append(_nothing_feasible(result.candidates))
    skipped = [f"{c.device} {c.label}" for c in result.candidates
               if c.reason.startswith("skipped")]
    others = [c for c in result.candidates if not c.feasible and c not in skipped
              and not c.reason.startswith("skipped")]
    if others:
        out.append("")
        out.append("not feasible:")
        out += _grouped_reasons(others)
    refused = inp.get("layouts_refused") or []
    if refused:
        out.append("")
        out.append(f"layouts not modelled ({sum(r['count'] for r in refused)}, no engine runs "
                   "them):")
        out += [f"  {r['count']} layout(s), e.g. {r['layouts'][0]}: {r['reason']}"
                for r in refused]
    redundant = inp.get("redundant_experts") or {}
    if redundant:
        if not refused:
            out.append("")
        out.append("EPLB redundant experts: " + ", ".join(
            f"{label} +{r}" for label, r in redundant.items()))
    maybe = [c for c in result.candidates if c.feasible and c.may_miss]
    if maybe:
        out.append("")
        out.append("may miss SLO (the value meets it, the upper end of its 80 % band does not):")
        out += [f"  {c.device} {c.label}: {may_miss_text(c)}"
                + (f"; {c.across_band}" if c.across_band else "") for c in maybe]
    if skipped:
        out.append("")
        out.append("not simulated (even their throughput estimate costs more than the "
                   f"cheapest meeting the SLOs across its band): {', '.join(skipped)}")
    best = result.best
    out.append("")
    if best:
        price = best.cost["price"] if best.cost else "no price in the table"
        layout = best.label.replace(" pp", ", pp")
        out.append(f"cheapest: {best.replicas} x {best.device} ({layout}, max_num_seqs "
                   f"{best.max_num_seqs}) = {best.gpus} GPUs"
                   + (f", {best.cost['usd_per_hour']:.2f} USD/h, "
                      f"{best.cost['usd_per_million_output_tokens']:.3f} USD per million "
                      "output tokens" if best.cost else ""))
        out.append(f"why: {best.why}")
        out.append(f"SLO bands: {result.choice_note()}")
        if best.range_basis:  # the metrics sharing a basis on one entry
            shared: dict[str, list[str]] = {}
            for k, v in best.range_basis.items():
                shared.setdefault(v, []).append(k)
            out.append("bands: " + "; ".join(f"{', '.join(ks)}: {v}"
                                             for v, ks in shared.items()))
        out.append(f"price basis: {price}")
        if best.energy and "joules_per_output_token" in best.energy:
            out.append(f"energy: {best.energy['joules_per_output_token']:.3f} J per output "
                       f"token at {best.energy['power_basis']}")
    out += render_frontier(result)
    if result.warnings:
        out.append("")
        out += [f"warning: {w}" for w in result.warnings]
    return "\n".join(out)
