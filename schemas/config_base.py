"""Strict pydantic configs and the one-line error a user sees when one is wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.ids import content_hash

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def config_hash(self) -> str:
        """Stable hash of the config's values (cache keys, `gen_config_hash`)."""
        return content_hash(self.model_dump(mode="json"))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation can hold (through Optional, unions, lists, dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = get_args(annotation)
    if get_origin(annotation) is dict:
        args = args[1:]
    return [model for arg in args for model in _models_in(arg)]


def _is_tag(model: type[BaseModel], part: str) -> bool:
    """Whether `part` is the `name` tag pydantic puts in the location of a discriminated union."""
    name = model.model_fields.get("name")
    return name is not None and part in get_args(name.annotation)


def field_names_at(model: type[BaseModel], location: tuple) -> list[str]:
    """The keys the config `model` accepts at `location` (a pydantic error location's parent)."""
    models = [model]
    for part in location:
        if isinstance(part, int):
            continue  # a list index: `_models_in` already looks inside lists
        holding = [m for m in models if part in m.model_fields]
        if holding:
            models = [n for m in holding for n in _models_in(m.model_fields[part].annotation)]
        else:
            models = [m for m in models if _is_tag(m, part)]
    return sorted({name for m in models for name in m.model_fields})


def did_you_mean(key: Any, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `known` to a misspelt `key`, else ''."""
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def error_lines(
    error: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None
) -> list[str]:
    """One `field: message (got value)` line per problem; an unknown key gets a "did you mean"
    over the keys `model` accepts at that place."""
    lines = []
    for item in error.errors():
        location = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        if item["type"] == "extra_forbidden":
            known = field_names_at(model, item["loc"][:-1]) if model and item["loc"] else []
            hint = did_you_mean(item["loc"][-1], known) if known else ""
            lines.append(f"{location}: unknown key{hint}")
            continue
        got = item.get("input")
        # A validator that already names the value (`got 'zero4'`) must not get it twice.
        named = isinstance(got, dict) or repr(got) in item["msg"]
        shown = "" if named else f" (got {got!r})"
        lines.append(f"{location or '<root>'}: {item['msg']}{shown}")
    return lines


def describe_errors(
    error: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """Every problem of a ValidationError on one line (`error_lines` joined by `; `)."""
    return "; ".join(error_lines(error, prefix=prefix, model=model))


def parse_config(model: type[M], data: dict[str, Any] | None, *, section: str = "") -> M:
    """Validate `data` into `model`, raising a one-line `ConfigError` naming every bad field."""
    try:
        return model.model_validate(data or {})
    except ValidationError as error:
        where = f" [{section}]" if section else ""
        raise ConfigError(
            f"invalid config{where}: {describe_errors(error, prefix=section, model=model)}"
        ) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping, with a one-line error for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(model: type[M], path: str | Path, *, section: str = "") -> M:
    """Read a YAML file (optionally one top-level `section` of it) into `model`."""
    data = read_yaml(path)
    if section:
        data = data.get(section, {})
    return parse_config(model, data, section=section)
