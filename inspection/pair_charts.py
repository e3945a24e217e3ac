"""The pair browser's interactive charts (plotly): score histograms whose hover gives each bin's
range and count, and a chosen-vs-rejected scatter whose points are pairs — hover names the pair,
a click filters the browser's table to it, and the legend toggles each side.

plotly.js is written once beside the report (`PLOTLY_JS`, referenced by a relative `src`), not
fetched from a CDN: reports are opened from CI artifacts and air-gapped machines. Bins are
computed here (numpy), so the hover count is exactly the number a test can recompute. The
scatter draws at most `MAX_POINTS` pairs (a seeded sample that keeps the margin extremes).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs

from prefsmith.schemas.io import write_text

PLOTLY_JS = "plotly.min.js"
MAX_POINTS = 5_000  # SVG points stay smooth in a browser up to a few thousand
BINS = 30
SIDE_COLOURS = {"chosen": "#2563eb", "rejected": "#dc2626"}


def write_plotly_js(folder: Path) -> Path:
    """plotly.js beside the report (rewritten only when its content differs)."""
    path = Path(folder) / PLOTLY_JS
    source = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(source.encode()):
        write_text(source, path)
    return path


def histogram_bins(values: dict[str, np.ndarray], *, bins: int = BINS):
    """Shared bin edges over every side's finite values, and each side's counts."""
    finite = {k: v[np.isfinite(v)] for k, v in values.items()}
    pooled = np.concatenate(list(finite.values())) if finite else np.array([])
    if pooled.size == 0:
        return np.array([0.0, 1.0]), {k: np.zeros(1, int) for k in finite}
    edges = _edges(pooled, bins=bins)
    return edges, {k: np.histogram(v, bins=edges)[0] for k, v in finite.items()}


def _edges(pooled: np.ndarray, *, bins: int) -> np.ndarray:
    """`bins` equal bins over the range; integer data (token or word counts) gets integer-centred
    bins of integer width, so no bin is empty merely because it falls between two integers."""
    lo, hi = float(pooled.min()), float(pooled.max())
    if hi - lo < 1e6 and np.all(pooled == np.round(pooled)):
        width = max(1, math.ceil((hi - lo + 1) / bins))
        return lo - 0.5 + width * np.arange(math.ceil((hi - lo + 1) / width) + 1)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)


def score_histogram(rows: pl.DataFrame) -> go.Figure:
    sides = {
        s: rows[f"score_{s}"].cast(pl.Float64).fill_null(np.nan).to_numpy() for s in SIDE_COLOURS
    }
    edges, counts = histogram_bins(sides)
    ranges = np.stack([edges[:-1], edges[1:]], axis=1)
    figure = go.Figure()
    for side, count in counts.items():
        figure.add_bar(
            x=(edges[:-1] + edges[1:]) / 2, y=count, width=np.diff(edges), name=side,
            customdata=ranges, marker_color=SIDE_COLOURS[side], opacity=0.6,
            hovertemplate="%{customdata[0]:.4g} – %{customdata[1]:.4g}<br>count %{y}<extra>%{fullData.name}</extra>",
        )  # fmt: skip
    points = sum(int(c.sum()) for c in counts.values())
    return _layout(
        figure, title="Scores by side", x="score", y="pairs", points=points, barmode="overlay"
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
    return _layout(
        figure, title="Chosen vs rejected score (click a pair)", x="rejected", y="chosen",
        points=points.height,
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


def _layout(figure: go.Figure, *, title: str, x: str, y: str, points: int, **more) -> go.Figure:
    return figure.update_layout(
        template="none", title=title, xaxis_title=x, yaxis_title=y, height=360,
        meta={"points": points},  # what `figures.chart_html` writes as data-points
        margin={"l": 56, "r": 16, "t": 48, "b": 48}, legend={"orientation": "h", "y": -0.2},
        **more,
    )  # fmt: skip


def chart_divs(rows: pl.DataFrame) -> str:
    """The two charts as `figures.chart_html` divs (the page's head loads plotly.js)."""
    from prefsmith.inspection.figures import chart_html  # figures imports this module's bins

    figures = {"pair-hist": score_histogram(rows), "pair-scatter": score_scatter(rows)}
    divs = "".join(
        f"<figure>{chart_html(fig, div_id=div)}</figure>" for div, fig in figures.items()
    )
    return f"<div class='grid2'>{divs}</div>"
