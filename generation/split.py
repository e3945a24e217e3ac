"""The split stage: a prompts table into train and held-out tables by the hash of each prompt's id.

The side depends only on the prompt's id, so a prompt stays on the same side when the prompt set
grows between scheduled rebuilds. Nothing is dropped: every prompt lands on exactly one side.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from prefsmith.schemas.data_configs import SplitConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Inputs, Manifest, StageResult, input_path, input_ref
from prefsmith.schemas.tables import PROMPTS


def heldout_bucket() -> pl.Expr:
    """A prompt's position in [0, 1) from the first 32 bits of its id (a sha256 hex digest)."""
    return pl.col("prompt_id").str.slice(0, 8).str.to_integer(base=16) / 2**32


def split_prompts(inputs: Inputs, *, config: SplitConfig, out_dir: str | Path) -> StageResult:
    """Write `prompts.train.parquet` (the output) and `prompts.heldout.parquet`
    (`more["prompts_heldout"]`) with a manifest counting both sides."""
    start = time.perf_counter()
    prompts, out_dir = input_path(inputs, "prompts"), Path(out_dir)
    frame = read_frame(prompts, PROMPTS)
    is_heldout = heldout_bucket() < config.heldout_fraction
    held = frame.filter(is_heldout)
    train = write_table(frame.filter(~is_heldout), out_dir / "prompts.train.parquet", PROMPTS)
    heldout = write_table(held, out_dir / "prompts.heldout.parquet", PROMPTS)
    n_heldout = held.height
    manifest = Manifest(
        stage="split",
        unit="prompt",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(prompts)],
        outputs={"prompts_train": str(train), "prompts_heldout": str(heldout)},
        rows_in=frame.height,
        rows_out=frame.height,
        rows_written={"prompts_train": frame.height - n_heldout, "prompts_heldout": n_heldout},
        wall_time_s=time.perf_counter() - start,
    )
    path = manifest.write(out_dir / "prompts.split.manifest.json")
    return StageResult(train, None, path, more={"prompts_heldout": heldout})
