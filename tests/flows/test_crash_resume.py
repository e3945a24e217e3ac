"""The pipeline flow killed (SIGKILL) during generation and run again into the same folder reuses
the finished shards, and ends with tables identical to an uninterrupted run; a re-run after a
finished build shows the generate and score tasks as `Cached`.
"""

from __future__ import annotations

import pytest
from flow_oracle import (
    build_without_prefect,
    finish,
    kill_after_first_shard,
    latest_states,
    run_pipeline,
    tables,
)

from prefsmith.schemas.manifest import Manifest

pytestmark = pytest.mark.slow


def test_killed_pipeline_resumes_from_shards_and_matches_uninterrupted(
    pipeline_yaml, prefect_server, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = pipeline_yaml("crash", n_prompts=8)
    resumed, clean = tmp_path / "resumed", tmp_path / "clean"

    seen = kill_after_first_shard(
        run_pipeline(config, resumed, env=prefect_server), resumed / "responses"
    )
    assert seen >= 1 and not (resumed / "pairs.parquet").exists()
    finish(run_pipeline(config, resumed, env=prefect_server))
    generate = Manifest.read(resumed / "responses.manifest.json").extra
    assert 1 <= generate["shards_skipped"] < generate["shards_total"] == 8, generate

    build_without_prefect(config, clean)
    assert Manifest.read(clean / "responses.manifest.json").extra["shards_skipped"] == 0
    got, want = tables(resumed), tables(clean)
    for name in want:
        assert got[name].num_rows > 0 and got[name].equals(want[name]), name

    # A re-run into the finished folder: the finished stages are Prefect cache hits.
    finish(run_pipeline(config, resumed, env=prefect_server))
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        assert latest_states(client, ["generate", "score"]) == {
            "generate": "Cached",
            "score": "Cached",
        }
    assert tables(resumed)["pairs"].equals(want["pairs"])


def test_killed_mapped_build_shows_finished_parts_cached(pipeline_yaml, prefect_server, tmp_path):
    """With `shards_per_task: 2` the generate stage is 4 mapped tasks (one process each, one at a
    time). Killed once 3 shards exist, part 0 had finished: the re-run shows it `Cached` and
    regenerates only the rest, ending with the tables of an uninterrupted build."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = pipeline_yaml("mapped", n_prompts=8, scale={"shards_per_task": 2})
    resumed, clean = tmp_path / "resumed", tmp_path / "clean"
    kill_after_first_shard(
        run_pipeline(config, resumed, env=prefect_server), resumed / "responses", at_least=3
    )
    finish(run_pipeline(config, resumed, env=prefect_server))
    names = [f"generate-part-{i}" for i in range(4)]
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        states = latest_states(client, names)
    assert states["generate-part-0"] == "Cached" and states["generate-part-3"] == "Completed", (
        states
    )
    generate = Manifest.read(resumed / "responses.manifest.json").extra
    assert generate["shards_skipped"] == generate["shards_total"] == 8  # the parts wrote them all

    build_without_prefect(config, clean)
    got, want = tables(resumed), tables(clean)
    for name in want:
        assert got[name].num_rows > 0 and got[name].equals(want[name]), name
