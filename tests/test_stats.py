"""Intervals and paired tests against known values (scipy / textbook)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbirlib import stats


def test_wilson_known_values():
    lo, hi = stats.wilson(48, 72)
    assert round(lo, 3) == 0.552 and round(hi, 3) == 0.765  # the issue's [0.55, 0.77]
    lo, hi = stats.wilson(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28
    assert np.isnan(stats.wilson(0, 0)[0])
    with pytest.raises(ValueError):
        stats.wilson(5, 3)


@given(n=st.integers(1, 2000), frac=st.floats(0, 1))
def test_wilson_contains_the_estimate(n, frac):
    k = round(frac * n)
    lo, hi = stats.wilson(k, n)
    assert 0 <= lo <= k / n + 1e-12 and k / n - 1e-12 <= hi <= 1


def test_mcnemar_exact():
    a = np.array([True] * 10 + [False] * 2)
    b = np.array([False] * 10 + [False] * 2)
    t = stats.mcnemar(a, b)
    assert t["a_only"] == 10 and t["b_only"] == 0 and abs(t["p_value"] - 2 / 1024) < 1e-12
    assert stats.mcnemar(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar(a, b[:-1])


def test_bootstrap_mean_brackets_the_mean_and_is_seeded():
    v = np.random.default_rng(0).random(300)
    lo, hi = stats.bootstrap_mean(v, seed=3)
    assert lo < v.mean() < hi and hi - lo < 0.1
    assert (lo, hi) == stats.bootstrap_mean(v, seed=3)
    assert stats.bootstrap_mean([0.5, 0.5]) == (0.5, 0.5)


def test_verdict():
    assert stats.verdict(0.95, 0.9, 0.97) == "reproduced"
    assert stats.verdict(0.95, 0.5, 0.6) == "differs"
    assert stats.verdict(0.95, 0.5, 0.6, comparable=False) == "not comparable here"
