"""`perfmodel plan-serving`: arguments -> capacity.PlanInputs -> a table or JSON."""

from __future__ import annotations

import argparse
import json

from ..errors import SpecError
from ..specs.assemble import load_scenario
from ..specs.common import validate
from ..specs.scenario import LengthDistribution, SchedulerConfig, SLOConfig
from .capacity import DEFAULT_PLAN_REQUESTS, DEFAULT_TPS, PlanInputs, plan_serving, render_plan
from .economics import load_prices

LENGTH_HELP = ("tokens: 512, fixed:512, uniform:128:1024 or lognormal:MEAN:CV[:MIN:MAX]")


def parse_length(text: str, what: str) -> LengthDistribution:
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return LengthDistribution(kind="fixed", value=int(parts[0]))
        kind, nums = parts[0], parts[1:]
        if kind == "fixed" and len(nums) == 1:
            return LengthDistribution(kind="fixed", value=int(nums[0]))
        if kind == "uniform" and len(nums) == 2:
            return LengthDistribution(kind="uniform", min=int(nums[0]), max=int(nums[1]))
        if kind == "lognormal" and len(nums) in (2, 4):
            extra = {"min": int(nums[2]), "max": int(nums[3])} if len(nums) == 4 else {}
            return LengthDistribution(kind="lognormal", mean=float(nums[0]), cv=float(nums[1]),
                                      **extra)
    except ValueError as err:
        raise SpecError(f"--{what}: {text!r}: {err}") from None
    raise SpecError(f"--{what}: {text!r} is not a length; expected {LENGTH_HELP}")


def _slo(base: SLOConfig, args: argparse.Namespace) -> SLOConfig:
    values = {k: v for k, v in base.model_dump().items() if v is not None}
    for item in args.slo or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"--slo {item!r}: expected KEY=SECONDS, e.g. ttft_p99_s=2")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise SpecError(f"--slo {item!r}: {value!r} is not a number of seconds") from None
    if args.ttft_p90 is not None:
        values["ttft_p90_s"] = args.ttft_p90
    if args.tpot_p90 is not None:
        values["tpot_p90_s"] = args.tpot_p90
    return validate(SLOConfig, values, what="SLOs")


def plan_inputs(args: argparse.Namespace) -> PlanInputs:
    from ..zoo import resolve_model

    sc = None
    if args.scenario:
        sc = load_scenario(args.scenario)
        if sc.serving is None:
            raise SpecError(f"{args.scenario}: plan-serving needs a serving scenario "
                            "(kind: serving)")
    if sc is None and not args.model:
        raise SpecError("plan-serving needs --model (or a serving scenario file)")
    model = resolve_model(args.model) if args.model else sc.model
    serving = sc.serving if sc else None
    rate = args.rate if args.rate is not None else (
        serving.arrival.rate_per_s if serving else None)
    if rate is None:
        raise SpecError("plan-serving needs --rate (requests per second)")
    inf = sc.inference if sc else None

    def length(flag: str | None, name: str, fallback: int | None) -> LengthDistribution:
        if flag:
            return parse_length(flag, name.replace("_", "-"))
        if serving is not None and getattr(serving, name) is not None:
            return getattr(serving, name)
        if fallback is not None:
            return LengthDistribution(kind="fixed", value=fallback)
        raise SpecError(f"plan-serving needs --{name.replace('_', '-')} ({LENGTH_HELP})")

    prompt = length(args.prompt_len, "prompt_len", inf.prompt_len if inf else None)
    output = length(args.output_len, "output_len", inf.output_len if inf else None)
    sched = serving.scheduler if serving else SchedulerConfig()
    if args.scheduler:
        sched = sched.model_copy(update={"kind": args.scheduler})
    arrival = args.arrival or (serving.arrival.process if serving else "poisson")
    if arrival == "trace":
        raise SpecError("plan-serving generates arrivals; use --arrival poisson or gamma")
    cv = args.cv if args.cv is not None else (serving.arrival.cv if serving else 1.0)
    kwargs = {}
    if inf is not None:
        kwargs["inference"] = inf
    return PlanInputs(
        model=model, rate_per_s=rate, slo=_slo(serving.slo if serving else SLOConfig(), args),
        prompt_len=prompt, output_len=output,
        devices=[d.strip() for d in args.devices.split(",")] if args.devices else None,
        tps=tuple(int(t) for t in args.tp.split(",")) if args.tp else DEFAULT_TPS,
        scheduler=sched, arrival=arrival, cv=cv,
        num_requests=args.num_requests or DEFAULT_PLAN_REQUESTS,
        seed=args.seed if args.seed is not None else (serving.seed if serving else 0),
        max_gpus=args.max_gpus, prices=load_prices(args.prices) if args.prices else None,
        calibration=args.calibration, **kwargs)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?",
                   help="a serving scenario to take the model, lengths, scheduler and SLOs "
                        "from (flags override it)")
    p.add_argument("--model", help="model preset id or config.json path")
    p.add_argument("--rate", type=float, help="requests per second")
    p.add_argument("--ttft-p90", type=float, help="p90 time to first token bound (s)")
    p.add_argument("--tpot-p90", type=float, help="p90 time per output token bound (s)")
    p.add_argument("--slo", action="append", metavar="KEY=SECONDS",
                   help="any SLO bound, e.g. ttft_p99_s=2 or e2e_p90_s=20 (repeatable)")
    p.add_argument("--prompt-len", help=f"prompt length, {LENGTH_HELP}")
    p.add_argument("--output-len", help=f"output length, {LENGTH_HELP}")
    p.add_argument("--devices", help="comma-separated device ids (default: every datacenter "
                                     "GPU in the price table)")
    p.add_argument("--tp", help="comma-separated TP degrees (default 1,2,4,8)")
    p.add_argument("--scheduler", choices=["static", "continuous", "chunked"])
    p.add_argument("--arrival", choices=["poisson", "gamma"])
    p.add_argument("--cv", type=float, help="gamma arrivals: coefficient of variation")
    p.add_argument("--num-requests", type=int,
                   help=f"requests per simulation (default {DEFAULT_PLAN_REQUESTS})")
    p.add_argument("--max-gpus", type=int, default=512)
    p.add_argument("--prices", help="price table YAML (default hardware_specs/prices.yaml)")
    p.add_argument("--calibration", help="calibration profile (used for its own device)")
    p.add_argument("--seed", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_cli(args: argparse.Namespace) -> int:
    result = plan_serving(plan_inputs(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=float))
    else:
        print(render_plan(result))
    return 0 if result.best else 1
