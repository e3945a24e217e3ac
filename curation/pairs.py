"""The pairs stage: one scorer's scores → chosen/rejected pairs, every dropped row counted.

Inputs (each a Parquet file or a folder of shards, schema-checked before anything is read):
`scores` (prefsmith.schemas.tables.SCORES), `responses` (RESPONSES), `prompts` (PROMPTS). Output
`pairs.parquet` (prefsmith.schemas.tables.PAIRS), sorted by (prompt_id, pair_id):

| column                 | type                  | note                                       |
|------------------------|-----------------------|--------------------------------------------|
| pair_id                | string                | prefsmith.schemas.ids.pair_id(chosen, rejected ids)  |
| prompt_id, messages    | string, list<message> | joined from prompts on prompt_id           |
| chosen, rejected (+ _response_id) | string     | raw texts, joined on response_id           |
| score_chosen/_rejected | float64               | raw scores (mean over merged duplicates)   |
| margin                 | float64               | score_chosen - score_rejected, raw, > 0    |
| strategy, scorer       | string                |                                            |
| weight                 | float64               | only with `config.weight`: the rule's value (prefsmith.curation.weights) |

How a prompt's responses become pairs:

1. Keep the rows of one scorer (`config.scorer`, or the only one in the table).
2. Join responses on response_id (never by position). Response-level drops, quarantined in
   `pairs.quarantine.parquet`: `missing_response`, `prompt_id_mismatch`, `non_finite_score`,
   `duplicate_score` (a response_id scored twice: extra equal copies, or all copies if they differ).
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

How it runs (10 million score rows: 11-13 CPU-seconds and 0.65 GB, against 50 and 4.2 before;
benchmarks/results/pairs_10m.md): the input streams in batches of whole prompts
(prefsmith.curation.pairs_stream), each batch is reduced to its pairs by numpy segment reductions over
its prompt runs (prefsmith.curation.pairs_select), prompts are found by a merge join on sorted ids, and
each batch's pairs are written as one row group (prefsmith.curation.pairs_output) while the next batch
is read. Input not grouped by prompt in increasing order falls back to an in-memory sort
with the same per-batch code, so both paths write the same table.

Manifest unit "prompt": rows_in = prompts with at least one score of the scorer; rows_out =
prompts with at least one pair; dropped: `missing_prompt` (no prompts row),
`fewer_than_two_responses` (fewer than two distinct texts with a finite score), `all_tied`
(every such response has the same raw score), `below_min_margin` (no candidate passed step 6).
`extra` holds the response-level counts and the pairs written; the typed `score_transform`
field declares the normalization the trainer applies before weights (prefsmith.curation.normalize).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from prefsmith.curation.normalize import score_transform
from prefsmith.curation.pairs_drops import (
    PROMPT_DROPS,
    STAGE,
    prompt_outcomes,
    quarantine_rows,
    response_counts,
)
from prefsmith.curation.pairs_output import (
    ParquetBatches,
    PromptIndex,
    detach,
    first_duplicate,
    pair_id_column,
    pair_ids,
    strictly_increasing,
)
from prefsmith.curation.pairs_select import rank_key, select_batch
from prefsmith.curation.pairs_stream import (
    NotStreamable,
    pick_scorer,
    prefetch,
    sorted_runs,
    stream_runs,
    table_files,
)
from prefsmith.curation.weights import weighted, with_weight
from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.schemas.data_configs import PairsConfig, WeightConfig
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    input_path,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.tables import PAIRS, PROMPTS, QUARANTINE, RESPONSES, SCORES

logger = logging.getLogger(__name__)

__all__ = ["build_pairs", "pair_ids", "rank_key"]

# Parquet options for pairs.parquet: dictionaries only where values repeat, min/max statistics
# only where a reader filters (ids, scores, margins): string statistics and dictionary attempts
# on unique ids and texts doubled the write's CPU time at 2.5 million pairs.
WRITE_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": ["strategy", "scorer", "messages.list.element.role"],
    "write_statistics": [
        "prompt_id",
        "score_chosen",
        "score_rejected",
        "margin",
        "strategy",
        "scorer",
    ],
}


@dataclass
class Tally:
    """What the batches leave behind besides the written pairs: counts and the dropped rows."""

    constant: dict[str, str]  # the strategy and scorer columns
    check_order: bool  # streaming: prompt ids must increase (see _check_order)
    outcomes: Counter = field(default_factory=Counter)  # {reason or None: prompts}
    copies: int = 0  # usable score rows
    ranked: int = 0  # distinct usable texts
    keys: list[np.ndarray] = field(default_factory=list)  # uint64 of every pair id
    dropped: list[pl.DataFrame] = field(default_factory=list)
    finite: list[np.ndarray] = field(default_factory=list)  # finite scores, for z-scores
    last: str | None = None  # the last prompt_id seen (streaming order check)
    transform: ScoreTransform | None = None  # prefsmith.curation.normalize, after the last batch
    pairs: int = 0  # rows written


def _check_order(runs: pl.DataFrame, tally: Tally) -> None:
    """Raise NotStreamable unless prompt ids keep strictly increasing across batches.

    That keeps each prompt in one run (so its rows were all in one batch) and lets batches be
    written in turn in the output's (prompt_id, pair_id) order.
    """
    ids = runs["prompt_id"]
    if not strictly_increasing(ids) or (tally.last is not None and ids[0] <= tally.last):
        raise NotStreamable("the scores are not grouped by prompt_id in increasing order")
    tally.last = ids[-1]


def pairs_table(
    candidates: pl.DataFrame,
    *,
    rows: np.ndarray,
    prompts: PromptIndex,
    constant: dict,
    rule: WeightConfig | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """Known candidates as PAIRS rows in (prompt_id, pair_id) order, and their pair ids' keys;
    with a weight `rule`, also the `weight` column (prefsmith.curation.weights).

    Candidates come in prompt order, so only strategies with several pairs per prompt sort.
    """
    ids, keys = pair_id_column(candidates["chosen_response_id"], candidates["rejected_response_id"])
    table = candidates.with_columns(pair_id=ids).to_arrow(compat_level=pl.CompatLevel.oldest())
    table = table.append_column("messages", prompts.messages(rows))
    for name, value in constant.items():
        table = table.append_column(name, pa.repeat(pa.scalar(value, pa.string()), len(rows)))
    if rule is not None:
        table = with_weight(table, rule)
    if constant["strategy"] != "best_vs_worst":
        table = table.sort_by([("prompt_id", "ascending"), ("pair_id", "ascending")])
    return table, keys


def select_and_count(
    batch: pl.DataFrame, *, config: PairsConfig, prompts: PromptIndex, tally: Tally
) -> tuple[pl.DataFrame, np.ndarray]:
    """One batch's candidate pairs of known prompts and their prompts rows; counts tallied."""
    if config.normalization.method == "zscore":
        tally.finite.append(batch["score"].filter(batch["score"].is_finite()).to_numpy())
    result = select_batch(batch, config=config)
    runs = result.runs
    if tally.check_order:
        _check_order(runs, tally)
    position = prompts.locate(runs["prompt_id"])  # (R,)
    candidates = result.candidates
    if config.strategy == "best_vs_worst":
        rows = position[runs["paired"].to_numpy()]  # one candidate per paired run, in order
    else:
        candidates = candidates.sort("prompt_id")
        rows = prompts.locate(candidates["prompt_id"])
    known = rows >= 0
    candidates, rows = candidates.filter(pl.Series(known)), rows[known]
    prompts.check_paired(candidates["prompt_id"])
    tally.outcomes.update(prompt_outcomes(runs, known=position >= 0))
    tally.copies += int(runs["copies"].sum())
    tally.ranked += int(runs["n"].sum())
    tally.dropped.append(detach(result.dropped))
    return candidates, rows


