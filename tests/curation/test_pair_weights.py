"""Per-pair weights entering the pairs table: the `weight:` rule of the pairs stage and of
`prefsmith import` (clip(scale * column + shift, min, max), a declared choice, no code run),
and a weight column mapped by `prefsmith import`; bad weights quarantined with a reason."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError
from test_import import UF_ROWS, run
from test_pairs_stage import synthetic, write_sharded

from prefsmith.curation.pairs import build_pairs
from prefsmith.curation.weights import with_weight
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import PairsConfig, WeightConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.import_config import ImportConfig
from prefsmith.schemas.io import read_frame, read_table
from prefsmith.schemas.tables import PAIRS, WEIGHT

WEIGHTED = PAIRS.append(WEIGHT)


def test_rule_is_scale_shift_then_clip():
    """margins 0.5, 3, -1 with scale 2, shift 0.5, max 4: 1.5, 6.5 → 4, -1.5 → 0; null and NaN
    stay unusable (the reader quarantines them), never clipped into range."""
    table = pa.table({"margin": [0.5, 3.0, -1.0, None, float("nan")]})
    rule = WeightConfig(column="margin", scale=2.0, shift=0.5, max=4.0)
    weights = with_weight(table, rule).column("weight").to_pylist()
    assert weights[:4] == [1.5, 4.0, 0.0, None] and np.isnan(weights[4])


def test_rule_bounds_are_checked():
    with pytest.raises(ValidationError, match="weight.max"):
        WeightConfig(min=2.0, max=1.0)
    with pytest.raises(ValidationError):
        WeightConfig(min=-1.0)
    with pytest.raises(ValidationError):
        WeightConfig(column="len(open('/etc/passwd'))")  # a declared choice, not an expression


def test_pairs_stage_writes_the_rule_weight(tmp_path):
    paths = write_sharded(synthetic(30, 4, seed=3), tmp_path / "in", order_seed=0, shards=2)
    rule = {"column": "margin", "scale": 0.5, "shift": 0.25, "max": 1.5}
    config = PairsConfig(strategy="top_k_pairs", weight=rule)
    result = build_pairs(paths, config=config, out_dir=tmp_path / "out")
    pairs = read_frame(result.output, WEIGHTED)
    expected = np.clip(0.5 * pairs["margin"].to_numpy() + 0.25, 0.0, 1.5)
    assert pairs.height > 20 and len(set(expected)) > 2  # not a constant: the rule shows
    np.testing.assert_array_equal(pairs["weight"].to_numpy(), expected)
    plain = build_pairs(paths, config=PairsConfig(strategy="top_k_pairs"), out_dir=tmp_path / "p")
    unweighted = read_frame(plain.output, PAIRS)
    assert "weight" not in read_table(plain.output, PAIRS).column_names
    assert unweighted.equals(pairs.drop("weight"))  # the rule changes nothing else


def test_import_maps_a_weight_column(tmp_path):
    weights = [1.0, 0.0, 2.5, -1.0, "heavy", None]
    rows = [dict(row, w=w) for row, w in zip(UF_ROWS, weights, strict=True)]
    result, manifest, quarantined = run(tmp_path, rows, columns={"weight": "w"})
    pairs = read_table(result.output, WEIGHTED).to_pylist()
    by_chosen = {p["chosen"]: p["weight"] for p in pairs}
    assert by_chosen == {"a mouse 0": 1.0, "a mouse 1": 0.0, "a mouse 2": 2.5}
    assert sorted(q["row_ref"].rsplit(":", 1)[-1] for q in quarantined) == ["4", "5", "6"]
    assert {q["reason"] for q in quarantined} == {"invalid_weight"}
    assert manifest.dropped == {"invalid_weight": 3}
    assert manifest.rows_in == 6 == manifest.rows_out + 3


def test_import_without_a_weight_column_writes_none(tmp_path):
    result, _, _ = run(tmp_path, UF_ROWS)
    assert "weight" not in read_table(result.output, PAIRS).column_names


def test_import_rule_weights_from_the_margin(tmp_path):
    result, _, quarantined = run(tmp_path, UF_ROWS, weight={"column": "margin", "scale": 0.25})
    pairs = read_table(result.output, WEIGHTED).to_pylist()
    assert not quarantined and len(pairs) == 6
    assert all(p["weight"] == pytest.approx(0.25 * p["margin"]) for p in pairs)


def test_import_rule_on_unscored_rows_quarantines_them(tmp_path):
    unscored = [{k: v for k, v in r.items() if not k.startswith("score")} for r in UF_ROWS[:2]]
    _, manifest, quarantined = run(tmp_path, unscored, weight={"column": "margin"})
    assert manifest.dropped == {"invalid_weight": 2}
    assert all("margin" in q["detail"] for q in quarantined)


def test_import_weight_sources_are_exclusive(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(UF_ROWS[0]) + "\n")
    both = {"path": str(data), "columns": {"weight": "w"}, "weight": {"column": "margin"}}
    with pytest.raises(ConfigError, match="columns.weight and weight both set"):
        parse_config(ImportConfig, both)
    with pytest.raises(ConfigError, match="shape 'responses'"):
        parse_config(
            ImportConfig, {"path": str(data), "shape": "responses", "columns": {"weight": "w"}}
        )


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_keeps_the_weight_column(tmp_path, fmt):
    import polars as pl

    from prefsmith.curation.export import export_trl

    result, _, _ = run(tmp_path, UF_ROWS[:3], weight={"column": "margin", "scale": 0.5})
    out = export_trl(result.output, out=tmp_path / f"trl.{fmt}", format=fmt)
    frame = pl.read_ndjson(out) if fmt == "jsonl" else pl.read_parquet(out)
    assert frame["weight"].to_list() == pytest.approx([0.5 * m for m in frame["margin"]])
    (tmp_path / "plain").mkdir()
    plain, _, _ = run(tmp_path / "plain", UF_ROWS[:3])
    assert "weight" not in pl.read_ndjson(export_trl(plain.output, out=tmp_path / "p.jsonl"))
