"""A user-made pairs table with chosen == rejected: the pair is quarantined as `identical_pair`
before training and in the reference pass, and both manifests' counts reconcile."""

from __future__ import annotations

import polars as pl

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, QUARANTINE
from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.training.pair_examples import build_examples, read_pairs
from prefsmith.training.stage import train

SETTINGS = {"max_length": 128, "max_prompt_length": 64, "save_steps": 0, "seed": 0}
SETTINGS_REF = {"max_length": 128, "max_prompt_length": 64}
REFERENCE_FREE = [{"name": "simpo", "params": {"beta": 2.0}}]


def pairs_with_two_identical(tmp_path, pair_rows):
    """6 pairs; pairs 1 and 4 get rejected := chosen."""
    rows = pair_rows(6, seed=3)
    for index in (1, 4):
        rows[index]["rejected"] = rows[index]["chosen"]
    path = write_table(rows, tmp_path / "pairs" / "pairs.parquet", PAIRS)
    return path, {rows[1]["pair_id"], rows[4]["pair_id"]}


def test_build_examples_quarantines_identical_pairs(tiny, tiny_tokenizer, tmp_path, pair_rows):
    pairs, identical = pairs_with_two_identical(tmp_path, pair_rows)
    config = parse_config(
        TrainConfig, {"policy": str(tiny.policy), "loss": REFERENCE_FREE, **SETTINGS}
    )
    rows, has_reference = read_pairs(pairs, config=config)
    examples, rejected = build_examples(
        rows, tokenizer=tiny_tokenizer, config=config, pairs=pairs, has_reference=has_reference
    )
    assert len(examples) == 4
    assert {(r.row_ref, r.reason) for r in rejected} == {(p, "identical_pair") for p in identical}


def test_train_counts_identical_pairs_as_dropped(tiny, tmp_path, pair_rows):
    pairs, identical = pairs_with_two_identical(tmp_path, pair_rows)
    config = parse_config(
        TrainConfig,
        {"policy": str(tiny.policy), "loss": REFERENCE_FREE, "max_steps": 1, **SETTINGS},
    )
    result = train({"pairs": pairs}, config=config, out_dir=tmp_path / "run")
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out) == (6, 4)
    assert manifest.dropped == {"identical_pair": 2}
    assert manifest.rows_in == manifest.rows_out + sum(manifest.dropped.values())
    quarantine = read_frame(result.quarantine, QUARANTINE)
    assert set(quarantine["row_ref"]) == identical
    assert quarantine["reason"].to_list() == ["identical_pair"] * 2
    assert quarantine.filter(pl.col("stage").is_null()).height == 0


def test_reference_quarantines_identical_pairs(tiny, tmp_path, pair_rows):
    """The reference pass refuses them too (same reason), so no forward is spent on them and
    its counts reconcile."""
    from prefsmith.schemas.tables import PAIRS_WITH_REFERENCE
    from prefsmith.schemas.train_configs import ReferenceConfig
    from prefsmith.training.reference import reference_pass

    pairs, identical = pairs_with_two_identical(tmp_path, pair_rows)
    config = parse_config(ReferenceConfig, {"model": str(tiny.policy), **SETTINGS_REF})
    result = reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "ref")
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out) == (6, 4)
    assert manifest.dropped == {"identical_pair": 2}
    kept = read_frame(result.output, PAIRS_WITH_REFERENCE)
    assert not set(kept["pair_id"]) & identical and kept["ref_logp_chosen"].is_finite().all()
    quarantine = read_frame(result.quarantine, QUARANTINE)
    assert set(quarantine["row_ref"]) == identical
    assert set(quarantine["reason"]) == {"identical_pair"}
