"""A Prefect cache hit is trusted only when the outputs it names verify against their manifest:
a rebuild into a cleaned run folder (one response shard deleted, one score shard edited) or a
deleted one recomputes what is gone and ends with the first build's tables; an untouched folder
is still a cache hit (the negative control)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flow_oracle import latest_states, tables

from prefsmith.flows.pipeline import run_config_file
from prefsmith.schemas.manifest import Manifest

pytestmark = pytest.mark.slow


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def states() -> dict[str, str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return latest_states(client, ["generate", "score"])


def assert_same_tables(run_dir: Path, want: dict) -> None:
    got = tables(run_dir)
    for name in want:
        assert got[name].num_rows > 0 and got[name].equals(want[name]), name


def test_rebuild_into_a_cleaned_or_deleted_run_folder(pipeline_yaml, on_server, tmp_path):
    config = pipeline_yaml("cache", n_prompts=4, isolate_stages=False)
    run_dir = tmp_path / "run"
    run_config_file(config, run_dir=run_dir)
    want = tables(run_dir)

    run_config_file(config, run_dir=run_dir)  # untouched: both stages are cache hits
    assert states() == {"generate": "Cached", "score": "Cached"}

    (run_dir / "responses" / "shard-00002.parquet").unlink()
    flip_a_byte(run_dir / "scores" / "shard-00000.parquet")
    run_config_file(config, run_dir=run_dir)
    assert states() == {"generate": "Completed", "score": "Completed"}
    generate = Manifest.read(run_dir / "responses.manifest.json").extra
    assert (generate["shards_skipped"], generate["shards_total"]) == (3, 4)  # one shard redone
    assert_same_tables(run_dir, want)

    shutil.rmtree(run_dir)
    run_config_file(config, run_dir=run_dir)
    assert_same_tables(run_dir, want)


def test_a_cached_part_whose_shard_is_gone_runs_again(pipeline_yaml, on_server, tmp_path):
    """Mapped shard tasks (`shards_per_task: 2`): the part whose shard was deleted runs again, the
    other stays a cache hit, and the tables equal the first build's."""
    from prefect.client.orchestration import get_client

    config = pipeline_yaml("parts", n_prompts=4, isolate_stages=False, scale={"shards_per_task": 2})
    run_dir = tmp_path / "run"
    run_config_file(config, run_dir=run_dir)
    want = tables(run_dir)
    (run_dir / "responses" / "shard-00003.parquet").unlink()
    run_config_file(config, run_dir=run_dir)
    with get_client(sync_client=True) as client:
        parts = latest_states(client, ["generate-part-0", "generate-part-1"])
    assert parts == {"generate-part-0": "Cached", "generate-part-1": "Completed"}
    assert_same_tables(run_dir, want)
