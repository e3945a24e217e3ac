"""Paired win rate with a bootstrap interval, and a length-controlled win rate.

Inputs are aligned arrays: element i of every array belongs to the same held-out prompt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class WinRate:
    rate: float  # mean of 1 (tuned wins), 0.5 (tie), 0 (base wins)
    low: float  # 95% percentile-bootstrap interval over prompts
    high: float
    n: int
    wins: int
    ties: int
    losses: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def outcomes(tuned: np.ndarray, base: np.ndarray, *, tie_tolerance: float = 0.0) -> np.ndarray:
    """Per-prompt outcome (n,): 1 if tuned > base, 0 if below, 0.5 within `tie_tolerance`."""
    diff = np.asarray(tuned, dtype=np.float64) - np.asarray(base, dtype=np.float64)  # (n,)
    return np.where(np.abs(diff) <= tie_tolerance, 0.5, (diff > 0).astype(np.float64))


def win_rate(
    tuned: np.ndarray,
    base: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    tie_tolerance: float = 0.0,
) -> WinRate:
    """Win rate of tuned over base, ties counted as half, with a 95% bootstrap interval."""
    won = outcomes(tuned, base, tie_tolerance=tie_tolerance)  # (n,)
    if won.size == 0:
        raise ValueError("win rate of zero prompts")
    rng = np.random.default_rng(seed)
    resampled = won[rng.integers(0, won.size, size=(n_boot, won.size))].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return WinRate(
        rate=float(won.mean()),
        low=float(low),
        high=float(high),
        n=int(won.size),
        wins=int((won == 1).sum()),
        ties=int((won == 0.5).sum()),
        losses=int((won == 0).sum()),
    )


def length_controlled_win_rate(
    won: np.ndarray, length_diff: np.ndarray, *, iters: int = 50
) -> float:
    """Win rate with the length difference regressed out, in the spirit of AlpacaEval's LC.

    Fit the logistic regression P(win) = σ(a + b·z) on the per-prompt outcomes (ties as 0.5,
    a valid target for the log-loss), with z the length difference (tuned − base, in tokens)
    scaled by its standard deviation; report σ(a), the predicted win rate at equal length.
    Newton's method with a small ridge on b keeps the fit finite when lengths separate wins.
    """
    y = np.asarray(won, dtype=np.float64)  # (n,)
    scale = np.std(length_diff) or 1.0
    x = np.stack(
        [np.ones_like(y), np.asarray(length_diff, dtype=np.float64) / scale], axis=1
    )  # (n, 2)
    w = np.zeros(2)
    ridge = np.diag([0.0, 1e-3])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-x @ w))  # (n,)
        grad = x.T @ (p - y) / y.size + ridge @ w  # (2,)
        hess = (x.T * (p * (1 - p))) @ x / y.size + ridge + 1e-9 * np.eye(2)  # (2, 2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(1.0 / (1.0 + np.exp(-w[0])))
