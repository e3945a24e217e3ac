"""A stage is complete when its manifest says so and every output it names exists with the
recorded hash (schemas.manifest.unverified_reason): what a cache hit checks before reuse."""

from __future__ import annotations

import json

import pytest

from prefsmith.schemas.data_configs import SplitConfig
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import Manifest, input_ref, output_hash, unverified_reason
from prefsmith.schemas.tables import QUARANTINE

ROW = {"stage": "t", "row_ref": "r", "reason": "x", "detail": "", "raw": ""}


@pytest.fixture
def written(tmp_path):
    """A source table, an output table and a folder output, and their manifest."""
    source = write_table([ROW], tmp_path / "in.parquet", QUARANTINE)
    output = write_table([ROW, ROW], tmp_path / "out.parquet", QUARANTINE)
    folder = tmp_path / "shards"
    write_table([ROW], folder / "shard-00000.parquet", QUARANTINE)
    config = SplitConfig(heldout_fraction=0.25)
    manifest = Manifest(
        stage="t",
        unit="row",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(source)],
        outputs={"out": str(output), "shards": str(folder)},
        rows_in=1,
        rows_out=1,
    ).write(tmp_path / "out.manifest.json")
    return manifest, config, {"source": source}, output, folder


def test_an_intact_output_verifies_and_its_hashes_are_recorded(written):
    manifest, config, inputs, output, folder = written
    recorded = Manifest.read(manifest).output_sha256
    assert recorded == {"out": output_hash(output), "shards": output_hash(folder)}
    assert unverified_reason(manifest, config=config, inputs=inputs) is None


def test_a_missing_or_changed_output_does_not_verify(written):
    manifest, config, inputs, output, folder = written
    data = bytearray(output.read_bytes())
    data[len(data) // 2] ^= 0xFF
    output.write_bytes(bytes(data))
    assert "changed since its manifest" in unverified_reason(manifest)
    output.unlink()
    assert "is missing" in unverified_reason(manifest)


def test_a_folder_output_with_a_deleted_shard_does_not_verify(written):
    manifest, _, _, _, folder = written
    (folder / "shard-00000.parquet").unlink()
    assert "shards" in unverified_reason(manifest)


def test_another_config_or_other_inputs_do_not_verify(written, tmp_path):
    manifest, config, inputs, _, _ = written
    other = SplitConfig(heldout_fraction=0.5)
    assert "another config" in unverified_reason(manifest, config=other)
    changed = write_table([ROW, ROW], tmp_path / "in2.parquet", QUARANTINE)
    assert "other inputs" in unverified_reason(manifest, config=config, inputs={"s": changed})


def test_no_manifest_or_one_without_hashes_does_not_verify(written, tmp_path):
    manifest, *_ = written
    assert "no manifest" in unverified_reason(tmp_path / "none.manifest.json")
    old = json.loads(manifest.read_text())
    del old["output_sha256"]  # as an older prefsmith wrote it
    manifest.write_text(json.dumps(old))
    assert "records no output hashes" in unverified_reason(manifest)
