"""Training capacity planning: how many GPUs of which device, and how many days, to train a
model on N tokens -- with the plan, GPU-hours, dollars, energy, MFU and memory headroom of each
answer, and the time-vs-cost Pareto set.

For every device, one plan sweep (``search.sweep``) covers all GPU counts at once (the count is
an axis of the plan mesh; the step model never reads the system's own count), and the fastest
fitting plan per count becomes a row. Time = tokens / (global batch tokens / step time); at a
fixed GPU count the fastest plan is also the cheapest, so one row per (device, count) holds
both. Each row's plan is then predicted once through ``perfmodel.predict`` (the same step time
to the last digit), which gives its 80 % band (docs/uncertainty.md: calibration residuals and
the validation error of comparable cases; applied to days, GPU-hours and USD) and its energy
from the power model (perfmodel/power.py: each part of the step at its power). Dollars are
GPU-hours x the dated on-demand price of ``hardware_specs/prices.yaml``. Without a power
model figure (no TDP), energy falls back to ``serving.economics.power_per_gpu``.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError
from ..resolve import device_mismatch
from ..search import (
    DEFAULT_HEADROOM,
    SearchSpace,
    base_plan,
    best_per_gpu_count,
    describe,
    scenario_for,
    sweep,
)
from ..serving.economics import PriceTable, load_prices, power_per_gpu
from ..specs import registry
from ..specs.assemble import resolve_system
from ..specs.model import ModelSpec
from ..specs.registry import profile_for
from ..specs.scenario import Scenario, SystemConfig, TrainingConfig

DEFAULT_MAX_GPUS = 16384
DEFAULT_SEQ_LEN = 8192
DEFAULT_BATCH_TOKENS = 512 * 8192  # 4,194,304 tokens per step (the shipped 70B example's)
MIN_DEVICE_MEMORY_GB = 40  # default candidates: datacenter parts that can hold a shard
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
MAX_TOKENS = 1e18


def parse_tokens(text: str | float | int) -> float:
    """'15T', '300B', '1.5e13', 2e12 -> tokens; a one-line SpecError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]?)\s*", str(text))
        if not m or m.group(2).lower() not in _SUFFIX:
            raise SpecError(f"--tokens: {str(text)[:40]!r} is not a token count; use e.g. 15T, "
                            "300B, 2.5e12 (suffixes K, M, B, T, P)")
        value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or not 1 <= value <= MAX_TOKENS:
        raise SpecError(f"--tokens: {value:g} must be between 1 and {MAX_TOKENS:g}")
    return value


def gpu_counts(gpus_per_node: int, max_gpus: int) -> list[int]:
    """Powers of two, whole nodes doubling (node x 2^k; the same counts for 8-GPU nodes, 72,
    144, ... for NVL72 racks), and max_gpus itself when it is a whole number of nodes."""
    out = {2 ** k for k in range(31) if 2 ** k <= max_gpus}
    n = gpus_per_node
    while n <= max_gpus:
        out.add(n)
        n *= 2
    if max_gpus % gpus_per_node == 0:
        out.add(max_gpus)
    return sorted(out)


def default_devices(prices: PriceTable) -> list[str]:
    """Priced devices with a reference calibration profile whose default node scales out (an
    inter-node network) and that hold at least MIN_DEVICE_MEMORY_GB. Others (documented
    default efficiencies only) are planned when named in --devices, with a warning."""
    known = registry.devices()
    out = []
    for dev in prices.devices:
        d = known.get(dev)
        if d is None or d.memory_gb < MIN_DEVICE_MEMORY_GB or not d.default_node:
            continue
        if registry.reference_profile(dev) is None:
            continue
        node = registry.get_node(d.default_node)
        if node.inter_node and node.gpus_per_node >= 4:
            out.append(dev)
    return out


