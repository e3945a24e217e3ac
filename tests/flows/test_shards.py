"""Mapped shard tasks: grouping, their cache key, the scale config and the stages' shard API."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefsmith.flows.shards import PartInputs, parts_of, task_runner
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.pipeline_config import ScaleConfig

RULE = ScoreConfig(kind="rule", rule="length_target", params={"target": 5}, shard_size=2)


def key(hashes, *, out_dir="/runs/a", config=RULE, responses="/x/responses", name="score"):
    call = {"inputs": {"responses": Path(responses)}, "config": config, "out_dir": Path(out_dir)}
    inputs = {"name": name, "hashes": hashes, "call": call}
    return PartInputs().compute_key(None, inputs, {})


def test_parts_cover_every_shard_once_in_order():
    assert parts_of(["h"] * 7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert parts_of(["h"] * 2, 5) == [[0, 1]]
    assert parts_of([], 2) == []


def test_part_key_follows_shard_content_config_and_target_folder_only():
    base = key(["a", "b"])
    assert key(["a", "b"], responses="/elsewhere/responses") == base  # content, not input path
    assert key(["a", "c"]) != base  # one shard's content changed
    assert key(["a", "b"], out_dir="/runs/b") != base  # another build folder never reuses
    assert key(["a", "b"], config=RULE.model_copy(update={"params": {"target": 6}})) != base
    assert key(["a", "b"], name="generate") != base  # another stage's part


def test_scale_defaults_and_validation():
    assert ScaleConfig().part_size() is None  # local: the whole stage is one task
    assert ScaleConfig(task_runner="ray").part_size() == 1
    assert ScaleConfig(shards_per_task=4).part_size() == 4
    with pytest.raises(ConfigError, match="scale.shards_per_task"):
        parse_config(ScaleConfig, {"shards_per_task": 0}, section="scale")
    with pytest.raises(ConfigError, match="task_runner"):
        parse_config(ScaleConfig, {"task_runner": "dask"})
    assert task_runner(ScaleConfig(local_parallel_tasks=3))._max_workers == 3


def test_score_shards_write_exactly_the_asked_shards_and_the_stage_finishes(tmp_path, tiny):
    """Two parts then the stage itself: the same rows as one uninterrupted `score` call."""
    from prefsmith.schemas.io import read_table, write_table
    from prefsmith.schemas.manifest import Manifest
    from prefsmith.schemas.tables import PROMPTS, RESPONSES, SCORES
    from prefsmith.scoring.stage import score, score_shards, shard_plan

    prompts = write_table(
        [
            {
                "prompt_id": "p",
                "messages": [{"role": "user", "content": "hi"}],
                "source": "t",
                "metadata": "{}",
            }
        ],
        tmp_path / "prompts.parquet",
        PROMPTS,
    )
    rows = [
        {
            "prompt_id": "p",
            "response_id": f"p-{i}",
            "sample_idx": i,
            "response": "x" * i,
            "n_tokens": i,
            "finish_reason": "stop",
            "generator": "g",
            "gen_config_hash": "h",
        }
        for i in range(7)
    ]
    responses = write_table(rows, tmp_path / "responses.parquet", RESPONSES)
    inputs = {"responses": responses, "prompts": prompts}
    hashes = shard_plan(inputs, config=RULE, out_dir=tmp_path / "mapped")
    assert len(hashes) == 4 and len(set(hashes)) == 4
    written = score_shards(inputs, config=RULE, out_dir=tmp_path / "mapped", shards=[1, 3])
    assert [Path(p).name for p in written] == ["shard-00001.parquet", "shard-00003.parquet"]
    assert sorted(p.name for p in (tmp_path / "mapped" / "scores").glob("*.parquet")) == [
        Path(p).name for p in written
    ]
    score_shards(inputs, config=RULE, out_dir=tmp_path / "mapped", shards=[0, 2])
    mapped = score(inputs, config=RULE, out_dir=tmp_path / "mapped")
    direct = score(inputs, config=RULE, out_dir=tmp_path / "direct")
    assert Manifest.read(mapped.manifest).extra["shards_skipped"] == 4
    assert read_table(mapped.output, SCORES).equals(read_table(direct.output, SCORES))
