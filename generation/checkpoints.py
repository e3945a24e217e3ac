"""Adapter checkpoints (a LoRA run's `final/`) → the plain model folder that generation, the KL
estimate and the next round load.

An adapter checkpoint holds `adapter_config.json`, `adapter_model.safetensors`, the tokenizer
and the base's `generation_config.json` (its end-of-turn ids); `adapter_config.json`'s
`base_model_name_or_path` names the base folder, which must stay where it was trained.
`merged_folder` writes `<checkpoint>/merged/`, base + adapter merged into ordinary weights, once:
its stamp records the adapter's and the base's revisions and the merged files' hashes, and a
merged folder whose stamp or files disagree is rebuilt (written beside, then renamed in).

Why merge for inference: vLLM's LoRA support differs between its CPU and GPU builds, and the KL
estimate and the next round want one model folder; the merged model's greedy tokens equal base +
adapter (tests/training/test_adapters.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import InputError
from prefsmith.schemas.ids import model_file_hashes, model_revision

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
MERGED = "merged"
STAMP = "prefsmith_merged.json"


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def base_folder(adapter_folder: Path) -> Path:
    """The base model folder an adapter was trained on (its `base_model_name_or_path`)."""
    config_file = Path(adapter_folder) / ADAPTER_CONFIG
    try:
        base = json.loads(config_file.read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"{config_file}: not a peft adapter config with base_model_name_or_path ({error})"
        ) from error
    if not Path(base).is_dir():
        raise InputError(
            f"{config_file}: base_model_name_or_path {base!r} is not a folder here; put the base "
            "model back there or set base_model_name_or_path to where it is now"
        )
    return Path(base)


def _stamp(adapter_folder: Path, base: Path) -> dict[str, Any]:
    return {
        "adapter_revision": model_revision(adapter_folder),
        "base_revision": model_revision(base),
    }


def _intact(merged: Path, stamp: dict[str, Any]) -> bool:
    """Whether `merged` was made from this adapter and base and its files are the recorded ones."""
    try:
        recorded = json.loads((merged / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = {k: recorded.get(k) for k in stamp} == stamp
    files = {k: v for k, v in model_file_hashes(merged).items() if k != STAMP}
    return same and recorded.get("model_files") == files


def merged_folder(adapter_folder: str | Path, *, trust_remote_code: bool = False) -> Path:
    """`adapter_folder/merged/`: base + adapter merged into plain weights (made once, verified
    against its stamp on every later call; written beside and renamed in, never half-written)."""
    adapter_folder = Path(adapter_folder)
    base = base_folder(adapter_folder)
    merged, stamp = adapter_folder / MERGED, _stamp(adapter_folder, base)
    if _intact(merged, stamp):
        return merged
    staging = adapter_folder / f".{MERGED}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    _write_merged(adapter_folder, staging, trust_remote_code=trust_remote_code)
    files = model_file_hashes(staging)
    (staging / STAMP).write_text(json.dumps({**stamp, "model_files": files}, indent=2))
    shutil.rmtree(merged, ignore_errors=True)
    os.replace(staging, merged)
    logger.info("adapter: merged %s into %s", adapter_folder, merged)
    return merged


def _write_merged(adapter_folder: Path, out: Path, *, trust_remote_code: bool) -> None:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    model = AutoPeftModelForCausalLM.from_pretrained(
        str(adapter_folder), dtype="auto", trust_remote_code=trust_remote_code
    )
    model.merge_and_unload().save_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(
        str(adapter_folder), trust_remote_code=trust_remote_code
    )
    tokenizer.save_pretrained(str(out))


def inference_folder(model: str, *, trust_remote_code: bool = False) -> str:
    """The folder to load for generation or log-probs: the merged model of an adapter
    checkpoint, any other folder (or hub id) as given."""
    if not is_adapter_folder(model):
        return model
    return str(merged_folder(model, trust_remote_code=trust_remote_code))
