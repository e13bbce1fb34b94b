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

MFU (``mfu``, as predict's ``mfu`` and the whole project: ops.py) is Megatron's model FLOPs
utilisation (Narayanan et al. 2021 arXiv 2104.04473 App.; Korthikanti et al. 2022 arXiv
2205.05198 eq. 7: GEMMs plus the attention matmuls, no recompute), whose attention term, like
PaLM's 12 L H Q T (Chowdhery et al. 2022 arXiv 2204.02311 App. B), counts every query against
all T keys: non-causal, twice what a causal kernel executes (at long sequences that term
dominates: Llama-3.1-70B at 128 Ki tokens, 3.4x the 6ND FLOPs). ``model_tflops_per_gpu`` is
the same FLOPs per GPU. Beside it, named so, ``mfu_6nd`` is the 6ND convention with N = all
(active) parameters, embeddings and LM head included: 6 N tokens/s / (GPUs x dense peak), no
attention term. That is Chinchilla's count (Hoffmann et al. 2022 arXiv 2203.15556: C = 6ND
over total parameters; Pearce & Song 2024 arXiv 2406.12907 trace the Kaplan / Chinchilla gap
to exactly this difference and recommend total parameters). Kaplan et al. 2020 (arXiv
2001.08361 Sec. 2.1, C ~ 6N) count N without the vocabulary and position embeddings: for
Llama-3-70B 68.45 B instead of 70.55 B, an MFU 0.970x this one. Both come from the row's own
``perfmodel.predict`` (``Prediction.mfu`` / ``mfu_6nd``, perfmodel/explain.py).

Energy is per row: the power model charges a node's power beyond its GPUs only where the
node has a sourced system maximum (``hardware_specs/power_capping.yaml`` node_overhead);
rows without one are GPU-only, flagged, and a table mixing both says so.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import get_args

