"""MAE and XAUC, with XAUC checked against the O(n²) definition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pitahaya.training import mae, xauc


def brute_force_xauc(y: list[float], p: list[float]) -> float:
    score = pairs = 0.0
    for (yi, pi), (yj, pj) in itertools.combinations(zip(y, p, strict=True), 2):
        if yi == yj:
            continue
        pairs += 1
        score += 0.5 if pi == pj else float((yi > yj) == (pi > pj))
    return score / pairs if pairs else math.nan


small_values = st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 7.25]), max_size=40)


@given(st.data())
def test_xauc_matches_brute_force(data):
    y = data.draw(small_values)
    p = data.draw(
        st.lists(st.floats(-3, 3, allow_nan=False) | st.sampled_from([0.0, 1.0]), min_size=len(y), max_size=len(y))
    )
    expected = brute_force_xauc(y, p)
    got = xauc(np.array(y), np.array(p))
    assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-12)


def test_xauc_reference_points():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert xauc(y, y * 10) == 1.0
    assert xauc(y, -y) == 0.0
    assert xauc(y, np.zeros(4)) == 0.5
    assert math.isnan(xauc(np.ones(3), np.arange(3)))


def test_xauc_is_fast_on_a_test_set():
    rng = np.random.default_rng(0)
    y = rng.exponential(10, 100_000)
    assert 0.5 < xauc(y, y + rng.normal(0, 10, y.size)) < 1.0


def test_mae():
    assert mae(np.array([1.0, 2.0]), np.array([2.0, 0.0])) == 1.5
    with pytest.raises(ValueError):
        mae(np.ones(2), np.ones(3))
