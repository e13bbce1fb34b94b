"""Power, sustained clocks and energy (issue 14 item 3; docs/modelling.md "Power, clocks and
energy"; facts in hardware_specs/power_capping.yaml with their sources).

Clock under a power cap. Dynamic power is C V^2 f (Weste & Harris, CMOS VLSI Design, eq. 5.10)
and in the DVFS range V rises with f, so a compute-bound kernel draws
P(f) = P_idle + (P_default - P_idle) (f / f_default)^a. Dense GEMMs run at the power limit
(the clock gives way), so under a cap P_cap the sustained clock is
f_cap / f_default = ((P_cap - P_idle) / (P_default - P_idle))^(1/a); the exponent a is fitted
to published GEMM-throughput-vs-cap measurements (``fit_exponent``), pooled over devices (one
exponent for all; the yaml holds a GB300 point and an RTX PRO 6000 Blackwell sweep and lists the
sources searched for more). The
HBM clock is not capped: memory-bound kernels keep their speed, so only the compute roof of the
roofline moves.

Energy of a step: each part of the timeline at its power: compute-bound operator time at the
power limit, memory-bound operator time and exposed communication at the measured draw of
memory-bound kernels (a fraction of TDP, capped by the limit), pipeline bubbles and other
waits at idle power; plus each node's power beyond its GPUs where a node maximum is sourced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from .errors import SpecError
from .paths import data_dir
from .specs.hardware import DeviceSpec

FACTS_FILE = "power_capping.yaml"


@dataclass(frozen=True)
class PowerFacts:
    """The sourced constants of hardware_specs/power_capping.yaml."""

    exponent: float  # P - P_idle ~ f^exponent for a compute-bound kernel
    compute_fraction_of_limit: float  # compute-bound kernels draw this x the power limit
    memory_fraction_of_tdp: float  # memory-bound kernels and collectives draw this x TDP
    idle_fraction_of_tdp: float  # idle board power when a device has no measured one
    node_overhead_w: dict[str, float]  # node id -> its power beyond its GPUs, W per GPU
    # the deepest cap the exponent was fitted on, as a fraction of its default limit: the
    # lowest limit accepted on a device with no sourced nvidia-smi Min Power Limit
    lowest_fitted_fraction: float = 0.0


def fit_exponent(points: Iterable[tuple[float, float]]) -> float:
    """Least-squares a (through the origin in log space) of ln x = a ln r over measured points
    (x = (P_cap - P_idle) / (P_default - P_idle), r = throughput at cap / at default): the
    exponent of P - P_idle ~ f^a. One point gives a = ln x / ln r."""
    pts = [(math.log(x), math.log(r)) for x, r in points]
    if not pts:
        raise SpecError(f"{FACTS_FILE}: clock_exponent.measurements is empty")
    return sum(lx * lr for lx, lr in pts) / sum(lr * lr for _, lr in pts)


def _measurement_point(m: dict) -> tuple[float, float]:
    """(x, r) of one GEMM-vs-cap record: r is the geometric mean of the reported range."""
    at_default = m["tflops_at_default"]
    lo, hi = (at_default, at_default) if isinstance(at_default, (int, float)) else at_default
    r = m["tflops_at_cap"] / math.sqrt(lo * hi)
    idle = m["idle_fraction_of_default"] * m["default_limit_w"]
    x = (m["cap_w"] - idle) / (m["default_limit_w"] - idle)
    return x, r


@cache
def power_facts() -> PowerFacts:
    """Read and fit hardware_specs/power_capping.yaml once."""
    from .specs.registry import read_mapping

    d = read_mapping(data_dir("hardware_specs") / FACTS_FILE)
    points = [_measurement_point(m) for m in d["clock_exponent"]["measurements"]]
    exponent = fit_exponent(points)
    low, high = d["clock_exponent"]["physics_bounds"]
    if not low <= exponent <= high:  # P_dyn ~ f (V at its floor) to f^3 (V ~ f)
        raise SpecError(f"{FACTS_FILE}: clock_exponent fitted to {exponent:.3g}, outside its "
                        f"physics_bounds [{low:g}, {high:g}]; check clock_exponent.measurements")
    return PowerFacts(
        exponent=exponent,
        compute_fraction_of_limit=float(d["compute_bound_power"]["fraction_of_limit"]),
        memory_fraction_of_tdp=float(d["memory_bound_power"]["fraction_of_default_limit"]),
        idle_fraction_of_tdp=float(d["idle_power"]["default_fraction_of_tdp"]),
        node_overhead_w={k: float(v["overhead_w"]) / float(v["gpus"])
                         for k, v in d["node_overhead"].items()},
        lowest_fitted_fraction=min(m["cap_w"] / m["default_limit_w"]
                                   for m in d["clock_exponent"]["measurements"]),
    )


def idle_power(device: DeviceSpec, facts: PowerFacts | None = None) -> float:
    """Measured idle board power, else the median measured idle fraction of TDP."""
    if device.idle_power_w:
        return float(device.idle_power_w)
    facts = facts or power_facts()
    return facts.idle_fraction_of_tdp * float(device.tdp_w or 0.0)


def limit_range(device: DeviceSpec, facts: PowerFacts | None = None) -> tuple[float, float]:
    """(lowest, highest) power limit the model accepts: nvidia-smi's Min / Max Power Limit
    where sourced. Without a sourced minimum, the deepest cap the clock model was fitted on
    (``PowerFacts.lowest_fitted_fraction`` x TDP, above idle power): below it the clock ratio
    would be extrapolated towards zero (a limit just above idle gives a clock ratio near 0)."""
    assert device.tdp_w is not None
    high = float(device.max_power_limit_w or device.tdp_w)
    if device.min_power_limit_w:
        return float(device.min_power_limit_w), high
    facts = facts or power_facts()
    low = max(idle_power(device, facts), facts.lowest_fitted_fraction * float(device.tdp_w))
    return low, high


def check_power_limit(device: DeviceSpec, limit_w: float | None) -> None:
    """One-line error for a power limit the device cannot be set to, or (without a sourced
    minimum) one below the deepest cap the power model was fitted on."""
    if limit_w is None:
        return
    if device.tdp_w is None:
        raise SpecError(f"system.power_limit_w: device {device.id!r} has no tdp_w in its spec, "
                        "so a power cap cannot be modelled; remove power_limit_w")
    low, high = limit_range(device)
    if limit_w < low:
        what = ("its nvidia-smi Min Power Limit" if device.min_power_limit_w else
                f"{power_facts().lowest_fitted_fraction:.1%} of its {float(device.tdp_w):g} W "
                f"TDP, the deepest cap the clock model was fitted on ({FACTS_FILE} "
                "clock_exponent); its minimum settable limit is not in the spec")
        raise SpecError(f"system.power_limit_w = {limit_w:g} W is below the lowest limit for "
                        f"device {device.id!r} ({low:g} W, {what}); valid: {low:g} to "
                        f"{high:g} W")
    if limit_w > high:
        raise SpecError(f"system.power_limit_w = {limit_w:g} W is above the highest limit of "
                        f"device {device.id!r} ({high:g} W); valid: {low:g} to {high:g} W")


def compute_clock_ratio(device: DeviceSpec, limit_w, facts: PowerFacts | None = None):
    """Sustained clock of a compute-bound kernel at ``limit_w`` over its clock at the default
    limit (TDP): ((P_cap - P_idle) / (TDP - P_idle))^(1/a), at most 1 (module docstring).
    1.0 exactly without a cap, so uncapped predictions are unchanged bit for bit. Works on
    arrays of limits."""
    if limit_w is None or device.tdp_w is None:
        return 1.0
    facts = facts or power_facts()
    idle = idle_power(device, facts)
    x = (np.asarray(limit_w, float) - idle) / (float(device.tdp_w) - idle)
    ratio = np.clip(x, 1e-12, 1.0) ** (1.0 / facts.exponent)
    return float(ratio) if np.ndim(ratio) == 0 else ratio


@dataclass(frozen=True)
class PhasePower:
    """Board power (W per GPU) of each kind of time on the timeline."""

    compute: float
    memory: float
    comm: float
    idle: float


def phase_power(device: DeviceSpec, limit_w: float | None,
                facts: PowerFacts | None = None) -> PhasePower | None:
    """Power per kind of time (module docstring); None without a TDP in the spec."""
    if device.tdp_w is None:
        return None
    facts = facts or power_facts()
    limit = float(limit_w if limit_w is not None else device.tdp_w)
    idle = idle_power(device, facts)
    memory = max(idle, min(limit, facts.memory_fraction_of_tdp * float(device.tdp_w)))
    return PhasePower(compute=facts.compute_fraction_of_limit * limit, memory=memory,
                      comm=memory, idle=idle)


@dataclass(frozen=True)
class Timeline:
    """Seconds of one GPU's timeline by kind (they add up to the period)."""

    compute: float  # compute-bound operators
    memory: float  # memory-bound operators
    comm: float  # exposed communication
    idle: float  # pipeline bubbles, waits

    @property
    def total(self) -> float:
        return self.compute + self.memory + self.comm + self.idle


