"""Advisory locks on output folders and run folders, so two writers never share one.

`folder_lock(folder, name)` holds an exclusive `fcntl.flock` on `folder/.prefsmith-<name>.lock`
for the time of a `with` block: a stage's lock is named after the stage (two `generate` into one
folder exclude each other, a `generate` and a `score` into one run folder do not), the pipeline's
after the run (`run`). The holder writes who it is into the lock file (pid, host, command, since
when, UTC); a second writer waits up to `wait_s` seconds (default `PREFSMITH_LOCK_WAIT_S`, else 0)
and then stops with one line naming the holder (`FolderLocked`, exit code 2).

The kernel drops a flock when its holder's file is closed, so a holder killed with SIGKILL
releases it at once: a lock file left behind means nothing by itself. Within one process the lock
is re-entrant per thread: the stage runner holds it and the stage function takes it again, for the
callers (the CLI) that call a stage directly. flock works on local file systems and on NFS ≥ v4.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefsmith.schemas.errors import StageError

WAIT_ENV = "PREFSMITH_LOCK_WAIT_S"
POLL_S = 0.2
WINDOW_WAIT_S = 60.0


class FolderLocked(StageError):
    """Another process writes into this folder now (the message names it)."""


@dataclass
class _Held:
    """One lock file held by this process: its descriptor, the owning thread, the depth."""

    fd: int
    owner: int
    depth: int


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()  # guards _HELD; one thread of this process holds a given lock


def lock_path(folder: str | Path, name: str) -> Path:
    """The lock file of `name` in `folder` (a dot file: no table reader or model hash sees it)."""
    return Path(folder) / f".prefsmith-{name}.lock"


def default_wait_s() -> float:
    """Seconds a second writer waits: `PREFSMITH_LOCK_WAIT_S`, else 0 (stop at once)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        raise StageError(f"{WAIT_ENV}: expected seconds, got {raw!r}") from None


def holder_line(path: Path) -> str:
    """Who holds `path`, from what it wrote there: 'pid P on H since T: COMMAND'."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (it has not written its name yet)"
    return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"


def _record(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _acquire(path: Path, *, wait_s: float) -> int:
    """An open descriptor of `path` with the flock taken, or FolderLocked after `wait_s`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _record(fd)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise FolderLocked(
                    f"{path.parent} is in use by {holder_line(path)} (lock {path.name}); "
                    f"wait for it to end, or set {WAIT_ENV}=SECONDS to wait"
                ) from None
            time.sleep(POLL_S)


def _enter(path: Path, *, wait_s: float) -> bool:
    """Take the lock (True) or, held by this thread already, count one more level (False)."""
    key, me = str(path.resolve()), threading.get_ident()
    deadline = time.monotonic() + wait_s
    while True:
        with _GUARD:
            held = _HELD.get(key)
            if held is None:
                _HELD[key] = _Held(-1, me, 1)  # reserved while this thread takes the flock
                break
            if held.owner == me:
                held.depth += 1
                return False
        if time.monotonic() >= deadline:  # another thread of this process writes there
            raise FolderLocked(f"{path.parent} is in use by another thread of pid {os.getpid()}")
        time.sleep(POLL_S)
    try:
        fd = _acquire(path, wait_s=max(0.0, deadline - time.monotonic()))
    except BaseException:
        with _GUARD:
            del _HELD[key]
        raise
    with _GUARD:
        _HELD[key].fd = fd
    return True


def _leave(path: Path) -> None:
    key = str(path.resolve())
    with _GUARD:
        held = _HELD[key]
        held.depth -= 1
        if held.depth:
            return
        del _HELD[key]
    os.ftruncate(held.fd, 0)  # an idle lock file names nobody
    os.close(held.fd)  # closing drops the flock


@contextmanager
def folder_lock(folder: str | Path, name: str, *, wait_s: float | None = None) -> Iterator[Path]:
    """Hold the exclusive lock `name` on `folder` for the `with` block (module docstring).

    `wait_s`: how long a second writer waits before FolderLocked (default: default_wait_s()).
    Yields the lock file's path.
    """
    path = lock_path(folder, name)
    _enter(path, wait_s=default_wait_s() if wait_s is None else wait_s)
    try:
        yield path
    finally:
        _leave(path)


def window_wait_s() -> float:
    """How long a shard part waits for a read-then-write window (plan check, stale-shard
    cleanup): other parts hold it for milliseconds, a whole stage for its run."""
    return max(default_wait_s(), WINDOW_WAIT_S)
