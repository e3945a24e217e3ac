"""Drift between two pairs tables (inspection/drift.py): the two-sample KS statistic against
hand-worked examples and a brute-force count, its p-value, and the drift warning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefsmith.inspection import warnings as inspect_warnings
from prefsmith.inspection.drift import DRIFT_NAMES, drift, ks_pvalue, ks_statistic


def test_ks_statistic_hand_example():
    """a = [1, 2, 3], b = [2, 4]. F_a at 1, 2, 3, 4 = 1/3, 2/3, 1, 1; F_b = 0, 1/2, 1/2, 1;
    |differences| = 1/3, 1/6, 1/2, 0, so D = 1/2."""
    assert ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(0.5)
    assert ks_statistic(np.array([2.0, 4.0]), np.array([3.0, 1.0, 2.0])) == pytest.approx(0.5)
    assert ks_statistic(np.arange(10.0), np.arange(10.0)) == 0.0
    assert ks_statistic(np.zeros(5), np.ones(3)) == 1.0
    assert math.isnan(ks_statistic(np.zeros(0), np.ones(3)))


def brute_force_ks(a, b):
    """sup over every pooled value of |#(a ≤ x)/n − #(b ≤ x)/m|, counted with plain loops."""
    return max(
        abs(sum(v <= x for v in a) / len(a) - sum(v <= x for v in b) / len(b))
        for x in list(a) + list(b)
    )


def test_ks_statistic_matches_brute_force_with_ties():
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.integers(0, 8, rng.integers(1, 30)), rng.integers(2, 10, rng.integers(1, 30))
        assert ks_statistic(a, b) == pytest.approx(brute_force_ks(list(a), list(b)), abs=1e-12)


def test_ks_detects_a_shifted_distribution():
    """N(0,1) vs N(1,1): D → sup|Φ(x) − Φ(x − 1)| = 2Φ(1/2) − 1 = 0.38292."""
    rng = np.random.default_rng(5)
    a, b, c = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000), rng.normal(0, 1, 4000)
    expected = 2 * 0.5 * (1 + math.erf(0.5 / math.sqrt(2))) - 1
    d = ks_statistic(a, b)
    assert d == pytest.approx(expected, abs=0.04)
    assert ks_pvalue(d, n=4000, m=4000) < 1e-10
    same = ks_statistic(a, c)
    assert same < 0.05 and ks_pvalue(same, n=4000, m=4000) > 0.001
    drifted = drift(
        {k: a for k in DRIFT_NAMES}, {k: b for k in DRIFT_NAMES}, same_length_unit=False
    )
    assert set(drifted) == {k for k in DRIFT_NAMES if not k.startswith("len_")}
    assert any(
        w.startswith("drift in margin_raw") for w in inspect_warnings._drift({"drift": drifted})
    )