def split_operator_time(op_time: float, bounds: Iterable[tuple[str, float]]) -> tuple[float, float]:
    """(compute-bound, memory-bound) seconds of ``op_time``, shared as the operator reports'
    bound time ((bound, total_s) pairs) is shared."""
    c = m = 0.0
    for bound, t in bounds:
        if bound == "compute":
            c += t
        else:
            m += t
    share = c / (c + m) if c + m > 0 else 0.0
    return op_time * share, op_time * (1.0 - share)


def gpu_energy(timeline: Timeline, power: PhasePower) -> float:
    """Joules one GPU draws over ``timeline``: sum of time x power per kind."""
    return (timeline.compute * power.compute + timeline.memory * power.memory
            + timeline.comm * power.comm + timeline.idle * power.idle)


def node_overhead(node_id: str | None, facts: PowerFacts | None = None) -> float | None:
    """A node's power beyond its GPUs, per GPU of the node (sourced nodes only), else None:
    a scenario on part of a node is charged its GPUs' share."""
    facts = facts or power_facts()
    return facts.node_overhead_w.get(node_id) if node_id else None


def energy_report(device: DeviceSpec, limit_w: float | None, timeline: Timeline,
                  num_gpus: int, node_id: str | None, tokens: float,
                  facts: PowerFacts | None = None) -> dict | None:
    """Energy of one period (a training step, an inference request) of the whole system:
    GPUs x (per-GPU energy + the node overhead's per-GPU share x period); per token; average
    GPU power.
    None when the device has no TDP in its spec."""
    facts = facts or power_facts()
    power = phase_power(device, limit_w, facts)
    if power is None or timeline.total <= 0:
        return None
    per_gpu = gpu_energy(timeline, power)
    overhead_w = node_overhead(node_id, facts)
    overhead_j = (overhead_w or 0.0) * num_gpus * timeline.total
    total = per_gpu * num_gpus + overhead_j
    return {
        "energy_j": total,
        "gpu_energy_j": per_gpu * num_gpus,
        "node_overhead_j": overhead_j,
        "energy_per_token_j": total / tokens if tokens > 0 else None,
        "avg_power_per_gpu_w": per_gpu / timeline.total,
        "power_limit_w": float(limit_w if limit_w is not None else device.tdp_w),
        "compute_clock_ratio": compute_clock_ratio(device, limit_w, facts),
        "phase_power_w": {"compute_bound": power.compute, "memory_bound": power.memory,
                          "communication": power.comm, "idle": power.idle},
        "phase_time_s": {"compute_bound": timeline.compute, "memory_bound": timeline.memory,
                         "communication": timeline.comm, "idle": timeline.idle},
        "node_overhead_w_per_gpu": overhead_w,
        "node_overhead_basis": (f"node {node_id!r}: system maximum minus its GPUs' TDP, "
                                f"per GPU; an upper bound ({FACTS_FILE})"
                                if overhead_w is not None else
                                "not counted: no sourced system power for this node"),
    }


