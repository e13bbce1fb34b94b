"""`perfmodel ...`: a thin command-line layer over the Python API.

Every user error ends in one line on stderr and exit code 2; no traceback reaches the user.
Each command imports what it needs inside its function, so that ``--help`` or
``models list`` do not pay for numpy, the core or the serving simulator (issue 8; figures in
benchmarks/startup.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from .argtypes import (
    address,
    fraction,
    image_path,
    nonnegative_float,
    png_path,
    port,
    positive_float,
    positive_int,
)
from .errors import PerfModelError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=float))


@command("predict")
def _predict(args: argparse.Namespace) -> int:
    from .api import predict
    from .report import render_prediction
    from .resolve import as_scenario
    from .specs.registry import parse_cache

    with parse_cache():  # as plan-training: data files parsed and validated once per content
        scenario = as_scenario(args.scenario)
        pred = predict(scenario, calibration=args.calibration)
    if args.json:
        _print_json(pred.to_json_dict(include_ops=args.ops))
    else:
        print(render_prediction(pred, show_ops=args.ops, scenario=scenario))
    return 0


@command("search")
def _search(args: argparse.Namespace) -> int:
    from .specs.registry import parse_cache

    with parse_cache():  # as plan-training and predict
        return _search_in_cache(args)


def _search_in_cache(args: argparse.Namespace) -> int:
    from .errors import SpecError
    from .report import table
    from .resolve import as_scenario, device_mismatch, resolve_profile
    from .search import search
    from .specs.assemble import resolve_system

    sc = as_scenario(args.scenario)
    if sc.kind != "training":
        raise SpecError("search ranks training plans: give a scenario with kind: training")
    system = resolve_system(sc.system)
    if args.headroom >= 1:
        raise SpecError("--headroom: must be below 1 (a fraction of device memory)")
    profile = resolve_profile(sc, args.calibration)
    for w in device_mismatch(profile, system.device.id):
        print(f"warning: {w}", file=sys.stderr)
    result = search(sc, system, profile, top=args.top, headroom=args.headroom)
    if args.json:
        _print_json(result.to_dict())
        return 0 if result.plans else 1
    from .memory import capacity_basis, memory_capacity_bytes
    from .search import explanation_lines, reproduce_line, search_table

    print(f"{result.evaluated:,} plans considered, {result.valid:,} valid, "
          f"{result.fitting:,} fit in {memory_capacity_bytes(system.device) / 2**30:.2f} GiB "
          f"({capacity_basis(system.device)}) with "
          f"{100 * result.headroom:g} % headroom; best {len(result.plans)} distinct "
          f"({result.duplicates_removed} modelled-identical twins folded):")
    rows, header = search_table(result.plans)
    print(table(rows, header=header))
    for line in explanation_lines(result.explanation):
        print(line)
    if result.plans:
        print("80 % bands: docs/uncertainty.md; reproduce #1 with predict: "
              + reproduce_line(result.plans[0]))
    for w in result.warnings:
        print(f"warning: {w}")
    return 0 if result.plans else 1  # nothing fits: a failure, as plan-training's


@command("hardware")
def _hardware(args: argparse.Namespace) -> int:
    from .report import table
    from .specs import registry

    if args.action == "list":
        if args.interconnects:
            rows = [(i.id, i.kind, f"{i.bandwidth_gbps:g}", i.name)
                    for i in registry.interconnects().values()]
            print(table(rows, header=("id", "kind", "GB/s per dir.", "name")))
        elif args.nodes:
            # NICs x the interconnect of one port; '-' for a node with no scale-out network
            rows = [(n.id, n.gpus_per_node, n.intra_node,
                     f"{n.nics_per_node}x{n.inter_node}" if n.inter_node else "-", n.name)
                    for n in registry.nodes().values()]
            print(table(rows, header=("id", "GPUs", "intra-node", "inter-node", "name")))
        else:
            from .textfmt import peak

            # each dtype's own dense peak, '-' where null (no tensor cores, or not sourced)
            # a device with no sourced peak at all cannot be modelled (DeviceSpec.peak_flops)
            rows = [(d.id, d.vendor, f"{d.memory_gb:g}", f"{d.memory_bandwidth_gbps:g}",
                     *(peak(d.peak_tflops.get(k)) for k in ("bf16", "fp16", "fp8", "fp4")),
                     d.name + ("" if d.supported_dtypes() else " (no sourced peaks: not usable)"))
                    for d in registry.devices().values()]
            print(table(rows, header=("id", "vendor", "memory GB", "HBM GB/s",
                                      "bf16 TFLOP/s", "fp16", "fp8", "fp4", "name")))
        return 0
    if not args.id:
        raise PerfModelError("hardware show needs an id, e.g. `perfmodel hardware show "
                             "h100-sxm5-80gb`")
    for getter in (registry.devices, registry.interconnects, registry.nodes):
        if args.id in getter():
            item = getter()[args.id]
            if args.json:
                _print_json(item.model_dump(exclude_none=True))
            else:
                print(_render_spec(item.model_dump(exclude_none=True)))
            return 0
    from .errors import unknown_id

    # not a device, interconnect or node: the closest ids of all three
    raise unknown_id("hardware id", args.id,
                     [i for kind in ("device", "interconnect", "node") for i in registry.ids(kind)])


def _render_spec(data: dict, indent: str = "") -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_render_spec(value, indent + "  "))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            for item in value:
                lines.append(f"{indent}  - " + "; ".join(f"{k}: {v}" for k, v in item.items()))
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


@command("models")
def _models(args: argparse.Namespace) -> int:
    from .parameters import param_counts, parameter_summary
    from .report import table
    from .specs import registry
    from .zoo import resolve_model

    if args.action == "list":
        rows = []
        for m in registry.models().values():
            pc = param_counts(m)
            rows.append((m.id, m.family, f"{pc.total / 1e9:.2f}B",
                         f"{pc.active / 1e9:.2f}B" if m.moe else "", m.attention_kind,
                         m.num_layers, m.hidden_size))
        print(table(rows, header=("id", "family", "params", "active (incl. embedding)",
                                  "attention", "layers", "hidden")))
        return 0
    if not args.id:
        raise PerfModelError("models show needs an id or a config.json path")
    model = resolve_model(args.id)
    pc = param_counts(model)
    data = model.model_dump(exclude_none=True)
    data["parameters"] = parameter_summary(pc)  # both "active" conventions, named
    if args.json:
        _print_json(data)
    else:
        print(_render_spec(data))
    return 0


@command("validate")
def _validate(args: argparse.Namespace) -> int:
    from .validate import run_cli

    return run_cli(args)


@command("calibrate")
def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate.cli import run_cli

    return run_cli(args)


@command("plan-serving")
def _plan_serving(args: argparse.Namespace) -> int:
    from .serving.cli import run_cli
    from .specs.registry import parse_cache

    with parse_cache():  # as plan-training and predict (MoE curve files: ~1 s a run unkept)
        return run_cli(args)


@command("sweep-concurrency")
def _sweep_concurrency(args: argparse.Namespace) -> int:
    from .serving.sweep import run_cli
    from .specs.registry import parse_cache

    with parse_cache():  # as predict
        return run_cli(args)


@command("plan-training")
def _plan_training(args: argparse.Namespace) -> int:
    from .planning.cli import run_cli

    return run_cli(args)


@command("dashboard")
def _dashboard(args: argparse.Namespace) -> int:
    import subprocess

    return subprocess.call(dashboard_command(args.address, args.port, args.headless))


DASHBOARD_ADDRESS = "127.0.0.1"  # this machine only; --address 0.0.0.0 to share it
DASHBOARD_PORT = 8501


def dashboard_command(address: str = DASHBOARD_ADDRESS, port: int = DASHBOARD_PORT,
                      headless: bool = False) -> list[str]:
    """The ``streamlit run`` command line of ``perfmodel dashboard``."""
    from .paths import data_dir

    app = data_dir("app") / "Home.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.address", address, "--server.port", str(port),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd


class _Parser(argparse.ArgumentParser):
    """Every parse error is one line on stderr naming the flag, and exit code 2."""

    def error(self, message: str):
        from .errors import choice_hint

        self.exit(2, f"{self.prog}: error: {message}{choice_hint(message)} "
                     f"(see `{self.prog} --help`)\n")


class _SubcommandParser(_Parser):
    """A subcommand's parser whose arguments are added on first use: a run builds its own
    command's arguments only (argparse's add_argument is not free: ~1.5 ms for all of them),
    and the serving planner's live with (and import) the serving package, which ``perfmodel
    --help`` or any other command need not load."""

    def __init__(self, *args, add_arguments: Callable[[argparse.ArgumentParser], None]
                 | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_arguments = add_arguments

    def parse_known_args(self, args=None, namespace=None):
        if self._add_arguments is not None:
            add, self._add_arguments = self._add_arguments, None
            add(self)
        return super().parse_known_args(args, namespace)


def _serving_arguments(parser: argparse.ArgumentParser) -> None:
    from .serving.cli import add_arguments

    add_arguments(parser)


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from .serving.sweep import add_arguments

    add_arguments(parser)


def _training_plan_arguments(parser: argparse.ArgumentParser) -> None:
    from .planning.cli import add_arguments

    add_arguments(parser)


def _benchmarks(text: str) -> str:
    """The argparse type of ``calibrate --only``: known benchmark names, checked at once."""
    from .calibrate.cli import parse_only

    try:
        parse_only(text)
    except PerfModelError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--only: ")) from None
    return text


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (see examples/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--calibration", help="calibration profile JSON (overrides the scenario's)")
    p.add_argument("--ops", action="store_true", help="list every operator with its bound")


def _search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="training scenario (its plan -- tp, pp, dp, cp, ep, vp, "
                                    "sp, ZeRO, micro-batch, recompute, schedule, uneven "
                                    "pipeline -- is ignored; its placement and overlap "
                                    "settings are kept, and its recompute_modules say what "
                                    "the searched selective recompute re-runs). Exits 1 "
                                    "when no plan fits, saying why")
    p.add_argument("--top", type=positive_int, default=10, help="plans to list (default 10)")
    p.add_argument("--headroom", type=fraction, default=0.05,
                   help="fraction of device memory a plan must leave free (default 0.05)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--calibration", help="calibration profile JSON")


def _hardware_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show"],
                   help="list: a table of devices (or --interconnects, --nodes); show: every "
                        "field of one, with its sources")
    p.add_argument("id", nargs="?",
                   help="for show: a device, interconnect or node id from `hardware list` "
                        "(e.g. h100-sxm5-80gb, nvlink4-nvswitch, dgx-h100); the system: "
                        "fields of a scenario take these ids")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--interconnects", action="store_true",
                       help="list the interconnects (links and fabrics) instead of devices")
    which.add_argument("--nodes", action="store_true",
                       help="list the nodes (GPUs per node, intra-node link, NICs x "
                            "inter-node link; '-': no scale-out network) instead of devices")
    p.add_argument("--json", action="store_true", help="show: print one JSON object")


def _models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show"],
                   help="list: the presets with their parameters; show: every field of one "
                        "model, parameter counts included")
    p.add_argument("id", nargs="?",
                   help="for show: a preset id from `models list` (e.g. llama-3-70b) or the "
                        "path of a HuggingFace config.json; a scenario's model: takes the same")
    p.add_argument("--json", action="store_true", help="show: print one JSON object")


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", type=image_path,
                   help="write a predicted-vs-measured plot (.png, .svg or .pdf; missing "
                        "folders are created)")
    p.add_argument("--kind", choices=["training", "inference", "all"], default="all")
    p.add_argument("--case", help="only cases whose id contains this text")
    p.add_argument("--measure", choices=["cpu", "cuda"],
                   help="measure real workloads on this machine instead of published cases")
    p.add_argument("--calibration", help="profile to predict the cases with (published ones "
                   "too, e.g. calibration/default.json; not with --write, --write-bands or "
                   "--band-coverage)")
    p.add_argument("--write", action="store_true",
                   help="write the report to validation/report.json")
    p.add_argument("--write-bands", action="store_true",
                   help="write validation/error_bands.json (signed-error quantiles per group, "
                        "the 80 %% bands of predictions; docs/uncertainty.md)")
    p.add_argument("--band-coverage", action="store_true",
                   help="print how often the 80 %% bands hold the published cases, "
                        "cross-validated by source (Markdown tables; docs/uncertainty.md)")


def _calibrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="a small sweep (CPU: under a minute)")
    p.add_argument("--out", help="profile path (default calibration/<device>.measured.json; "
                                 "missing folders are created)")
    p.add_argument("--report", type=png_path,
                   help="PNG report path (default: beside the profile)")
    p.add_argument("--only", type=_benchmarks,
                   help="comma-separated subset: gemm,memory,attention,"
                        "elementwise,launch,collectives")
    p.add_argument("--reference", metavar="DEVICE",
                   help="build a reference profile from shared measured tables instead")
    p.add_argument("--budget-s", type=nonnegative_float, metavar="S",
                   help="time budget of the whole run in seconds, shared out between the "
                        "tables (default: 60 for --quick on a CPU, 600 for --quick on a GPU, "
                        "none for a full run; 0: none)")
    p.add_argument("--point-budget-s", type=positive_float, metavar="S",
                   help="time one point may take (default: 2 quick / 30 full on a CPU)")
    p.add_argument("--strict", action="store_true",
                   help="refuse to write a profile whose points mostly did not converge")


def _dashboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", type=address, default=DASHBOARD_ADDRESS,
                   help=f"address to bind (default {DASHBOARD_ADDRESS}: this machine only; "
                        "0.0.0.0 shares the dashboard with the network)")
    p.add_argument("--port", type=port, default=DASHBOARD_PORT,
                   help=f"TCP port (default {DASHBOARD_PORT})")
    p.add_argument("--headless", action="store_true", help="do not open a browser")


def build_parser() -> argparse.ArgumentParser:
    """The command's parser; each subcommand's arguments are added when that subcommand is
    parsed (``_SubcommandParser``): a run builds its own command's arguments only."""
    parser = _Parser(
        prog="perfmodel",
        description="Analytical performance model for LLM training, inference and serving.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubcommandParser)
    sub.add_parser("predict", help="predict a scenario (YAML)", add_arguments=_predict_arguments)
    sub.add_parser("search", help="rank parallel plans for a training scenario",
                   add_arguments=_search_arguments)
    sub.add_parser("hardware", help="list or show devices, interconnects, nodes",
                   add_arguments=_hardware_arguments)
    sub.add_parser("models", help="list or show model presets (or a config.json)",
                   add_arguments=_models_arguments)
    sub.add_parser("validate", help="predictions vs published measurements",
                   add_arguments=_validate_arguments)
    sub.add_parser("calibrate", help="run microbenchmarks and fit a calibration profile",
                   add_arguments=_calibrate_arguments)
    sub.add_parser("plan-serving",
                   help="fewest GPUs per device and TP that serve a request rate within "
                        "latency SLOs, with cost and energy", add_arguments=_serving_arguments)
    sub.add_parser("sweep-concurrency",
                   help="closed-loop serving benchmark at each client concurrency: tokens/s "
                        "per GPU vs per user, TTFT, TPOT", add_arguments=_sweep_arguments)
    sub.add_parser("plan-training",
                   help="GPUs, days, cost and energy to train a model on N tokens, per device "
                        "and GPU count, with the time-vs-cost Pareto set",
                   add_arguments=_training_plan_arguments)
    sub.add_parser("dashboard", help="open the Streamlit what-if dashboard",
                   add_arguments=_dashboard_arguments)
    return parser


#: The cyclic garbage collector's first threshold during a command: allocations (net of
#: deallocations) between generation-0 collections. A command is a short process that
#: allocates many objects it keeps (modules, pydantic schemas, spec models) and makes little
#: cyclic garbage: ``plan-training llama-3-70b --devices h100-sxm5-80gb`` ran ~116 collections
#: at CPython's default 700 that freed ~900 objects in ~45 ms, ~4.5 % of its CPU time; with
#: this setting none ran inside ``main`` (measured 2026-12-03, gc.callbacks). mypy runs with the same setting for the same
#: reason (mypy/build.py: ``gc.set_threshold(200 * 1000, 30, 30)``). Collection still runs,
#: only less often; ``main`` restores the caller's thresholds when it returns.
#:
#: Run as the process's command (``argv`` None: the ``perfmodel`` script, ``python -m
#: perfmodel.cli``), ``main`` then moves every object left to the collector's permanent
#: generation (``gc.freeze``): the interpreter exits next, and its finalisation runs full
#: collections over every object still alive -- modules, schemas, the loaded specs -- that free
#: nothing worth the time (refcounting still frees them): ~0.1 s of the ~0.85 s CPU of
#: ``plan-training llama-3-70b --devices h100-sxm5-80gb --json`` (benchmarks/search_speed.py
#: "interpreter exit", 2026-12-03). A caller passing ``argv`` (tests, in process) keeps its
#: collector as it was.
GC_THRESHOLD = (200_000, 30, 30)


#: Commands whose process, run as the ``perfmodel`` command (``console_main``), ends with
#: ``os._exit`` once they returned normally, their output is flushed and the ``atexit``
#: handlers have run, when no other Python thread is alive: the interpreter's finalisation
#: (module teardown, freeing every object one by one) does nothing such a process needs and
#: cost ~13 ms of the ~0.33 s CPU of ``plan-training llama-3-70b --devices h100-sxm5-80gb
#: --json`` (33 M of 2.24 G instructions, callgrind, 2026-12-04). Only commands that write
#: nothing but stdout / stderr and start no threads or subprocesses are listed.
FAST_EXIT = frozenset({"plan-training"})
_ran: list[str] = []  # the command ``_main`` dispatched to, for ``main``


def main(argv: Sequence[str] | None = None) -> int:
    import gc

    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        rc = _main(argv)
    finally:
        gc.set_threshold(*previous)
        if argv is None:  # the process's own command line: the interpreter exits next
            gc.freeze()
    return rc


#: Settings of a fresh ``FAST_EXIT`` command process, each unless the user set the variable
#: (an empty value included) or the process already started what it governs (the module named
#: beside it). The command does no linear algebra (elementwise numpy only), so numpy's OpenBLAS
#: runs one thread: a pool started at import costs ~30-40 ms of CPU and more wall time on a busy
#: machine, for no work; pydantic's plugin search (pydantic's own switch) reads the entry points
#: of every installed distribution on the first validator, ~18 M instructions, ~0.8 % of the
#: process (callgrind, 2026-12-04), and the command uses no plugin (benchmarks/search_speed.py).
FRESH_PROCESS_ENV = {"OPENBLAS_NUM_THREADS": ("1", "numpy"),
                     "PYDANTIC_DISABLE_PLUGINS": ("__all__", "pydantic.plugin._loader")}


def console_main() -> int:
    """The ``perfmodel`` command (pyproject [project.scripts], ``python -m perfmodel.cli``):
    ``main`` on the process's own command line. Only here is the process known to be the
    command's own, so only here do ``FAST_EXIT`` commands take ``FRESH_PROCESS_ENV`` and end
    without the interpreter's finalisation (``_exit_now``); a caller of ``main`` (tests,
    scripts) keeps its environment, its process and the code after the call."""
    fast = len(sys.argv) > 1 and sys.argv[1] in FAST_EXIT
    if fast:
        for name, (value, started_by) in FRESH_PROCESS_ENV.items():
            if started_by not in sys.modules:
                os.environ.setdefault(name, value)
    rc = main()
    if fast and _ran and _ran[-1] in FAST_EXIT:
        _exit_now(rc)
    return rc


def _exit_now(rc: int) -> None:
    """End the process with ``rc`` without the interpreter's finalisation (``FAST_EXIT``);
    returns (the interpreter then exits as usual) if another thread is alive or the output
    cannot be flushed."""
    import atexit
    import threading

    if threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # e.g. a closed pipe: let the interpreter report it
        return
    atexit._run_exitfuncs()
    os._exit(rc)


#: The flags (argparse dests) that name a file a command writes. Each is checked before the
#: command runs (``atomic.check_writable``), so a bad one is refused, naming the flag and the
#: user's path, before anything is computed or any other output written (QA 1205c D9).
OUTPUT_ARGUMENTS = ("out", "csv", "plot", "report")


def _check_outputs(args: argparse.Namespace) -> None:
    paths = [(dest, value) for dest in OUTPUT_ARGUMENTS
             if isinstance(value := getattr(args, dest, None), str)]  # plan-training --csv: a switch
    if not paths:
        return
    from .atomic import OutputError, check_writable

    for dest, value in paths:
        try:
            check_writable(value)
        except OutputError as err:
            raise OutputError(f"--{dest}: {err}") from None


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _ran.append(args.command)
    try:
        _check_outputs(args)
        return COMMANDS[args.command](args)
    except PerfModelError as err:
        print(f"perfmodel: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"perfmodel: error: file not found: {err.filename or err}", file=sys.stderr)
        return 2
    except IsADirectoryError as err:
        print(f"perfmodel: error: {err.filename or err} is a directory, not a file",
              file=sys.stderr)
        return 2
    except PermissionError as err:
        print(f"perfmodel: error: permission denied: {err.filename or err}", file=sys.stderr)
        return 2
    except ValueError as err:  # a pydantic ValidationError that escaped a loader: one line
        if type(err).__module__.split(".")[0] not in ("pydantic", "pydantic_core"):
            raise
        from .specs.common import describe_validation_error

        print(f"perfmodel: error: invalid input: {describe_validation_error(err)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perfmodel: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())


