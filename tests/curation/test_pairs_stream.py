"""The pairs stage's streaming machinery: batches of whole prompts, the responses cursor, the
sorted fallback, and the per-batch numpy selection, each against an independent oracle.

The strongest check is `test_streaming_equals_sorted_path`: the same input through the
streaming path (tiny batches, so prompts straddle batch boundaries) and through the in-memory
sorted fallback must give identical pairs, quarantine and counts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import prefsmith.curation.pairs as stage
import prefsmith.curation.pairs_stream as stream
from prefsmith.curation.pairs_output import ParquetBatches, PromptIndex, pair_id_column
from prefsmith.curation.pairs_select import extreme_rows, merge_copies, run_starts
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.io import read_frame, shard_name, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, PROMPTS, QUARANTINE, RESPONSES, SCORES

FALLBACK = "sorting the joined input in memory"


def tables(seed: int, *, prompts: int = 40) -> dict[str, pl.DataFrame]:
    """Sorted prompts (some without a prompts row), 1-6 responses each, NaN scores, ties on a
    0.5 grid, duplicate texts; responses and scores in response_id order, like the stages."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(prompts):
        for i in range(int(rng.integers(1, 7))):
            score = float(rng.integers(0, 7)) / 2.0 if rng.random() > 0.08 else math.nan
            rows.append((f"p{p:03d}", i, f"t{rng.integers(0, 4)}", score, int(rng.integers(1, 30))))
    frame = pl.DataFrame(
        rows, schema=["prompt_id", "sample_idx", "response", "score", "n_tokens"], orient="row"
    )
    frame = frame.with_columns(
        response_id=pl.col("prompt_id") + "-" + pl.col("sample_idx").cast(pl.String)
    )
    responses = frame.select(
        "prompt_id",
        "response_id",
        pl.col("sample_idx").cast(pl.Int32),
        "response",
        pl.col("n_tokens").cast(pl.Int32),
        finish_reason=pl.lit("stop"),
        generator=pl.lit("g"),
        gen_config_hash=pl.lit("h"),
    )
    scores = frame.select(
        "response_id",
        "prompt_id",
        scorer=pl.lit("rm"),
        score="score",
        objectives=pl.lit([], dtype=pl.List(pl.Struct({"name": pl.String, "value": pl.Float64}))),
        n_tokens=pl.col("n_tokens").cast(pl.Int32),
    )
    missing = sorted(set(frame["prompt_id"]))[::7][1:]  # every 7th prompt has no prompts row
    kept = [p for p in sorted(set(frame["prompt_id"])) if p not in missing]
    prompt_rows = pl.DataFrame({"prompt_id": kept}).with_columns(
        messages=pl.concat_list(pl.struct(role=pl.lit("user"), content="q " + pl.col("prompt_id"))),
        source=pl.lit("t"),
        metadata=pl.lit("{}"),
    )
    return {"prompts": prompt_rows, "responses": responses, "scores": scores}


def write(root: Path, frames: dict[str, pl.DataFrame], *, shards: int = 3) -> dict[str, Path]:
    schemas = {"prompts": PROMPTS, "responses": RESPONSES, "scores": SCORES}
    for name, frame in frames.items():
        for index, part in enumerate(np.array_split(np.arange(frame.height), shards)):
            write_table(frame[part.tolist()], root / name / shard_name(index), schemas[name])
    return {name: root / name for name in frames}


def run(paths: dict[str, Path], out: Path, **config) -> tuple[pl.DataFrame, pl.DataFrame, Manifest]:
    result = stage.build_pairs(
        {
            "scores": paths["scores"],
            "responses": paths["responses"],
            "prompts": paths["prompts"],
        },
        config=PairsConfig(**config),
        out_dir=out,
    )
    return (
        read_frame(result.output, PAIRS),
        read_frame(result.quarantine, QUARANTINE),
        Manifest.read(result.manifest),
    )


