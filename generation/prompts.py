"""The prompts stage: load prompts from JSONL, Parquet, CSV or a local HF dataset folder.

Output table `prompts` (prefsmith.schemas.tables.PROMPTS):

| column    | type                        | note                                      |
|-----------|-----------------------------|-------------------------------------------|
| prompt_id | string                      | hash of the normalized messages           |
| messages  | list<{role, content}>       | normalized (NFC, stripped)                |
| source    | string                      | config `source` or the file name          |
| metadata  | string (JSON)               | the row's other columns                   |

A row is either a plain string (`prompt_field`) or chat messages (`messages_field`). Bad rows are
quarantined with a reason: malformed_json, not_utf8, missing_field, bad_messages, empty_prompt.
Exact duplicates (same prompt_id) are merged into the first and counted as duplicate_merged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.ids import normalize_messages, prompt_id
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.tables import PROMPTS

logger = logging.getLogger(__name__)
ROLES = {"system", "user", "assistant", "tool"}


def detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    formats = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}
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


def row_to_messages(row: dict[str, Any], config: PromptsConfig) -> list[dict[str, str]] | str:
    """The row's normalized messages, or a reason string when it cannot be a prompt."""
    if row.get(config.messages_field) is not None:
        messages = row[config.messages_field]
        if isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError:
                return "bad_messages"
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ROLES
                for m in messages
            )
        ):
            return "bad_messages"
    elif row.get(config.prompt_field) is not None:
        if not isinstance(row[config.prompt_field], str):
            return "bad_messages"
        messages = [{"role": "user", "content": row[config.prompt_field]}]
    else:
        return "missing_field"
    messages = normalize_messages(messages)
    if not any(m["content"] for m in messages if m["role"] == "user"):
        return "empty_prompt"
    if config.system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": config.system_prompt.strip()}, *messages]
    return messages


REASON_DETAIL = {
    "missing_field": "no prompt or messages field",
    "bad_messages": "messages must be a non-empty list of {role, content} with a known role",
    "empty_prompt": "the prompt is empty or whitespace",
}


def read_prompts(
    config: PromptsConfig, source_path: Path
) -> tuple[list[dict[str, Any]], list[Rejected], int, int]:
    """Rows of the prompts table from the source file: (rows, rejected, rows read, merged)."""
    fmt = detect_format(source_path, config.format)
    rows, rejected, seen, merged, total = [], [], set(), 0, 0
    fields = {config.prompt_field, config.messages_field}
    for ref, row in iter_raw_rows(source_path, fmt, split=config.split):
        total += 1
        if isinstance(row, Rejected):
            rejected.append(row)
            continue
        messages = row_to_messages(row, config)
        if isinstance(messages, str):
            raw = json.dumps(row, ensure_ascii=False, default=str)
            rejected.append(Rejected(ref, messages, REASON_DETAIL[messages], raw))
            continue
        pid = prompt_id(messages)
        if pid in seen:  # an exact duplicate: merged into the first, counted
            merged += 1
            continue
        seen.add(pid)
        extra = {k: v for k, v in row.items() if k not in fields}
        metadata = json.dumps(extra, ensure_ascii=False, default=str, sort_keys=True)
        source = config.source or source_path.name
        rows.append(
            {"prompt_id": pid, "messages": messages, "source": source, "metadata": metadata}
        )
    return rows, rejected, total, merged


def load_prompts(_inputs: Inputs, *, config: PromptsConfig, out_dir: str | Path) -> StageResult:
    """The prompts stage: read `config.path` (it takes no input table), write `prompts.parquet`,
    its quarantine and its manifest."""
    start = time.perf_counter()
    source_path = Path(config.path)
    if not source_path.exists():
        raise InputError(f"prompts file not found: {source_path}")
    rows, rejected, total, merged = read_prompts(config, source_path)
    out_dir = Path(out_dir)
    output = write_table(rows, out_dir / "prompts.parquet", PROMPTS)
    quarantine = write_quarantine(rejected, out_dir / "prompts.quarantine.parquet", stage="prompts")
    dropped = count_reasons([r.reason for r in rejected])
    if merged:
        dropped["duplicate_merged"] = merged
    manifest = Manifest(
        stage="prompts",
        unit="prompt",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(source_path)],
        outputs={"prompts": str(output), "quarantine": str(quarantine)},
        rows_in=total,
        rows_out=len(rows),
        dropped=dropped,
        rows_written={"prompts": len(rows), "quarantine": len(rejected)},
        wall_time_s=time.perf_counter() - start,
    )
    logger.info("prompts: %d rows in, %d prompts out, dropped %s", total, len(rows), dropped)
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))
