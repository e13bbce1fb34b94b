"""Explain: the core's results (a ``TrainingResult``, an ``InferenceResult``) become a
Prediction with its totals, breakdowns, per-operator reports and warnings. The API and the
serving simulator both end here (issue 8), so a reported figure is derived in one place.

Training FLOPs follow the Megatron convention (Narayanan et al. 2021, arXiv 2104.04473): MFU
counts model FLOPs without recompute; HFU counts what the hardware executes; the 6ND figure
(C = 6ND, Kaplan et al. 2020 eq. 2.1, with N counted as Hoffmann et al. 2022 count it: all
parameters, embeddings included) is a cross-check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .frameworks_costs import framework_breakdown
from .memory import capacity_basis, memory_capacity_bytes, memory_fits
from .parameters import param_counts
from .plan import TrainPlan
from .power import inference_energy, phase_timeline, prediction_energy_fields, training_energy
from .prediction import OpReport, Prediction, training_assumptions
from .resolve import Resolved
from .roofline import OpTimes
from .specs.registry import proxy_of
from .specs.system import System
from .training import TrainingResult, flops_utilization

if TYPE_CHECKING:  # annotations only: a training prediction need not load inference
    from .inference import InferenceResult


def _f(x: Any) -> float:
    if isinstance(x, float):  # a Python float or numpy float64: no array to make
        return float(x)
    return float(np.asarray(x))


def fit_warning(total_bytes: float, system: System) -> list[str]:
    """The warning a prediction carries when it does not fit, else nothing."""
    if memory_fits(total_bytes, system.device):
        return []
    return [f"does not fit: {total_bytes / 2**30:.2f} GiB per GPU needed, "
            f"{memory_capacity_bytes(system.device) / 2**30:.2f} GiB available "
            f"({capacity_basis(system.device)})"]


def capacity_fields(total_bytes: float, system: System) -> dict:
    """A Prediction's capacity, fit and runnability fields: capacity as the driver reports it
    (memory.memory_capacity_bytes) and how it was obtained; a plan that does not fit is not
    runnable, its figures are what it would take if it ran."""
    fits = bool(memory_fits(total_bytes, system.device))
    warning = fit_warning(total_bytes, system)
    return {"memory_capacity_bytes": memory_capacity_bytes(system.device),
            "memory_capacity_basis": capacity_basis(system.device), "fits": fits,
            "runnable": fits, "not_runnable_reason": warning[0] if warning else None}


def calibration_summary(profile, device) -> dict:
    """The prediction's ``calibration``: the profile's summary, and ``proxy`` (device, why,
    differs, basis) when it is the profile of the device's ``calibration_proxy`` borrowed
    for it (same silicon; ``specs.registry.borrow_profile``)."""
    out = profile.summary()
    proxy = proxy_of(profile, device)
    return {**out, "proxy": proxy} if proxy else out


def op_reports(times: OpTimes, counts: list) -> list[OpReport]:
    """One report per operator that runs (calls > 0): its roofline terms and its bound."""
    reports = []
    for i, op in enumerate(times.ops):
        calls = _f(counts[i])
        if calls == 0:
            continue
        flops, nbytes = _f(op.flops), _f(op.bytes)
        compute, memory, time = _f(times.compute[i]), _f(times.memory[i]), _f(times.time[i])
        reports.append(OpReport(
            name=op.name, cls=op.cls, phase=op.phase, calls=calls, flops=flops, bytes=nbytes,
            intensity=flops / nbytes if nbytes else 0.0, compute_s=compute, memory_s=memory,
            time_s=time, total_s=calls * time,
            bound="compute" if compute >= memory else "memory",
            timed_by=times.decided[i] if times.decided else ("", "")))
    return reports


def _training_breakdown(rs: Resolved, r: TrainingResult) -> dict:
    system, model = rs.system, rs.scenario.model
    return {
        "time": {k: _f(v) for k, v in r.time.items()},
        "communication": {k: {"total_s": _f(r.comm_total[k]), "exposed_s": _f(r.comm_exposed[k])}
                          for k in r.comm_total},
        "memory": {k: _f(v) for k, v in r.memory.items()},
        "stage_time_per_microbatch_s": {k: _f(v) for k, v in r.stage_times.items()},
        "groups": {k: {"size": _f(g.size), "per_node": _f(g.local), "nodes": _f(g.nodes),
                       "link": (system.inter.id if system.inter else "none")
                       if _f(g.nodes) > 1 else system.intra.id}
                   for k, g in r.groups.items()
                   if _f(g.size) > 1 and (model.moe or k not in ("edp", "egrad"))},
        "flops": {"model_per_step": _f(r.model_flops), "hardware_per_step": _f(r.hardware_flops),
                  "convention": "Megatron model FLOPs (Narayanan et al. 2021): GEMMs + "
                                "attention matmuls, non-causal, no recompute"},
    }


def training_prediction(rs: Resolved, plan: TrainPlan, r: TrainingResult) -> Prediction:
    """A training step's Prediction: throughput, MFU / HFU, memory and the breakdowns."""
    sc, system, profile = rs.scenario, rs.system, rs.profile
    step, n = _f(r.step_time), system.num_gpus
    peak = system.device.peak_flops(plan.precision)
    tflops = _f(r.model_flops) / step / n
    six_nd = 6.0 * param_counts(sc.model).active * _f(r.tokens)  # 6ND, N incl. embeddings (Hoffmann et al. 2022)
    total_mem = _f(r.memory_total)
    util, util_warnings = _utilisations({
        "mfu": flops_utilization(_f(r.model_flops), step, n, peak),
        "mfu_6nd": flops_utilization(six_nd, step, n, peak),
        "hfu": flops_utilization(_f(r.hardware_flops), step, n, peak)})
    ops = op_reports(r.op_times, r.op_counts)
    energy = training_energy(system, {k: _f(v) for k, v in r.time.items()}, ops, _f(r.tokens))
    return Prediction(
        kind="training", name=sc.name, model=sc.model.id, device=system.device.id,
        num_gpus=n, calibration=calibration_summary(profile, system.device), step_time_s=step,
        tokens_per_s=_f(r.tokens) / step, tflops_per_gpu=tflops / 1e12,
        hardware_tflops_per_gpu=_f(r.hardware_flops) / step / n / 1e12, **util,
        num_microbatches=_f(r.num_microbatches), memory_per_gpu_bytes=total_mem,
        **capacity_fields(total_mem, system),
        breakdown={**_training_breakdown(rs, r), **({"energy": energy} if energy else {}),
                   "framework": framework_breakdown(plan.framework, plan.zero_stage,
                                                    _f(r.comm_exposed["dp"]))},
        ops=ops, **prediction_energy_fields(energy, "training"),
        warnings=[*rs.warnings, *fit_warning(total_mem, system), *util_warnings],
        assumptions=training_assumptions(sc, plan) or None,
    )


