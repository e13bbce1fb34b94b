"""``predict(kind: serving)``: simulate the scenario's workload on its deployment and report
percentiles, throughput, goodput, KV utilisation and queue length in a Prediction.

The zero-load prefill and decode breakdown of one instance (``perfmodel.inference`` at
batch 1 with the median prompt and output) fills the inference fields of the Prediction, so
every prediction explains the per-iteration costs the simulation is built on.
"""

from __future__ import annotations

import numpy as np

from ..engine_memory import HEADROOM_CATEGORIES
from ..errors import SpecError
from ..explain import calibration_summary, capacity_fields
from ..prediction import Prediction
from ..predictors import predict_inference
from ..profile import CalibrationProfile
from ..resolve import Resolved
from ..specs.assemble import resolve_system
from ..specs.scenario import BenchmarkClientConfig, InferenceConfig, Scenario
from ..specs.system import System
from .bench import benchmark_metrics
from .clients import WindowResult, load_client, select_windows, uses_windows
from .deploy import Deployment, build_deployment, zero_load
from .economics import cost_report, energy_report, load_prices
from .metrics import latencies, summarize
from .requests import Requests
from .workload import DEFAULT_NUM_REQUESTS, Workload, build_workload


def serving_inputs(sc: Scenario) -> tuple[InferenceConfig, Workload]:
    inf = sc.inference
    wl = build_workload(sc.serving, sc.base_dir, inf.prompt_len if inf else None,
                        inf.output_len if inf else None)
    return sc.inference_or_default(), reject_over_context(sc, wl)


def reject_over_context(sc: Scenario, wl: Workload) -> Workload:
    """Leave out the requests the named engine rejects: prompt + output above its
    max_model_len (engines/<id>.yaml scheduler.over_context_request: vLLM
    OpenAIServing._validate_input, SGLang TokenizerManager._validate_one_request answer HTTP
    400). The benchmark client counts them as failed (``Workload.failed``); every request
    rejected is an error naming the limit."""
    limit = rejecting_limit(sc.engine, sc.model)
    if limit is None:
        return wl
    over = (wl.prompt + wl.output) > limit
    if not over.any():
        return wl
    if over.all():
        raise SpecError(f"serving: every request is longer (prompt + output) than engine "
                        f"max_model_len {limit:,}; {sc.engine.name} would reject them all "
                        "(HTTP 400)")
    return wl.without(over, limit)


def rejecting_limit(engine, model) -> int | None:
    """The max_model_len above which the named ``engine`` (an EngineConfig) rejects a request's
    prompt + output, where its file says it does (scheduler.over_context_request ``reject``:
    vLLM OpenAIServing._validate_input, SGLang TokenizerManager._validate_one_request); None
    for the generic engine and a file that states no such rule."""
    from ..engine_checks import engine_max_len
    from ..engines import engine_facts

    spec = engine_facts(engine.name, engine.version, engine.variant) if engine else None
    if spec is None or spec.scheduler.over_context_request != "reject":
        return None
    return engine_max_len(spec, engine, model)


def deployment_for(sc: Scenario, system: System, profile: CalibrationProfile,
                   inf: InferenceConfig, wl: Workload,
                   counts: tuple[int, ...] | None = None) -> Deployment:
    longest = int((wl.prompt + wl.output).max())
    return build_deployment(sc.model, system, sc.parallelism, inf, sc.serving.scheduler,
                            profile, int(wl.prompt.max()), longest, counts, engine=sc.engine)


