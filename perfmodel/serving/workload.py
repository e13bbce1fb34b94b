"""Requests to serve: arrival times and prompt / output lengths, reproducible from a seed.

Arrivals: a Poisson process (exponential gaps, the standard open-loop load of vLLM's and
DistServe's benchmarks), a gamma renewal process whose gap coefficient of variation ``cv``
sets burstiness (cv = 1 is Poisson; AlpaServe, Li et al. OSDI 2023, uses gamma arrivals the
same way), a CSV trace, or a closed loop of C clients (``concurrency``): the simulator sends
request i + C when a request ends, as ``vllm bench serve --max-concurrency C`` does
(vllm-project/vllm vllm/benchmarks/serve.py, an asyncio.Semaphore(max_concurrency) around
every request), so a closed workload carries lengths only; its arrivals are written by the
simulation. Lengths: fixed, uniform, or lognormal with a given mean and
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

from ..errors import SpecError, shorten
from ..specs.registry import MAX_RECORDS_BYTES, read_text
from ..specs.scenario import ArrivalConfig, LengthDistribution, ServingConfig
from .clients import DEFAULT_CLIENT, load_client

DEFAULT_NUM_REQUESTS = 1000


@dataclass(frozen=True)
class Workload:
    arrival: np.ndarray  # seconds, non-decreasing, first at >= 0 (closed loop: unset, NaN)
    prompt: np.ndarray  # tokens (int64)
    output: np.ndarray  # tokens to generate, >= 1 (int64)
    concurrency: int | None = None  # closed loop: clients, each with one request in flight
    warmup: int = 0  # the first requests (sending order) left out of the metrics
    # measured requests the engine rejected (longer than its max_model_len; ``without``):
    # a benchmark client's failed requests, not simulated
    failed: int = 0
    context_limit: int | None = None  # the max_model_len they exceeded
    # warm-up requests the benchmark client runs as a phase of their own before these
    # (clients/<id>.yaml ``warmup: separate_phase``): not simulated, since the phase is awaited
    # and the measured run starts on an idle server; reported only
    warmup_phase: int = 0
    # of ``failed``: the prompts an engine capping requests to a short KV pool refused, and
    # the measured requests whose output it cut short (serving/limits.py RequestLimit.served)
    pool_refused: int = 0
    truncated: int = 0

    def __len__(self) -> int:
        return int(self.arrival.size)

    @property
    def closed(self) -> bool:
        return self.concurrency is not None

    def with_concurrency(self, concurrency: int) -> Workload:
        """The same requests sent by another number of closed-loop clients (a sweep)."""
        return Workload(self.arrival, self.prompt, self.output, concurrency, self.warmup,
                        self.failed, self.context_limit, self.warmup_phase,
                        self.pool_refused, self.truncated)

    def without(self, rejected: np.ndarray, limit: int | None, pool: bool = False) -> Workload:
        """The requests the engine serves: ``rejected`` ones get an error at once (a closed-
        loop client then sends its next request), so they take no server time; those after
        the warm-up count as failed. ``pool``: refused by a short pool's request limit
        (``pool_refused``), not by max_model_len ``limit``."""
        keep = ~rejected
        failed = int(rejected[self.warmup:].sum())
        return Workload(self.arrival[keep], self.prompt[keep], self.output[keep],
                        self.concurrency, int(keep[:self.warmup].sum()),
                        self.failed + failed, limit, self.warmup_phase,
                        self.pool_refused + (failed if pool else 0), self.truncated)

    @property
    def rate(self) -> float:
        """Mean arrival rate over the workload (requests/s; NaN for a closed loop, whose
        rate is an outcome)."""
        if self.closed:
            return float("nan")
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


def _length(text: str) -> int:
    """A token count as a trace writes it ("512" or "512.0"); not finite: ValueError."""
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(text)
    return int(value)


def _bad_row(where: str, lines: list[int], i: int, column: str, problem: str) -> None:
    """Raise the one-line error for data row ``i`` (0-based) of a trace."""
    raise SpecError(f"{where}: row {i + 1} (line {lines[i]}): {column} {problem}")


def _column(rows: list[dict], lines: list[int], column: str, where: str, parse, dtype
            ) -> np.ndarray:
    """One column of a trace parsed row by row: a bad value names its row and column."""
    values = []
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None or not value.strip():
            _bad_row(where, lines, i, column, "has no value")
        try:
            values.append(np.dtype(dtype).type(parse(value)))
        except OverflowError:
            _bad_row(where, lines, i, column, f"is out of range: {shorten(value)!r}")
        except (TypeError, ValueError):
            _bad_row(where, lines, i, column, f"is not a number: {shorten(value)!r}")
    return np.array(values, dtype=dtype)


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
        rows, lines = [], []  # each row's fields and the CSV line it ends on
        for r in reader:
            rows.append({k.strip(): v for k, v in r.items() if k})
            lines.append(reader.line_num)
    except csv.Error as err:
        raise SpecError(f"serving.arrival.trace {path}: not a CSV table: line "
                        f"{reader.line_num}: {err}") from None
    if not rows:
        raise SpecError(f"serving.arrival.trace {path}: no rows")
    where = f"serving.arrival.trace {path}"
    prompt = _column(rows, lines, "prompt_len", where, _length, np.int64)
    output = _column(rows, lines, "output_len", where, _length, np.int64)
    arrival = _column(rows, lines, "arrival_s", where, float, float) if "arrival_s" in cols \
        else None
    for name, values in (("prompt_len", prompt), ("output_len", output)):
        if (values < 1).any():
            _bad_row(where, lines, int(np.argmax(values < 1)), name, "must be >= 1")
    if arrival is not None:
        bad = ~np.isfinite(arrival) | (arrival < 0)
        if bad.any():
            _bad_row(where, lines, int(np.argmax(bad)), "arrival_s", "must be finite and >= 0")
        back = np.diff(arrival) < 0
        if back.any():
            _bad_row(where, lines, int(np.argmax(back)) + 1, "arrival_s",
                     "must be sorted (it is earlier than the row before)")
    return prompt, output, arrival


def build_workload(cfg: ServingConfig, base_dir: str | None = None,
                   default_prompt: int | None = None, default_output: int | None = None
                   ) -> Workload:
    """The requests of a serving scenario (lengths fall back to the inference section).

    ``serving.warmup_requests`` follow the benchmark client's rule (clients/<id>.yaml
    ``warmup``): ``separate_phase`` (every client on file: ``vllm bench serve --num-warmups``
    awaits its warm-ups with asyncio.gather and then sends all --num-prompts, vllm-project/vllm
    vllm/benchmarks/serve.py at def9ce85 ``benchmark``) measures all num_requests and runs the
    warm-ups before them, extra (``Workload.warmup_phase``)."""
    rng_arr, rng_p, rng_o = (np.random.default_rng(s)
                             for s in np.random.SeedSequence(cfg.seed).spawn(3))
    arr = cfg.arrival
    wl = _build(cfg, arr, base_dir, default_prompt, default_output, rng_arr, rng_p, rng_o)
    client = load_client(cfg.benchmark.client if cfg.benchmark else DEFAULT_CLIENT)
    if client.warmup == "separate_phase":
        return Workload(wl.arrival, wl.prompt, wl.output, arr.concurrency,
                        warmup_phase=cfg.warmup_requests)
    if cfg.warmup_requests >= len(wl):  # warm-ups inside the measured loop
        raise SpecError(f"serving.warmup_requests ({cfg.warmup_requests}) must be below the "
                        f"number of requests ({len(wl)}): some requests must be measured")
    return Workload(wl.arrival, wl.prompt, wl.output, arr.concurrency, cfg.warmup_requests)


def _build(cfg: ServingConfig, arr: ArrivalConfig, base_dir, default_prompt, default_output,
           rng_arr, rng_p, rng_o) -> Workload:
    if arr.process == "closed" and arr.trace:  # lengths from the trace, in its row order
        prompt, output, _ = read_trace(_trace_path(arr, base_dir))
        if cfg.num_requests is not None:
            prompt, output = prompt[:cfg.num_requests], output[:cfg.num_requests]
        return Workload(np.full(prompt.size, np.nan), prompt, output)
    if arr.process == "trace":
        prompt, output, arrival = read_trace(_trace_path(arr, base_dir))
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
    arrival = np.full(n, np.nan) if arr.process == "closed" else arrival_times(arr, n, rng_arr)
    return Workload(arrival, sample_lengths(lengths[0], n, rng_p),
                    sample_lengths(lengths[1], n, rng_o))


def _trace_path(arr: ArrivalConfig, base_dir: str | None) -> Path:
    path = Path(arr.trace)
    if not path.is_absolute() and base_dir:
        path = Path(base_dir) / path
    return path
