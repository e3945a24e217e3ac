"""The pairs stage's contract: scorer choice, schema checks, row-order independence, ids, keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from prefsmith.curation.pairs import build_pairs, pair_ids, rank_key
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.errors import ConfigError, InputError, SchemaError
from prefsmith.schemas.ids import pair_id
from prefsmith.schemas.io import read_frame, shard_name, write_table
from prefsmith.schemas.tables import PAIRS, PROMPTS, RESPONSES, SCORES


def synthetic(n_prompts: int, per_prompt: int, *, seed: int) -> dict[str, pl.DataFrame]:
    """Random prompts/responses/scores with ties (scores on a 0.5 grid) and duplicate texts."""
    rng = np.random.default_rng(seed)
    pids = [f"p{i:03d}" for i in range(n_prompts)]
    rows = [(p, i) for p in pids for i in range(per_prompt)]
    n = len(rows)
    responses = pl.DataFrame(
        {
            "prompt_id": [p for p, _ in rows],
            "response_id": [f"{p}-{i}" for p, i in rows],
            "sample_idx": pl.Series([i for _, i in rows], dtype=pl.Int32),
            "response": [f"text {t}" for t in rng.integers(0, 4, size=n)],
            "n_tokens": pl.Series(rng.integers(1, 30, size=n), dtype=pl.Int32),
            "finish_reason": "stop",
            "generator": "g",
            "gen_config_hash": "h",
        }
    )
    scores = responses.select(
        "response_id",
        "prompt_id",
        scorer=pl.lit("rm"),
        score=pl.Series(rng.integers(0, 6, size=n) / 2.0),
        objectives=pl.lit([], dtype=pl.List(pl.Struct({"name": pl.String, "value": pl.Float64}))),
        n_tokens="n_tokens",
    )
    prompts = pl.DataFrame(
        {
            "prompt_id": pids,
            "messages": [[{"role": "user", "content": f"q {p}"}] for p in pids],
            "source": "test",
            "metadata": "{}",
        }
    )
    return {"prompts": prompts, "responses": responses, "scores": scores}


SCHEMAS = {"prompts": PROMPTS, "responses": RESPONSES, "scores": SCORES}


def write_sharded(
    tables: dict[str, pl.DataFrame], root: Path, *, order_seed: int, shards: int
) -> dict:
    """Write each table shuffled (order_seed) and split into `shards` files in a folder."""
    paths = {}
    for name, frame in tables.items():
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=order_seed)
        for index, part in enumerate(np.array_split(np.arange(shuffled.height), shards)):
            write_table(shuffled[part.tolist()], root / name / shard_name(index), SCHEMAS[name])
        paths[name] = root / name
    return paths


def run(paths: dict, out_dir: Path, **config) -> pl.DataFrame:
    result = build_pairs(
        {
            "scores": paths["scores"],
            "responses": paths["responses"],
            "prompts": paths["prompts"],
        },
        config=PairsConfig(**config),
        out_dir=out_dir,
    )
    return read_frame(result.output, PAIRS)


@pytest.mark.parametrize("strategy", ["best_vs_worst", "best_vs_random", "top_k_pairs"])
def test_output_ignores_input_row_order_and_sharding(tmp_path, strategy):
    tables = synthetic(40, 5, seed=1)
    one = write_sharded(tables, tmp_path / "a", order_seed=0, shards=1)
    three = write_sharded(tables, tmp_path / "b", order_seed=99, shards=3)
    first = run(one, tmp_path / "out-a", strategy=strategy, length_penalty=0.01, seed=5)
    second = run(three, tmp_path / "out-b", strategy=strategy, length_penalty=0.01, seed=5)
    assert first.height > 20
    assert first.equals(second)
    assert first.select("prompt_id", "pair_id").equals(
        first.select("prompt_id", "pair_id").sort("prompt_id", "pair_id")
    )


def test_several_scorers_need_config_scorer(tmp_path):
    tables = synthetic(6, 3, seed=2)
    other = tables["scores"].with_columns(scorer=pl.lit("judge"), score=-pl.col("score"))
    tables["scores"] = pl.concat([tables["scores"], other])
    paths = write_sharded(tables, tmp_path, order_seed=0, shards=1)
    with pytest.raises(
        ConfigError, match=r"2 scorers \['judge', 'rm'\]; set pairs.scorer"
    ) as error:
        run(paths, tmp_path / "out")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="pairs.scorer='nope' is not in the scores table"):
        run(paths, tmp_path / "out", scorer="nope")
    by_rm = run(paths, tmp_path / "rm", scorer="rm")
    by_judge = run(paths, tmp_path / "judge", scorer="judge")
    assert set(by_rm["scorer"]) == {"rm"} and set(by_judge["scorer"]) == {"judge"}
    # the judge's scores are rm's negated: its best is rm's worst, so the margins agree
    assert by_judge.select("prompt_id", "margin").equals(by_rm.select("prompt_id", "margin"))
    assert (by_judge["score_chosen"] == -by_rm["score_rejected"]).all()


def test_schema_problems_are_reported_before_work(tmp_path):
    tables = synthetic(3, 2, seed=3)
    paths = write_sharded(tables, tmp_path, order_seed=0, shards=1)
    bad = tmp_path / "bad-scores.parquet"
    tables["scores"].drop("scorer").with_columns(pl.col("score").cast(pl.Float32)).write_parquet(
        bad
    )
    with pytest.raises(SchemaError, match="missing column 'scorer'.*column 'score' is float"):
        run({**paths, "scores": bad}, tmp_path / "out")


def test_a_csv_input_is_named_in_one_line(tmp_path):
    paths = write_sharded(synthetic(3, 2, seed=3), tmp_path, order_seed=0, shards=1)
    csv = tmp_path / "scores.csv"
    csv.write_text("response_id,score\nr1,0.5\n")
    with pytest.raises(
        InputError, match=r"^scores .*scores\.csv: a CSV file, not Parquet; "
    ) as error:
        run({**paths, "scores": csv}, tmp_path / "out")
    assert "\n" not in str(error.value)


def test_manifest_is_json_with_inputs_and_outputs(tmp_path):
    paths = write_sharded(synthetic(5, 3, seed=4), tmp_path, order_seed=0, shards=2)
    result = build_pairs(
        {
            "scores": paths["scores"],
            "responses": paths["responses"],
            "prompts": paths["prompts"],
        },
        config=PairsConfig(),
        out_dir=tmp_path / "out",
    )
    manifest = json.loads(result.manifest.read_text())
    assert result.manifest.name == "pairs.manifest.json"
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["scores", "responses", "prompts"]
    assert all(i["sha256"] for i in manifest["inputs"])
    assert manifest["outputs"]["pairs"].endswith("pairs.parquet")
    assert manifest["outputs"]["quarantine"].endswith("pairs.quarantine.parquet")


@pytest.mark.parametrize(
    "chosen, rejected",
    [
        ("p-0", "p-1"),
        ('q"x-0', "q-1"),
        ("back\\slash-0", "b-1"),
        ("tab\t-0", "n\n-1"),
        ("é✓-0", "ü-1"),
    ],
)
def test_pair_ids_fast_path_equals_schemas_pair_id(chosen, rejected):
    assert pair_ids(pl.Series([chosen]), pl.Series([rejected])) == [pair_id(chosen, rejected)]


def test_rank_key_orders_like_selection_score_then_is_unique():
    values = [-1e300, -2.5, -1.0, -1e-300, -0.0, 0.0, 1e-300, 0.5, 1.0, 2.0, 1e300]
    frame = pl.DataFrame(
        {
            "score": values,
            "n_tokens": pl.Series([0] * len(values), dtype=pl.Int32),
            "response_id": [f"r{i}" for i in range(len(values))],
        }
    )
    keys = frame.select(rank_key(length_penalty=0.0))[:, 0].to_list()
    order = sorted(range(len(values)), key=keys.__getitem__)
    assert [values[i] for i in order] == sorted(values)
    assert len(set(keys)) == len(keys)
    assert keys[4] >> 64 == keys[5] >> 64  # -0.0 and 0.0 are one selection score
    penalized = frame.with_columns(n_tokens=pl.Series(range(len(values)), dtype=pl.Int32))
    keys = penalized.select(rank_key(length_penalty=0.25))[:, 0].to_list()
    selection = [v - 0.25 * i for i, v in enumerate(values)]
    assert sorted(range(len(values)), key=keys.__getitem__) == sorted(
        range(len(values)), key=lambda i: (selection[i], keys[i])
    )


def test_pair_ids_mixed_rows_keep_their_order():
    chosen = ["a-0", 'q"-0', "b-0", "c\\-0", "d-0"]
    rejected = ["a-1", "q-1", "b\x01-1", "c-1", "d-1"]
    assert pair_ids(pl.Series(chosen), pl.Series(rejected)) == [
        pair_id(c, r) for c, r in zip(chosen, rejected, strict=True)
    ]
