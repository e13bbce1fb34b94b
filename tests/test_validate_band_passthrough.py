"""`perfmodel validate --write-bands` / `--band-coverage` build the bands from the run's own
predictions (run_case's ``keep``) instead of predicting every case a second time: the band
inputs are the same as re-predicting, and nothing is predicted again."""

import perfmodel.api
from perfmodel.uncertainty import METRIC_QUANTITY
from perfmodel.validate import load_cases, run_cases
from perfmodel.validate.bands import band_inputs


def test_band_inputs_from_the_runs_predictions_equal_a_fresh_prediction(monkeypatch):
    cases = [lc for lc in load_cases() if lc.case.metric in METRIC_QUANTITY]
    picked = {lc.case.kind: lc for lc in cases}  # one ranged case of each kind
    picked = list(picked.values()) + [lc for lc in cases if lc.group == "engine_startup"][:2]
    fresh = band_inputs(picked)
    keep: dict = {}
    rows = run_cases(picked, keep)
    assert set(keep) == {lc.case.id for lc in picked}  # refused cases kept as None
    assert {r.id for r in rows if r.status == "ok"} <= {k for k, v in keep.items() if v}
    monkeypatch.setattr(perfmodel.api, "predict", lambda *a, **k: 1 / 0)  # no second predict
    assert band_inputs(picked, keep) == fresh
