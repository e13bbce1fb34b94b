"""perfmodel.validate.cases: every shipped case file loads and its scenario validates; units
convert to the canonical unit; broken case files fail with an error naming the file, the case
and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from case_files import GOOD
from case_files import write_case_file as _write

from perfmodel.errors import SpecError
from perfmodel.specs.assemble import resolve_system
from perfmodel.validate import Measured, case_files, case_scenario, load_case_file, load_cases
from perfmodel.validate.cases import SERVING_METRICS

VALIDATION = Path(__file__).resolve().parents[1] / "validation"


@pytest.fixture(scope="module")
def all_cases():
    return load_cases()


# ---- the shipped case files ----------------------------------------------------------------


def test_case_files_exist_for_both_kinds():
    assert case_files(VALIDATION, "training")
    assert case_files(VALIDATION, "inference")


def test_every_case_loads_and_its_scenario_validates(all_cases):
    assert len(all_cases) >= 150
    ids = [lc.case.id for lc in all_cases]
    assert len(ids) == len(set(ids))
    for lc in all_cases:
        sc = case_scenario(lc)  # SpecError names the case's field if a scenario is invalid
        resolve_system(sc.system)  # device, node and fabric ids exist
        # a fixed-concurrency serving benchmark is an inference case run as a serving scenario
        closed_loop = sc.kind == "serving" and lc.case.metric in SERVING_METRICS
        assert sc.kind == lc.case.kind or closed_loop
        assert lc.case.source.url.startswith("https://")
        assert lc.case.source.location, lc.case.id


def test_flop_metrics_name_their_convention(all_cases):
    for lc in all_cases:
        if lc.case.metric in ("tflops_per_gpu", "mfu"):
            assert lc.case.flops_convention is not None, lc.case.id
        if lc.case.metric == "mfu":
            assert lc.case.peak_tflops == 312, lc.case.id  # A100 sources only so far


def test_case_filter_and_kind(all_cases):
    inference = load_cases(kind="inference")
    assert inference and all(lc.case.kind == "inference" for lc in inference)
    some = load_cases(match="KORTHIKANTI2022_T5_22B")
    assert {lc.case.id for lc in some} == {"korthikanti2022_t5_22B_full_recompute",
                                           "korthikanti2022_t5_22B_seqpar_selective"}


def test_units_convert_to_the_canonical_unit():
    assert Measured(value=7, unit="ms").canonical == pytest.approx(0.007)
    assert Measured(value=53.0, unit="%").canonical == pytest.approx(0.53)
    with pytest.raises(Exception, match="unit"):
        Measured(value=1, unit="sec")


# ---- broken case files -------------------------------------------------------------------------

@pytest.mark.parametrize("change,field", [
    ({"measured": {"value": 10, "unit": "sec"}}, "measured.unit"),
    ({"measured": {"value": -1, "unit": "ms"}}, "measured.value"),
    ({"metric": "latency"}, "metric"),
    ({"metric": "tflops_per_gpu", "measured": {"value": 1, "unit": "TFLOP/s per GPU"}},
     "flops_convention"),
    ({"notes": None}, "notes"),
    ({"colour": "red"}, "colour"),
])
def test_broken_case_names_file_case_and_field(tmp_path, change, field):
    case = {**GOOD, **change}
    case = {k: v for k, v in case.items() if v is not None}
    path = _write(tmp_path, [case])
    with pytest.raises(SpecError) as err:
        load_case_file(path)
    msg = str(err.value)
    assert str(path) in msg and "cases[0]" in msg and "'tiny'" in msg and field in msg


def test_file_level_source_is_merged_and_ids_are_unique(tmp_path):
    shared = {"title": "Shared source", "url": "https://example.org/shared"}
    case = {**GOOD, "source": {"location": "Table 9"}}
    path = _write(tmp_path, [case], source=shared)
    (lc,) = load_case_file(path)
    assert lc.case.source.title == "Shared source" and lc.case.source.location == "Table 9"
    _write(tmp_path, [case], name="again.yaml", source=shared)
    with pytest.raises(SpecError, match="also used"):
        load_cases(root=tmp_path)
