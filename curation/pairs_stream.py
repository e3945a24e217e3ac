"""The pairs stage's input as a stream of batches of whole prompt runs, in bounded memory.

prefsmith.curation.pairs_select needs batches in which each prompt's score rows are consecutive (a *run*)
and complete. The stage's own inputs usually are: the score stage writes shards in response_id
order, so a prompt's rows are adjacent, and the responses table follows the same order. Two
paths, with the same batches as their product:

- **streaming** (`stream_runs`): read the scores BATCH_ROWS rows at a time, hold back the last
  run of each batch until the next one shows whether it continues (`complete_runs`), and fetch
  each batch's responses from a cursor over the responses table (`ResponseCursor`): a plain
  element-wise id check when both tables are in the same order, else a 64-bit-hash join over a
  small window ahead of the cursor, verified on the ids (this skips responses the scorer
  quarantined). Memory is a few batches, whatever the table size. If the responses are not
  where the cursor looks it raises `NotStreamable`; so does the caller when prompt ids stop
  increasing from run to run (a prompt split in two runs, or prompts out of order).
- **sorted** (`sorted_runs`): the general fallback: join on response_id and sort by prompt_id
  in polars (the whole table in memory), then cut into batches. Same batches, same result;
  only slower and larger.

Both attach the response text and n_tokens and a `status` drop reason to every score row.
The input checks that come first live here too: every file's schema (`table_files`) and the
scorer to pair (`pick_scorer`, from the Parquet statistics when they name a single one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.io import check_schema, shard_files
from prefsmith.schemas.parquet_files import parquet_schema

logger = logging.getLogger(__name__)

T = TypeVar("T")
SCORE_COLUMNS = ["response_id", "prompt_id", "scorer", "score"]
RESPONSE_COLUMNS = ["response_id", "prompt_id", "response", "n_tokens"]
RESPONSE_TYPES = [pl.String, pl.String, pl.String, pl.Int32]
BATCH_ROWS = 1 << 18  # rows read at a time; larger row groups are read in slices (memory)


class NotStreamable(Exception):
    """The input is not in an order the streaming path can follow; use the sorted path."""


def table_files(path: str | Path, *, schema, what: str) -> list[Path]:
    """The Parquet files of a file or shard folder, after checking every file's schema."""
    files = shard_files(path)
    if not files:
        raise InputError(f"{what}: no Parquet files at {path}")
    fix = f"pass the {what} table in Parquet that prefsmith wrote"
    for file in files:
        check_schema(parquet_schema(file, what=what, fix=fix), schema, where=str(file))
    return files


def _scorers_from_statistics(files: list[Path]) -> list[str] | None:
    """The scorer names, if every row group's statistics name a single one (else None).

    Saves a scan of 10 million strings. min == max is exact even for writers that truncate
    long statistics, since they round a truncated max up, away from the truncated min.
    """
    names = set()
    for file in files:
        meta = pq.ParquetFile(file).metadata
        column = [meta.schema.column(i).path for i in range(meta.num_columns)].index("scorer")
        for group in range(meta.num_row_groups):
            rows, stats = (
                meta.row_group(group).num_rows,
                meta.row_group(group).column(column).statistics,
            )
            if rows == 0 or (
                stats is not None and stats.has_null_count and stats.null_count == rows
            ):
                continue
            if stats is None or not stats.has_min_max or stats.min != stats.max:
                return None
            names.add(stats.min)
    return sorted(names)


def pick_scorer(files: list[Path], *, requested: str | None) -> str:
    """The scorer whose scores make pairs: `requested`, or the table's only scorer."""
    found = _scorers_from_statistics(files)
    if found is None:
        scorers = pl.scan_parquet(files).select(pl.col("scorer").unique()).collect()["scorer"]
        found = sorted(scorers.drop_nulls())
    if requested is not None:
        if requested not in found:
            raise ConfigError(
                f"pairs.scorer={requested!r} is not in the scores table (has {found})"
            )
        return requested
    if not found:
        raise InputError("the scores table has no rows: nothing to pair")
    if len(found) > 1:
        raise ConfigError(
            f"the scores table has {len(found)} scorers {found}; set pairs.scorer to one of them"
        )
    return found[0]


