"""`latest` moves atomically and only when a build succeeds; run folders never collide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefsmith.flows.pipeline import new_run_dir, point_latest, run_config_file
from prefsmith.schemas.config_base import parse_config, read_yaml
from prefsmith.schemas.errors import PrefsmithError
from prefsmith.schemas.pipeline_config import PipelineConfig


def test_point_latest_swaps_the_link(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    link = point_latest(first)
    assert os.readlink(link) == "a" and link.resolve() == first.resolve()
    point_latest(second)
    assert os.readlink(link) == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "latest"]  # no temp link left


def test_new_run_dirs_in_the_same_second_differ(tmp_path):
    config = PipelineConfig.model_construct(out_dir=str(tmp_path), name="x")
    made = [new_run_dir(config) for _ in range(3)]
    assert len({p.name for p in made}) == 3 and all(p.is_dir() for p in made)


@pytest.mark.slow
def test_failed_build_leaves_latest_at_previous_good_build(pipeline_yaml, on_server, tmp_path):
    good = pipeline_yaml("good", n_prompts=4, isolate_stages=False)
    outputs = run_config_file(good)
    latest = Path(outputs["latest"])
    good_dir = Path(outputs["run_dir"])
    assert latest.resolve() == good_dir.resolve() and (latest / "pairs.parquet").is_file()

    # Same out_dir and name, but the reward model folder does not exist: the score stage fails.
    config = read_yaml(good)
    config["score"] = {"kind": "reward_model", "model": str(tmp_path / "no-such-model")}
    bad = tmp_path / "bad.yaml"
    bad.write_text(PipelineConfig.model_validate(config).model_dump_json())
    with pytest.raises(PrefsmithError):
        run_config_file(bad)
    run_dirs = sorted(
        p
        for p in good_dir.parent.iterdir()
        if p.is_dir() and not p.is_symlink() and p.name != "store"  # the store is no build
    )
    assert (
        len(run_dirs) == 2 and (run_dirs[-1] / "responses.manifest.json").is_file()
    )  # it got that far
    assert latest.resolve() == good_dir.resolve()


def test_parse_roundtrip_of_written_yaml(pipeline_yaml):
    config = parse_config(PipelineConfig, read_yaml(pipeline_yaml("rt")))
    assert config.train is None and config.generate.backend == "transformers"
