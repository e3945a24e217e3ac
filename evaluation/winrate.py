"""Paired win rate with a bootstrap interval (the length-adjusted one is in `length_adjusted`).

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
