"""Helpers of the flow tests: run the pipeline in a process, kill it mid-generation, the oracle
build (the same stages called directly), and task-run states from the Prefect API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prefsmith.schemas.io import read_table
from prefsmith.schemas.tables import PAIRS, RESPONSES, SCORES


def run_pipeline(config: Path, run_dir: Path, *, env: dict[str, str]) -> subprocess.Popen:
    """`python -m prefsmith.flows.pipeline CONFIG --run-dir DIR` in its own process group (so a kill
    reaches the isolated stage processes too)."""
    return subprocess.Popen(
        [sys.executable, "-m", "prefsmith.flows.pipeline", str(config), "--run-dir", str(run_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, *, timeout_s: float = 240) -> str:
    output, _ = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, output[-3000:]
    return output


def kill_after_first_shard(
    process: subprocess.Popen,
    shards: Path,
    *,
    timeout_s: float = 180,
    at_least: int = 1,
    pattern: str = "shard-*.parquet",
) -> int:
    """SIGKILL the flow process (only it) as soon as `at_least` files matching `pattern` (response
    shards, unless told) exist in `shards`; return their number once its isolated stage process
    had time to notice (it must die too)."""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if len(list(shards.glob(pattern))) >= at_least:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                time.sleep(0.5)
                seen = len(list(shards.glob(pattern)))
                time.sleep(3)  # an orphaned stage process would write more files meanwhile
                assert len(list(shards.glob(pattern))) == seen, "stage outlived the flow"
                return seen
            time.sleep(0.02)
        raise AssertionError(
            f"no {pattern} within {timeout_s} s: {process.communicate()[0][-3000:]}"
        )
    finally:
        try:  # whatever this test started in that process group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def tables(run_dir: Path) -> dict[str, object]:
    """The build's tables, sorted by id so the comparison does not depend on shard order."""
    return {
        "responses": read_table(run_dir / "responses", RESPONSES).sort_by("response_id"),
        "scores": read_table(run_dir / "scores", SCORES).sort_by("response_id"),
        "pairs": read_table(run_dir / "pairs.parquet", PAIRS).sort_by("pair_id"),
    }


def build_without_prefect(config_path: Path, out: Path) -> None:
    """The oracle: the same stages called directly, one after the other, never interrupted."""
    from prefsmith.curation.pairs import build_pairs
    from prefsmith.generation.prompts import load_prompts
    from prefsmith.generation.split import split_prompts
    from prefsmith.generation.stage import generate
    from prefsmith.schemas.config_base import parse_config, read_yaml
    from prefsmith.schemas.data_configs import SplitConfig
    from prefsmith.schemas.pipeline_config import PipelineConfig
    from prefsmith.scoring.stage import score

    config = parse_config(PipelineConfig, read_yaml(config_path))
    prompts = load_prompts({}, config=config.prompts, out_dir=out).output
    split = SplitConfig(heldout_fraction=config.heldout_fraction)
    train = split_prompts({"prompts": prompts}, config=split, out_dir=out).output
    responses = generate({"prompts": train}, config=config.generate, out_dir=out).output
    inputs = {"responses": responses, "prompts": train}
    scores = score(inputs, config=config.score, out_dir=out).output
    build_pairs({"scores": scores, **inputs}, config=config.pairs, out_dir=out)


def latest_states(client, names: list[str]) -> dict[str, str]:
    """State names of the most recent task run of each name."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import TaskRunSort

    runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names)),
        sort=TaskRunSort.EXPECTED_START_TIME_DESC,
        limit=100,
    )
    states: dict[str, str] = {}
    for run in runs:
        states.setdefault(run.name, run.state.name)
    return states


def tiny_train(policy: Path, *, steps: int) -> dict:
    """A pipeline's train section for the tiny policy: `steps` optimizer steps, no checkpoints."""
    return {
        "policy": str(policy),
        "max_length": 96,
        "max_prompt_length": 48,
        "per_device_train_batch_size": 4,
        "warmup_ratio": 0.0,
        "learning_rate": 1e-3,
        "logging_steps": 2,
        "max_steps": steps,
        "save_steps": 0,
    }
