"""The band machinery's speed-ups give the numbers of the plain computation exactly: the
quantile without np.quantile, and the per-profile cache of the fixed-seed Monte-Carlo draws."""

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.api import resolve_profile
from perfmodel.uncertainty import (
    HI_P,
    LO_P,
    MC_SEED,
    Term,
    _draws,
    _quantile,
    _seeded_draws,
    calibration_ratios,
    table_residuals,
)


def test_quantile_is_numpys_bit_for_bit():
    rng = np.random.default_rng(7)
    for i in range(3000):
        s = rng.lognormal(0.0, rng.uniform(0.01, 2.0), int(rng.integers(1, 2500)))
        if i % 5 == 0:
            s = np.round(s, 2)  # ties
        for p in (LO_P, HI_P, 0.0, 1.0, 0.5, float(rng.uniform())):
            assert _quantile(s, p) == float(np.quantile(s, p))
    assert np.isnan(_quantile(np.array([1.0, np.nan, 2.0]), 0.1))


@pytest.fixture(scope="module")
def training():
    sc = pm.Scenario(kind="training", model="llama-3-8b",
                     system={"device": "h100-sxm5-80gb", "num_gpus": 8},
                     parallelism={"tp": 2}, training={"seq_len": 4096, "global_batch": 16})
    return sc, pm.predict(sc), resolve_profile(sc)


def test_cached_draws_equal_fresh_draws(training):
    _, _, profile = training
    tables = table_residuals(profile)
    names = list(tables)
    terms = [Term("a", 1.0, (names[0],)), Term("b", 2.0, tuple(names[:3])),
             Term("a", 3.0, (names[0],)), Term("c", 1.0, ())]
    fresh = _draws(terms, tables, np.random.default_rng(MC_SEED))
    for _ in range(2):  # first call fills the cache, the second reads it
        cached = _seeded_draws(profile, terms, tables)
        assert cached.keys() == fresh.keys()
        for k in fresh:
            np.testing.assert_array_equal(cached[k], fresh[k])
    # another order of the drawn keys is another sequence of draws
    other = _seeded_draws(profile, [terms[1], terms[0]], tables)
    assert not np.array_equal(other["a"], fresh["a"])


def test_repeated_bands_are_identical(training):
    sc, pred, profile = training
    assert calibration_ratios(pred, profile, sc) == calibration_ratios(pred, profile, sc)


def test_draws_kept_in_the_parse_cache_are_the_same_numbers(training, tmp_path):
    """Inside registry.parse_cache() the fixed-seed draws are stored as bytes and loaded
    again: the same numbers as drawing them (and read-only); another table is another key."""
    from perfmodel.specs import registry
    from perfmodel.uncertainty import _stored_draws

    _, _, profile = training
    tables = table_residuals(profile)
    names = list(tables)
    terms = [Term("a", 1.0, (names[0],)), Term("b", 2.0, tuple(names[:3])),
             Term("c", 1.0, ())]
    drawn = [("a", (names[0],)), ("b", tuple(names[:3]))]
    fresh = _draws(terms, tables, np.random.default_rng(MC_SEED))
    with registry.parse_cache(tmp_path / "cache"):
        for _ in range(2):  # the first stores, the second loads
            kept = _stored_draws(terms, tables, drawn)
            assert kept.keys() == fresh.keys()
            for k in fresh:
                np.testing.assert_array_equal(kept[k], fresh[k])
        assert len(list((tmp_path / "cache").glob("*.pickle"))) == 1
        q, w = tables[names[0]]
        other = {**tables, names[0]: (q + 0.01, w)}
        moved = _stored_draws(terms, other, drawn)
        assert not np.array_equal(moved["a"], fresh["a"])
        assert len(list((tmp_path / "cache").glob("*.pickle"))) == 2


def test_a_fresh_process_loads_the_draws_without_numpy_random(tmp_path):
    """The second fresh process of a training prediction with a band, in a parse cache, finds
    the draws the first stored: it imports no numpy.random, and its band is the first's."""
    import os
    import subprocess
    import sys

    code = ("import sys, json\n"
            "import perfmodel as pm\n"
            "from perfmodel.specs.registry import parse_cache\n"
            "with parse_cache():\n"
            "    p = pm.predict(pm.Scenario(kind='training', model='llama-3-8b', system="
            "{'device': 'h100-sxm5-80gb', 'num_gpus': 8}, parallelism={'tp': 2}, training="
            "{'seq_len': 4096, 'global_batch': 16}))\n"
            "print(json.dumps([p.ranges['step_time_s'], 'numpy.random' in sys.modules]))\n")
    env = {**os.environ, "PERFMODEL_CACHE_DIR": str(tmp_path / "cache")}
    first, second = (subprocess.run([sys.executable, "-c", code], env=env, text=True,
                                    capture_output=True, check=True).stdout for _ in range(2))
    import json

    (band1, random1), (band2, random2) = json.loads(first), json.loads(second)
    assert band1 == band2 and random1 and not random2
