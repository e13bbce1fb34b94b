"""`perfmodel validate`: predictions against published end-to-end measurements.

Each case in ``validation/{training,inference}/*.yaml`` is one published number (with its
citation), the metric it measures, and a scenario describing the run as its source describes
it. The harness predicts every scenario, converts the prediction into the source's metric and
FLOP-counting convention (TFLOP/s in Narayanan et al.'s eq. 3 are compared with a predicted
F_eq3 / step time, not with perfmodel's own FLOP count), and reports the absolute percentage
error APE = |predicted - measured| / measured per case, with the median and maximum per kind,
per source file and per metric. Accuracy is a benchmark figure, not a test threshold, and no
constant is ever fitted to these cases (DESIGN.md, "Validation, honestly").

Layout: case schema -> FLOP conventions and metrics (pure) -> aggregation (pure) -> loading and
running (I/O) -> rendering, plot, report file and CLI (I/O).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from .errors import PerfModelError, SpecError
from .prediction import Prediction
from .specs.common import Strict
from .specs.loading import read_mapping, validate
from .specs.model import ModelSpec
from .specs.scenario import Scenario

# ---- case schema ----------------------------------------------------------------------------

TrainingMetric = Literal["step_time_s", "tokens_per_s", "tokens_per_s_per_gpu",
                         "tflops_per_gpu", "mfu", "peak_memory_gib"]
InferenceMetric = Literal["ttft_s", "tpot_s", "e2e_latency_s", "output_tokens_per_s",
                          "output_tokens_per_s_per_gpu", "decode_tokens_per_s",
                          "prefill_tokens_per_s"]
TRAINING_METRICS = get_args(TrainingMetric)
INFERENCE_METRICS = get_args(InferenceMetric)
Convention = Literal["megatron_model", "narayanan_eq3", "korthikanti_hw", "llmfoundry", "6nd"]
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
}
CANONICAL_UNIT = {"time": "s", "rate": "tokens/s", "rate_per_gpu": "tokens/s per GPU",
                  "flops_per_gpu": "TFLOP/s per GPU", "fraction": "fraction", "memory": "GiB"}
METRIC_DIMENSION = {
    "step_time_s": "time", "tokens_per_s": "rate", "tokens_per_s_per_gpu": "rate_per_gpu",
    "tflops_per_gpu": "flops_per_gpu", "mfu": "fraction", "peak_memory_gib": "memory",
    "ttft_s": "time", "tpot_s": "time", "e2e_latency_s": "time",
    "output_tokens_per_s": "rate", "output_tokens_per_s_per_gpu": "rate_per_gpu",
    "decode_tokens_per_s": "rate", "prefill_tokens_per_s": "rate",
}
FLOP_METRICS = ("tflops_per_gpu", "mfu")


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
        if kind != self.kind:
            raise SpecError(f"scenario.kind must be {self.kind!r} for metric {self.metric!r}, "
                            f"got {kind!r}")
        return self

    @property
    def kind(self) -> str:
        return "training" if self.metric in TRAINING_METRICS else "inference"


class CaseFile(Strict):
    """A file of cases: an optional citation shared by all cases, then the cases."""

    source: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class LoadedCase:
    case: Case
    file: Path

    @property
    def group(self) -> str:
        """The source file's stem: the unit results are grouped and coloured by."""
        return self.file.stem


# ---- FLOP conventions (pure) ----------------------------------------------------------------


def megatron_model_flops(B: float, s: float, L: float, h: float, V: float) -> float:
    """Model FLOPs per step of a GPT (Korthikanti et al. 2022, arXiv 2205.05198, eq. 7):
    72 B s L h^2 (1 + s/(6h) + V/(12 h L)); GEMMs only, no recompute, attention non-causal."""
    return 72.0 * B * s * L * h * h * (1.0 + s / (6.0 * h) + V / (12.0 * h * L))


def narayanan_eq3_flops(B: float, s: float, L: float, h: float, V: float) -> float:
    """FLOPs per step as Narayanan et al. 2021 (arXiv 2104.04473) eq. 3 counts them:
    96 B s l h^2 (1 + s/(6h) + V/(16 l h)); includes the recompute forward of full activation
    recomputation. Megatron-DeepSpeed's TFLOPs log (BLOOM, checkpoint factor 4) is the same."""
    return 96.0 * B * s * L * h * h * (1.0 + s / (6.0 * h) + V / (16.0 * L * h))


