"""Number summaries that go into the statistics dict: JSON-ready (a non-finite value is None).

A summary is n, mean, std (population) and the QUANTILES (numpy's 'linear' interpolation) of
the finite values, under the keys QUANTILE_KEYS.
"""

from __future__ import annotations

import math

import numpy as np

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
QUANTILE_KEYS = ("q0", "q5", "q25", "q50", "q75", "q95", "q100")


def finite_or_none(x: float) -> float | None:
    """`x` as a float, or None when it is NaN or infinite (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def fmt_number(x: float | int | None, digits: int = 4) -> str:
    """A table cell: `digits` significant digits, "–" for a missing or non-finite value."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """n, mean, std (population) and the QUANTILES (numpy 'linear') of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"n": 0, "mean": None, "std": None} | dict.fromkeys(QUANTILE_KEYS)
    qs = np.quantile(values, QUANTILES)
    out: dict[str, float | int | None] = {
        "n": int(values.size),
        "mean": finite_or_none(values.mean()),
        "std": finite_or_none(values.std()),
    }
    return out | {k: finite_or_none(q) for k, q in zip(QUANTILE_KEYS, qs, strict=True)}
