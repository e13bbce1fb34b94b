"""Vectorised search over parallel training plans.

Every numeric plan dimension (GPU count, tp, pp, cp, ep, vp, micro-batch) is one axis of an
open mesh: the plan's fields are arrays shaped (n, 1, 1, ...), (1, n, 1, ...), ..., so the one
``training_step`` a single prediction uses evaluates the whole mesh by numpy broadcasting, and a
quantity that depends on a few axes only (an operator's shape: tp, cp, micro-batch) is computed
on those axes only. Categorical choices (recompute, sequence parallelism, ZeRO stage) are looped
outside, one model call each, except the ZeRO stage: where the framework has no
stage-dependent terms (``frameworks_costs.zero_stage_free``) the stages are one more array axis
of the same call (``training.by_stage``), so recompute x SP x ZeRO takes recompute x SP calls.
The calls on one mesh (one SP value) share what reads neither the recompute policy nor the
ZeRO stage beyond their key: the data-parallel collectives, the operators other than the
recompute passes and their times, the model states in memory (``training_step``'s
``mesh_memo``; tests/test_search_mesh_memo.py checks each choice against a call of its own).

Before modelling, the plan rules (``plan.training_rules``) are evaluated on the mesh (cheap
integer arithmetic) and every axis value with no valid cell left is dropped from the mesh.
The framework's capabilities (frameworks/<id>.yaml ``capabilities``, ``plan.capability_rules``)
are part of those rules: a ZeRO stage the framework does not offer is not tried at all, and a
stage's cells with pp > 1 or vp > 1 where the framework cannot run them are masked out (per
stage, as array masks, before any cell is modelled), so the search never ranks a plan the
framework would refuse. ZeRO-3 with pp > 1 is modelled as the framework runs it
(``reshard_under_pp``): re-gathered every micro-batch, or kept gathered with unsharded
gradients for the step (torchtitan's FSDP2 under torch.distributed.pipelining), whose numbers
are those of ZeRO-1 (``training.effective_zero_stage``).
Cells that break a rule or do not fit in memory with the requested headroom are masked out
afterwards. The ranking is by step time (then memory); plans the model cannot tell apart (same
numeric plan, same step time and memory, e.g. selective recompute vs none with
FlashAttention) are shown once, the simplest choice first, the others listed as equivalent.

The search reads from a scenario its model, system, workload (``training``: sequence length,
global batch, precision, optimizer, ...) and framework settings of ``parallelism`` that are
not plan dimensions (``STACK_FIELDS``: rank placement, overlap switches, bucket size); it
ignores the scenario's plan (tp, pp, dp, cp, ep, etp, vp, sequence_parallel, zero_stage,
schedule, uneven_pipeline, reshard_after_forward, micro_batch, recompute). The scenario's
``training.recompute_modules`` is applied, not ignored: it says what the searched *selective*
recompute re-runs (Megatron-Core recompute_modules; absent = its default [core_attn]); the
``none`` and ``full`` plans carry no modules (``recompute_modules_for``).

Each listed plan is then predicted on its own through ``perfmodel.predict`` (``with_bands``):
that gives its 80 % bands (docs/uncertainty.md, as plan-training's rows) and checks that the
search and predict agree to 1e-9.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from . import frameworks_costs as FC
from .errors import SpecError
from .memory import capacity_basis, memory_capacity_bytes
from .plan import (
    TrainPlan,
    a2a_overlap_cells,
    stage_3_reshards_under_pp,
    training_rules,
    valid_mask,
)
from .profile import CalibrationProfile
from .specs.model import ModelSpec
from .specs.scenario import Parallelism, Scenario
from .specs.system import System
from .training import flops_utilization, training_step

AXES = ("gpus", "tp", "pp", "cp", "ep", "vp", "micro_batch")
# the sweep's mesh in memory order, innermost last ("gpus": the GPU-count axis, dp or gpus):
# numpy's broadcast loops run along the last axes, so the longest ones (dp: ~10 values after
# the rules' drop, pp, tp) come last and ep, vp, micro-batch first; against AXES' own order
# ~8.5 % fewer instructions for plan-training llama-3-70b on H100 (callgrind). The
# choices hold their cells in AXES order (``_canonical``).
MESH_ORDER = ("ep", "vp", "micro_batch", "cp", "tp", "pp", "gpus")
_TO_AXES = tuple(MESH_ORDER.index(a) for a in AXES)  # the mesh dimension of each AXES entry
NUMERIC = ("tp", "pp", "cp", "dp", "ep", "vp", "micro_batch")
STACK_FIELDS = ("placement", "overlap_grad_reduce", "overlap_param_gather", "tp_comm_overlap",
                "dp_bucket_params")
DEFAULT_HEADROOM = 0.05  # fraction of device memory a plan must leave free


@dataclass(frozen=True)
class SearchSpace:
    """Values tried per plan dimension. Categorical tuples are in order of preference: among
    plans the model cannot tell apart, the earlier choice is kept."""

    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    cp: tuple[int, ...] = (1, 2, 4, 8)
    vp: tuple[int, ...] = (1, 2, 4)
    micro_batch: tuple[int, ...] = (1, 2, 4, 8)
    ep: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    recompute: tuple[str, ...] = ("none", "selective", "full")
    sequence_parallel: tuple[bool, ...] = (False, True)
    zero_stage: tuple[int, ...] = (0, 1, 2, 3)

    def choices(self) -> list[tuple[str, bool, int]]:
        return list(itertools.product(self.recompute, self.sequence_parallel, self.zero_stage))


@dataclass(repr=False, eq=False)  # holds arrays: no generated ==, repr (issue 10)
class Choice:
    """One categorical choice evaluated over its (rule-filtered) mesh."""

    recompute: str
    sequence_parallel: bool
    zero_stage: int
    axes: dict[str, np.ndarray]  # 1-D values kept per axis
    step: np.ndarray  # mesh-shaped, inf where not ok
    memory: np.ndarray
    ok: np.ndarray  # valid and fits
    valid: np.ndarray | None = None  # passes the plan rules (shared by the choices of one SP)


@dataclass(repr=False, eq=False)  # holds arrays: no generated ==, repr (issue 10)
class Sweep:
    """All choices of one model on one device; counts of the search work done."""

    model: ModelSpec
    system: System
    profile: CalibrationProfile
    base: TrainPlan
    headroom: float
    choices: list[Choice]
    # Two units (issue 10): whole plans -- a mesh cell whose tp x pp x cp x dp is one of the
    # GPU counts with a whole dp >= 1, times the categorical choices -- and mesh cells, which
    # also hold products off the counts (the dp axis of several counts is shared) or with a
    # fractional dp (one count): modelled with the rest, never a plan, so cells can outnumber
    # the plans searched.
    considered: int = 0  # whole plans of the space, before the rules (the plans searched)
    plans_modelled: int = 0  # whole plans the model evaluated (left after the rules' drop)
    modelled: int = 0  # mesh cells the model evaluated, plans or not
    valid: int = 0  # whole plans passing the plan rules
    fitting: int = 0  # ... that also fit with the headroom
    model_calls: int = 0  # training_step calls the sweep made
    # model FLOPs per step by (micro-batch, recompute): the records' MFU (``_model_flops``)
    flops: dict[tuple[int, str], float] = field(default_factory=dict, repr=False)


@dataclass
class SearchResult:
    plans: list[dict]  # best first, distinct
    evaluated: int  # whole plans of the space considered (``Sweep.considered``)
    valid: int
    fitting: int
    modelled: int = 0  # mesh cells modelled, plans or not (``Sweep.modelled``)
    plans_modelled: int = 0  # whole plans among them (``Sweep.plans_modelled``)
    duplicates_removed: int = 0
    headroom: float = DEFAULT_HEADROOM
    explanation: dict | None = None  # why #1 wins, or (no plan) why nothing fits
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"evaluated": self.evaluated, "modelled": self.modelled,
                "plans_modelled": self.plans_modelled, "valid": self.valid,
                "fitting": self.fitting, "duplicates_removed": self.duplicates_removed,
                "headroom": self.headroom, "plans": self.plans,
                "explanation": self.explanation, "warnings": self.warnings}


def base_plan(sc: Scenario) -> TrainPlan:
    """The scenario's workload and framework settings with no parallel plan of its own."""
    if sc.training is None:
        raise SpecError("search ranks training plans: the scenario needs a training: section")
    kept = Parallelism(**{f: getattr(sc.parallelism, f) for f in STACK_FIELDS})
    return TrainPlan.from_scenario(sc.model_copy(update={"parallelism": kept}))


