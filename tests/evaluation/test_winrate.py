"""Win rate, its bootstrap interval and the length-controlled win rate against hand oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefsmith.evaluation.winrate import length_controlled_win_rate, outcomes, win_rate


def test_ties_count_half_and_counts_add_up():
    tuned, base = np.array([3.0, 2.0, 1.0, 5.0]), np.array([1.0, 2.0, 3.0, 0.0])
    assert outcomes(tuned, base).tolist() == [1.0, 0.5, 0.0, 1.0]
    result = win_rate(tuned, base, n_boot=500)
    assert result.rate == pytest.approx(0.625)
    assert (result.wins, result.ties, result.losses, result.n) == (2, 1, 1, 4)
    assert result.low <= result.rate <= result.high


def test_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    won = (rng.random(400) < 0.7).astype(float)
    result = win_rate(won, np.full(400, 0.5), n_boot=4000, seed=3)
    half_width = 1.96 * math.sqrt(result.rate * (1 - result.rate) / 400)  # ≈ 0.045
    assert result.high - result.low == pytest.approx(2 * half_width, rel=0.12)


def _logistic_loglik(a: float, b: float, y, z) -> float:
    p = 1 / (1 + np.exp(-(a + b * z)))
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_lc_win_rate_is_the_maximum_likelihood_intercept():
    rng = np.random.default_rng(0)
    diff = rng.normal(0, 20, size=300)
    won = (rng.random(300) < 1 / (1 + np.exp(-(0.4 + diff / 15)))).astype(float)
    lc = length_controlled_win_rate(won, diff)
    # Independent oracle: a coarse-to-fine grid search of the same log-likelihood.
    z = diff / np.std(diff)
    grid_a, grid_b = np.linspace(-2, 2, 201), np.linspace(-5, 5, 201)
    best = max(
        ((a, b) for a in grid_a for b in grid_b), key=lambda ab: _logistic_loglik(*ab, won, z)
    )
    assert lc == pytest.approx(1 / (1 + math.exp(-best[0])), abs=0.01)
    assert abs(lc - 0.6) < 0.1  # the true intercept σ(0.4) ≈ 0.599
    assert won.mean() != pytest.approx(lc, abs=1e-3)  # length was not ignored


def test_lc_equals_raw_rate_when_length_does_not_vary():
    won = np.array([1, 1, 0, 1, 0.5, 1.0])
    assert length_controlled_win_rate(won, np.zeros(6)) == pytest.approx(won.mean(), abs=1e-6)