def korthikanti_hw_flops(B: float, s: float, L: float, h: float, V: float) -> float:
    """Hardware FLOPs per step with selective recomputation (Korthikanti et al. 2022, eq. 8):
    72 B s L h^2 (1 + s/(3h) + V/(12 h L)); the attention core is run twice."""
    return 72.0 * B * s * L * h * h * (1.0 + s / (3.0 * h) + V / (12.0 * h * L))


def llmfoundry_flops(B: float, s: float, L: float, d: float, n_params: float) -> float:
    """FLOPs per step as llm-foundry's benchmarking/collect_results.py counts them for MFU:
    per sequence 3 * (2 N s) + 3 * (L * 2 * 2 * d * s^2), i.e. 6N + 12 L d s per token
    (attention non-causal, N = all parameters incl. embeddings)."""
    return B * (6.0 * n_params * s + 12.0 * L * d * s * s)


def six_nd_flops(B: float, s: float, n_active: float) -> float:
    """6 N D (Kaplan et al. 2020): 6 x active parameters x tokens."""
    return 6.0 * n_active * B * s


def flops_per_step(convention: str, model: ModelSpec, seq_len: float,
                   global_batch: float) -> float:
    """FLOPs of one optimizer step counted the way ``convention``'s source counts them."""
    B, s = float(global_batch), float(seq_len)
    L, h, V = model.num_layers, model.hidden_size, model.vocab_size
    if convention == "megatron_model":
        return megatron_model_flops(B, s, L, h, V)
    if convention == "narayanan_eq3":
        return narayanan_eq3_flops(B, s, L, h, V)
    if convention == "korthikanti_hw":
        return korthikanti_hw_flops(B, s, L, h, V)
    if convention == "llmfoundry":
        return llmfoundry_flops(B, s, L, h, model.num_params())
    if convention == "6nd":
        return six_nd_flops(B, s, model.num_active_params())
    raise SpecError(f"unknown flops_convention {convention!r}")


# ---- metrics (pure) -------------------------------------------------------------------------


