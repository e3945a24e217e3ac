"""A warm `prefsmith` launcher for kill trials: one process imports torch, transformers, Prefect
and the stage modules once, then forks a fresh child per command, which runs the real Typer app
(`prefsmith.flows.cli.app`) with that command's arguments in its own process group.

Why: on a 2-core machine a `python -m prefsmith.flows.cli ...` spends 4-9 s importing before it
does any work, and a kill trial runs every command three to five times; forking after the imports
puts almost all of a run's time into the stage's own work, where the kills should land. A child
is killed exactly like a CLI process (SIGKILL to its process group); what it does after start-up
is the same code path. Fork is safe only without threads, so the launcher refuses to start if
the imports left any running.

Protocol (JSON lines): the launcher prints {"ready": true} once warm; each request
{"argv": [...], "log": PATH} is answered with {"pid": N} (the child's process group exists by
then) and, once the child has exited, {"pid": N, "rc": CODE} (negative: killed by that signal).
The child's environment is the launcher's: Prefect reads its settings at import time.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "transformers.trainer",
    "datasets",
    "safetensors.torch",
    "prefect",
    "prefsmith.flows.cli",
    "prefsmith.flows.pipeline",
    "prefsmith.generation.stage",
    "prefsmith.scoring.stage",
    "prefsmith.training.reference",
    "prefsmith.training.stage",
    "prefsmith.training.launch",
)


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _child(request: dict) -> None:
    """In the forked child: own process group, output to the log, then the CLI (never returns:
    the app ends with SystemExit, which unwinds to a normal interpreter exit)."""
    os.setpgid(0, 0)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    from prefsmith.flows.cli import app

    sys.argv = ["prefsmith", *request["argv"]]
    app(args=request["argv"], prog_name="prefsmith")
    raise SystemExit(0)


def serve() -> None:
    """The launcher's loop: one child at a time, reaped before the next request is read."""
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() != 1:
        raise SystemExit(f"warm_cli: {threading.enumerate()} running after imports; fork unsafe")
    _reply({"ready": True})
    while line := sys.stdin.readline():
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        try:  # set here too, so the group exists before the client can signal it
            os.setpgid(pid, pid)
        except (PermissionError, ProcessLookupError):
            pass  # the child already did it (or is gone)
        _reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _reply({"pid": pid, "rc": os.waitstatus_to_exitcode(status)})


class WarmCli:
    """The client side: start the launcher (own session), run commands through it, stop it."""

    def __init__(self, *, env: dict[str, str], log: Path, timeout_s: float = 180) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self._buffer = b""
        ready = self._read(timeout_s=timeout_s)
        if ready != {"ready": True}:
            raise RuntimeError(f"warm launcher did not start: {ready}; see {log}")

    def _read(self, *, timeout_s: float | None) -> dict | None:
        """The next reply line, or None if none arrived within `timeout_s` (0: do not wait)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"warm launcher exited (rc={self.process.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def start(self, argv: list[str], *, log: Path) -> WarmRun:
        self.process.stdin.write((json.dumps({"argv": argv, "log": str(log)}) + "\n").encode())
        self.process.stdin.flush()
        return WarmRun(self, self._read(timeout_s=30)["pid"])

    def close(self) -> None:
        from process_group import stop_process_group

        self.process.stdin.close()  # the launcher's loop ends at end of input
        stop_process_group(self.process, timeout_s=10)
        self._log.close()


class WarmRun:
    """One command running in a child of the launcher: `pgid`, `poll()`, `wait()`."""

    def __init__(self, cli: WarmCli, pid: int) -> None:
        self.cli, self.pgid, self.returncode = cli, pid, None

    def poll(self) -> int | None:
        if self.returncode is None and (done := self.cli._read(timeout_s=0)) is not None:
            self.returncode = done["rc"]
        return self.returncode

    def wait(self, *, timeout_s: float = 300) -> int:
        if self.returncode is None:
            done = self.cli._read(timeout_s=timeout_s)
            if done is None:
                raise TimeoutError(f"process group {self.pgid} still running after {timeout_s} s")
            self.returncode = done["rc"]
        return self.returncode


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    serve()
