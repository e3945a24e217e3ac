"""Win rate and its bootstrap interval against hand oracles (length-adjusted: test_length_adjusted)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefsmith.evaluation.winrate import outcomes, win_rate


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
