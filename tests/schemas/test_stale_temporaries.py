"""A killed atomic_write leaves a hidden temporary; the next writer (in its lock) removes it."""

from __future__ import annotations

import re

from prefsmith.schemas.io import atomic_write, remove_stale_temporaries


def test_only_atomic_write_temporaries_of_the_named_targets_go(tmp_path):
    with atomic_write(tmp_path / "scores.manifest.json") as tmp:
        shape = re.sub(r"[0-9a-f]{12}", "0123456789ab", tmp.name)  # the name a kill leaves
        tmp.write_text("{}")
    stale, other_stage = tmp_path / shape, tmp_path / ".pairs.parquet.0123456789ab.tmp"
    not_ours = [tmp_path / "scores.json.0123456789ab.tmp", tmp_path / ".scores.json.0a.tmp"]
    for path in (stale, other_stage, *not_ours):
        path.write_text("half")
    assert remove_stale_temporaries(tmp_path, prefix="scores") == 1
    assert not stale.exists() and other_stage.exists()
    assert (tmp_path / "scores.manifest.json").read_text() == "{}"  # finished files stay
    assert remove_stale_temporaries(tmp_path) == 1  # no prefix: every target's
    assert not other_stage.exists() and all(p.exists() for p in not_ours)
    assert remove_stale_temporaries(tmp_path / "missing") == 0
