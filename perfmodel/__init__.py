"""perfmodel: an analytical performance model for LLM training, inference and serving.

Public API::

    import perfmodel as pm
    pred = pm.predict("examples/llama2-7b-decode-a100.yaml")
    pred.tpot_s, pred.breakdown["memory"]

See README.md and docs/ for the model and its references.

The names below are imported on first use (PEP 562), so that ``import perfmodel.ops`` (or the
CLI's ``--help``) does not load the API, the registry of files and everything behind them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import (
        as_scenario,
        benchmark_clients,
        engine_version_families,
        engine_version_sort_key,
        plan_serving,
        predict,
    )
    from .errors import PerfModelError, SpecError
    from .planning.training import TrainingPlanInputs, plan_training
    from .prediction import OpReport, Prediction
    from .profile import CalibrationProfile
    from .serving.sweep import sweep_concurrency
    from .specs.assemble import load_scenario
    from .specs.model import ModelSpec
    from .specs.registry import (
        devices,
        get_device,
        interconnects,
        load_profile,
        models,
        nodes,
    )
    from .specs.scenario import (
        InferenceConfig,
        Parallelism,
        Scenario,
        SystemConfig,
        TrainingConfig,
    )
    from .zoo import get_model

__version__ = "0.1.0"

_HOMES = {
    "as_scenario": "api", "predict": "api", "benchmark_clients": "api",
    "engine_version_families": "api", "engine_version_sort_key": "api",
    "plan_serving": "api",
    "PerfModelError": "errors", "SpecError": "errors",
    "OpReport": "prediction", "Prediction": "prediction",
    "CalibrationProfile": "profile",
    "sweep_concurrency": "serving.sweep",
    "plan_training": "planning.training", "TrainingPlanInputs": "planning.training",
    "ModelSpec": "specs.model",
    "devices": "specs.registry", "get_device": "specs.registry", "get_model": "zoo",
    "interconnects": "specs.registry", "load_profile": "specs.registry",
    "models": "specs.registry", "nodes": "specs.registry",
    "load_scenario": "specs.assemble",
    "InferenceConfig": "specs.scenario", "Parallelism": "specs.scenario",
    "Scenario": "specs.scenario", "SystemConfig": "specs.scenario",
    "TrainingConfig": "specs.scenario",
}

__all__ = [
    "CalibrationProfile", "InferenceConfig", "ModelSpec", "OpReport", "Parallelism",
    "PerfModelError", "Prediction", "Scenario", "SpecError", "SystemConfig", "TrainingConfig",
    "TrainingPlanInputs", "as_scenario", "benchmark_clients", "devices",
    "engine_version_families", "engine_version_sort_key", "get_device", "get_model",
    "interconnects", "load_profile", "load_scenario", "models", "nodes", "plan_serving",
    "plan_training", "predict", "sweep_concurrency",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
