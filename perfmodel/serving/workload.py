"""Requests to serve: arrival times and prompt / output lengths, reproducible from a seed.

Arrivals: a Poisson process (exponential gaps, the standard open-loop load of vLLM's and
DistServe's benchmarks), a gamma renewal process whose gap coefficient of variation ``cv``
sets burstiness (cv = 1 is Poisson; AlpaServe, Li et al. OSDI 2023, uses gamma arrivals the
same way), or a CSV trace. Lengths: fixed, uniform, or lognormal with a given mean and
coefficient of variation (sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2 / 2).

Each of arrivals, prompts and outputs draws from its own child of the seed (numpy
SeedSequence.spawn), so changing one distribution leaves the other two unchanged.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..specs.registry import MAX_RECORDS_BYTES, read_text
from ..specs.scenario import ArrivalConfig, LengthDistribution, ServingConfig

DEFAULT_NUM_REQUESTS = 1000


@dataclass(frozen=True)
class Workload:
    arrival: np.ndarray  # seconds, non-decreasing, first at >= 0
    prompt: np.ndarray  # tokens (int64)
    output: np.ndarray  # tokens to generate, >= 1 (int64)

    def __len__(self) -> int:
        return int(self.arrival.size)

    @property
    def rate(self) -> float:
        """Mean arrival rate over the workload (requests/s)."""
        span = float(self.arrival[-1] - self.arrival[0]) if len(self) > 1 else 0.0
        return (len(self) - 1) / span if span > 0 else float("inf")


def sample_lengths(dist: LengthDistribution, n: int, rng: np.random.Generator) -> np.ndarray:
    if dist.kind == "fixed":
        out = np.full(n, float(dist.value))
    elif dist.kind == "uniform":
        out = rng.integers(dist.min, dist.max + 1, size=n).astype(float)
    else:
        sigma2 = np.log1p(dist.cv**2)
        mu = np.log(dist.mean) - sigma2 / 2
        out = rng.lognormal(mu, np.sqrt(sigma2), size=n)
    lo = dist.min if dist.min is not None else 1
    hi = dist.max if dist.max is not None else np.inf
    return np.clip(np.rint(out), lo, hi).astype(np.int64)


def arrival_times(cfg: ArrivalConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Cumulative gaps, starting at the first gap (a process observed from t = 0)."""
    rate = cfg.rate_per_s
    if cfg.process == "gamma":
        shape = 1.0 / cfg.cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), size=n)
    else:
        gaps = rng.exponential(1.0 / rate, size=n)
    return np.cumsum(gaps)


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """CSV with a header: prompt_len, output_len and optionally arrival_s (seconds)."""
    text = read_text(path, MAX_RECORDS_BYTES, what="serving.arrival.trace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = {"prompt_len", "output_len"} - set(cols)
        if missing:
            raise SpecError(f"serving.arrival.trace {path}: missing column(s) {sorted(missing)}; "
                            "expected a header prompt_len,output_len[,arrival_s]")
        rows = [{k.strip(): v for k, v in r.items() if k} for r in reader]
    except csv.Error as err:
        raise SpecError(f"serving.arrival.trace {path}: not a CSV table: line "
                        f"{reader.line_num}: {err}") from None
    if not rows:
        raise SpecError(f"serving.arrival.trace {path}: no rows")
    try:
        prompt = np.array([int(float(r["prompt_len"])) for r in rows], dtype=np.int64)
        output = np.array([int(float(r["output_len"])) for r in rows], dtype=np.int64)
        arrival = (np.array([float(r["arrival_s"]) for r in rows])
                   if "arrival_s" in cols else None)
    except (TypeError, ValueError, OverflowError) as err:
        raise SpecError(f"serving.arrival.trace {path}: not a number: {err}") from None
    if (prompt < 1).any() or (output < 1).any():
        raise SpecError(f"serving.arrival.trace {path}: prompt_len and output_len must be >= 1")
    if arrival is not None and (not np.isfinite(arrival).all() or (arrival < 0).any()
                                or (np.diff(arrival) < 0).any()):
        raise SpecError(f"serving.arrival.trace {path}: arrival_s must be finite, >= 0 and "
                        "sorted")
    return prompt, output, arrival


def build_workload(cfg: ServingConfig, base_dir: str | None = None,
                   default_prompt: int | None = None, default_output: int | None = None
                   ) -> Workload:
    """The requests of a serving scenario (lengths fall back to the inference section)."""
    rng_arr, rng_p, rng_o = (np.random.default_rng(s)
                             for s in np.random.SeedSequence(cfg.seed).spawn(3))
    arr = cfg.arrival
    if arr.process == "trace":
        path = Path(arr.trace)
        if not path.is_absolute() and base_dir:
            path = Path(base_dir) / path
        prompt, output, arrival = read_trace(path)
        if cfg.num_requests is not None:
            prompt, output = prompt[:cfg.num_requests], output[:cfg.num_requests]
            arrival = arrival[:cfg.num_requests] if arrival is not None else None
        if arrival is None:
            if arr.rate_per_s is None:
                raise SpecError("serving.arrival: the trace has no arrival_s column; give "
                                "rate_per_s for Poisson arrivals")
            arrival = arrival_times(arr.model_copy(update={"process": "poisson"}), prompt.size,
                                    rng_arr)
        return Workload(np.asarray(arrival, float), prompt, output)
    n = cfg.num_requests or DEFAULT_NUM_REQUESTS
    lengths = []
    for name, dist, default in (("prompt_len", cfg.prompt_len, default_prompt),
                                ("output_len", cfg.output_len, default_output)):
        if dist is None:
            if default is None:
                raise SpecError(f"serving.{name} is required (a number, or a distribution "
                                "{kind: lognormal, mean: ..., cv: ...}) when the scenario has "
                                "no inference section")
            dist = LengthDistribution(kind="fixed", value=default)
        lengths.append(dist)
    return Workload(arrival_times(arr, n, rng_arr), sample_lengths(lengths[0], n, rng_p),
                    sample_lengths(lengths[1], n, rng_o))
