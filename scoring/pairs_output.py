"""The output side of the pairs stage: pair ids in bulk, prompts by id, batch-wise Parquet.

Each replaces a step that dominated the stage at 10 million rows: `pair_id_column` computes
schemas.ids.pair_id with one hashlib call per pair and no other per-row Python; `PromptIndex`
finds a batch's prompts by a merge (asof) join on sorted ids and takes their messages with
Arrow (polars' gather of nested lists took 3 s and 1.4 GB for 2.5 million rows);
`ParquetBatches` writes each batch's pairs as a row group, so the output is never whole in
memory, and renames the file into place only when every batch is written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import InputError
from schemas.ids import ID_HEX_CHARS, pair_id
from schemas.io import conform
from schemas.tables import MESSAGES

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ESCAPED = r'["\\\x00-\x1f]'  # characters json.dumps escapes (ensure_ascii=False)


def _hex(raw: np.ndarray) -> pl.Series:
    """Lower-case hex strings of the rows of a (P, B) uint8 array."""
    digits = np.empty((raw.shape[0], 2 * raw.shape[1]), dtype=np.uint8)  # (P, 2B)
    digits[:, 0::2], digits[:, 1::2] = _HEX[raw >> 4], _HEX[raw & 15]
    width = pa.binary(digits.shape[1])
    fixed = pa.FixedSizeBinaryArray.from_buffers(width, len(digits), [None, pa.py_buffer(digits)])
    return pl.Series("pair_id", fixed.cast(pa.binary()).cast(pa.string()))


def pair_id_column(chosen: pl.Series, rejected: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """schemas.ids.pair_id of every row, and the same 64 bits as uint64 (for duplicate checks).

    pair_id hashes the canonical JSON `["<chosen>","<rejected>"]`. For ids without quotes,
    backslashes or control characters that JSON is a plain concatenation, which polars builds
    for all rows at once; only sha256().digest() runs per row, and the hex digits are made by
    numpy. Rows that need escaping go through pair_id itself. A test checks both paths.
    """
    frame = pl.DataFrame({"c": chosen, "r": rejected})
    plain = frame.select(pl.concat_str(pl.lit('["'), "c", pl.lit('","'), "r", pl.lit('"]')))
    sha = hashlib.sha256
    digests = b"".join([sha(b).digest() for b in plain.to_series().cast(pl.Binary).to_list()])
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)[:, : ID_HEX_CHARS // 2]  # (P, 8)
    ids, keys = _hex(raw), raw.copy().view(">u8").ravel().astype(np.uint64)  # (P,), (P,)
    needs = frame.select(pl.col("c").str.contains(_ESCAPED) | pl.col("r").str.contains(_ESCAPED))
    escaped = needs.to_series().arg_true().to_list()
    if escaped:
        exact = [pair_id(chosen[i], rejected[i]) for i in escaped]
        ids = ids.scatter(escaped, exact)
        keys[escaped] = [int(value, 16) for value in exact]
    return ids, keys


def pair_ids(chosen: pl.Series, rejected: pl.Series) -> list[str]:
    """schemas.ids.pair_id for every row, as a list (see `pair_id_column`)."""
    return pair_id_column(chosen, rejected)[0].to_list()


def first_duplicate(keys: np.ndarray) -> int | None:
    """Index of a row whose uint64 key another row shares, or None.

    np.sort of uint64 is vectorized (about 20 ns a key, ten times faster than argsort or a
    polars hash table); the index is searched only when a duplicate exists.
    """
    ordered = np.sort(keys)  # (P,)
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    return int(np.flatnonzero(keys == ordered[same[0]])[0]) if same.size else None


def detach(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its own compact string buffers.

    polars strings are views into shared buffers, so a few rows filtered from a batch keep the
    whole batch's text alive; kept results would then hold the entire input. A round trip
    through Arrow's offset strings copies just the rows' bytes.
    """
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))  # type: ignore[return-value]


def strictly_increasing(ids: pl.Series, *, strict: bool = True) -> bool:
    """Whether `ids` has no nulls and each id sorts after (not strict: not before) the last."""
    if ids.null_count():
        return False
    if len(ids) < 2:
        return True
    later, earlier = ids.slice(1), ids.slice(0, len(ids) - 1)
    return bool((later > earlier).all() if strict else (later >= earlier).all())


