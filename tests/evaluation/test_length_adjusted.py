"""The length-adjusted win rate (evaluation/length_adjusted.py) against statsmodels' own fit, a
hand-computed Fisher-information interval, and data with and without a length effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from prefsmith.evaluation.length_adjusted import length_adjusted_win_rate


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _length_effect_data(*, b: float, n: int = 400, seed: int = 0, mean_diff: float = 30.0):
    """Tuned answers longer by `mean_diff` tokens on average (sd 20); P(win) = σ(0.2 + b·diff/20)."""
    rng = np.random.default_rng(seed)
    diff = rng.normal(mean_diff, 20.0, n)  # (n,) tuned − base tokens
    won = (rng.random(n) < _sigmoid(0.2 + b * diff / 20.0)).astype(float)  # (n,)
    won[::9] = 0.5  # some ties
    return won, diff


def test_equals_statsmodels_own_glm_fit():
    won, diff = _length_effect_data(b=0.8)
    got = length_adjusted_win_rate(won, length_diff=diff)
    z = diff / diff.std()
    oracle = sm.GLM(won, sm.add_constant(z), family=sm.families.Binomial()).fit()
    lo, hi = oracle.conf_int(alpha=0.05)[0]  # the intercept's Wald interval
    assert got.status == "ok" and got.n == 400
    assert got.rate == pytest.approx(_sigmoid(oracle.params[0]), abs=1e-10)
    assert (got.low, got.high) == pytest.approx((_sigmoid(lo), _sigmoid(hi)), abs=1e-10)
    assert got.length_coef == pytest.approx(oracle.params[1], abs=1e-10)
    assert got.low < got.rate < got.high


def test_interval_is_the_hand_computed_fisher_information_one():
    """se(a)² = [(XᵀWX)⁻¹]₀₀ with W = diag(p(1 − p)) at the fit; interval σ(a ± 1.96·se(a))."""
    won, diff = _length_effect_data(b=0.5, n=300, seed=3)
    got = length_adjusted_win_rate(won, length_diff=diff)
    x = np.column_stack([np.ones(diff.size), diff / diff.std()])  # (n, 2)
    a = math.log(got.rate / (1 - got.rate))
    p = _sigmoid(x @ np.array([a, got.length_coef]))  # (n,)
    assert x.T @ (won - p) == pytest.approx([0.0, 0.0], abs=1e-6)  # the MLE's score equations
    se = math.sqrt(np.linalg.inv((x.T * (p * (1 - p))) @ x)[0, 0])
    z975 = 1.959963984540054
    assert got.low == pytest.approx(_sigmoid(a - z975 * se), abs=1e-8)
    assert got.high == pytest.approx(_sigmoid(a + z975 * se), abs=1e-8)


def test_no_length_effect_gives_about_the_raw_win_rate():
    """b = 0 and lengths centred on 0: the adjusted rate is within 0.01 of the raw one. With
    tuned longer by 1.5 sd the slope's noise is extrapolated, so only the interval must cover it."""
    won, diff = _length_effect_data(b=0.0, n=600, seed=1, mean_diff=0.0)
    got = length_adjusted_win_rate(won, length_diff=diff)
    assert abs(got.rate - won.mean()) < 0.01
    assert abs(got.length_coef) < 0.25  # nothing to find
    won, diff = _length_effect_data(b=0.0, n=600, seed=1)
    shifted = length_adjusted_win_rate(won, length_diff=diff)
    assert shifted.low < won.mean() < shifted.high


def test_strong_length_effect_moves_the_estimate_negative_control():
    """b = 1.5 with tuned longer by 1.5 sd on average: raw ≈ 0.8 (ties are every 9th), at equal length σ(0.2) ≈ 0.55."""
    won, diff = _length_effect_data(b=1.5, n=600, seed=2)
    got = length_adjusted_win_rate(won, length_diff=diff)
    assert won.mean() > 0.75
    assert won.mean() - got.rate > 0.2  # the adjustment is not a no-op
    assert got.low < _sigmoid(0.2) < got.high  # and it recovers the truth at equal length


def test_constant_length_difference_is_the_intercept_only_model():
    """sd 0: intercept-only MLE σ(a) = mean(y); se(a) = 1/√(n·p(1 − p))."""
    won = np.array([1, 1, 0, 1, 0.5, 1.0, 0, 1, 1, 0.5])
    got = length_adjusted_win_rate(won, length_diff=np.full(10, 7.0))
    p = won.mean()
    half = 1.959963984540054 / math.sqrt(10 * p * (1 - p))
    a = math.log(p / (1 - p))
    assert got.rate == pytest.approx(p, abs=1e-9) and got.length_coef is None
    assert (got.low, got.high) == pytest.approx((_sigmoid(a - half), _sigmoid(a + half)), abs=1e-8)


def test_no_estimate_where_the_likelihood_has_no_maximum():
    diff = np.linspace(-50, 50, 40)
    every_win = length_adjusted_win_rate(np.ones(40), length_diff=diff)
    assert every_win.rate is None and every_win.status == "every outcome is 1"
    separated = length_adjusted_win_rate((diff > 0).astype(float), length_diff=diff)
    assert separated.rate is None and separated.status == "lengths separate wins from losses"
    missing = length_adjusted_win_rate(np.array([1.0, 0.0]), length_diff=np.array([1.0, np.nan]))
    assert missing.rate is None and missing.status == "response lengths missing"
