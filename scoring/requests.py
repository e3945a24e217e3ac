"""Joined responses → score requests: each response with its prompt's messages and metadata
and its prompt's first sample (the anchor a pairwise judge compares it with), or the reason it
cannot be scored at all."""

from __future__ import annotations

import json
import logging
from typing import Any

import polars as pl

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.quarantine import Rejected
from prefsmith.scoring.batching import ScoreRequest

logger = logging.getLogger(__name__)


def join_responses(responses: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Responses in response_id order with their prompt's messages and metadata (left join on id).

    `_known` is null where the prompt_id is not in the prompts table; `_first` is false for a
    repeated response_id; `_anchor_id` and `_anchor` are the prompt's first sample (lowest
    sample_idx), which pairwise judges compare each response with.
    """
    known = (
        prompts.select("prompt_id", "messages", "metadata")
        .unique("prompt_id", keep="first", maintain_order=True)
        .with_columns(pl.lit(True).alias("_known"))
    )
    ordered = responses.sort("response_id", maintain_order=True)
    ordered = ordered.with_columns(pl.col("response_id").is_first_distinct().alias("_first"))
    anchors = (
        responses.sort("sample_idx", "response_id")
        .unique("prompt_id", keep="first", maintain_order=True)
        .select("prompt_id", _anchor_id="response_id", _anchor="response")
    )
    joined = ordered.join(known, on="prompt_id", how="left", maintain_order="left")
    return joined.join(anchors, on="prompt_id", how="left", maintain_order="left")


def _metadata(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        logger.warning("prompt metadata is not valid JSON; treated as empty: %.80s", raw)
        return {}
    return value if isinstance(value, dict) else {}


def to_item(row: dict[str, Any]) -> ScoreRequest | Rejected:
    """One joined row as a request, or as a Rejected when it cannot be scored at all."""
    rid, pid = row["response_id"], row["prompt_id"]
    if not row["_first"]:
        return Rejected(rid, "duplicate_response_id", "response_id seen before; first kept")
    if not row["_known"]:
        return Rejected(
            rid,
            "unknown_prompt",
            f"prompt_id {pid!r} is not in the prompts table",
            row["response"] or "",
        )
    if row["response"] is None:
        return Rejected(rid, "missing_response", "response text is null")
    return ScoreRequest(
        rid,
        pid,
        list(row["messages"]),
        row["response"],
        _metadata(row["metadata"]),
        row["n_tokens"],
        row["_anchor_id"],
        row["_anchor"],
    )


def score_texts(joined: pl.DataFrame, config: ScoreConfig) -> dict[str, tuple[str, str | None]]:
    """response_id → (response, anchor): the anchor only for a pairwise judge, whose score
    depends on it (prefsmith.scoring.reuse keys reused scores on both)."""
    pairwise = config.kind == "llm_judge" and config.judge.mode == "pairwise"
    anchors = joined["_anchor"] if pairwise else [None] * joined.height
    return {
        rid: (text, anchor)
        for rid, text, anchor in zip(
            joined["response_id"], joined["response"], anchors, strict=True
        )
    }
