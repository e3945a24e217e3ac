"""Pair selection inside one batch of prompt *runs*: numpy segment reductions, no string group_by.

A batch is a DataFrame whose rows come in runs: consecutive rows with one prompt_id, each run
holding ALL of that prompt's score rows (prefsmith.curation.pairs_stream guarantees it, or falls back to a
sorted input). Every decision about a prompt happens inside its run, so a batch's result does
not depend on the other batches, and nothing depends on row order inside a run either:

- duplicate texts are found with a 64-bit hash of (run, text), then merged EXACTLY by a polars
  group_by over the few candidate rows only (a hash collision costs time, never correctness);
  the merged response keeps the row with the smallest response_id, the mean of the copies'
  scores (summed in score order, so bit-identical under any row order) and their fewest tokens;
- the rank key is (selection score as order-preserving int64 bits, polars hash of response_id),
  compared lexicographically: `rank_key` expresses the same order as one Int128 for polars;
- best_vs_worst is two segment arg-max/arg-min passes (`extreme_rows`); the other strategies run
  the polars window queries below on the batch's merged responses.

Batch input columns: response_id, prompt_id, score, status (null = usable; else the drop
reason) and, for the stage, response (text) and n_tokens. Without `response` nothing is merged
(the benchmark's score-only selection).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from prefsmith.schemas.data_configs import PairsConfig

_SIGN_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)
_INT64 = np.iinfo(np.int64)
_UINT64_MAX = np.uint64(np.iinfo(np.uint64).max)
SIDE_COLUMNS = {
    "response_id": "{}_response_id",
    "response": "{}",
    "score": "score_{}",
    "rank": "rank_{}",
}


@dataclass(frozen=True)
class BatchPairs:
    """One batch's result: `runs` (prompt_id, n, top, bottom, copies, paired) one row per prompt;
    `candidates` the pairs that passed the margin rule; `dropped` the rows with a status."""

    runs: pl.DataFrame
    candidates: pl.DataFrame
    dropped: pl.DataFrame


@dataclass(frozen=True)
class Merged:
    """Per-row arrays after merging copies: only `active` rows (one per distinct text) rank."""

    active: np.ndarray  # (N,) bool: usable and the representative of its text
    score: np.ndarray  # (N,) float64: the mean over copies on representatives
    tokens: np.ndarray  # (N,) float64: fewest tokens over copies; 0 where unknown
    copies: np.ndarray  # (N,) int64: usable rows a representative stands for; 0 elsewhere


def ordered_bits(values: np.ndarray) -> np.ndarray:
    """Int64 codes whose integer order is the float order of finite `values`.

    IEEE-754 doubles compare like sign-magnitude integers, so flipping the magnitude bits of
    negative numbers makes two's-complement order match float order. Adding 0.0 first turns
    -0.0 into +0.0, so equal floats get one code. No finite value maps to int64's min or max,
    which `extreme_rows` callers use as "never picked" sentinels.
    """
    bits = (np.asarray(values, dtype=np.float64) + 0.0).view(np.int64)  # (N,)
    return np.where(bits < 0, bits ^ _SIGN_FLIP, bits)  # (N,)


def _ordered_series(values: pl.Series) -> pl.Series:
    return pl.Series(values.name, ordered_bits(values.to_numpy()))


def rank_key(*, length_penalty: float) -> pl.Expr:
    """A per-response Int128 key: higher = better; order = (selection score, tie-break).

    selection = score - length_penalty * n_tokens; equal selection scores are ordered by a
    hash of response_id, so every strategy gets one deterministic order that does not depend
    on row order. The numpy path (`extreme_rows`) uses the same two parts without the Int128.
    """
    selection = pl.col("score") - length_penalty * pl.col("n_tokens").fill_null(0).cast(pl.Float64)
    ordered = selection.map_batches(_ordered_series, return_dtype=pl.Int64, is_elementwise=True)
    tie_break = pl.col("response_id").hash()  # UInt64
    return ordered.cast(pl.Int128) * pl.lit(2**64, dtype=pl.Int128) + tie_break.cast(pl.Int128)


def run_starts(prompt_ids: pl.Series) -> np.ndarray:
    """Index of the first row of every run of equal prompt_ids (null equals null)."""
    new = prompt_ids.ne_missing(prompt_ids.shift(1)).to_numpy()  # (N,) bool
    if new.size:
        new[0] = True
    return np.flatnonzero(new)  # (R,)


def extreme_rows(
    hi: np.ndarray, starts: np.ndarray, run: np.ndarray, *, tie_break, largest: bool
) -> np.ndarray:
    """Row index of each run's largest (or smallest) key (hi, tie_break()), lexicographically.

    `tie_break` is called (for the uint64 hashes) only when some run has two rows with its
    extreme `hi`: with continuous scores that never happens and the hash is never computed.
    Rows that share the full key (duplicate response_ids) resolve to the first.
    """
    reduce = np.maximum if largest else np.minimum
    tied = hi == reduce.reduceat(hi, starts)[run]  # (N,)
    hit = np.flatnonzero(tied)  # (H,) H >= R
    if hit.size > starts.size:
        lo = tie_break()  # (N,) uint64
        fill = np.uint64(0) if largest else _UINT64_MAX
        lo_tied = np.where(tied, lo, fill)  # (N,)
        hit = np.flatnonzero(tied & (lo == reduce.reduceat(lo_tied, starts)[run]))  # (H,)
        first = np.ones(hit.size, dtype=bool)
        first[1:] = run[hit[1:]] != run[hit[:-1]]
        hit = hit[first]
    return hit  # (R,)


def _candidate_copies(
    batch: pl.DataFrame, rows: np.ndarray, run: np.ndarray, *, column: str = "response"
) -> np.ndarray:
    """The rows among `rows` whose (run, `column` hash) code occurs twice: possible copies.

    The code is run-major (run number in the high bits, the text hash in the rest), so the
    codes are already sorted by run and a stable sort only has to order each short run: about
    10 ms per million rows. Equal neighbours are the possible copies, confirmed exactly by the
    caller, so a truncated-hash collision costs time, never correctness.
    """
    bits = np.uint64(max(1, int(run[-1]).bit_length()) if run.size else 1)
    text = batch[column].hash().to_numpy()  # (N,) uint64
    code = (run.astype(np.uint64) << (np.uint64(64) - bits)) | (text >> bits)  # (N,)
    code = code if rows.size == batch.height else code[rows]  # (V,)
    order = np.argsort(code, kind="stable")  # (V,)
    ordered = code[order]  # (V,)
    same = np.flatnonzero(ordered[1:] == ordered[:-1])  # (S,) pairs of equal neighbours
    return rows[np.union1d(order[same], order[same + 1])]  # (D,)


def _merge_exact(batch: pl.DataFrame, rows: np.ndarray, run: np.ndarray) -> pl.DataFrame:
    """Exact merge of candidate copies: per (run, text) the representative row, mean, min, count."""
    part = batch.select("response_id", "response", "score", "n_tokens")[rows]
    part = part.with_columns(_row=pl.Series(rows), _run=pl.Series(run[rows]))
    return (
        part.sort("response_id", "_row")
        .group_by("_run", "response")
        .agg(
            pl.col("_row").first(),
            score=pl.col("score").sort().sum() / pl.len(),
            n_tokens=pl.col("n_tokens").cast(pl.Float64).min().fill_null(0.0),
            copies=pl.len(),
        )
    )


def merge_copies(batch: pl.DataFrame, *, valid: np.ndarray, run: np.ndarray) -> Merged:
    """Per-row arrays where each prompt's identical texts count once (see the module doc)."""
    score = batch["score"].to_numpy().astype(np.float64, copy=True)  # (N,)
    if "n_tokens" in batch.columns:
        tokens = batch["n_tokens"].cast(pl.Float64).fill_null(0.0).to_numpy().copy()  # (N,)
    else:
        tokens = np.zeros(batch.height)  # (N,)
    active, copies = valid.copy(), valid.astype(np.int64)  # (N,), (N,)
    if "response" not in batch.columns:
        return Merged(active, score, tokens, copies)
    maybe = _candidate_copies(batch, np.flatnonzero(valid), run)  # (D,)
    if maybe.size:
        merged = _merge_exact(batch, maybe, run)
        rep = merged["_row"].to_numpy()  # (G,)
        active[maybe], copies[maybe] = False, 0
        active[rep], copies[rep] = True, merged["copies"].to_numpy()
        score[rep], tokens[rep] = merged["score"].to_numpy(), merged["n_tokens"].to_numpy()
    return Merged(active, score, tokens, copies)


