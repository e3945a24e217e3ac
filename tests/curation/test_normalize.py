"""prefsmith.curation.normalize: the declared ScoreTransform against numpy and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from prefsmith.curation.normalize import score_transform
from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.schemas.data_configs import NormalizationConfig
from prefsmith.schemas.errors import StageError


def _transform(scores, **config) -> ScoreTransform:
    return score_transform(scores, config=NormalizationConfig(**config), scorer="rm")


def test_none_is_identity():
    assert _transform([5.0, 7.0]) == ScoreTransform(
        method="none", scale=1.0, shift=0.0, scorer="rm"
    )


def test_affine_comes_from_the_config_and_ignores_scores():
    transform = _transform([float("nan")], method="affine", scale=10.0, shift=-1.5)
    assert (transform.method, transform.scale, transform.shift) == ("affine", 10.0, -1.5)
    assert transform.declared and transform.scorer == "rm"


def test_zscore_by_hand():
    """scores 1, 2, 3: mean 2, population std sqrt(2/3) -> scale 1/std, shift -2/std."""
    transform = _transform(pl.Series([1.0, 2.0, 3.0]), method="zscore")
    std = math.sqrt(2.0 / 3.0)
    assert transform.method == "zscore"
    assert transform.scale == pytest.approx(1.0 / std, rel=1e-12)
    assert transform.shift == pytest.approx(-2.0 / std, rel=1e-12)


def test_zscore_matches_numpy_and_skips_non_finite():
    rng = np.random.default_rng(7)
    finite = rng.normal(0.12, 0.04, size=500)  # ArmoRM-like scale
    scores = pl.Series(np.concatenate([finite, [np.nan, np.inf, -np.inf]])).extend_constant(None, 2)
    transform = _transform(scores, method="zscore")
    assert transform.scale == pytest.approx(1.0 / np.std(finite), rel=1e-12)
    assert transform.shift == pytest.approx(-np.mean(finite) / np.std(finite), rel=1e-12)
    normalized = transform.apply(finite)
    assert np.mean(normalized) == pytest.approx(0.0, abs=1e-12)
    assert np.std(normalized) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("scores", [[0.3, 0.3, 0.3], [4.0], [float("nan"), 1.0]])
def test_zscore_of_equal_scores_is_one_line_error(scores):
    with pytest.raises(
        StageError, match="all .* finite scores equal .* use method: none or affine"
    ) as error:
        _transform(scores, method="zscore")
    assert "\n" not in str(error.value)


def test_zscore_without_finite_scores_is_an_error():
    with pytest.raises(StageError, match="no finite scores"):
        _transform([float("nan")], method="zscore")


def test_apply_on_floats_series_and_expressions():
    transform = ScoreTransform(method="affine", scale=3.0, shift=1.0, scorer="rm")
    assert transform.apply(2.0) == 7.0
    series = ScoreTransform(method="affine", scale=2.0, shift=-1.0, scorer="rm").apply(
        pl.Series([0.0, 1.0])
    )
    assert series.to_list() == [-1.0, 1.0]
    half = ScoreTransform(method="affine", scale=0.5, shift=0.0, scorer="rm")
    frame = pl.DataFrame({"s": [1.0, 4.0]}).select(half.apply(pl.col("s")))
    assert frame["s"].to_list() == [0.5, 2.0]
