"""The case schema of validation/{training,inference}/*.yaml, and reading the case files.

A case is one published number (with its citation), the metric it measures, and a scenario
describing the run as its source describes it (validation/README.md). Errors name the file,
the case (index and id) and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from ..errors import SpecError
from ..specs.common import Strict, validate
from ..specs.registry import read_mapping
from ..specs.scenario import Scenario

TrainingMetric = Literal["step_time_s", "tokens_per_s", "tokens_per_s_per_gpu",
                         "tflops_per_gpu", "mfu", "peak_memory_gib"]
InferenceMetric = Literal["ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s",
                          "output_tokens_per_s_per_gpu", "decode_tokens_per_s",
                          "prefill_tokens_per_s",
                          # an engine's start-up log (engine_memory): "GPU KV cache size: N
                          # tokens" / max_total_num_tokens, "Available KV cache memory",
                          # "Loading model weights took" (per GPU)
                          "kv_cache_tokens", "kv_cache_gib", "weights_gib",
                          # a serving benchmark client at fixed concurrency (vllm bench serve,
                          # genai-perf, sglang.bench_serving): statistics over requests
                          "mean_ttft_s", "median_ttft_s", "mean_tpot_s", "median_tpot_s"]
TRAINING_METRICS = get_args(TrainingMetric)
INFERENCE_METRICS = get_args(InferenceMetric)
Convention = Literal["megatron_model", "narayanan_eq3", "korthikanti_hw", "llmfoundry", "6nd"]
#: how a case file's cases are grouped into sources for the error bands and their check
#: (bands.py): "file" (default) -- the file's cases share a setup (one benchmark campaign, one
#: paper's table); "case_source" -- each case is an independent measurement, its source is its
#: own citation (``source_id``: one GitHub thread, one page)
GroupBy = Literal["file", "case_source"]
KINDS = ("training", "inference")

# unit as printed -> (dimension, factor to the canonical unit of that dimension)
UNITS: dict[str, tuple[str, float]] = {
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "tokens/s": ("rate", 1.0),
    "tokens/s per GPU": ("rate_per_gpu", 1.0),
    "TFLOP/s per GPU": ("flops_per_gpu", 1.0),
    "fraction": ("fraction", 1.0),
    "%": ("fraction", 0.01),
    "GiB": ("memory", 1.0),
    "tokens": ("count", 1.0),
}
CANONICAL_UNIT = {"time": "s", "rate": "tokens/s", "rate_per_gpu": "tokens/s per GPU",
                  "flops_per_gpu": "TFLOP/s per GPU", "fraction": "fraction", "memory": "GiB",
                  "count": "tokens"}
METRIC_DIMENSION = {
    "step_time_s": "time", "tokens_per_s": "rate", "tokens_per_s_per_gpu": "rate_per_gpu",
    "tflops_per_gpu": "flops_per_gpu", "mfu": "fraction", "peak_memory_gib": "memory",
    "ttft_s": "time", "tpot_s": "time", "e2e_latency_s": "time",
    "output_tokens_per_s": "rate", "output_tokens_per_s_per_gpu": "rate_per_gpu",
    "decode_tokens_per_s": "rate", "prefill_tokens_per_s": "rate",
    "kv_cache_tokens": "count", "kv_cache_gib": "memory", "weights_gib": "memory",
    "mean_ttft_s": "time", "median_ttft_s": "time", "mean_tpot_s": "time",
    "median_tpot_s": "time",
}
#: metrics read from the engine's start-up memory plan (Prediction.engine)
ENGINE_METRICS = ("kv_cache_tokens", "kv_cache_gib", "weights_gib")
FLOP_METRICS = ("tflops_per_gpu", "mfu")
#: metrics of a closed-loop serving benchmark (Prediction.serving["benchmark"]); their
#: scenario is kind: serving with arrival process closed
SERVING_METRICS = ("mean_ttft_s", "median_ttft_s", "mean_tpot_s", "median_tpot_s")


class Measured(Strict):
    """A published value exactly as printed (e.g. 7 ms, 53.0 %), converted for comparison."""

    value: float = Field(gt=0)
    unit: str

    @field_validator("unit")
    @classmethod
    def _check_unit(cls, unit: str) -> str:
        if unit not in UNITS:
            raise SpecError(f"unit {unit!r} is not one of {sorted(UNITS)}")
        return unit

    @property
    def dimension(self) -> str:
        return UNITS[self.unit][0]

    @property
    def canonical(self) -> float:
        return self.value * UNITS[self.unit][1]


class CaseSource(Strict):
    """Where the number was published and how it was read (merged from file and case)."""

    title: str = Field(min_length=3)
    url: str = Field(min_length=8)
    location: str | None = None  # table / figure / log line inside the source
    read_via: str | None = None
    verification: str | None = None


class Case(Strict):
    """One published measurement and the scenario that reproduces its configuration."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    metric: TrainingMetric | InferenceMetric
    flops_convention: Convention | None = None  # tflops_per_gpu / mfu: the source's FLOP count
    peak_tflops: float | None = Field(default=None, gt=0)  # mfu: the peak the source divides by
    measured: Measured
    source: CaseSource
    assumptions: list[str] = Field(default_factory=list)  # unstated values, and what was used
    notes: str = Field(min_length=1)
    scenario: dict[str, Any]

    @model_validator(mode="after")
    def _check(self) -> Case:
        want = METRIC_DIMENSION[self.metric]
        if self.measured.dimension != want:
            units = [u for u, (d, _) in UNITS.items() if d == want]
            raise SpecError(f"measured.unit {self.measured.unit!r} does not fit metric "
                            f"{self.metric!r}; use one of {units}")
        if self.metric in FLOP_METRICS and self.flops_convention is None:
            raise SpecError(f"flops_convention is required for metric {self.metric!r} (the "
                            "source's FLOP count, e.g. narayanan_eq3 or megatron_model)")
        if self.metric not in FLOP_METRICS and self.flops_convention is not None:
            raise SpecError(f"flops_convention only applies to {FLOP_METRICS}, "
                            f"not to {self.metric!r}")
        if self.metric == "mfu" and self.peak_tflops is None:
            raise SpecError("peak_tflops is required for metric 'mfu' (the peak the source "
                            "divides by, e.g. 312 for A100 bf16)")
        kind = self.scenario.get("kind")
        if self.metric in SERVING_METRICS:
            if kind != "serving":
                raise SpecError(f"scenario.kind must be 'serving' (a closed-loop benchmark) "
                                f"for metric {self.metric!r}, got {kind!r}")
        elif kind != self.kind:
            raise SpecError(f"scenario.kind must be {self.kind!r} for metric {self.metric!r}, "
                            f"got {kind!r}")
        return self

    @property
    def kind(self) -> str:
        return "training" if self.metric in TRAINING_METRICS else "inference"


