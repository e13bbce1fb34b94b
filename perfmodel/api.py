"""The public Python API: scenario in, Prediction out. The CLI and dashboard call only this.

>>> import perfmodel as pm
>>> sc = pm.Scenario(kind="inference", model="llama-2-7b",
...                  system={"device": "a100-sxm4-80gb"},
...                  inference={"batch": 1, "prompt_len": 512, "output_len": 128})
>>> pred = pm.predict(sc)
>>> pred.tpot_s > 0
True

``predict`` only dispatches: ``resolve`` turns the scenario into the core's inputs, a
predictor per kind (``predictors``, ``serving.predict``) runs the core and ``explain`` builds
the Prediction.
"""

from __future__ import annotations

from collections.abc import Callable

from .prediction import Prediction
from .predictors import predict_inference, predict_training
from .resolve import (
    CalibrationLike,
    Resolved,
    ScenarioLike,
    as_scenario,
    offload_bandwidth,
    resolve,
    resolve_profile,
)
from .uncertainty import with_ranges

# re-exported: scripts and the analysis notebooks import these from here
__all__ = ["as_scenario", "offload_bandwidth", "predict", "resolve_profile"]


def predict(scenario: ScenarioLike, calibration: CalibrationLike = None) -> Prediction:
    """Predict a training step, an inference request or a served workload for ``scenario``.

    ``calibration`` (a profile or its path) overrides the scenario's; without either, the
    device's shipped reference profile is used, or the documented default efficiencies.
    """
    rs = resolve(scenario, calibration)
    pred = _PREDICTORS[rs.scenario.kind](rs)
    return with_ranges(pred, rs.profile, rs.scenario)  # 80 % bands (docs/uncertainty.md)


def _predict_serving(rs: Resolved) -> Prediction:
    from .serving.predict import predict_serving  # the simulator loads only when needed

    return predict_serving(rs)


_PREDICTORS: dict[str, Callable[[Resolved], Prediction]] = {
    "training": predict_training, "inference": predict_inference, "serving": _predict_serving,
}
