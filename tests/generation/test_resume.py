"""A killed generate run, run again, gives exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from prefsmith.generation.stage import generate
from prefsmith.schemas.config_base import load_config
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.errors import StageError
from prefsmith.schemas.io import read_frame, read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import RESPONSES

REPO = Path(__file__).resolve().parents[2]
N_PROMPTS, SHARD_SIZE, N_SAMPLES = 40, 4, 2
SHARDS = N_PROMPTS // SHARD_SIZE


def write_config(path: Path, model: Path, **overrides) -> Path:
    config = {
        "model": str(model),
        "backend": "transformers",
        "shard_size": SHARD_SIZE,
        "batch_size": 4,
        "sampling": {"n": N_SAMPLES, "temperature": 0.9, "max_new_tokens": 16, "seed": 3},
        **overrides,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def finished_shards(out: Path) -> list[Path]:
    return sorted((out / "responses").glob("shard-*.parquet"))


def start_and_kill(command: list[str], out: Path, *, timeout_s: float = 240.0) -> int:
    """Start the stage, SIGKILL it once some but not all shards are written; return that count."""
    process = subprocess.Popen(
        command, cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )  # os.environ holds what tests/conftest.py set: offline hub, vLLM-on-CPU variables
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if 1 <= len(finished_shards(out)) < SHARDS:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                return len(finished_shards(out))
            time.sleep(0.02)
        stderr = process.stderr.read().decode()[-2000:] if process.poll() is not None else ""
        pytest.fail(f"never saw a partial run (rc={process.poll()}); stderr tail:\n{stderr}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stderr.close()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_rows(tiny, tmp_path, make_prompts, prompt_texts):
    table = make_prompts(prompt_texts(N_PROMPTS, seed=4))
    config_path = write_config(tmp_path / "generate.yaml", tiny.policy)
    resumed = tmp_path / "resumed"
    command = [  # the real CLI: `prefsmith generate PROMPTS -o OUT -c CONFIG`
        sys.executable,
        "-m",
        "prefsmith.flows.cli",
        "generate",
        str(table),
        "-o",
        str(resumed),
        "-c",
        str(config_path),
    ]

    done_at_kill = start_and_kill(command, resumed)
    print(f"killed after {done_at_kill}/{SHARDS} shards")
    assert 1 <= done_at_kill < SHARDS
    for shard in finished_shards(resumed):  # the kill left only whole shard files
        assert read_table(shard, RESPONSES).num_rows == SHARD_SIZE * N_SAMPLES
    assert not (resumed / "responses.manifest.json").exists()

    finished = subprocess.run(
        command, cwd=REPO, env=dict(os.environ), capture_output=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    manifest = Manifest.read(resumed / "responses.manifest.json")
    assert manifest.extra["shards_skipped"] >= max(1, done_at_kill)
    assert manifest.extra["shards_total"] == SHARDS

    config = load_config(GenerateConfig, config_path)
    straight = generate({"prompts": table}, config=config, out_dir=tmp_path / "straight")
    expected = read_frame(straight.output, RESPONSES)
    got = read_frame(resumed / "responses", RESPONSES)
    assert Manifest.read(straight.manifest).extra["shards_skipped"] == 0
    assert got["response_id"].n_unique() == got.height == N_PROMPTS * N_SAMPLES  # no duplicates
    assert set(got["response_id"]) == set(expected["response_id"])  # none missing
    assert got.sort("response_id").equals(expected.sort("response_id"))  # same texts, same rows
    assert got.equals(expected)  # and the same order: shards are deterministic


@pytest.fixture
def finished_run(tiny, tmp_path, make_prompts, prompt_texts):
    table = make_prompts(prompt_texts(6, seed=5))
    config = load_config(
        GenerateConfig, write_config(tmp_path / "g.yaml", tiny.policy, shard_size=3)
    )
    config.sampling.max_new_tokens = 6
    result = generate({"prompts": table}, config=config, out_dir=tmp_path / "out")
    return table, config, result


def test_finished_run_is_skipped_without_loading_a_model(finished_run, monkeypatch, tmp_path):
    table, config, first = finished_run

    def no_model(*args, **kwargs):
        raise AssertionError("a fully finished run must not construct a backend")

    monkeypatch.setattr("prefsmith.generation.stage.load_backend", no_model)
    again = generate({"prompts": table}, config=config, out_dir=tmp_path / "out")
    manifest = Manifest.read(again.manifest)
    assert manifest.extra["shards_skipped"] == manifest.extra["shards_total"] == 2
    assert manifest.rows_written["responses"] == 6 * N_SAMPLES
    assert read_frame(again.output, RESPONSES).equals(read_frame(first.output, RESPONSES))


def test_resume_with_another_plan_is_refused(finished_run, tmp_path):
    table, config, _ = finished_run
    changed = config.model_copy(update={"shard_size": 2})
    with pytest.raises(StageError, match="shard_size"):
        generate({"prompts": table}, config=changed, out_dir=tmp_path / "out")
    reseeded = config.model_copy(deep=True)
    reseeded.sampling.seed = 99
    with pytest.raises(StageError, match="gen_config_hash"):
        generate({"prompts": table}, config=reseeded, out_dir=tmp_path / "out")


def test_rows_follow_the_schema_and_ids(finished_run):
    from prefsmith.schemas.ids import response_id

    _, config, result = finished_run
    frame = read_frame(result.output, RESPONSES)
    assert frame["response_id"].to_list() == [
        response_id(p, i) for p, i in zip(frame["prompt_id"], frame["sample_idx"], strict=True)
    ]
    assert frame["prompt_id"].to_list() == sorted(frame["prompt_id"].to_list())
    assert frame["sample_idx"].to_list() == [0, 1] * 6
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert frame.filter(pl.col("finish_reason") == "length")["n_tokens"].to_list() == [6] * (
        frame.filter(pl.col("finish_reason") == "length").height
    )
    assert frame["generator"].n_unique() == 1 and frame["generator"][0].startswith("policy@")


def test_cli_generate_reports_a_bad_config_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from prefsmith.flows.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": "m", "backend": "openai", "shard_sise": 3}))
    done = CliRunner().invoke(
        app, ["generate", str(tmp_path / "p.parquet"), "-o", str(tmp_path), "-c", str(bad)]
    )
    assert done.exit_code == 2
    message = done.output.strip()
    assert "\n" not in message and message.startswith("error: invalid config")
    assert message.endswith("shard_sise: unknown key (did you mean 'shard_size'?)")
