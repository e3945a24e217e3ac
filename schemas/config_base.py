"""Strict pydantic configs and the one-line error a user sees when one is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

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


def describe_errors(error: ValidationError, *, prefix: str = "") -> str:
    """Every problem of a ValidationError on one line: `field: message (got value)`."""
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        if item["type"] == "extra_forbidden":
            parts.append(f"{location}: unknown key")
            continue
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{location or '<root>'}: {item['msg']}{shown}")
    return "; ".join(parts)


def parse_config(model: type[M], data: dict[str, Any] | None, *, section: str = "") -> M:
    """Validate `data` into `model`, raising a one-line `ConfigError` naming every bad field."""
    try:
        return model.model_validate(data or {})
    except ValidationError as error:
        where = f" [{section}]" if section else ""
        raise ConfigError(
            f"invalid config{where}: {describe_errors(error, prefix=section)}"
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