def _utilisations(values: dict[str, float]) -> tuple[dict[str, float | None], list[str]]:
    """The utilisations a prediction can state: a FLOP-counting convention can exceed what
    runs (Megatron's model FLOPs count attention non-causally, s^2 query-key pairs, while
    causal attention executes about half; at long sequences attention dominates), and a
    utilisation above 1 is left out with a warning rather than printed (issue 12)."""
    out: dict[str, float | None] = {}
    warnings = []
    for name, value in values.items():
        out[name] = value if value <= 1.0 else None
        if value > 1.0:
            warnings.append(f"{name} not reported: its FLOP convention counts {value:.2f}x the "
                            "peak (attention counted non-causally dominates at this "
                            "sequence length); tflops_per_gpu keeps the convention's figure")
    return out, warnings


def inference_breakdown(r: InferenceResult) -> dict:
    """Prefill pass and one decode step by operator class and communication; memory; FLOPs."""
    out = {
        "prefill": {"total_s": _f(r.prefill.time),
                    **{k: _f(v) for k, v in r.prefill.compute.items()},
                    "tp_comm": _f(r.prefill.tp_comm), "ep_comm": _f(r.prefill.ep_comm),
                    "pp_comm": _f(r.prefill.pp_comm)},
        "decode_step": {"total_s": _f(r.decode.time),
                        **{k: _f(v) for k, v in r.decode.compute.items()},
                        "tp_comm": _f(r.decode.tp_comm), "ep_comm": _f(r.decode.ep_comm),
                        "pp_comm": _f(r.decode.pp_comm)},
        "memory": {k: _f(v) for k, v in r.memory.items()},
        "flops": {"prefill": _f(r.model_flops_prefill),
                  "per_generated_token": _f(r.model_flops_per_token)},
    }
    if r.prefill.moe is not None and r.decode.moe is not None:  # MoE: experts and all-to-all
        out["moe"] = {phase: {k: (v if isinstance(v, str) else _f(v)) for k, v in res.moe.items()}
                      for phase, res in (("prefill", r.prefill), ("decode_step", r.decode))}
    return out


def inference_prediction(rs: Resolved, r: InferenceResult) -> Prediction:
    """A request's Prediction: TTFT, TPOT, latency, throughput, memory; the prefill pass's
    operators, then the decode step's."""
    sc, system, profile = rs.scenario, rs.system, rs.profile
    total_mem = _f(r.memory_total)
    decode_ops = op_reports(r.decode.op_times, [op.count for op in r.decode.op_times.ops])
    prefill_ops = op_reports(r.prefill.op_times, [op.count for op in r.prefill.op_times.ops])
    energy = inference_energy(
        system, *(phase_timeline(_f(ph.time), sum(_f(v) for v in ph.compute.values()),
                                 [(o.bound, o.total_s) for o in reps])
                  for ph, reps in ((r.prefill, prefill_ops), (r.decode, decode_ops))),
        _f(r.ttft), _f(r.e2e), _f(r.tokens_per_s) * _f(r.e2e))
    return Prediction(
        kind="inference", name=sc.name, model=sc.model.id, device=system.device.id,
        num_gpus=system.num_gpus, calibration=calibration_summary(profile, system.device), ttft_s=_f(r.ttft),
        tpot_s=_f(r.tpot), e2e_latency_s=_f(r.e2e), prefill_time_s=_f(r.prefill.time),
        tokens_per_s=_f(r.tokens_per_s), max_concurrent_sequences=_f(r.max_concurrent_sequences),
        decode_tokens_per_s=_f(r.decode_tokens_per_s),
        decode_tokens_per_s_per_gpu=_f(r.decode_tokens_per_s) / system.num_gpus,
        decode_context_tokens=[_f(c) for c in r.decode_contexts] or None,
        kv_cache_bytes_per_sequence=_f(r.kv_bytes_per_sequence),
        memory_per_gpu_bytes=total_mem, **capacity_fields(total_mem, system),
        breakdown={**inference_breakdown(r), **({"energy": energy} if energy else {})},
        **prediction_energy_fields(energy, "inference"), ops=prefill_ops + decode_ops, warnings=[*rs.warnings, *fit_warning(total_mem, system)],
    )
