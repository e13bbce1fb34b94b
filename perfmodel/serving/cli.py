"""`perfmodel plan-serving`: arguments -> capacity.PlanInputs -> a table or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import get_args

from ..argtypes import (
    bounded_int,
    fraction,
    id_list,
    int_list,
    nonnegative_float,
    positive_float,
    positive_int,
    seed,
    shown,
)
from ..dtypes import DType
from ..errors import SpecError
from ..specs.assemble import load_scenario
from ..specs.common import validate
from ..specs.scenario import (
    EngineConfig,
    InferenceConfig,
    LengthDistribution,
    SchedulerConfig,
    SLOConfig,
    parse_redundant_experts,
)
from .capacity import DEFAULT_PLAN_REQUESTS, DEFAULT_TPS, PlanInputs, plan_serving, render_plan
from .economics import load_prices
from .schedulers import SCHEDULERS

MAX_PLAN_REQUESTS = 1_000_000  # requests per simulation
MAX_GPUS = 1_000_000
#: the registered schedulers an aggregated instance can run (serving.scheduler.kind; not the
#: disaggregated pools' prefill / decode roles, which plan-serving does not size)
PLAN_SCHEDULERS = sorted(k for k in SCHEDULERS
                         if k in get_args(SchedulerConfig.model_fields["kind"].annotation))
LENGTH_HELP = ("tokens: 512, fixed:512, uniform:128:1024 or lognormal:MEAN:CV[:MIN:MAX]")


def memory_fraction(text: str) -> float:
    """The argparse type of the memory-fraction flags: above 0, at most 1."""
    value = fraction(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{shown(text)}: a memory fraction must be above 0 "
                                         "(at most 1)")
    return value


def cli_flag(name: str) -> str:
    """How the command names an input: ``prompt_len`` -> ``--prompt-len``. The Python API
    (``perfmodel.plan_serving``) passes its own namer (``prompt_len=``) to ``plan_inputs``."""
    return "--" + name.replace("_", "-")


def parse_length(text: str, what: str, name: Callable[[str], str] = cli_flag
                 ) -> LengthDistribution:
    """``512``, ``fixed:512``, ``uniform:128:1024`` or ``lognormal:MEAN:CV[:MIN:MAX]``; a
    SpecError naming ``what`` (``prompt_len``) as the caller names it otherwise."""
    try:
        return length_distribution(text)
    except argparse.ArgumentTypeError as err:
        raise SpecError(f"{name(what.replace('-', '_'))}: {err}") from None


def length_distribution(text: str) -> LengthDistribution:
    """The argparse type of --prompt-len / --output-len (see ``parse_length``)."""
    parts = str(text).split(":")
    kind, nums = ("fixed", parts) if len(parts) == 1 else (parts[0], parts[1:])
    try:
        if kind == "fixed" and len(nums) == 1:
            fields = {"kind": "fixed", "value": positive_int(nums[0])}
        elif kind == "uniform" and len(nums) == 2:
            fields = {"kind": "uniform", "min": positive_int(nums[0]),
                      "max": positive_int(nums[1])}
        elif kind == "lognormal" and len(nums) in (2, 4):
            fields = {"kind": "lognormal", "mean": positive_float(nums[0]),
                      "cv": nonnegative_float(nums[1])}
            if len(nums) == 4:
                fields |= {"min": positive_int(nums[2]), "max": positive_int(nums[3])}
        else:
            raise argparse.ArgumentTypeError(f"{shown(text)} is not a length")
    except argparse.ArgumentTypeError as err:  # every form listed, not only a number's
        raise argparse.ArgumentTypeError(f"{err}; a length is {LENGTH_HELP}") from None
    try:
        return validate(LengthDistribution, fields, what="length")
    except SpecError as err:
        raise argparse.ArgumentTypeError(f"{shown(text)}: {err}") from None


SLO_KEYS = tuple(SLOConfig.model_fields)


def slo_item(text: str) -> tuple[str, float]:
    """The argparse type of --slo: ``KEY=SECONDS`` with KEY an SLOConfig field."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"{shown(text)}: expected KEY=SECONDS, "
                                         "e.g. ttft_p99_s=2")
    if key not in SLO_KEYS:
        raise argparse.ArgumentTypeError(f"unknown SLO {shown(key)}; choose from "
                                         + ", ".join(SLO_KEYS))
    return key, positive_float(value)


