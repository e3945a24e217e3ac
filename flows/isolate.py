"""Run a registered stage in a fresh Python process, so its memory (a model, a vLLM engine) is
returned to the system when it ends.

The child is `python -m prefsmith.flows.isolate SPEC.json`; the spec names the stage (a key of
prefsmith.flows.stages.STAGES), which of its functions to call (the stage itself, or a sharded
stage's shard writer), the input paths, the config as JSON and the output folder. The
child validates the config with the stage's own config model, so nothing crosses the process
boundary but JSON. A `PrefsmithError` raised in the child is raised again here with the same class
and one-line message; any other exception comes back as transient or not (schemas.errors).

On Linux the child asks the kernel to kill it when its parent dies, so a flow process killed with
SIGKILL does not leave an orphaned stage writing shards beside the next run.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefsmith.flows import console
from prefsmith.schemas import errors, locks
from prefsmith.schemas.secrets import REVEAL

CALLS = ("run", "shards")  # the stage function, Shards.write (plans run in the flow process)


def run_isolated(
    stage: str,
    inputs: Mapping[str, Path],
    *,
    config: BaseModel,
    out_dir: Path,
    call: str = "run",
    shards: list[int] | None = None,
) -> Any:
    """Call stage `stage`'s `call` function in a child process and return its JSON result.

    Unless the terminal is verbose, the child's own output goes to its stage log
    (prefsmith.flows.console.stage_log) and only its prefsmith lines reach the terminal."""
    log = None if console.is_verbose() else console.stage_log(out_dir, stage)
    with tempfile.TemporaryDirectory(prefix="prefsmith-isolate-") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec.write_text(
            json.dumps(
                {
                    "stage": stage,
                    "call": call,
                    "inputs": {name: str(path) for name, path in inputs.items()},
                    # Unredacted: the child needs the real server URLs (schemas.secrets); the spec
                    # lives in a private temporary folder removed when the call returns.
                    "config": config.model_dump(mode="json", context=REVEAL),
                    "out_dir": str(out_dir),
                    "shards": shards,
                    "result": str(out),
                    "log": None if log is None else str(log),
                    "parent": os.getpid(),
                }
            )
        )
        command = [sys.executable, "-m", "prefsmith.flows.isolate", str(spec)]
        completed = subprocess.run(command, env=os.environ.copy())
        if not out.exists():
            raise died(stage, completed.returncode, log=log)
        payload = json.loads(out.read_text())
    if "error" in payload:
        raise rebuilt_error(payload)
    return payload["value"]


def died(stage: str, returncode: int, *, log: Path | None = None) -> errors.PrefsmithError:
    """The error for a child that wrote no result: killed by a signal (transient), or crashed;
    it quotes the last line of the stage's log and names the log."""
    seen = console.last_line(log)
    tail = (f"; last output: {seen}" if seen else "") + (f"; log: {log}" if log else "")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " — out of memory?" if name == "SIGKILL" else ""
        return errors.StageProcessDied(
            f"stage {stage}: its process was killed ({name}){hint}{tail}"
        )
    where = tail or " (see its output above)"
    return errors.StageError(
        f"stage {stage}: its process exited with code {returncode} and no result{where}"
    )


def error_payload(error: Exception) -> dict[str, Any]:
    """A library's error (not a PrefsmithError) as JSON: its class, its message on one line, and
    whether a retry may succeed."""
    return {
        "error": type(error).__name__,
        "message": errors.one_line(error),
        "transient": errors.is_transient(error),
    }


def rebuilt_error(payload: dict[str, Any]) -> errors.PrefsmithError:
    """The child's error as the same PrefsmithError class, or as transient / not transient."""
    cls = getattr(errors, payload["error"], None) or getattr(locks, payload["error"], None)
    if isinstance(cls, type) and issubclass(cls, errors.PrefsmithError):
        return cls(payload["message"])
    fallback = errors.TransientError if payload.get("transient") else errors.StageError
    return fallback(f"{payload['error']}: {payload['message']}")


def _die_with_parent(parent: int | None) -> None:
    """Linux: SIGKILL this process when its parent exits (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:  # the parent died before prctl ran
        os._exit(1)


def _call(spec: dict[str, Any]) -> Any:
    """Resolve the stage through the registry and call the function the spec names."""
    from prefsmith.flows.stages import get_stage

    stage = get_stage(spec["stage"])
    config = stage.config.model_validate(spec["config"])
    inputs = {name: Path(path) for name, path in spec["inputs"].items()}
    out_dir = Path(spec["out_dir"])
    if spec["call"] == "run":
        return stage.fn(inputs, config=config, out_dir=out_dir).paths()
    if stage.shards is None or spec["call"] not in CALLS:
        raise errors.ConfigError(f"stage {stage.name} has no {spec['call']!r} function")
    return stage.shards.write(inputs, config=config, out_dir=out_dir, shards=spec["shards"])


def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    _die_with_parent(spec.get("parent"))
    if spec.get("log"):
        console.quiet_stage_process(Path(spec["log"]))
    else:
        console.route(console=sys.stderr, everything=sys.stderr, verbose=True)
    try:
        payload = {"value": _call(spec)}
    except errors.PrefsmithError as error:
        payload = {"error": type(error).__name__, "message": str(error)}
    except Exception as error:  # a bug or a library's error: the traceback goes to stderr too
        logging.getLogger(__name__).exception("stage %s failed", spec["stage"])
        payload = error_payload(error)
    Path(spec["result"]).write_text(json.dumps(payload))


def _exit_now() -> None:
    """End the child without the interpreter's teardown (module and torch/vLLM finalizers, GC of
    a loaded model): measured 1.6–3.3 s per stage, time in which the flow only waits. The stage
    has written and closed every output by now, and the kernel returns the memory at once."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _child(sys.argv[1])
    _exit_now()
