"""Per-pair weights: which values a pairs table's `weight` column may hold (prefsmith.schemas.tables.
WEIGHT), checked where weights enter (`import`) and where they are used (`train`).

A weight is a pair's share of its batch's loss (prefsmith.training.losses.reduce_loss): finite
and >= 0. Zero is allowed (the pair then moves nothing), but a table whose weights are all zero
would train on nothing, so that stops the stage.
"""

from __future__ import annotations

import math
from typing import Any

from prefsmith.schemas.errors import InputError

INVALID_WEIGHT = "invalid_weight"  # the quarantine reason


def weight_problem(value: Any) -> str | None:
    """Why `value` cannot be a pair's weight (a quarantine detail), or None when it can."""
    if value is None:
        return "the weight is missing (null); write 1 for an unweighted pair"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"the weight {value!r} is not a number"
    if not math.isfinite(value):
        return f"the weight is {value}: it must be a finite number"
    if value < 0:
        return f"the weight is {value}: it must be >= 0 (0 leaves the pair out of the loss)"
    return None


def check_some_weight(weights: list[float], *, where: str) -> None:
    """Stop with one line when every weight is zero: the weighted mean would be 0/0."""
    if weights and not any(w > 0 for w in weights):
        raise InputError(
            f"{where}: every pair has weight 0, so training would learn nothing; give some pairs "
            "a weight > 0 (or drop the `weight` column: every pair then weighs 1)"
        )
