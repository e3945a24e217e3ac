"""Which checkpoint a resumed `train` continues from, and when it must not step at all.

HF's Trainer writes `checkpoint-N/` in place (weights, optimizer, RNG, then `trainer_state.json`
last), so a kill mid-save leaves a folder that `get_last_checkpoint` still picks and the resume
then fails. A checkpoint counts here only when its `trainer_state.json` parses: newer, incomplete
ones are removed with a warning. And a run killed after its last step (while `final/` was being
saved) has a checkpoint already at the planned step count: resuming it with `trainer.train`
takes one step more, so `restore_finished` loads it instead and training is skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.train_configs import TrainConfig

logger = logging.getLogger(__name__)

STATE = "trainer_state.json"  # HF writes it last


def resume_checkpoint(config: TrainConfig, *, out_dir: Path) -> Path | None:
    """The checkpoint to resume from: the last complete one in out_dir (resume: true), or the
    folder given (resume: <path>), or None."""
    if config.resume is False:
        return None
    if isinstance(config.resume, str):
        if not Path(config.resume).is_dir():
            raise ConfigError(f"resume: checkpoint folder not found: {config.resume}")
        return Path(config.resume)
    folder = Path(out_dir) / "checkpoints"
    last = last_complete_checkpoint(folder)
    if last is None:
        logger.warning("resume: true but no checkpoint in %s; starting from the policy", folder)
    return last


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The highest-numbered `checkpoint-N` whose trainer state parses; incomplete ones above it
    are removed (they are the remains of a killed save, and HF would pick them)."""
    if not folder.is_dir():
        return None
    numbered = [p for p in folder.glob("checkpoint-*") if p.name.rpartition("-")[2].isdigit()]
    for path in sorted(numbered, key=lambda p: int(p.name.rpartition("-")[2]), reverse=True):
        if trainer_state(path) is not None:
            return path
        logger.warning("train: %s is incomplete (killed while saving); removed", path)
        shutil.rmtree(path, ignore_errors=True)
    return None


def trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint's parsed `trainer_state.json`, or None when missing or torn."""
    try:
        state = json.loads((checkpoint / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "global_step" in state else None


def is_finished(checkpoint: Path | None, *, config: TrainConfig) -> bool:
    """Whether the checkpoint already holds every step this run plans: `max_steps`, or with
    epochs (max_steps -1) the step count HF planned for the same number of epochs."""
    state = trainer_state(checkpoint) if checkpoint is not None else None
    if not state:
        return False
    if config.max_steps > 0:
        planned = config.max_steps
    elif state.get("num_train_epochs") == config.num_train_epochs:
        planned = state.get("max_steps", 0)
    else:
        return False
    return 0 < planned <= state["global_step"]


def restore_finished(trainer, checkpoint: Path) -> dict[str, Any]:
    """Load a finished checkpoint's weights and state into `trainer` without stepping; returns
    the metrics `_finish` records (the step count and where it came from)."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(str(checkpoint))  # HF's own loader (DeepSpeed-aware)
    trainer.state = TrainerState.load_from_json(str(checkpoint / STATE))
    step = trainer.state.global_step
    logger.info("train: %s already holds all %d steps; saving it as final/", checkpoint, step)
    return {"restored_from": checkpoint.name, "global_step": step}
