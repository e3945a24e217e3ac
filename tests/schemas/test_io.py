"""Atomic, schema-checked table I/O and the resumable shard loop."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from prefsmith.schemas.errors import SchemaError
from prefsmith.schemas.io import chunk, read_table, run_shards, shard_files, write_table
from prefsmith.schemas.tables import PROMPTS, QUARANTINE


def _prompt(i: int) -> dict:
    return {
        "prompt_id": f"p{i}",
        "messages": [{"role": "user", "content": f"q{i}"}],
        "source": "t",
        "metadata": "{}",
    }


def test_write_read_round_trip(tmp_path):
    rows = [_prompt(i) for i in range(3)]
    path = write_table(rows, tmp_path / "p.parquet", PROMPTS)
    assert read_table(path, PROMPTS).to_pylist() == rows
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]  # no temporary file left


def test_read_reports_every_column_problem_at_once(tmp_path):
    bad = pa.table({"prompt_id": [1], "source": ["x"]})
    import pyarrow.parquet as pq

    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(SchemaError) as error:
        read_table(tmp_path / "bad.parquet", PROMPTS)
    message = str(error.value)
    assert "'prompt_id' is int64" in message
    assert "missing column 'messages'" in message and "missing column 'metadata'" in message


def test_run_shards_resumes_only_missing_shards(tmp_path):
    items = list(range(10))
    calls = []

    def work(index, shard):
        calls.append(index)
        return [
            {"stage": "t", "row_ref": str(i), "reason": "r", "detail": "", "raw": ""} for i in shard
        ]

    shards = chunk(items, 4)
    assert [len(s) for s in shards] == [4, 4, 2]
    paths, skipped = run_shards(shards, tmp_path, work, QUARANTINE)
    assert skipped == 0 and calls == [0, 1, 2]
    os.unlink(paths[1])
    (tmp_path / ".shard-00001.parquet.x.tmp").write_bytes(b"half-written")  # a killed write
    calls.clear()
    _, skipped = run_shards(shards, tmp_path, work, QUARANTINE)
    assert skipped == 2 and calls == [1]
    refs = [r["row_ref"] for r in read_table(tmp_path, QUARANTINE).to_pylist()]
    assert refs == [str(i) for i in items]  # all rows, none twice, temporary file ignored
    assert len(shard_files(tmp_path)) == 3


def _rows(shard):
    return [
        {"stage": "t", "row_ref": str(i), "reason": "r", "detail": "", "raw": ""} for i in shard
    ]


def test_run_shards_only_some_then_the_rest(tmp_path):
    shards, calls = chunk(list(range(10)), 2), []
    work = lambda index, shard: calls.append(index) or _rows(shard)  # noqa: E731
    paths, skipped = run_shards(shards, tmp_path, work, QUARANTINE, only=[3, 1])
    assert calls == [1, 3] and skipped == 0 and len(paths) == 5
    assert [p.name for p in shard_files(tmp_path)] == ["shard-00001.parquet", "shard-00003.parquet"]
    _, skipped = run_shards(shards, tmp_path, work, QUARANTINE)
    assert skipped == 2 and calls == [1, 3, 0, 2, 4]
    with pytest.raises(ValueError, match="outside"):
        run_shards(shards, tmp_path, work, QUARANTINE, only=[5])


def test_run_shards_in_threads_writes_each_shard_once_and_stops_on_failure(tmp_path):
    import threading
    import time

    shards, running, peak, lock = chunk(list(range(12)), 2), [0], [0], threading.Lock()

    def work(index, shard):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return _rows(shard)

    paths, _ = run_shards(shards, tmp_path / "ok", work, QUARANTINE, workers=3)
    assert peak[0] == 3  # three shards at once, never more
    refs = [r["row_ref"] for r in read_table(tmp_path / "ok", QUARANTINE).to_pylist()]
    assert refs == [str(i) for i in range(12)] and [p.name for p in paths] == [
        f"shard-{i:05d}.parquet" for i in range(6)
    ]

    started = []

    def failing(index, shard):
        started.append(index)
        if index == 0:
            raise RuntimeError("server gone")
        time.sleep(0.2)
        return _rows(shard)

    with pytest.raises(RuntimeError, match="server gone"):
        run_shards(shards, tmp_path / "bad", failing, QUARANTINE, workers=2)
    assert len(started) < len(shards)  # queued shards were cancelled, not run
    assert len(shard_files(tmp_path / "bad")) == len(started) - 1  # the others finished whole


def test_chunk_rejects_zero():
    with pytest.raises(ValueError, match="shard size"):
        chunk([1], 0)
