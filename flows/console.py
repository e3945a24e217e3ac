"""What the terminal shows: prefsmith's own lines by default, everything with `-v`.

By default the terminal gets the lines of prefsmith's loggers (stage counts, outputs, warnings
about the data) and the warnings and errors of every other library; Prefect's per-task INFO lines
are off. A stage that runs in its own process (prefsmith.flows.isolate) writes everything its
libraries print (vLLM's start-up, transformers' progress bars, torch's FutureWarnings) to
`<out_dir>/logs/<stage>.log`, and only its prefsmith lines reach the terminal; when it fails, the
error names that log and quotes its last line. Prefect's own run records (state lines, and the
tracebacks it logs for every failed task and flow, three copies deep for a nested flow) go to
`<run>/logs/prefect.log` and the Prefect API while a command runs flows quietly
(`prefect_runs_to_log`): a failed `prefsmith run` shows its one `error:` line. `prefsmith -v`
restores every line everywhere.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

VERBOSE_ENV = "PREFSMITH_VERBOSE"  # read by stage processes: they inherit the environment
QUIETED_VLLM_ENV = "PREFSMITH_QUIETED_VLLM"  # set when `configure` lowered vLLM's level
OURS = "prefsmith"
SHORT = "%(message)s"
LONG = "%(asctime)s %(levelname)s %(name)s: %(message)s"


PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
PENDING_MAX = 10_000  # records kept before the run folder exists (a run that never got one)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def is_quiet() -> bool:
    """Whether `configure(verbose=False)` ran in this process or its parent (the CLI's default);
    library callers and tests that never configured keep Prefect's records where they were."""
    return os.environ.get(VERBOSE_ENV) == "0"


def configure(*, verbose: bool) -> None:
    """Set up this process's logging (the CLI calls it before any engine is imported)."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if not verbose:  # before Prefect and vLLM are imported: they read their levels once
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # transformers' and datasets' bars ("Loading weights"): frames in a pipe; ours replaces them
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "VLLM_LOGGING_LEVEL" not in os.environ:  # a stage run in this process (CLI commands)
            os.environ["VLLM_LOGGING_LEVEL"] = "ERROR"
            os.environ[QUIETED_VLLM_ENV] = "1"
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(vllm|torch)\b")
    route(console=sys.stderr, everything=sys.stderr, verbose=verbose)
    for noisy in ("httpx", "httpcore"):  # every Prefect API call would be an INFO line
        logging.getLogger(noisy).setLevel(logging.WARNING)


def route(*, console: TextIO, everything: TextIO, verbose: bool) -> None:
    """prefsmith's INFO lines to `console`; other libraries' lines to `everything` (their
    warnings only, unless verbose)."""
    root, ours = logging.getLogger(), logging.getLogger(OURS)
    for handler in list(root.handlers) + list(ours.handlers):
        handler.close()
    root.handlers.clear()
    ours.handlers.clear()
    other = logging.StreamHandler(everything)
    other.setFormatter(logging.Formatter(LONG))
    root.addHandler(other)
    root.setLevel(logging.INFO if verbose or everything is not console else logging.WARNING)
    ours.setLevel(logging.INFO)
    if not verbose:
        mine = logging.StreamHandler(console)
        mine.setFormatter(logging.Formatter(SHORT))
        ours.addHandler(mine)
        ours.propagate = everything is not console  # a log file keeps our lines too
    else:
        ours.propagate = True


def stage_log(out_dir: Path, stage: str) -> Path:
    """Where a stage process's own output goes when the terminal is quiet."""
    return Path(out_dir) / "logs" / f"{stage}.log"


def quiet_stage_process(log: Path) -> None:
    """In a stage process: file descriptors 1 and 2 (what vLLM, torch and C code print) go to
    `log`; prefsmith's lines still go to the terminal through a copy of the old stderr."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    handle = open(log, "a", buffering=1)  # kept open for the process's lifetime
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    if os.environ.pop(QUIETED_VLLM_ENV, None):  # the log file keeps vLLM's INFO lines
        os.environ["VLLM_LOGGING_LEVEL"] = "INFO"
    route(console=terminal, everything=sys.stderr, verbose=False)


def last_line(log: Path | None) -> str:
    """The last non-empty line of a stage log, for an error message; '' if there is none."""
    if log is None or not log.is_file():
        return ""
    with open(log, "rb") as handle:
        handle.seek(max(0, log.stat().st_size - 4096))
        lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    text = next((line for line in reversed(lines) if line), "")
    return text[-300:]


class RunLog(logging.Handler):
    """Prefect's run records: held until the run folder is known (`log_runs_in`), then appended
    to `<run>/logs/prefect.log`; the next run folder of the process takes over."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LONG))
        self.pending: list[logging.LogRecord] = []
        self.stream: TextIO | None = None
        self.active = False  # attached to Prefect's run loggers now

    def open(self, path: Path) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.stream = open(path, "a", buffering=1)
            pending, self.pending = self.pending, []
        finally:
            self.release()
        for record in pending:
            self.emit(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            if len(self.pending) < PENDING_MAX:
                self.pending.append(record)
            return
        try:
            self.stream.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream, self.pending = None, []
        super().close()


RUN_LOG = RunLog()


def send_prefect_runs_to_log() -> Callable[[], None]:
    """Quiet mode: Prefect's flow- and task-run loggers write to RUN_LOG instead of the terminal
    (their API handler stays, so the Prefect UI keeps every line). Returns the undo; a no-op
    unless quiet."""
    if not is_quiet():
        return lambda: None
    loggers = [logging.getLogger(name) for name in PREFECT_RUN_LOGGERS]
    saved = [one.propagate for one in loggers]
    for one in loggers:
        one.addHandler(RUN_LOG)
        one.propagate = False
    RUN_LOG.active = True

    def undo() -> None:
        for one, propagate in zip(loggers, saved, strict=True):
            one.removeHandler(RUN_LOG)
            one.propagate = propagate
        RUN_LOG.close()
        RUN_LOG.active = False

    return undo


@contextmanager
def prefect_runs_to_log() -> Iterator[None]:
    """For the block (a CLI command that runs flows): send_prefect_runs_to_log, then undone.
    Call it after Prefect is imported: Prefect's logging set-up resets these loggers."""
    undo = send_prefect_runs_to_log()
    try:
        yield
    finally:
        undo()


def log_runs_in(run_dir: str | Path) -> Path:
    """Where Prefect's run records go from now on: `<run_dir>/logs/prefect.log` (written only
    while `prefect_runs_to_log` is active)."""
    path = stage_log(Path(run_dir), "prefect")
    if RUN_LOG.active:
        RUN_LOG.open(path)
    return path
