"""The stage commands' config and preflight: a stage's section of a YAML (`stage_config`), and what `prefsmith validate` checks for a pipeline, checked for
one stage's own options before the stage starts (prefsmith.flows.preflight's checks, reused).

Without it a wrong `--model` path ends in transformers' "Repo id must be in the form..."
traceback, `-o` naming a file in a FileExistsError, and a tokenizer that does not belong to its
model passes generate silently. Each problem is one line (PreflightError), exit code 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prefsmith.flows.preflight import PreflightError, model_folder_problems, writable_problems
from prefsmith.schemas.config_base import StrictModel, parse_config, read_yaml

M = TypeVar("M", bound=StrictModel)


def is_local(model: str) -> bool:
    """Whether `model` names a folder on disk rather than a hub id (`org/name`): it exists, or
    it is spelled as a path (a hub id never starts with '/', '.' or '~')."""
    return Path(model).expanduser().exists() or model.startswith(("/", ".", "~"))


def stage_checks(*, out: Path | None = None, models: tuple[str | None, ...] = ()) -> None:
    """Raise PreflightError naming every problem: `out` cannot hold outputs, or a local model
    folder lacks config, tokenizer or weights, or its tokenizer has more ids than the model."""
    problems = writable_problems(Path(out)) if out is not None else []
    for model in models:
        if model and is_local(model):
            problems += model_folder_problems(Path(model).expanduser())
    if problems:
        raise PreflightError(list(dict.fromkeys(problems)))


def parquet_arguments(command: Callable, *names: str) -> Callable:
    """`command` with its Parquet inputs (the keyword arguments `names`) checked first: a file,
    or every `*.parquet` of a shard folder, must be whole Parquet (one line, not pyarrow's)."""
    from prefsmith.schemas.parquet_files import parquet_schema

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        for name in names:
            path = kwargs.get(name)
            files = sorted(Path(path).glob("*.parquet")) if path and Path(path).is_dir() else []
            for file in files or ([Path(path)] if path and Path(path).is_file() else []):
                parquet_schema(file, what=f"{name.replace('_', ' ')} table", fix=FIX)
        return command(*args, **kwargs)

    return wrapper


FIX = "give a table a prefsmith stage wrote (or convert the file with `prefsmith import`)"


def named_entry(entries: list, name: str | None, *, where: str) -> dict:
    """The entry of a config list (`score:` with several scorers) whose `name` is `name`, or
    ConfigError naming the choices."""
    from prefsmith.schemas.errors import ConfigError

    named = {e.get("name"): e for e in entries if isinstance(e, dict)}
    if name not in named:
        choices = ", ".join(str(n) for n in named)
        raise ConfigError(f"{where} lists several ({choices}); choose one with --scorer NAME")
    return dict(named[name])


def stage_config(
    model: type[M], config_path: Path | None, section: str, /, pick: str | None = None, **overrides
) -> M:
    """Load `section` of a YAML file (or the whole file if it has no such key; the entry named
    `pick` where the section is a list), then overrides."""
    data = read_yaml(config_path) if config_path else {}
    if isinstance(data.get(section), list):
        data = named_entry(data[section], pick, where=f"{config_path}: {section}")
    elif section in data and isinstance(data[section], dict):
        data = data[section]
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(model, data, section=section)
