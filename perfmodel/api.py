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
           "engine_version_sort_key", "offload_bandwidth", "predict", "resolve_profile"]


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


def engine_version_families(engine: str) -> list[dict]:
    """The release families a scenario's ``engine.version`` can name for serving engine
    ``engine`` (vllm, sglang, trtllm, llamacpp): one entry per engines/versions/<id>-*.yaml
    file and the current engines/<id>.yaml (last), each ``{"label": its version label,
    "ranges": [(since, until, variant), ...]}``, the releases it describes (``until`` None:
    open-ended; ``variant`` e.g. vLLM's "v1" engine core, or None). [] for an unknown engine
    or one whose single file describes one release (``engine.version`` is then refused)."""
    from .engines import ENGINE_IDS, families

    if engine not in ENGINE_IDS:
        return []
    fams = families(engine)
    if not fams or not fams[-1].ranges:
        return []
    return [{"label": f.version, "ranges": [(r.since, r.until, r.variant) for r in f.ranges]}
            for f in fams]


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