def _column(values: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * len(AXES)
    shape[axis] = len(values)
    return np.asarray(values, float).reshape(shape)


def _columns(axes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Broadcastable columns of the mesh, with dp (gpus layout) or gpus (dp layout)
    derived from the first axis: tp * pp * cp * dp = gpus."""
    c = {name: _column(values, i) for i, (name, values) in enumerate(axes.items())}
    mp = c["tp"] * c["pp"] * c["cp"]
    if "gpus" in c:
        c["dp"] = c["gpus"] / mp
    else:
        c["gpus"] = c["dp"] * mp
    return c


def recompute_modules_for(base: TrainPlan, recompute: str) -> tuple[str, ...] | None:
    """The scenario's recompute_modules for a searched plan: they define the selective policy
    (Megatron-Core reads recompute_modules only with recompute_granularity: selective,
    transformer_config.py), so ``none`` and ``full`` plans carry none (``plan.training_rules``
    refuses modules with another policy)."""
    return base.recompute_modules if recompute == "selective" else None


def _mesh_plan(base: TrainPlan, axes: dict[str, np.ndarray], recompute: str, sp: bool,
               zero) -> TrainPlan:
    c = _columns(axes)
    plan = replace(base, tp=c["tp"], pp=c["pp"], cp=c["cp"], dp=c["dp"], ep=c["ep"], etp=c["tp"],
                   vp=c["vp"], micro_batch=c["micro_batch"], recompute=recompute,
                   recompute_modules=recompute_modules_for(base, recompute),
                   sequence_parallel=sp, zero_stage=zero, schedule="interleaved",
                   moe_a2a_overlap=False,
                   uneven_pp=True,  # equals the even split wherever pp*vp divides the layers
                   # ZeRO-3 cells with pp > 1 of a framework that keeps FSDP unsharded under PP
                   # take ZeRO-1's numbers (``_unsharded_under_pp``)
                   reshard_after_forward=True)
    # the framework's EP all-to-all overlap wherever its rules let it run
    return replace(plan, moe_a2a_overlap=a2a_overlap_cells(plan))


def _rules_mask(model: ModelSpec, plan: TrainPlan) -> np.ndarray:
    # every rule but the GPU-count ones (the gpus axis defines dp, so tp*pp*dp*cp = gpus) and
    # the framework's per-stage capabilities (``_capability_mask``)
    rules = [r for r in training_rules(model, 1) if r.field != "parallelism" and not r.per_stage]
    with np.errstate(all="ignore"):
        return valid_mask(rules, plan)


def _capability_mask(model: ModelSpec, plan: TrainPlan) -> np.ndarray:
    """The framework's capability rules on the mesh, for the plan's ZeRO stage (a scalar, or
    the stacked stage axis: then one mask per stage)."""
    rules = [r for r in training_rules(model, 1) if r.per_stage]
    with np.errstate(all="ignore"):
        return valid_mask(rules, plan)


def offered_stages(base: TrainPlan, space: SearchSpace) -> tuple[int, ...]:
    """The space's ZeRO stages that the framework offers (frameworks/<id>.yaml
    ``capabilities.zero_stages``), in the space's order."""
    return tuple(z for z in space.zero_stage
                 if z in base.framework.spec.capabilities.zero_stages)


def _unsharded_under_pp(base: TrainPlan) -> bool:
    """The framework's ZeRO-3 keeps parameters gathered and gradients unsharded for the step
    under pipeline parallelism (capabilities ``reshard_under_pp: false``)."""
    return not stage_3_reshards_under_pp(base.framework)


def _drop_empty(axes: dict[str, np.ndarray], mask: np.ndarray
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Drop every axis value whose slice of the mask holds no valid cell."""
    kept = {}
    for i, name in enumerate(axes):
        other = tuple(j for j in range(len(axes)) if j != i)
        keep = np.any(mask, axis=other) if mask.ndim else np.array([bool(mask)])
        kept[name] = axes[name][keep]
        mask = np.compress(keep, mask, axis=i)
    return kept, mask


def _real_plans(axes: dict[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """Cells that are plans at all: a whole dp >= 1 on one of the GPU counts."""
    c = _columns(axes)
    with np.errstate(all="ignore"):
        return ((np.mod(c["dp"], 1) == 0) & (c["dp"] >= 1)
                & np.isin(c["gpus"], counts)).astype(bool)


def _filtered_axes(model: ModelSpec, base: TrainPlan, full: dict[str, np.ndarray], sp: bool,
                   counts: np.ndarray, stages: tuple[int, ...]
                   ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The mesh axes left after the rules, and the rule mask over them (None: nothing
    valid); a cell is kept when some stage of ``stages`` can run it (the per-stage masks are
    applied in ``sweep``)."""
    axes = full
    if sp:  # sequence parallelism needs tensor parallelism
        axes = {**full, "tp": full["tp"][full["tp"] > 1]}
        if not len(axes["tp"]):
            return axes, None
    shape = tuple(len(v) for v in axes.values())
    stage_axis = np.asarray(stages).reshape(-1, *[1] * len(AXES))
    any_stage = np.any(np.broadcast_to(_capability_mask(
        model, _mesh_plan(base, axes, "none", sp, stage_axis)), (len(stages), *shape)), axis=0)
    mask = np.broadcast_to(_rules_mask(model, _mesh_plan(base, axes, "none", sp, 0))
                           & _real_plans(axes, counts) & any_stage, shape)
    if not mask.any():
        return axes, None
    return _drop_empty(axes, mask)


def _first_axis(space: SearchSpace, counts: np.ndarray) -> dict[str, np.ndarray]:
    """One GPU count: a gpus axis (dp derived, every cell on that count). Several: a dp
    axis (gpus derived), whose cells are whole plans by construction and fall in a band of
    counts -- far fewer cells than gpus x tp x pp x cp, most of whose dp are fractions."""
    if len(counts) == 1:
        return {"gpus": counts}
    dps = {g / m for g in counts for m in itertools.product(space.tp, space.pp, space.cp)
           for m in (m[0] * m[1] * m[2],) if g % m == 0}
    return {"dp": np.asarray(sorted(dps), float)}


def sweep(model: ModelSpec, system: System, profile: CalibrationProfile, base: TrainPlan,
          space: SearchSpace, gpu_counts, headroom: float = DEFAULT_HEADROOM) -> Sweep:
    """Evaluate every plan of ``space`` on each GPU count of ``gpu_counts`` (one device)."""
    if not 0 <= headroom < 1:
        raise SpecError(f"headroom: {headroom:g} must be a fraction in [0, 1) of device memory")
    eps = space.ep if model.moe else (1,)
    counts = np.asarray(sorted(set(gpu_counts)), float)
    # the mesh in MESH_ORDER; the choices hold their cells in the order of AXES
    # (``_canonical``), so the ranking and its tie-breaks read the cells as before
    (first, values), = _first_axis(space, counts).items()
    columns = {"gpus": values, "tp": space.tp, "pp": space.pp, "cp": space.cp, "ep": eps,
               "vp": space.vp, "micro_batch": space.micro_batch}
    full = {(first if a == "gpus" else a): np.asarray(columns[a], float) for a in MESH_ORDER}
    size = int(np.broadcast_to(_real_plans(full, counts),
                               tuple(len(v) for v in full.values())).sum())
    limit = (1.0 - headroom) * memory_capacity_bytes(system.device)
    out = Sweep(model, system, profile, base, headroom, [])
    offered = offered_stages(base, space)  # the framework's stages only: no other is tried
    if not offered:
        return out
    filtered: dict[bool, tuple] = {}  # per SP: the axes and rule mask (any offered stage)
    # the ZeRO stages as a leading array axis of one call (choices' order is unchanged)
    stacked = FC.zero_stage_free(base.framework) and len(offered) > 1
    zeros = ([(np.asarray(offered).reshape(-1, *[1] * len(AXES)), offered)]
             if stacked else [(z, (z,)) for z in offered])
    unsharded = _unsharded_under_pp(base)
    # per SP and ZeRO choice: the rule mask and each stage's capability mask (the framework's
    # rules read the stage, tp, pp, cp, dp and vp, never the recompute policy)
    caps: dict[tuple[bool, int], np.ndarray | None] = {}
    memos: dict[bool, dict] = {}
    for recompute, sp in itertools.product(space.recompute, space.sequence_parallel):
        for zi, (zero, stages) in enumerate(zeros):
            out.considered += size * len(stages)
            if sp not in filtered:
                # the mesh of this SP value: its calls (recompute x ZeRO) share what reads
                # neither choice (training_step ``mesh_memo``)
                memos[sp] = {}
                kept, m = _filtered_axes(model, base, full, sp, counts, offered)
                real = 0 if m is None else int(np.broadcast_to(
                    _real_plans(kept, counts), m.shape).sum())
                filtered[sp] = (kept, m, real, _canonical_axes(kept))
            axes, mask, real, canonical_axes = filtered[sp]
            if mask is None:
                continue
            plan = _mesh_plan(base, axes, recompute, sp, zero)
            shape = mask.shape
            lead = (len(stages),) if stacked else ()
            # each stage's own cells: the rules, and what the framework runs at that stage
            if (sp, zi) not in caps:
                masks = mask & np.broadcast_to(_capability_mask(model, plan), lead + shape)
                caps[sp, zi] = (masks, _canonical(masks)) if masks.any() else None
            if caps[sp, zi] is None:
                continue
            masks, kept_masks = caps[sp, zi]
            with np.errstate(all="ignore"):
                r = training_step(model, system, plan, profile, breakdown=False,
                                  mesh_memo=memos[sp])
            out.model_calls += 1
            steps = np.broadcast_to(r.step_time, lead + shape)
            memories = np.broadcast_to(r.memory_total, lead + shape)
            if unsharded and 3 in stages:
                steps, memories = _unsharded_cells(out, model, system, profile, base, axes,
                                                   recompute, sp, stages, steps, memories,
                                                   memos[sp])
            for i, stage in enumerate(stages):
                step, memory = (steps[i], memories[i]) if stacked else (steps, memories)
                stage_mask = masks[i] if stacked else masks
                ok = stage_mask & (memory <= limit) & np.isfinite(step)
                out.modelled += mask.size
                out.plans_modelled += real
                out.valid += int(stage_mask.sum())
                out.fitting += int(ok.sum())
                out.choices.append(Choice(
                    recompute, sp, stage, canonical_axes,
                    _canonical(np.where(ok, step, np.inf)), _canonical(memory),
                    _canonical(ok), kept_masks[i] if stacked else kept_masks))
    return out


def _canonical(cells: np.ndarray) -> np.ndarray:
    """Mesh cells of ``sweep`` (MESH_ORDER, after any leading stage axis) as a view in the
    order of AXES, the layout a Choice holds."""
    lead = cells.ndim - len(AXES)
    return cells.transpose(*range(lead), *(lead + i for i in _TO_AXES))


def _canonical_axes(axes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``sweep``'s axes (MESH_ORDER) in the order of AXES, as ``_canonical`` lays out the
    cells."""
    names = list(axes)
    return {names[i]: axes[names[i]] for i in _TO_AXES}


def _unsharded_cells(out: Sweep, model: ModelSpec, system: System,
                     profile: CalibrationProfile, base: TrainPlan, axes: dict[str, np.ndarray],
                     recompute: str, sp: bool, stages: tuple[int, ...], steps: np.ndarray,
                     memories: np.ndarray, mesh_memo: dict | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """ZeRO-3's cells with pp > 1 of a framework that keeps parameters gathered and gradients
    unsharded for the step under pipeline parallelism (``reshard_under_pp: false``): the
    numbers of ZeRO-1 (``training.effective_zero_stage``, one more model call), as
    ``perfmodel.predict`` gives them for the scenario."""
    plan = _mesh_plan(base, axes, recompute, sp, 1)
    with np.errstate(all="ignore"):
        r1 = training_step(model, system, plan, profile, breakdown=False, mesh_memo=mesh_memo)
    out.model_calls += 1
    shape = steps.shape[-len(AXES):]
    piped = np.broadcast_to(_columns(axes)["pp"] > 1, shape)
    i = stages.index(3)
    stacked = steps.ndim > len(AXES)
    steps, memories = np.array(steps), np.array(memories)
    step1 = np.broadcast_to(r1.step_time, shape)
    mem1 = np.broadcast_to(r1.memory_total, shape)
    if stacked:
        steps[i] = np.where(piped, step1, steps[i])
        memories[i] = np.where(piped, mem1, memories[i])
    else:
        steps = np.where(piped, step1, steps)
        memories = np.where(piped, mem1, memories)
    return steps, memories


def _record(sw: Sweep, ci: int, flat: int) -> dict:
    """The plan at cell ``flat`` of choice ``ci`` as a plain dict (top plans only)."""
    c = sw.choices[ci]
    idx = np.unravel_index(flat, c.step.shape)
    v = {name: int(c.axes[name][i]) for name, i in zip(c.axes, idx, strict=True)}
    mp = v["tp"] * v["pp"] * v["cp"]
    gpus = v.pop("gpus") if "gpus" in v else v["dp"] * mp
    dp = gpus // mp
    step, memory = float(c.step[idx]), float(c.memory[idx])
    tokens = sw.base.global_batch * sw.base.seq_len
    modules = recompute_modules_for(sw.base, c.recompute)
    return {
        "gpus": gpus, "tp": v["tp"], "pp": v["pp"], "cp": v["cp"], "dp": dp, "ep": v["ep"],
        "vp": v["vp"], "micro_batch": v["micro_batch"],
        "sequence_parallel": c.sequence_parallel, "recompute": c.recompute,
        "recompute_modules": list(modules) if modules else None,
        "zero_stage": c.zero_stage,
        "schedule": "interleaved" if v["vp"] > 1 else "1f1b",
        "moe_a2a_overlap": bool(a2a_overlap_cells(replace(
            sw.base, ep=v["ep"], pp=v["pp"], vp=v["vp"], recompute=c.recompute,
            schedule="interleaved"))),
        "uneven_pipeline": bool(sw.model.num_layers % (v["pp"] * v["vp"])),
        "reshard_after_forward": (None if c.zero_stage != 3 else v["pp"] == 1
                                  or stage_3_reshards_under_pp(sw.base.framework)),
        "step_time_s": step, "memory_per_gpu_bytes": memory,
        "memory_headroom": 1.0 - memory / memory_capacity_bytes(sw.system.device),
        "tokens_per_s": float(tokens / step),
        "mfu": float(flops_utilization(_model_flops(sw, v["micro_batch"], c.recompute), step,
                                       gpus, sw.system.device.peak_flops(sw.base.precision))),
        "equivalent": [],
    }


def _model_flops(sw: Sweep, micro_batch: int, recompute: str) -> float:
    """Model FLOPs per step of the sweep's workload at ``micro_batch`` and ``recompute``: the
    only plan fields they read besides the workload's, so the records of one sweep share
    them (most rows: one or two values)."""
    from .training import model_flops_per_step

    key = (micro_batch, recompute)
    if key not in sw.flops:
        plan = replace(sw.base, micro_batch=micro_batch, recompute=recompute)
        sw.flops[key] = float(model_flops_per_step(sw.model, plan)[0])
    return sw.flops[key]


def _same(a: dict, b: dict) -> bool:
    keys = ("gpus", "tp", "pp", "cp", "ep", "vp", "micro_batch", "sequence_parallel")
    return (all(a[k] == b[k] for k in keys)
            and abs(a["step_time_s"] - b["step_time_s"]) <= 1e-12 * a["step_time_s"]
            and abs(a["memory_per_gpu_bytes"] - b["memory_per_gpu_bytes"]) <= 1.0)


def ranked(sw: Sweep, top: int) -> tuple[list[dict], int]:
    """The ``top`` best distinct plans (step time, then memory, then choice order) and how
    many modelled-identical duplicates were folded into them."""
    steps, mems, choice, cell = [], [], [], []
    for ci, c in enumerate(sw.choices):
        flat = np.flatnonzero(c.ok)
        steps.append(c.step.ravel()[flat])
        mems.append(c.memory.ravel()[flat])
        choice.append(np.full(flat.size, ci))
        cell.append(flat)
    if not steps:
        return [], 0
    steps, mems = np.concatenate(steps), np.concatenate(mems)
    choice, cell = np.concatenate(choice), np.concatenate(cell)
    # enough candidates for `top` distinct ones: each plan has at most len(choices) twins
    want = min(steps.size, max(top, 1) * (len(sw.choices) + 1))
    part = np.argpartition(steps, want - 1)[:want] if want < steps.size else np.arange(steps.size)
    order = part[np.lexsort((choice[part], mems[part], steps[part]))]
    plans: list[dict] = []
    folded = 0
    for k in order:
        rec = _record(sw, int(choice[k]), int(cell[k]))
        twin = next((p for p in plans if _same(p, rec)), None)
        if twin is not None:
            twin["equivalent"].append(f"recompute {rec['recompute']}, zero {rec['zero_stage']}")
            folded += 1
            continue
        if len(plans) < top:
            plans.append(rec)
    return plans, folded


def best_per_gpu_count(sw: Sweep) -> list[dict]:
    """The fastest fitting plan at every GPU count that has one, fewest GPUs first (ties:
    less memory, then the earlier categorical choice, then the earlier mesh cell)."""
    best: dict[float, tuple[float, float, int, int]] = {}
    meshes: dict[int, list[int]] = {}  # choices per mesh (those of one SP value share it)
    for ci, c in enumerate(sw.choices):
        meshes.setdefault(id(c.axes), []).append(ci)
    for members in meshes.values():
        # the mesh's choices as rows of one array, so each step below is one numpy call for
        # all of them instead of one per choice (the same comparisons, so the same winner)
        first = sw.choices[members[0]]
        gpus = np.broadcast_to(_columns(first.axes)["gpus"], first.step.shape).ravel()
        order = np.argsort(gpus, kind="stable")
        starts = np.flatnonzero(np.diff(gpus[order], prepend=-1.0))
        segment = np.repeat(np.arange(starts.size), np.diff(starts, append=order.size))
        # inf where the plan breaks a rule or does not fit; cells by count
        by_count = np.stack([sw.choices[ci].step.ravel() for ci in members])[:, order]
        # only the cells at their count's fastest step time (over the mesh's choices) can win
        fastest = np.minimum.reduceat(by_count, starts, axis=1).min(axis=0)[segment]
        rows, pos = np.nonzero((by_count == fastest) & np.isfinite(by_count))
        if not rows.size:
            continue
        cells = order[pos]
        ci = np.asarray(members)[rows]
        mem = np.empty(cells.size)
        for r in sorted(set(rows.tolist())):  # the few choices holding a candidate
            c, here = sw.choices[members[r]], rows == r
            mem[here] = c.memory[np.unravel_index(cells[here], c.memory.shape)]
        g, st = gpus[cells], by_count[rows, pos]
        pick = np.lexsort((cells, ci, mem, g))  # by count, then memory, choice, cell
        counts, at = np.unique(g[pick], return_index=True)
        for count, k in zip(counts, pick[at], strict=True):
            key = (float(st[k]), float(mem[k]), int(ci[k]), int(cells[k]))
            if count not in best or key < best[count]:
                best[count] = key
    return [_record(sw, ci, cell) for _, (_, _, ci, cell) in sorted(best.items())]


def scalar_plan(base: TrainPlan, rec: dict) -> TrainPlan:
    """A plan record of the search as a scalar TrainPlan (same numbers as predict)."""
    return replace(base, tp=rec["tp"], pp=rec["pp"], cp=rec["cp"], dp=rec["dp"], ep=rec["ep"],
                   etp=rec["tp"], vp=rec["vp"], micro_batch=rec["micro_batch"],
                   recompute=rec["recompute"],
                   recompute_modules=recompute_modules_for(base, rec["recompute"]),
                   sequence_parallel=rec["sequence_parallel"],
                   zero_stage=rec["zero_stage"], schedule=rec["schedule"],
                   moe_a2a_overlap=rec.get("moe_a2a_overlap", False),
                   uneven_pp=rec["uneven_pipeline"],
                   reshard_after_forward=rec["reshard_after_forward"] is not False)


def scenario_for(sc: Scenario, rec: dict) -> Scenario:
    """``sc`` with the plan of a search record, ready for ``perfmodel.predict``."""
    par = sc.parallelism.model_dump()
    par.update(tp=rec["tp"], pp=rec["pp"], cp=rec["cp"], dp=rec["dp"], ep=rec["ep"], etp=None,
               vp=rec["vp"], sequence_parallel=rec["sequence_parallel"],
               zero_stage=rec["zero_stage"], schedule=rec["schedule"],
               moe_a2a_overlap=rec.get("moe_a2a_overlap", False),
               uneven_pipeline=rec["uneven_pipeline"],
               reshard_after_forward=rec["reshard_after_forward"])
    system = sc.system.model_copy(update={"num_gpus": rec["gpus"]})
    modules = sc.training.recompute_modules if rec["recompute"] == "selective" else None
    training = sc.training.model_copy(update={"micro_batch": rec["micro_batch"],
                                              "recompute": rec["recompute"],
                                              "recompute_modules": modules})
    return sc.model_copy(update={"parallelism": Parallelism(**par), "system": system,
                                 "training": training})


def bound_terms(sw: Sweep, recs: list[dict], n: int = 3) -> list[list[dict]]:
    """Per plan, the largest terms of its step-time breakdown (they add up to the step);
    plans of one categorical choice are evaluated together, as flat rows."""
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(recs):
        groups.setdefault((rec["recompute"], rec["sequence_parallel"], rec["zero_stage"],
                           rec["reshard_after_forward"]), []).append(i)
    out: list[list[dict]] = [[] for _ in recs]
    for idx in groups.values():
        rows = {k: np.array([float(recs[i][k]) for i in idx])
                for k in ("tp", "pp", "cp", "dp", "ep", "vp", "micro_batch")}
        plan = replace(scalar_plan(sw.base, recs[idx[0]]), **rows, etp=rows["tp"],
                       uneven_pp=True, schedule="interleaved")
        with np.errstate(all="ignore"):
            time_parts = training_step(sw.model, sw.system, plan, sw.profile).time
        for j, i in enumerate(idx):
            parts = {k: float(np.broadcast_to(v, (len(idx),))[j]) for k, v in time_parts.items()}
            step = sum(parts.values())
            top = sorted(parts.items(), key=lambda kv: -kv[1])[:n]
            out[i] = [{"term": k, "seconds": v, "share": v / step} for k, v in top if v > 0]
    return out


def _breakdown(sw: Sweep, rec: dict) -> dict[str, float]:
    r = training_step(sw.model, sw.system, scalar_plan(sw.base, rec), sw.profile)
    return {k: float(v) for k, v in r.time.items()}


def explain_winner(sw: Sweep, plans: list[dict]) -> dict | None:
    """Why the top plan wins: its largest breakdown terms, and the terms where it differs
    most from the runner-up (the next distinct plan)."""
    if not plans:
        return None
    best = plans[0]
    parts = _breakdown(sw, best)
    step = sum(parts.values())
    out = {"bound_by": [{"term": k, "seconds": v, "share": v / step}
                        for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:3] if v > 0],
           "memory_headroom": best["memory_headroom"], "runner_up": None}
    if len(plans) > 1:
        other = _breakdown(sw, plans[1])
        diffs = sorted(((k, parts[k] - other.get(k, 0.0)) for k in parts),
                       key=lambda kv: -abs(kv[1]))
        out["runner_up"] = {
            "plan": describe(plans[1]),
            "margin": plans[1]["step_time_s"] / best["step_time_s"] - 1.0,
            "differences": [{"term": k, "best_s": parts[k], "runner_up_s": other.get(k, 0.0),
                             "delta_s": d} for k, d in diffs[:3] if d != 0],
        }
    return out


def describe(rec: dict) -> str:
    """A plan in one short line: tp4 pp8 vp2 cp2 dp32 mb1 sp zero1 rc:selective."""
    parts = [f"tp{rec['tp']}", f"pp{rec['pp']}"]
    if rec["vp"] > 1:
        parts.append(f"vp{rec['vp']}")
    if rec["cp"] > 1:
        parts.append(f"cp{rec['cp']}")
    if rec["ep"] > 1:
        parts.append(f"ep{rec['ep']}")
    parts += [f"dp{rec['dp']}", f"mb{rec['micro_batch']}"]
    if rec["sequence_parallel"]:
        parts.append("sp")
    parts.append(f"zero{rec['zero_stage']}")
    parts.append(f"rc:{rec['recompute']}")
    if rec.get("moe_a2a_overlap"):
        parts.append("a2a-overlap")
    if rec["uneven_pipeline"]:
        parts.append("uneven")
    return " ".join(parts)


def layer_split(num_layers: int, pp: int, vp: int) -> str:
    """Layers per pipeline chunk (pp x vp chunks): "10" when even; "8x14+7x2" (14 chunks of
    8, 2 of 7) for the uneven split the search models (layers spread as evenly as possible,
    ``pipeline.layers_on_largest_stage``; scenario field ``uneven_pipeline: true``)."""
    chunks = pp * vp
    q, r = divmod(num_layers, chunks)
    if not r:
        return str(q)
    return f"{q + 1}x{r}+{q}x{chunks - r}" if q else f"1x{r}+0x{chunks - r}"


def scenario_fields(rec: dict) -> dict:
    """The scenario fields that reproduce a plan record with ``perfmodel predict`` (the rest
    of the scenario unchanged): copy them over the searched scenario's."""
    par = {k: rec[k] for k in ("tp", "pp", "vp", "cp", "dp")}
    if rec["ep"] > 1:
        par["ep"] = rec["ep"]
    par.update(sequence_parallel=rec["sequence_parallel"], zero_stage=rec["zero_stage"],
               schedule=rec["schedule"])
    if rec["ep"] > 1 or rec.get("moe_a2a_overlap"):
        par["moe_a2a_overlap"] = bool(rec.get("moe_a2a_overlap", False))
    if rec["uneven_pipeline"]:
        par["uneven_pipeline"] = True
    if rec["reshard_after_forward"] is not None:
        par["reshard_after_forward"] = rec["reshard_after_forward"]
    training = {"micro_batch": rec["micro_batch"], "recompute": rec["recompute"]}
    if rec.get("recompute_modules"):
        training["recompute_modules"] = rec["recompute_modules"]
    return {"system": {"num_gpus": rec["gpus"]}, "parallelism": par, "training": training}


def _flow(d: dict) -> str:
    """A mapping in YAML flow style (what a scenario file accepts)."""
    def one(v):
        if isinstance(v, dict):
            return _flow(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(map(str, v)) + "]"
        return str(v)
    return "{" + ", ".join(f"{k}: {one(v)}" for k, v in d.items()) + "}"


def reproduce_line(rec: dict) -> str:
    """One line: the scenario fields that make ``perfmodel predict`` give this plan."""
    f = scenario_fields(rec)
    return ("system: " + _flow(f["system"]) + "; parallelism: " + _flow(f["parallelism"])
            + "; training: " + _flow(f["training"]))


GIB = 2 ** 30


def explain_nothing_fits(sw: Sweep) -> dict | None:
    """Why no plan is listed: the plan with the least memory per GPU among those that pass the
    rules, against the memory a plan may use, and what would change it; or, when no plan passes
    the rules at all, the rules a plain data-parallel plan breaks."""
    if sw.fitting:
        return None
    capacity = memory_capacity_bytes(sw.system.device)  # as the driver reports it
    available = (1.0 - sw.headroom) * capacity
    best = None
    for ci, c in enumerate(sw.choices):
        if c.valid is None or not c.valid.any():
            continue
        mem = np.where(c.valid & np.isfinite(c.memory), c.memory, np.inf)
        flat = int(np.argmin(mem))
        if np.isfinite(mem.ravel()[flat]) and (best is None or mem.ravel()[flat] < best[0]):
            best = (float(mem.ravel()[flat]), ci, flat)
    gpus = int(sw.system.num_gpus)
    if best is None:
        plain = replace(sw.base, tp=1, pp=1, cp=1, dp=gpus, ep=1, etp=1, vp=1, micro_batch=1,
                        recompute="none", recompute_modules=None, sequence_parallel=False,
                        zero_stage=0)
        broken = [r.message(plain) for r in training_rules(sw.model, gpus)
                  if not np.all(r.ok(plain))]
        return {"nothing_fits": {"reason": "no plan of the search space passes the plan rules",
                                 "rules_broken_by_pure_data_parallelism": broken},
                "message": ("no plan of the search space passes the plan rules on "
                            f"{gpus} GPUs" + (f" (e.g. tp1 pp1 dp{gpus}: {broken[0]})"
                                              if broken else ""))}
    need, ci, flat = best
    rec = _record(sw, ci, flat)
    parts = training_step(sw.model, sw.system, scalar_plan(sw.base, rec), sw.profile).memory
    parts = {k: float(v) for k, v in parts.items()}
    largest = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
    ratio = need / available
    activations = parts.get("activations", 0.0) / need
    advice = [f"about {ratio:.1f}x the GPUs (the model state sharded over more ZeRO / "
              "pipeline ranks) or a device with more memory",
              "a shorter seq_len (activations are "
              f"{100 * activations:.0f} % of it)" if activations > 0.25 else None,
              f"a smaller --headroom (now {100 * sw.headroom:g} %)"
              if sw.headroom and need <= capacity else None]
    advice = [a for a in advice if a]
    message = (f"no plan fits: the smallest needs {need / GIB:.1f} GiB per GPU "
               f"({describe(rec)}: " + ", ".join(f"{k} {v / GIB:.1f}" for k, v in largest)
               + f" GiB), {available / GIB:.1f} GiB available ({capacity / GIB:.2f} GiB "
               f"{capacity_basis(sw.system.device)}, less {100 * sw.headroom:g} % headroom); try " + "; ".join(advice))
    return {"nothing_fits": {"smallest_plan": describe(rec), "needs_bytes": need,
                             "available_bytes": available, "largest_parts": dict(largest),
                             "advice": advice},
            "message": message}


RANGE_FIELDS = ("step_time_s", "tokens_per_s", "mfu", "memory_per_gpu_bytes")


def with_bands(sc: Scenario, profile: CalibrationProfile, plans: list[dict]) -> list[str]:
    """Each listed plan predicted on its own through ``perfmodel.predict`` (a few ms each),
    which gives its 80 % bands (``ranges``: field -> [lo, hi], and ``range_basis``; the same
    bands as ``predict`` and plan-training's rows, docs/uncertainty.md). Returns warnings where
    predict and the search disagree beyond 1e-9 (they should not: one model, one code path)."""
    from .api import predict

    warnings = []
    for rec in plans:
        pred = predict(scenario_for(sc, rec), calibration=profile)
        rec["ranges"] = {k: v for k, v in (pred.ranges or {}).items() if k in RANGE_FIELDS}
        rec["range_basis"] = {k: v for k, v in (pred.range_basis or {}).items()
                              if k in RANGE_FIELDS}
        rec["may_not_fit"] = may_not_fit(rec["ranges"], pred.memory_capacity_bytes)
        if abs(pred.step_time_s / rec["step_time_s"] - 1) > 1e-9:
            warnings.append(f"{describe(rec)}: predict gives {pred.step_time_s:.9g} s per step, "
                            f"the search {rec['step_time_s']:.9g}")
    return warnings


def may_not_fit(ranges: dict | None, capacity: float) -> bool:
    """Whether the 80 % band of the memory per GPU reaches past the device's memory: the plan
    fits on the point estimate (with the headroom) but may not on the device (docs/planning.md,
    "Memory headroom": the fit rule stays on the point estimate; such rows are flagged)."""
    band = (ranges or {}).get("memory_per_gpu_bytes")
    return bool(band and band[1] > capacity)


def _band(rec: dict, key: str, scale: float, fmt: str) -> str:
    lo_hi = (rec.get("ranges") or {}).get(key)
    return "-" if not lo_hi else "-".join(format(v * scale, fmt) for v in lo_hi)


def search_table(plans: list[dict]) -> tuple[list[tuple], tuple[str, ...]]:
    """(rows, header) of the CLI table: the plan (with its pipeline layer split; uneven ones
    marked), step time, tokens/s, MFU and memory, each with its 80 % band."""
    rows = [(i + 1, p["tp"], p["pp"], p["vp"], p["cp"], p["dp"], p["ep"], p["micro_batch"],
             "y" if p["sequence_parallel"] else "n", p["recompute"], p["zero_stage"],
             p.get("layer_split", "") + (" uneven" if p["uneven_pipeline"] else ""),
             f"{p['step_time_s']:.3f}", _band(p, "step_time_s", 1.0, ".2f"),
             f"{p['tokens_per_s'] / 1e3:.0f}", _band(p, "tokens_per_s", 1e-3, ".0f"),
             f"{100 * p['mfu']:.1f}", f"{p['memory_per_gpu_bytes'] / GIB:.1f}",
             _band(p, "memory_per_gpu_bytes", 1.0 / GIB, ".0f"),
             "may not fit" if p.get("may_not_fit") else "")
            for i, p in enumerate(plans)]
    return rows, ("#", "tp", "pp", "vp", "cp", "dp", "ep", "mb", "sp", "recompute", "zero",
                  "layers/chunk", "step s", "80 % band", "ktok/s", "80 % band", "MFU %",
                  "GiB/GPU", "80 % band", "memory band")


def explanation_lines(expl: dict | None) -> list[str]:
    """The explanation as text lines (CLI)."""
    if not expl:
        return []
    if "nothing_fits" in expl:
        return [expl["message"]]
    lines = ["why #1 wins: bound by " + ", ".join(
        f"{t['term']} {t['seconds']:.3g} s ({100 * t['share']:.0f} %)" for t in expl["bound_by"])
        + f"; memory headroom {100 * expl['memory_headroom']:.0f} %"]
    ru = expl.get("runner_up")
    if ru:
        lines.append(f"  vs #2 ({ru['plan']}, {100 * ru['margin']:.2f} % slower): " + ", ".join(
            f"{d['term']} {d['delta_s']:+.3g} s" for d in ru["differences"]))
    return lines


def search(sc: Scenario, system: System, profile: CalibrationProfile,
           space: SearchSpace | None = None, top: int = 10,
           headroom: float = DEFAULT_HEADROOM) -> SearchResult:
    """Rank every valid plan that fits (with ``headroom``) on the scenario's GPU count."""
    space = space or SearchSpace()
    sw = sweep(sc.model, system, profile, base_plan(sc), space, [system.num_gpus], headroom)
    plans, folded = ranked(sw, top)
    for rec in plans:
        rec["layer_split"] = layer_split(sw.model.num_layers, rec["pp"], rec["vp"])
        rec["scenario"] = scenario_fields(rec)
    warnings = with_bands(sc, profile, plans)
    return SearchResult(plans=plans, evaluated=sw.considered, valid=sw.valid,
                        fitting=sw.fitting, modelled=sw.modelled,
                        plans_modelled=sw.plans_modelled, duplicates_removed=folded,
                        headroom=headroom, warnings=warnings,
                        explanation=explain_winner(sw, plans) or explain_nothing_fits(sw))
