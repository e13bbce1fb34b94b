"""A case file's ``group_by: case_source`` (perfmodel.validate.cases.GroupBy): its cases are
independent measurements, each counted as the source its own citation names (one GitHub
thread), in the error-band groups and the leave-one-source-out check (validate.bands); the
default, and the report's per-file tables, stay by case file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from case_files import GOOD, write_case_file

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.resolve import resolve_profile
from perfmodel.uncertainty import group_qualifies, prediction_ranges
from perfmodel.validate.bands import (
    band_inputs,
    build_groups,
    leave_one_source_out,
    with_band_inputs,
)
from perfmodel.validate.cases import load_case_file, load_cases, source_id

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "data" / "validate_golden.json"
ISSUE = "https://github.com/vllm-project/vllm/issues/2150"
PULL = "https://github.com/vllm-project/vllm/pull/2151"


def _case(i: int, url: str) -> dict:
    return {**GOOD, "id": f"c{i}", "source": {"title": f"thread {url}", "url": url}}


def _write(tmp_path, group_by=None, name="threads.yaml"):
    cases = [_case(0, ISSUE), _case(1, ISSUE + "#issuecomment-1"), _case(2, PULL)]
    path = write_case_file(tmp_path, cases, name=name)
    if group_by is not None:
        body = path.read_text()
        path.write_text(f"group_by: {group_by}\n{body}")
    return path


def test_source_id_of_a_thread_and_of_a_page():
    assert source_id(ISSUE) == "vllm-project/vllm#2150"
    assert source_id(ISSUE + "#issuecomment-1853431712") == "vllm-project/vllm#2150"
    assert source_id(PULL + "/files") == "vllm-project/vllm#2151"
    assert source_id("https://github.com/sgl-project/sglang/discussions/7") == \
        "sgl-project/sglang#7"
    assert source_id("https://arxiv.org/abs/2104.04473#page=3") == "arxiv.org/abs/2104.04473"


def test_a_file_grouped_by_case_source_gives_one_source_per_thread(tmp_path):
    cases = load_case_file(_write(tmp_path, "case_source"))
    assert [c.band_source for c in cases] == ["threads:vllm-project/vllm#2150"] * 2 + [
        "threads:vllm-project/vllm#2151"]
    assert {c.group for c in cases} == {"threads"}  # the file is still its table row


def test_the_default_groups_by_file(tmp_path):
    for group_by in (None, "file"):
        cases = load_case_file(_write(tmp_path, group_by))
        assert {c.band_source for c in cases} == {"threads"}


def test_an_unknown_group_by_is_an_error_naming_the_field(tmp_path):
    with pytest.raises(SpecError, match="group_by"):
        load_case_file(_write(tmp_path, "thread"))


def test_engine_startup_counts_its_twelve_threads():
    cases = [c for c in load_cases(kind="inference") if c.group == "engine_startup"]
    assert len(cases) == 20
    sources = {c.band_source for c in cases}
    assert len(sources) == 12  # the file's 12 distinct GitHub threads (issues / pulls)
    assert "engine_startup:vllm-project/vllm#2031" in sources
    assert {c.group_by for c in cases} == {"case_source"}
    # files of one campaign or one paper stay one source
    others = [c for c in load_cases() if c.group != "engine_startup"]
    assert all(c.band_source == c.group for c in others)


def _row(i, source, band_source, error):
    return {"id": f"r{i}", "source": source, "band_source": band_source, "kind": "inference",
            "metric": "weights_gib", "status": "ok", "measured": math.exp(error),
            "predicted": 1.0, "device": None}


def test_groups_and_folds_count_band_sources_tables_stay_by_file():
    """Ten cases of one file from ten threads: the group has ten sources and qualifies; each
    thread is judged by the other nine (a band is stated); the by_source table has the file."""
    rows = [_row(i, "startup", f"startup:t{i}", 0.01 * i) for i in range(10)]
    g = build_groups(rows)["inference/memory_per_gpu_bytes/*/*"]
    assert g["n"] == 10 and len(g["sources"]) == 10 and group_qualifies(g)
    cov = leave_one_source_out(rows)
    assert list(cov["by_source"]) == ["startup"]
    assert cov["overall"]["stated"] == 10  # 9 cases of 9 other threads qualify
    # the same rows as one source: no group qualifies, no band is stated
    one = [{**r, "band_source": None} for r in rows]
    assert not group_qualifies(build_groups(one)["inference/memory_per_gpu_bytes/*/*"])
    assert leave_one_source_out(one)["overall"]["stated"] == 0


@pytest.fixture(scope="module")
def engine_rows():
    """The engine start-up rows of the stored validation report with their band inputs."""
    report = json.loads(GOLDEN.read_text())
    cases = [c for c in load_cases(kind="inference") if c.group == "engine_startup"]
    ids = {c.case.id for c in cases}
    return with_band_inputs([r for r in report["cases"] if r["id"] in ids], band_inputs(cases))


def test_engine_startup_rows_form_a_qualifying_memory_group(engine_rows):
    assert len({r["band_source"] for r in engine_rows}) == 12
    groups = build_groups(engine_rows)
    g = groups["inference/memory_per_gpu_bytes/*/*"]
    assert g["n"] == 20 and len(g["sources"]) == 12 and group_qualifies(g)
    cov = leave_one_source_out(engine_rows)["overall"]
    assert cov["n"] == 20 and cov["stated"] == 20


@pytest.mark.parametrize("example", ["vllm-closed-loop-llama3.1-8b-h100.yaml",
                                     "llama2-7b-decode-a100.yaml"])
def test_an_inference_prediction_carries_a_memory_range(engine_rows, example):
    """With those groups (what --write-bands will ship) the memory of an inference / serving
    prediction states its band, and the band holds the point; where an engine fills its
    budget (vLLM) memory is the budget and the band is the KV pool's (uncertainty.fills_budget)."""
    sc = pm.load_scenario(ROOT / "examples" / example)
    pred = pm.predict(sc)
    ranges, basis = prediction_ranges(pred, resolve_profile(sc), sc,
                                      build_groups(engine_rows))
    key, point = "memory_per_gpu_bytes", pred.memory_per_gpu_bytes
    if pred.engine and pred.engine.get("fraction_name"):
        assert key not in ranges and basis[key].startswith("no band:")
        key, point = "kv_cache_tokens", pred.engine["kv_cache_tokens"]
    lo, hi = ranges[key]
    assert lo <= point <= hi and lo < hi
    assert "inference/memory_per_gpu_bytes/" in basis[key]
