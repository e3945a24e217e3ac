"""The pairs stage: one scorer's scores → chosen/rejected pairs, every dropped row counted.

Inputs (each a Parquet file or a folder of shards, schema-checked before anything is read):
`scores` (schemas.tables.SCORES), `responses` (RESPONSES), `prompts` (PROMPTS). Output
`pairs.parquet` (schemas.tables.PAIRS), sorted by (prompt_id, pair_id):

| column                 | type                  | note                                       |
|------------------------|-----------------------|--------------------------------------------|
| pair_id                | string                | schemas.ids.pair_id(chosen, rejected ids)  |
| prompt_id, messages    | string, list<message> | joined from prompts on prompt_id           |
| chosen, rejected (+ _response_id) | string     | raw texts, joined on response_id           |
| score_chosen/_rejected | float64               | raw scores (mean over merged duplicates)   |
| margin                 | float64               | score_chosen - score_rejected, raw, > 0    |
| strategy, scorer       | string                |                                            |

How a prompt's responses become pairs (all lazy polars; no Python loop over prompts):

1. Keep the rows of one scorer (`config.scorer`, or the only one in the table).
2. Join responses on response_id (never by position). Response-level drops, quarantined in
   `pairs.quarantine.parquet`: `missing_response`, `prompt_id_mismatch`, `non_finite_score`.
3. Merge exact-duplicate texts of a prompt into one response (the smallest response_id) with
   the MEAN of the copies' scores, counted as `duplicate_response_merged`. Why the mean: a
   deterministic scorer gives copies equal scores, so any choice agrees; where copies differ it
   is scorer noise (sampled judges, batch-padding numerics), and the mean is its best estimate,
   whereas the max would pick the luckiest copy and inflate margins (winner's curse). Merging
   also makes "identical texts never form a pair" hold by construction.
4. Rank each prompt's responses by selection score `score - length_penalty * n_tokens`
   (responses' n_tokens), best first; equal selection scores are ordered by a hash of
   response_id (see rank_key), so the result never depends on row order.
5. Candidates, chosen = the better-ranked: `best_vs_worst` rank 0 vs the last rank;
   `best_vs_random` rank 0 vs one response drawn among those with a strictly lower raw score
   (a tie can never pair, so drawing one would waste the prompt), seeded by (seed, prompt_id,
   response_id) through polars' seeded hash: stable under row order and across runs with the
   pinned polars (polars does not promise equal hashes across versions); `top_k_pairs` every
   (better, worse) pair among the first `top_k` ranks.
6. A candidate is kept only if its raw margin is > 0 and >= min_margin. A length penalty can
   rank a response first whose raw score is lower: that pair is not flipped but dropped, since
   raw score and penalty disagree about which is better.

Manifest unit "prompt": rows_in = prompts with at least one score of the scorer; rows_out =
prompts with at least one pair; dropped: `missing_prompt` (no prompts row),
`fewer_than_two_responses` (fewer than two distinct texts with a finite score), `all_tied`
(every such response has the same raw score), `below_min_margin` (no candidate passed step 6).
`extra` holds the response-level counts, the pairs written and the `score_transform` the
trainer applies before weights (scoring.normalize).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from schemas.data_configs import PairsConfig
from schemas.errors import ConfigError, InputError
from schemas.ids import pair_id
from schemas.io import check_schema, shard_files, write_table
from schemas.manifest import Manifest, StageResult, input_ref, manifest_path
from schemas.tables import PAIRS, PROMPTS, QUARANTINE, RESPONSES, SCORES
from scoring.normalize import score_transform

logger = logging.getLogger(__name__)

STAGE = "pairs"
RESPONSE_DROPS = {
    "missing_response": "no responses row has this response_id, so its text is unknown",
    "prompt_id_mismatch": "the scores row and the responses row name different prompt_ids",
    "non_finite_score": "the score is NaN, infinite or null, so it cannot be ranked",
}
PROMPT_DROPS = ("missing_prompt", "fewer_than_two_responses", "all_tied", "below_min_margin")
STAT_COLUMNS = ["n", "top", "bottom", "copies"]
SIDE_COLUMNS = {
    "response_id": "{}_response_id", "response": "{}", "score": "score_{}", "rank": "rank_{}",
}  # fmt: skip


def scan_table(path: str | Path, *, schema, what: str) -> pl.LazyFrame:
    """A lazy scan of a Parquet file or shard folder, after checking every file's schema."""
    files = shard_files(path)
    if not files:
        raise InputError(f"{what}: no Parquet files at {path}")
    for file in files:
        check_schema(pq.read_schema(file), schema, where=str(file))
    return pl.scan_parquet(files).select(schema.names)


