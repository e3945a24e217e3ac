"""Data-quality signals of a pairs table: what makes pairs look fine in a histogram and still
teach the wrong thing. Each signal is a share or a correlation with a stated threshold; crossing
it adds one warning (`inspection.warnings`).

- **truncation** — responses that hit the token cap (`finish_reason == "length"`), by side: the
  reward model scored a cut text, and DPO then learns to prefer (or avoid) being cut off. Read
  from the responses table the pairs manifest names (or one given), joined on response ids.
- **near-duplicate sides** — pairs whose chosen and rejected share ≥ 90% of their word sets
  (Jaccard similarity of lower-cased whitespace tokens): their margin is scorer noise.
- **length vs score** — Spearman correlation of response length (words) and score over both
  sides: a scorer that mostly counts words makes a policy that mostly writes more (or less).
- **all-tied prompts** — prompts whose samples all scored the same, so no pair could be made
  (from the scores table when `--scores` is given, else the pairs manifest's `all_tied` drops
  over the prompts it read): generation paid for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from prefsmith.inspection.columns import word_counts
from prefsmith.schemas.io import shard_files

TRUNCATED_MAX = 0.05  # a few cut responses are normal at a tight cap; 1 in 20 shapes the pairs
NEAR_DUPLICATE_JACCARD = 0.9
NEAR_DUPLICATE_MAX = 0.05  # pairs whose sides barely differ: beyond 1 in 20 they dilute a batch
LENGTH_SCORE_MAX = 0.5  # |ρ| ≥ 0.5: length alone orders most of the scores
ALL_TIED_MAX = 0.10  # a tenth of the prompts yielding no pair is a tenth of the budget lost


def jaccard(a: str, b: str) -> float:
    """Word-set Jaccard similarity of two texts (1.0 for two empty texts)."""
    x, y = set(a.lower().split()), set(b.lower().split())
    return 1.0 if not (x or y) else len(x & y) / len(x | y)


def _signal(value: float | None, threshold: float, message: str, **more) -> dict:
    warn = value is not None and abs(value) >= threshold
    return {"value": value, "threshold": threshold, "warn": warn, "message": message, **more}


def near_duplicates(pairs: pl.DataFrame) -> dict:
    similar = [
        jaccard(c, r) >= NEAR_DUPLICATE_JACCARD
        for c, r in pairs.select("chosen", "rejected").iter_rows()
    ]
    share = float(np.mean(similar)) if similar else None
    return _signal(
        share, NEAR_DUPLICATE_MAX,
        f"{sum(similar)} pairs whose chosen and rejected share ≥ {NEAR_DUPLICATE_JACCARD:.0%} of their words",
    )  # fmt: skip


def length_vs_score(pairs: pl.DataFrame) -> dict:
    lengths = np.concatenate([word_counts(pairs["chosen"]), word_counts(pairs["rejected"])])
    scores = np.concatenate([pairs["score_chosen"].to_numpy(), pairs["score_rejected"].to_numpy()])
    keep = np.isfinite(scores)
    rho = None
    if keep.sum() >= 3 and np.ptp(lengths[keep]) > 0 and np.ptp(scores[keep]) > 0:
        rho = float(spearmanr(lengths[keep], scores[keep]).statistic)
    return _signal(rho, LENGTH_SCORE_MAX, "Spearman ρ of response length (words) and score")


def all_tied(manifest: Mapping | None, scores: pl.DataFrame | None = None) -> dict:
    """Share of prompts whose samples all scored the same: from the scores table where given
    (every prompt with 2+ scored samples), else from the pairs manifest's `all_tied` drops."""
    if scores is not None and scores.height:
        per_prompt = (
            scores.filter(pl.col("score").is_finite())
            .group_by("prompt_id")
            .agg(pl.len().alias("n"), pl.col("score").n_unique().alias("distinct"))
            .filter(pl.col("n") >= 2)
        )
        tied, total = int((per_prompt["distinct"] == 1).sum()), per_prompt.height
        if total:
            message = f"{tied} of {total} prompts: all samples tied (scores table)"
            return _signal(tied / total, ALL_TIED_MAX, message)
    if not manifest or not manifest.get("rows_in"):
        return _signal(None, ALL_TIED_MAX, "prompts whose samples all tied (no pairs manifest)")
    tied = int(manifest.get("dropped", {}).get("all_tied", 0))
    share = tied / manifest["rows_in"]
    return _signal(
        share, ALL_TIED_MAX, f"{tied} of {manifest['rows_in']} prompts: all samples tied"
    )


def truncation(pairs: pl.DataFrame, responses: Path | None) -> dict:
    if responses is None or not Path(responses).exists():
        return _signal(None, TRUNCATED_MAX, "responses that hit the token cap (no responses table)")
    files = shard_files(responses) if Path(responses).is_dir() else [Path(responses)]
    cut = pl.scan_parquet(files).select("response_id", "finish_reason").collect()
    is_cut = dict(zip(cut["response_id"], cut["finish_reason"] == "length", strict=True))
    by_side = {
        side: float(np.mean([bool(is_cut.get(r)) for r in pairs[f"{side}_response_id"]]))
        for side in ("chosen", "rejected")
    }
    worst = max(by_side.values()) if pairs.height else None
    return _signal(
        worst, TRUNCATED_MAX, "responses that hit the token cap (finish_reason=length), worst side",
        by_side=by_side,
    )  # fmt: skip


def quality_signals(
    pairs: pl.DataFrame,
    *,
    manifest: Mapping | None,
    responses: Path | None,
    scores: pl.DataFrame | None = None,
) -> dict[str, dict]:
    """Every signal by name: {value, threshold, warn, message[, by_side]}; `scores` (the pairs'
    scorers' rows) gives the all-tied share exactly, where the manifest only counts drops."""
    return {
        "truncation": truncation(pairs, responses),
        "near_duplicates": near_duplicates(pairs),
        "length_vs_score": length_vs_score(pairs),
        "all_tied_prompts": all_tied(manifest, scores),
    }


def quality_warnings(stats: Mapping) -> list[str]:
    """One warning per signal over its threshold."""
    out = []
    for name, s in (stats.get("quality") or {}).items():
        if s["warn"]:
            sides = s.get("by_side")
            detail = (
                f" (chosen {sides['chosen']:.1%}, rejected {sides['rejected']:.1%})"
                if sides
                else ""
            )
            out.append(
                f"{name.replace('_', ' ')}: {s['value']:.3g} ≥ {s['threshold']:g} — {s['message']}{detail}"
            )
    return out


QUALITY_HEADER = ["signal", "value", "threshold", "what"]


def quality_rows(stats: Mapping) -> list[list[str]]:
    """One table row per signal, `!` before a value over its threshold (terminal and HTML)."""
    return [
        [
            name,
            ("! " if s["warn"] else "") + ("–" if s["value"] is None else f"{s['value']:.3g}"),
            f"{s['threshold']:g}",
            s["message"],
        ]
        for name, s in stats["quality"].items()
    ]
