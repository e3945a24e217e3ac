"""Scores reused from the incremental store (prefsmith.schemas.store): a response's score is
taken from an earlier build when the response (its id and its text: a new generator writes new
text under the same id) and the scorer (its model revision and config) are unchanged, so only new
or changed responses reach the reward model. Quarantined rows are not stored: they are judged
again, so a rebuild's quarantine is complete on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.ids import content_hash
from prefsmith.schemas.store import RowStore, reusing
from prefsmith.schemas.tables import SCORES

NOT_IN_NAMESPACE = {"model", "revision", "shard_size", "store"}
JUDGE_NOT_IN_NAMESPACE = {"servers", "api_key_env", "request_timeout_s"}


def scorer_namespace(config: ScoreConfig, *, model_stamp: str) -> str:
    """The hash of everything but the response that a score depends on."""
    settings = config.model_dump(
        mode="json",
        exclude={**dict.fromkeys(NOT_IN_NAMESPACE, True), "judge": JUDGE_NOT_IN_NAMESPACE},
    )
    return content_hash([settings, model_stamp])


def score_store(config: ScoreConfig, *, model_stamp: str) -> RowStore | None:
    """This scorer's namespace of the store, or None without `store`."""
    if config.store is None:
        return None
    namespace = scorer_namespace(config, model_stamp=model_stamp)
    return RowStore(Path(config.store) / "scores" / namespace, SCORES)


def response_key(response_id: str, response: str, anchor: str | None = None) -> str:
    """A score's reuse key: the response, and for a pairwise judge the anchor it is judged
    against (prefsmith.scoring.llm_judge)."""
    return content_hash(
        [response_id, response] if anchor is None else [response_id, response, anchor]
    )


def reusing_scores(
    compute: Callable[[int, pl.DataFrame], list[dict[str, Any]]],
    *,
    store: RowStore | None,
    records: Path,
    texts: dict[str, tuple[str, str | None]],
) -> Callable[[int, pl.DataFrame], list[dict[str, Any]]]:
    """`compute(index, shard)` (joined responses → score rows) that scores only the responses the
    store lacks; `texts` maps response_id to (response text, anchor text or None) of this build."""
    return reusing(
        compute,
        store=store,
        records=records,
        keys=lambda shard: [response_key(rid, *texts[rid]) for rid in shard["response_id"]],
        subset=lambda shard, keep: shard.filter(pl.Series(keep, dtype=pl.Boolean)),
        row_key=lambda row: response_key(row["response_id"], *texts[row["response_id"]]),
    )
