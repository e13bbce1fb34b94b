"""The public Python API: scenario in, Prediction out. The CLI and dashboard call only this.

>>> import perfmodel as pm
>>> sc = pm.Scenario(kind="inference", model="llama-2-7b",
...                  system={"device": "a100-sxm4-80gb"},
...                  inference={"batch": 1, "prompt_len": 512, "output_len": 128})
>>> pred = pm.predict(sc)
>>> pred.tpot_s > 0
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpecError
from .inference import InferPlan, inference
from .plan import TrainPlan, check, inference_rules, training_rules
from .prediction import OpReport, Prediction
from .profile import CalibrationProfile, profile_for
from .roofline import OpTimes
from .specs.loading import validate
from .specs.registry import get_interconnect
from .specs.scenario import Scenario, load_scenario
from .specs.system import System, resolve_system
from .training import training_step

ScenarioLike = Scenario | str | Path | dict


def as_scenario(value: ScenarioLike) -> Scenario:
    """A Scenario from a Scenario, a YAML path, or a mapping."""
    if isinstance(value, Scenario):
        return value
    if isinstance(value, (str, Path)):
        return load_scenario(value)
    if isinstance(value, dict):
        return validate(Scenario, value, what="scenario")
    raise SpecError(f"expected a Scenario, a path or a mapping, got {type(value).__name__}")


def resolve_profile(sc: Scenario, calibration: str | Path | CalibrationProfile | None = None
                    ) -> CalibrationProfile:
    if isinstance(calibration, CalibrationProfile):
        return calibration
    path = Path(calibration) if calibration else sc.calibration_path()
    return profile_for(sc.system.device, path)


def predict(scenario: ScenarioLike,
            calibration: str | Path | CalibrationProfile | None = None) -> Prediction:
    """Predict a training step or an inference request for ``scenario``.

    ``calibration`` (a profile or its path) overrides the scenario's; without either, the
    device's shipped reference profile is used, or the documented default efficiencies.
    """
    sc = as_scenario(scenario)
    system = resolve_system(sc.system)
    profile = resolve_profile(sc, calibration)
    warnings = _profile_warnings(profile, system)
    if sc.kind == "training":
        return _predict_training(sc, system, profile, warnings)
    if sc.kind == "inference":
        return _predict_inference(sc, system, profile, warnings)
    from .serving import predict_serving

    return predict_serving(sc, system, profile, warnings)


def _profile_warnings(profile: CalibrationProfile, system: System) -> list[str]:
    out = []
    if profile.kind == "default":
        source = profile.path or "calibration/default.json"
        out.append(f"uncalibrated: documented default efficiencies ({source}); "
                   "run `perfmodel calibrate` on this device for measured ones")
    elif profile.device and profile.device != system.device.id:
        out.append(f"calibration profile {profile.id!r} was measured on {profile.device!r}, "
                   f"not on {system.device.id!r}")
    if profile.quality is not None and profile.quality.verdict == "poor":
        out.append(f"calibration profile {profile.id!r} is of poor quality: "
                   + "; ".join(profile.quality.notes))
    return out


def _f(x: Any) -> float:
    return float(np.asarray(x))


def _op_reports(times: OpTimes, counts: list) -> list[OpReport]:
    reports = []
    for i, op in enumerate(times.ops):
        calls = _f(counts[i])
        if calls == 0:
            continue
        flops, nbytes = _f(op.flops), _f(op.bytes)
        reports.append(OpReport(
            name=op.name, cls=op.cls, phase=op.phase, calls=calls, flops=flops, bytes=nbytes,
            intensity=flops / nbytes if nbytes else 0.0, compute_s=_f(times.compute[i]),
            memory_s=_f(times.memory[i]), time_s=_f(times.time[i]),
            total_s=calls * _f(times.time[i]),
            bound="compute" if _f(times.compute[i]) >= _f(times.memory[i]) else "memory"))
    return reports


def _predict_training(sc: Scenario, system: System, profile: CalibrationProfile,
                      warnings: list[str]) -> Prediction:
    plan = TrainPlan.from_scenario(sc)
    check(training_rules(sc.model, system.num_gpus), plan)
    r = training_step(sc.model, system, plan, profile, keep_ops=True)
    step = _f(r.step_time)
    peak = system.device.peak_flops(plan.precision)
    tflops = _f(r.model_flops) / step / system.num_gpus
    six_nd = 6.0 * sc.model.num_active_params() * _f(r.tokens) / step / system.num_gpus
    memory = {k: _f(v) for k, v in r.memory.items()}
    total_mem = _f(r.memory_total)
    breakdown = {
        "time": {k: _f(v) for k, v in r.time.items()},
        "communication": {k: {"total_s": _f(r.comm_total[k]), "exposed_s": _f(r.comm_exposed[k])}
                          for k in r.comm_total},
        "memory": memory,
        "stage_time_per_microbatch_s": {k: _f(v) for k, v in r.stage_times.items()},
        "groups": {k: {"size": _f(g.size), "per_node": _f(g.local), "nodes": _f(g.nodes),
                       "link": (system.inter.id if system.inter else "none")
                       if _f(g.nodes) > 1 else system.intra.id}
                   for k, g in r.groups.items()
                   if _f(g.size) > 1 and (sc.model.moe or k not in ("edp", "egrad"))},
        "flops": {"model_per_step": _f(r.model_flops), "hardware_per_step": _f(r.hardware_flops),
                  "convention": "Megatron model FLOPs (Narayanan et al. 2021): GEMMs + "
                                "attention matmuls, non-causal, no recompute"},
    }
    if not memory_fits(total_mem, system):
        warnings = [*warnings, f"does not fit: {total_mem / 2**30:.1f} GiB per GPU needed, "
                               f"{system.device.memory_gb:g} GB available"]
    return Prediction(
        kind="training", name=sc.name, model=sc.model.id, device=system.device.id,
        num_gpus=system.num_gpus, calibration=profile.summary(), step_time_s=step,
        tokens_per_s=_f(r.tokens) / step, tflops_per_gpu=tflops / 1e12, mfu=tflops / peak,
        mfu_6nd=six_nd / peak, hfu=_f(r.hardware_flops) / step / system.num_gpus / peak,
        num_microbatches=_f(r.num_microbatches), memory_per_gpu_bytes=total_mem,
        memory_capacity_bytes=system.device.memory_bytes, fits=memory_fits(total_mem, system),
        breakdown=breakdown, ops=_op_reports(r.op_times, r.op_counts), warnings=warnings,
    )


def memory_fits(total: float, system: System) -> bool:
    return total <= system.device.memory_bytes


def infer_plan(sc: Scenario, system: System) -> InferPlan:
    p, inf = sc.parallelism, sc.inference
    assert inf is not None
    plan = InferPlan(
        tp=p.tp, pp=p.pp, replicas=max(system.num_gpus // (p.tp * p.pp), 1), batch=inf.batch,
        prompt_len=inf.prompt_len, output_len=inf.output_len, weight_dtype=inf.weight_dtype,
        activation_dtype=inf.activation_dtype, kv_dtype=inf.kv_dtype,
        group_size=inf.quant_group_size, flash=inf.flash_attention, kv_block=inf.kv_block_size,
        ep=p.ep,
        offload_weights=inf.offload.weights if inf.offload else 0.0,
        offload_kv=inf.offload.kv_cache if inf.offload else 0.0,
        offload_overlap=inf.offload.overlap if inf.offload else True,
        spec_tokens=inf.speculative.num_tokens if inf.speculative else 0,
        spec_acceptance=inf.speculative.acceptance_rate if inf.speculative else 0.0,
        prefill_chunk=inf.prefill_chunk_tokens,
    )
    check(inference_rules(sc.model, system.num_gpus), plan)
    return plan


def offload_bandwidth(system: System, target: str, profile: CalibrationProfile) -> float:
    """Achieved per-direction B/s of the path offloaded data streams over: the GPU's host link
    for CPU memory (times the profile's host-link efficiency); for NVMe also the drive (the
    node's figure, else one PCIe Gen4 x4 drive's link limit)."""
    if system.host_link is None:
        raise SpecError(f"inference.offload: device {system.device.id!r} has no host link in "
                        "its spec, so offloading cannot be modelled")
    bw = system.host_link.bandwidth
    if target == "nvme":
        node_bw = system.node.nvme_read_gbps if system.node else None
        drive = node_bw * 1e9 if node_bw else get_interconnect("nvme-gen4-x4").bandwidth
        bw = min(bw, drive)
    return bw * (profile.defaults.host_link or 1.0)


def _predict_inference(sc: Scenario, system: System, profile: CalibrationProfile,
                       warnings: list[str]) -> Prediction:
    plan = infer_plan(sc, system)
    inf = sc.inference
    draft = inf.speculative.draft_model if inf.speculative else None
    r = inference(sc.model, system, plan, profile, keep_ops=True, draft=draft,
                  offload_bandwidth=offload_bandwidth(system, inf.offload.target, profile)
                  if inf.offload else None)
    memory = {k: _f(v) for k, v in r.memory.items()}
    total_mem = _f(r.memory_total)
    fits = memory_fits(total_mem, system)
    if not fits:
        warnings = [*warnings, f"does not fit: {total_mem / 2**30:.1f} GiB per GPU needed, "
                               f"{system.device.memory_gb:g} GB available"]
    breakdown = {
        "prefill": {"total_s": _f(r.prefill.time),
                    **{k: _f(v) for k, v in r.prefill.compute.items()},
                    "tp_comm": _f(r.prefill.tp_comm), "pp_comm": _f(r.prefill.pp_comm)},
        "decode_step": {"total_s": _f(r.decode.time),
                        **{k: _f(v) for k, v in r.decode.compute.items()},
                        "tp_comm": _f(r.decode.tp_comm), "pp_comm": _f(r.decode.pp_comm)},
        "memory": memory,
        "flops": {"prefill": _f(r.model_flops_prefill),
                  "per_generated_token": _f(r.model_flops_per_token)},
    }
    decode_ops = _op_reports(r.decode.op_times, [op.count for op in r.decode.op_times.ops])
    prefill_ops = _op_reports(r.prefill.op_times, [op.count for op in r.prefill.op_times.ops])
    return Prediction(
        kind="inference", name=sc.name, model=sc.model.id, device=system.device.id,
        num_gpus=system.num_gpus, calibration=profile.summary(), ttft_s=_f(r.ttft),
        tpot_s=_f(r.tpot), e2e_latency_s=_f(r.e2e), prefill_time_s=_f(r.prefill.time),
        tokens_per_s=_f(r.tokens_per_s), max_concurrent_sequences=_f(r.max_concurrent_sequences),
        kv_cache_bytes_per_sequence=_f(r.kv_bytes_per_sequence),
        memory_per_gpu_bytes=total_mem, memory_capacity_bytes=system.device.memory_bytes,
        fits=fits, breakdown=breakdown, ops=prefill_ops + decode_ops, warnings=warnings,
    )
