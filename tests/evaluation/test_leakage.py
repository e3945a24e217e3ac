"""eval's held-out check: prompts the checkpoint's pairs came from are found by prompt id."""

from __future__ import annotations

import polars as pl

from prefsmith.evaluation.leakage import heldout_leak_warning
from prefsmith.schemas.manifest import Manifest, input_ref, manifest_path


def _table(path, ids):
    pl.DataFrame({"prompt_id": ids, "x": range(len(ids))}).write_parquet(path)
    return path


def _checkpoint(tmp_path, pairs):
    final = tmp_path / "ckpt" / "final"
    final.mkdir(parents=True)
    Manifest(
        stage="train", unit="pair", config={}, inputs=[input_ref(pairs)],
        outputs={"checkpoint": str(final)}, rows_in=1, rows_out=1,
    ).write(manifest_path(final))  # fmt: skip
    return final


def test_overlap_is_counted_and_named(tmp_path):
    pairs = _table(tmp_path / "pairs.parquet", ["a", "b", "c", "c"])
    final = _checkpoint(tmp_path, pairs)
    heldout = _table(tmp_path / "heldout.parquet", ["c", "d", "e", "b"])
    line = heldout_leak_warning(final, heldout)
    assert line is not None and "2 of 4 held-out prompts were trained on" in line
    assert str(pairs) in line and "\n" not in line


def test_disjoint_sides_and_what_cannot_be_checked_pass_quietly(tmp_path):
    pairs = _table(tmp_path / "pairs.parquet", ["a", "b"])
    final = _checkpoint(tmp_path, pairs)
    assert heldout_leak_warning(final, _table(tmp_path / "h.parquet", ["c"])) is None
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    assert heldout_leak_warning(elsewhere, tmp_path / "h.parquet") is None
    no_ids = tmp_path / "no_ids.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(no_ids)
    assert heldout_leak_warning(final, no_ids) is None  # eval reports that table itself
