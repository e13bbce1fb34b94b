"""perfmodel: an analytical performance model for LLM training, inference and serving.

Public API::

    import perfmodel as pm
    pred = pm.predict("examples/llama2-7b-decode-a100.yaml")
    pred.tpot_s, pred.breakdown["memory"]

See README.md and docs/ for the model and its references.
"""

from .api import as_scenario, predict
from .errors import PerfModelError, SpecError
from .prediction import OpReport, Prediction
from .profile import CalibrationProfile, load_profile
from .specs.model import ModelSpec
from .specs.registry import devices, get_device, get_model, interconnects, models, nodes
from .specs.scenario import (
    InferenceConfig,
    Parallelism,
    Scenario,
    SystemConfig,
    TrainingConfig,
    load_scenario,
)

__version__ = "0.1.0"

__all__ = [
    "CalibrationProfile", "InferenceConfig", "ModelSpec", "OpReport", "Parallelism",
    "PerfModelError", "Prediction", "Scenario", "SpecError", "SystemConfig", "TrainingConfig",
    "as_scenario", "devices", "get_device", "get_model", "interconnects", "load_profile",
    "load_scenario", "models", "nodes", "predict",
]