from ..argtypes import api_keyword
from ..errors import SpecError, closest
from ..frameworks_config import FrameworkName
from ..resolve import device_mismatch
from ..search import (
    DEFAULT_HEADROOM,
    SearchSpace,
    base_plan,
    best_per_gpu_count,
    describe,
    explain_nothing_fits,
    may_not_fit,
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


FLAGS = {"budget_usd": "budget"}  # an input whose flag is not its field's name


def cli_flag(name: str) -> str:
    """How the command names an input in a message: ``budget_usd`` -> ``--budget``."""
    return "--" + FLAGS.get(name, name).replace("_", "-")


def _given(name: Callable[[str], str], field_: str, value) -> str:
    """An input with a value as the caller writes it: ``--seq-len 2048`` or ``seq_len=2048``."""
    word = name(field_)
    return f"{word}{value}" if word.endswith("=") else f"{word} {value}"


def parse_tokens(text: str | float | int, name: Callable[[str], str] = cli_flag) -> float:
    """'15T', '300B', '1.5e13', 2e12 -> tokens; a one-line SpecError (naming ``name("tokens")``)
    otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]?)\s*",
                         str(text))
        if not m or m.group(2).lower() not in _SUFFIX:
            raise SpecError(f"{name('tokens')}: {str(text)[:40]!r} is not a token count; use e.g. 15T, "
                            "300B, 2.5e12 (suffixes K, M, B, T, P)")
        value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or not 1 <= value <= MAX_TOKENS:
        raise SpecError(f"{name('tokens')}: {text!r} = {value:g} tokens; a token count is between 1 "
                        f"and {MAX_TOKENS:g}")
    return value


RACK_SCALE = 8  # a node of more GPUs than this (an NVL72 rack) is planned in whole nodes only


def gpu_counts(gpus_per_node: int, max_gpus: int) -> list[int]:
    """The GPU counts tried: whole nodes doubling (node x 2^k) and ``max_gpus`` itself when it
    is a whole number of nodes; below one node, powers of two -- only for nodes of at most
    ``RACK_SCALE`` GPUs (a server's GPUs are scheduled one by one; a rack-scale node, e.g. a
    72-GPU NVL72 rack, is one NVLink domain planned and priced as whole racks: 72, 144, 288,
    ...). Every count above one node is a whole number of nodes. Empty when ``max_gpus`` is
    less than one rack-scale node."""
    n = gpus_per_node
    out = {2 ** k for k in range(31) if 2 ** k < n and 2 ** k <= max_gpus} \
        if n <= RACK_SCALE else set()
    while n <= max_gpus:
        out.add(n)
        n *= 2
    if max_gpus >= gpus_per_node and max_gpus % gpus_per_node == 0:
        out.add(max_gpus)
    return sorted(out)


def default_devices(prices: PriceTable) -> list[str]:
    """Priced devices with a reference calibration profile whose default node scales out (an
    inter-node network) and that hold at least MIN_DEVICE_MEMORY_GB. Others (documented
    default efficiencies only) are planned when named in --devices, with a warning."""
    known = registry.ids("device")  # file stems: only the priced devices' files are read
    out = []
    for dev in prices.devices:
        d = registry.get_device(dev) if dev in known else None
        if d is None or d.memory_gb < MIN_DEVICE_MEMORY_GB or not d.default_node:
            continue
        if registry.reference_profile(dev) is None:
            continue
        node = registry.get_node(d.default_node)
        if node.inter_node and node.gpus_per_node >= 4:
            out.append(dev)
    return out


PRECISIONS = ("bf16", "fp16", "fp8", "mxfp8", "nvfp4")  # the training dtypes the planner offers


@dataclass
class TrainingPlanInputs:
    model: ModelSpec | str | Path  # a preset id, a config.json / preset path, or a ModelSpec
    tokens: float | str
    days: float | None = None
    budget_usd: float | None = None
    devices: list[str] | str | None = None  # ids or "a,b"; default: ``default_devices``
    max_gpus: int = DEFAULT_MAX_GPUS
    seq_len: int = DEFAULT_SEQ_LEN
    # None: DEFAULT_BATCH_TOKENS rounded down to whole sequences of seq_len (default_batch_tokens)
    global_batch_tokens: int | None = None
    precision: str = "bf16"
    headroom: float = DEFAULT_HEADROOM
    space: SearchSpace = field(default_factory=SearchSpace)
    prices: PriceTable | None = None
    calibration: str | Path | None = None  # a profile for a single device
    framework: str = "megatron-core"  # frameworks/<id>.yaml: the training stack planned for


ALIASES = {"budget": "budget_usd"}  # the CLI's names the API also takes


def inputs_from(kwargs: dict) -> TrainingPlanInputs:
    """``TrainingPlanInputs`` from keywords: the CLI's names (``budget``) accepted, an unknown
    name one SpecError listing the valid ones (not a TypeError)."""
    names = [f.name for f in fields(TrainingPlanInputs)]
    out, given = {}, {}
    for key, value in kwargs.items():
        name = ALIASES.get(key, key)
        if name not in names:
            hints = closest(key, names + list(ALIASES))
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            raise SpecError(f"plan_training: unknown argument {key!r}{hint} (arguments: "
                            f"{', '.join(names)}; budget is budget_usd)")
        if name in out:
            raise SpecError(f"plan_training: {given[name]!r} and {key!r} are the same "
                            "argument; give one")
        out[name], given[name] = value, key
    for required in ("model", "tokens"):
        if required not in out:
            raise SpecError(f"plan_training: {required!r} is required")
    return TrainingPlanInputs(**out)


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
    energy_node: bool | None = None  # the node's power beyond its GPUs counted (None: no MWh)
    mfu: float | None = None  # Megatron model FLOPs incl. non-causal attention (predict's mfu)
    mfu_6nd: float | None = None  # 6ND, N incl. embeddings (module docstring; predict's mfu_6nd)
    model_tflops_per_gpu: float | None = None  # the Megatron FLOPs, TFLOP/s per GPU
    pareto: bool = False
    meets: bool = True
    memory_range: list[float] | None = None  # 80 % band of the memory per GPU, bytes
    may_not_fit: bool = False  # that band reaches past the device's memory (search.may_not_fit)
    gpus_billed: int | None = None  # GPUs paid for (whole racks, spares incl.; None: gpus)
    # constraints ("days", "budget") the point estimate meets but the upper end of the row's
    # 80 % band does not (``_mark``; plan-serving's may_miss_slo rule)
    may_miss: list[str] = field(default_factory=list)

    @property
    def meets_across_band(self) -> bool:
        """Meets every given constraint, also at the upper end of its 80 % band (a row without
        a band: at the point estimate)."""
        return self.meets and not self.may_miss

    def scaled(self, value: float | None) -> list[float] | None:
        """``value`` (days, GPU-hours, USD: all proportional to the step time) as its
        80 % range."""
        if value is None or self.band is None:
            return None
        return [value * self.band[0], value * self.band[1]]

    def to_dict(self) -> dict:
        p = self.plan
        return {"device": self.device, "gpus": self.gpus,
                "gpus_billed": self.gpus_billed or self.gpus, "plan": describe(p),
                "parallelism": {k: p[k] for k in ("tp", "pp", "vp", "cp", "dp", "ep",
                                                  "micro_batch", "sequence_parallel",
                                                  "zero_stage", "recompute", "schedule",
                                                  "uneven_pipeline")},
                # the framework's EP all-to-all overlap where the search ran it
                "moe_a2a_overlap": bool(p.get("moe_a2a_overlap", False)),
                "step_time_s": p["step_time_s"], "tokens_per_s": p["tokens_per_s"],
                "days": self.days, "gpu_hours": self.gpu_hours, "usd": self.usd,
                "energy_mwh": self.energy_mwh, "energy_basis": self.energy_basis,
                "energy_includes_node": self.energy_node,
                "days_range": self.scaled(self.days),
                "gpu_hours_range": self.scaled(self.gpu_hours),
                "usd_range": self.scaled(self.usd), "mfu": self.mfu,
                "mfu_6nd": self.mfu_6nd,
                "model_tflops_per_gpu": self.model_tflops_per_gpu,
                "cost_basis": "USD" if self.usd is not None else "GPU-hours (no price)",
                "memory_per_gpu_bytes": p["memory_per_gpu_bytes"],
                "memory_headroom": p["memory_headroom"],
                "memory_per_gpu_range": self.memory_range, "may_not_fit": self.may_not_fit,
                "bound_by": self.bound,
                "pareto": self.pareto, "meets_constraints": self.meets,
                "meets_constraints_across_band": self.meets_across_band,
                "may_miss": list(self.may_miss)}


@dataclass
class TrainingPlanResult:
    inputs: dict
    rows: list[Row]
    work: dict  # search work: plans considered / modelled / valid / fitting, seconds
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # rules applied (e.g. the rack rule)

    @property
    def answer(self) -> Row | None:
        """The row the planner asked for (``choice``): with only --budget the fastest row whose
        cost fits it; with only --days the cheapest row that meets it; with both the cheapest
        row meeting both (the deadline binds; ``choice`` says what the budget would buy) --
        each among the rows that meet the constraints across their 80 % band when any does,
        else among those meeting them at the point estimate (``BAND_RULE``); with neither
        ``default_choice``: the cheapest Pareto row whose days x cost is within ANSWER_SLACK
        of the smallest."""
        return self.choice()[0]

    def choice(self) -> tuple[Row | None, dict]:
        """(the answer row, why): ``rule`` (what was minimised under which constraint),
        ``binding`` ("days", "budget" or None: the constraint that decides the answer, or
        that no row meets), ``across_band`` (the answer meets the constraints across its
        80 % band; None without constraints or answer), ``may_miss`` (the constraints the
        answer meets only at the point estimate), and ``text``, one line for the answer.
        With constraints the answer is chosen among the rows meeting them across their 80 %
        band when any does, else among the rows meeting them at the point estimate, said so
        (``BAND_RULE``, plan-serving's SLO rule). Cost is USD; rows of a device without a
        price are judged by GPU-hours (USD / price: for one device the same choice at any
        price) and only when no priced row qualifies; a budget in USD is never met by an
        unpriced row."""
        days, budget = self.inputs.get("days"), self.inputs.get("budget_usd")
        if days is None and budget is None:
            return default_choice(self.rows)
        ok = [r for r in self.rows if r.meets]
        pool = [r for r in ok if r.meets_across_band] or ok
        if days is None:  # budget only: the fastest plan the budget pays for
            row = min(pool, key=lambda r: (r.days, r.usd, r.gpus)) if pool else None
            # rows faster than the answer: met the budget only at the point (passed over), or
            # cost more than it (what faster needs)
            passed = sorted((r for r in ok if row and r.days < row.days),
                            key=lambda r: (r.days, r.usd, r.gpus))
            faster = [r for r in self.rows if row and r.days < row.days and r.usd is not None
                      and not r.meets]
            nxt = min(faster, key=lambda r: r.usd) if faster else None
            text = (f"--budget {_usd(budget)} only: the fastest row whose cost fits it"
                    + (f" ({_usd(row.usd)} of it)" if row else "")
                    + (f"; faster needs {_usd(nxt.usd)} ({nxt.gpus} x {nxt.device}, "
                       f"{nxt.days:.1f} days)" if nxt else ""))
            if row is not None and nxt is None and not passed:
                text += " (the fastest row of all: the budget does not bind)"
            return row, self._band_note(row, passed, "faster", {
                "rule": "fastest row within --budget",
                "binding": "budget" if row is None or nxt or passed else None, "text": text})
        row = _cheapest(pool)
        free = row is not None and row is _cheapest(self.rows)  # the deadline costs nothing
        passed = sorted((r for r in ok if row and _cost_key(r) < _cost_key(row)), key=_cost_key)
        if budget is None:
            return row, self._band_note(row, passed, "cheaper", {
                "rule": "cheapest row within --days",
                "binding": None if free else "days",
                "text": f"--days {days:g} only: the cheapest row that finishes "
                        "within it" + (" (the cheapest row of all: the deadline "
                                       "does not bind)" if free else "")})
        # both: the cheapest row meeting both; say which constraint decides
        in_time = _cheapest([r for r in self.rows if r.days <= days])
        in_budget = [r for r in self.rows if r.usd is not None and r.usd <= budget]
        quick = min(in_budget, key=lambda r: (r.days, r.usd, r.gpus)) if in_budget else None
        if row is not None:
            spent = _usd(row.usd) if row.usd is not None else "-"
            text = (f"--days {days:g} and --budget {_usd(budget)}: the cheapest row meeting "
                    f"both; " + ("neither binds (the cheapest row of all)" if free else
                                 "the deadline binds") + f" ({spent} of the budget spent)" + (
                        f"; the whole budget would buy {quick.days:.1f} days ({quick.gpus} x "
                        f"{quick.device})" if quick and quick is not row else ""))
            return row, self._band_note(row, passed, "cheaper", {
                "rule": "cheapest row within --days and --budget",
                "binding": None if free else "days", "text": text})
        if in_time is None:
            why, binding = f"no row finishes within {days:g} days", "days"
        elif in_time.usd is None or quick is None:
            why, binding = ("no priced row fits the budget" if quick is None else
                            "the rows meeting --days have no price"), "budget"
        else:
            why, binding = (f"the cheapest row meeting --days costs {_usd(in_time.usd)} "
                            f"({in_time.gpus} x {in_time.device}); the budget buys at best "
                            f"{quick.days:.1f} days"), "budget"
        return None, {"rule": "cheapest row within --days and --budget", "binding": binding,
                      "across_band": None, "may_miss": [],
                      "text": f"--days {days:g} and --budget {_usd(budget)} conflict: {why}"}

    def _band_note(self, row: Row | None, passed: list[Row], better: str, why: dict) -> dict:
        """``why`` with the 80 % band part of the rule (``BAND_RULE``) added: ``across_band``,
        ``may_miss`` and, in ``text``, whether the answer meets the constraints across its
        band -- naming the ``better`` (cheaper / faster) rows passed over because they meet
        them only at the point estimate, at most ``PASSED_SHOWN`` of them -- or that no row
        does, so the answer is the point estimate's and may miss them."""
        if row is None:
            return why | {"across_band": None, "may_miss": []}
        days, budget = self.inputs.get("days"), self.inputs.get("budget_usd")
        given = " and ".join(f for f, v in (("--days", days), ("--budget", budget))
                             if v is not None)
        them = "them" if days is not None and budget is not None else "it"
        if row.may_miss:
            note = (f"; no row meets {given} across its 80 % band: this is the "
                    f"{'fastest' if better == 'faster' else 'cheapest'} that meets {them} at "
                    f"the point estimate, and it may miss "
                    f"{may_miss_text(row, days, budget)}")
        elif row.band is None:
            note = ""  # no band: judged at the point estimate (nothing to say about the band)
        else:
            note = f"; meets {given} across its 80 % band"
            if passed:
                shown = passed[:PASSED_SHOWN]
                more = len(passed) - len(shown)
                note += (f", preferred to {better} rows that meet {them} only at the point "
                         "estimate: " + "; ".join(
                             f"{r.gpus} x {r.device} ({r.days:.1f} days"
                             + (f", {_usd(r.usd)}" if r.usd is not None else "")
                             + f") may miss {may_miss_text(r, days, budget)}" for r in shown)
                         + (f"; {more} more (--all, JSON may_miss)" if more else ""))
        return why | {"across_band": not row.may_miss, "may_miss": list(row.may_miss),
                      "text": why["text"] + note}

    def to_dict(self) -> dict:
        ans, why = self.choice()
        return {"inputs": self.inputs, "rows": [r.to_dict() for r in self.rows],
                "pareto": [r.to_dict() for r in self.rows if r.pareto],
                "answer": ans.to_dict() if ans else None, "answer_rule": why,
                "work": self.work, "notes": list(self.notes),
                "warnings": list(self.warnings)}

    def to_csv(self) -> str:
        cols = ["device", "gpus", "gpus_billed", "tp", "pp", "vp", "cp", "dp", "ep", "micro_batch",
                "sequence_parallel", "zero_stage", "recompute", "uneven_pipeline",
                "step_time_s", "days", "days_lo", "days_hi", "gpu_hours", "usd",
                "energy_mwh", "energy_includes_node", "mfu", "mfu_6nd",
                "model_tflops_per_gpu", "memory_headroom", "pareto", "meets_constraints",
                "meets_constraints_across_band", "may_miss", "may_not_fit"]
        import csv  # here: only --csv writes it (issue 10: a fresh process imports less)

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            d = r.to_dict()
            lo, hi = d["days_range"] or (None, None)
            flat = {**d, **d["parallelism"], "days_lo": lo, "days_hi": hi,
                    "may_miss": " ".join(d["may_miss"])}
            w.writerow(["" if flat[c] is None else flat[c] for c in cols])
        return buf.getvalue()


ANSWER_SLACK = 0.10  # a days x cost within 10 % of the smallest counts as a tie (below)
PASSED_SHOWN = 3  # rows passed over for the band named in the "chosen as" line
BAND_RULE = (
    "With --days / --budget the answer is chosen among the rows that meet them across their "
    "80 % band (the band's upper end of days / USD within the bound) when any row does; when "
    "none does, among the rows meeting them at the point estimate, said so. A row whose point "
    "estimate meets a constraint but whose band's upper end does not is marked 'may miss "
    "--days' / 'may miss --budget' (plan-serving's 'may miss SLO' rule; docs/planning.md).")


def default_choice(rows: list[Row]) -> tuple[Row | None, dict]:
    """The answer without --days or --budget: among the time-vs-cost Pareto rows (priced rows
    by USD; GPU-hours only when no row has a price), the one with the smallest days x cost --
    the knee of the front on log axes, where one more step of speed cuts days by the same
    fraction it adds cost (the cost-time product, as the energy-delay product of Horowitz,
    Indermaur & Gonzalez 1994 weighs energy against time) -- and among the rows within
    ANSWER_SLACK (10 %) of that product, the cheapest. Why: (1) the product does not depend on
    the token count or the price level (both scale every row alike), nor on which extreme
    counts were tried, unlike "within 2x of the fastest", where a 16,384-GPU row at 1.3 % MFU
    set the bar (QA, Qwen3-30B-A3B: 4,096 MI300X at 5.3 % MFU for 3.11 M USD); (2) where the
    front is flat on log axes (each doubling of GPUs buying about as much time as it costs)
    a difference under 10 % is smaller than the model's own step-time error (docs/
    uncertainty.md: training sources' median errors +6 ... +44 %), so the cheaper, more
    efficient plan is kept rather than paying for a gain the model cannot resolve."""
    pareto = [r for r in rows if r.pareto and r.meets]
    priced = [r for r in pareto if r.usd is not None]
    pool = priced or pareto
    unit = (lambda r: r.usd) if priced else (lambda r: r.gpu_hours)
    rule = (f"cheapest Pareto row with days x cost within {100 * ANSWER_SLACK:g} % of the "
            "smallest")
    if not pool:
        return None, {"rule": rule, "binding": None, "across_band": None,
                      "may_miss": [], "text": "no row to choose from"}
    knee = min(pool, key=lambda r: (r.days * unit(r), r.gpus))
    best = knee.days * unit(knee)
    near = [r for r in pool if r.days * unit(r) <= (1 + ANSWER_SLACK) * best]
    row = min(near, key=lambda r: (unit(r), r.gpus))
    fastest = min(pool, key=lambda r: (r.days, unit(r)))
    cost = _usd if priced else (lambda x: f"{x / 1e6:.3g} M GPU-hours")
    text = (f"no --days or --budget: the cheapest Pareto row whose days x cost is within "
            f"{100 * ANSWER_SLACK:g} % of the smallest (the knee, where more GPUs cut days by "
            "the fraction they add to cost; closer than that is within the model's error, "
            "so the cheaper plan is kept)")
    if knee is not row:
        below = 100 * (1 - best / (row.days * unit(row)))
        text += (f"; the smallest product is {'the fastest row, ' if knee is fastest else ''}"
                 f"{knee.gpus} x {knee.device} ({knee.days:.1f} days, {cost(unit(knee))}: "
                 f"{below:.1f} % below this row's)")
    if row is knee and len(pool) > 1 and row.gpus == max(r.gpus for r in rows
                                                         if r.device == row.device):
        text += (f"; {row.gpus} is the most {row.device} GPUs tried: with a larger --max-gpus "
                 "the knee may lie further out")
    if fastest is not row and fastest is not knee:
        text += (f"; the fastest, {fastest.gpus} x {fastest.device}, takes {fastest.days:.1f} "
                 f"days for {cost(unit(fastest))}")
    return row, {"rule": rule, "binding": None, "across_band": None, "may_miss": [],
                 "text": text}


def _cheapest(rows: list[Row]) -> Row | None:
    """The cheapest row (fewer GPUs on a tie): by USD among priced rows, by GPU-hours when
    none has a price."""
    priced = [r for r in rows if r.usd is not None]
    if priced:
        return min(priced, key=lambda r: (r.usd, r.gpus))
    return min(rows, key=lambda r: (r.gpu_hours, r.gpus)) if rows else None


def _cost_key(r: Row) -> tuple:
    """``_cheapest``'s order: priced rows by USD before unpriced rows by GPU-hours."""
    return (0, r.usd, r.gpus) if r.usd is not None else (1, r.gpu_hours, r.gpus)


def _usd(x: float) -> str:
    return f"{x / 1e6:.3g} M USD"


def _inputs(first, kwargs: dict) -> TrainingPlanInputs:
    """The inputs of ``plan_training``: a ``TrainingPlanInputs`` alone, or keywords with the
    model optionally given first (positionally); anything else one TypeError saying how to
    call it."""
    if isinstance(first, TrainingPlanInputs):
        if kwargs:
            raise TypeError("plan_training: give a TrainingPlanInputs or keywords, not both "
                            f"(got also {', '.join(sorted(kwargs))})")
        return first
    if first is None:
        return inputs_from(kwargs)
    if not isinstance(first, (str, Path, ModelSpec)):
        raise TypeError(f"plan_training: the first argument is the model (a preset id, a "
                        f"config.json path or a ModelSpec) or a TrainingPlanInputs, not "
                        f"{type(first).__name__}; call plan_training('llama-3-70b', "
                        "tokens='15T', ...)")
    if "model" in kwargs:
        raise TypeError(f"plan_training: the model is given twice ({first!s:.60} first and "
                        f"model={kwargs['model']!s:.60}); give one")
    return inputs_from({"model": first, **kwargs})


def _model(spec: ModelSpec | str | Path) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    from ..zoo import resolve_model

    return resolve_model(str(spec) if isinstance(spec, Path) else spec)


def default_batch_tokens(seq_len: int) -> int:
    """The global batch planned when none is given: DEFAULT_BATCH_TOKENS rounded down to whole
    sequences of ``seq_len`` (at least one)."""
    return max(DEFAULT_BATCH_TOKENS // seq_len, 1) * seq_len


def batch_note(global_batch: int, seq_len: int, rows: list,
               name: Callable[[str], str] = cli_flag) -> str | None:
    """A note when some row's GPUs outnumber the batch's sequences: the batch is held fixed at
    every GPU count, so there each GPU holds under one sequence per step (data parallelism
    cannot reach them; tensor, pipeline and context parallelism split the rest) and MFU falls,
    where real runs grow the batch with the GPU count (Llama 3: 16 M tokens per step on 16,384
    H100s, Dubey et al. 2024 Table 4)."""
    wide = [r.gpus for r in rows if r.gpus > global_batch]
    if not wide:
        return None
    return (f"the global batch of {global_batch:,} sequences ({global_batch * seq_len:,} tokens) "
            f"is the same at every GPU count: from {min(wide):,} GPUs each GPU holds under one "
            "sequence per step, so those rows pay for more model parallelism and lower MFU; "
            f"a real run at that scale grows the batch ({name('global_batch_tokens')})")


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < 1:
        raise SpecError(f"{name}: {value!r} must be a whole number >= 1")
    return int(value)


def _check(inp: TrainingPlanInputs, model: ModelSpec,
           name: Callable[[str], str] = api_keyword) -> tuple[float, int]:
    """The inputs checked one by one, each error naming its input as the caller does
    (``name``: ``cli_flag`` for the command, ``api_keyword`` for the Python API)."""
    tokens = parse_tokens(inp.tokens, name)
    for field_, value in (("days", inp.days), ("budget_usd", inp.budget_usd)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not (math.isfinite(value) and value > 0)):
            raise SpecError(f"{name(field_)}: {value!r} must be a positive number")
    _whole(name("max_gpus"), inp.max_gpus)
    seq = _whole(name("seq_len"), inp.seq_len)
    batch = (default_batch_tokens(seq) if inp.global_batch_tokens is None
             else _whole(name("global_batch_tokens"), inp.global_batch_tokens))
    if inp.precision not in PRECISIONS:
        raise SpecError(f"{name('precision')}: {inp.precision!r} is not one of "
                        f"{', '.join(PRECISIONS)}")
    if inp.framework not in get_args(FrameworkName):
        raise SpecError(f"{name('framework')}: {inp.framework!r} is not one of "
                        f"{', '.join(get_args(FrameworkName))}")
    if seq > model.max_position_embeddings:
        raise SpecError(f"{name('seq_len')}: {seq} tokens exceeds the context of model "
                        f"{model.id!r} ({model.max_position_embeddings} tokens, "
                        f"max_position_embeddings); give "
                        f"{_given(name, 'seq_len', model.max_position_embeddings)} or less")
    if batch < seq:
        raise SpecError(f"{name('global_batch_tokens')}: {batch} must hold at "
                        f"least one sequence of {name('seq_len')} ({seq})")
    if batch % seq:
        raise SpecError(f"{name('global_batch_tokens')}: {batch} must be a "
                        f"multiple of {name('seq_len')} ({seq})")
    return tokens, batch // seq


def _odd(n: int) -> int:
    return n // (n & -n)


def _dp_factor(gpus_per_node: int, space: SearchSpace) -> int:
    """The odd factor of a whole number of nodes (node x 2^k) that data parallelism must carry:
    the node's odd factor less the most of it any tp x pp x cp of the space holds (an NVL72
    rack: 9 = 3 x 3, pp 3 / 6 / 12 / 24 holds one 3, so dp needs a factor 3)."""
    odd = _odd(gpus_per_node)
    held = max(math.gcd(odd, _odd(t * p * c)) for t in space.tp for p in space.pp
               for c in space.cp)
    return odd // held


def rack_gpus_used(gpus_per_node: int, global_batch: int, space: SearchSpace) -> int:
    """GPUs a plan uses in each node (the rack rule). A server (<= RACK_SCALE GPUs) and a
    rack-scale node whose odd factor the plan can carry (tp x pp x cp of the space, or data
    parallelism when the global batch divides by it) are used whole. Otherwise -- a 72-GPU
    NVL72 rack with a 512-sequence batch: 72 = 8 x 9, tp x pp x cp hold one 3, so dp needs a
    factor 3 that 512 does not have -- each rack runs the largest count whose odd factor can
    be carried, 64 of 72, and the others are spares (the rack is still paid for whole). 64 of
    72 is also what a rented rack offers: CoreWeave deploys GB200 NVL72 instances only as full
    racks of 18 four-GPU nodes and asks workloads to "tolerate up to two unavailable Nodes per
    rack for maintenance" (docs.coreweave.com/docs/platform/instances/gb200), i.e. 8 of 72
    GPUs; and NVIDIA's own GB200 / GB300 NVL72 training results run 64, 128 and 256 GPUs with
    power-of-two batches (Megatron-Bridge performance summary, 25.11, NVIDIA-NeMo/
    Megatron-Bridge docs/performance-summary-archive.md @ 067f987d; validation/training/
    megatron_bridge_2511.yaml), not whole racks. The batch is kept, so every device trains
    the same recipe."""
    if gpus_per_node <= RACK_SCALE:
        return gpus_per_node
    for used in range(gpus_per_node, 0, -1):
        need = _dp_factor(used, space)
        if global_batch % need == 0:
            return used
    return gpus_per_node  # pragma: no cover (need 1 at a power of two)


def device_list(devices: list[str] | str | None, prices: PriceTable,
                name: Callable[[str], str] = api_keyword) -> list[str]:
    """The devices to plan: ids (a list, one id or "a,b"), each known, or the defaults; an
    error names the input as the caller does (``name``)."""
    if devices is None:
        out = default_devices(prices)
    else:
        items = devices.split(",") if isinstance(devices, str) else list(devices)
        out = [str(d).strip() for d in items if str(d).strip()]
    if not out:
        raise SpecError(f"{name('devices')}: no device to plan for")
    known = registry.ids("device")  # file stems: the named devices' files are read later
    for d in out:
        if d not in known:
            hints = [k for k in sorted(known) if d.lower() in k][:4] or closest(d, known)
            hint = f"did you mean {', '.join(hints)}? " if hints else ""
            raise SpecError(f"{name('devices')}: unknown device {d!r}; {hint}valid ids: "
                            f"{', '.join(sorted(known))}")
    return list(dict.fromkeys(out))


def _system(device: str, model: ModelSpec, max_gpus: int, training: TrainingConfig,
            space: SearchSpace):
    """The device's default system at the largest count it can reach (one node without a
    network), the counts to try, and (GPUs used, GPUs paid for) per node (``rack_gpus_used``:
    a rack-scale node may leave spares; ``max_gpus`` bounds the GPUs paid for)."""
    dev = registry.get_device(device)  # unknown id: one line with suggestions
    node = registry.get_node(dev.default_node) if dev.default_node else None
    per_node = node.gpus_per_node if node else 1
    used = rack_gpus_used(per_node, training.global_batch, space)
    top = max_gpus if (node and node.inter_node) else min(max_gpus, per_node)
    counts = gpu_counts(used, top * used // per_node)
    if not counts:  # less than one rack-scale node
        return None, None, counts, (used, per_node)
    system = SystemConfig(device=device, num_gpus=max(counts),
                          gpus_per_node=used if used < per_node else None)
    sc = training_scenario(model, system, training)
    return sc, resolve_system(sc.system), counts, (used, per_node)


def training_scenario(model: ModelSpec, system: SystemConfig,
                      training: TrainingConfig) -> Scenario:
    """``Scenario(kind="training", model=model, system=system, training=training)`` from
    sections that are validated already, without building the Scenario validator (pydantic
    builds it, ModelSpec's schema within, on a process's first Scenario: 10-40 ms of CPU on
    this machine, more than the search's mask building; nothing else in plan-training
    validates a Scenario). The Scenario's own checks run as its validators run them (the
    before-validator resolves a model given by name or path: here a ModelSpec already); a
    scenario they refuse is built by the validating constructor, which raises the same
    error. tests/test_plan_scenario_fast.py pins the validators this relies on."""
    sc = Scenario.model_construct(kind="training", model=model, system=system,
                                  training=training)
    try:
        sc._check_sections()
    except SpecError:
        return Scenario(kind="training", model=model, system=system, training=training)
    return sc


def rack_note(device: str, rack: tuple[int, int], global_batch: int,
              space: SearchSpace) -> str:
    """The rack rule applied to ``device``, one line for the output (``rack_gpus_used``)."""
    used, per_node = rack
    need = _dp_factor(per_node, space)
    return (f"{device}: {used} of each {per_node}-GPU rack used ({per_node - used} spares): "
            f"whole racks would need data parallelism of a factor {need} that the "
            f"{global_batch}-sequence batch does not divide (tp x pp x cp hold no more of "
            f"{per_node}'s odd factor); GPU-hours and USD count whole racks ({per_node} GPUs "
            f"each), energy the GPUs used; a batch divisible by {need} (--global-batch-tokens) "
            "plans whole racks")


def capabilities_note(framework: str) -> str | None:
    """What the planned framework can run (frameworks/<id>.yaml ``capabilities``), one line:
    the search tried only those plans (``search.sweep``, ``plan.capability_rules``). None
    when it runs every ZeRO stage with pipeline parallelism and interleaving (Megatron-Core)."""
    from ..frameworks import framework_spec
    from ..frameworks_config import ALIASES

    spec = framework_spec(ALIASES.get(framework, framework))
    stages = spec.capabilities.zero_stages
    if set(stages) == {0, 1, 2, 3} and all(s.pp and s.vp and s.ep and s.moe
                                           for s in stages.values()):
        return None
    parts = [f"zero{z} (" + ("pp, vp" if s.vp else "pp, no vp" if s.pp else "no pp")
             + ("" if s.ep else ", no ep") + ("" if s.moe else ", no moe") + ")"
             for z, s in sorted(spec.capabilities.zero_stages.items())]
    return (f"{spec.id} runs " + ", ".join(parts) + f" (frameworks/{spec.id}.yaml "
            "capabilities): no other plan was searched")


def precision_skip(device: str, precision: str,
                   name: Callable[[str], str] = cli_flag) -> str | None:
    """Why ``device`` is skipped for ``precision`` (None: planned): the rule predict, search
    and the API refuse such a scenario by (``plan.training_precision_problem``: fp8 training
    needs fp8 tensor cores, bf16 bf16 ones, sources there), so a row there would be a run
    priced in a precision it cannot use. ``name``: the caller's word for an input."""
    from ..plan import training_precision_problem, training_precisions

    spec = registry.get_device(device)
    if not spec.supported_dtypes():  # nothing to plan it with (DeviceSpec.peak_flops)
        return (f"{device}: skipped: no sourced peak FLOP/s (every peak_tflops entry of its "
                "hardware file is null; its notes say why)")
    why = training_precision_problem(spec, precision)
    if why is None:
        return None
    return (f"{device}: skipped for {_given(name, 'precision', precision)}: {why}; plan it "
            f"with {_given(name, 'precision', training_precisions(spec)[0])}")


def plan_training(inp: TrainingPlanInputs | ModelSpec | str | Path | None = None, /,
                  **kwargs) -> TrainingPlanResult:
    """Answer 'how many GPUs of which device, how many days, at what cost' (module docstring).
    Call with a ``TrainingPlanInputs``, or with its fields as keywords (``budget`` for
    ``budget_usd``, ``devices`` a list or one id), the model optionally first, as the CLI
    takes it: ``plan_training("llama-3-70b", tokens="15T")`` -- a preset id, a config.json /
    preset path or a ``ModelSpec``. A bad input is one SpecError naming its keyword
    (``devices=``) and what is valid."""
    return plan(_inputs(inp, kwargs), api_keyword)


def plan(inp: TrainingPlanInputs, name: Callable[[str], str] = api_keyword
         ) -> TrainingPlanResult:
    """``plan_training`` on checked-to-be inputs; ``name`` turns an input's field name into
    the caller's word for it in an error (``cli_flag``: the command's ``--devices``)."""
    model = _model(inp.model)
    tokens, global_batch = _check(inp, model, name)
    inp = replace(inp, max_gpus=int(inp.max_gpus), seq_len=int(inp.seq_len),
                  global_batch_tokens=global_batch * int(inp.seq_len))
    prices = inp.prices or load_prices()
    devices = device_list(inp.devices, prices, name)
    training = TrainingConfig(seq_len=inp.seq_len, global_batch=global_batch,
                              precision=inp.precision, framework=inp.framework)
    rows: list[Row] = []
    # units: whole plans (considered, plans_modelled, valid, fitting) and mesh cells (modelled;
    # search.Sweep: cells off the GPU counts are modelled too, so they can outnumber plans)
    work = {"considered": 0, "plans_modelled": 0, "modelled": 0, "valid": 0, "fitting": 0,
            "seconds": 0.0,
            "search_seconds": 0.0, "per_device": {}}
    warnings: list[str] = []
    notes: list[str] = []
    for device in devices:
        skip = precision_skip(device, inp.precision, name)
        if skip:
            warnings.append(skip)
            work["per_device"][device] = {"skipped": skip, "no_plan": skip}
            continue
        t0 = time.perf_counter()
        sc, system, counts, rack = _system(device, model, inp.max_gpus, training, inp.space)
        if sc is None:
            per_node = registry.get_node(registry.get_device(device).default_node).gpus_per_node
            skip = (f"{device}: skipped: its {per_node}-GPU node is planned in whole nodes "
                    f"(nodes of more than {RACK_SCALE} GPUs are not split) and --max-gpus "
                    f"{inp.max_gpus} is less than one; give --max-gpus {per_node} or more")
            warnings.append(skip)
            work["per_device"][device] = {"skipped": skip, "no_plan": skip}
            continue
        if rack[0] < rack[1]:
            notes.append(rack_note(device, rack, global_batch, inp.space))
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
            rows.append(_row(sc, rec, tokens, price, fallback, inp.calibration, warnings,
                             rack))
        dt = time.perf_counter() - t0
        for k in ("considered", "plans_modelled", "modelled", "valid", "fitting"):
            work[k] += getattr(sw, k)
        work["seconds"] += dt
        work["search_seconds"] += t_search
        work["per_device"][device] = {"gpu_counts": counts, "considered": sw.considered,
                                      "plans_modelled": sw.plans_modelled,
                                      "modelled": sw.modelled, "valid": sw.valid,
                                      "fitting": sw.fitting, "seconds": dt,
                                      "search_seconds": t_search,
                                      "price": (f"{price.provider} {price.usd_per_gpu_hour:g} "
                                                f"USD/GPU-h ({price.date})") if price else None}
        if not price:
            warnings.append(f"{device}: no price in hardware_specs/prices.yaml: no USD shown "
                            "(M USD 'no price'), its rows are compared by GPU-hours")
        if not best:
            why = explain_nothing_fits(sw)
            reason = (f"{device} on {counts[0]}-{counts[-1]} GPUs: "
                      + (why["message"] if why else "no plan fits"))
            warnings.append(reason)
            work["per_device"][device]["no_plan"] = reason
    limits = capabilities_note(inp.framework)
    if limits:
        notes.append(limits)
    wide = batch_note(global_batch, inp.seq_len, rows, name)
    if wide:
        notes.append(wide)
    _mark(rows, inp)
    warnings += _energy_warning(rows)
    rows.sort(key=lambda r: (r.device, r.gpus))
    inputs = {"model": model.id, "tokens": tokens, "days": inp.days,
              "budget_usd": inp.budget_usd, "devices": devices, "max_gpus": inp.max_gpus,
              "seq_len": inp.seq_len, "global_batch_tokens": inp.global_batch_tokens,
              "global_batch": global_batch, "precision": inp.precision,
              "headroom": inp.headroom, "framework": inp.framework,
              "mfu": "Megatron model FLOPs (GEMMs + attention counted non-causally, no "
                     "recompute; Korthikanti et al. 2022 eq. 7) x steps/s / (GPUs x dense "
                     "peak), as predict's mfu; model_tflops_per_gpu: the same FLOPs per GPU",
              "mfu_6nd": "6ND: 6 x active parameters incl. embeddings and LM head "
                         "(Chinchilla, Hoffmann et al. 2022; not Kaplan et al. 2020's "
                         "non-embedding N) x tokens/s / (GPUs x dense peak), no attention "
                         "term, as predict's mfu_6nd",
              "prices": {"basis": prices.basis, "currency": prices.currency},
              "band": "80 % band of the step time (docs/uncertainty.md), applied to days, "
                      "GPU-hours and USD"}
    return TrainingPlanResult(inputs, rows, work, warnings, notes)


def _row(sc: Scenario, rec: dict, tokens: float, price, fallback: tuple, calibration,
         warnings: list[str], rack: tuple[int, int] = (1, 1)) -> Row:
    """A table row: the plan predicted on its own (band, energy, breakdown) and its totals.
    ``rack``: (GPUs used, GPUs paid for) per node; GPU-hours and USD count the GPUs paid for
    (whole racks, spares included), energy the GPUs used."""
    from ..api import predict

    pred = predict(scenario_for(sc, rec), calibration=calibration)
    if abs(pred.step_time_s / rec["step_time_s"] - 1) > 1e-9:
        warnings.append(f"{sc.system.device} {rec['gpus']} GPUs: predict gives "
                        f"{pred.step_time_s:.6g} s per step, the search {rec['step_time_s']:.6g}")
    seconds = tokens / rec["tokens_per_s"]
    used, per_node = rack
    billed = -(-rec["gpus"] // used) * per_node if used < per_node else rec["gpus"]
    gpu_hours = seconds / 3600.0 * billed
    mwh, basis, node = _energy(pred, seconds / 3600.0 * rec["gpus"], tokens, fallback)
    step_range = (pred.ranges or {}).get("step_time_s")
    band = (step_range[0] / pred.step_time_s, step_range[1] / pred.step_time_s) \
        if step_range else None
    parts = {k: float(v) for k, v in pred.breakdown.get("time", {}).items()}
    total = sum(parts.values()) or 1.0
    bound = [{"term": k, "seconds": v, "share": v / total}
             for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:2] if v > 0]
    return Row(device=sc.system.device, gpus=rec["gpus"], plan=rec, days=seconds / 86400.0,
               gpu_hours=gpu_hours, usd=gpu_hours * price.usd_per_gpu_hour if price else None,
               energy_mwh=mwh, bound=bound, band=band, energy_basis=basis, energy_node=node,
               mfu=pred.mfu, mfu_6nd=pred.mfu_6nd, model_tflops_per_gpu=pred.tflops_per_gpu,
               memory_range=(pred.ranges or {}).get("memory_per_gpu_bytes"),
               may_not_fit=may_not_fit(pred.ranges, pred.memory_capacity_bytes),
               gpus_billed=billed if billed != rec["gpus"] else None)


def _energy(pred, gpu_hours: float, tokens: float,
            fallback: tuple) -> tuple[float | None, str, bool | None]:
    """(MWh, its basis, whether the node's power beyond the GPUs is in it) of one row: the
    power model's J per trained token where the device has power figures, else GPU-hours x
    the fallback power (GPUs only)."""
    if pred.energy_per_token_j is not None:
        energy = pred.breakdown.get("energy", {})
        per_gpu = energy.get("node_overhead_w_per_gpu")
        if per_gpu is not None:
            basis = ("power model (perfmodel/power.py), GPUs + node power beyond them "
                     f"({per_gpu:.0f} W per GPU: system maximum minus GPU TDP, an upper bound)")
        else:
            basis = ("power model (perfmodel/power.py), GPUs only: no sourced system power "
                     "for this node")
        return pred.energy_per_token_j * tokens / 3.6e9, basis, per_gpu is not None
    watts, how = fallback
    if not watts:
        return None, how, None
    return gpu_hours * watts / 1e6, f"GPU-hours x {how}, GPUs only", False


def may_miss(r: Row, days: float | None, budget: float | None) -> list[str]:
    """The constraints ("days", "budget") whose bound the row's point estimate meets but the
    upper end of its 80 % band does not (``Row.scaled``: days and USD scale with the step
    time's band), as plan-serving's ``may_miss_slo`` judges an SLO. A row without a band is
    judged at the point estimate only."""
    out = []
    for name, bound, value in (("days", days, r.days), ("budget", budget, r.usd)):
        rng = r.scaled(value) if bound is not None else None
        if rng is not None and value <= bound < rng[1]:
            out.append(name)
    return out


def may_miss_text(r: Row, days: float | None, budget: float | None) -> str:
    """"--days (band up to 39.1 days > 30)" for each constraint the row may miss."""
    parts = []
    for name in r.may_miss:
        if name == "days":
            parts.append(f"--days (band up to {r.scaled(r.days)[1]:.1f} days > {days:g})")
        else:
            parts.append(f"--budget (band up to {_usd(r.scaled(r.usd)[1])} > {_usd(budget)})")
    return ", ".join(parts)


def _mark(rows: list[Row], inp: TrainingPlanInputs) -> None:
    """Constraints met at the point estimate (``meets``) and across the 80 % band
    (``may_miss``: the ones met only at the point), and the time-vs-cost Pareto set (no other row is as fast and as cheap,
    and better in one): among priced rows by USD; among the rows of devices without a price
    by GPU-hours (the cost up to a price per GPU-hour)."""
    for r in rows:
        r.meets = ((inp.days is None or r.days <= inp.days)
                   and (inp.budget_usd is None or (r.usd is not None and r.usd <= inp.budget_usd)))
        r.may_miss = may_miss(r, inp.days, inp.budget_usd) if r.meets else []
    _pareto([r for r in rows if r.usd is not None], lambda r: r.usd)
    _pareto([r for r in rows if r.usd is None], lambda r: r.gpu_hours)


def _pareto(rows: list[Row], cost) -> None:
    cheapest = math.inf
    for r in sorted(rows, key=lambda r: (r.days, cost(r))):
        if cost(r) < cheapest:
            r.pareto, cheapest = True, cost(r)


def _energy_warning(rows: list[Row]) -> list[str]:
    """One warning when the rows' MWh are on different bases (some count the node's power
    beyond the GPUs, some do not)."""
    node = sorted({r.device for r in rows if r.energy_node})
    gpus = sorted({r.device for r in rows if r.energy_node is False})
    if not (node and gpus):
        return []
    return [f"energy: MWh of {', '.join(node)} include the node's power beyond the GPUs (an "
            f"upper bound), those of {', '.join(gpus)} are GPUs only (no sourced system "
            "power for their node; marked *): compare them with care"]
