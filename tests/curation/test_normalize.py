"""prefsmith.curation.normalize: the declared (scale, shift) against numpy and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from prefsmith.curation.normalize import apply_transform, score_transform
from prefsmith.schemas.data_configs import NormalizationConfig
from prefsmith.schemas.errors import StageError


def test_none_is_identity():
    assert score_transform([5.0, 7.0], config=NormalizationConfig()) == (1.0, 0.0)


def test_affine_comes_from_the_config_and_ignores_scores():
    config = NormalizationConfig(method="affine", scale=10.0, shift=-1.5)
    assert score_transform([float("nan")], config=config) == (10.0, -1.5)


def test_zscore_by_hand():
    """scores 1, 2, 3: mean 2, population std sqrt(2/3) -> scale 1/std, shift -2/std."""
    scale, shift = score_transform(
        pl.Series([1.0, 2.0, 3.0]), config=NormalizationConfig(method="zscore")
    )
    std = math.sqrt(2.0 / 3.0)
    assert scale == pytest.approx(1.0 / std, rel=1e-12)
    assert shift == pytest.approx(-2.0 / std, rel=1e-12)


def test_zscore_matches_numpy_and_skips_non_finite():
    rng = np.random.default_rng(7)
    finite = rng.normal(0.12, 0.04, size=500)  # ArmoRM-like scale
    scores = pl.Series(np.concatenate([finite, [np.nan, np.inf, -np.inf]])).extend_constant(None, 2)
    scale, shift = score_transform(scores, config=NormalizationConfig(method="zscore"))
    assert scale == pytest.approx(1.0 / np.std(finite), rel=1e-12)
    assert shift == pytest.approx(-np.mean(finite) / np.std(finite), rel=1e-12)
    normalized = apply_transform(finite, scale=scale, shift=shift)
    assert np.mean(normalized) == pytest.approx(0.0, abs=1e-12)
    assert np.std(normalized) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("scores", [[0.3, 0.3, 0.3], [4.0], [float("nan"), 1.0]])
def test_zscore_of_equal_scores_is_one_line_error(scores):
    with pytest.raises(
        StageError, match="all .* finite scores equal .* use method: none or affine"
    ) as error:
        score_transform(scores, config=NormalizationConfig(method="zscore"))
    assert "\n" not in str(error.value)


def test_zscore_without_finite_scores_is_an_error():
    with pytest.raises(StageError, match="no finite scores"):
        score_transform([float("nan")], config=NormalizationConfig(method="zscore"))


def test_apply_transform_on_floats_series_and_expressions():
    assert apply_transform(2.0, scale=3.0, shift=1.0) == 7.0
    series = apply_transform(pl.Series([0.0, 1.0]), scale=2.0, shift=-1.0)
    assert series.to_list() == [-1.0, 1.0]
    frame = pl.DataFrame({"s": [1.0, 4.0]}).select(
        apply_transform(pl.col("s"), scale=0.5, shift=0.0)
    )
    assert frame["s"].to_list() == [0.5, 2.0]
