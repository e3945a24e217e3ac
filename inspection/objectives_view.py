"""The per-objective part of the inspect report (multi-objective scorers such as ArmoRM): one
table row per objective (means, agreement with the overall preference, Spearman ρ with the
score), the gating weights (mean and the share of responses each objective dominates), and one
chosen-vs-rejected histogram per objective. Rows come as plain lists, so the terminal (rich)
and the HTML page show the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
import polars as pl

from prefsmith.inspection import figures as fg
from prefsmith.inspection.stats import GATE
from prefsmith.inspection.summary import fmt_number

OBJECTIVE_HEADER = [
    "objective",
    "chosen mean",
    "rejected mean",
    "margin mean",
    "agreement",
    "ρ with score",
]
GATING_HEADER = ["objective", "mean gating weight", "dominant share"]


def objective_rows(objectives: Mapping) -> list[list[str]]:
    """One row per objective (gating weights excluded: `gating_rows` has them)."""
    return [
        [
            name,
            fmt_number(o["chosen"]["mean"]),
            fmt_number(o["rejected"]["mean"]),
            fmt_number(o["margin"]["mean"]),
            fmt_number(o["agreement"], 3),
            fmt_number(o.get("score_spearman"), 3),
        ]
        for name, o in objectives.items()
        if not name.startswith(GATE)
    ]


def gating_rows(gating: Mapping) -> list[list[str]]:
    """One row per gated objective, the most weighted first."""
    ordered = sorted(gating.items(), key=lambda item: -(item[1]["mean_weight"] or 0.0))
    return [
        [name, fmt_number(g["mean_weight"], 3), f"{g['dominant_share']:.1%}"] for name, g in ordered
    ]


def objective_charts(stats: Mapping, objectives: pl.DataFrame) -> list[go.Figure]:
    """One chosen-vs-rejected histogram per objective (ArmoRM has 19), gates left out."""
    charts = []
    for (name,), group in objectives.group_by("name", maintain_order=True):
        if str(name).startswith(GATE):
            continue
        o = stats["objectives"].get(str(name), {})
        charts.append(
            fg.histogram(
                {"chosen": group["chosen"].to_numpy(), "rejected": group["rejected"].to_numpy()},
                title=f"{name} (agrees: {fmt_number(o.get('agreement'), 2)}, "
                f"ρ with score: {fmt_number(o.get('score_spearman'), 2)})",
                xlabel="objective value",
                bins=30,
            )
        )
    return charts
