"""The pair browser's interactive charts (plotly): score histograms whose hover gives each bin's
range and count, and a chosen-vs-rejected scatter whose points are pairs — hover names the pair,
a click filters the browser's table to it, and the legend toggles each side.

plotly.js is written once beside the report (`figures.write_plotly_js`), not fetched from a
CDN: reports are opened from CI artifacts and air-gapped machines. Bins are numpy's
(`figures.histogram_bins`), so the hover count is exactly the number a test can recompute. The
scatter draws at most `figures.MAX_POINTS` pairs (a seeded sample that keeps the margin extremes).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl

from prefsmith.inspection.figures import MAX_POINTS, chart_html, histogram_bins, layout

BINS = 30
SIDE_COLOURS = {"chosen": "#2563eb", "rejected": "#dc2626"}


def score_histogram(rows: pl.DataFrame) -> go.Figure:
    sides = {
        s: rows[f"score_{s}"].cast(pl.Float64).fill_null(np.nan).to_numpy() for s in SIDE_COLOURS
    }
    edges, counts = histogram_bins(sides, bins=BINS)
    ranges = np.stack([edges[:-1], edges[1:]], axis=1)
    figure = go.Figure()
    for side, count in counts.items():
        figure.add_bar(
            x=(edges[:-1] + edges[1:]) / 2, y=count, width=np.diff(edges), name=side,
            customdata=ranges, marker_color=SIDE_COLOURS[side], opacity=0.6,
            hovertemplate="%{customdata[0]:.4g} – %{customdata[1]:.4g}<br>count %{y}<extra>%{fullData.name}</extra>",
        )  # fmt: skip
    points = sum(int(c.sum()) for c in counts.values())
    return layout(
        figure,
        title="Scores by side",
        x="score",
        y="pairs",
        points=points,
        height=360,
        barmode="overlay",
    )


def score_scatter(rows: pl.DataFrame, *, seed: int = 0) -> go.Figure:
    points = sampled(rows, limit=MAX_POINTS, seed=seed)
    figure = go.Figure(
        go.Scatter(
            x=points["score_rejected"], y=points["score_chosen"], mode="markers",
            customdata=points["pair_id"], name="pairs", marker={"size": 6, "opacity": 0.7},
            hovertemplate="%{customdata}<br>chosen %{y:.4g}<br>rejected %{x:.4g}<extra></extra>",
        )
    )  # fmt: skip
    return layout(
        figure, title="Chosen vs rejected score (click a pair)", x="rejected", y="chosen",
        points=points.height, height=360,
    )  # fmt: skip


def sampled(rows: pl.DataFrame, *, limit: int, seed: int = 0) -> pl.DataFrame:
    """At most `limit` rows, seeded, always with the smallest and largest finite margins."""
    finite = rows.filter(pl.col("margin").is_not_null() & pl.col("margin").is_finite())
    if rows.height <= limit or finite.height == 0:
        return rows
    extremes = {finite.sort("margin")["pair_id"][0], finite.sort("margin")["pair_id"][-1]}
    others = rows.filter(~pl.col("pair_id").is_in(list(extremes)))
    take = np.random.default_rng(seed).choice(others.height, limit - len(extremes), replace=False)
    return pl.concat([rows.filter(pl.col("pair_id").is_in(list(extremes))), others[np.sort(take)]])


def chart_divs(rows: pl.DataFrame) -> str:
    """The two charts as `figures.chart_html` divs (the page's head loads plotly.js)."""
    figures = {"pair-hist": score_histogram(rows), "pair-scatter": score_scatter(rows)}
    divs = "".join(
        f"<figure>{chart_html(fig, div_id=div)}</figure>" for div, fig in figures.items()
    )
    return f"<div class='grid2'>{divs}</div>"