class PromptIndex:
    """The prompts table's ids, and its messages read one row group at a time, on demand.

    The ids are kept strictly increasing: as written (the prompts stage sorts them) or sorted
    here once. A prompt id held by several rows resolves to its first row; `check_paired`
    raises if such a prompt got pairs, as the old hash join (which doubled them) did. Batches
    ask for increasing rows when the table is sorted, so row groups below a batch's first row
    are let go: only about one row group of messages is in memory at a time.
    """

    def __init__(self, files: list[Path]) -> None:
        ids = pl.read_parquet(files, columns=["prompt_id"])["prompt_id"]
        self._groups = [(file, g) for file in files for g in range(pq.ParquetFile(file).num_row_groups)]
        sizes = [pq.ParquetFile(file).metadata.row_group(g).num_rows for file, g in self._groups]
        self._starts = np.cumsum([0, *sizes])  # (G+1,) first row of each row group
        self._cache: dict[int, pa.ChunkedArray] = {}
        self.rows: np.ndarray | None = None  # table row of each sorted id, when sorted here
        self.twice = pl.Series(dtype=pl.String)
        if not strictly_increasing(ids):
            frame = pl.DataFrame({"k": ids}).with_row_index("row").drop_nulls("k")
            self.twice = frame.filter(pl.col("k").is_duplicated())["k"].unique()
            first = frame.group_by("k").agg(pl.col("row").min()).sort("k")
            ids, self.rows = first["k"], first["row"].cast(pl.Int64).to_numpy()
        self.ids = ids

    def locate(self, keys: pl.Series) -> np.ndarray:
        """Table row of each key (-1 where absent); `keys` sorted, nulls (never found) last."""
        present = keys.drop_nulls()
        rows = np.full(len(keys), -1, dtype=np.int64)
        if not len(present) or not len(self.ids):
            return rows
        low = int(self.ids.search_sorted(present[0], side="left"))
        window = self.ids.slice(low, int(self.ids.search_sorted(present[-1], side="right")) - low)
        left = pl.DataFrame({"k": present}).with_columns(pl.col("k").set_sorted())
        right = pl.DataFrame({"k": window, "_k": window}).with_row_index("p").with_columns(pl.col("k").set_sorted())
        joined = left.join_asof(right, on="k", strategy="backward")
        found = joined["_k"].eq(joined["k"]).fill_null(False).to_numpy()
        rows[: len(present)] = np.where(found, joined["p"].fill_null(0).cast(pl.Int64).to_numpy() + low, -1)
        if self.rows is not None:
            rows = np.where(rows >= 0, self.rows[np.maximum(rows, 0)], -1)
        return rows

    def messages(self, rows: np.ndarray) -> pa.ChunkedArray:
        """The messages of table rows `rows` (all >= 0), in that order."""
        group = np.searchsorted(self._starts, rows, side="right") - 1  # (P,) row group of each
        self._load(np.unique(group))
        order = np.argsort(group, kind="stable")  # (P,) identity when rows increase
        chunks = []
        for g in np.unique(group):
            local = rows[order][group[order] == g] - self._starts[g]
            chunks += self._cache[g].take(pa.array(local)).chunks
        taken = pa.chunked_array(chunks, type=MESSAGES)
        if np.array_equal(order, np.arange(order.size)):
            return taken
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return taken.take(pa.array(inverse))

    def check_paired(self, prompt_ids: pl.Series) -> None:
        """Raise InputError if one of these paired prompts has several prompts rows."""
        if len(self.twice):
            hit = prompt_ids.filter(prompt_ids.is_in(self.twice.implode()))
            if len(hit):
                raise InputError(
                    f"prompt {hit[0]!r} made the same pair twice: the prompts (or responses) table "
                    "has duplicate ids; run the prompts stage, which merges duplicates"
                )

    def _load(self, groups: np.ndarray) -> None:
        """Read the row groups in `groups` not yet cached; on a sorted table, forget those below."""
        if self.rows is None and groups.size:  # sorted: later batches never look back
            for old in [g for g in self._cache if g < groups[0]]:
                del self._cache[old]
        for g in groups:
            if g not in self._cache:
                file, index = self._groups[g]
                table = pq.ParquetFile(file).read_row_group(index, columns=["messages"], use_threads=False)
                self._cache[g] = table["messages"].cast(MESSAGES)


class ParquetBatches:
    """A Parquet file written one table at a time (one row group each), atomically.

    Like schemas.io.write_table (temporary file in the destination folder, fsync, rename),
    but for output that never needs to be whole in memory; `options` go to pq.ParquetWriter.
    Leaving the `with` block by an exception removes the temporary file and leaves `path` as
    it was.
    """

    def __init__(self, path: str | Path, schema: pa.Schema, **options) -> None:
        self.path, self.schema, self.rows, self.options = Path(path), schema, 0, options

    def __enter__(self) -> ParquetBatches:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(handle)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, **self.options)
        return self

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(conform(table, self.schema, where=str(self.path)))
            self.rows += table.num_rows

    def __exit__(self, kind, error, trace) -> None:
        try:
            self._writer.close()
            if kind is None:
                with open(self._tmp, "rb") as written:
                    os.fsync(written.fileno())
                os.replace(self._tmp, self.path)
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)