def force_sorted(monkeypatch) -> None:
    def not_streamable(*args, **kwargs):
        raise stream.NotStreamable("forced by the test")
        yield

    monkeypatch.setattr(stage, "stream_runs", not_streamable)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"length_penalty": 0.01, "min_margin": 0.5},
        {"strategy": "top_k_pairs", "top_k": 3},
        {"strategy": "best_vs_random", "seed": 4},
    ],
)
def test_streaming_equals_sorted_path(tmp_path, monkeypatch, caplog, config):
    paths = write(tmp_path / "in", tables(1))
    monkeypatch.setattr(stream, "BATCH_ROWS", 7)  # many batches; prompts straddle them
    with caplog.at_level(logging.WARNING):
        streamed = run(paths, tmp_path / "a", **config)
    assert FALLBACK not in caplog.text
    force_sorted(monkeypatch)
    with caplog.at_level(logging.WARNING):
        ordered = run(paths, tmp_path / "b", **config)
    assert FALLBACK in caplog.text
    assert streamed[0].height > 10 and streamed[0].equals(ordered[0])
    assert streamed[1].equals(ordered[1])
    fields = ("rows_in", "rows_out", "dropped", "rows_written", "extra")
    assert {f: getattr(streamed[2], f) for f in fields} == {
        f: getattr(ordered[2], f) for f in fields
    }
    assert streamed[2].dropped.get("missing_prompt", 0) > 0


def test_unscored_responses_are_skipped_without_fallback(tmp_path, monkeypatch, caplog):
    """Responses the scorer quarantined have no scores row: the cursor's window join skips them."""
    frames = tables(2)
    full = run(write(tmp_path / "full", frames), tmp_path / "out-full")[0]
    dropped_ids = frames["scores"]["response_id"].gather(list(range(3, frames["scores"].height, 5)))
    frames["scores"] = frames["scores"].filter(~pl.col("response_id").is_in(dropped_ids.implode()))
    monkeypatch.setattr(stream, "BATCH_ROWS", 11)
    with caplog.at_level(logging.WARNING):
        pairs = run(write(tmp_path / "in", frames), tmp_path / "out")[0]
    assert FALLBACK not in caplog.text
    assert not set(pairs["chosen_response_id"]) & set(dropped_ids) and pairs.height > 0
    assert pairs.height <= full.height


def test_shuffled_scores_fall_back_and_match(tmp_path, monkeypatch, caplog):
    frames = tables(3)
    ordered = run(write(tmp_path / "a", frames), tmp_path / "out-a")
    frames["scores"] = frames["scores"].sample(fraction=1.0, shuffle=True, seed=1)
    with caplog.at_level(logging.WARNING):
        shuffled = run(write(tmp_path / "b", frames), tmp_path / "out-b")
    assert FALLBACK in caplog.text
    assert shuffled[0].equals(ordered[0]) and shuffled[1].equals(ordered[1])


def test_complete_runs_never_splits_a_prompt():
    rng = np.random.default_rng(0)
    ids = [
        None if r == 5 else f"p{r:02d}" for r in range(12) for _ in range(int(rng.integers(1, 6)))
    ]
    frame = pl.DataFrame(
        {"prompt_id": ids, "row": range(len(ids))}, schema={"prompt_id": pl.String, "row": pl.Int64}
    )
    cuts = sorted(rng.choice(np.arange(1, len(ids)), size=8, replace=False))
    pieces = [frame.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
    batches = list(stream.complete_runs(pieces))
    assert pl.concat(batches).equals(frame)
    owners = {}
    for index, batch in enumerate(batches):
        for prompt in set(batch["prompt_id"].to_list()):
            assert owners.setdefault(prompt, index) == index  # every prompt in one batch only


def test_extreme_rows_match_a_lexicographic_oracle():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 6, size=200)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    run = np.repeat(np.arange(lengths.size), lengths)
    hi = rng.integers(0, 3, size=run.size).astype(np.int64)  # many ties on hi
    lo = rng.permutation(run.size).astype(np.uint64)  # unique tie-breaks
    for largest in (True, False):
        got = extreme_rows(hi, starts, run, tie_break=lambda: lo, largest=largest)
        for r, row in enumerate(got):
            members = range(starts[r], starts[r] + lengths[r])
            pick = max if largest else min
            assert row == pick(members, key=lambda i: (hi[i], lo[i]))


