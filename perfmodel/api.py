"""The public Python API: scenario in, Prediction out. The CLI and dashboard call only this.

>>> import perfmodel as pm
>>> sc = pm.Scenario(kind="inference", model="llama-2-7b",
...                  system={"device": "a100-sxm4-80gb"},
...                  inference={"batch": 1, "prompt_len": 512, "output_len": 128})
>>> pred = pm.predict(sc)
>>> pred.tpot_s > 0
True

``predict`` only dispatches: ``resolve`` turns the scenario into the core's inputs, a
predictor per kind (``predictors``, ``serving.predict``) runs the core and ``explain`` builds
the Prediction.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import SpecError
from .prediction import Prediction
from .predictors import predict_inference, predict_training
from .resolve import (
    CalibrationLike,
    Resolved,
    ScenarioLike,
    as_scenario,
    offload_bandwidth,
    resolve,
    resolve_profile,
)
from .uncertainty import with_ranges

# re-exported: scripts and the analysis notebooks import these from here
__all__ = ["as_scenario", "benchmark_clients", "engine_version_families",
           "engine_version_sort_key", "offload_bandwidth", "plan_serving", "predict",
           "resolve_profile"]


def predict(scenario: ScenarioLike, calibration: CalibrationLike = None) -> Prediction:
    """Predict a training step, an inference request or a served workload for ``scenario``.

    ``calibration`` (a profile or its path) overrides the scenario's; without either, the
    device's shipped reference profile is used, or the documented default efficiencies.
    """
    rs = resolve(scenario, calibration)
    pred = _PREDICTORS[rs.scenario.kind](rs)
    return with_ranges(pred, rs.profile, rs.scenario)  # 80 % bands (docs/uncertainty.md)


def _predict_serving(rs: Resolved) -> Prediction:
    from .serving.predict import predict_serving  # the simulator loads only when needed

    return predict_serving(rs)


_PREDICTORS: dict[str, Callable[[Resolved], Prediction]] = {
    "training": predict_training, "inference": predict_inference, "serving": _predict_serving,
}


def engine_version_families(engine: str, variant: str | None = None) -> list[dict]:
    """The release families a scenario's ``engine.version`` can name for serving engine
    ``engine`` (vllm, sglang, trtllm, llamacpp): one entry per engines/versions/<id>-*.yaml
    file and the current engines/<id>.yaml (last), each ``{"label": its version label,
    "ranges": [(since, until, variant), ...], "default": whether a scenario naming no
    version (and ``variant``) gets it (the newest family of that variant,
    engines.get_engine)}``, the releases it describes
    (``until`` excluded; ``variant`` e.g. vLLM's "v1" engine core, or None). [] for an unknown
    engine or one whose single file describes one release (``engine.version`` is then
    refused)."""
    from .engines import ENGINE_IDS, families, get_engine

    if engine not in ENGINE_IDS:
        return []
    fams = families(engine)
    if not fams or not fams[-1].ranges:
        return []
    default = get_engine(engine, variant=variant).version
    return [{"label": f.version, "ranges": [(r.since, r.until, r.variant) for r in f.ranges],
             "default": f.version == default} for f in fams]


def engine_version_sort_key(version: str) -> tuple[int, ...]:
    """Sort key of an engine release ("0.7.3", "0.4.0.post1") or main-branch snapshot
    ("0.2.4+pr2031", after its release and before the next); a malformed version is a
    one-line SpecError naming engine.version."""
    from .engines import version_key

    return version_key(version)


def benchmark_clients() -> dict:
    """The closed-loop benchmark clients a serving scenario's ``serving.benchmark.client`` can
    name (clients/*.yaml: vllm bench serve, sglang bench_serving, genai-perf, ...), id to its
    validated spec (``serving.clients.ClientSpec``: name, metric definitions, measurement
    windows), the default client first."""
    from .serving.clients import DEFAULT_CLIENT, client_ids, load_client

    return {cid: load_client(cid)
            for cid in sorted(client_ids(), key=lambda c: c != DEFAULT_CLIENT)}


def plan_serving(model=None, /, **kwargs):
    """Answer 'how many GPUs of which device serve this rate within these SLOs', as
    ``perfmodel plan-serving`` does: ``plan_serving("llama-3-8b", rate=8, ttft_p90=1,
    tpot_p90=0.05, prompt_len=1024, output_len=256, devices=["h100-sxm5-80gb"],
    engine="vllm")`` -> ``serving.capacity.PlanResult`` (``.best``, ``.candidates``,
    ``.frontier``, ``.to_dict()``).

    ``model`` is a preset id, a config.json path or a ``ModelSpec``, or a serving scenario
    (``scenario=`` path) supplies it. The keywords are the command's options with ``_`` for
    ``-`` (``prompt_len``, ``max_gpus``, ``num_requests``, ...): lengths as the command takes
    them (512, "uniform:128:1024", "lognormal:MEAN:CV[:MIN:MAX]") or a LengthDistribution /
    dict; lists (``devices``, ``tp``, ``pp``, ``max_num_seqs``, ``attention_dp``) as a list
    or "a,b"; ``slo`` a dict of any SLO bounds ({"ttft_p99_s": 2}); ``prices`` a path or a
    PriceTable. They go through the command's own parser and checks (``serving.cli``); a bad
    one is one SpecError naming the keyword (``prompt_len=``) and what is valid. A
    ``serving.capacity.PlanInputs`` alone is planned as given."""
    from .serving.capacity import PlanInputs
    from .serving.capacity import plan_serving as run

    if isinstance(model, PlanInputs):
        if kwargs:
            raise TypeError("plan_serving: give a PlanInputs or keywords, not both")
        return run(model)
    inp = _serving_inputs(model, kwargs)
    if not any(v is not None for v in inp.slo.model_dump().values()):
        raise SpecError("plan_serving needs at least one SLO: ttft_p90=, tpot_p90= or "
                        "slo={KEY: SECONDS} (e.g. ttft_p90=0.5, tpot_p90=0.05)")
    return run(inp)


#: keywords of ``plan_serving`` set on the parsed arguments as objects (not as flag text)
_OBJECTS = ("model", "prompt_len", "output_len", "prices")


def _serving_inputs(model, kwargs: dict):
    """``plan_serving``'s keywords through ``plan-serving``'s parser (argtypes, choices) and
    ``serving.cli.plan_inputs``, every message naming the keyword (``api_keyword``)."""
    import argparse
    import re
    from pathlib import Path

    from .argtypes import api_keyword
    from .errors import closest
    from .serving.cli import add_arguments, plan_inputs
    from .specs.common import validate
    from .specs.model import ModelSpec
    from .specs.scenario import LengthDistribution

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse's "argument --rate: ..." -> "rate=: ..."
            raise SpecError("plan_serving: " + re.sub(
                r"argument --([a-z-]+)", lambda m: api_keyword(m[1].replace("-", "_")),
                message))

    parser = Parser(prog="plan_serving", add_help=False)
    add_arguments(parser)
    names = [a.dest for a in parser._actions if a.dest not in ("json", "help")]
    if model is not None:
        if "model" in kwargs:
            raise SpecError("plan_serving: the model is given twice (first argument and "
                            "model=); give one")
        kwargs = {"model": model, **kwargs}
    argv: list[str] = []
    objects: dict = {}
    for key, value in kwargs.items():
        if key not in names:
            hints = closest(key, names)
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            raise SpecError(f"plan_serving: unknown argument {key!r}{hint} (arguments: "
                            f"{', '.join(sorted(names))})")
        if value is None:
            continue
        if isinstance(value, bool):
            raise SpecError(f"plan_serving: {api_keyword(key)}{value!r} is not a value of "
                            "this argument")
        if key == "scenario":
            argv.append(str(value))
        elif key == "slo":
            if not isinstance(value, dict):
                raise SpecError(f"plan_serving: slo={value!r:.60} must be a dict of SLO "
                                "bounds in seconds, e.g. {'ttft_p99_s': 2}")
            argv += [f"--slo={k}={v}" for k, v in value.items()]
        elif key in _OBJECTS and not isinstance(value, (str, int, Path)):
            objects[key] = value
        elif isinstance(value, (list, tuple)):
            argv.append(f"--{key.replace('_', '-')}={','.join(str(v) for v in value)}")
        else:
            argv.append(f"--{key.replace('_', '-')}={value}")
    args = parser.parse_args(argv)
    for key, value in objects.items():
        if key in ("prompt_len", "output_len") and isinstance(value, dict):
            value = validate(LengthDistribution, value, what=api_keyword(key))
        ok = {"model": ModelSpec, "prompt_len": LengthDistribution,
              "output_len": LengthDistribution}.get(key)
        if ok is not None and not isinstance(value, ok):
            raise SpecError(f"plan_serving: {api_keyword(key)}: a {type(value).__name__} is "
                            f"not a {ok.__name__} (nor text)")
        if key != "prices":
            setattr(args, key, value)
    inp = plan_inputs(args, api_keyword)
    if "prices" in objects:
        from dataclasses import replace

        inp = replace(inp, prices=objects["prices"])
    return inp
