"""The throughput-vs-interactivity curve: one closed-loop benchmark per concurrency.

Engines and hardware are compared by sweeping the client concurrency of a serving benchmark
(``vllm bench serve --max-concurrency C`` for C = 1, 2, 4, ...; SemiAnalysis InferenceMAX
plots tokens/s per GPU against tokens/s per user = 1000 / TPOT in ms, ``utils/
process_result.py``). Every point here is the closed-loop simulation of ``bench.py`` on one
deployment: the iteration cost tables and the KV pool are built once, then each concurrency
runs the first N requests of one workload (N = max(num_requests, 10 x C), so a point has ten
rounds of its clients at least, and small points share their requests with large ones).

``sweep_concurrency`` is the Python API; ``perfmodel sweep-concurrency`` prints a table and
writes JSON / CSV atomically (``perfmodel.atomic``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import numbers
from collections.abc import Callable
from pathlib import Path

from ..argtypes import Invalid, api_keyword, bounded_int, int_list, positive_int
from ..atomic import write_texts_atomic
from ..errors import SpecError
from ..resolve import CalibrationLike, ScenarioLike, as_scenario, resolve
from ..specs.scenario import ArrivalConfig, BenchmarkClientConfig
from ..specs.types import MAX_REQUESTS
from ..textfmt import table
from .bench import benchmark_metrics
from .clients import load_client, uses_windows
from .predict import deployment_for, serving_inputs
from .workload import DEFAULT_NUM_REQUESTS, Workload

DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ROUNDS = 10  # requests per client at least, per point

COLUMNS = (  # (key in a point, CSV / table header)
    ("max_concurrency", "concurrency"),
    ("completed", "requests"),
    ("request_throughput", "req_per_s"),
    ("output_throughput", "output_tok_per_s"),
    ("output_throughput_per_gpu", "output_tok_per_s_per_gpu"),
    ("total_token_throughput_per_gpu", "total_tok_per_s_per_gpu"),
    ("output_throughput_per_user", "tok_per_s_per_user"),
    ("median_ttft_ms", "median_ttft_ms"),
    ("p99_ttft_ms", "p99_ttft_ms"),
    ("median_tpot_ms", "median_tpot_ms"),
    ("p99_tpot_ms", "p99_tpot_ms"),
    ("median_itl_ms", "median_itl_ms"),
    ("mean_e2el_ms", "mean_e2el_ms"),
    ("preemptions", "preemptions"),
)


def sweep_concurrency(scenario: ScenarioLike, concurrency=DEFAULT_CONCURRENCY,
                      calibration: CalibrationLike = None,
                      num_requests: int | None = None) -> dict:
    """Closed-loop benchmarks of a serving scenario at each client ``concurrency``.

    The scenario's arrival process is replaced by a closed loop (a trace keeps giving the
    lengths); ``concurrency`` is whole numbers >= 1 (a list, one number or "1,2,4");
    ``num_requests`` (default: the scenario's, else 1000) is raised to 10 x C per point.
    Returns ``{"scenario", "device", "num_gpus", "points": [...]}``, each point the
    ``serving.benchmark`` keys of that run plus ``preemptions``. A bad input is one SpecError
    naming its keyword (``concurrency=``) and what is valid."""
    return sweep(scenario, concurrency, calibration, num_requests, api_keyword)


def cli_flag(name: str) -> str:
    """How ``perfmodel sweep-concurrency`` names an input: ``num_requests`` -> ``--num-requests``."""
    return "--" + name.replace("_", "-")


def sweep(scenario: ScenarioLike, concurrency=DEFAULT_CONCURRENCY,
          calibration: CalibrationLike = None, num_requests: int | None = None,
          name: Callable[[str], str] = api_keyword) -> dict:
    """``sweep_concurrency``; ``name`` turns an input's name into the caller's word for it in
    an error (``api_keyword``: ``concurrency=``; ``cli_flag``: ``--concurrency``)."""
    levels = _levels(concurrency, name)
    if num_requests is not None:
        num_requests = _whole(num_requests, bounded_int(1, MAX_REQUESTS),
                              name("num_requests"), _given(name, "num_requests", 1000))
    sc = as_scenario(scenario)
    if sc.kind != "serving" or sc.serving is None:
        raise SpecError(f"a concurrency sweep needs a serving scenario (kind: serving); "
                        f"{_which(scenario, sc)} is kind {sc.kind!r}")
    srv = sc.serving
    base = num_requests or srv.num_requests or DEFAULT_NUM_REQUESTS
    total = max(base, ROUNDS * max(levels)) + srv.warmup_requests
    if total > MAX_REQUESTS:
        room = MAX_REQUESTS - srv.warmup_requests  # measured requests a simulation holds
        if ROUNDS * max(levels) > base:
            raise SpecError(f"{name('concurrency')}: {max(levels):,} clients need {total:,} "
                            f"requests ({ROUNDS} per client and {srv.warmup_requests:,} warm-up), "
                            f"more than the {MAX_REQUESTS:,} a simulation takes; give at most "
                            f"{room // ROUNDS:,}")
        raise SpecError(f"{name('num_requests')}: {base:,} requests and "
                        f"{srv.warmup_requests:,} warm-up are more than the {MAX_REQUESTS:,} a "
                        f"simulation takes; give at most {room:,}")
    arr = srv.arrival
    closed = ArrivalConfig(process="closed", concurrency=max(levels),
                           trace=arr.trace if arr.process in ("trace", "closed") else None)
    sc = sc.model_copy(update={"serving": srv.model_copy(
        update={"arrival": closed, "num_requests": total})})
    cfg = srv.benchmark or BenchmarkClientConfig()
    client = load_client(cfg.client)
    if uses_windows(client, cfg.measurement_interval_ms):
        raise SpecError(f"serving.benchmark: sweep-concurrency measures every request; "
                        f"{client.id}'s time windows (measurement_interval_ms) are measured by "
                        "perfmodel predict one concurrency at a time")
    rs = resolve(sc, calibration)
    sc = rs.scenario  # as predict runs it (the engine's state dtypes: resolve.with_engine_state)
    inf, wl = serving_inputs(sc)
    dep = deployment_for(sc, rs.system, rs.profile, inf, wl)
    wl = dep.served(wl)  # a short pool's request limit (serving/limits.py): as it is served
    from .capacity import band_baseline, benchmark_ranges, serving_bands

    device = rs.system.device.id
    zero = band_baseline(sc, dep, rs.profile, wl)
    bands = serving_bands(sc, device, dep, rs.profile, wl, base=zero)  # as predict's
    points = []
    for c in levels:
        n = min(len(wl), max(base, ROUNDS * c) + wl.warmup)
        part = Workload(wl.arrival[:n], wl.prompt[:n], wl.output[:n], c, wl.warmup,
                        warmup_phase=wl.warmup_phase)
        res = dep.simulate(part)
        point = benchmark_metrics(res.reqs, dep.num_gpus, c, client)
        point["preemptions"] = int(res.reqs.preemptions.sum())
        # predict's bands of this closed loop: its end-to-end band weighted by this point's
        # median TTFT and E2E (the TTFT / TPOT bands do not depend on the point)
        at = serving_bands(sc, device, dep, rs.profile, wl, _ms(point, "median_ttft_ms"),
                           _ms(point, "median_e2el_ms"), zero)
        point["ranges"] = benchmark_ranges(point, at)
        points.append(point)
    return {"scenario": sc.name, "model": sc.model.id, "device": rs.system.device.id,
            "num_gpus": dep.num_gpus, "scheduler": dep.scheduler.kind,
            "range_basis": {q: how for q, (_r, how) in bands.items()},
            "prompt_len_mean": float(wl.prompt.mean()),
            "output_len_mean": float(wl.output.mean()),
            "warnings": rs.warnings, "points": points}


def _which(scenario: ScenarioLike, sc) -> str:
    """The scenario as the caller gave it, for a message: its file, else its name, else
    "the scenario" (a mapping or Scenario without ``name:``)."""
    if isinstance(scenario, (str, Path)):
        return str(scenario)
    return f"scenario {sc.name!r}" if sc.name else "the scenario (it has no name:)"


def _ms(point: dict, key: str) -> float | None:
    """``point[key]`` (ms) in seconds; None when absent or not positive."""
    v = point.get(key)
    return v / 1e3 if isinstance(v, (int, float)) and v > 0 else None


def _given(name: Callable[[str], str], key: str, value: str) -> str:
    """An input with a value as the caller writes it: ``--concurrency 1,2,4,8`` or
    ``concurrency=[1, 2, 4, 8]``."""
    word = name(key)
    return f"{word}{value}" if word.endswith("=") else f"{word} {value}"


def _whole(value, parse: Callable[[str], int], what: str, example: str) -> int:
    """One whole number (an int, or its text) through ``parse``; a SpecError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise SpecError(f"{what}: {value!r:.60} is not a whole number; e.g. {example}")
    try:
        return parse(str(int(value)) if isinstance(value, numbers.Integral) else str(value))
    except Invalid as err:
        raise SpecError(f"{what}: {err}; e.g. {example}") from None


def _levels(concurrency, name: Callable[[str], str] = api_keyword) -> list[int]:
    """The client counts: whole numbers >= 1, as a list, one number or "1,2,4,8"."""
    what = name("concurrency")
    example = _given(name, "concurrency", "1,2,4,8" if what.startswith("--") else "[1, 2, 4, 8]")
    if isinstance(concurrency, str):
        items: list = [s.strip() for s in concurrency.split(",")]
    elif isinstance(concurrency, (numbers.Real, bool)):
        items = [concurrency]
    else:
        try:
            items = list(concurrency)
        except TypeError:
            raise SpecError(f"{what}: {concurrency!r:.60} is not a list of whole numbers >= 1; "
                            f"e.g. {example}") from None
    if not items:
        raise SpecError(f"{what}: no concurrency given; whole numbers >= 1, e.g. {example}")
    return sorted({_whole(c, positive_int, what, example) for c in items})


#: the columns with an 80 % band (a point's ``ranges``, as the table and JSON give them):
#: each adds ``<header>_lo`` and ``<header>_hi`` after COLUMNS, in this order (an empty cell
#: where a point has no band)
BANDED_COLUMNS = tuple((k, h) for k, h in COLUMNS
                       if k not in ("max_concurrency", "completed", "preemptions"))


def to_csv(result: dict) -> str:
    """One row per concurrency: COLUMNS, then the 80 % band of each of BANDED_COLUMNS."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([h for _, h in COLUMNS]
               + [f"{h}_{end}" for _, h in BANDED_COLUMNS for end in ("lo", "hi")])
    for p in result["points"]:
        ranges = p.get("ranges") or {}
        ends = [band[i] if band else ""
                for band in (ranges.get(k) for k, _ in BANDED_COLUMNS) for i in (0, 1)]
        w.writerow(["" if p.get(k) is None else p.get(k) for k, _ in COLUMNS] + ends)
    return buf.getvalue()


def render_sweep(result: dict) -> str:
    head = (f"sweep-concurrency: {result['model']} on {result['num_gpus']} x "
            f"{result['device']}, {result['scheduler']} batching, prompt "
            f"{result['prompt_len_mean']:.0f} / output {result['output_len_mean']:.0f} "
            "tokens (mean), closed loop")

    def f(x, fmt=".1f"):
        return "-" if x is None else format(x, fmt)

    def b(p, key, fmt=".1f"):
        """The value and its 80 % band, 'value [lo-hi]' (the value alone without one)."""
        band = (p.get("ranges") or {}).get(key)
        text = f(p.get(key), fmt)
        return text + (f" [{format(band[0], fmt)}-{format(band[1], fmt)}]" if band else "")

    rows = [(p["max_concurrency"], b(p, "request_throughput", ".2f"),
             b(p, "output_throughput_per_gpu"), b(p, "output_throughput_per_user"),
             b(p, "median_ttft_ms"), b(p, "p99_ttft_ms"),
             b(p, "median_tpot_ms", ".2f"), b(p, "p99_tpot_ms", ".2f"),
             p["preemptions"]) for p in result["points"]]
    body = table(rows, header=("concurrency", "req/s", "tok/s/GPU", "tok/s/user",
                               "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms",
                               "preempted"))
    basis = result.get("range_basis") or {}
    notes = ["[80 % band]: " + "; ".join(f"{q}: {how}" for q, how in basis.items())
             + " (throughputs: the inverse of the e2e band; tok/s/user: of the TPOT band)"
             ] if basis else []
    notes += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join([head, "", body, *notes])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="a serving scenario (its arrival becomes a closed loop)")
    p.add_argument("--concurrency", type=int_list,
                   default=DEFAULT_CONCURRENCY,
                   help="comma-separated client counts (default 1,2,4,...,256)")
    p.add_argument("--num-requests", type=bounded_int(1, MAX_REQUESTS),
                   help="requests per point (default: the scenario's, else 1000; at least "
                        f"{ROUNDS} x concurrency)")
    p.add_argument("--calibration", help="calibration profile JSON")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--csv", metavar="PATH",
                   help="also write the curve as CSV (each banded column's 80 %% band in "
                        "<column>_lo / <column>_hi columns after them)")
    p.add_argument("--out", metavar="PATH", help="also write the result as JSON")


def run_cli(args: argparse.Namespace) -> int:
    result = sweep(args.scenario, args.concurrency, args.calibration, args.num_requests,
                   cli_flag)
    outputs = {}  # written all or none (atomic.write_texts_atomic)
    if args.csv:
        outputs[args.csv] = to_csv(result)
    if args.out:
        outputs[args.out] = json.dumps(result, indent=2, default=float) + "\n"
    write_texts_atomic(outputs)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        print(render_sweep(result))
    return 0
