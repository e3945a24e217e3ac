"""The `weight:` rule of the pairs and import configs (prefsmith.schemas.data_configs.WeightConfig)
as a polars expression: a declared choice of column, scale, shift and clip bounds, never code
from the config. The same function serves both stages, so a rule gives the same weights
whether the pairs were built or imported.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from prefsmith.schemas.data_configs import WeightConfig
from prefsmith.schemas.quarantine import Rejected
from prefsmith.schemas.tables import WEIGHT
from prefsmith.schemas.weights import INVALID_WEIGHT, weight_problem


def weight_expression(rule: WeightConfig) -> pl.Expr:
    """`clip(scale * <column> + shift, min, max)` as a Float64 expression named `weight`.

    A null or non-finite input stays null / non-finite (NaN is not clipped into range), so the
    stage that reads the value can quarantine the pair rather than train on a made-up weight.
    """
    raw = pl.col(rule.column).cast(pl.Float64) * rule.scale + rule.shift
    clipped = raw.clip(lower_bound=rule.min, upper_bound=rule.max)
    return pl.when(raw.is_nan()).then(raw).otherwise(clipped).alias(WEIGHT.name)


def with_weight(table: pa.Table, rule: WeightConfig) -> pa.Table:
    """`table` with its `weight` column computed by `rule` (replacing one that was there)."""
    frame = pl.from_arrow(table.select([rule.column]))
    weights = frame.select(weight_expression(rule)).to_arrow().column(0).cast(WEIGHT.type)
    if WEIGHT.name in table.column_names:
        table = table.drop_columns([WEIGHT.name])
    return table.append_column(WEIGHT, weights)


def weighted(schema: pa.Schema, rule: WeightConfig | None) -> pa.Schema:
    """`schema` plus the `weight` column when a stage writes weights by `rule`."""
    return schema if rule is None else schema.append(WEIGHT)


def rule_weights(
    rows: list[tuple[str, dict]], rule: WeightConfig
) -> tuple[list[tuple[str, dict]], list[Rejected]]:
    """`(row_ref, pair row)`s with their `weight` by `rule`; a pair whose rule input is missing
    or not finite (an unscored import has no margin) is quarantined as `invalid_weight`."""
    values = pa.table({rule.column: pa.array([row[rule.column] for _, row in rows], pa.float64())})
    weights = with_weight(values, rule).column(WEIGHT.name).to_pylist()
    kept, rejected = [], []
    for (ref, row), weight in zip(rows, weights, strict=True):
        if problem := weight_problem(weight):
            detail = f"weight rule on {rule.column} ({row[rule.column]}): {problem}"
            rejected.append(Rejected(ref, INVALID_WEIGHT, detail, row["pair_id"]))
        else:
            kept.append((ref, {**row, WEIGHT.name: weight}))
    return kept, rejected
