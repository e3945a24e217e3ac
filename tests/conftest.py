"""Shared fixtures: the tiny local model set and the environment every real engine needs here.

The tiny models are built once per test session (about 15 s) under a cache folder that survives
between runs (`PREFSMITH_TEST_CACHE`, default `.prefsmith/test-cache` in the repository), keyed on
the builder's source so a change to the builder rebuilds them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # shared test helpers: browser_check
CACHE = Path(os.environ.get("PREFSMITH_TEST_CACHE", REPO / ".prefsmith" / "test-cache"))

# Before any engine is imported: vLLM on the CPU, offline hub, no telemetry (shared/ENVIRONMENT.md).
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CACHE_ROOT": str(CACHE / "vllm"),
    "TORCH_EXTENSIONS_DIR": str(CACHE / "torch_extensions"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)


def _builder_digest() -> str:
    source = (REPO / "flows" / "tiny.py").read_bytes()
    return hashlib.sha256(source).hexdigest()[:12]


@pytest.fixture(scope="session")
def tiny():
    """prefsmith.flows.tiny.TinyPaths of the tiny tokenizer, policy and reward model (built once)."""
    from prefsmith.flows.tiny import build_tiny_setup

    return build_tiny_setup(CACHE / f"tiny-{_builder_digest()}")


from browser_check import chromium  # noqa: E402,F401  (a fixture: the HTML-report tests use it)


@pytest.fixture
def prefect_home(tmp_path, monkeypatch):
    """A private Prefect home so each test's temporary server has its own database."""
    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _restore_console_levels(monkeypatch):
    """`prefsmith.flows.console.configure` (run by every in-process CLI call) sets logging levels
    in os.environ for the processes it starts; keep them from leaking into the next test."""
    for key in (
        "VLLM_LOGGING_LEVEL",
        "PREFECT_LOGGING_LEVEL",
        "PREFSMITH_VERBOSE",
        "PREFSMITH_QUIETED_VLLM",
    ):
        present = key in os.environ
        monkeypatch.setenv(key, os.environ.get(key, ""))  # records the value to restore
        if not present:
            monkeypatch.delenv(key)
