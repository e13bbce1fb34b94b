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


def test_a_mean_ttft_case_carries_its_base_quantitys_calibration_band():
    """The mean TTFT is a quantity of its own for the validation groups but has the TTFT's
    calibration residuals (uncertainty.DERIVED_QUANTITY), as a serving prediction's
    quantity_ratios reads them: the mean and the median TTFT of one run (the same scenario)
    carry the same calibration band, and it is not the no-residual (1, 1)."""
    run = "infmax_dsr1_fp8_h200_tp8ep1_1k1k_c4_"
    pair = [lc for lc in load_cases() if lc.case.id in (run + "mean_ttft", run + "median_ttft")]
    assert len(pair) == 2
    bands = band_inputs(pair)
    mean, median = (bands[run + k]["calibration_band"] for k in ("mean_ttft", "median_ttft"))
    assert mean == median and mean != [1.0, 1.0]