def _slo(base: SLOConfig, args: argparse.Namespace,
         name: Callable[[str], str] = cli_flag) -> SLOConfig:
    values = {k: v for k, v in base.model_dump().items() if v is not None}
    for item in args.slo or []:
        try:
            key, value = item if isinstance(item, tuple) else slo_item(item)
        except argparse.ArgumentTypeError as err:
            raise SpecError(f"{name('slo')}: {err}") from None
        values[key] = value
    if args.ttft_p90 is not None:
        values["ttft_p90_s"] = args.ttft_p90
    if args.tpot_p90 is not None:
        values["tpot_p90_s"] = args.tpot_p90
    return validate(SLOConfig, values, what="SLOs")


def plan_inputs(args: argparse.Namespace, name: Callable[[str], str] = cli_flag
                ) -> PlanInputs:
    """The planner's inputs from the command's arguments (a Namespace with the flags' dests;
    a list flag may hold text or the parsed list). ``name`` turns an input's field name into
    the caller's word for it in a message (``cli_flag``: --prompt-len; the API: prompt_len=)."""
    from ..zoo import resolve_model

    sc = None
    if args.scenario:
        sc = load_scenario(args.scenario)
        if sc.serving is None:
            raise SpecError(f"{args.scenario}: plan-serving needs a serving scenario "
                            "(kind: serving)")
    if sc is None and not args.model:
        raise SpecError(f"plan-serving needs {name('model')} (or a serving scenario file)")
    model = resolve_model(args.model) if args.model else sc.model
    serving = sc.serving if sc else None
    rate = args.rate if args.rate is not None else (
        serving.arrival.rate_per_s if serving else None)
    if rate is None:
        raise SpecError(f"plan-serving needs {name('rate')} (requests per second)")
    inf = sc.inference if sc else None

    def length(flag, field: str, fallback: int | None) -> LengthDistribution:
        if isinstance(flag, LengthDistribution):
            return flag
        if flag:
            return parse_length(flag, field, name)
        if serving is not None and getattr(serving, field) is not None:
            return getattr(serving, field)
        if fallback is not None:
            return LengthDistribution(kind="fixed", value=fallback)
        raise SpecError(f"plan-serving needs {name(field)} ({LENGTH_HELP})")

    prompt = length(args.prompt_len, "prompt_len", inf.prompt_len if inf else None)
    output = length(args.output_len, "output_len", inf.output_len if inf else None)
    _check_context(model, prompt, output, name)
    sched = serving.scheduler if serving else SchedulerConfig()
    if args.scheduler:
        sched = sched.model_copy(update={"kind": args.scheduler})
    arrival = args.arrival or (serving.arrival.process if serving else "poisson")
    if arrival in ("trace", "closed"):
        raise SpecError(f"plan-serving generates arrivals at a request rate; use "
                        f"{name('arrival')} poisson or gamma (a closed loop: perfmodel sweep-concurrency)")
    if args.cv is not None and arrival != "gamma":
        # a Poisson process has no cv to set (its gaps' cv is 1): the flag would do nothing
        given = ("the default" if not args.arrival and not serving
                 else "the scenario's" if not args.arrival else "given")
        raise SpecError(f"{name('cv')}: sets the burstiness of gamma arrivals only; the arrival "
                        f"process is {arrival} ({given}), whose gaps always have cv 1; give "
                        f"{_given(name, 'arrival', 'gamma')} to use "
                        f"{_given(name, 'cv', format(args.cv, 'g'))}, or leave {name('cv')} out")
    cv = args.cv if args.cv is not None else (serving.arrival.cv if serving else 1.0)
    kwargs = {}
    if inf is not None:
        kwargs["inference"] = inf
    formats = {k: v for k, v in (("weight_dtype", getattr(args, "weight_dtype", None)),
                                 ("kv_dtype", getattr(args, "kv_dtype", None))) if v}
    if formats:  # the linear layers (or the KV cache) in this format, the checkpoint's ignored
        base = inf.model_dump(exclude_unset=True) if inf is not None else {"prompt_len": 1}
        if "weight_dtype" in formats:
            base.pop("weight_formats", None)
        kwargs["inference"] = validate(InferenceConfig, {**base, **formats},
                                       what=f"{name('weight_dtype')} / {name('kv_dtype')}")
    engine = getattr(args, "engine", None)
    if engine:
        kwargs["engine"] = validate(EngineConfig, {"name": engine}, what=name("engine"))
    elif sc is not None:
        kwargs["engine"] = sc.engine
    kwargs["engine"] = _engine_overrides(kwargs.get("engine") or EngineConfig(), args, model,
                                         prompt, output, name)
    _check_rejected(kwargs["engine"], model, prompt, output,
                    getattr(args, "max_model_len", None) is not None, name)
    _check_kv_format(kwargs.get("engine"), kwargs.get("inference"), "kv_dtype" in formats, name)
    slo = _slo(serving.slo if serving else SLOConfig(), args, name)
    if sc is not None:
        kwargs["parallelism"] = sc.parallelism
        kwargs["replaced"] = replaced_fields(sc, args, rate, arrival, cv, prompt, output, slo)
        new = kwargs["engine"]
        kwargs["replaced"] += [f"engine.{k} {getattr(sc.engine, k)} -> {getattr(new, k)}"
                               for k in ENGINE_FLAGS if getattr(sc.engine, k, None) is not None
                               and getattr(sc.engine, k) != getattr(new, k)]
    redundant = getattr(args, "redundant_experts", None)
    if redundant is not None:
        kwargs["redundant_experts"] = _listed(redundant, redundant_experts,
                                              name("redundant_experts"))
        if model.moe is None and kwargs["redundant_experts"] not in (0, None):
            raise SpecError(f"{name('redundant_experts')}: {model.id} has no routed experts to "
                            "replicate (a dense model); drop the flag")
    attention_dps = _listed(getattr(args, "attention_dp", None), int_list, name("attention_dp"))
    if attention_dps and set(attention_dps) != {1}:
        # capacity.layouts searches attention DP only for a MoE model on an engine that runs
        # it (dp_attention_supported); elsewhere the degrees would be ignored
        from .capacity import dp_attention_supported

        engine = kwargs["engine"]
        if model.moe is None:
            raise SpecError(f"{name('attention_dp')}: {model.id} is a dense model (no routed "
                            "experts); attention DP applies to MoE models only, drop the flag")
        if not dp_attention_supported(engine):
            raise SpecError(f"{name('attention_dp')}: engine {engine.name} states no attention "
                            "data parallelism (engines/<id>.yaml memory.attention_dp_in_tp_group; "
                            "sglang, vllm and the generic engine run it); drop the flag or "
                            "choose one of those engines")
    return PlanInputs(
        model=model, rate_per_s=rate, slo=slo,
        prompt_len=prompt, output_len=output,
        devices=_listed(args.devices, id_list, name("devices")),
        tps=_listed(args.tp, int_list, name("tp")) or DEFAULT_TPS,
        pps=_listed(getattr(args, "pp", None), int_list, name("pp")) or (1,),
        max_num_seqs=_listed(getattr(args, "max_num_seqs", None), int_list,
                             name("max_num_seqs")),
        scheduler=sched, arrival=arrival, cv=cv,
        num_requests=args.num_requests if args.num_requests is not None
        else DEFAULT_PLAN_REQUESTS,
        seed=args.seed if args.seed is not None else (serving.seed if serving else 0),
        attention_dps=attention_dps,
        max_gpus=args.max_gpus, prices=load_prices(args.prices) if args.prices else None,
        calibration=args.calibration, **kwargs)


