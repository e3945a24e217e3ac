"""Export a pairs table to TRL's conversational preference format (JSONL, Parquet, HF dataset).

One row per pair, in the pairs table's order (prompt_id, pair_id):

| column             | value                                                        |
|--------------------|--------------------------------------------------------------|
| pair_id            | the pair's id (joins back to the pairs table)                |
| prompt             | the prompt's messages: [{"role", "content"}, ...]            |
| chosen             | [{"role": "assistant", "content": <chosen text>}]            |
| rejected           | [{"role": "assistant", "content": <rejected text>}]          |
| score_chosen       | raw scorer score of the chosen response (our name)           |
| score_rejected     | raw scorer score of the rejected response (our name)         |
| margin             | score_chosen - score_rejected, raw (our name)                |
| ref_chosen_logps   | from `ref_logp_chosen`, only for a table after `reference`   |
| ref_rejected_logps | from `ref_logp_rejected`, only for a table after `reference` |
| weight             | the per-pair weight, only for a table with a `weight` column (our name) |

This is the "conversational, explicit prompt" preference format TRL's `DPOTrainer` reads: the
trainer applies the policy's own chat template, so the texts stay raw (the pairs table never
stores a rendered template). `ref_chosen_logps`/`ref_rejected_logps` are the names TRL 1.16's
`DataCollatorForPreference` and `DPOTrainer` (with precomputed reference log-probs) read: summed
log-probs of each completion through its end-of-turn token. TRL's own tokenization also trains
the template's newline after EOS (tests/training/test_trl_oracle.py), so a TRL run recomputing
them differs by that one token. Scores keep prefsmith's names: TRL has no column for them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import atomic_write, read_frame, shard_files, write_table
from prefsmith.schemas.tables import MESSAGES, REFERENCE_COLUMNS, WEIGHT, pairs_schema

logger = logging.getLogger(__name__)

TRL_PREFERENCE = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt", MESSAGES),
        ("chosen", MESSAGES),
        ("rejected", MESSAGES),
        ("score_chosen", pa.float64()),
        ("score_rejected", pa.float64()),
        ("margin", pa.float64()),
    ]
)
TRL_REFERENCE = {"ref_logp_chosen": "ref_chosen_logps", "ref_logp_rejected": "ref_rejected_logps"}
TRL_PREFERENCE_WITH_REFERENCE = pa.schema(
    list(TRL_PREFERENCE) + [(trl, pa.float64()) for trl in TRL_REFERENCE.values()]
)
FORMATS = ("jsonl", "parquet")


def _assistant(column: str) -> pl.Expr:
    """A one-message assistant turn holding `column`'s text."""
    turn = pl.struct(role=pl.lit("assistant"), content=pl.col(column))
    return pl.concat_list(turn)


def column_names(pairs: str | Path) -> set[str]:
    """The column names of the pairs table at `pairs` (its first file)."""
    files = shard_files(pairs)
    return set(pq.read_schema(files[0]).names) if files else set()


def has_reference(pairs: str | Path) -> bool:
    """Whether the pairs table at `pairs` carries the reference pass's columns."""
    return set(REFERENCE_COLUMNS.names) <= column_names(pairs)


def trl_frame(pairs: str | Path) -> pl.DataFrame:
    """The pairs table at `pairs` (file or shard folder) as TRL rows (see the module docstring)."""
    names = column_names(pairs)
    with_reference = set(REFERENCE_COLUMNS.names) <= names
    frame = read_frame(pairs, pairs_schema(names, reference=with_reference))
    reference = [pl.col(ours).alias(trl) for ours, trl in TRL_REFERENCE.items()]
    return frame.select(
        "pair_id",
        pl.col("messages").alias("prompt"),
        _assistant("chosen").alias("chosen"),
        _assistant("rejected").alias("rejected"),
        "score_chosen",
        "score_rejected",
        "margin",
        *(reference if with_reference else []),
        *([WEIGHT.name] if WEIGHT.name in names else []),
    )


def _write_jsonl(frame: pl.DataFrame, out: Path) -> None:
    """Write JSON Lines atomically (temporary file in the same folder, then rename)."""
    with atomic_write(out) as tmp:
        frame.write_ndjson(tmp)


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
        schema = TRL_PREFERENCE_WITH_REFERENCE if "ref_chosen_logps" in frame else TRL_PREFERENCE
        write_table(frame, out, schema.append(WEIGHT) if WEIGHT.name in frame else schema)
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
