"""One predictor per scenario kind that runs the core directly: resolved inputs (``resolve``)
through the core (``training``, ``inference``) to a Prediction (``explain``). ``api.predict``
dispatches here; the serving simulator calls ``predict_inference`` for its zero-load baseline.
"""

from __future__ import annotations

from .explain import inference_prediction, training_prediction
from .prediction import Prediction
from .resolve import Resolved, inference_inputs, training_plan
from .training import training_step


def predict_training(rs: Resolved) -> Prediction:
    """One training step of the resolved scenario."""
    plan = training_plan(rs.scenario, rs.system)
    r = training_step(rs.scenario.model, rs.system, plan, rs.profile, keep_ops=True)
    return training_prediction(rs, plan, r)


def predict_inference(rs: Resolved) -> Prediction:
    """One inference request (batch) of the resolved scenario."""
    from .inference import inference  # here: a training prediction need not load it

    inp = inference_inputs(rs.scenario, rs.system, rs.profile)
    r = inference(rs.scenario.model, rs.system, inp.plan, rs.profile, keep_ops=True,
                  draft=inp.draft, offload_bandwidth=inp.offload_bandwidth,
                  draft_tp=inp.draft_tp)
    return with_engine(inference_prediction(rs, r), rs, inp.plan)


def with_engine(pred: Prediction, rs: Resolved, plan=None) -> Prediction:
    """Add the named engine's start-up memory plan (engine_memory) and its warnings; its own
    verdict replaces ``fits`` and ``max_concurrent_sequences`` (engine_fit: it starts, holds
    the scenario's batch at its context, and how many such requests it runs at once).
    ``plan``: the scenario's InferPlan (its uneven layer split)."""
    from . import engine_memory
    from .engine_fit import engine_fit
    from .engines import engine_for

    sc = rs.scenario
    pp_layers = None if plan is None else plan.pp_layers
    mem = engine_memory.for_scenario(sc, rs.system, rs.profile, pp_layers)
    if mem is None:
        return pred
    warnings = [*pred.warnings, *(f"{mem.engine}: {p}" for p in mem.problems)]
    if mem.device_memory_source != "cuda":
        warnings.append(f"{mem.engine}: device memory as CUDA reports it is not sourced for "
                        f"{rs.system.device.id!r}; the budget uses the "
                        f"{mem.device_memory_source} figure")
    update: dict = {"engine": engine_memory.report(mem)}
    # one story: the top-level memory is the engine's start-up accounting (weights as it
    # allocates them, its reserves, its KV pool), by its categories less the headroom it leaves
    update["memory_per_gpu_bytes"] = engine_memory.allocated_bytes(mem)
    update["breakdown"] = {**pred.breakdown, "memory": {
        k: v for k, v in mem.breakdown.items() if k not in engine_memory.HEADROOM_CATEGORIES}}
    inf = sc.inference
    if sc.kind == "inference" and inf is not None:
        shape = engine_memory.shape_for(sc.parallelism, inf, rs.system, pp_layers)
        fit = engine_fit(mem, engine_for(sc.engine), sc.model, shape, inf.batch,
                         inf.prompt_len + inf.output_len, seqs_given=sc.engine.max_num_seqs,
                         # beyond the model's context on purpose: the engine's limit is then
                         # the one the scenario names, if any
                         length_checked=bool(sc.engine.max_model_len
                                             or not sc.allow_beyond_context))
        update |= {"fits": fit.fits, "runnable": fit.fits, "not_runnable_reason": None,
                   "max_concurrent_sequences": float(fit.max_concurrent_sequences)}
        update["engine"] |= {"starts": fit.starts, "holds_request": fit.holds_request,
                             "max_concurrent_sequences": fit.max_concurrent_sequences}
        if not fit.fits:
            warnings = [w for w in warnings if not w.startswith("does not fit:")]
            # why it fails to start is already a problem of its memory plan when it names it
            said = fit.reasons[len(fit.start_reasons):] if mem.problems else fit.reasons
            warnings.append(f"{mem.engine}: does not fit: " + "; ".join(
                said or ["the engine fails to start (above)"]))
            update["not_runnable_reason"] = (
                f"{mem.engine} fails to start: " + "; ".join(mem.problems or fit.start_reasons)
                if not fit.starts else f"{mem.engine}: " + "; ".join(fit.reasons))
        elif not pred.fits:  # the engine's budget, not perfmodel's generic one, decides
            warnings = [w for w in warnings if not w.startswith("does not fit:")]
    if sc.kind == "inference":  # SGLang's scheduler figures per attention-DP rank, as it logs them
        from .engine_report import sglang_startup_for

        update["engine"] = sglang_startup_for(update["engine"], sc)
    update["warnings"] = warnings
    return pred.model_copy(update=update)
