"""The terminal shows prefsmith's lines: a stage command ≤ 10 lines, a pipeline run ≤ 40, the
third-party output in each isolated stage's log file; `-v` shows everything (the control)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow
INHERITED_LEVELS = {
    "VLLM_LOGGING_LEVEL",
    "PREFECT_LOGGING_LEVEL",
    "PREFSMITH_VERBOSE",
    "PREFSMITH_QUIETED_VLLM",
}


def prefsmith(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "prefsmith.flows.cli", *args]
    # A wide terminal: the count is of lines printed, not of long tmp paths wrapped.
    # In-process CLI tests leave the levels `configure` set in os.environ: start from a clean one.
    env = {k: v for k, v in (env or os.environ).items() if k not in INHERITED_LEVELS}
    env["COLUMNS"] = "250"
    return subprocess.run(command, capture_output=True, text=True, env=env)


def lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_generate_with_vllm_prints_its_counts_and_little_else(tiny, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(f'{{"prompt": "say a thing {i}"}}\n' for i in range(6)))
    assert prefsmith("prompts", str(prompts), "-o", str(tmp_path)).returncode == 0
    config = tmp_path / "gen.yaml"
    sampling = {"n": 2, "temperature": 1.0, "max_new_tokens": 8}
    gen = {"backend": "vllm", "dtype": "float32", "max_model_len": 128, "sampling": sampling}
    config.write_text(yaml.safe_dump({"generate": gen}))
    args = ["generate", str(tmp_path / "prompts.parquet"), "--model", str(tiny.policy)]
    quiet = prefsmith(*args, "-o", str(tmp_path / "quiet"), "-c", str(config))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    shown = lines(quiet)
    assert len(shown) <= 10, "\n".join(shown)
    assert any(line.startswith("generate: 6 prompts in, 6 generated") for line in shown)
    loud = prefsmith("-v", *args, "-o", str(tmp_path / "loud"), "-c", str(config))
    assert loud.returncode == 0 and len(lines(loud)) > 20  # the lines are still there with -v


def test_a_pipeline_run_fits_a_screen_and_keeps_the_rest_in_stage_logs(pipeline_yaml, tmp_path):
    config = pipeline_yaml("quiet", n_prompts=4)
    run_dir = tmp_path / "build"
    done = prefsmith("run", str(config), "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    shown = lines(done)
    assert len(shown) <= 40, shown
    assert any(line.startswith("pairs: 4 prompts in") for line in shown)
    log = run_dir / "logs" / "generate.log"  # the isolated generate stage's own output
    assert log.is_file() and log.stat().st_size > 0
