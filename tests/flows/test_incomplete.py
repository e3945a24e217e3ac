"""The INCOMPLETE marker: `latest` is never pointed at a marked folder, and a marked folder
becomes pointable only once the marker is cleared (what a successful run does last)."""

from __future__ import annotations

import os

import pytest

from prefsmith.flows.incomplete import clear_incomplete, is_incomplete, mark_incomplete
from prefsmith.flows.pipeline import point_latest
from prefsmith.schemas.errors import StageError


def test_latest_never_points_at_an_incomplete_build(tmp_path):
    good, cut = tmp_path / "20260101-000000", tmp_path / "20260102-000000"
    good.mkdir(), cut.mkdir()
    point_latest(good)
    mark_incomplete(cut, reason="cancelled by SIGINT")
    with pytest.raises(StageError, match="INCOMPLETE"):
        point_latest(cut)
    assert os.readlink(tmp_path / "latest") == good.name  # still the last finished build
    assert "cancelled by SIGINT" in (cut / "INCOMPLETE").read_text()
    assert f"--run-dir {cut.resolve()}" in (cut / "INCOMPLETE").read_text()  # how to resume
    clear_incomplete(cut)
    assert not is_incomplete(cut)
    assert os.readlink(point_latest(cut)) == cut.name


def test_a_failed_build_leaves_its_reason_in_the_marker(tmp_path, monkeypatch):
    """The pipeline's own failure path (the stages replaced by one that raises a library's
    multi-line error; Prefect is bypassed through the flow's `.fn`)."""
    from prefsmith.flows import pipeline as flows_pipeline
    from prefsmith.flows.quickstart import quickstart_config
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.pipeline_config import PipelineConfig

    def fails(config, run_path):
        raise ValueError("tokenizer.json\nis not valid JSON")

    monkeypatch.setattr(flows_pipeline, "_all_stages", fails)
    run = tmp_path / "build"
    with pytest.raises(ValueError):
        config = parse_config(PipelineConfig, quickstart_config(tmp_path, tmp_path / "policy"))
        flows_pipeline.pipeline.fn(config, run_dir=str(run))
    text = (run / "INCOMPLETE").read_text()
    assert "the build failed: ValueError: tokenizer.json is not valid JSON" in text
    assert not (tmp_path / "latest").exists()
