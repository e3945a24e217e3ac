"""The errors a user sees: each one line, naming the field, the bad value and the fix."""

from __future__ import annotations


class PrefsmithError(Exception):
    """Base of errors the CLI prints as one line (no traceback) and exits with code 2."""


class ConfigError(PrefsmithError):
    """A config file or option is malformed: unknown key, wrong type, out of range."""


class SchemaError(PrefsmithError):
    """A table does not have the columns or types its schema declares."""


class InputError(PrefsmithError):
    """An input file cannot be used at all (missing, unreadable, unknown format)."""


class StageError(PrefsmithError):
    """A stage cannot go on (e.g. a model and tokenizer that do not match, NaN loss)."""
