"""Drift between two pairs tables: scipy's two-sample Kolmogorov–Smirnov test per distribution.

`prefsmith inspect --against OLDER_PAIRS` compares each distribution in DRIFT_NAMES of the
current table with the older one's (each under its own manifest's score transform).

Two things would make that comparison mislead, and both are handled here:

- **Several names for one quantity.** margin_norm = scale·margin_raw (scale > 0) and
  w_qual = σ(η·margin_norm) with the same η on both tables are monotone transforms of the
  margin, and a KS statistic does not change when one monotone map is applied to both samples,
  so all three drift together. QUANTITY groups them; the warnings name each quantity once.
- **Tables scored by different scorers.** Their scores are on different scales, so the score,
  margin and weight distributions differ whether or not the data moved. `scorer_comparison`
  names each table's scorers; the warnings say when they differ instead of reporting drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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

# The quantity each distribution measures; names sharing one are monotone transforms of it.
QUANTITY = {
    "score_chosen": "chosen score",
    "score_rejected": "rejected score",
    "margin_raw": "margin",
    "margin_norm": "margin",
    "w_qual": "margin",  # σ(η·margin_norm), increasing in the margin
    "madpo_weight": "MADPO weight",  # not monotone in the margin: its own quantity
    "len_chosen": "chosen length",
    "len_rejected": "rejected length",
    "len_diff": "length difference",
}

# Quantities on the scorer's scale: meaningless to compare across different scorers.
SCORE_QUANTITIES = frozenset({"chosen score", "rejected score", "margin", "MADPO weight"})


def ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(D, p) of `scipy.stats.ks_2samp` (two-sided; exact p for small samples, else asymptotic),
    or (NaN, NaN) when a sample is empty.

    scipy is imported here, not at module top: it costs a second that `inspect` without
    `--against` need not pay.
    """
    from scipy.stats import ks_2samp

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def drift(
    current: Mapping[str, np.ndarray],
    against: Mapping[str, np.ndarray],
    *,
    same_length_unit: bool = True,
) -> dict[str, dict]:
    """KS statistic and p-value per distribution in DRIFT_NAMES, current vs older, with the
    quantity each one measures (QUANTITY).

    Length distributions are compared only when both tables measured length in the same unit.
    """
    out = {}
    for name in DRIFT_NAMES:
        if name.startswith("len_") and not same_length_unit:
            continue
        a, b = (np.asarray(x[name], dtype=np.float64) for x in (current, against))
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        d, p = ks_test(a, b)
        out[name] = {
            "ks": finite_or_none(d),
            "p_value": finite_or_none(p),
            "n": int(a.size),
            "n_against": int(b.size),
            "quantity": QUANTITY[name],
        }
    return out


def scorer_comparison(current: Sequence[str], against: Sequence[str]) -> dict:
    """Each table's scorers (name + revision, sorted) and whether they are the same set."""
    mine, theirs = sorted({str(s) for s in current}), sorted({str(s) for s in against})
    return {"current": mine, "against": theirs, "same": mine == theirs}
