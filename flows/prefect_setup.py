"""How every prefsmith command talks to Prefect: one set of defaults, one line when no server.

Prefect's temporary server (started by the first flow call of a process when no
`PREFECT_API_URL` is set) gets 20 s to answer by default; a busy 2-core machine needed 42 s, and
the failure was a 71-line traceback. `use_prefect_defaults` raises that wait for every command
(the CLI calls it before Prefect is imported; Prefect reads its settings once, at import), and
`prefect_server_errors` turns "the server never answered" into one line that names the fix. A
value the user set in the environment always wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefsmith.schemas.errors import ServerUnavailable

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
STARTUP_TIMEOUT_S = 120  # measured: 42 s on a loaded 2-core machine; 20 s is Prefect's default
DEFAULTS = {
    STARTUP_TIMEOUT_ENV: str(STARTUP_TIMEOUT_S),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # telemetry errors and `database is locked`
}
# What Prefect 3.7.7 raises (prefect/server/api/server.py, prefect/client/orchestration).
NO_EPHEMERAL = "Timed out while attempting to connect to ephemeral Prefect API server"
NO_API = "Failed to reach API at"


def use_prefect_defaults() -> None:
    """Set prefsmith's Prefect defaults in this process's environment (inherited by the stage
    and flow processes it starts) where the user has not set them."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = os.environ.get("PREFECT_HOME")
    if home:  # Prefect 3.7.7 writes the memo store under ~/.prefect whatever PREFECT_HOME says
        os.environ.setdefault("PREFECT_MEMO_STORE_PATH", str(Path(home) / "memo_store.toml"))


def server_problem(error: BaseException) -> str | None:
    """The one-line message (with the fix) for a Prefect server that did not answer, or None
    when `error` is something else."""
    text = str(error)
    if isinstance(error, RuntimeError) and text.startswith(NO_EPHEMERAL):
        wait = os.environ.get(STARTUP_TIMEOUT_ENV, "20")
        return (
            f"Prefect's temporary server did not start within {wait} s "
            f"({STARTUP_TIMEOUT_ENV}); set it higher, e.g. `export {STARTUP_TIMEOUT_ENV}=300`, "
            "or start a server once with `prefect server start --host 127.0.0.1` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    if isinstance(error, RuntimeError) and text.startswith(NO_API):
        url = text.removeprefix(NO_API).strip()
        return (
            f"no Prefect server answers at {url} (PREFECT_API_URL): start it with "
            "`prefect server start --host 127.0.0.1`, or `unset PREFECT_API_URL` to use "
            "a temporary one"
        )
    return None


@contextmanager
def prefect_server_errors() -> Iterator[None]:
    """Within the block, a Prefect server that never answered raises ServerUnavailable with one
    line (the CLI prints it and exits with code 2); every other error passes unchanged."""
    try:
        yield
    except RuntimeError as error:
        problem = server_problem(error)
        if problem is None:
            raise
        raise ServerUnavailable(problem) from None
