"""The sixth speed round's cuts (docs/planning.md, "Speed") change no result:

* ZeRO-3's regather weights may be given as a function, called only when a framework's facts
  use them (full recompute with ``recompute_regathers``); the hand figures of
  tests/test_zero_regather.py hold through it;
* the price table read through the registry's parse cache is the table validated from the
  file, field for field, and a damaged price is still refused naming the file;
* a plan-training row's step time from ``perfmodel.predict`` equals the search's for a dense
  model and a MoE one (the per-stage sums over layer kinds, share 1 or not).
"""

from __future__ import annotations

import pytest
import yaml

from perfmodel.errors import SpecError
from perfmodel.frameworks import FsdpFacts
from perfmodel.parallel_comm import zero3_extra_gathers
from perfmodel.paths import data_dir
from perfmodel.planning.training import TrainingPlanInputs, plan
from perfmodel.serving import economics
from perfmodel.specs import registry


def layer(h: float) -> list[float]:
    """A GPT layer's weights in forward order: QKV 3h^2, output h^2, MLP 4h^2 and 4h^2."""
    return [3 * h * h, h * h, 4 * h * h, 4 * h * h]


def test_regather_weights_built_only_when_used():
    deepspeed = FsdpFacts.model_validate(
        yaml.safe_load((data_dir("frameworks") / "deepspeed.yaml").read_text())["fsdp"])

    def never():
        raise AssertionError("weights built although no regather applies")

    assert zero3_extra_gathers(None, "full", never, {"dense": 1.0}) == 0.0
    assert zero3_extra_gathers(deepspeed, "selective", never, {"dense": 1.0}) == 0.0
    # DeepSpeed's default reuse distance (1e9) re-gathers 8/12 of a 175B layer (h = 12288):
    # 2 x 4h^2 = 1.21e9 >= 1e9 for the weights before the last (Narayanan et al. 2021 Table 2)
    got = zero3_extra_gathers(deepspeed, "full", lambda: {"dense": layer(12288.0)},
                              {"dense": 1.0})
    assert float(got) == pytest.approx(8 / 12)


def test_price_table_through_the_parse_cache_is_the_validated_file(tmp_path):
    path = economics.default_prices_path()
    plain = economics.PriceTable.model_validate(yaml.safe_load(path.read_text()))
    with registry.parse_cache(tmp_path / "c"):
        economics._load.cache_clear()
        first = economics.load_prices(path)
        economics._load.cache_clear()
        second = economics.load_prices(path)  # from the cache's validated entry
    economics._load.cache_clear()
    assert first == plain and second == plain
    assert second.devices["h100-sxm5-80gb"].usd_per_gpu_hour == \
        plain.devices["h100-sxm5-80gb"].usd_per_gpu_hour


def test_a_bad_price_is_refused_naming_the_file(tmp_path):
    data = yaml.safe_load(economics.default_prices_path().read_text())
    dev = next(iter(data["devices"]))
    data["devices"][dev]["usd_per_gpu_hour"] = -1.0
    bad = tmp_path / "prices.yaml"
    bad.write_text(yaml.safe_dump(data))
    for cache in (None, tmp_path / "c"):
        economics._load.cache_clear()
        with pytest.raises(SpecError, match=r"prices\.yaml"):
            if cache is None:
                economics.load_prices(bad)
            else:
                with registry.parse_cache(cache):
                    economics.load_prices(bad)
    economics._load.cache_clear()


@pytest.mark.parametrize("model", ["llama-3-8b", "mixtral-8x7b"])
def test_rows_predict_the_search_step_time(model):
    """The row's own prediction warns when it differs from the search's by > 1e-9."""
    res = plan(TrainingPlanInputs(model=model, tokens=1e12, devices=["h100-sxm5-80gb"],
                                  max_gpus=64))
    assert res.rows
    assert not [w for w in res.warnings if "predict gives" in w]
