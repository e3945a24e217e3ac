"""Stages in a pipe (not a terminal): periodic one-line progress through prefsmith's logger,
each a whole line, and a stage still inside the quiet-terminal budget (≤ 10 lines) with the
default interval. Real subprocesses: `generate` (transformers backend, tiny model), then `score`
(a rule scorer, one shard per prompt) with the interval set to 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from prefsmith.schemas.progress import INTERVAL_ENV

LINE = re.compile(r"^score: (\d+)/12 responses \(\d+%\), \d+\.\d response/s(, eta \d+:\d\d:\d\d)?$")
INHERITED = {"VLLM_LOGGING_LEVEL", "PREFECT_LOGGING_LEVEL", "PREFSMITH_VERBOSE"}
INHERITED |= {"PREFSMITH_QUIETED_VLLM", INTERVAL_ENV}


def prefsmith(*args: str, interval: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env["COLUMNS"] = "250"
    if interval is not None:
        env[INTERVAL_ENV] = interval
    command = [sys.executable, "-m", "prefsmith.flows.cli", *args]
    done = subprocess.run(command, capture_output=True, env=env, timeout=300)
    return subprocess.CompletedProcess(  # decoded by hand: text=True would turn '\r' into '\n'
        command, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture(scope="module")
def generated(tiny, tmp_path_factory):
    """6 prompts generated one shard per prompt with the default interval: (root, the run)."""
    root = tmp_path_factory.mktemp("progress")
    (root / "p.jsonl").write_text("".join(f'{{"prompt": "say a thing {i}"}}\n' for i in range(6)))
    assert (
        prefsmith("prompts", str(root / "p.jsonl"), "-o", str(root), interval=None).returncode == 0
    )
    sampling = {"n": 2, "temperature": 1.0, "max_new_tokens": 4}
    gen = {"backend": "transformers", "dtype": "float32", "max_model_len": 128, "shard_size": 1}
    score = {"kind": "rule", "rule": "length_target", "params": {"target": 5}, "shard_size": 1}
    config = {"generate": {**gen, "sampling": sampling}, "score": score}
    (root / "stages.yaml").write_text(yaml.safe_dump(config))
    args = ["generate", str(root / "prompts.parquet"), "--model", str(tiny.policy)]
    return root, prefsmith(*args, "-c", str(root / "stages.yaml"), "-o", str(root), interval=None)


def progress(done: subprocess.CompletedProcess, stage: str, total: int) -> list[str]:
    """The stage's progress lines ("<stage>: <n>/<total> ..."), not its summary line."""
    counted = re.compile(rf"^{stage}: \d+/{total} ")
    return [line for line in done.stderr.splitlines() if counted.match(line)]


def test_the_default_interval_keeps_a_stage_within_ten_lines(generated):
    done = generated[1]
    assert done.returncode == 0, done.stderr[-3000:]
    shown = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(shown) <= 10, shown
    assert progress(done, "generate", 6) == []  # shorter than the 10 s interval: none
    assert shown[0].startswith("generate: 6 prompts in, 6 generated"), shown


def test_a_pipe_gets_periodic_single_line_progress(generated):
    root = generated[0]
    args = ["score", str(root / "responses"), "--prompts", str(root / "prompts.parquet")]
    done = prefsmith(*args, "-c", str(root / "stages.yaml"), "-o", str(root), interval="0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stderr  # no bar frames (ours or transformers'): whole lines only
    lines = progress(done, "score", 12)
    assert all(LINE.match(line) for line in lines), lines
    counts = [int(LINE.match(line).group(1)) for line in lines]
    # one line per one-response shard as it lands (all 12 with interval 0), the last the final
    assert counts == list(range(1, 13)), lines