def _baseline(sc: Scenario, dep: Deployment, profile: CalibrationProfile, inf: InferenceConfig,
              prompt: int, output: int) -> Prediction:
    """One request alone on one instance, predicted by the inference model: the per-pass
    costs the simulation's iterations are built on. With attention DP, one request on each
    DP group (batch attention_dp, the smallest batch such an instance runs; inference's rule
    inference.batch)."""
    inst = dep.instances[0]
    tp, adp = int(inst.plan.tp), int(inst.plan.attention_dp)
    one = sc.model_copy(update={
        "kind": "inference",
        "system": sc.system.model_copy(update={"num_gpus": int(inst.plan.instance_gpus)}),
        "parallelism": sc.parallelism.model_copy(update={"tp": tp}),
        "inference": inf.model_copy(update={"batch": adp, "prompt_len": prompt,
                                            "output_len": output}),
    })
    return predict_inference(Resolved(one, resolve_system(one.system), profile, []))


def predict_serving(rs: Resolved) -> Prediction:
    """Simulate the resolved serving scenario and explain it in a Prediction."""
    return simulate_serving(rs)[0]


def predict_with_latencies(scenario, calibration=None) -> tuple[Prediction, dict[str, np.ndarray]]:
    """What ``perfmodel.predict`` gives for a serving scenario, with the per-request TTFT /
    TPOT / E2E / queue times (``metrics.latencies``) of the same, single simulation (the
    dashboard's latency CDFs)."""
    from ..resolve import resolve
    from ..uncertainty import with_ranges

    rs = resolve(scenario, calibration)
    if rs.scenario.kind != "serving":
        raise SpecError(f"kind: predict_with_latencies needs a serving scenario, got "
                        f"{rs.scenario.kind!r}")
    pred, reqs = simulate_serving(rs)
    return with_ranges(pred, rs.profile, rs.scenario), latencies(reqs)


