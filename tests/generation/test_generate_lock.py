"""Two real `prefsmith generate` processes into one folder never both do the work: with the
default (no wait) the second stops with one line naming the first and exit code 2; told to wait
(PREFSMITH_LOCK_WAIT_S) it waits, then finds every shard done and generates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prefsmith.schemas.locks import lock_path
from prefsmith.schemas.manifest import Manifest

pytestmark = pytest.mark.slow
PREFSMITH = str(Path(sys.executable).parent / "prefsmith")


def _generate(prompts: Path, out: Path, config: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PREFSMITH, "generate", str(prompts), "-o", str(out), "-c", str(config)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop_once_locked(process: subprocess.Popen, lock: Path, *, timeout_s: float = 120) -> None:
    """SIGSTOP `process` as soon as it has written itself into `lock` (it holds the lock)."""
    deadline = time.monotonic() + timeout_s
    while f'"pid": {process.pid},' not in (lock.read_text() if lock.exists() else ""):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first generate never took the lock"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGSTOP)


def test_second_generate_into_one_folder_refuses_or_waits(
    tiny, make_prompts, prompt_texts, tmp_path
):
    prompts = make_prompts(prompt_texts(12))
    config = tmp_path / "gen.yaml"
    sampling = {"n": 2, "temperature": 1.0, "max_new_tokens": 8, "seed": 0}
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny.policy),
                "backend": "transformers",
                "shard_size": 3,
                "max_model_len": 128,
                "sampling": sampling,
            }
        )
    )
    out = tmp_path / "out"
    first = _generate(prompts, out, config)
    _stop_once_locked(first, lock_path(out, "generate"))
    try:
        refused = _generate(prompts, out, config)
        _, err = refused.communicate(timeout=120)
        assert refused.returncode == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert f"{out} is in use by pid {first.pid} on " in lines[0]
        assert "generate" in lines[0] and "PREFSMITH_LOCK_WAIT_S" in lines[0]
        assert not (out / "responses.manifest.json").exists()
        waiting = _generate(prompts, out, config, PREFSMITH_LOCK_WAIT_S="300")
        time.sleep(8)  # long enough for it to reach the lock and wait there
        assert waiting.poll() is None
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.communicate()
    done = Manifest.read(out / "responses.manifest.json").extra
    assert (done["shards_total"], done["shards_skipped"]) == (4, 0)
    assert waiting.wait(timeout=300) == 0, waiting.communicate()
    again = Manifest.read(out / "responses.manifest.json").extra
    assert (again["shards_total"], again["shards_skipped"]) == (4, 4)  # it generated nothing
