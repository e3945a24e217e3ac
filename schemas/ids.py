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


def model_revision(model: str | Path, *, revision: str | None = None) -> str:
    """`revision` when pinned; for a local folder, a stamp of its files (names, sizes, mtimes).

    The stamp is cheap (no hashing of gigabytes of weights) and changes when a model is rebuilt
    or retrained in place, so caches keyed on it (scoring shards, the reference pass, Prefect
    task caches) never reuse results of another model. A copied folder gets a new stamp, which
    only costs a recomputation. A hub id without a pinned revision is "unpinned".
    """
    if revision:
        return revision
    folder = Path(model)
    if not folder.is_dir():
        return "unpinned"
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return content_hash([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files])
