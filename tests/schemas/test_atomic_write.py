"""prefsmith.schemas.io.atomic_write: every output honours the umask and is all-or-nothing."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pytest

from prefsmith.curation.pairs_output import ParquetBatches
from prefsmith.schemas.io import atomic_write, read_table, write_table, write_text
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PROMPTS

ROWS = [{"prompt_id": "p0", "messages": [], "source": "t", "metadata": "{}"}]


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_every_kind(folder) -> list:
    table = write_table(ROWS, folder / "prompts.parquet", PROMPTS)
    manifest = Manifest(
        stage="prompts", unit="prompt", config={}, inputs=[], outputs={}, rows_in=1, rows_out=1
    ).write(folder / "prompts.manifest.json")
    with ParquetBatches(folder / "pairs.parquet", PROMPTS) as batches:
        batches.write(pa.Table.from_pylist(ROWS, schema=PROMPTS))
    report = write_text("<html></html>", folder / "report.html")
    return [table, manifest, folder / "pairs.parquet", report]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        written = _write_every_kind(tmp_path)
    finally:
        os.umask(old)
    assert {p.name: _mode(p) for p in written} == {p.name: mode for p in written}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_failed_batch_write_keeps_the_old_table(tmp_path):
    path = write_table(ROWS, tmp_path / "pairs.parquet", PROMPTS)
    with pytest.raises(RuntimeError), ParquetBatches(path, PROMPTS) as batches:
        batches.write(pa.Table.from_pylist(ROWS * 3, schema=PROMPTS))
        raise RuntimeError("killed")
    assert read_table(path, PROMPTS).num_rows == 1
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.parquet"]


def test_the_temporary_file_is_hidden_beside_the_target(tmp_path):
    with atomic_write(tmp_path / "sub" / "t.json") as tmp:
        assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".t.json.")
        tmp.write_text("{}")
    assert (tmp_path / "sub" / "t.json").read_text() == "{}"
