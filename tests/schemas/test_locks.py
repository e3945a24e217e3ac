"""Folder locks across real processes: a second writer stops naming the holder or waits for it,
a holder killed with SIGKILL releases the lock, and one process re-enters its own lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from prefsmith.schemas.locks import FolderLocked, folder_lock, lock_path

HOLD = """
import sys, time
from prefsmith.schemas.locks import folder_lock
with folder_lock(sys.argv[1], "generate", wait_s=0):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds: float) -> subprocess.Popen:
    """A process holding the `generate` lock of `folder` for `seconds`, once it printed 'held'."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_second_writer_stops_with_one_line_naming_the_holder(tmp_path):
    holder = _holder(tmp_path, 60)
    try:
        start = time.monotonic()
        with pytest.raises(FolderLocked) as error, folder_lock(tmp_path, "generate", wait_s=0.5):
            pass
        assert 0.5 <= time.monotonic() - start < 5
        message = str(error.value)
        assert "\n" not in message
        assert f"pid {holder.pid} on {socket.gethostname()} since 20" in message
        assert "-c " in message and ".prefsmith-generate.lock" in message
        with folder_lock(tmp_path, "score", wait_s=0):  # another stage's lock is free
            pass
    finally:
        holder.kill()
        holder.wait()


def test_sigkilled_holder_releases_the_lock(tmp_path):
    holder = _holder(tmp_path, 600)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock_path(tmp_path, "generate").read_text()  # its name is still written there
    with folder_lock(tmp_path, "generate", wait_s=0) as path:
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert path.read_text() == ""  # released: names nobody


def test_second_writer_waits_for_the_holder_to_end(tmp_path):
    holder = _holder(tmp_path, 1.5)
    start = time.monotonic()
    with folder_lock(tmp_path, "generate", wait_s=30):
        waited = time.monotonic() - start
    holder.wait()
    assert 0.8 < waited < 10


def test_reentrant_in_one_thread_exclusive_across_threads(tmp_path):
    with folder_lock(tmp_path, "run"), folder_lock(tmp_path, "run"):
        errors = []

        def other() -> None:
            try:
                with folder_lock(tmp_path, "run", wait_s=0.3):
                    pass
            except FolderLocked as error:
                errors.append(str(error))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "another thread" in errors[0]
    with folder_lock(tmp_path, "run", wait_s=0):  # both levels released
        pass