def metric_value(case: Case, pred: Prediction, sc: Scenario) -> float:
    """The prediction expressed as the case's metric, in the metric's canonical unit."""
    m, n = case.metric, pred.num_gpus
    if case.kind == "training":
        t = sc.training
        assert t is not None and pred.step_time_s is not None
        step = pred.step_time_s
        if m == "step_time_s":
            return step
        if m == "tokens_per_s":
            return t.global_batch * t.seq_len / step
        if m == "tokens_per_s_per_gpu":
            return t.global_batch * t.seq_len / step / n
        if m == "peak_memory_gib":
            return pred.memory_per_gpu_bytes / 2**30
        flops = flops_per_step(case.flops_convention or "", sc.model, t.seq_len, t.global_batch)
        per_gpu = flops / step / n
        if m == "tflops_per_gpu":
            return per_gpu / 1e12
        assert m == "mfu" and case.peak_tflops is not None
        return per_gpu / (case.peak_tflops * 1e12)
    inf = sc.inference
    assert inf is not None
    p = sc.parallelism
    replicas = max(n // (p.tp * p.pp), 1)
    if m == "ttft_s":
        return pred.ttft_s
    if m == "tpot_s":
        return pred.tpot_s
    if m == "e2e_latency_s":
        return pred.e2e_latency_s
    if m in ("output_tokens_per_s", "output_tokens_per_s_per_gpu"):
        # fixed-batch throughput: every sequence's generated tokens over the whole request
        # (TensorRT-LLM gptSessionBenchmark: batch x output_len / latency, context included)
        rate = replicas * inf.batch * inf.output_len / pred.e2e_latency_s
        return rate / n if m.endswith("per_gpu") else rate
    if m == "decode_tokens_per_s":
        return replicas * inf.batch / pred.tpot_s
    if m == "prefill_tokens_per_s":
        return replicas * inf.batch * inf.prompt_len / pred.ttft_s
    raise SpecError(f"unknown metric {m!r}")  # pragma: no cover - the schema forbids it


def ape(predicted: float, measured: float) -> float:
    """Absolute percentage error as a fraction: |predicted - measured| / measured."""
    return abs(predicted - measured) / measured


# ---- results and aggregation (pure) ---------------------------------------------------------


@dataclass
class CaseResult:
    id: str
    source: str  # case file stem
    kind: str
    metric: str
    unit: str  # canonical unit of predicted / measured
    measured: float
    predicted: float | None
    ape: float | None
    status: Literal["ok", "error"]
    error: str | None = None
    measured_as_printed: str = ""
    warnings: list[str] = field(default_factory=list)
    assumptions: int = 0
    model: str | None = None
    device: str | None = None
    num_gpus: int | None = None
    fits: bool | None = None
    calibration: str | None = None
    citation: str = ""


def _stats(results: Sequence[CaseResult]) -> dict[str, Any]:
    ok = [r for r in results if r.status == "ok" and r.ape is not None]
    apes = [r.ape for r in ok]
    worst = max(ok, key=lambda r: r.ape).id if ok else None
    return {"count": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "median_ape": statistics.median(apes) if apes else None,
            "max_ape": max(apes) if apes else None, "worst_case": worst}


def summarize(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Median and maximum APE overall, per kind, per source file and per metric (cases that
    errored are counted but carry no APE)."""

    def grouped(key: str) -> dict[str, Any]:
        keys = sorted({getattr(r, key) for r in results})
        return {k: _stats([r for r in results if getattr(r, key) == k]) for k in keys}

    return {"overall": _stats(results), "by_kind": grouped("kind"),
            "by_source": grouped("source"), "by_metric": grouped("metric")}


def build_report(results: Sequence[CaseResult]) -> dict[str, Any]:
    """The JSON document of ``perfmodel validate --json`` and validation/report.json."""
    from . import __version__

    summary = summarize(results)
    overall = summary["overall"]
    return {
        "perfmodel_version": __version__,
        "cases": [asdict(r) for r in results],
        "median_ape": overall["median_ape"],
        "max_ape": overall["max_ape"],
        "count": overall["count"],
        "errors": overall["errors"],
        **{k: v for k, v in summary.items() if k != "overall"},
        "note": "APE = |predicted - measured| / measured (fractions); median/max over cases "
                "that ran. Predictions use each device's shipped calibration profile; no "
                "constant is fitted to these cases.",
    }


# ---- loading (I/O) --------------------------------------------------------------------------


def validation_root() -> Path:
    from .paths import data_dir

    return data_dir("validation")


def case_files(root: Path | None = None, kind: str = "all") -> list[Path]:
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
        out.append(LoadedCase(validate(Case, merged, what=label), path))
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
    """The case's scenario, validated; relative paths resolve against the case file."""
    from .api import as_scenario

    data = {**lc.case.scenario, "base_dir": str(lc.file.resolve().parent)}
    return as_scenario(data)


# ---- running ----------------------------------------------------------------------------------


def run_case(lc: LoadedCase) -> CaseResult:
    """Predict one case; a bad scenario or an unsupported plan becomes an 'error' row."""
    from .api import predict

    c = lc.case
    unit = CANONICAL_UNIT[METRIC_DIMENSION[c.metric]]
    where = " ".join(x for x in (c.source.title, c.source.location) if x)
    row = CaseResult(id=c.id, source=lc.group, kind=c.kind, metric=c.metric, unit=unit,
                     measured=c.measured.canonical, predicted=None, ape=None, status="error",
                     measured_as_printed=f"{c.measured.value:g} {c.measured.unit}",
                     assumptions=len(c.assumptions), citation=where)
    try:
        sc = case_scenario(lc)
        row.model, row.num_gpus = sc.model.id, sc.system.num_gpus
        row.device = sc.system.device
        pred = predict(sc)
        value = metric_value(c, pred, sc)
    except PerfModelError as err:
        row.error = str(err)
        return row
    except Exception as err:  # a bug in the core must not stop the other cases
        row.error = f"internal error ({type(err).__name__}): {err}"
        return row
    if not math.isfinite(value) or value <= 0:
        row.error = f"prediction is not a positive finite number: {value!r}"
        return row
    row.predicted, row.ape, row.status = value, ape(value, row.measured), "ok"
    row.warnings = [w for w in pred.warnings if not w.startswith("uncalibrated")]
    row.fits = pred.fits
    row.calibration = pred.calibration.get("id") or pred.calibration.get("label")
    return row


def run_cases(cases: Iterable[LoadedCase]) -> list[CaseResult]:
    return [run_case(lc) for lc in cases]


# ---- rendering, plot, report file -------------------------------------------------------------


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e5 or ax < 1e-3:
        return f"{x:.3g}"
    if ax >= 100:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def render(report: dict[str, Any]) -> str:
    """Plain-text tables: one row per case, then the aggregates."""
    from .report import table

    out = []
    for kind in KINDS:
        rows = [r for r in report["cases"] if r["kind"] == kind]
        if not rows:
            continue
        out.append(f"{kind} cases")
        lines = []
        for r in rows:
            if r["status"] == "ok":
                flag = "" if r["fits"] in (None, True) else " (does not fit)"
                lines.append((r["id"], r["metric"], _fmt(r["predicted"]), _fmt(r["measured"]),
                              r["unit"], f"{100 * r['ape']:.1f}%{flag}"))
            else:
                msg = r["error"] or ""
                lines.append((r["id"], r["metric"], "error", _fmt(r["measured"]), r["unit"],
                              "error: " + msg[:70] + ("..." if len(msg) > 70 else "")))
        out.append(table(lines, header=("id", "metric", "predicted", "measured", "unit", "APE")))
        out.append("")

    def agg_rows(groups: dict[str, Any]) -> list[tuple]:
        return [(k, v["ok"], v["errors"],
                 "-" if v["median_ape"] is None else f"{100 * v['median_ape']:.1f}%",
                 "-" if v["max_ape"] is None else f"{100 * v['max_ape']:.1f}%",
                 v["worst_case"] or "-") for k, v in groups.items()]

    header = ("", "ran", "errors", "median APE", "max APE", "worst case")
    overall = {"count": report["count"], "errors": report["errors"],
               "ok": report["count"] - report["errors"], "median_ape": report["median_ape"],
               "max_ape": report["max_ape"], "worst_case": None}
    out.append(table(agg_rows({**report["by_kind"], "all": overall}), header=header))
    out.append("")
    out.append(table(agg_rows(report["by_source"]), header=("source", *header[1:])))
    out.append("")
    out.append(table(agg_rows(report["by_metric"]), header=("metric", *header[1:])))
    out.append("")
    out.append("APE = |predicted - measured| / measured. " + report["note"].split(". ", 1)[1])
    return "\n".join(out)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Predicted vs measured, log-log, one panel per kind, coloured by source file, with the
    y = x line and +-10 % / +-25 % bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["cases"] if r["status"] == "ok"]
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)] or ["training"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 6), squeeze=False)
    sources = sorted({r["source"] for r in rows})
    cmap = plt.get_cmap("tab20")
    colour = {s: cmap(i % 20) for i, s in enumerate(sources)}
    for ax, kind in zip(axes[0], kinds, strict=True):
        mine = [r for r in rows if r["kind"] == kind]
        values = [v for r in mine for v in (r["predicted"], r["measured"])] or [1.0, 10.0]
        lo, hi = min(values) / 2, max(values) * 2
        xs = [lo, hi]
        ax.fill_between(xs, [x * 0.75 for x in xs], [x * 1.25 for x in xs], color="0.92",
                        label="±25 %")
        ax.fill_between(xs, [x * 0.9 for x in xs], [x * 1.1 for x in xs], color="0.82",
                        label="±10 %")
        ax.plot(xs, xs, color="0.3", lw=1, label="y = x")
        for s in sources:
            pts = [r for r in mine if r["source"] == s]
            if pts:
                ax.scatter([r["measured"] for r in pts], [r["predicted"] for r in pts], s=18,
                           color=colour[s], label=s, edgecolor="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured (s, tokens/s, TFLOP/s, fraction or GiB)")
        ax.set_ylabel("predicted (same unit)")
        stats = report["by_kind"].get(kind, {})
        med, mx = stats.get("median_ape"), stats.get("max_ape")
        title = f"{kind}: {stats.get('ok', 0)} cases"
        if med is not None:
            title += f", median APE {100 * med:.1f} %, max {100 * mx:.0f} %"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is for everyone to read
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=float)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def validate_published(kind: str = "all", match: str | None = None,
                       root: Path | None = None) -> dict[str, Any]:
    """Load, predict and summarise the published cases: the report as a dict."""
    cases = load_cases(root, kind, match)
    if not cases:
        what = f" matching {match!r}" if match else ""
        raise PerfModelError(f"no {kind if kind != 'all' else ''} validation case{what} found "
                             f"under {root or validation_root()}".replace("  ", " "))
    return build_report(run_cases(cases))


def run_cli(args) -> int:
    """``perfmodel validate [--json] [--plot FILE] [--kind K] [--case TEXT] [--write]``;
    ``--measure cpu|cuda`` hands over to the on-machine end-to-end check instead."""
    if getattr(args, "measure", None):
        from .calibrate.e2e import run_cli as measure_cli

        return measure_cli(args)
    if getattr(args, "calibration", None):
        raise PerfModelError("--calibration is used with --measure; published cases are "
                             "predicted with each device's shipped calibration profile")
    report = validate_published(kind=getattr(args, "kind", "all") or "all",
                                match=getattr(args, "case", None))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, default=float))
    else:
        print(render(report))
    if getattr(args, "plot", None):
        out = plot_report(report, args.plot)
        print(f"plot written to {out}", file=sys.stderr)
    if getattr(args, "write", False):
        out = write_json_atomic(report, validation_root() / "report.json")
        print(f"report written to {out}", file=sys.stderr)
    return 0
