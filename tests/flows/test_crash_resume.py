"""The pipeline flow killed (SIGKILL) during generation and run again into the same folder reuses
the finished shards, and ends with tables identical to an uninterrupted run; a re-run after a
finished build shows the generate and score tasks as `Cached`. With the incremental store on, a
build killed while it generates into the store resumes from the store's segments instead.

The shard tests set `reuse: false`: with the store on, generation happens ahead of the shards
(prefsmith.generation.reuse.prefetch_new) and the shards are then written within milliseconds,
so a kill at the first shard lands after the last one (CI saw 8 of 8).
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

    config = pipeline_yaml("crash", n_prompts=8, reuse=False)
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


def test_build_killed_while_generating_into_the_store_resumes_from_its_segments(
    pipeline_yaml, prefect_server, tmp_path
):
    """Killed once the store holds a segment (one prompt's 2 samples each, `shard_size: 1`), the
    re-run takes the stored prompts from the store (counted as reused, 2 rows per segment) and
    generates only the rest; its tables equal an uninterrupted build without a store."""
    config = pipeline_yaml("stored", n_prompts=8)
    resumed, clean = tmp_path / "resumed", tmp_path / "clean"
    segments = tmp_path / "stored" / "runs" / "flowtest" / "store" / "responses"
    stored = kill_after_first_shard(
        run_pipeline(config, resumed, env=prefect_server), segments, pattern="*/seg-*.parquet"
    )
    assert 1 <= stored < 8 and not list((resumed / "responses").glob("shard-*.parquet"))
    finish(run_pipeline(config, resumed, env=prefect_server))
    generate = Manifest.read(resumed / "responses.manifest.json").extra
    assert (generate["rows_reused"], generate["rows_computed"]) == (2 * stored, 16 - 2 * stored)

    build_without_prefect(config, clean)
    got, want = tables(resumed), tables(clean)
    for name in want:
        assert got[name].num_rows > 0 and got[name].equals(want[name]), name


def test_killed_mapped_build_shows_finished_parts_cached(pipeline_yaml, prefect_server, tmp_path):
    """With `shards_per_task: 2` the generate stage is 4 mapped tasks (one process each, one at a
    time). Killed once 3 shards exist, part 0 had finished: the re-run shows it `Cached` and
    regenerates only the rest, ending with the tables of an uninterrupted build."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = pipeline_yaml("mapped", n_prompts=8, scale={"shards_per_task": 2}, reuse=False)
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