def _check_totals(tally: Tally, *, config: PairsConfig) -> None:
    """After the last batch: something was scored, no pair twice, the score transform."""
    if not tally.outcomes:
        raise InputError("the scores table has no rows of the scorer: nothing to pair")
    keys = np.concatenate(tally.keys or [np.empty(0, dtype=np.uint64)])
    twice = first_duplicate(keys)
    if twice is not None:
        raise InputError(
            f"pair {int(keys[twice]):016x} occurs twice: the prompts (or responses) table has "
            "duplicate ids; run the prompts stage, which merges duplicates"
        )
    tally.transform = score_transform(
        np.concatenate(tally.finite or [np.empty(0)]),
        config=config.normalization,
        scorer=tally.constant["scorer"],
    )


def write_pairs(
    batches: Iterable[pl.DataFrame],
    *,
    path: Path,
    prompts: PromptIndex,
    config: PairsConfig,
    tally: Tally,
) -> Tally:
    """Write the pairs of every batch to `path`; all checks pass before it is renamed into place.

    Three threads share the work: one reads and joins the next batch (pairs_stream.prefetch),
    this one selects (numpy, polars), one hashes pair ids and converts and encodes the last
    batch's pairs (hashlib, Arrow, Parquet). Reading, selecting and encoding mostly release
    the GIL, so on two cores they overlap with the GIL-bound hashing.
    """
    with (
        ParquetBatches(path, weighted(PAIRS, config.weight), **WRITE_OPTIONS) as writer,
        ThreadPoolExecutor(1, "pairs-write") as pool,
    ):
        pending = None
        for batch in prefetch(iter(batches)):
            candidates, rows = select_and_count(batch, config=config, prompts=prompts, tally=tally)
            if pending is not None:
                tally.keys.append(pending.result())  # one batch in flight; errors surface here
            make = partial(
                pairs_table,
                candidates,
                rows=rows,
                prompts=prompts,
                constant=tally.constant,
                rule=config.weight,
            )
            pending = pool.submit(_write, make, writer)
        if pending is not None:
            tally.keys.append(pending.result())
        _check_totals(tally, config=config)
        tally.pairs = writer.rows
    return tally


