"""Two `prefsmith run` into one `--run-dir`: the second stops with one line naming the first
(default) or waits for it (PREFSMITH_LOCK_WAIT_S) and then finds every stage cached; the tables
equal one uninterrupted build. Every result record Prefect stored is JSON in the run folder, and
nothing went to `~/.prefect/storage` (HOME is a fresh folder here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flow_oracle import build_without_prefect, tables

from prefsmith.flows.tasks import RESULTS_DIR
from prefsmith.schemas.locks import lock_path

pytestmark = pytest.mark.slow
PREFSMITH = str(Path(sys.executable).parent / "prefsmith")


def _run(config: Path, run_dir: Path, env: dict[str, str], **more: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PREFSMITH, "run", str(config), "--run-dir", str(run_dir)],
        env={**env, **more},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop_once_locked(process: subprocess.Popen, lock: Path, *, timeout_s: float = 180) -> None:
    """SIGSTOP `process` once it has written itself into `lock` (it holds the run folder)."""
    deadline = time.monotonic() + timeout_s
    while f'"pid": {process.pid},' not in (lock.read_text() if lock.exists() else ""):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGSTOP)


def _finish(process: subprocess.Popen, *, timeout_s: float = 400) -> None:
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, (out[-2000:], err[-3000:])


def test_second_run_into_one_folder_refuses_or_waits(pipeline_yaml, prefect_server, tmp_path):
    config, run_dir, home = pipeline_yaml("lock", n_prompts=6), tmp_path / "run", tmp_path / "home"
    home.mkdir()
    started = time.time()
    env = {**prefect_server, "HOME": str(home)}
    first = _run(config, run_dir, env)
    _stop_once_locked(first, lock_path(run_dir, "run"))
    try:
        refused = _run(config, run_dir, env)
        _, err = refused.communicate(timeout=180)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert refused.returncode == 2 and len(errors) == 1, err[-3000:]
        assert f"{run_dir} is in use by pid {first.pid} on " in errors[0]
        assert not (run_dir / "responses").exists()  # the first is stopped before generating
        waiting = _run(config, run_dir, env, PREFSMITH_LOCK_WAIT_S="600")
        time.sleep(10)  # long enough for it to reach the lock and wait there
        assert waiting.poll() is None
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _finish(first)
    _finish(waiting)

    build_without_prefect(config, tmp_path / "clean")
    got, want = tables(run_dir), tables(tmp_path / "clean")
    for name in want:
        assert got[name].num_rows > 0 and got[name].equals(want[name]), name
    outputs = {Path(record["output"]).name for record in _result_records(run_dir)}
    assert outputs == {"responses", "scores"}  # the cached stages, one record each
    assert not (home / ".prefect" / "storage").exists()
    # The refused run's failure (its flow starts before it meets the lock) under PREFECT_HOME,
    # as Prefect writes an exception: the serializer's bytes alone, here JSON.
    failures = [
        path.read_bytes()
        for path in (Path(prefect_server["PREFECT_HOME"]) / "storage").glob("*")
        if path.stat().st_mtime >= started
    ]
    assert len(failures) == 1 and not failures[0].startswith(b"\x80")
    assert json.loads(failures[0])["__exc_type__"] == "prefsmith.schemas.locks.FolderLocked"


def _result_records(run_dir: Path) -> list[dict]:
    """Every stored result record under the run folder, checked to be JSON and not a pickle."""
    records = []
    for path in sorted((run_dir / RESULTS_DIR).rglob("*")):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        assert not raw.startswith(b"\x80") and b"cloudpickle" not in raw, path
        record = json.loads(raw)
        assert "metadata" in record, (path, raw[:300])
        assert record["metadata"]["serializer"]["type"] == "json", record["metadata"]
        value = json.loads(record["result"])  # the result itself is JSON text, not base64
        assert all(isinstance(v, str | None) for v in value.values()), value  # paths
        records.append(value)
    return records
