"""The prompts stage: load prompts from JSONL, Parquet, CSV or a local HF dataset folder.

Output table `prompts` (prefsmith.schemas.tables.PROMPTS):

| column    | type                        | note                                      |
|-----------|-----------------------------|-------------------------------------------|
| prompt_id | string                      | hash of the normalized messages           |
| messages  | list<{role, content}>       | normalized (NFC, stripped)                |
| source    | string                      | config `source` or the file name          |
| metadata  | string (JSON)               | the row's other columns                   |

A row holds chat messages, an Anthropic HH transcript, several fields to join, or one string
(generation.prompt_shapes); every prompt ends with a user turn (trailing assistant turns are
stripped and counted as `extra.trailing_assistant_stripped`, or quarantined). Bad rows are
quarantined with a reason: malformed_json, not_utf8, missing_field, bad_messages, bad_transcript,
empty_prompt, ends_with_assistant, no_final_user_turn. Exact duplicates (same prompt_id) are
merged into the first and counted as duplicate_merged. A row with a lone surrogate (a JSON
`\\ud800` escape) is quarantined as not_utf8, the other rows kept.

The stage stops with one line (InputError) for a file that cannot hold prompts at all: empty,
not whole Parquet, or a field mapping that matches no row (the line names the fields looked for
and the columns the file has; some rows lacking the field is quarantine, not a stop).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefsmith.generation.prompt_shapes import (
    REASON_DETAIL,
    Messages,
    finish_prompt,
    raw_messages,
)
from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.ids import prompt_id
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.parquet_files import parquet_schema
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.sources import detect_format, iter_raw_rows
from prefsmith.schemas.tables import PROMPTS

logger = logging.getLogger(__name__)


def row_to_messages(row: dict[str, Any], config: PromptsConfig) -> tuple[Messages, int] | str:
    """(the row's normalized messages, trailing assistant turns stripped), or a reason string
    when it cannot be a prompt (generation.prompt_shapes lists the shapes read)."""
    messages = raw_messages(row, config)
    if isinstance(messages, str):
        return messages
    ended = finish_prompt(messages, trailing=config.trailing_assistant)
    if isinstance(ended, str):
        return ended
    messages, stripped = ended
    if config.system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": config.system_prompt.strip()}, *messages]
    return messages, stripped


@dataclass
class PromptRows:
    """What the source file gave: table rows, quarantined rows and the counts of the manifest."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    total: int = 0
    merged: int = 0  # exact duplicates merged into the first (dropped as duplicate_merged)
    stripped: int = 0  # rows whose trailing assistant turns were removed (kept, counted)
    columns: set[str] = field(default_factory=set)  # every column seen, for a wrong field mapping


SURROGATE = "a lone surrogate (an unpaired \\ud800-\\udfff escape) cannot be written as UTF-8"


def is_utf8(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (a lone surrogate cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_prompts(config: PromptsConfig, source_path: Path) -> PromptRows:
    """Rows of the prompts table from the source file, with every drop's reason."""
    out, seen = PromptRows(), set()
    used = {config.prompt_field, config.messages_field, config.transcript_field}
    used.update(config.prompt_fields)
    for ref, row in iter_raw_rows(
        source_path, detect_format(source_path, config.format), split=config.split
    ):
        out.total += 1
        if isinstance(row, Rejected):
            out.rejected.append(row)
            continue
        out.columns.update(row)
        raw = json.dumps(row, ensure_ascii=False, default=str)
        if not is_utf8(raw):  # JSON's "\ud800" escape decodes to a lone surrogate: not text
            raw = json.dumps(row, default=str)  # escaped, so the quarantine can hold it
            out.rejected.append(Rejected(ref, "not_utf8", SURROGATE, raw))
            continue
        shaped = row_to_messages(row, config)
        if isinstance(shaped, str):
            out.rejected.append(Rejected(ref, shaped, REASON_DETAIL[shaped], raw))
            continue
        messages, stripped = shaped
        pid = prompt_id(messages)
        if pid in seen:  # an exact duplicate: merged into the first, counted
            out.merged += 1
            continue
        seen.add(pid)
        out.stripped += bool(stripped)
        extra = {k: v for k, v in row.items() if k not in used}
        metadata = json.dumps(extra, ensure_ascii=False, default=str, sort_keys=True)
        source = config.source or source_path.name
        out.rows.append(
            {"prompt_id": pid, "messages": messages, "source": source, "metadata": metadata}
        )
    return out


def check_source(path: Path, *, config: PromptsConfig) -> None:
    """One line for a file that cannot hold prompts at all: empty, or not whole Parquet."""
    if path.is_dir():
        return
    fix = "give a JSONL, Parquet or CSV file of prompts"
    if path.is_file() and path.stat().st_size == 0:  # a named pipe reads 0 too: not empty
        raise InputError(f"prompts file {path}: the file is empty (0 bytes); {fix}")
    if detect_format(path, config.format) == "parquet":
        parquet_schema(path, what="prompts file", fix=fix)


def looked_for(config: PromptsConfig) -> list[str]:
    """The columns the config reads a prompt from, in the order prompt_shapes tries them."""
    fields = [
        config.messages_field,
        *([config.transcript_field] if config.transcript_field else []),
    ]
    return fields + (config.prompt_fields or [config.prompt_field])


def check_field_mapping(read: PromptRows, *, config: PromptsConfig, source_path: Path) -> None:
    """Stop when no row has any field the config names (a wrong mapping, not bad rows): the
    stage would write 0 prompts and the run fail later. Some rows missing it is quarantine."""
    missing = [r for r in read.rejected if r.reason == "missing_field"]
    if read.rows or not missing or len(missing) != len(read.rejected):
        return
    fields = ", ".join(repr(f) for f in looked_for(config))
    columns = ", ".join(repr(c) for c in sorted(read.columns)) or "none"
    raise InputError(
        f"prompts: no row of {source_path} has a column the config names ({fields}); its "
        f"columns are {columns}: set prompt_field, prompt_fields or transcript_field"
    )


def load_prompts(_inputs: Inputs, *, config: PromptsConfig, out_dir: str | Path) -> StageResult:
    """The prompts stage: read `config.path` (it takes no input table), write `prompts.parquet`,
    its quarantine and its manifest."""
    start = time.perf_counter()
    source_path = Path(config.path)
    if not source_path.exists():
        raise InputError(f"prompts file not found: {source_path}")
    check_source(source_path, config=config)
    read = read_prompts(config, source_path)
    check_field_mapping(read, config=config, source_path=source_path)
    out_dir = Path(out_dir)
    output = write_table(read.rows, out_dir / "prompts.parquet", PROMPTS)
    quarantine = write_quarantine(
        read.rejected, out_dir / "prompts.quarantine.parquet", stage="prompts"
    )
    dropped = count_reasons([r.reason for r in read.rejected])
    if read.merged:
        dropped["duplicate_merged"] = read.merged
    manifest = Manifest(
        stage="prompts",
        unit="prompt",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(source_path)],
        outputs={"prompts": str(output), "quarantine": str(quarantine)},
        rows_in=read.total,
        rows_out=len(read.rows),
        dropped=dropped,
        rows_written={"prompts": len(read.rows), "quarantine": len(read.rejected)},
        extra={"trailing_assistant_stripped": read.stripped},
        wall_time_s=time.perf_counter() - start,
    )
    logger.info(
        "prompts: %d rows in, %d prompts out, dropped %s, %d trailing assistant turns stripped",
        read.total,
        len(read.rows),
        dropped,
        read.stripped,
    )
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))