#: the engine overrides plan-serving takes as flags (``EngineConfig`` fields of the same name):
#: the context the engine is sized for and each engine's memory fraction under its own name
ENGINE_FLAGS = ("max_model_len", "gpu_memory_utilization", "mem_fraction_static",
                "free_gpu_memory_fraction")
#: the engine each memory-fraction flag belongs to (specs.scenario.ENGINE_FRACTION), and the
#: engine's own option for it
FRACTION_OPTION = {"vllm": "vllm serve --gpu-memory-utilization",
                   "sglang": "sglang.launch_server --mem-fraction-static",
                   "trtllm": "trtllm-serve --kv_cache_free_gpu_memory_fraction"}


def _engine_overrides(engine: EngineConfig, args: argparse.Namespace, model,
                      prompt: LengthDistribution, output: LengthDistribution,
                      name: Callable[[str], str]) -> EngineConfig:
    """The engine with --max-model-len and its memory-fraction flag applied over the
    scenario's (or the named engine's) settings: one SpecError naming the flag when the engine
    has no such setting (generic; a fraction of another engine: the engine's own name for it)
    or when the engine refuses the value (``engine_checks.check_engine_config``: a max_model_len
    above the model's context)."""
    from ..engine_checks import check_engine_config
    from ..engines import engine_for
    from ..specs.scenario import ENGINE_FRACTION

    given = {k: v for k in ENGINE_FLAGS if (v := getattr(args, k, None)) is not None}
    if not given:
        return engine
    for key in given:
        if engine.name == "generic":
            raise SpecError(f"{name(key)}: the generic engine has no {key}; name the engine "
                            f"whose setting it is ({name('engine')} vllm, sglang, trtllm"
                            + (", llamacpp" if key == "max_model_len" else "") + ")")
        owner = next((e for e, f in ENGINE_FRACTION.items() if f == key), None)
        if owner is not None and owner != engine.name:
            own = ENGINE_FRACTION.get(engine.name)
            raise SpecError(
                f"{name(key)} is {owner}'s memory fraction ({FRACTION_OPTION[owner]}); engine "
                f"{engine.name} " + (f"takes {name(own)} ({FRACTION_OPTION[engine.name]}), a "
                                     "fraction of other memory: give that"
                                     if own else "has no memory fraction (it allocates its "
                                     "weights and n_ctx cells of KV up front)"))
    base = engine.model_dump(exclude_unset=True)
    cfg = validate(EngineConfig, {**base, **given},
                   what=" / ".join(name(k) for k in given))
    try:
        check_engine_config(engine_for(cfg), cfg, model)
    except SpecError as err:
        raise SpecError(str(err).replace("engine.max_model_len", name("max_model_len"), 1)
                        if "max_model_len" in given else str(err)) from None
    return cfg


