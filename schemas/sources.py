"""Reading the files users bring: JSONL, Parquet, CSV or a local HF dataset folder, row by row.

Unreadable rows (bad UTF-8, malformed JSON, a line that is not an object) come back as
`Rejected` with their `file:line`, so a stage quarantines them and goes on; a file that cannot be
read at all is an InputError. Used by the prompts stage and by `prefsmith import`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import InputError
from prefsmith.schemas.quarantine import Rejected

# The file format a source's extension names (a folder is an HF dataset).
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}


def detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    formats = SUFFIX_FORMATS
    if suffix not in formats:
        raise InputError(
            f"{path}: cannot tell the format from {suffix!r}; set format: jsonl|parquet|csv|hf"
        )
    return formats[suffix]


def iter_raw_rows(
    path: Path, fmt: str, *, split: str = "train"
) -> Iterator[tuple[str, dict[str, Any] | Rejected]]:
    """Yield (row_ref, row) for every input row, or (row_ref, Rejected) for unreadable ones."""
    if fmt == "jsonl":
        yield from _iter_jsonl(path)
        return
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif fmt == "csv":
        import polars as pl

        try:
            rows = pl.read_csv(path, infer_schema=False, encoding="utf8").to_dicts()
        except (pl.exceptions.ComputeError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: not a readable UTF-8 CSV ({error})") from None
    else:
        rows = _read_hf_dataset(path, split)
    for index, row in enumerate(rows):
        yield f"{path.name}:{index + 1}", row


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | Rejected]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            ref = f"{path.name}:{number}"
            if number == 1:
                raw = raw.removeprefix(
                    b"\xef\xbb\xbf"
                )  # a UTF-8 BOM (Windows editors) is not row 1's text
            if not raw.strip():
                continue  # blank lines are layout, not rows
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield ref, Rejected(ref, "not_utf8", str(error), raw.decode("utf-8", "replace"))
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                yield ref, Rejected(ref, "malformed_json", str(error), text)
                continue
            if not isinstance(row, dict):
                yield ref, Rejected(ref, "malformed_json", "a line must be a JSON object", text)
                continue
            yield ref, row


def _read_hf_dataset(path: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{path}: not a dataset saved with save_to_disk ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise InputError(f"{path}: no split {split!r} (has {sorted(loaded)}); set split:")
        loaded = loaded[split]
    return loaded.to_list()
