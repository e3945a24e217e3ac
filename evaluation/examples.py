"""Side-by-side generations for the evaluation report: what the win rate is made of.

A win rate says how often the tuned policy beat its base; only the texts say how. For each
held-out prompt the report pairs the two policies' first samples (`sample_idx` 0: what greedy-ish
use would show), ranked by the per-prompt reward difference the win rate counts (the mean over
each side's samples): the `k` largest wins, the `k` worst losses and `k` other prompts drawn with
a fixed seed. The rewards shown are those per-prompt means, so an example's numbers are the ones
its outcome was decided on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from prefsmith.schemas.io import read_frame
from prefsmith.schemas.tables import PROMPTS, RESPONSES

TEXT_CHARS = 2000  # a report, not an archive: the responses tables hold every sample whole
KINDS = ("best_wins", "worst_losses", "random")


def _first_samples(responses: Path) -> pl.DataFrame:
    frame = read_frame(responses, RESPONSES).sort("prompt_id", "sample_idx")
    return frame.group_by("prompt_id", maintain_order=True).first().select("prompt_id", "response")


def _prompt_texts(prompts: Path | None) -> pl.DataFrame | None:
    """prompt_id → the last user turn's text."""
    if prompts is None:
        return None
    frame = read_frame(prompts, PROMPTS).select("prompt_id", "messages")
    text = [
        next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        for messages in frame["messages"].to_list()
    ]
    return pl.DataFrame({"prompt_id": frame["prompt_id"], "prompt": text})


def example_table(
    paired: pl.DataFrame, *, tuned: Path, base: Path, prompts: Path | None = None
) -> pl.DataFrame:
    """One row per paired prompt: prompt, tuned, base, reward_tuned, reward_base, diff."""
    table = (
        paired.select(
            "prompt_id",
            pl.col("score").alias("reward_tuned"),
            pl.col("score_base").alias("reward_base"),
        )
        .join(_first_samples(tuned).rename({"response": "tuned"}), on="prompt_id", how="left")
        .join(_first_samples(base).rename({"response": "base"}), on="prompt_id", how="left")
        .with_columns(diff=pl.col("reward_tuned") - pl.col("reward_base"))
    )
    texts = _prompt_texts(prompts)
    if texts is not None:
        table = table.join(texts, on="prompt_id", how="left")
    else:
        table = table.with_columns(prompt=pl.lit(None, dtype=pl.String))
    return table.with_columns(pl.col("prompt", "tuned", "base").str.slice(0, TEXT_CHARS))


def pick_examples(table: pl.DataFrame, *, k: int = 5, seed: int = 0) -> dict[str, list[dict]]:
    """The k largest wins (diff > 0), the k worst losses (diff < 0), k seeded others."""
    ordered = table.sort(["diff", "prompt_id"], descending=[True, False])
    wins = ordered.filter(pl.col("diff") > 0).head(k)
    losses = ordered.filter(pl.col("diff") < 0).reverse().head(k)
    chosen = set(wins["prompt_id"]) | set(losses["prompt_id"])
    rest = ordered.filter(~pl.col("prompt_id").is_in(list(chosen)))
    take = np.random.default_rng(seed).permutation(rest.height)[: min(k, rest.height)]
    picked = {"best_wins": wins, "worst_losses": losses, "random": rest[np.sort(take)]}
    columns = ["prompt_id", "prompt", "tuned", "base", "reward_tuned", "reward_base"]
    return {kind: frame.select(columns).to_dicts() for kind, frame in picked.items()}
