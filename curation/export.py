"""Export a pairs table to TRL's conversational preference format (JSONL, Parquet, HF dataset).

One row per pair:

| column   | value                                                  |
|----------|--------------------------------------------------------|
| prompt   | the prompt's messages: [{"role", "content"}, ...]      |
| chosen   | [{"role": "assistant", "content": <chosen text>}]      |
| rejected | [{"role": "assistant", "content": <rejected text>}]    |

This is the "conversational, explicit prompt" preference format TRL's `DPOTrainer` reads: the
trainer applies the policy's own chat template, so the texts stay raw (the pairs table never
stores a rendered template). Rows keep the pairs table's order (prompt_id, pair_id). Scores,
margins and reference log-probs are not exported: TRL cannot use per-pair data, which is why
prefsmith trains with its own trainer; the export is for TRL baselines and for sharing.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.tables import MESSAGES, PAIRS

logger = logging.getLogger(__name__)

TRL_PREFERENCE = pa.schema([("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES)])
FORMATS = ("jsonl", "parquet")


def _assistant(column: str) -> pl.Expr:
    """A one-message assistant turn holding `column`'s text."""
    turn = pl.struct(role=pl.lit("assistant"), content=pl.col(column))
    return pl.concat_list(turn)


def trl_frame(pairs: str | Path) -> pl.DataFrame:
    """The pairs table at `pairs` (file or shard folder) as TRL prompt/chosen/rejected rows."""
    frame = read_frame(pairs, PAIRS)
    return frame.select(
        prompt=pl.col("messages"), chosen=_assistant("chosen"), rejected=_assistant("rejected")
    )


def _write_jsonl(frame: pl.DataFrame, out: Path) -> None:
    """Write JSON Lines atomically (temporary file in the same folder, then rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        frame.write_ndjson(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_trl(
    pairs: str | Path, *, out: str | Path, format: Literal["jsonl", "parquet"] = "jsonl"
) -> Path:
    """Write the pairs table as TRL conversational preference rows to `out`; return `out`."""
    if format not in FORMATS:
        raise ConfigError(f"export format={format!r} is not supported; use one of {list(FORMATS)}")
    out = Path(out)
    frame = trl_frame(pairs)
    if format == "jsonl":
        _write_jsonl(frame, out)
    else:
        write_table(frame, out, TRL_PREFERENCE)
    logger.info("exported %d pairs to %s (%s)", frame.height, out, format)
    return out


def export_hf_dataset(pairs: str | Path, *, out_dir: str | Path) -> Path:
    """Save the TRL rows as a Hugging Face dataset (`datasets.load_from_disk(out_dir)`)."""
    import datasets  # heavy import, only for this export

    frame = trl_frame(pairs)
    dataset = datasets.Dataset.from_dict(frame.to_dict(as_series=False))
    dataset.save_to_disk(str(out_dir))
    logger.info("saved %d pairs as a dataset in %s", frame.height, out_dir)
    return Path(out_dir)
