"""Flow-test fixtures: a cheap pipeline config (tiny models, transformers backend, rule scorer,
no train) and one real Prefect server on loopback shared by the session, stopped at its end
(a server start costs 20–40 s here, more than most flow runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # shared flow-test helpers: flow_oracle


def write_pipeline_yaml(root: Path, *, policy: Path, n_prompts: int = 8, **overrides) -> Path:
    """Write prompts + a pipeline YAML under `root`; `overrides` replace top-level sections."""
    root.mkdir(parents=True, exist_ok=True)
    prompts = root / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": f"tell me about the small thing {i}"}) + "\n"
            for i in range(n_prompts)
        )
    )
    config = {
        "name": "flowtest",
        "out_dir": str(root / "runs"),
        "heldout_fraction": 0.0,
        "isolate_stages": True,
        "prompts": {"path": str(prompts)},
        "generate": {
            "model": str(policy),
            "backend": "transformers",
            "dtype": "float32",
            "max_model_len": 128,
            "shard_size": 1,
            "batch_size": 4,
            "sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 12},
        },
        "score": {
            "kind": "rule",
            "rule": "length_target",
            "params": {"target": 5},
            "shard_size": 4,
        },
        "pairs": {"strategy": "best_vs_worst", "min_margin": 0.0},
        "train": None,
        **overrides,
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def pipeline_yaml(tmp_path, tiny, prefect_home):
    """Factory: `pipeline_yaml(name, **overrides)` -> path of a cheap pipeline YAML."""
    return lambda name="cfg", **overrides: write_pipeline_yaml(
        tmp_path / name, policy=tiny.policy, **overrides
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, *, process, timeout_s: float) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout_s} s")


def stop(process, *, timeout_s: float = 20) -> None:
    """Stop a process this test started (and its group): SIGTERM, then SIGKILL."""
    from process_group import stop_process_group

    stop_process_group(process, timeout_s=timeout_s)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect server on a free loopback port (own PREFECT_HOME); stopped at the end.

    Yields the environment a client or a child process needs to use it.
    """
    import os
    import shutil
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
    }
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    log = (home / "server.log").open("w")
    env_server = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    process = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env_server,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(url, process=process, timeout_s=120)
        yield env
    finally:
        stop(process)
        log.close()


@pytest.fixture
def on_server(prefect_server):
    """Run this test's in-process flows and client calls against the real server."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_LOGGING_TO_API_ENABLED,
        temporary_settings,
    )

    storage = Path(prefect_server["PREFECT_HOME"]) / "storage"  # results of cached tasks
    # No log shipping from this process: its handler would outlive the server at session end.
    updates = {
        PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
        PREFECT_LOCAL_STORAGE_PATH: str(storage),
        PREFECT_LOGGING_TO_API_ENABLED: False,
    }
    with temporary_settings(updates=updates):
        yield prefect_server
