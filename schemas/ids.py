"""Stable ids: the same content always gets the same id, on any machine and in any order."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ID_HEX_CHARS = 16  # 64 bits: collisions are negligible below ~10^8 rows per table


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """NFC-normalize, strip surrounding whitespace and lower-case roles.

    Two prompts that differ only by these are the same prompt (and are merged).
    """
    return [
        {
            "role": str(m["role"]).strip().lower(),
            "content": unicodedata.normalize("NFC", str(m["content"])).strip(),
        }
        for m in messages
    ]


def content_hash(value: Any) -> str:
    """Hex digest of the canonical JSON of `value` (sorted keys, no whitespace)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def prompt_id(messages: Iterable[Mapping[str, Any]]) -> str:
    """Stable id of a prompt: the hash of its normalized messages."""
    return content_hash(normalize_messages(messages))


def response_id(prompt_id_: str, sample_idx: int) -> str:
    return f"{prompt_id_}-{sample_idx}"


def pair_id(chosen_response_id: str, rejected_response_id: str) -> str:
    return content_hash([chosen_response_id, rejected_response_id])


def file_sha256(path: str, *, chunk_bytes: int = 1 << 20) -> str:
    """Full sha256 of a file's bytes (for manifests and cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


# The files that define a model: weights, configs, tokenizer, chat template, remote code. Run
# records beside the weights (HF's pickled training_args.bin, trainer state, prefsmith's summary
# with wall times) change on every run without changing the model, so they are not hashed.
MODEL_SUFFIXES = frozenset(
    (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".json", ".jinja")
    + (".model", ".txt", ".tiktoken", ".py")
)
RUN_RECORDS = frozenset(("training_args.bin", "trainer_state.json", "prefsmith_train.json"))
# (path, device, inode, size, mtime_ns, ctime_ns) -> sha256: a stage process asks for the same
# model's revision several times (cache keys, row stamps); an 8B checkpoint is ~16 GB to read.
_FILE_HASHES: dict[tuple, str] = {}


def model_files(folder: str | Path) -> list[Path]:
    """The files of a local model folder that define the model (MODEL_SUFFIXES, no run records)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.suffix in MODEL_SUFFIXES
        and p.name not in RUN_RECORDS
    )


def cached_file_sha256(path: Path) -> str:
    """file_sha256, remembered in this process while the file's inode, size and times stay."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size)
    key += (stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_sha256(str(path), chunk_bytes=8 << 20)
    return _FILE_HASHES[key]


def model_file_hashes(folder: str | Path) -> dict[str, str]:
    """{file name: sha256} of the files that define the model in `folder` (model_files)."""
    return {p.name: cached_file_sha256(p) for p in model_files(folder)}


def model_revision(model: str | Path, *, revision: str | None = None) -> str:
    """`revision` when pinned; for a local folder, a hash of the content of its model files.

    Content, not file times: a checkpoint re-saved with the same bytes (or copied, or touched)
    keeps its revision, so caches keyed on it (scoring shards, the reference pass, the tuned
    generator's config hash, Prefect task caches) stay valid, and one changed byte makes a new
    revision. Hashing streams each file once per process (cached_file_sha256; ~1.7 GB/s here).
    A hub id without a pinned revision is "unpinned".
    """
    if revision:
        return revision
    folder = Path(model)
    if not folder.is_dir():
        return "unpinned"
    return content_hash(sorted(model_file_hashes(folder).items()))
