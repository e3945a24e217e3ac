"""`prefsmith serve` against a real Prefect server on loopback: one rebuild at a time (a second
one started while the first builds is skipped, with its reason), and SIGINT to the whole process
group (what Ctrl-C sends) stops everything in a few lines, leaving the cancelled build's folder
marked INCOMPLETE and `latest` untouched.

The first build is held in the prompts stage by a named pipe in place of the prompts file (the
pipe is put there after `serve`'s preflight read the real file): a build that lasts as long as
the test needs, with no sleep in the code under test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from process_group import stop_process_group
from test_serve import wait_for_deployment

pytestmark = pytest.mark.slow
CRON = "0 3 * * *"


def read_lines(stream, into: list[str]) -> threading.Thread:
    def pump() -> None:
        for line in stream:
            if line.strip():
                into.append(line.rstrip())

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def wait_for(condition, *, timeout_s: float, what: str, shown: list[str]):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout_s} s; serve printed: {shown}")


def dated(builds) -> list:
    if not builds.is_dir():
        return []
    return [p for p in builds.iterdir() if p.is_dir() and not p.is_symlink()]


def test_serve_runs_one_build_at_a_time_and_stops_cleanly(pipeline_yaml, on_server):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    config = pipeline_yaml("stop", n_prompts=2, isolate_stages=False)
    builds = config.parent / "runs" / "flowtest"
    env = {k: v for k, v in on_server.items() if k not in ("PREFSMITH_VERBOSE",)}
    process = subprocess.Popen(
        [sys.executable, "-m", "prefsmith.flows.cli", "serve", str(config), "--cron", CRON]
        + ["--name", "stoptest"],
        env={**env, "COLUMNS": "250"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    shown: list[str] = []
    reader = read_lines(process.stdout, shown)
    try:
        with get_client(sync_client=True) as client:
            wait_for_deployment(client, "rebuild/stoptest", process=process)
        prompts = config.parent / "prompts.jsonl"
        prompts.unlink()
        os.mkfifo(prompts)  # the first build blocks in its prompts stage until stopped

        first = run_deployment("rebuild/stoptest", timeout=0)
        (run_dir,) = wait_for(
            lambda: [d for d in dated(builds) if (d / "INCOMPLETE").is_file()],
            timeout_s=90,
            what="the first build's folder",
            shown=shown,
        )
        second = run_deployment("rebuild/stoptest", timeout=120, poll_interval=1)
        assert second.state.is_completed(), second.state
        assert second.name == "rebuild-skipped"
        assert dated(builds) == [run_dir]  # the skipped rebuild made no folder
        with get_client(sync_client=True) as client:
            assert client.read_flow_run(first.id).state.is_running()
            assert client.read_flow_run(first.id).name == f"rebuild-{run_dir.name}"

        before = len(shown)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve still running 90 s after SIGINT: {shown}") from None
        reader.join(timeout=10)
        after = shown[before:]
        assert len(after) <= 4 and not any("Traceback" in line for line in shown), shown
        assert any("serve: SIGINT" in line for line in after), after
        assert (run_dir / "INCOMPLETE").is_file() and not (builds / "latest").exists()
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(first.id).state
            paused = client.read_deployment_by_name("rebuild/stoptest").paused
        assert not state.is_completed() and not state.is_running(), state
        assert paused  # the schedule does not fire with nobody serving it
    finally:
        stop_process_group(process, timeout_s=20)
