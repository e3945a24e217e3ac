"""Reading and writing tables: schema-checked, atomic, sharded.

Every write goes to a temporary file in the destination folder and is renamed into place, so a
reader (or a resumed run) sees either the whole file or none of it.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from prefsmith.schemas.errors import InputError, SchemaError

if TYPE_CHECKING:
    from prefsmith.schemas.shard_plan import ShardPlan


def check_schema(actual: pa.Schema, expected: pa.Schema, *, where: str) -> None:
    """Raise one `SchemaError` listing every missing or mistyped column of `expected`."""
    problems = []
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            problems.append(f"missing column {field.name!r} ({field.type})")
        elif not actual.field(index).type.equals(field.type):
            problems.append(
                f"column {field.name!r} is {actual.field(index).type}, expected {field.type}"
            )
    if problems:
        raise SchemaError(f"{where}: " + "; ".join(problems))


def conform(table: pa.Table, schema: pa.Schema, *, where: str) -> pa.Table:
    """Select and cast `table` to `schema`'s columns (extra columns are dropped)."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise SchemaError(f"{where}: missing columns {missing}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise SchemaError(f"{where}: cannot cast to the table schema: {error}") from error


def _as_arrow(data: pa.Table | pl.DataFrame | Sequence[dict], schema: pa.Schema) -> pa.Table:
    if isinstance(data, pl.DataFrame):
        return data.to_arrow()
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pylist(list(data), schema=schema)


def to_table(
    data: pa.Table | pl.DataFrame | Sequence[dict], schema: pa.Schema, *, where: str
) -> pa.Table:
    """`data` as an Arrow table conformed to `schema` (what `write_table` writes)."""
    return conform(_as_arrow(data, schema), schema, where=where)


def write_table(
    data: pa.Table | pl.DataFrame | Sequence[dict],
    path: str | Path,
    schema: pa.Schema,
    *,
    before_rename: Callable[[Path], None] | None = None,
) -> Path:
    """Write `data` conformed to `schema` as Parquet at `path`, atomically. Returns the path.

    `before_rename(tmp)` runs on the whole written file just before it takes its name (a shard
    plan records the shard's hash there)."""
    path = Path(path)
    table = to_table(data, schema, where=str(path))
    with atomic_write(path, before_rename=before_rename) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def _create_temporary(path: Path, suffix: str) -> Path:
    """A new empty hidden file beside `path`, created with mode 0666 so the kernel applies the
    process umask (tempfile.mkstemp forces 0600, which made every output private)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # _create_temporary's names


def remove_stale_temporaries(folder: str | Path, *, prefix: str = "") -> int:
    """Delete the temporary files a killed `atomic_write` left in `folder` for targets whose
    name starts with `prefix`; returns how many.

    Only for a caller that holds the writer lock of those targets: a live writer's would go too.
    """
    folder, removed = Path(folder), 0
    if folder.is_dir():
        for path in folder.iterdir():
            if (
                path.name.startswith(f".{prefix}")
                and _TEMPORARY.match(path.name)
                and path.is_file()
            ):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


@contextmanager
def atomic_write(
    path: str | Path,
    *,
    suffix: str = ".tmp",
    before_rename: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success fsync it and rename it to `path`.

    The file gets the mode a plain `open` would (0666 less the umask). Leaving the block by an
    exception removes the temporary file and leaves `path` as it was, so a reader (or a resumed
    run) sees the whole file or none. Hidden names keep half-written files out of `shard_files`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path, suffix)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(text: str, path: str | Path) -> Path:
    """Write `text` to `path` atomically (a reader never sees half a report)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_table(path: str | Path, schema: pa.Schema) -> pa.Table:
    """Read a Parquet file or a folder of shards, check it against `schema`, return those columns.

    A folder is read as the concatenation of its shards (`shard_files`: the ones its plan lists,
    in plan order; without a plan, its `*.parquet` files in name order; hidden temporary files
    from an interrupted write are never read).
    """
    files = shard_files(path)
    if not files:
        raise InputError(
            f"no Parquet files at {path} (is the path right, or was every row quarantined?)"
        )
    tables = [pq.read_table(f) for f in files]
    for file, table in zip(files, tables, strict=True):
        check_schema(table.schema, schema, where=str(file))
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


def read_frame(path: str | Path, schema: pa.Schema) -> pl.DataFrame:
    """`read_table` as a polars DataFrame."""
    return pl.from_arrow(read_table(path, schema))  # type: ignore[return-value]


def shard_files(path: str | Path) -> list[Path]:
    """The Parquet files of a table: the file itself, the shards a folder's plan lists
    (prefsmith.schemas.shard_plan: never an extra or stale file beside them), or, in a folder
    made outside prefsmith's sharded stages (no plan.json), its `*.parquet` files by name."""
    from prefsmith.schemas.shard_plan import planned_files

    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        planned = planned_files(path)
        if planned is not None:
            return planned
        return sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    return []


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def run_shards(
    shards: Sequence[Sequence],
    out_dir: str | Path,
    work: Callable[[int, Sequence], Iterable[dict] | pa.Table],
    schema: pa.Schema,
    *,
    progress: Callable[[int], None] | None = None,
    only: Collection[int] | None = None,
    workers: int = 1,
    plan: ShardPlan | None = None,
) -> tuple[list[Path], int]:
    """Run `work(index, shard)` for each shard not yet done; write it atomically.

    Returns (all shard paths in order, number of shards skipped because they were already done).
    A killed run leaves only complete shard files, so running again finishes exactly the rest.
    With a `plan` (prefsmith.schemas.shard_plan; what the stages pass, after `settle_plan`) a
    shard is done only when its done record matches the plan and its bytes, and each written
    shard is recorded; without one, a shard is done when its file exists. `only` restricts the work to those shard indices (one mapped task's part of a stage; the
    paths returned are still all of them). `workers > 1` runs that many shards at once in
    threads, for work that waits on something else (servers): each shard is still written whole.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / shard_name(index) for index in range(len(shards))]
    wanted = range(len(shards)) if only is None else sorted(set(only))
    if any(not 0 <= index < len(shards) for index in wanted):
        raise ValueError(f"shard indices {list(wanted)} outside 0..{len(shards) - 1}")
    if plan is not None and (
        plan.folder.resolve() != out_dir.resolve() or len(plan.inputs) != len(shards)
    ):
        raise ValueError(f"the plan of {plan.folder} is not of these {len(shards)} shards")
    done = (lambda i: paths[i].exists()) if plan is None else plan.is_done
    pending = [index for index in wanted if not done(index)]
    skipped = len(wanted) - len(pending)
    if progress is not None:
        progress(sum(len(shards[index]) for index in wanted if index not in pending))

    def run_one(index: int) -> None:
        rows = work(index, shards[index])
        record = None if plan is None else partial(plan.record, index)
        table = rows if isinstance(rows, pa.Table) else list(rows)
        write_table(table, paths[index], schema, before_rename=record)
        if progress is not None:
            progress(len(shards[index]))

    if workers <= 1:
        for index in pending:
            run_one(index)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_one, index) for index in pending]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # stop queued shards; finished ones stay written (resume)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return paths, skipped


def chunk(items: Sequence, size: int) -> list[Sequence]:
    """Consecutive slices of `items` of length `size` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]