@dataclass
class TrainingPlanInputs:
    model: ModelSpec | str
    tokens: float | str
    days: float | None = None
    budget_usd: float | None = None
    devices: list[str] | None = None  # default: ``default_devices``
    max_gpus: int = DEFAULT_MAX_GPUS
    seq_len: int = DEFAULT_SEQ_LEN
    global_batch_tokens: int = DEFAULT_BATCH_TOKENS
    precision: str = "bf16"
    headroom: float = DEFAULT_HEADROOM
    space: SearchSpace = field(default_factory=SearchSpace)
    prices: PriceTable | None = None
    calibration: str | Path | None = None  # a profile for a single device


@dataclass
class Row:
    device: str
    gpus: int
    plan: dict  # the search record (numeric plan, step time, memory, MFU)
    days: float
    gpu_hours: float
    usd: float | None
    energy_mwh: float | None
    bound: list[dict]
    band: tuple[float, float] | None = None  # 80 % band of true / predicted step time
    energy_basis: str = ""
    pareto: bool = False
    meets: bool = True

    def scaled(self, value: float | None) -> list[float] | None:
        """``value`` (days, GPU-hours, USD: all proportional to the step time) as its
        80 % range."""
        if value is None or self.band is None:
            return None
        return [value * self.band[0], value * self.band[1]]

    def to_dict(self) -> dict:
        p = self.plan
        return {"device": self.device, "gpus": self.gpus, "plan": describe(p),
                "parallelism": {k: p[k] for k in ("tp", "pp", "vp", "cp", "dp", "ep",
                                                  "micro_batch", "sequence_parallel",
                                                  "zero_stage", "recompute", "schedule",
                                                  "uneven_pipeline")},
                "step_time_s": p["step_time_s"], "tokens_per_s": p["tokens_per_s"],
                "days": self.days, "gpu_hours": self.gpu_hours, "usd": self.usd,
                "energy_mwh": self.energy_mwh, "energy_basis": self.energy_basis,
                "days_range": self.scaled(self.days),
                "gpu_hours_range": self.scaled(self.gpu_hours),
                "usd_range": self.scaled(self.usd), "mfu": p["mfu"],
                "memory_per_gpu_bytes": p["memory_per_gpu_bytes"],
                "memory_headroom": p["memory_headroom"], "bound_by": self.bound,
                "pareto": self.pareto, "meets_constraints": self.meets}


