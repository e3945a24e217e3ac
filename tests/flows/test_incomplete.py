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
