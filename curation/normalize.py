"""Score normalization: the declared affine map from raw scorer scores to the loss's scale.

Uni-DPO's η and τ_good and MADPO's τ assume scores of about unit scale, but ArmoRM's raw scores
span roughly 0.05–0.2, so raw margins would make every quality weight ≈ 0.5. The pairs table
therefore keeps *raw* scores and margins, and the pairs manifest records one transform

    normalized = scale * score + shift

(prefsmith.schemas.contracts.ScoreTransform, the manifest's `score_transform` field) that the
trainer applies before it computes weights. Keeping the transform a pair of numbers
(rather than rewriting scores) means one pairs table serves every normalization, and the
manifest says exactly what was done.

| method | scale      | shift        | computed from                              |
|--------|------------|--------------|--------------------------------------------|
| none   | 1          | 0            | nothing                                    |
| zscore | 1 / std    | -mean / std  | every finite score of the chosen scorer    |
| affine | config     | config       | the config's `scale` and `shift`           |

`std` is the population standard deviation (ddof=0): the transformed scores then have exactly
mean 0 and standard deviation 1, which is what "z-score" promises. A margin transforms with the
scale only (the shift cancels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import polars as pl

from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.schemas.data_configs import NormalizationConfig
from prefsmith.schemas.errors import StageError

logger = logging.getLogger(__name__)


def _finite_values(scores: pl.Series | np.ndarray | Sequence[float]) -> np.ndarray:
    """The finite values of `scores` as float64 (nulls and NaN/±inf left out)."""
    if isinstance(scores, pl.Series):
        scores = scores.cast(pl.Float64).to_numpy()  # nulls become NaN
    values = np.asarray(scores, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def score_transform(
    scores: pl.Series | np.ndarray | Sequence[float],
    *,
    config: NormalizationConfig,
    scorer: str,
) -> ScoreTransform:
    """The transform `scale * score + shift` that normalizes `scorer`'s raw `scores`.

    `scores` are one scorer's raw scores (non-finite values are ignored: they never reach a
    pair). Only method `zscore` looks at them. Raises `StageError` when z-scores are undefined
    (no finite score, or all finite scores equal), because dividing by a zero std would turn
    every weight into NaN far downstream, where the cause is hard to see.
    """
    scale, shift = _scale_shift(scores, config=config)
    return ScoreTransform(method=config.method, scale=scale, shift=shift, scorer=scorer)


def _scale_shift(
    scores: pl.Series | np.ndarray | Sequence[float], *, config: NormalizationConfig
) -> tuple[float, float]:
    if config.method == "none":
        return 1.0, 0.0
    if config.method == "affine":
        return float(config.scale), float(config.shift)
    values = _finite_values(scores)
    if values.size == 0:
        raise StageError(
            "normalization.method=zscore: the scorer has no finite scores to standardize; "
            "check the scores table or use method: none"
        )
    mean, std = float(values.mean()), float(values.std())  # population std (ddof=0)
    if not std > 0.0:
        raise StageError(
            f"normalization.method=zscore: all {values.size} finite scores equal {mean!r} "
            "(std 0), so z-scores are undefined; use method: none or affine"
        )
    logger.info("zscore over %d scores: mean=%.6g std=%.6g", values.size, mean, std)
    return 1.0 / std, -mean / std
