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
