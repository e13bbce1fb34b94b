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
                  draft=inp.draft, offload_bandwidth=inp.offload_bandwidth)
    return with_engine(inference_prediction(rs, r), rs)


def with_engine(pred: Prediction, rs: Resolved) -> Prediction:
    """Add the named engine's start-up memory plan (engine_memory) and its warnings."""
    from . import engine_memory

    mem = engine_memory.for_scenario(rs.scenario, rs.system, rs.profile)
    if mem is None:
        return pred
    warnings = [*pred.warnings, *(f"{mem.engine}: {p}" for p in mem.problems)]
    if mem.device_memory_source != "cuda":
        warnings.append(f"{mem.engine}: device memory as CUDA reports it is not sourced for "
                        f"{rs.system.device.id!r}; the budget uses the "
                        f"{mem.device_memory_source} figure")
    return pred.model_copy(update={"engine": engine_memory.report(mem), "warnings": warnings})