def duplicate_scores(batch: pl.DataFrame, *, valid: np.ndarray, run: np.ndarray) -> np.ndarray:
    """(N,) bool: usable rows quarantined as `duplicate_score` (a response_id scored twice).

    Copies that agree on the score are one fact written twice: all but one are dropped (which
    one is kept cannot matter: same id, same text, same score). Copies that disagree leave the
    response's score unknown, so all of them are dropped. Found like text copies: hash
    candidates, then an exact check on those few rows only.
    """
    drop = np.zeros(batch.height, dtype=bool)  # (N,)
    maybe = _candidate_copies(batch, np.flatnonzero(valid), run, column="response_id")  # (D,)
    if not maybe.size:
        return drop
    part = pl.DataFrame(
        {"_row": maybe, "_run": run[maybe], "response_id": batch["response_id"].gather(maybe)}
    ).with_columns(score=batch["score"].gather(maybe))
    key = ["_run", "response_id"]
    flagged = part.sort("_row").with_columns(
        twice=pl.len().over(key) > 1,
        conflict=pl.col("score").n_unique().over(key) > 1,
        later=pl.int_range(pl.len()).over(key) > 0,
    )
    rows = flagged.filter(pl.col("twice") & (pl.col("conflict") | pl.col("later")))["_row"]
    drop[rows.to_numpy()] = True
    return drop