def simulate_serving(rs: Resolved) -> tuple[Prediction, Requests]:
    """The Prediction of the resolved serving scenario and the requests it simulated."""
    sc, system, profile = rs.scenario, rs.system, rs.profile
    inf, wl = serving_inputs(sc)
    dep = deployment_for(sc, system, profile, inf, wl)
    res = dep.simulate(wl)
    wl = res.workload  # as the engine serves it (a short pool's limit: Deployment.served)
    client = load_client(_client_cfg(sc).client)
    window = None
    if wl.closed and uses_windows(client, _client_cfg(sc).measurement_interval_ms):
        dep, wl, res, window = _measure_windows(sc, system, profile, inf, dep, wl, res, client)
    summary = summarize(res.reqs, res.engines, sc.serving.slo, res.end)
    p_med = int(np.median(wl.prompt))
    o_med = int(np.median(wl.output))
    base = _baseline(sc, dep, profile, inf, p_med, o_med)
    tput = summary["throughput"]
    summary["zero_load"] = zero_load(dep, p_med, o_med) | {"prompt_len": p_med,
                                                           "output_len": o_med}
    summary["deployment"] = _deployment_summary(sc, dep)
    summary["workload"] = {
        "num_requests": len(wl), "arrival": sc.serving.arrival.process,
        "rate_per_s": wl.rate, "prompt_len_mean": float(wl.prompt.mean()),
        "output_len_mean": float(wl.output.mean()), "seed": sc.serving.seed,
    }
    if wl.closed or wl.warmup or wl.warmup_phase:  # the benchmark client's view
        # (open-loop keys unchanged); warm-ups of a separate phase ran before, extra
        summary["workload"] |= {"concurrency": wl.concurrency,
                                "warmup_requests": wl.warmup + wl.warmup_phase}
        summary["benchmark"] = benchmark_metrics(res.reqs, dep.num_gpus, wl.concurrency,
                                                 client, failed=wl.failed,
                                                 options=_client_cfg(sc)
                                                 ) | {"client": client.id,
                                                      "request_rate": _configured_rate(sc, wl)}
        if wl.warmup_phase:
            summary["benchmark"] |= {"warmup_requests": wl.warmup_phase,
                                     "warmup": "separate_phase"}
        if window is not None:  # requests outside the windows are not warm-up ones
            summary["benchmark"]["windows"] = _window_summary(window) | {
                "unmeasured_requests": int(len(wl) - wl.warmup
                                           - summary["benchmark"]["completed"])}
            summary["benchmark"]["warmup_requests"] = wl.warmup
    summary["energy"] = energy_report(system.device, profile, dep.num_gpus,
                                      tput["output_tokens_per_s"])
    summary["cost"] = cost_report(load_prices(), system.device.id, dep.num_gpus,
                                  tput["output_tokens_per_s"])
    limit = dep.request_limit
    if limit is not None:  # the engine's cap on a request, beside its KV pools
        summary["deployment"]["request_limit"] = limit.summary() | {
            "refused_requests": wl.pool_refused, "truncated_requests": wl.truncated}
    warnings = [*rs.warnings, *_rejected_warnings(wl, sc),
                *([limit.note(wl)] if limit is not None else []),
                *_few_requests_warnings(wl, sc),
                *_load_warnings(summary, closed=wl.closed),
                *_window_warnings(window, client)]
    summary = _finite(summary)
    # a named engine's categories less the headroom it leaves unallocated (vLLM's
    # 1 - gpu_memory_utilization, ...): what it holds, as an inference prediction reports it
    mem = {k: v for k, v in dep.instances[0].kv.memory.items() if k not in HEADROOM_CATEGORIES}
    total_mem = float(sum(mem.values()))
    breakdown = {
        "prefill": base.breakdown["prefill"],
        "decode_step": base.breakdown["decode_step"],
        "memory": mem,
        "flops": base.breakdown["flops"],
        "zero_load_single_request": {"prompt_len": p_med, "output_len": o_med},
    }
    if "moe" in base.breakdown:  # the MoE table used and the all-to-all, of the same passes
        breakdown["moe"] = base.breakdown["moe"]
    return Prediction(
        kind="serving", name=sc.name, model=sc.model.id, device=system.device.id,
        num_gpus=dep.num_gpus, calibration=calibration_summary(profile, system.device),
        ttft_s=summary["ttft_s"]["p50"],
        tpot_s=summary["tpot_s"]["p50"] or 0.0,  # no TPOT when every output is one token
        e2e_latency_s=summary["e2e_s"]["p50"], prefill_time_s=base.prefill_time_s,
        tokens_per_s=tput["output_tokens_per_s"],
        max_concurrent_sequences=float(dep.instances[-1].kv.tokens
                                       // max(float((wl.prompt + wl.output).mean()), 1.0)),
        kv_cache_bytes_per_sequence=base.kv_cache_bytes_per_sequence,
        memory_per_gpu_bytes=total_mem, **capacity_fields(total_mem, system),
        breakdown=breakdown, ops=base.ops,
        serving=summary, warnings=warnings, engine=_engine_startup(base.engine, dep, sc),
    ), res.reqs


#: a windowed client's run is lengthened (requests doubled) until its windows end while the
#: loop is still full; this many doublings at most
MAX_WINDOW_DOUBLINGS = 8


def _client_cfg(sc: Scenario) -> BenchmarkClientConfig:
    return sc.serving.benchmark or BenchmarkClientConfig()


def _measure_windows(sc: Scenario, system: System, profile: CalibrationProfile,
                     inf: InferenceConfig, dep: Deployment, wl: Workload, res, client):
    """Run the closed loop long enough for a windowed client (genai-perf
    --measurement-interval) and keep the requests its windows measured (``clients.py``).
    The windows start when the measured load starts (the first request after the warm-up is
    sent) and must end before the loop stops sending: otherwise the run is repeated with twice
    the requests (the same seed, so the same first requests)."""
    cfg = _client_cfg(sc)
    for doubling in range(MAX_WINDOW_DOUBLINGS + 1):
        arrival, finish = res.reqs.arrival, res.reqs.finish
        measured = np.arange(len(wl)) >= wl.warmup
        win = select_windows(arrival, finish, float(arrival[wl.warmup]),
                             float(np.max(arrival)), client.windows,
                             cfg.measurement_interval_ms, cfg.stability_percentage,
                             cfg.max_trials)
        if win.complete or doubling == MAX_WINDOW_DOUBLINGS:  # windows of the run reported
            break
        n = 2 * len(wl)
        serving = sc.serving.model_copy(update={"num_requests": n})
        bigger = reject_over_context(sc, build_workload(
            serving, sc.base_dir, inf.prompt_len if sc.inference else None,
            inf.output_len if sc.inference else None))
        if len(dep.served(bigger)) <= len(wl):  # a trace has no more rows
            break
        dep = deployment_for(sc, system, profile, inf, bigger)
        res = dep.simulate(bigger)
        wl = res.workload
    res.reqs.counted = win.counted & measured
    if not res.reqs.counted.any():
        raise SpecError(f"serving.benchmark: no request finished inside {client.id}'s "
                        "measurement windows; lengthen measurement_interval_ms")
    return dep, wl, res, win


def _window_summary(win: WindowResult) -> dict:
    return {"count": len(win.throughput_rps),
            "window_s": win.bounds_s[1] - win.bounds_s[0] if len(win.bounds_s) > 1 else 0.0,
            "start_s": win.bounds_s[0], "end_s": win.bounds_s[-1], "stable": win.stable,
            "complete": win.complete, "requests_per_s": win.throughput_rps,
            "mean_latency_s": win.mean_latency_s}


def _window_warnings(win: WindowResult | None, client) -> list[str]:
    if win is None:
        return []
    out = []
    if not win.complete:
        out.append(f"{client.id}: the simulated loop stopped sending before the measurement "
                   "windows ended; give more requests (num_requests) or a trace with more rows")
    elif not win.stable:
        out.append(f"{client.id}: no {client.windows.stability_windows} consecutive windows "
                   "were stable within the trials (perf_analyzer: 'Failed to obtain stable "
                   "measurement'); the statistics cover every window")
    return out


def _deployment_summary(sc: Scenario, dep: Deployment) -> dict:
    """Scheduler, token budget and the instances with their KV pools."""
    out = {
        "scheduler": dep.scheduler.kind,  # the engine's when the scenario left it unset
        "token_budget": dep.token_budget,
        "max_batch": dep.scheduler.max_batch,  # the engine's max_num_seqs when it set it
        "num_gpus": dep.num_gpus,
        "instances": [{"role": i.role, "count": i.count, "tp": int(i.plan.tp),
                       "pp": int(i.plan.pp), "kv_blocks": i.kv.num_blocks,
                       "kv_block_tokens": i.kv.block_tokens, "kv_tokens": i.kv.tokens}
                      | _moe_layout(i) | _span(i, dep)
                      for i in dep.instances],
    }
    if dep.scheduler.kind == "disaggregated":
        out["kv_transfer"] = "inter_node" if dep.transfer_cross_node else "intra_node"
    return out


def _span(inst, dep: Deployment) -> dict:
    """An instance's uneven layer split and the nodes it spans, when it has them (a TP or PP
    group across nodes pays the inter-node network in its iterations; cost.py)."""
    out: dict = {}
    if inst.plan.pp_layers is not None:
        out["pipeline_layers"] = [int(x) for x in inst.plan.pp_layers]
    per_node = dep.system.gpus_per_node if dep.system is not None else None
    gpus = int(inst.plan.instance_gpus)
    if per_node and gpus > per_node:
        out["nodes_per_instance"] = -(-gpus // per_node)
    return out


def _moe_layout(inst) -> dict:
    """An instance's attention DP and expert layout, when it has one (moe_parallel.py)."""
    plan = inst.plan
    if int(plan.attention_dp) == 1 and int(plan.ep) == 1:
        return {}
    return {"attention_dp": int(plan.attention_dp), "ep": int(plan.ep),
            "gpus_per_instance": int(plan.instance_gpus), "a2a_mode": plan.a2a_mode,
            "moe_overlap": plan.moe_overlap}


def _configured_rate(sc: Scenario, wl: Workload) -> float | None:
    """The client's --request-rate: None (inf) for a closed loop, the scenario's rate_per_s,
    else (a trace) the workload's mean rate."""
    if wl.closed:
        return None
    rate = getattr(sc.serving.arrival, "rate_per_s", None)
    return float(rate) if rate is not None else float(wl.rate)


def _engine_startup(engine: dict | None, dep: Deployment, sc: Scenario) -> dict | None:
    """SGLang's start-up figures of one scheduler (one attention-DP rank), as the deployment
    runs them: its token budget and batch cap // dp_size (engine_report.sglang_startup, the
    rule the inference kind prints too); every engine's entry with its attention-DP ranks and
    the instance's KV tokens (engine_report.with_dp_ranks)."""
    from ..engine_report import sglang_startup, with_dp_ranks

    engine = with_dp_ranks(engine, int(dep.instances[-1].plan.attention_dp))
    if not engine or engine.get("engine") != "sglang":
        return engine
    return sglang_startup(engine, int(dep.instances[-1].plan.attention_dp), dep.token_budget,
                          dep.scheduler.max_batch,
                          fraction_given=sc.engine.mem_fraction_static is not None)


def _few_requests_warnings(wl: Workload, sc: Scenario) -> list[str]:
    """A closed loop given fewer requests than clients: each client holds one request at a
    time, so no more than the requests are ever in flight (``vllm bench serve``'s semaphore of
    max_concurrency lets all num_prompts through at once) and the run is a closed loop of that
    many clients, not of ``concurrency``."""
    if not wl.closed or len(wl) >= wl.concurrency:
        return []
    arr, n = sc.serving.arrival, len(wl)
    why = [f"serving.num_requests {sc.serving.num_requests:,}"
           if sc.serving.num_requests is not None
           else "" if arr.trace else f"serving.num_requests' default {DEFAULT_NUM_REQUESTS:,}",
           "the rows of serving.arrival.trace" if arr.trace else "",
           f"{wl.failed:,} rejected left out" if wl.failed else ""]
    return [f"{n:,} request(s) to send ({'; '.join(w for w in why if w)}), fewer than "
            f"serving.arrival.concurrency ({arr.concurrency:,} clients): at most {n:,} are "
            f"ever in flight, so this measures a closed loop of {n:,} clients, not "
            f"{arr.concurrency:,}; give serving.num_requests at least serving.arrival.concurrency "
            "(benchmarks send several per client)"]


def _rejected_warnings(wl: Workload, sc: Scenario) -> list[str]:
    over = wl.failed - wl.pool_refused  # the pool's refusals: RequestLimit.note
    if not over:
        return []
    return [f"{over} request(s) longer (prompt + output) than engine max_model_len "
            f"{wl.context_limit:,}: {sc.engine.name} rejects them (HTTP 400); counted as failed "
            "requests, not simulated"]


def _load_warnings(summary: dict, closed: bool = False) -> list[str]:
    """An overloaded run (latencies then depend on its length) and KV-cache preemptions. A
    closed loop cannot be overloaded: its clients wait for their requests."""
    tput = summary["throughput"]
    out = []
    if not closed and tput["requests_per_s"] < 0.9 * tput["offered_requests_per_s"]:
        out.append(f"overloaded: served {tput['requests_per_s']:.2f} req/s of "
                   f"{tput['offered_requests_per_s']:.2f} offered; the queue grows for "
                   "the whole run and latencies depend on num_requests")
    if summary["preemptions"]:
        out.append(f"{summary['preemptions']} preemptions (KV cache full; recomputed)")
    return out


def _finite(value):
    """NaN / inf -> None, so the JSON stays valid (e.g. TPOT when every output is 1 token)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
