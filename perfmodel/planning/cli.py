"""`perfmodel plan-training`: arguments -> training.TrainingPlanInputs -> a table, JSON or CSV.

The command's own process (``perfmodel.cli.console_main``, not this module) starts numpy's
OpenBLAS with one thread and turns pydantic's plugin search off (``cli.FRESH_PROCESS_ENV``);
``perfmodel.plan_training`` or ``cli.main`` in a user's process leave the environment alone.

The command parses its data files through the registry's parse cache
(``specs.registry.parse_cache``: parsed YAML / JSON kept per file content in the user's cache
folder, $PERFMODEL_CACHE_DIR to move it, empty or "off" to turn it off), which also keeps the
validated spec models and calibration profiles (for the same bytes and the same package
code); every other validation runs as without it."""

from __future__ import annotations

import argparse
import json
import re
from typing import get_args

from ..argtypes import bounded_int, fraction, id_list, positive_float, positive_int, shown
from ..errors import SpecError
from ..specs.registry import parse_cache
from .training import (
    BAND_RULE,
    DEFAULT_BATCH_TOKENS,
    DEFAULT_MAX_GPUS,
    DEFAULT_SEQ_LEN,
    PRECISIONS,
    TrainingPlanInputs,
    cli_flag,
    parse_tokens,
    plan,
)

MAX_GPUS = 1_000_000
# A value that starts with a minus and a digit (-5T, -1.5e12, -30M) is a (bad) value, not an
# option: argparse's own test only knows plain numbers (-5, -1.5), so "--tokens -5T" failed as
# "expected one argument". The parser's matcher for negative numbers is widened to such values
# (argparse.ArgumentParser._negative_number_matcher; no option of this command starts so).
NEGATIVE_VALUE = re.compile(r"^-\.?\d[0-9.eE+-]*[a-zA-Z]?$")


def tokens_arg(text: str) -> float:
    """The argparse type of --tokens (15T, 300B, 2.5e12)."""
    try:
        return parse_tokens(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--tokens: ")) from None


def usd_arg(text: str) -> float:
    """A dollar amount: 30000000, 30M, $2.5B."""
    try:
        value = parse_tokens(str(text).strip().lstrip("$"))
    except SpecError:
        if str(text).strip().startswith("-"):
            raise argparse.ArgumentTypeError(f"{shown(text)} is negative; give a positive "
                                             "amount of USD, e.g. 30M") from None
        raise argparse.ArgumentTypeError(f"{shown(text)} is not an amount of USD; use e.g. "
                                         "30M, 2.5e7 or 25000000") from None
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..frameworks_config import FrameworkName

    p._negative_number_matcher = NEGATIVE_VALUE
    p.epilog = BAND_RULE
    p.add_argument("model", help="model preset id (perfmodel models list), a model YAML (preset "
                                 "format) or a HF config.json path; a training scenario is "
                                 "planned by perfmodel search SCENARIO")
    p.add_argument("--tokens", type=tokens_arg, required=True,
                   help="training tokens, e.g. 15T, 300B, 2.5e12")
    p.add_argument("--days", type=positive_float,
                   help="finish within this many days (answer: the cheapest row meeting it, "
                        "across its 80 %% band when any row does; below). "
                        "Without --days or --budget the answer is the cheapest Pareto row whose "
                        "days x USD is within 10 %% of the smallest: the time-vs-cost knee")
    p.add_argument("--budget", type=usd_arg,
                   help="spend at most this many USD (e.g. 30M; answer: the fastest row whose "
                        "cost fits it, across its 80 %% band when any row does; below)")
    p.add_argument("--devices", type=id_list,
                   help="comma-separated device ids (default: priced GPUs with a reference "
                        "calibration profile whose node scales out, >= 40 GB)")
    p.add_argument("--max-gpus", type=bounded_int(1, MAX_GPUS), default=DEFAULT_MAX_GPUS,
                   help=f"most GPUs to consider (default {DEFAULT_MAX_GPUS}); counts tried: "
                        "powers of 2 up to a node, then whole nodes doubling. Rack rule: a "
                        "rack-scale node (NVL72) is used whole when the global batch divides "
                        "over it, else 64 of its 72 GPUs run the plan (8 spares) and GPU-hours "
                        "and USD count whole racks (docs/planning.md)")
    p.add_argument("--seq-len", type=positive_int, default=DEFAULT_SEQ_LEN,
                   help=f"sequence length (default {DEFAULT_SEQ_LEN})")
    p.add_argument("--global-batch-tokens", type=tokens_arg, default=None,
                   help=f"tokens per optimizer step (default {DEFAULT_BATCH_TOKENS:,} rounded "
                        "down to whole --seq-len sequences)")
    p.add_argument("--precision", choices=PRECISIONS, default="bf16")
    p.add_argument("--framework", choices=get_args(FrameworkName), default="megatron-core",
                   help="training framework the plans run in (frameworks/<id>.yaml; default "
                        "megatron-core)")
    p.add_argument("--headroom", type=fraction, default=0.05,
                   help="fraction of device memory a plan must leave free (default 0.05)")
    p.add_argument("--calibration", help="calibration profile (with a single --devices)")
    p.add_argument("--all", action="store_true", help="list every GPU count, not only the "
                                                      "Pareto rows")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--csv", action="store_true", help="print every row as CSV")


def run_cli(args: argparse.Namespace) -> int:
    if args.calibration and (not args.devices or len(args.devices) != 1):
        raise SpecError("--calibration: give exactly one --devices for the profile's device")
    batch = args.global_batch_tokens
    if batch is not None and batch != int(batch):
        raise SpecError(f"--global-batch-tokens: {batch:g} is not a whole number of tokens")
    if args.headroom >= 1:
        raise SpecError("--headroom: must be below 1 (a fraction of device memory)")
    with parse_cache():
        result = plan(TrainingPlanInputs(
            model=args.model, tokens=args.tokens, days=args.days, budget_usd=args.budget,
            devices=args.devices, max_gpus=args.max_gpus, seq_len=args.seq_len,
            global_batch_tokens=None if batch is None else int(batch),
            precision=args.precision, headroom=args.headroom,
            calibration=args.calibration, framework=args.framework), cli_flag)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=float))
    elif args.csv:
        print(result.to_csv(), end="")
    else:
        from .render import render  # the table only: --json / --csv never load it

        print(render(result, all_rows=args.all))
    constrained = args.days is not None or args.budget is not None
    return 0 if result.rows and (result.answer or not constrained) else 1
