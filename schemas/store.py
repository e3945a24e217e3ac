"""The incremental store: rows one build computed, kept for the next builds of the same pipeline
(`<out_dir>/<name>/store/`), so a rebuild sends only new or changed inputs to a model.

| folder                              | rows                  | reuse key within the namespace      |
|-------------------------------------|-----------------------|-------------------------------------|
| `responses/<generation namespace>/` | a prompt's n samples  | prompt_id                           |
| `scores/<scorer namespace>/`        | one response's score  | hash of (response_id, response)     |

A namespace is the hash of everything else the rows depend on (model revision, sampling or
scoring config, seed, backend): prefsmith.generation.reuse and prefsmith.scoring.reuse.

A folder holds segments `seg-<hash>.parquet`, each written once, atomically (a killed write
leaves a hidden temporary that is never read), named after the hash of its own rows: a segment is
trusted only when its rows still hash to its name, so a truncated or edited file is skipped with a
warning, never reused. Rows that are not reused are computed and added as a new segment.

Each sharded stage also writes a reuse record per shard (`<table>.reuse/shard-NNNNN.json`:
rows reused and computed) before the shard itself, so the manifest counts both, resumed shards
included.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefsmith.schemas.ids import content_hash
from prefsmith.schemas.io import shard_name, to_table, write_table, write_text

logger = logging.getLogger(__name__)

STORE_KEY = "store_key"
SEGMENT_GLOB = "seg-*.parquet"


def store_folder(out_dir: str | Path, name: str) -> Path:
    """The store shared by every build of the pipeline `name`: `<out_dir>/<name>/store`."""
    return Path(out_dir) / name / "store"


@dataclass(frozen=True)
class RowStore:
    """One namespace of the store: rows of `schema`, each under a reuse key."""

    folder: Path
    schema: pa.Schema

    @property
    def stored_schema(self) -> pa.Schema:
        return self.schema.append(pa.field(STORE_KEY, pa.string(), nullable=False))

    def load(self) -> dict[str, list[dict[str, Any]]]:
        """Reuse key → rows, from every segment that verifies (the first segment holding a key
        wins: two builds that computed one key wrote equal rows)."""
        index: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self.folder.glob(SEGMENT_GLOB)):
            groups: dict[str, list[dict[str, Any]]] = {}
            for row in self._verified_rows(path):
                groups.setdefault(row.pop(STORE_KEY), []).append(row)
            for key, rows in groups.items():
                index.setdefault(key, rows)
        return index

    def _verified_rows(self, path: Path) -> list[dict[str, Any]]:
        """The segment's rows if they still hash to its name, else none (with a warning)."""
        try:
            rows = pq.read_table(path).cast(self.stored_schema).to_pylist()
        except (OSError, pa.ArrowException) as error:
            logger.warning("store: %s not reused: unreadable (%s)", path, error)
            return []
        if f"seg-{content_hash(rows)}.parquet" != path.name:
            logger.warning("store: %s not reused: its rows do not match its name", path)
            return []
        return rows

    def put(self, rows_by_key: Mapping[str, Sequence[dict[str, Any]]]) -> Path | None:
        """Add rows as one new segment (atomic; named after its rows); None when there are none."""
        rows = [{**row, STORE_KEY: key} for key, group in rows_by_key.items() for row in group]
        if not rows:
            return None
        table = to_table(rows, self.stored_schema, where=str(self.folder))
        path = self.folder / f"seg-{content_hash(table.to_pylist())}.parquet"
        return write_table(table, path, self.stored_schema)


def reuse_records(table: Path) -> Path:
    """The folder of a sharded table's reuse records: `<table>.reuse/` beside it."""
    return table.with_name(f"{table.name}.reuse")


def write_reuse_record(folder: Path, index: int, *, reused: int, computed: int) -> None:
    """Shard `index`'s counts (rows reused from the store, rows computed), before the shard."""
    record = {"reused": reused, "computed": computed}
    write_text(json.dumps(record), folder / shard_name(index).replace(".parquet", ".json"))


def reuse_counts(folder: Path, shards: int, *, rows: int) -> dict[str, int]:
    """{rows_reused, rows_computed} over `shards` shards holding `rows` rows: rows of a shard
    without a record (written before the store existed) count as computed."""
    reused = 0
    for index in range(shards):
        path = folder / shard_name(index).replace(".parquet", ".json")
        if path.is_file():
            reused += int(json.loads(path.read_text())["reused"])
    return {"rows_reused": reused, "rows_computed": rows - reused}


def reusing(
    compute: Callable[[int, Any], list[dict[str, Any]]],
    *,
    store: RowStore | None,
    records: Path,
    keys: Callable[[Any], list[str]],
    subset: Callable[[Any, list[bool]], Any],
    row_key: Callable[[dict[str, Any]], str],
    fresh: Collection[str] = (),
    index: dict[str, list[dict[str, Any]]] | None = None,
) -> Callable[[int, Any], list[dict[str, Any]]]:
    """A sharded stage's `work(index, shard)` that takes from `store` the rows of the shard's
    items it holds and calls `compute(index, subset(shard, missing))` for the rest only, adds
    those to the store and writes the shard's reuse record. `keys(shard)` gives each item's reuse
    key, `row_key(row)` a computed row's; rows come back in the shard's item order, as
    `compute` on the whole shard would return them. `compute` is called with an empty subset
    when every item is reused (a stage's per-shard side files still get written): it must load
    no model for none. Keys in `fresh` were computed by this run ahead of its shards (a batched
    prefetch): found in the store, they count as computed. `index`: the store's rows, already
    read (else read at the first shard). Without a store, `compute` itself."""
    if store is None:
        return compute
    loaded: dict[str, dict[str, list[dict[str, Any]]]] = {} if index is None else {"index": index}
    fresh_keys = set(fresh)
    lock = threading.Lock()  # shard threads (OpenAI backend) share one loaded index

    def known() -> dict[str, list[dict[str, Any]]]:
        with lock:
            if "index" not in loaded:
                loaded["index"] = store.load()
            return loaded["index"]

    def work(index: int, shard: Any) -> list[dict[str, Any]]:
        item_keys, held = keys(shard), known()
        missing = [key not in held for key in item_keys]
        computed = compute(index, subset(shard, missing))
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in computed:
            groups.setdefault(row_key(row), []).append(row)
        store.put(groups)
        rows = {key: held[key] for key, miss in zip(item_keys, missing, strict=True) if not miss}
        ahead = sum(len(group) for key, group in rows.items() if key in fresh_keys)
        reused = sum(len(group) for group in rows.values()) - ahead
        write_reuse_record(records, index, reused=reused, computed=len(computed) + ahead)
        rows.update(groups)
        return [row for key in item_keys for row in rows.get(key, [])]

    return work
