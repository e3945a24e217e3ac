"""Kill trials: run a command, SIGKILL its whole process group at a moment drawn from a fixed
seed, and compare what a rerun leaves with an uninterrupted run.

A moment is measured from an *anchor*: the start of the command, or the first appearance of a
path (a stage's output folder, a checkpoint), so that start-up jitter on a busy machine does not
move the kill out of the work it is meant to interrupt. The window is what the uninterrupted run
spent after the same anchor; a trial kills at `anchor + u * window` with `u` drawn uniformly in
[low, high] by `random.Random(seed)`.

A run that exits before its moment (or before its anchor appears) was not killed: `Outcome.killed`
says so, so a harness race is never mistaken for a resume that works.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

POLL_S = 0.005
TEMPORARY_SUFFIXES = (".tmp", ".partial")
TEMPORARY_PREFIXES = (".latest.", "tmp-checkpoint")


@dataclass(frozen=True)
class Outcome:
    """How one run ended. Times are seconds from its start; `marks` holds when each watched
    path first appeared (absent: never); `files_at_kill` counts the files under the watched
    folder when the group died."""

    rc: int
    killed: bool
    total_s: float
    marks: dict[str, float]
    kill_s: float | None = None
    files_at_kill: int | None = None

    def window(self, since: str | None, until: str | None = None) -> float:
        """Seconds this (uninterrupted) run spent from mark `since` (None: its start) to mark
        `until` (None: its end)."""
        times = {None: 0.0, **self.marks}
        if since not in times or (until is not None and until not in times):
            raise AssertionError(f"the uninterrupted run never reached {since} / {until}")
        return (self.total_s if until is None else times[until]) - times[since]


def draw_fraction(seed: str, *, low: float = 0.1, high: float = 0.9) -> float:
    """The trial's point in the window, fixed by its seed (a string: stable across runs)."""
    return random.Random(seed).uniform(low, high)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_group(run, *, timeout_s: float = 10) -> None:
    """SIGKILL the group, reap its leader, and wait until no process of the group is left."""
    try:
        os.killpg(run.pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # every member had exited already
    run.wait()
    deadline = time.monotonic() + timeout_s
    while (left := group_members(run.pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes {left} of group {run.pgid} outlived the SIGKILL"


def _hit(mark: Path | Callable[[], bool]) -> bool:
    return mark.exists() if isinstance(mark, Path) else mark()


def drive(
    run,
    *,
    watch: Path,
    marks: dict[str, Path | Callable[[], bool]] | None = None,
    anchor: str | None = None,
    kill_after_s: float | None = None,
    timeout_s: float = 300,
) -> Outcome:
    """Wait for `run` (anything with pgid, poll(), wait()) to exit, noting when each of `marks`
    appears (a path, or a test such as "a temporary file exists"); with `kill_after_s`, kill
    its group that long after mark `anchor` (None: the start). `watch` is the folder whose
    files are counted at the kill."""
    start, seen = time.monotonic(), {}
    marks = marks or {}
    while (rc := run.poll()) is None:
        now = time.monotonic()
        seen.update(
            {name: now - start for name, m in marks.items() if name not in seen and _hit(m)}
        )
        since = 0.0 if anchor is None else seen.get(anchor)
        if kill_after_s is not None and since is not None and now - start >= since + kill_after_s:
            kill_group(run)
            files = sum(1 for p in watch.rglob("*") if p.is_file())
            return Outcome(run.returncode, True, now - start, seen, now - start, files)
        if now - start > timeout_s:
            kill_group(run)
            raise AssertionError(f"still running after {timeout_s} s")
        time.sleep(POLL_S)
    now = time.monotonic()
    seen.update({name: now - start for name, m in marks.items() if name not in seen and _hit(m)})
    return Outcome(rc, False, now - start, seen)


def leftover_temporaries(root: Path) -> list[Path]:
    """Temporary files an interrupted write leaves (atomic writes, the `latest` swap, HF's
    temporary checkpoints); lock files are not among them (a lock is the flock, not the file)."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.name.endswith(TEMPORARY_SUFFIXES) or path.name.startswith(TEMPORARY_PREFIXES)
    )


def table_difference(got: pa.Table, want: pa.Table, *, key: str) -> str | None:
    """None if the tables are equal (rows sorted by `key`); else what differs, with the largest
    absolute difference of each differing float column."""
    got, want = got.sort_by(key), want.sort_by(key)
    if got.equals(want):
        return None
    if got.num_rows != want.num_rows or got.schema != want.schema:
        return f"{got.num_rows} rows {got.schema.names} vs {want.num_rows} rows {want.schema.names}"
    parts = []
    for name in want.schema.names:
        a, b = got[name], want[name]
        if a.equals(b):
            continue
        if pa.types.is_floating(a.type):
            worst = max(abs(x - y) for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True))
            parts.append(f"{name}: max |diff| {worst:.3g}")
        else:
            parts.append(f"{name}: values differ")
    return "; ".join(parts)
