"""Run folders stay where they belong: a generated one under out_dir, an explicit `--run-dir`
anywhere except a folder that holds run folders (out_dir, <out_dir>/<name> and above)."""

from __future__ import annotations

import os

import pytest

from prefsmith.flows.pipeline import checked_run_dir, new_run_dir, pipeline, point_latest
from prefsmith.schemas.config_base import parse_config, read_yaml
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.pipeline_config import PipelineConfig


def config_in(tmp_path, pipeline_yaml, name: str = "flowtest") -> PipelineConfig:
    data = read_yaml(pipeline_yaml("cfg"))
    return parse_config(PipelineConfig, data | {"out_dir": str(tmp_path / "runs"), "name": name})


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused_with_one_line(tmp_path, pipeline_yaml, name):
    with pytest.raises(ConfigError) as error:
        config_in(tmp_path, pipeline_yaml, name=name)
    assert "name: Value error, name must be a folder name under out_dir" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["a..b", "...", ".hidden", "v1.2"])
def test_names_with_dots_that_stay_inside_are_kept(tmp_path, pipeline_yaml, name):
    config = config_in(tmp_path, pipeline_yaml, name=name)
    made = new_run_dir(config)
    assert made.parent.resolve() == (tmp_path / "runs" / name).resolve()
    assert made.parent.parent.resolve() == (tmp_path / "runs").resolve()


def test_a_generated_run_dir_that_escapes_out_dir_is_refused(tmp_path, pipeline_yaml):
    """A config built without validation (model_copy), and a name folder that is a symlink out:
    both refused before any folder is made beside out_dir."""
    config = config_in(tmp_path, pipeline_yaml)
    escaped = config.model_copy(update={"name": ".."})
    with pytest.raises(ConfigError, match="is not inside out_dir"):
        new_run_dir(escaped)
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "runs" / "flowtest")
    with pytest.raises(ConfigError, match="is not inside out_dir"):
        new_run_dir(config)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_run_dirs_that_hold_builds_are_refused(tmp_path, pipeline_yaml, monkeypatch):
    config = config_in(tmp_path, pipeline_yaml)
    runs = tmp_path / "runs"
    other = tmp_path / "other" / "name"  # another pipeline's name folder: it holds `latest`
    (other / "20260101-000000").mkdir(parents=True)
    point_latest(other / "20260101-000000")
    monkeypatch.chdir(tmp_path)
    for refused in (runs, runs / "flowtest", tmp_path, "/", "runs/flowtest/..", other):
        with pytest.raises(ConfigError) as error:
            checked_run_dir(refused, config=config)
        assert "holds run folders" in str(error.value) and "\n" not in str(error.value)
    # pipeline.fn: the flow's own body refuses before writing anything
    with pytest.raises(ConfigError, match="holds run folders"):
        pipeline.fn(config, run_dir=str(runs))
    assert not runs.exists()


def test_explicit_run_dirs_elsewhere_are_resolved(tmp_path, pipeline_yaml, monkeypatch):
    config = config_in(tmp_path, pipeline_yaml)
    here = tmp_path / "work" / "build-1"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    assert checked_run_dir(".", config=config) == here.resolve()  # `latest` beside it, in work/
    inside = tmp_path / "runs" / "flowtest" / "mine"
    assert checked_run_dir(inside, config=config) == inside.resolve()
    assert checked_run_dir(tmp_path / "anywhere", config=config) == (tmp_path / "anywhere")
    link = point_latest(checked_run_dir(".", config=config))
    assert link == here.parent / "latest" and os.readlink(link) == "build-1"