class CaseFile(Strict):
    """A file of cases: an optional citation shared by all cases, how its cases group into
    sources (``GroupBy``), then the cases."""

    source: dict[str, Any] | None = None
    group_by: GroupBy = "file"
    cases: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class LoadedCase:
    """A validated case and the file it came from (relative scenario paths resolve there)."""

    case: Case
    file: Path
    group_by: GroupBy = "file"

    @property
    def group(self) -> str:
        """The source file's stem: the unit results are grouped and coloured by."""
        return self.file.stem

    @property
    def band_source(self) -> str:
        """The source this case counts as in the error bands and their leave-one-source-out
        check: the file's stem, or with ``group_by: case_source`` the stem and the case's own
        citation (``source_id`` of its URL, e.g. 'engine_startup:vllm-project/vllm#2031')."""
        if self.group_by == "case_source":
            return f"{self.group}:{source_id(self.case.source.url)}"
        return self.group


_GITHUB_THREAD = re.compile(r"^https?://github\.com/([^/]+/[^/]+)/(?:issues|pull|discussions)/"
                            r"(\d+)")


def source_id(url: str) -> str:
    """A stable short id of a citation URL: 'owner/repo#N' for a GitHub issue, pull request
    or discussion (its comments and anchors are the same thread), else the URL without its
    scheme, fragment and trailing slash."""
    m = _GITHUB_THREAD.match(url)
    if m:
        return f"{m.group(1)}#{m.group(2)}"
    return re.sub(r"^https?://", "", url.split("#", 1)[0]).rstrip("/")


# ---- loading (I/O) --------------------------------------------------------------------------


def validation_root() -> Path:
    """The shipped validation/ folder (checkout or wheel)."""
    from ..paths import data_dir

    return data_dir("validation")


def case_files(root: Path | None = None, kind: str = "all") -> list[Path]:
    """The case files of ``kind`` under ``root``: ``<root>/{training,inference}/*.yaml``."""
    root = Path(root) if root is not None else validation_root()
    kinds = KINDS if kind == "all" else (kind,)
    files: list[Path] = []
    for k in kinds:
        folder = root / k
        if folder.is_dir():
            files += sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    return files


def load_case_file(path: Path) -> list[LoadedCase]:
    """Read one case file; errors name the file, the case (index and id) and the field."""
    path = Path(path)
    data = validate(CaseFile, read_mapping(path), what=f"case file {path}")
    shared = data.source or {}
    out = []
    for i, raw in enumerate(data.cases):
        label = f"{path}: cases[{i}]" + (f" (id {raw['id']!r})" if "id" in raw else "")
        if not isinstance(raw.get("source", {}), dict):
            raise SpecError(f"{label}: source must be a mapping")
        merged = {**raw, "source": {**shared, **raw.get("source", {})}}
        out.append(LoadedCase(validate(Case, merged, what=label), path, data.group_by))
    return out


def load_cases(root: Path | None = None, kind: str = "all",
               match: str | None = None) -> list[LoadedCase]:
    """Every case under ``root`` (default: the shipped validation/ folder) of ``kind``,
    optionally only those whose id contains ``match``. Case ids must be unique."""
    cases: list[LoadedCase] = []
    seen: dict[str, Path] = {}
    for path in case_files(root, kind):
        for lc in load_case_file(path):
            if lc.case.id in seen:
                raise SpecError(f"{path}: case id {lc.case.id!r} is also used in "
                                f"{seen[lc.case.id]}; ids must be unique")
            seen[lc.case.id] = path
            cases.append(lc)
    if match:
        cases = [c for c in cases if match.lower() in c.case.id.lower()]
    return cases


def case_scenario(lc: LoadedCase) -> Scenario:
    """The case's scenario, validated; relative paths resolve against the case file (a case
    whose measured run went past the model's context says ``allow_beyond_context: true``)."""
    from ..api import as_scenario

    data = {**lc.case.scenario, "base_dir": str(lc.file.resolve().parent)}
    return as_scenario(data)