def row_units(files: list[Path], *, max_rows: int | None = None) -> list[tuple[Path, int, int]]:
    """(file, first row, rows) slices along row-group boundaries, each at most `max_rows`
    (default BATCH_ROWS)."""
    max_rows, units = max_rows or BATCH_ROWS, []
    for file in files:
        offset = 0
        meta = pq.ParquetFile(file).metadata
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            units += [(file, offset + s, min(max_rows, rows - s)) for s in range(0, rows, max_rows)]
            offset += rows
    return units


def read_units(
    files: list[Path], columns: list[str], *, max_rows: int | None = None
) -> Iterator[pl.DataFrame]:
    """The tables' rows in order, `columns` only, one row-group slice at a time."""
    for file, offset, rows in row_units(files, max_rows=max_rows):
        yield pl.scan_parquet(file).select(columns).slice(offset, rows).collect()


def prefetch(items: Iterator[T]) -> Iterator[T]:
    """`items`, each produced in a worker thread while the caller works on the previous one.

    polars and pyarrow release the GIL while they read and decode, so on two cores the next
    batch is read during the numpy and hashlib work on this one.
    """
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pairs-read") as pool:
        future = pool.submit(next, items, done)
        while (item := future.result()) is not done:
            future = pool.submit(next, items, done)
            yield item  # type: ignore[misc]


def last_run_start(prompt_ids: pl.Series) -> int:
    """Index of the first row of the last run (0 if the whole series is one run).

    Looks at a growing tail only, so a batch costs about the last run's length, not its size.
    """
    last, size, tail = prompt_ids[-1], len(prompt_ids), 64
    while True:
        window = prompt_ids.slice(max(0, size - tail))
        differs = window.is_not_null() if last is None else window.ne_missing(last)
        if differs.any():
            return size - int(differs.reverse().arg_max())
        if tail >= size:
            return 0
        tail *= 8