def test_merged_mean_does_not_depend_on_row_order():
    """(0.1 + 0.2) + 0.3 and 0.1 + (0.2 + 0.3) differ in the last bit; the merge sums in score
    order, so every row order gives the same bits."""
    values = [0.3, 0.1, 0.2, 0.7]
    means = set()
    for seed in range(6):
        order = np.random.default_rng(seed).permutation(len(values))
        batch = pl.DataFrame(
            {
                "response_id": [f"a-{i}" for i in order],
                "prompt_id": "a",
                "response": "same",
                "score": [values[i] for i in order],
                "n_tokens": pl.Series([3] * len(values), dtype=pl.Int32),
            }
        )
        run = np.zeros(batch.height, dtype=np.int64)
        merged = merge_copies(batch, valid=np.ones(batch.height, dtype=bool), run=run)
        (rep,) = np.flatnonzero(merged.active)
        assert batch["response_id"][int(rep)] == "a-0" and merged.copies[rep] == len(values)
        means.add(float(merged.score[rep]))
    assert len(means) == 1 and abs(means.pop() - math.fsum(values) / len(values)) < 1e-15


def test_run_starts_treats_nulls_as_one_prompt():
    ids = pl.Series([None, None, "a", "a", None, "b"], dtype=pl.String)
    assert run_starts(ids).tolist() == [0, 2, 4, 5]


def test_prompt_index_unsorted_with_duplicates(tmp_path):
    ids = ["c", "a", "b", "a", "d"]
    frame = pl.DataFrame({"prompt_id": ids}).with_columns(
        messages=pl.concat_list(
            pl.struct(
                role=pl.lit("user"), content=pl.col("prompt_id") + pl.int_range(5).cast(pl.String)
            )
        ),
        source=pl.lit("t"),
        metadata=pl.lit("{}"),
    )
    write_table(frame, tmp_path / "p.parquet", PROMPTS)
    index = PromptIndex([tmp_path / "p.parquet"])
    rows = index.locate(pl.Series(["a", "b", "d", "e", None]))
    assert (rows[:3] >= 0).all() and rows[3:].tolist() == [-1, -1]  # e and null are absent
    contents = [m[0]["content"] for m in index.messages(rows[:3]).to_pylist()]
    assert contents == ["a1", "b2", "d4"]  # a's first row (row 1), not its second (row 3)
    index._collide = True  # as if two ids shared a 64-bit hash: the exact string join
    assert index.locate(pl.Series(["a", "b", "d", "e", None])).tolist() == rows.tolist()
    index.check_paired(pl.Series(["b", "d"]))
    with pytest.raises(InputError, match="prompt 'a' made the same pair twice"):
        index.check_paired(pl.Series(["b", "a"]))


def test_parquet_batches_write_atomically(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    with ParquetBatches(tmp_path / "t.parquet", schema, compression="zstd") as out:
        out.write(pa.table({"x": [1, 2]}))
        out.write(pa.table({"x": [3]}))
    assert pq.read_table(tmp_path / "t.parquet")["x"].to_pylist() == [1, 2, 3]
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == 2
    with pytest.raises(RuntimeError), ParquetBatches(tmp_path / "t.parquet", schema) as out:
        out.write(pa.table({"x": [9]}))
        raise RuntimeError("interrupted")
    assert pq.read_table(tmp_path / "t.parquet")["x"].to_pylist() == [1, 2, 3]  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temporary left


def test_pair_id_keys_are_the_ids_bits():
    ids, keys = pair_id_column(pl.Series(["a-0", 'q"-0', "x-1"]), pl.Series(["a-1", "q-1", "x-0"]))
    assert [int(i, 16) for i in ids] == keys.tolist()


def test_scorers_from_statistics_see_every_shard(tmp_path):
    frames = tables(4, prompts=6)
    other = frames["scores"].with_columns(scorer=pl.lit("judge"))
    write_table(frames["scores"], tmp_path / "scores" / shard_name(0), SCORES)
    write_table(other, tmp_path / "scores" / shard_name(1), SCORES)
    files = sorted((tmp_path / "scores").glob("*.parquet"))
    with pytest.raises(ConfigError, match=r"2 scorers \['judge', 'rm'\]"):
        stage.pick_scorer(files, requested=None)
    assert stage.pick_scorer(files[:1], requested=None) == "rm"
