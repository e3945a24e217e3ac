"""The `INCOMPLETE` marker: a run folder is a finished build only once its marker is gone.

The pipeline writes `<run>/INCOMPLETE` as soon as it holds its run folder and removes it just
before it points `latest` at the folder, so a build that is cancelled (`serve` stopped with
Ctrl-C), fails, or is killed outright (SIGKILL, out of memory, power loss) leaves a folder that
says so, without anyone having had the chance to write anything at the end. `latest` is never
pointed at a marked folder (`refuse_incomplete`), so `prefsmith eval --run-dir .../latest` and
`inspect --against .../latest/pairs.parquet` read the last finished build. Running the folder
again with `prefsmith run --run-dir <folder>` resumes it and removes the marker when it succeeds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefsmith.schemas.errors import StageError

MARKER = "INCOMPLETE"


def marker(run_dir: str | Path) -> Path:
    return Path(run_dir) / MARKER


def mark_incomplete(run_dir: str | Path, *, reason: str = "the build has not finished") -> Path:
    """Write (or rewrite) the marker with who wrote it, when, and why."""
    path = marker(run_dir)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(
        f"{reason} (pid {os.getpid()}, {stamp}); this folder is not a finished build. "
        f"Resume it with `prefsmith run CONFIG --run-dir {Path(run_dir).resolve()}`\n"
    )
    return path


def clear_incomplete(run_dir: str | Path) -> None:
    marker(run_dir).unlink(missing_ok=True)


def is_incomplete(run_dir: str | Path) -> bool:
    return marker(run_dir).exists()


def refuse_incomplete(run_dir: str | Path) -> None:
    """StageError (one line) when `run_dir` is marked: what must not become `latest`."""
    if is_incomplete(run_dir):
        raise StageError(f"{run_dir} is marked {MARKER}: not pointing `latest` at it")