@dataclass
class TrainingPlanResult:
    inputs: dict
    rows: list[Row]
    work: dict  # search work: plans considered / modelled / valid / fitting, seconds
    warnings: list[str] = field(default_factory=list)

    @property
    def answer(self) -> Row | None:
        """The cheapest row meeting --days / --budget (fewer GPUs on a tie); without either
        constraint, the cheapest Pareto row that is within 2x of the fastest time (None if
        no row has a price)."""
        ok = [r for r in self.rows if r.meets]
        if self.inputs.get("days") is None and self.inputs.get("budget_usd") is None:
            fastest = min((r.days for r in ok), default=None)
            ok = [r for r in ok if r.pareto and r.days <= 2 * fastest] if fastest else []
        priced = [r for r in ok if r.usd is not None]
        if priced:
            return min(priced, key=lambda r: (r.usd, r.gpus))
        return min(ok, key=lambda r: (r.days, r.gpus)) if ok else None

    def to_dict(self) -> dict:
        ans = self.answer
        return {"inputs": self.inputs, "rows": [r.to_dict() for r in self.rows],
                "pareto": [r.to_dict() for r in self.rows if r.pareto],
                "answer": ans.to_dict() if ans else None, "work": self.work,
                "warnings": list(self.warnings)}

    def to_csv(self) -> str:
        cols = ["device", "gpus", "tp", "pp", "vp", "cp", "dp", "ep", "micro_batch",
                "sequence_parallel", "zero_stage", "recompute", "uneven_pipeline",
                "step_time_s", "days", "days_lo", "days_hi", "gpu_hours", "usd",
                "energy_mwh", "mfu", "memory_headroom", "pareto", "meets_constraints"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            d = r.to_dict()
            lo, hi = d["days_range"] or (None, None)
            flat = {**d, **d["parallelism"], "days_lo": lo, "days_hi": hi}
            w.writerow(["" if flat[c] is None else flat[c] for c in cols])
        return buf.getvalue()


def _model(spec: ModelSpec | str) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    from ..zoo import resolve_model

    return resolve_model(spec)


def _check(inp: TrainingPlanInputs) -> tuple[float, int]:
    tokens = parse_tokens(inp.tokens)
    for name, value in (("days", inp.days), ("budget", inp.budget_usd)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SpecError(f"--{name}: {value!r} must be a positive number")
    if not isinstance(inp.max_gpus, int) or inp.max_gpus < 1:
        raise SpecError(f"--max-gpus: {inp.max_gpus!r} must be a whole number >= 1")
    if inp.seq_len < 1 or inp.global_batch_tokens < inp.seq_len:
        raise SpecError(f"--global-batch-tokens ({inp.global_batch_tokens}) must hold at least "
                        f"one sequence of --seq-len ({inp.seq_len})")
    if inp.global_batch_tokens % inp.seq_len:
        raise SpecError(f"--global-batch-tokens ({inp.global_batch_tokens}) must be a multiple "
                        f"of --seq-len ({inp.seq_len})")
    return tokens, inp.global_batch_tokens // inp.seq_len


def _system(device: str, model: ModelSpec, max_gpus: int, training: TrainingConfig):
    """The device's default system at the largest count it can reach (one node without a
    network) and the counts to try."""
    dev = registry.get_device(device)  # unknown id: one line with suggestions
    node = registry.get_node(dev.default_node) if dev.default_node else None
    per_node = node.gpus_per_node if node else 1
    top = max_gpus if (node and node.inter_node) else min(max_gpus, per_node)
    counts = gpu_counts(per_node, top)
    sc = Scenario(kind="training", model=model,
                  system=SystemConfig(device=device, num_gpus=max(counts)), training=training)
    return sc, resolve_system(sc.system), counts


def plan_training(inp: TrainingPlanInputs | None = None, /, **kwargs) -> TrainingPlanResult:
    """Answer 'how many GPUs of which device, how many days, at what cost' (module docstring).
    Call with a ``TrainingPlanInputs`` or its fields as keywords."""
    inp = inp or TrainingPlanInputs(**kwargs)
    tokens, global_batch = _check(inp)
    model = _model(inp.model)
    prices = inp.prices or load_prices()
    devices = list(inp.devices) if inp.devices else default_devices(prices)
    if not devices:
        raise SpecError("--devices: no device to plan for")
    for d in devices:
        registry.get_device(d)
    training = TrainingConfig(seq_len=inp.seq_len, global_batch=global_batch,
                              precision=inp.precision)
    rows: list[Row] = []
    work = {"considered": 0, "modelled": 0, "valid": 0, "fitting": 0, "seconds": 0.0,
            "search_seconds": 0.0, "per_device": {}}
    warnings: list[str] = []
    for device in devices:
        t0 = time.perf_counter()
        sc, system, counts = _system(device, model, inp.max_gpus, training)
        profile = profile_for(device, inp.calibration) if inp.calibration else profile_for(device)
        warnings += [f"{device}: {w}" for w in device_mismatch(profile, device)]
        if profile.kind == "default":
            warnings.append(f"{device}: no calibration profile; documented default "
                            "efficiencies (rougher answers)")
        sw = sweep(model, system, profile, base_plan(sc), inp.space, counts, inp.headroom)
        best = best_per_gpu_count(sw)
        t_search = time.perf_counter() - t0
        price = prices.devices.get(device)
        fallback = power_per_gpu(system.device, profile)
        for rec in best:
            rows.append(_row(sc, rec, tokens, price, fallback, inp.calibration, warnings))
        dt = time.perf_counter() - t0
        for k in ("considered", "modelled", "valid", "fitting"):
            work[k] += getattr(sw, k)
        work["seconds"] += dt
        work["search_seconds"] += t_search
        work["per_device"][device] = {"gpu_counts": counts, "considered": sw.considered,
                                      "modelled": sw.modelled, "valid": sw.valid,
                                      "fitting": sw.fitting, "seconds": dt,
                                      "search_seconds": t_search,
                                      "price": (f"{price.provider} {price.usd_per_gpu_hour:g} "
                                                f"USD/GPU-h ({price.date})") if price else None}
        if not price:
            warnings.append(f"{device}: no price in the price table; no cost shown")
        if not best:
            warnings.append(f"{device}: no plan fits up to {max(counts)} GPUs")
        odd = system.gpus_per_node // (system.gpus_per_node & -system.gpus_per_node)
        if odd > 1 and global_batch % odd:
            wanted = -(-global_batch // odd) * odd
            warnings.append(f"{device}: whole {system.gpus_per_node}-GPU nodes need a global "
                            f"batch divisible by {odd} (data parallelism carries the factor); "
                            f"{global_batch} sequences is not, so those counts have no plan "
                            f"(e.g. --global-batch-tokens {wanted * inp.seq_len})")
    _mark(rows, inp)
    rows.sort(key=lambda r: (r.device, r.gpus))
    inputs = {"model": model.id, "tokens": tokens, "days": inp.days,
              "budget_usd": inp.budget_usd, "devices": devices, "max_gpus": inp.max_gpus,
              "seq_len": inp.seq_len, "global_batch_tokens": inp.global_batch_tokens,
              "global_batch": global_batch, "precision": inp.precision,
              "headroom": inp.headroom,
              "prices": {"basis": prices.basis, "currency": prices.currency},
              "band": "80 % band of the step time (docs/uncertainty.md), applied to days, "
                      "GPU-hours and USD"}
    return TrainingPlanResult(inputs, rows, work, warnings)


def _row(sc: Scenario, rec: dict, tokens: float, price, fallback: tuple, calibration,
         warnings: list[str]) -> Row:
    """A table row: the plan predicted on its own (band, energy, breakdown) and its totals."""
    from ..api import predict

    pred = predict(scenario_for(sc, rec), calibration=calibration)
    if abs(pred.step_time_s / rec["step_time_s"] - 1) > 1e-9:
        warnings.append(f"{sc.system.device} {rec['gpus']} GPUs: predict gives "
                        f"{pred.step_time_s:.6g} s per step, the search {rec['step_time_s']:.6g}")
    seconds = tokens / rec["tokens_per_s"]
    gpu_hours = seconds / 3600.0 * rec["gpus"]
    if pred.energy_per_token_j is not None:
        mwh = pred.energy_per_token_j * tokens / 3.6e9
        basis = ("power model (perfmodel/power.py: each part of the step at its power, plus "
                 "the node's power beyond its GPUs where sourced)")
    else:
        watts, how = fallback
        mwh = gpu_hours * watts / 1e6 if watts else None
        basis = f"GPU-hours x {how}" if watts else how
    step_range = (pred.ranges or {}).get("step_time_s")
    band = (step_range[0] / pred.step_time_s, step_range[1] / pred.step_time_s) \
        if step_range else None
    parts = {k: float(v) for k, v in pred.breakdown.get("time", {}).items()}
    total = sum(parts.values()) or 1.0
    bound = [{"term": k, "seconds": v, "share": v / total}
             for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:2] if v > 0]
    return Row(device=sc.system.device, gpus=rec["gpus"], plan=rec, days=seconds / 86400.0,
               gpu_hours=gpu_hours, usd=gpu_hours * price.usd_per_gpu_hour if price else None,
               energy_mwh=mwh, bound=bound, band=band, energy_basis=basis)


def _mark(rows: list[Row], inp: TrainingPlanInputs) -> None:
    """Constraints met, and the time-vs-cost Pareto set (no other row is as fast and as cheap,
    and better in one) among priced rows."""
    for r in rows:
        r.meets = ((inp.days is None or r.days <= inp.days)
                   and (inp.budget_usd is None or (r.usd is not None and r.usd <= inp.budget_usd)))
    priced = sorted((r for r in rows if r.usd is not None), key=lambda r: (r.days, r.usd))
    cheapest = math.inf
    for r in priced:
        if r.usd < cheapest:
            r.pareto, cheapest = True, r.usd


def render(result: TrainingPlanResult, all_rows: bool = False) -> str:
    """The table (Pareto rows, or every row), the answer and the basis of the figures."""
    from ..textfmt import table

    inp = result.inputs
    out = [f"plan-training: {inp['model']} on {inp['tokens']:.3g} tokens, "
           f"{inp['global_batch']} x {inp['seq_len']} tokens per step, {inp['precision']}, "
           f"memory headroom {100 * inp['headroom']:g} %"]
    shown_rows = result.rows if all_rows else [r for r in result.rows if r.pareto or (r.meets
                                               and (inp["days"] or inp["budget_usd"]))]
    if not shown_rows:
        shown_rows = result.rows
    rows = []
    for r in sorted(shown_rows, key=lambda r: (r.days, r.device)):
        rng = r.scaled(r.days)
        rows.append((r.device, r.gpus, describe(r.plan), _num(r.days),
                     f"{_num(rng[0])}-{_num(rng[1])}" if rng else "-", _num(r.gpu_hours / 1e6),
                     _num(r.usd / 1e6) if r.usd is not None else "-",
                     _num(r.energy_mwh) if r.energy_mwh is not None else "-",
                     f"{100 * r.plan['mfu']:.1f}", f"{100 * r.plan['memory_headroom']:.0f}",
                     ", ".join(f"{b['term']} {100 * b['share']:.0f}%" for b in r.bound),
                     ("P" if r.pareto else "") + ("ok" if r.meets and (inp["days"] or
                                                                      inp["budget_usd"]) else "")))
    out.append("")
    if rows:
        out.append(table(rows, header=("device", "GPUs", "plan", "days", "80 % band",
                                       "M GPU-h", "M USD",
                                       "MWh", "MFU %", "free %", "bound by", "mark")))
        out.append("P: time-vs-cost Pareto (no row both faster and cheaper)"
                   + ("; ok: meets --days / --budget" if inp["days"] or inp["budget_usd"]
                      else "") + ("" if all_rows else "; --all shows every GPU count"))
    else:
        out.append("no plan fits on any device and GPU count tried")
    ans = result.answer
    out.append("")
    if ans:
        cost = f", {ans.usd / 1e6:.3g} M USD" if ans.usd is not None else ""
        rng = ans.scaled(ans.days)
        band = f" (80 % band {rng[0]:.1f}-{rng[1]:.1f})" if rng else ""
        out.append(f"answer: {ans.gpus} x {ans.device}, {ans.days:.1f} days{band}, "
                   f"{ans.gpu_hours / 1e6:.3g} M GPU-hours{cost} ({describe(ans.plan)})")
    elif inp["days"] or inp["budget_usd"]:
        out.append("answer: no device and GPU count meets the constraints")
    w = result.work
    out.append(f"searched {w['considered']:,} plans ({w['modelled']:,} modelled, "
               f"{w['fitting']:,} fit) in {w['search_seconds']:.2f} s; rows predicted with "
               f"bands and energy, {w['seconds']:.2f} s in all")
    bases = sorted({r.energy_basis for r in result.rows if r.energy_basis})
    out.append(f"price basis: {inp['prices']['basis']} (hardware_specs/prices.yaml); "
               f"energy: {'; '.join(bases) or '-'}; band: {inp['band']}")
    out += [f"warning: {x}" for x in result.warnings]
    return "\n".join(out)


def _num(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"
