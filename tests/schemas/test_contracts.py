"""The typed cross-stage facts of a manifest and their one reader each (prefsmith.schemas.manifest)."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from prefsmith.schemas.contracts import ScoreTransform, TokenLengths
from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.manifest import (
    Manifest,
    check_reference_lengths,
    manifest_path,
    read_score_transform,
)


class AnyConfig:  # TokenLengths.of reads any object with the two fields (Reference/TrainConfig)
    max_length = 64
    max_prompt_length = 32


ZSCORE = ScoreTransform(method="zscore", scale=10.0, shift=-1.5, scorer="armo")


def write_manifest(table, **fields) -> None:
    Manifest(
        stage="pairs",
        unit="prompt",
        config={},
        inputs=[],
        outputs={},
        rows_in=1,
        rows_out=1,
        **fields,
    ).write(manifest_path(table))


def test_declared_transform_round_trips_through_the_manifest_file(tmp_path, caplog):
    table = tmp_path / "pairs.parquet"
    write_manifest(table, score_transform=ZSCORE)
    with caplog.at_level(logging.WARNING, logger="prefsmith.schemas.manifest"):
        read = read_score_transform(table)
    assert read == ZSCORE and read.declared and read.label() == "zscore"
    assert read.apply(0.2) == pytest.approx(0.5)
    assert caplog.text == ""


def test_no_manifest_is_the_identity_with_a_warning(tmp_path, caplog):
    table = tmp_path / "mine.parquet"
    with caplog.at_level(logging.WARNING, logger="prefsmith.schemas.manifest"):
        read = read_score_transform(table)
    assert (read.scale, read.shift, read.method, read.declared) == (1.0, 0.0, "none", False)
    assert read.label().startswith("none") and read.label() != "none"
    assert "no manifest at" in caplog.text and "scores are used raw" in caplog.text


def test_a_manifest_without_a_transform_is_the_identity_with_a_warning(tmp_path, caplog):
    table = tmp_path / "pairs.parquet"
    write_manifest(table)
    with caplog.at_level(logging.WARNING, logger="prefsmith.schemas.manifest"):
        assert read_score_transform(table) == ScoreTransform.assumed_identity()
    assert "declares no score transform" in caplog.text


def test_an_assumed_identity_carried_on_still_warns(tmp_path, caplog):
    """The reference pass carries an assumed identity on: the trainer is told again."""
    table = tmp_path / "pairs_ref.parquet"
    write_manifest(table, score_transform=ScoreTransform.assumed_identity())
    with caplog.at_level(logging.WARNING, logger="prefsmith.schemas.manifest"):
        assert not read_score_transform(table).declared
    assert "declares no score transform" in caplog.text


def test_the_untyped_extra_of_older_builds_is_refused(tmp_path):
    table = tmp_path / "pairs.parquet"
    write_manifest(table, extra={"score_transform": {"scale": 2.0, "shift": 0.5}})
    with pytest.raises(InputError, match="older prefsmith; rerun the pairs stage"):
        read_score_transform(table)


def test_an_unreadable_manifest_is_one_line(tmp_path):
    table = tmp_path / "pairs.parquet"
    manifest_path(table).write_text('{"stage": "pairs"}')
    with pytest.raises(InputError, match="cannot read manifest .*unit: Field required") as error:
        read_score_transform(table)
    assert "\n" not in str(error.value)


def test_transform_values_are_checked():
    with pytest.raises(ValidationError, match="finite"):
        ScoreTransform(method="affine", scale=float("inf"), shift=0.0, scorer=None)
    with pytest.raises(ValidationError, match="method"):
        ScoreTransform(method="minmax", scale=1.0, shift=0.0, scorer=None)


def test_reference_lengths_must_equal_the_trainers(tmp_path, caplog):
    table = tmp_path / "pairs_ref.parquet"
    write_manifest(table, lengths=TokenLengths(max_length=256, max_prompt_length=128))
    check_reference_lengths(table, expected=TokenLengths(max_length=256, max_prompt_length=128))
    with pytest.raises(ConfigError) as error:
        check_reference_lengths(table, expected=TokenLengths(max_length=512, max_prompt_length=128))
    message = str(error.value)
    assert "computed with max_length=256, max_prompt_length=128" in message
    assert "train has max_length=512" in message and "rerun the reference pass" in message
    assert "\n" not in message
    with caplog.at_level(logging.WARNING, logger="prefsmith.schemas.manifest"):
        check_reference_lengths(tmp_path / "mine.parquet", expected=TokenLengths.of(AnyConfig))
    assert "records no reference lengths" in caplog.text


def test_token_lengths_keep_room_for_a_completion():
    with pytest.raises(ValidationError, match="must be < max_length"):
        TokenLengths(max_length=64, max_prompt_length=64)
