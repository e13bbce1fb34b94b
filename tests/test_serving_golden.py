"""Moving serving code never changes a serving prediction: the predictions of the serving
examples (and of the same workload under static and chunked batching) are held against a
stored copy (floats to a relative 1e-9, tests/golden.py), as test_validate_golden.py does for `perfmodel validate`
(issue 8). The validation cases hold no serving scenario, so this is the serving half.

A deliberate modelling change regenerates the copy in the same commit, with its reason:
``python tests/test_serving_golden.py``.
"""

import json
from pathlib import Path

from golden import differences

import perfmodel as pm

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "serving_golden.json"
EXAMPLES = sorted((ROOT / "examples").glob("serving-*.yaml"))


def _scenarios() -> dict[str, pm.Scenario]:
    out = {p.name: pm.load_scenario(p) for p in EXAMPLES}
    base = out["serving-llama3-8b-h100-continuous.yaml"]
    for kind in ("static", "chunked"):
        sched = base.serving.scheduler.model_copy(update={"kind": kind})
        out[f"continuous-example-as-{kind}"] = base.model_copy(update={
            "serving": base.serving.model_copy(update={"scheduler": sched})})
    return out


def predictions() -> dict:
    """Every field but the operator list (held by the inference tests) and the profile's
    file location."""
    out = {}
    for name, sc in _scenarios().items():
        d = pm.predict(sc).model_dump(mode="json", exclude={"ops"})
        d["calibration"].pop("path", None)
        out[name] = json.loads(json.dumps(d).replace(str(ROOT), "<root>"))
    return out


def test_serving_predictions_are_identical_to_the_stored_copy():
    now, stored = predictions(), json.loads(GOLDEN.read_text())
    assert sorted(now) == sorted(stored)
    changed = [name for name in now if differences(now[name], stored[name])]
    assert not changed, f"serving predictions changed: {changed}"


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(predictions(), indent=1, sort_keys=True) + "\n")