def _write(make, writer: ParquetBatches) -> np.ndarray:
    """Build a batch's pairs table, write it, return its pair id keys (in the writer thread)."""
    table, keys = make()
    writer.write(table)
    return keys


def stream_or_sort(
    files: dict[str, list[Path]], *, out_dir: Path, config: PairsConfig, scorer: str
) -> Tally:
    """write_pairs over the streamed input; if it is not grouped by prompt, over a sorted copy."""
    prompts, path = PromptIndex(files["prompts"]), Path(out_dir) / "pairs.parquet"
    constant = {"strategy": config.strategy, "scorer": scorer}
    try:
        batches = stream_runs(files["scores"], responses=files["responses"], scorer=scorer)
        return write_pairs(
            batches,
            path=path,
            prompts=prompts,
            config=config,
            tally=Tally(constant, check_order=True),
        )
    except NotStreamable as error:
        logger.warning("pairs: %s; sorting the joined input in memory (slower, more memory)", error)
    scan = {name: pl.scan_parquet(files[name]) for name in ("scores", "responses")}
    batches = sorted_runs(scan["scores"], responses=scan["responses"], scorer=scorer)
    return write_pairs(
        batches, path=path, prompts=prompts, config=config, tally=Tally(constant, check_order=False)
    )


def build_pairs(inputs: Inputs, *, config: PairsConfig, out_dir: Path) -> StageResult:
    """Run the pairs stage on `inputs` `scores`, `responses` and `prompts`: write
    `pairs.parquet`, its quarantine and its manifest in `out_dir`."""
    start = time.perf_counter()
    tables = {"scores": SCORES, "responses": RESPONSES, "prompts": PROMPTS}
    paths = {name: input_path(inputs, name) for name in tables}
    files = {
        name: table_files(paths[name], schema=schema, what=name) for name, schema in tables.items()
    }
    scorer = pick_scorer(files["scores"], requested=config.scorer)
    tally = stream_or_sort(files, out_dir=Path(out_dir), config=config, scorer=scorer)
    dropped = pl.concat(tally.dropped)
    rejected = quarantine_rows(dropped)
    output = Path(out_dir) / "pairs.parquet"
    quarantine = write_table(rejected, Path(out_dir) / "pairs.quarantine.parquet", QUARANTINE)
    extra = {
        "scorer": scorer,
        "strategy": config.strategy,
        "pairs_written": tally.pairs,
        "responses": response_counts(copies=tally.copies, ranked=tally.ranked, dropped=dropped),
    }
    manifest = _manifest(
        tally.outcomes,
        config=config,
        inputs=list(paths.values()),
        extra=extra,
        transform=tally.transform,
        outputs={"pairs": output, "quarantine": quarantine},
        start=start,
        rows_written={"pairs": tally.pairs, "quarantine": rejected.height},
    )
    logger.info(
        "pairs: %d prompts in, %d with pairs, %d pairs, dropped %s",
        manifest.rows_in,
        manifest.rows_out,
        tally.pairs,
        manifest.dropped,
    )
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))


def _manifest(
    outcomes: dict,
    *,
    config: PairsConfig,
    inputs: list[Path],
    extra: dict,
    transform: ScoreTransform | None,
    outputs: dict[str, Path],
    rows_written: dict[str, int],
    start: float,
) -> Manifest:
    """The stage manifest; prompt-level counts come from the {reason: count} outcomes."""
    dropped = {r: outcomes[r] for r in PROMPT_DROPS if outcomes.get(r)}
    return Manifest(
        stage=STAGE,
        unit="prompt",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(p) for p in inputs],
        outputs={k: str(v) for k, v in outputs.items()},
        rows_in=sum(outcomes.values()),
        rows_out=outcomes.get(None, 0),
        dropped=dropped,
        rows_written=rows_written,
        extra=extra,
        score_transform=transform,
        wall_time_s=time.perf_counter() - start,
    )
