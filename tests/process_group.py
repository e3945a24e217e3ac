"""Stopping what a test started: a child in its own process group (`start_new_session=True`)
and everything it spawned (a server's workers, an isolated stage, a launcher's ranks)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, *, timeout_s: float = 30) -> None:
    """SIGTERM the group, SIGKILL it if the leader has not exited after `timeout_s`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
