"""`generate.model: latest`: a build samples with the newest good checkpoint of its own pipeline,
so a nightly schedule becomes a slow online loop (tonight's pairs are on the policy of last
night's build). Resolved when the build starts, from `<out_dir>/<name>/latest` (which moves only
when a build succeeds, prefsmith.flows.pipeline.point_latest): that build's last round's
checkpoint with `rounds:`, else its `checkpoint/final`. Before any build has a checkpoint, the
pipeline's `train.policy` (the base) samples. The resolution is written to the build's
`generator.json` and is the generate stage's `model` in its manifest; the evaluation's base is
the same resolved model (tonight's policy against what the last build deployed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.ids import model_revision
from prefsmith.schemas.io import write_text
from prefsmith.schemas.pipeline_config import PipelineConfig

logger = logging.getLogger(__name__)

LATEST = "latest"
RECORD = "generator.json"


def build_checkpoint(build: Path) -> Path | None:
    """The final checkpoint a finished build left: its last round's, else `checkpoint/final`
    (when its manifest is there: a checkpoint the train stage finished)."""
    from prefsmith.inspection.rounds_view import ROUND_FOLDER

    rounds = sorted(
        (int(m.group(1)), folder)
        for folder in (build.iterdir() if build.is_dir() else ())
        if (m := ROUND_FOLDER.match(folder.name)) and (folder / "round.json").is_file()
    )
    if rounds:
        return Path(json.loads((rounds[-1][1] / "round.json").read_text())["checkpoint"])
    final = build / "checkpoint" / "final"
    return final if (build / "checkpoint" / "final.manifest.json").is_file() else None


def resolve_latest(config: PipelineConfig) -> tuple[PipelineConfig, dict[str, Any] | None]:
    """`config` with `generate.model: latest` replaced by the model it names now, and the record
    of that resolution (None when generate.model is a folder)."""
    if config.generate.model != LATEST:
        return config, None
    link = Path(config.out_dir) / config.name / LATEST
    checkpoint = build_checkpoint(link.resolve()) if link.is_symlink() else None
    if checkpoint is not None:
        model, source = str(checkpoint), f"checkpoint of build {link.resolve().name}"
    elif config.train is not None:
        model, source = config.train.policy, "train.policy: no build of this pipeline has one yet"
    else:
        raise ConfigError(
            f"generate.model: latest: no build under {link.parent} has a checkpoint yet and "
            "there is no train.policy to start from; name a model folder for the first build"
        )
    generate = config.generate.model_copy(update={"model": model, "revision": None})
    record = {"requested": LATEST, "model": model, "revision": model_revision(model)}
    record["source"] = source
    return config.model_copy(update={"generate": generate}), record


def record_generator(run_dir: Path, record: dict[str, Any]) -> Path:
    """`<run_dir>/generator.json`, and one line saying which model `latest` was."""
    logger.info("generate.model: latest → %s (%s)", record["model"], record["source"])
    return write_text(json.dumps(record, indent=2), run_dir / RECORD)
