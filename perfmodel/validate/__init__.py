"""`perfmodel validate`: predictions against published end-to-end measurements.

Each case in ``validation/{training,inference}/*.yaml`` is one published number (with its
citation), the metric it measures, and a scenario describing the run as its source describes
it. The harness predicts every scenario, converts the prediction into the source's metric and
FLOP-counting convention (TFLOP/s in Narayanan et al.'s eq. 3 are compared with a predicted
F_eq3 / step time, not with perfmodel's own FLOP count), and reports the absolute percentage
error APE = |predicted - measured| / measured per case, with the median and maximum per kind,
per source file and per metric. Accuracy is a benchmark figure, not a test threshold, and no
constant is ever fitted to these cases (DESIGN.md, "Validation, honestly").

Modules, in the order data flows: ``cases`` (schema, loading) -> ``conventions`` (FLOP
conventions, metric conversion; pure) -> ``aggregate`` (results, summaries; pure) -> ``run``
(predicting) -> ``output`` (text, plot, report file) -> ``cli``. ``measured`` is the
on-machine end-to-end check (`perfmodel validate --measure cpu|cuda`; torch only there).
"""

from __future__ import annotations

from .aggregate import CaseResult, build_report, summarize
from .cases import (
    CANONICAL_UNIT,
    FLOP_METRICS,
    INFERENCE_METRICS,
    KINDS,
    METRIC_DIMENSION,
    TRAINING_METRICS,
    UNITS,
    Case,
    CaseFile,
    CaseSource,
    Convention,
    InferenceMetric,
    LoadedCase,
    Measured,
    TrainingMetric,
    case_files,
    case_scenario,
    load_case_file,
    load_cases,
    validation_root,
)
from .cli import run_cli
from .conventions import (
    ape,
    flops_per_step,
    korthikanti_hw_flops,
    llmfoundry_flops,
    megatron_model_flops,
    metric_value,
    narayanan_eq3_flops,
    six_nd_flops,
)
from .output import plot_report, render, write_json_atomic
from .run import run_case, run_cases, validate_published

__all__ = [
    "CANONICAL_UNIT", "FLOP_METRICS", "INFERENCE_METRICS", "KINDS", "METRIC_DIMENSION",
    "TRAINING_METRICS", "UNITS", "Case", "CaseFile", "CaseResult", "CaseSource", "Convention",
    "InferenceMetric", "LoadedCase", "Measured", "TrainingMetric", "ape", "build_report",
    "case_files", "case_scenario", "flops_per_step", "korthikanti_hw_flops", "llmfoundry_flops",
    "load_case_file", "load_cases", "megatron_model_flops", "metric_value",
    "narayanan_eq3_flops", "plot_report", "render", "run_case", "run_cases", "run_cli",
    "six_nd_flops", "summarize", "validate_published", "validation_root", "write_json_atomic",
]