def _check_rejected(engine: EngineConfig, model, prompt: LengthDistribution,
                    output: LengthDistribution, from_flag: bool,
                    name: Callable[[str], str]) -> None:
    """The longest request within the context the engine is sized for, where its file says
    it rejects a longer one (``predict.rejecting_limit``: vLLM / SGLang answer HTTP 400 to a
    prompt + max_tokens above max_model_len): the plan would serve no such request, so one
    SpecError naming the flag (or the scenario's engine.max_model_len)."""
    from .predict import rejecting_limit

    limit = rejecting_limit(engine, model)
    longest = tuple(d.value if d.kind == "fixed" else d.max for d in (prompt, output))
    if limit is None or None in longest or longest[0] + longest[1] <= limit:
        return
    field = name("max_model_len") if from_flag else "the scenario's engine.max_model_len"
    raise SpecError(f"{field}: {limit:,} tokens is shorter than the longest request (prompt + "
                    f"output = {longest[0] + longest[1]:,} tokens), which {engine.name} would "
                    "reject; give at least that")


def redundant_experts(text: str) -> int | str:
    """The argparse type of --redundant-experts: what a scenario's
    ``parallelism.redundant_experts`` takes (``specs.scenario.parse_redundant_experts``)."""
    try:
        return parse_redundant_experts(text, "--redundant-experts")
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _given(name: Callable[[str], str], key: str, value: str) -> str:
    """An input with its value as the caller writes it: ``--arrival gamma`` (the command) or
    ``arrival='gamma'`` (the API, whose namer ends in '=')."""
    word = name(key)
    if not word.endswith("="):
        return f"{word} {value}"
    try:
        float(value)
        return f"{word}{value}"
    except ValueError:
        return f"{word}{value!r}"


def _check_kv_format(engine, inference, from_flag: bool, name: Callable[[str], str]) -> None:
    """The KV-cache format must be one the engine has (resolve.check_engine_kv_dtype, the
    check every scenario passes), checked once here rather than per candidate: one SpecError
    naming the flag (or the scenario's inference.kv_dtype) and the engine's valid choices."""
    from ..resolve import check_engine_kv_dtype

    try:
        check_engine_kv_dtype(engine, inference)
    except SpecError as err:
        if not from_flag:
            raise
        raise SpecError(str(err).replace("inference.kv_dtype", name("kv_dtype"), 1)) from None


def _check_context(model, prompt: LengthDistribution, output: LengthDistribution,
                   name: Callable[[str], str]) -> None:
    """The longest request within the model's context, in the planner's words: the planner
    models no request beyond it (a scenario's ``allow_beyond_context`` is for ``predict``), so
    the message does not suggest that field."""
    limit = model.max_position_embeddings
    # the longest a distribution draws (None: an unbounded lognormal), as Scenario's check
    longest = tuple(d.value if d.kind == "fixed" else d.max for d in (prompt, output))
    length = None if None in longest else longest[0] + longest[1] - 1
    if length is not None and length > limit:
        raise SpecError(
            f"{name('prompt_len')} + {name('output_len')}: the longest prompt + output - 1 = "
            f"{length} tokens exceeds the context of model {model.id!r} ({limit} tokens, "
            f"max_position_embeddings); give shorter lengths (plan-serving plans requests "
            f"within the model's context; predict a serving scenario with "
            f"allow_beyond_context: true to model longer ones)")


