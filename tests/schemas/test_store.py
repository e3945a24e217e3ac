"""The incremental store (prefsmith.schemas.store): segments round-trip, a segment whose rows no
longer match its name (edited, truncated) or a half-written temporary is never reused, and the
reusing shard work computes exactly the items the store lacks, in the shard's order."""

from __future__ import annotations

import pyarrow.parquet as pq

from prefsmith.schemas.store import RowStore, reuse_counts, reusing, write_reuse_record
from prefsmith.schemas.tables import SCORES


def score_row(rid: str, score: float) -> dict:
    return {
        "response_id": rid,
        "prompt_id": rid.split("-")[0],
        "scorer": "rule",
        "score": score,
        "objectives": [],
        "n_tokens": 3,
    }


def test_segments_round_trip_and_first_segment_wins(tmp_path):
    store = RowStore(tmp_path / "scores" / "ns", SCORES)
    assert store.load() == {} and store.put({}) is None
    first = store.put({"k1": [score_row("p-0", 0.5)], "k2": [score_row("p-1", -1.25)]})
    store.put({"k2": [score_row("p-1", 9.0)], "k3": [score_row("p-2", 2.0)]})
    assert first.name.startswith("seg-") and first.parent == store.folder
    index = store.load()
    assert sorted(index) == ["k1", "k2", "k3"]
    assert index["k1"] == [score_row("p-0", 0.5)]
    # k2 is in both segments: the one sorted first by name is kept, never both
    assert len(index["k2"]) == 1 and index["k2"][0]["score"] in (-1.25, 9.0)


def test_edited_truncated_and_temporary_segments_are_not_reused(tmp_path):
    store = RowStore(tmp_path / "ns", SCORES)
    edited = store.put({"a": [score_row("p-0", 1.0)]})
    table = pq.read_table(edited)
    pq.write_table(table.set_column(3, "score", [[7.0]]), edited)  # same name, other rows
    truncated = store.put({"b": [score_row("p-1", 2.0)]})
    truncated.write_bytes(truncated.read_bytes()[:40])
    (store.folder / ".seg-x.parquet.0123456789ab.tmp").write_bytes(b"half")
    kept = store.put({"c": [score_row("p-2", 3.0)]})
    assert kept.exists()
    assert store.load() == {"c": [score_row("p-2", 3.0)]}


def letters_work(store, records, calls):
    """`reusing` over shards of letters: item "a" makes the row "a-0" with score 1.0, and so on."""

    def compute(index, items):
        calls.append((index, list(items)))
        return [score_row(f"{item}-0", float(ord(item) - 96)) for item in items]

    return reusing(
        compute,
        store=store,
        records=records,
        keys=list,
        subset=lambda items, keep: [i for i, k in zip(items, keep, strict=True) if k],
        row_key=lambda row: row["response_id"][0],
    )


def test_reusing_computes_only_missing_items_in_shard_order(tmp_path):
    store = RowStore(tmp_path / "ns", SCORES)
    store.put({"b": [score_row("b-0", 2.0)], "d": [score_row("d-0", 4.0)]})
    calls = []
    rows = letters_work(store, tmp_path / "records", calls)(3, ["a", "b", "c", "d"])
    assert calls == [(3, ["a", "c"])]
    assert [r["response_id"] for r in rows] == ["a-0", "b-0", "c-0", "d-0"]
    assert [r["score"] for r in rows] == [1.0, 2.0, 3.0, 4.0]
    assert reuse_counts(tmp_path / "records", 4, rows=9) == {"rows_reused": 2, "rows_computed": 7}
    # computed rows went into the store: a second shard with the same items computes nothing
    rows_again = letters_work(store, tmp_path / "records", calls)(0, ["c", "a"])
    assert calls[-1] == (0, []) and [r["response_id"] for r in rows_again] == ["c-0", "a-0"]


def test_reuse_counts_treat_shards_without_a_record_as_computed(tmp_path):
    write_reuse_record(tmp_path, 1, reused=5, computed=1)
    assert reuse_counts(tmp_path, 3, rows=20) == {"rows_reused": 5, "rows_computed": 15}