def run_stats(merged: Merged, *, starts: np.ndarray) -> dict[str, np.ndarray]:
    """Per run: n (distinct usable texts), top/bottom raw score, copies (usable rows)."""
    return {
        "n": np.add.reduceat(merged.active.astype(np.int64), starts),
        "top": np.maximum.reduceat(np.where(merged.active, merged.score, -np.inf), starts),
        "bottom": np.minimum.reduceat(np.where(merged.active, merged.score, np.inf), starts),
        "copies": np.add.reduceat(merged.copies, starts),
    }


def _sides(
    batch: pl.DataFrame, merged: Merged, chosen: np.ndarray, rejected: np.ndarray
) -> pl.DataFrame:
    """Candidate rows (margin not yet checked) from chosen/rejected row indices."""
    columns = {"prompt_id": batch["prompt_id"].gather(chosen)}
    for name, rows in (("chosen", chosen), ("rejected", rejected)):
        columns[f"{name}_response_id"] = batch["response_id"].gather(rows)
        if "response" in batch.columns:
            columns[name] = batch["response"].gather(rows)
        columns[f"score_{name}"] = pl.Series(merged.score[rows])
    frame = pl.DataFrame(columns)
    return frame.with_columns(margin=pl.col("score_chosen") - pl.col("score_rejected"))