# Parts of a training step's time breakdown that are kernels running on the GPU: the operator
# classes, and the framework's kernels that frameworks_costs.split_time moves out of
# ``elementwise`` to name them (unfused element-wise chains, FSDP2 all-gather / reduce-scatter
# copy-in / copy-out kernels). Their operators are in the step's operator reports, so they are
# split by those operators' bounds like the classes.
OP_TIME_KEYS = ("gemm", "attention", "elementwise", "optimizer", "unfused_elementwise",
                "fsdp_copies")
# the compute-bound GEMM / attention time that overlapped NCCL kernels' SMs add
# (parallel_comm.dp_contention): kernels running, at the compute-bound draw
COMPUTE_BOUND_KEYS = ("comm_contention",)


def training_timeline(time_parts: dict[str, float],
                      bounds: Iterable[tuple[str, float]]) -> Timeline:
    """A training step's timeline from its time breakdown: kernel time (``OP_TIME_KEYS``)
    split by the operators' bounds, the NCCL contention's stretch of compute-bound kernels
    (``COMPUTE_BOUND_KEYS``) as compute-bound, ``*_comm`` parts as communication, and the rest
    as idle:
    the pipeline bubble, exposed host dispatch (the GPU waits for launches) and the CP
    imbalance (the other CP ranks wait for the slowest one; the mean rank's attention is in
    ``attention``)."""
    op_time = sum(v for k, v in time_parts.items() if k in OP_TIME_KEYS)
    slowed = sum(v for k, v in time_parts.items() if k in COMPUTE_BOUND_KEYS)
    comm = sum(v for k, v in time_parts.items() if k.endswith("_comm"))
    idle = max(sum(v for k, v in time_parts.items()
                   if k not in OP_TIME_KEYS + COMPUTE_BOUND_KEYS and not k.endswith("_comm")),
               0.0)  # bubble: residual
    c, m = split_operator_time(op_time, bounds)
    return Timeline(compute=c + slowed, memory=m, comm=comm, idle=idle)


