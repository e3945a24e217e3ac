"""What the pairs stage drops and counts (prefsmith.curation.pairs): the response-level drop
reasons and their quarantine rows, the prompt-level outcomes, and the response counts its
manifest reconciles (score rows in = ranked + merged duplicates + each drop reason).
"""

from __future__ import annotations

import numpy as np
import polars as pl

STAGE = "pairs"
RESPONSE_DROPS = {
    "missing_response": "no responses row has this response_id, so its text is unknown",
    "prompt_id_mismatch": "the scores row and the responses row name different prompt_ids",
    "non_finite_score": "the score is NaN, infinite or null, so it cannot be ranked",
    "duplicate_score": "the scorer scored this response_id more than once: an extra copy of an "
    "equal score, or one of copies that disagree (then none is trusted)",
}
PROMPT_DROPS = ("missing_prompt", "fewer_than_two_responses", "all_tied", "below_min_margin")


def prompt_outcomes(runs: pl.DataFrame, *, known: np.ndarray) -> dict:
    """{reason: count} over every prompt the scorer scored; reason None = has >= 1 pair."""
    n, paired = runs["n"].to_numpy(), runs["paired"].to_numpy()
    tied = (runs["top"] == runs["bottom"]).to_numpy()
    reasons = {
        PROMPT_DROPS[0]: ~known,
        PROMPT_DROPS[1]: known & (n < 2),
        PROMPT_DROPS[2]: known & (n >= 2) & tied,
        PROMPT_DROPS[3]: known & (n >= 2) & ~tied & ~paired,
    }
    counts = {reason: int(mask.sum()) for reason, mask in reasons.items()}
    return counts | {None: runs.height - sum(counts.values())}


def quarantine_rows(dropped: pl.DataFrame) -> pl.DataFrame:
    """The response-level drops as QUARANTINE rows (row_ref = response_id)."""
    detail = pl.col("status").replace_strict(RESPONSE_DROPS, return_dtype=pl.String)
    raw = pl.struct("response_id", "prompt_id", "score").struct.json_encode()
    return dropped.select(
        stage=pl.lit(STAGE), row_ref="response_id", reason="status", detail=detail, raw=raw
    ).sort("reason", "row_ref", "raw")  # raw too: copies of one response_id tie on the rest


def response_counts(*, copies: int, ranked: int, dropped: pl.DataFrame) -> dict[str, int]:
    """Response-level counts: score rows in (`copies` usable), each drop reason, duplicates
    merged, `ranked` distinct usable texts."""
    counts = {"scores_in": copies + dropped.height}
    counts |= {reason: int((dropped["status"] == reason).sum()) for reason in RESPONSE_DROPS}
    return counts | {
        "duplicate_response_merged": copies - ranked,
        "responses_ranked": ranked,
    }
