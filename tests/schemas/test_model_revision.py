"""The revision of a local model folder is a hash of its model files' bytes: times do not count,
one changed byte does, and run records beside the weights are not part of the model."""

from __future__ import annotations

import hashlib
import os

from prefsmith.schemas.ids import content_hash, model_file_hashes, model_revision


def _model(folder):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "tokenizer.json").write_text('{"model": {}}')
    return folder


def test_revision_is_the_hash_of_the_model_files_bytes(tmp_path):
    folder = _model(tmp_path / "m")
    want = {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("config.json", "model.safetensors", "tokenizer.json")
    }
    assert model_file_hashes(folder) == want
    assert model_revision(folder) == content_hash(sorted(want.items()))


def test_touching_a_weight_file_keeps_the_revision(tmp_path):
    folder = _model(tmp_path / "m")
    before = model_revision(folder)
    weights = folder / "model.safetensors"
    later = weights.stat().st_mtime_ns + 10**12  # 1000 s later
    os.utime(weights, ns=(later, later))
    assert model_revision(folder) == before


def test_one_changed_byte_changes_the_revision(tmp_path):
    folder = _model(tmp_path / "m")
    before = model_revision(folder)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: bytes count
    assert model_revision(folder) != before


def test_a_copy_has_the_same_revision_and_run_records_do_not_count(tmp_path):
    import shutil

    folder = _model(tmp_path / "m")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "prefsmith_train.json").write_text('{"wall_time_s": 1.5}')
    (copy / "training_args.bin").write_bytes(b"\x80\x04pickle")
    (copy / ".lock").write_text("x")
    assert model_revision(copy) == model_revision(folder)
    assert model_revision(folder, revision="abc") == "abc"
    assert model_revision(tmp_path / "absent") == "unpinned"