def pick_scorer(scores: pl.LazyFrame, *, requested: str | None) -> str:
    """The scorer whose scores make pairs: `requested`, or the table's only scorer."""
    found = sorted(scores.select(pl.col("scorer").unique()).collect()["scorer"].drop_nulls())
    if requested is not None:
        if requested not in found:
            raise ConfigError(f"pairs.scorer={requested!r} is not in the scores table (has {found})")
        return requested
    if not found:
        raise InputError("the scores table has no rows: nothing to pair")
    if len(found) > 1:
        raise ConfigError(f"the scores table has {len(found)} scorers {found}; set pairs.scorer to one of them")
    return found[0]


def scored_responses(scores: pl.LazyFrame, *, responses: pl.LazyFrame, scorer: str) -> pl.LazyFrame:
    """The scorer's rows joined to their response on response_id, with a `status` drop reason."""
    left = scores.filter(pl.col("scorer") == scorer).select("response_id", "prompt_id", "score")
    right = responses.select(
        "response_id", pl.col("prompt_id").alias("_response_prompt_id"), "response", "n_tokens"
    )
    status = (  # the first reason that applies
        pl.when(pl.col("_response_prompt_id").is_null()).then(pl.lit("missing_response"))
        .when(pl.col("_response_prompt_id") != pl.col("prompt_id")).then(pl.lit("prompt_id_mismatch"))
        .when(~pl.col("score").is_finite().fill_null(False)).then(pl.lit("non_finite_score"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )  # fmt: skip
    joined = left.join(right, on="response_id", how="left")
    return joined.with_columns(status=status).drop("_response_prompt_id")


def merge_duplicates(clean: pl.LazyFrame) -> pl.LazyFrame:
    """One row per distinct (prompt_id, text): smallest response_id, MEAN score, `copies`."""
    return clean.group_by("prompt_id", "response").agg(
        response_id=pl.col("response_id").min(), score=pl.col("score").mean(), copies=pl.len(),
        n_tokens=pl.col("n_tokens").min(),  # equal texts differ in tokens only across tokenizers
    )  # fmt: skip


_SIGN_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)


def _ordered_bits(values: pl.Series) -> pl.Series:
    """Int64 codes whose integer order is the float order of `values` (finite, no nulls).

    IEEE-754 doubles compare like sign-magnitude integers, so flipping the magnitude bits of
    negative numbers makes two's-complement order match float order. Adding 0.0 first turns
    -0.0 into +0.0, so equal floats get one code.
    """
    bits = (values.to_numpy().astype(np.float64) + 0.0).view(np.int64)  # (N,)
    return pl.Series(values.name, np.where(bits < 0, bits ^ _SIGN_FLIP, bits))  # (N,)


def rank_key(*, length_penalty: float) -> pl.Expr:
    """A per-response Int128 key: higher = better; order = (selection score, tie-break).

    selection = score - length_penalty * n_tokens. Equal selection scores are ordered by a
    hash of response_id, so every strategy gets one deterministic order that does not depend
    on row order, and the best and worst response are single `max_by`/`min_by` aggregations
    (no sort: a 10M-row sort on strings is several times slower on two cores). Two responses
    of one prompt tie on the key only if their selection scores are equal AND their 64-bit
    response_id hashes collide.
    """
    selection = pl.col("score") - length_penalty * pl.col("n_tokens").fill_null(0).cast(pl.Float64)
    ordered = selection.map_batches(_ordered_bits, return_dtype=pl.Int64, is_elementwise=True)
    tie_break = pl.col("response_id").hash()  # UInt64
    return ordered.cast(pl.Int128) * pl.lit(2**64, dtype=pl.Int128) + tie_break.cast(pl.Int128)


def _side(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
    """`frame`'s response columns renamed for one side of a pair (chosen or rejected)."""
    present = frame.collect_schema().names()
    renamed = [pl.col(c).alias(t.format(name)) for c, t in SIDE_COLUMNS.items() if c in present]
    return frame.select("prompt_id", *renamed)


def prompt_stats(columns: list[str]) -> list[pl.Expr]:
    """Per-prompt aggregations for the outcome: n, top and bottom raw score, copies (rows)."""
    copies = pl.col("copies").sum() if "copies" in columns else pl.len()
    score = pl.col("score")
    return [pl.len().alias("n"), score.max().alias("top"), score.min().alias("bottom"), copies.cast(pl.Int64).alias("copies")]


def best_vs_worst(merged: pl.LazyFrame, *, length_penalty: float) -> pl.LazyFrame:
    """One row per prompt: its stats and the highest-key vs the lowest-key response.

    A single group_by with max_by/min_by on the key (no sort, no join). Rows with n < 2 have
    chosen == rejected and are filtered out by the caller. Columns absent from `merged` (the
    text, in the benchmark's selection-only query) are simply not carried.
    """
    present, key = merged.collect_schema().names(), pl.col("_key")
    columns = [(c, t) for c, t in SIDE_COLUMNS.items() if c in present]
    sides = [pl.col(c).max_by(key).alias(t.format("chosen")) for c, t in columns]
    sides += [pl.col(c).min_by(key).alias(t.format("rejected")) for c, t in columns]
    keyed = merged.with_columns(_key=rank_key(length_penalty=length_penalty))
    return keyed.group_by("prompt_id").agg(*sides, *prompt_stats(present))


def rank_responses(merged: pl.LazyFrame, *, length_penalty: float) -> pl.LazyFrame:
    """`merged` with `rank` (0 = best by the key) within each prompt.

    The key is a column before the window, so its numpy step runs once per batch, not per group.
    """
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


def margin_rule(pairs: pl.LazyFrame, *, min_margin: float) -> pl.LazyFrame:
    """Add the raw margin; keep pairs with margin > 0 and margin >= min_margin."""
    pairs = pairs.with_columns(margin=pl.col("score_chosen") - pl.col("score_rejected"))
    return pairs.filter((pl.col("margin") > 0) & (pl.col("margin") >= min_margin))


def selection_queries(merged: pl.LazyFrame, *, config: PairsConfig) -> dict[str, pl.LazyFrame]:
    """`stats` (one row per prompt: n, top, bottom, copies) and the strategy's `candidates`.

    For best_vs_worst the pairs come out of the same group_by as the stats, so there is only
    `stats` (with both sides' columns); `pairs_from` derives the candidates after collection.
    """
    penalty = config.length_penalty
    if config.strategy == "best_vs_worst":
        return {"stats": best_vs_worst(merged, length_penalty=penalty)}
    if config.strategy == "best_vs_random":
        pairs = best_vs_random(merged, length_penalty=penalty, seed=config.seed)
    else:
        pairs = top_k_pairs(merged, length_penalty=penalty, k=config.top_k)
    pairs = margin_rule(pairs.drop("rank_chosen", "rank_rejected"), min_margin=config.min_margin)
    stats = merged.group_by("prompt_id").agg(*prompt_stats(merged.collect_schema().names()))
    return {"stats": stats, "candidates": pairs}


def pairs_from(frames: dict[str, pl.DataFrame], *, min_margin: float) -> pl.DataFrame:
    """The candidate pairs (margin rule applied) from the collected selection queries."""
    if "candidates" in frames:
        return frames["candidates"]
    groups = frames["stats"].lazy().filter(pl.col("n") >= 2).drop(STAT_COLUMNS)
    return margin_rule(groups, min_margin=min_margin).collect()


def prompt_outcomes(
    stats: pl.LazyFrame, *, dropped: pl.LazyFrame, pairs: pl.LazyFrame, prompt_ids: pl.LazyFrame
) -> pl.LazyFrame:
    """(reason, count) over every prompt the scorer scored; reason null = has >= 1 pair.

    The prompts are those of `stats` (>= 1 usable response) plus those of the quarantined
    `dropped` rows (which may have lost every response): no extra pass over all score rows.
    """
    orphans = dropped.select("prompt_id").unique().join(stats, on="prompt_id", how="anti")
    universe = pl.concat([stats, orphans], how="diagonal")
    known = prompt_ids.unique().with_columns(_known=pl.lit(True))
    paired = pairs.select("prompt_id").unique().with_columns(_paired=pl.lit(True))
    joined = universe.join(known, on="prompt_id", how="left").join(paired, on="prompt_id", how="left")
    reason = (
        pl.when(pl.col("_known").is_null()).then(pl.lit(PROMPT_DROPS[0]))
        .when(pl.col("n").fill_null(0) < 2).then(pl.lit(PROMPT_DROPS[1]))
        .when(pl.col("top") == pl.col("bottom")).then(pl.lit(PROMPT_DROPS[2]))
        .when(pl.col("_paired").is_null()).then(pl.lit(PROMPT_DROPS[3]))
        .otherwise(pl.lit(None, dtype=pl.String))
    )  # fmt: skip
    return joined.group_by(reason.alias("reason")).agg(count=pl.len())


def quarantine_rows(dropped: pl.LazyFrame) -> pl.LazyFrame:
    """The response-level drops as QUARANTINE rows (row_ref = response_id)."""
    detail = pl.col("status").replace_strict(RESPONSE_DROPS, return_dtype=pl.String)
    raw = pl.struct("response_id", "prompt_id", "score").struct.json_encode()
    return dropped.select(
        stage=pl.lit(STAGE), row_ref="response_id", reason="status", detail=detail, raw=raw
    ).sort("reason", "row_ref")


def response_counts(stats: pl.DataFrame, *, dropped: pl.DataFrame) -> dict[str, int]:
    """Response-level counts: score rows in, each drop reason, duplicates merged, ranked."""
    counts = {"scores_in": int(stats["copies"].sum()) + dropped.height}
    counts |= {reason: int((dropped["status"] == reason).sum()) for reason in RESPONSE_DROPS}
    counts["duplicate_response_merged"] = int(stats["copies"].sum() - stats["n"].sum())
    counts["responses_ranked"] = int(stats["n"].sum())
    return counts


def pair_ids(chosen: pl.Series, rejected: pl.Series) -> list[str]:
    """schemas.ids.pair_id for every row, fast where json.dumps would escape nothing.

    pair_id hashes the canonical JSON `["<chosen>","<rejected>"]`. For ids without quotes,
    backslashes or control characters that JSON is a plain concatenation, which polars builds
    for all rows at once; only sha256 runs per row (about 4x faster than calling pair_id).
    Rows that need escaping go through pair_id itself. A test checks both paths.
    """
    frame = pl.DataFrame({"c": chosen, "r": rejected})
    escape = r'["\\\x00-\x1f]'
    needs = frame.select(pl.col("c").str.contains(escape) | pl.col("r").str.contains(escape))
    plain = frame.select(pl.concat_str(pl.lit('["'), "c", pl.lit('","'), "r", pl.lit('"]')))
    sha = hashlib.sha256
    ids = [sha(b).hexdigest()[:16] for b in plain.to_series().cast(pl.Binary).to_list()]
    for index in needs.to_series().arg_true().to_list():
        ids[index] = pair_id(chosen[index], rejected[index])
    return ids


def finish_pairs(pairs: pl.DataFrame, *, strategy: str, scorer: str) -> pl.DataFrame:
    """Add pair_id, strategy and scorer; order rows by (prompt_id, pair_id)."""
    ids = pl.Series(pair_ids(pairs["chosen_response_id"], pairs["rejected_response_id"]))
    if ids.is_duplicated().any():
        twice = pairs.filter(ids.is_duplicated())["prompt_id"][0]
        raise InputError(
            f"prompt {twice!r} made the same pair twice: the prompts (or responses) table has "
            "duplicate ids; run the prompts stage, which merges duplicates"
        )
    return pairs.with_columns(
        pair_id=ids, strategy=pl.lit(strategy), scorer=pl.lit(scorer)
    ).sort("prompt_id", "pair_id").select(PAIRS.names)


def plan_queries(
    scores: Path, *, responses: Path, prompts: Path, config: PairsConfig
) -> tuple[str, dict[str, pl.LazyFrame]]:
    """The scorer and the stage's heavy lazy queries, which share one join and one merge.

    `stats` and maybe `candidates` (selection_queries), `dropped` (response-level drops) and
    `finite` (the scores a z-score needs; empty for the other normalizations).
    """
    scores_lf = scan_table(scores, schema=SCORES, what="scores")
    responses_lf = scan_table(responses, schema=RESPONSES, what="responses")
    scorer = pick_scorer(scores_lf, requested=config.scorer)
    base = scored_responses(scores_lf, responses=responses_lf, scorer=scorer)
    merged = merge_duplicates(base.filter(pl.col("status").is_null()))
    finite = scores_lf.filter((pl.col("scorer") == scorer) & pl.col("score").is_finite())
    if config.normalization.method != "zscore":
        finite = finite.head(0)  # only z-scores look at the scores
    return scorer, {
        **selection_queries(merged, config=config), "finite": finite.select("score"),
        "dropped": base.filter(pl.col("status").is_not_null()).drop("response", "n_tokens"),
    }  # fmt: skip


def assemble(
    frames: dict[str, pl.DataFrame], *, prompts: Path, config: PairsConfig, scorer: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The final pairs (messages joined on prompt_id, ids, order) and the prompt outcomes."""
    prompts_lf = scan_table(prompts, schema=PROMPTS, what="prompts").select("prompt_id", "messages")
    candidates = pairs_from(frames, min_margin=config.min_margin)
    pairs = candidates.lazy().join(prompts_lf, on="prompt_id", how="inner").collect()
    pairs = finish_pairs(pairs, strategy=config.strategy, scorer=scorer)
    outcomes = prompt_outcomes(
        frames["stats"].lazy().select("prompt_id", *STAT_COLUMNS), dropped=frames["dropped"].lazy(),
        pairs=pairs.lazy(), prompt_ids=prompts_lf.select("prompt_id"),
    )  # fmt: skip
    return pairs, outcomes.collect()


def build_pairs(
    scores: Path, *, responses: Path, prompts: Path, config: PairsConfig, out_dir: Path
) -> StageResult:
    """Run the pairs stage: write `pairs.parquet`, its quarantine and its manifest in `out_dir`.

    One streaming pass computes the heavy queries together (polars shares their common join
    and merge); messages, outcomes and counts then work on the small per-prompt results.
    """
    start = time.perf_counter()
    scorer, queries = plan_queries(scores, responses=responses, prompts=prompts, config=config)
    frames = dict(zip(queries, pl.collect_all(list(queries.values()), engine="streaming"), strict=True))
    pairs, outcomes = assemble(frames, prompts=prompts, config=config, scorer=scorer)
    scale, shift = score_transform(frames["finite"]["score"], config=config.normalization)
    output = write_table(pairs, Path(out_dir) / "pairs.parquet", PAIRS)
    rejected = quarantine_rows(frames["dropped"].lazy()).collect()
    quarantine = write_table(rejected, Path(out_dir) / "pairs.quarantine.parquet", QUARANTINE)
    extra = {
        "scorer": scorer, "strategy": config.strategy, "pairs_written": pairs.height,
        "responses": response_counts(frames["stats"], dropped=frames["dropped"]),
        "score_transform": {"method": config.normalization.method, "scale": scale, "shift": shift, "scorer": scorer},
    }  # fmt: skip
    manifest = _manifest(
        outcomes, config=config, inputs=[scores, responses, prompts], extra=extra,
        outputs={"pairs": output, "quarantine": quarantine}, start=start,
        rows_written={"pairs": pairs.height, "quarantine": rejected.height},
    )  # fmt: skip
    logger.info("pairs: %d prompts in, %d with pairs, %d pairs, dropped %s",
                manifest.rows_in, manifest.rows_out, pairs.height, manifest.dropped)  # fmt: skip
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))


def _manifest(
    outcomes: pl.DataFrame, *, config: PairsConfig, inputs: list[Path], extra: dict,
    outputs: dict[str, Path], rows_written: dict[str, int], start: float,
) -> Manifest:  # fmt: skip
    """The stage manifest; prompt-level counts come from the (reason, count) outcome table."""
    by_reason = {r: int(c) for r, c in outcomes.iter_rows()}
    dropped = {r: by_reason[r] for r in PROMPT_DROPS if by_reason.get(r)}
    return Manifest(
        stage=STAGE, unit="prompt", config=config.model_dump(mode="json"),
        inputs=[input_ref(p) for p in inputs], outputs={k: str(v) for k, v in outputs.items()},
        rows_in=sum(by_reason.values()), rows_out=by_reason.get(None, 0), dropped=dropped,
        rows_written=rows_written, extra=extra, wall_time_s=time.perf_counter() - start,
    )  # fmt: skip