def replaced_fields(sc, args: argparse.Namespace, rate: float, arrival: str, cv: float,
                    prompt: LengthDistribution, output: LengthDistribution,
                    slo: SLOConfig) -> list[str]:
    """What the planner does not take from the scenario as written, one item each: the system
    and parallelism it searches (the scenario's layout stays one candidate), and every serving
    field a flag or the open-loop planning replaces."""
    from .capacity import layout_label

    p, srv = sc.parallelism, sc.serving
    out = [f"system {sc.system.num_gpus} x {sc.system.device} -> searched over devices and "
           "replica counts",
           f"parallelism {layout_label(p.tp, p.pp, p.attention_dp, p.ep)} -> searched "
           "(kept as one candidate layout)"]
    arr = srv.arrival
    was = (f"closed loop of {arr.concurrency} clients" if arr.process == "closed"
           else f"{arr.process}" + (f" at {arr.rate_per_s:g} req/s" if arr.rate_per_s else ""))
    now = f"{arrival} at {rate:g} req/s" + (f" (cv {cv:g})" if arrival == "gamma" else "")
    if arr.process != arrival or (arr.rate_per_s is not None and arr.rate_per_s != rate):
        out.append(f"serving.arrival {was} -> {now}")
    if args.num_requests is not None and srv.num_requests != args.num_requests:
        out.append(f"serving.num_requests {srv.num_requests} -> {args.num_requests}")
    if srv.benchmark is not None:
        out.append(f"serving.benchmark ({srv.benchmark.client}) -> not used (every request "
                   "measured)")
    for name, new in (("prompt_len", prompt), ("output_len", output)):
        old = getattr(srv, name)
        if old is not None and old != new:
            out.append(f"serving.{name} -> {new.model_dump(exclude_none=True)}")
    old_slo = {k: v for k, v in srv.slo.model_dump().items() if v is not None}
    for k, v in slo.model_dump().items():
        if k in old_slo and v != old_slo[k]:
            out.append(f"serving.slo.{k} {old_slo[k]:g} -> {v:g}")
    return out


def _listed(value, parse, flag: str):
    """A list flag's value: already parsed by argparse, or text (a Namespace built by hand)."""
    if value is None or value == "":
        return None
    try:
        return parse(value) if isinstance(value, str) else value
    except argparse.ArgumentTypeError as err:
        raise SpecError(f"{flag}: {err}") from None