def best_vs_worst_rows(
    batch: pl.DataFrame,
    merged: Merged,
    *,
    starts: np.ndarray,
    run: np.ndarray,
    length_penalty: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per run, the row of the highest and of the lowest rank key among active rows."""
    hi = ordered_bits(merged.score - length_penalty * merged.tokens)  # (N,)
    tie_break = lambda: batch["response_id"].hash().to_numpy()  # noqa: E731  (N,) uint64
    top = extreme_rows(
        np.where(merged.active, hi, _INT64.min), starts, run, tie_break=tie_break, largest=True
    )
    low = extreme_rows(
        np.where(merged.active, hi, _INT64.max), starts, run, tie_break=tie_break, largest=False
    )
    return top, low  # (R,), (R,)


def margin_rule(pairs: pl.LazyFrame, *, min_margin: float) -> pl.LazyFrame:
    """Add the raw margin; keep pairs with margin > 0 and margin >= min_margin."""
    pairs = pairs.with_columns(margin=pl.col("score_chosen") - pl.col("score_rejected"))
    return pairs.filter((pl.col("margin") > 0) & (pl.col("margin") >= min_margin))


def _side(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
    """`frame`'s response columns renamed for one side of a pair (chosen or rejected)."""
    present = frame.collect_schema().names()
    renamed = [pl.col(c).alias(t.format(name)) for c, t in SIDE_COLUMNS.items() if c in present]
    return frame.select("prompt_id", *renamed)


def rank_responses(merged: pl.LazyFrame, *, length_penalty: float) -> pl.LazyFrame:
    """`merged` with `rank` (0 = best by the key) within each prompt."""
    keyed = merged.with_columns(_key=rank_key(length_penalty=length_penalty))
    rank = pl.col("_key").rank("ordinal", descending=True) - 1
    return keyed.with_columns(rank=rank.over("prompt_id")).drop("_key")


def best_vs_random(merged: pl.LazyFrame, *, length_penalty: float, seed: int) -> pl.LazyFrame:
    """Rank 0 against one seeded draw among responses with a strictly lower raw score.

    Each candidate gets the draw hash(prompt_id, response_id; seed) and the smallest wins, so
    the draw ignores row order and responses outside the candidate set.
    """
    ranked = rank_responses(merged, length_penalty=length_penalty)
    chosen = _side(ranked.filter(pl.col("rank") == 0), "chosen")
    draw = pl.concat_str("prompt_id", "response_id", separator="\x1f").hash(seed)
    lower = ranked.join(chosen.select("prompt_id", "score_chosen"), on="prompt_id", how="inner")
    lower = lower.filter((pl.col("rank") > 0) & (pl.col("score") < pl.col("score_chosen")))
    drawn = lower.filter(pl.col("rank") == pl.col("rank").min_by(draw).over("prompt_id"))
    return chosen.join(_side(drawn, "rejected"), on="prompt_id", how="inner")


def top_k_pairs(merged: pl.LazyFrame, *, length_penalty: float, k: int) -> pl.LazyFrame:
    """Every (better-ranked, worse-ranked) pair among each prompt's first `k` ranks."""
    top = rank_responses(merged, length_penalty=length_penalty).filter(pl.col("rank") < k)
    pairs = _side(top, "chosen").join(_side(top, "rejected"), on="prompt_id", how="inner")
    return pairs.filter(pl.col("rank_chosen") < pl.col("rank_rejected"))


def _polars_candidates(batch: pl.DataFrame, merged: Merged, *, config: PairsConfig) -> pl.DataFrame:
    """best_vs_random / top_k_pairs on the batch's merged responses (polars window queries)."""
    rows = np.flatnonzero(merged.active).tolist()
    frame = batch.select(
        [c for c in ("prompt_id", "response_id", "response") if c in batch.columns]
    )[rows]
    frame = frame.with_columns(
        score=pl.Series(merged.score[rows]), n_tokens=pl.Series(merged.tokens[rows])
    )
    penalty = config.length_penalty
    if config.strategy == "best_vs_random":
        pairs = best_vs_random(frame.lazy(), length_penalty=penalty, seed=config.seed)
    else:
        pairs = top_k_pairs(frame.lazy(), length_penalty=penalty, k=config.top_k)
    pairs = margin_rule(pairs.drop("rank_chosen", "rank_rejected"), min_margin=config.min_margin)
    return pairs.collect()


def select_batch(batch: pl.DataFrame, *, config: PairsConfig) -> BatchPairs:
    """Merge copies, rank, pick the strategy's pairs and count, for one batch of whole runs."""
    starts = run_starts(batch["prompt_id"])  # (R,)
    run = np.repeat(np.arange(starts.size), np.diff(np.append(starts, batch.height)))  # (N,)
    valid = batch["status"].is_null().to_numpy()  # (N,)
    duplicate = duplicate_scores(batch, valid=valid, run=run)  # (N,)
    if duplicate.any():
        valid &= ~duplicate
        status = pl.when(pl.Series(duplicate)).then(pl.lit("duplicate_score"))
        batch = batch.with_columns(status=status.otherwise(pl.col("status")))
    merged = merge_copies(batch, valid=valid, run=run)
    stats = run_stats(merged, starts=starts)
    if config.strategy == "best_vs_worst":
        top, low = best_vs_worst_rows(
            batch, merged, starts=starts, run=run, length_penalty=config.length_penalty
        )
        pairs = _sides(batch, merged, top, low)  # one row per run, in run order
        margin = pairs["margin"].to_numpy()  # (R,)
        keep = (stats["n"] >= 2) & (margin > 0) & (margin >= config.min_margin)  # (R,)
        candidates, paired = pairs.filter(pl.Series(keep)), keep
    else:
        candidates = _polars_candidates(batch, merged, config=config)
        prompt_ids = batch["prompt_id"].gather(starts)
        paired = prompt_ids.is_in(candidates["prompt_id"].implode()).to_numpy()
    runs = pl.DataFrame({"prompt_id": batch["prompt_id"].gather(starts), **stats, "paired": paired})
    dropped = batch.filter(~pl.Series(valid)).select("response_id", "prompt_id", "score", "status")
    return BatchPairs(runs=runs, candidates=candidates, dropped=dropped)
