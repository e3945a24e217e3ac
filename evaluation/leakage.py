"""Held-out prompts the checkpoint was trained on: a win rate on them measures memory, not skill.

The checkpoint's train manifest (`<checkpoint>.manifest.json`, written by the train stage) names
the pairs table it trained on; its `prompt_id`s are compared with the held-out table's. Prompt
ids are hashes of the normalized messages (schemas/ids.py), so a prompt that reached both sides
under another source or file is still found. A checkpoint without a readable manifest (trained
elsewhere) cannot be checked: that is logged, not warned, since eval's terminal output stays one
line for a stop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from prefsmith.schemas.io import shard_files
from prefsmith.schemas.manifest import Manifest, manifest_path

logger = logging.getLogger(__name__)


def _prompt_ids(table: str | Path) -> set[str]:
    files = shard_files(table) if Path(table).is_dir() else [Path(table)]
    return set(pl.scan_parquet(files).select("prompt_id").collect().to_series().to_list())


def trained_pairs(checkpoint: str | Path) -> Path | None:
    """The pairs table the checkpoint's train manifest names, when it exists."""
    try:
        manifest = Manifest.read(manifest_path(checkpoint))
    except (OSError, ValueError):
        return None
    if manifest.stage != "train" or not manifest.inputs:
        return None
    pairs = Path(manifest.inputs[0].path)
    return pairs if pairs.exists() else None


def heldout_leak_warning(checkpoint: str | Path, heldout: str | Path) -> str | None:
    """One warning line when held-out prompts were trained on; None when none were, or when it
    cannot be checked (no train manifest naming an existing pairs table, or a table without
    prompt ids: the evaluation itself then reports what is wrong with it, in one line)."""
    pairs = trained_pairs(checkpoint)
    if pairs is None:
        logger.debug(
            "eval: %s has no train manifest naming its pairs: leakage not checked", checkpoint
        )
        return None
    try:
        held = _prompt_ids(heldout)
        leaked = held & _prompt_ids(pairs)
    except Exception as error:  # an unreadable table is the evaluation's to report
        logger.debug("eval: leakage not checked (%s)", error)
        return None
    if not leaked:
        return None
    return (
        f"eval: {len(leaked)} of {len(held)} held-out prompts were trained on ({pairs}); "
        "the win rate on them is not a held-out measure — split with `prefsmith split` "
        "before generating"
    )