ANSWER_RULE = (
    "The answer is the cheapest row by USD/h (fewest GPUs, then the most SLO headroom, on a "
    "tie) among the rows that meet every SLO across its 80 % band (the upper end of each SLO "
    "percentile's band within the bound); when no row does, the cheapest row meeting the SLOs "
    "at the point estimate, said so. A row whose value meets an SLO but whose band's upper "
    "end does not is marked 'may miss SLO' (docs/planning.md).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ANSWER_RULE
    p.add_argument("scenario", nargs="?",
                   help="a serving scenario to take the model, lengths, scheduler and SLOs "
                        "from (flags override it)")
    p.add_argument("--model", help="model preset id, model YAML (preset format) or HF "
                                   "config.json path")
    p.add_argument("--rate", type=positive_float, help="requests per second")
    p.add_argument("--ttft-p90", type=positive_float, help="p90 time to first token bound (s)")
    p.add_argument("--tpot-p90", type=positive_float,
                   help="p90 time per output token bound (s)")
    p.add_argument("--slo", action="append", metavar="KEY=SECONDS", type=slo_item,
                   help="any SLO bound, e.g. ttft_p99_s=2 or e2e_p90_s=20 (repeatable)")
    p.add_argument("--prompt-len", type=length_distribution, help=f"prompt length, {LENGTH_HELP}")
    p.add_argument("--output-len", type=length_distribution, help=f"output length, {LENGTH_HELP}")
    p.add_argument("--devices", type=id_list, help="comma-separated device ids (default: every datacenter "
                                     "GPU in the price table)")
    p.add_argument("--tp", type=int_list, help="comma-separated TP degrees (default 1,2,4,8): "
                   "GPUs per pipeline stage of a replica (a MoE model also splits them into "
                   "attention TP x DP); a TP group may span nodes (it pays the inter-node "
                   "all-reduce)")
    p.add_argument("--pp", type=int_list,
                   help="comma-separated pipeline degrees (default 1); a replica is tp x pp "
                        "GPUs, its layers split as the engine splits them")
    p.add_argument("--attention-dp", type=int_list,
                   help="MoE models: comma-separated attention-DP degrees to try per instance "
                        "(default: every divisor of each --tp size, where the engine runs DP "
                        "attention); each with the experts as TP shards (ep 1) or EP over the "
                        "instance; a scenario's own layout is always tried")
    p.add_argument("--redundant-experts", type=redundant_experts, metavar="N|auto",
                   help="MoE layouts with EP: EPLB's redundant expert replicas (SGLang "
                        "--ep-num-redundant-experts, vLLM --eplb-config num_redundant_experts); "
                        "auto: per EP degree the fewest that make it divide the experts (256 "
                        "experts over ep 72: 32); default 0, the engines' default")
    p.add_argument("--max-num-seqs", type=int_list,
                   help="comma-separated batch caps (engine max_num_seqs) to try besides the "
                        "engine's default (default: powers of two from 8 below it); a "
                        "scenario's own serving.scheduler.max_batch / engine.max_num_seqs is "
                        "used alone")
    p.add_argument("--scheduler", choices=PLAN_SCHEDULERS,
                   help="the instances' batching policy (default: the scenario's, else the "
                        "engine's own, else continuous)")
    p.add_argument("--engine", choices=["generic", "vllm", "sglang", "trtllm", "llamacpp"],
                   help="serving engine: its KV-cache rule and max_num_seqs default size each "
                        "instance (default: the scenario's, else generic)")
    p.add_argument("--max-model-len", type=positive_int,
                   help="context the engine is sized for (vLLM --max-model-len, SGLang "
                        "--context-length, TensorRT-LLM max_seq_len, llama.cpp n_ctx; default: "
                        "the scenario's, else the model's context); needs a named --engine")
    p.add_argument("--gpu-memory-utilization", type=memory_fraction,
                   help="vLLM: fraction of the device's memory the engine may use (default "
                        "0.9); --engine vllm")
    p.add_argument("--mem-fraction-static", type=memory_fraction,
                   help="SGLang: fraction of the memory free at start-up for weights and the KV "
                        "pool (default: SGLang's rule by GPU memory and TP); --engine sglang")
    p.add_argument("--free-gpu-memory-fraction", type=memory_fraction,
                   help="TensorRT-LLM: fraction of the memory left after weights and the "
                        "profiling peak that the KV cache takes (trtllm-serve "
                        "--kv_cache_free_gpu_memory_fraction, default 0.9); --engine trtllm")
    p.add_argument("--weight-dtype", choices=get_args(DType),
                   help="the linear layers' and experts' format; a format under 2 B keeps the "
                        "embeddings and LM head 16-bit, as quantised checkpoints do (default: the "
                        "scenario's, else the model's checkpoint format, e.g. fp8_block for "
                        "deepseek-v3, else bf16)")
    p.add_argument("--kv-dtype", choices=get_args(InferenceConfig.model_fields["kv_dtype"]
                                                  .annotation),
                   help="KV-cache format (default: the scenario's, else the checkpoint's, "
                        "else bf16)")
    p.add_argument("--arrival", choices=["poisson", "gamma"])
    p.add_argument("--cv", type=positive_float,
                   help="gamma arrivals (--arrival gamma): coefficient of variation of the gaps "
                        "(1 = Poisson); refused with Poisson arrivals")
    p.add_argument("--num-requests", type=bounded_int(1, MAX_PLAN_REQUESTS),
                   help=f"requests per simulation (default {DEFAULT_PLAN_REQUESTS})")
    p.add_argument("--max-gpus", type=bounded_int(1, MAX_GPUS), default=512,
                   help="most GPUs a candidate may use (default 512)")
    p.add_argument("--prices", help="price table YAML (default hardware_specs/prices.yaml)")
    p.add_argument("--calibration", help="calibration profile (used for its own device)")
    p.add_argument("--seed", type=seed, help="random seed of the workload (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_cli(args: argparse.Namespace) -> int:
    result = plan_serving(plan_inputs(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=float))
    else:
        print(render_plan(result))
        named = sorted({k for c in result.candidates for k in ENGINE_FLAGS
                        if f"engine.{k}" in c.reason})
        if named:  # a refusal names the scenario field; the command has a flag for it
            print("flags for the engine settings named above: " + ", ".join(
                f"engine.{k} = {cli_flag(k)}" for k in named))
    return 0 if result.best else 1
