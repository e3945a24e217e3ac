"""Drift between two pairs tables: a two-sample Kolmogorov–Smirnov test per distribution.

`prefsmith inspect --against OLDER_PAIRS` compares each distribution in DRIFT_NAMES of the
current table with the older one's (each under its own manifest's score transform).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from prefsmith.inspection.summary import finite_or_none

# Distributions compared between two tables with `--against` (lengths only in the same unit).
DRIFT_NAMES = (
    "score_chosen",
    "score_rejected",
    "margin_raw",
    "margin_norm",
    "w_qual",
    "madpo_weight",
    "len_chosen",
    "len_rejected",
    "len_diff",
)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic D = sup_x |F_a(x) − F_b(x)| (NaN if one is empty).

    Both empirical CDFs are right-continuous step functions, so the supremum is reached at one
    of the pooled sample values; evaluating both CDFs there with a sorted search is exact.
    """
    a = np.sort(np.asarray(a, dtype=np.float64))
    b = np.sort(np.asarray(b, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        return float("nan")
    points = np.concatenate([a, b])  # (n + m,)
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_pvalue(d: float, *, n: int, m: int) -> float:
    """Asymptotic p-value of a two-sample KS statistic (Kolmogorov series, Stephens' correction).

    Approximate for small samples; enough to rank drifts, not to publish a test.
    """
    if not (n and m) or math.isnan(d):
        return float("nan")
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return 1.0  # the series is 1 to 1e-10 here and converges slowly
    total = sum(2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(total, 0.0), 1.0))


def drift(
    current: Mapping[str, np.ndarray],
    against: Mapping[str, np.ndarray],
    *,
    same_length_unit: bool = True,
) -> dict[str, dict]:
    """KS statistic and asymptotic p-value per distribution in DRIFT_NAMES, current vs older.

    Length distributions are compared only when both tables measured length in the same unit.
    """
    out = {}
    for name in DRIFT_NAMES:
        if name.startswith("len_") and not same_length_unit:
            continue
        a, b = (np.asarray(x[name], dtype=np.float64) for x in (current, against))
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        d = ks_statistic(a, b)
        out[name] = {
            "ks": finite_or_none(d),
            "p_value": finite_or_none(ks_pvalue(d, n=a.size, m=b.size)),
            "n": int(a.size),
            "n_against": int(b.size),
        }
    return out
