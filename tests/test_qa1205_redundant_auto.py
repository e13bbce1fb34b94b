"""QA 1205c D11: ``parallelism.redundant_experts: auto`` is accepted in a scenario, with the
meaning plan-serving's ``--redundant-experts auto`` has: per EP degree the fewest redundant
experts that make ep divide the physical experts."""

from pathlib import Path

import pytest
import yaml

import perfmodel as pm
from perfmodel.errors import SpecError
from perfmodel.resolve import as_scenario
from perfmodel.specs.scenario import (
    Parallelism,
    parse_redundant_experts,
    redundant_experts_for,
)

EXAMPLE = Path("examples/deepseek-r1-wide-ep-gb200-nvl72.yaml")  # EP72, 32 redundant


def _example(tmp_path, value):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["model"] = str((EXAMPLE.parent / data["model"]).resolve())
    data["parallelism"]["redundant_experts"] = value
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_auto_in_a_scenario_is_the_published_wide_ep_count(tmp_path):
    # SGLang's GB200 NVL72 deployment: 256 routed experts + 32 redundant = 288 over EP72
    # (lmsys.org/blog/2025-06-16-gb200-part-1); 288 / 72 = 4 experts per GPU
    auto = as_scenario(_example(tmp_path, "auto"))
    assert auto.parallelism.redundant_experts == 32
    assert pm.predict(auto).tpot_s == pm.predict(_example(tmp_path, 32)).tpot_s


def test_the_flag_and_the_scenario_take_the_same_inputs():
    for text in ("auto", "AUTO", " auto "):
        assert parse_redundant_experts(text) == "auto"
    assert parse_redundant_experts("32") == 32 and parse_redundant_experts(0) == 0
    for bad in (-1, "x", 1.5, True, "3.0"):
        with pytest.raises(SpecError, match=r"not a count of redundant experts .* or auto"):
            parse_redundant_experts(bad)


@pytest.mark.parametrize(("experts", "ep", "expected"), [
    (256, 72, 32),   # DeepSeek-V3/R1 on NVL72 (above)
    (384, 72, 48),   # Kimi K2: 384 + 48 = 432 = 6 x 72
    (256, 8, 0),     # already divides
    (256, 1, 0),     # no EP: nothing to place
    (None, 8, 0),    # a dense model
])
def test_auto_is_the_fewest_that_make_ep_divide(experts, ep, expected):
    assert redundant_experts_for("auto", experts, ep) == expected
    if experts and ep > 1:
        assert (experts + expected) % ep == 0


def test_a_count_is_kept_and_auto_alone_says_it_needs_the_model():
    assert redundant_experts_for(7, 256, 72) == 7
    with pytest.raises(ValueError, match="auto is resolved with the model's expert count"):
        Parallelism(ep=8, redundant_experts="auto")


def test_a_scenario_word_other_than_auto_names_the_choices(tmp_path):
    with pytest.raises(SpecError, match=r"redundant_experts.*'many' is not a count of "
                                        r"redundant experts \(0 to .*\) or auto"):
        as_scenario(_example(tmp_path, "many"))