def _bounds(ops, phase: str | None = None) -> list[tuple[str, float]]:
    """(bound, total_s) of operator reports, optionally of one phase only."""
    return [(o.bound, o.total_s) for o in ops if phase is None or o.phase == phase]


def training_energy(system, time_parts: dict[str, float], ops, tokens: float) -> dict | None:
    """Energy of one training step of ``system`` (a specs.system.System): the critical GPU's
    timeline (``training_timeline``) for every GPU, plus node overhead; per token."""
    timeline = training_timeline(time_parts, _bounds(ops))
    return energy_report(system.device, system.power_limit_w, timeline, system.num_gpus,
                         system.node.id if system.node else None, tokens)


def phase_timeline(total_s: float, op_time_s: float, bounds) -> Timeline:
    """One inference pass: operators split by bound, the rest (TP / EP / PP communication,
    offload streaming) as communication."""
    c, m = split_operator_time(op_time_s, bounds)
    return Timeline(compute=c, memory=m, comm=max(total_s - op_time_s, 0.0), idle=0.0)


def inference_energy(system, prefill: Timeline, decode_step: Timeline, ttft: float,
                     e2e: float, generated_tokens: float) -> dict | None:
    """Energy of one request batch on every replica: the prefill pass over TTFT, then decode
    steps (at the mean context) over the rest of the latency; per generated token. The
    report's ``energy_per_decode_step_j`` is one decode step of the whole system."""
    steps = max(e2e - ttft, 0.0) / decode_step.total if decode_step.total > 0 else 0.0
    pre = prefill.total
    scale_pre = ttft / pre if pre > 0 else 0.0  # TTFT may hold more than one pass (chunks)
    timeline = Timeline(*(scale_pre * getattr(prefill, k) + steps * getattr(decode_step, k)
                          for k in ("compute", "memory", "comm", "idle")))
    node = system.node.id if system.node else None
    out = energy_report(system.device, system.power_limit_w, timeline, system.num_gpus, node,
                        generated_tokens)
    step = energy_report(system.device, system.power_limit_w, decode_step, system.num_gpus,
                         node, 0.0)
    if out is None or step is None:
        return None
    out["energy_per_decode_step_j"] = step["energy_j"]
    return out


def prediction_energy_fields(energy: dict | None, kind: str) -> dict[str, float | None]:
    """The Prediction's energy keys from a report: per step (training step / decode step of
    the whole system), per token (trained / generated), average GPU board power."""
    if energy is None:
        return {}
    per_step = energy["energy_j"] if kind == "training" else energy["energy_per_decode_step_j"]
    return {"energy_per_step_j": per_step, "energy_per_token_j": energy["energy_per_token_j"],
            "avg_power_per_gpu_w": energy["avg_power_per_gpu_w"]}


def training_run_energy_j(prediction, tokens: float) -> float | None:
    """Energy of a training run of ``tokens`` tokens at a prediction's energy per token (J;
    divide by 3.6e9 for MWh). None when the prediction has no energy (no TDP in the spec)."""
    per_token = getattr(prediction, "energy_per_token_j", None)
    return None if per_token is None else per_token * tokens
