"""One predictor per scenario kind that runs the core directly: resolved inputs (``resolve``)
through the core (``training``, ``inference``) to a Prediction (``explain``). ``api.predict``
dispatches here; the serving simulator calls ``predict_inference`` for its zero-load baseline.
"""

from __future__ import annotations

from .explain import inference_prediction, training_prediction
from .inference import inference
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
    inp = inference_inputs(rs.scenario, rs.system, rs.profile)
    r = inference(rs.scenario.model, rs.system, inp.plan, rs.profile, keep_ops=True,
                  draft=inp.draft, offload_bandwidth=inp.offload_bandwidth)
    return inference_prediction(rs, r)
