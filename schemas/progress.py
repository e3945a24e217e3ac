"""A stage's progress: a bar in a terminal, a periodic one-line count in pipes and log files.

tqdm alone shows nothing when stderr is not a terminal (`disable=None`) and, forced on, writes
carriage-return frames that turn a log file into one endless line. Here a terminal gets tqdm's
bar; anything else gets a line through the `prefsmith` logger at most every
`PREFSMITH_PROGRESS_S` seconds (default 10) plus one final line after them, for example

    generate: 128/403 prompts (32%), 12.1 prompt/s, eta 0:00:25

The stream is the one prefsmith's own lines go to (in an isolated stage process that is the
terminal, while its stderr is the stage log). Pure Python (stdlib and tqdm) so that every stage
folder may import it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

INTERVAL_ENV = "PREFSMITH_PROGRESS_S"
DEFAULT_INTERVAL_S = 10.0
LOG = logging.getLogger("prefsmith.progress")
T = TypeVar("T")


def interval_s() -> float:
    """Seconds between progress lines (`PREFSMITH_PROGRESS_S`; a bad value keeps the default)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL_S


def terminal_stream() -> TextIO:
    """Where prefsmith's lines go: its logger's first stream handler, else stderr."""
    for handler in logging.getLogger("prefsmith").handlers:
        if isinstance(handler, logging.StreamHandler):
            return handler.stream
    return sys.stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream
        return False


def clock(seconds: float) -> str:
    """`h:mm:ss`, the eta format."""
    whole = int(max(0.0, seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def progress_line(desc: str, *, done: int, total: int | None, unit: str, elapsed: float) -> str:
    """One progress line: count, percent, rate and eta (the last three only when known)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    units = unit + ("es" if unit.endswith(("s", "ch", "x")) else "s")  # batch -> batches
    if not total:
        return f"{desc}: {done} {units}, {rate:.1f} {unit}/s"
    eta = f", eta {clock((total - done) / rate)}" if rate > 0 and done < total else ""
    return f"{desc}: {done}/{total} {units} ({done / total:.0%}), {rate:.1f} {unit}/s{eta}"


class Progress:
    """`update(n)` as tqdm's; a context manager. In a terminal it is tqdm, else log lines."""

    def __init__(self, *, total: int | None, desc: str, unit: str, leave: bool = True) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done, self.start = 0, time.monotonic()
        self.last, self.logged = self.start, False
        self.every = interval_s()
        self.lock = threading.Lock()  # shards land from worker threads (the OpenAI backend)
        stream = terminal_stream()
        self.bar = None
        if _isatty(stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=stream)

    def update(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            if self.bar is not None:
                self.bar.update(n)
                return
            now = time.monotonic()
            due = n and now - self.last >= self.every
            if due and (self.total is None or self.done < self.total):
                self.last, self.logged = now, True
                LOG.info(self.line(now))

    def line(self, now: float) -> str:
        return progress_line(
            self.desc, done=self.done, total=self.total, unit=self.unit, elapsed=now - self.start
        )

    def close(self) -> None:
        """The bar closes; in a pipe, one final line after periodic ones (a stage shorter than
        the interval logs none: its own count line follows anyway)."""
        if self.bar is not None:
            self.bar.close()
        elif self.logged:
            LOG.info(self.line(time.monotonic()))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], *, desc: str, unit: str, total: int | None = None) -> Iterator[T]:
    """Iterate `items`, counting one per item (tqdm's iterator form)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total=total, desc=desc, unit=unit, leave=False) as bar:
        for item in items:
            yield item
            bar.update(1)