def complete_runs(frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """Re-cut `frames` so that no run of equal prompt_ids is split between two batches."""
    carry: pl.DataFrame | None = None
    for frame in frames:
        if carry is not None and carry.height:
            frame = pl.concat([carry, frame], rechunk=True)  # views: no text is copied
        if frame.height == 0:
            carry = frame
            continue
        cut = last_run_start(frame["prompt_id"])
        carry = frame.slice(cut)
        if cut:
            yield frame.slice(0, cut)
    if carry is not None and carry.height:
        yield carry


def score_batches(files: list[Path], *, scorer: str) -> Iterator[pl.DataFrame]:
    """The scorer's rows (response_id, prompt_id, score), one row group at a time."""
    for frame in read_units(files, SCORE_COLUMNS):
        mine = frame["scorer"] == scorer
        if not mine.all() or mine.null_count():
            frame = frame.filter(mine)
        yield frame.drop("scorer")


def status_expr(*, response_prompt_id: str = "_response_prompt_id") -> pl.Expr:
    """The first drop reason that applies to a scores row joined to its response (null: none)."""
    other = pl.col(response_prompt_id)
    return (
        pl.when(other.is_null())
        .then(pl.lit("missing_response"))
        .when(other != pl.col("prompt_id"))
        .then(pl.lit("prompt_id_mismatch"))
        .when(~pl.col("score").is_finite().fill_null(False))
        .then(pl.lit("non_finite_score"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def _attach(scores: pl.DataFrame, found: pl.DataFrame) -> pl.DataFrame:
    """`scores` with its matched responses' text, n_tokens and the drop status."""
    joined = scores.with_columns(
        _response_prompt_id=found["prompt_id"],
        response=found["response"],
        n_tokens=found["n_tokens"],
    )
    return joined.with_columns(status=status_expr()).drop("_response_prompt_id")


class ResponseCursor:
    """Hands out the responses of successive score batches, reading the responses table in order.

    Responses that no score row asks for (rows the scorer quarantined) are skipped; a score
    whose response is not within the window ahead of the cursor raises `NotStreamable`.
    """

    def __init__(self, files: list[Path]) -> None:
        self._units = read_units(files, RESPONSE_COLUMNS)
        self._buffer = pl.DataFrame(schema=dict(zip(RESPONSE_COLUMNS, RESPONSE_TYPES, strict=True)))
        self._exhausted = False

    def _fill(self, rows: int) -> None:
        while self._buffer.height < rows and not self._exhausted:
            unit = next(self._units, None)
            if unit is None:
                self._exhausted = True
            else:
                self._buffer = pl.concat([self._buffer, unit], rechunk=False)

    def match(self, scores: pl.DataFrame) -> pl.DataFrame:
        """`scores` joined to its responses (see `_attach`)."""
        ids, rows = scores["response_id"], scores.height
        if ids.null_count():
            raise NotStreamable("a score row has no response_id")
        self._fill(rows)
        head = self._buffer.slice(0, rows)
        if head.height == rows and head["response_id"].eq_missing(ids).all():
            self._buffer = self._buffer.slice(rows)
            return _attach(scores, head)
        return _attach(scores, self._search(ids))

    def _search(self, ids: pl.Series) -> pl.DataFrame:
        """The rows of `ids` within a window ahead of the cursor (widened up to 4x the batch)."""
        slack = max(4096, len(ids) // 4)
        while True:
            self._fill(len(ids) + slack)
            window = self._buffer.slice(0, len(ids) + slack)
            positions = _positions(ids, window["response_id"])
            if positions is not None:
                self._buffer = self._buffer.slice(int(positions.max()) + 1)
                return window[positions.tolist()]
            if window.height < len(ids) + slack or slack > 4 * len(ids):
                raise NotStreamable("the responses are not in the scores' order")
            slack *= 2


def _positions(ids: pl.Series, window: pl.Series) -> np.ndarray | None:
    """Position in `window` of each id (a 64-bit-hash join, checked on the ids), or None."""
    left = pl.DataFrame({"h": ids.hash()})
    right = pl.DataFrame(
        {"h": window.hash(), "p": pl.int_range(window.len(), eager=True, dtype=pl.UInt32)}
    )
    joined = left.join(right, on="h", how="left", maintain_order="left")
    if joined.height != len(ids) or joined["p"].null_count():
        return None
    positions = joined["p"].to_numpy()
    return positions if window.gather(positions).eq_missing(ids).all() else None


def stream_runs(
    scores: list[Path], *, responses: list[Path], scorer: str
) -> Iterator[pl.DataFrame]:
    """Batches of whole runs, joined to responses on the fly (raises `NotStreamable`)."""
    cursor = ResponseCursor(responses)
    for batch in complete_runs(score_batches(scores, scorer=scorer)):
        yield cursor.match(batch)


def sorted_runs(
    scores: pl.LazyFrame, *, responses: pl.LazyFrame, scorer: str, batch_rows: int | None = None
) -> Iterator[pl.DataFrame]:
    """The fallback: join on response_id, sort by (prompt_id, response_id), cut into batches."""
    batch_rows = batch_rows or BATCH_ROWS
    left = scores.filter(pl.col("scorer") == scorer).select("response_id", "prompt_id", "score")
    right = responses.select(
        "response_id", pl.col("prompt_id").alias("_response_prompt_id"), "response", "n_tokens"
    )
    joined = left.join(right, on="response_id", how="left").with_columns(status=status_expr())
    ordered = joined.drop("_response_prompt_id").sort("prompt_id", "response_id", nulls_last=True)
    table = ordered.collect(engine="streaming")
    slices = (table.slice(offset, batch_rows) for offset in range(0, table.height, batch_rows))
    return complete_runs(slices)
