"""Whether a stage's input file is a whole Parquet file, told in one line before pyarrow reads it.

pyarrow's own message for a CSV, a JSONL file, random bytes or a half-written file is the same
traceback ("Parquet magic bytes not found in footer"); a user needs to know which of these they
passed and what to do. A Parquet file starts and ends with the 4 bytes `PAR1`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefsmith.schemas.errors import InputError
from prefsmith.schemas.sources import SUFFIX_FORMATS

MAGIC = b"PAR1"


def parquet_problem(path: Path) -> str | None:
    """Why `path` is not a whole Parquet file, judged by its first and last 4 bytes, or None."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(4)
        handle.seek(max(size - 4, 0))
        tail = handle.read(4)
    if head == MAGIC and tail != MAGIC:
        return "the file starts as Parquet but has no footer: truncated, or still being written"
    if head != MAGIC:
        named = SUFFIX_FORMATS.get(path.suffix.lower())
        if named in ("csv", "jsonl"):
            return f"a {named.upper()} file, not Parquet"
        return "not a Parquet file (no PAR1 magic bytes)"
    return None


def parquet_schema(path: Path, *, what: str, fix: str) -> pa.Schema:
    """The schema of the Parquet file `path`; one-line InputError `"<what> <path>: <problem>;
    <fix>"` when it is not a whole Parquet file or its footer cannot be read."""
    problem = parquet_problem(path)
    if problem is None:
        try:
            return pq.read_schema(path)
        except (pa.ArrowException, OSError) as error:
            problem = f"its Parquet footer cannot be read ({str(error).splitlines()[0]})"
    raise InputError(f"{what} {path}: {problem}; {fix}")
