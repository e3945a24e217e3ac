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


class TransientError(PrefsmithError):
    """A failure that may pass when the stage runs again (the only kind a flow retries)."""


class StageProcessDied(TransientError):
    """A stage's own process ended without a result: killed by a signal (out of memory, SIGKILL)."""


class ServerUnavailable(TransientError):
    """No server answered a request after every attempt (connection refused, timeouts, 5xx)."""


# Errors from the operating system that running again does not change: a missing or unreadable
# path stays missing. Any other OSError (connection reset, timeout, EIO) may pass.
PERMANENT_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a library's may span several)."""
    return " ".join(str(error).split())


def is_transient(error: BaseException) -> bool:
    """Whether a retry may succeed: a TransientError, or an OSError on I/O that is not about a
    path. Every other PrefsmithError (bad config, bad input, NaN loss) fails the same way again."""
    if isinstance(error, TransientError):
        return True
    if isinstance(error, PrefsmithError):
        return False
    return isinstance(error, OSError) and not isinstance(error, PERMANENT_OS_ERRORS)


class ConfigDeprecation(FutureWarning):
    """A config spelling that still works and will stop working in a named release.

    A FutureWarning, not a DeprecationWarning: Python shows it by default, and it is meant for the
    person who wrote the config, not for the developers of code that imports prefsmith."""
