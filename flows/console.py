"""What the terminal shows: prefsmith's own lines by default, everything with `-v`.

By default the terminal gets the lines of prefsmith's loggers (stage counts, outputs, warnings
about the data) and the warnings and errors of every other library; Prefect's per-task INFO lines
are off. A stage that runs in its own process (prefsmith.flows.isolate) writes everything its
libraries print (vLLM's start-up, transformers' progress bars, torch's FutureWarnings) to
`<out_dir>/logs/<stage>.log`, and only its prefsmith lines reach the terminal; when it fails, the
error names that log and quotes its last line. `prefsmith -v` restores every line everywhere.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TextIO

VERBOSE_ENV = "PREFSMITH_VERBOSE"  # read by stage processes: they inherit the environment
QUIETED_VLLM_ENV = "PREFSMITH_QUIETED_VLLM"  # set when `configure` lowered vLLM's level
OURS = "prefsmith"
SHORT = "%(message)s"
LONG = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def configure(*, verbose: bool) -> None:
    """Set up this process's logging (the CLI calls it before any engine is imported)."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if not verbose:  # before Prefect and vLLM are imported: they read their levels once
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
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
