"""The plotly charts of both HTML reports (`prefsmith inspect`, `prefsmith eval`).

Every builder returns a `plotly.graph_objects.Figure` whose `layout.meta["points"]` is the number
of data values it shows; `chart_html` turns one into the page fragment
`<div class="chart" data-title=... data-points=N>` plus the `Plotly.newPlot` call that draws it
with the shared `plotly.min.js` written beside the report (`write_plotly_js`): no
CDN, no copy of plotly.js per chart. N = 0 is an empty chart with a "no data" note.

| builder          | shows                                                                   |
|------------------|-------------------------------------------------------------------------|
| `histogram`      | overlaid histograms on shared bins; hover: bin range and integer count  |
| `scatter`        | (x, y) points named by an id (hover), optional y = x diagonal           |
| `curves`         | curves y(x) with a rug of the data positions under them                 |
| `category_bars`  | one bar per category with its count (e.g. tuned wins / tie / base wins) |

The pieces every chart shares live here too: `histogram_bins` (numpy bins, so a hover's count
is exactly what a test recomputes), `layout` (the house style), `MAX_POINTS`, and
`write_plotly_js`, which writes plotly.js once beside a report (`PLOTLY_JS`, a relative `src`).

Arrays go into the figures as lists, so the JSON in the page is plain numbers a test can read
(plotly would otherwise base64-encode numpy arrays).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from markupsafe import Markup, escape
from plotly.offline import get_plotlyjs

from prefsmith.schemas.io import write_text

PLOTLY_JS = "plotly.min.js"
MAX_POINTS = 5_000  # SVG points stay smooth in a browser up to a few thousand
COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706")
BINS = 40
HEIGHT = 320
# no toolbar over the titles (drag still zooms, a double click resets); width follows the page
CONFIG = {"displayModeBar": False, "responsive": True}


def finite(values) -> np.ndarray:
    """The finite values of `values` as float64, `(n,)`."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


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


def layout(
    figure: go.Figure, *, title: str, x: str, y: str, points: int, height: int = HEIGHT, **more
) -> go.Figure:
    """The house style of every chart; `points` is what `chart_html` writes as data-points."""
    return figure.update_layout(
        template="none", title={"text": title, "font": {"size": 14}}, xaxis_title=x,
        yaxis_title=y, height=height, margin={"l": 60, "r": 16, "t": 40, "b": 48},
        legend={"orientation": "h", "y": -0.22}, meta={"points": int(points)}, **more,
    )  # fmt: skip


def histogram(
    series: Mapping[str, np.ndarray],
    *,
    title: str,
    xlabel: str,
    unit: str = "pairs",
    bins: int = BINS,
) -> go.Figure:
    """Overlaid histograms of each series on shared bins (`histogram_bins`).

    y is the fraction of its own series (series sizes may differ, as in drift or tuned vs base);
    the hover gives the bin's range and its integer count. The legend toggles each series."""
    data = {name: finite(v) for name, v in series.items()}
    edges, counts = histogram_bins(data, bins=bins)  # (bins + 1,), {name: (bins,)}
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    figure = go.Figure()
    for i, (name, count) in enumerate(counts.items()):
        custom = np.stack([edges[:-1], edges[1:], count], axis=1)  # (bins, 3): lo, hi, count
        figure.add_bar(
            x=centres.tolist(), y=(count / max(data[name].size, 1)).tolist(),
            width=widths.tolist(), name=name, customdata=custom.tolist(),
            marker_color=COLORS[i % len(COLORS)], opacity=0.55,
            hovertemplate="%{customdata[0]:.4g} – %{customdata[1]:.4g}<br>"
            "count %{customdata[2]:d}<extra>%{fullData.name}</extra>",
        )  # fmt: skip
    points = sum(v.size for v in data.values())
    return layout(
        figure, title=title, x=xlabel, y=f"fraction of {unit}", points=points,
        barmode="overlay", showlegend=len(data) > 1,
    )  # fmt: skip


def _seeded(n: int, *, limit: int, seed: int) -> np.ndarray:
    """Indices of at most `limit` of `n` items, a seeded sample kept in order."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def scatter(
    x,
    y,
    *,
    ids: Sequence[str],
    id_name: str,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    seed: int = 0,
) -> go.Figure:
    """Points (x, y), each named by its id in the hover (`id_name`: pair_id, prompt_id).

    Above `MAX_POINTS` finite points a seeded sample is drawn; `diagonal` adds the
    y = x line (above it: y wins)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # (P,)
    keep = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    keep = keep[_seeded(keep.size, limit=MAX_POINTS, seed=seed)]
    figure = go.Figure()
    if diagonal and keep.size:
        lo = float(min(x[keep].min(), y[keep].min()))
        hi = float(max(x[keep].max(), y[keep].max()))
        figure.add_scatter(
            x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", hoverinfo="skip",
            line={"color": "#9ca3af", "dash": "dash", "width": 1}, showlegend=False,
        )  # fmt: skip
    figure.add_scatter(
        x=x[keep].tolist(), y=y[keep].tolist(), mode="markers", name=id_name,
        customdata=[str(ids[i]) for i in keep], marker={"size": 5, "opacity": 0.6, "color": COLORS[0]},
        hovertemplate=f"{id_name} %{{customdata}}<br>{ylabel} %{{y:.4g}}<br>"
        f"{xlabel} %{{x:.4g}}<extra></extra>",
    )  # fmt: skip
    return layout(figure, title=title, x=xlabel, y=ylabel, points=keep.size, showlegend=False)


def curves(
    lines: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    rug: np.ndarray,
    rug_name: str,
    title: str,
    xlabel: str,
    ylabel: str,
) -> go.Figure:
    """Curves y(x) (e.g. weight functions of the margin) and, under them at y = 0, a rug with one
    tick per data value (at most `MAX_POINTS`), so the curves read against the data."""
    figure = go.Figure()
    for i, (name, (cx, cy)) in enumerate(lines.items()):
        figure.add_scatter(
            x=np.asarray(cx).tolist(), y=np.asarray(cy).tolist(), mode="lines", name=name,
            line={"color": COLORS[i % len(COLORS)], "width": 2.2},
            hovertemplate="x %{x:.4g}<br>y %{y:.4g}<extra>%{fullData.name}</extra>",
        )  # fmt: skip
    rug = finite(rug)
    rug = rug[_seeded(rug.size, limit=MAX_POINTS, seed=0)]
    figure.add_scatter(
        x=rug.tolist(), y=[0.0] * rug.size, mode="markers", name=rug_name,
        marker={"symbol": "line-ns-open", "size": 10, "color": "rgba(17,24,39,0.35)"},
        hovertemplate="%{x:.4g}<extra>%{fullData.name}</extra>",
    )  # fmt: skip
    points = sum(np.asarray(c[0]).size for c in lines.values()) + rug.size
    return layout(figure, title=title, x=xlabel, y=ylabel, points=points)


def category_bars(
    counts: Mapping[str, int], *, title: str, ylabel: str, colors: Sequence[str] = COLORS
) -> go.Figure:
    """One bar per category with its count written above it and in the hover; N is the total."""
    names, values = list(counts), [int(v) for v in counts.values()]
    figure = go.Figure(
        go.Bar(
            x=names, y=values, text=values, textposition="outside", name=ylabel,
            marker_color=[colors[i % len(colors)] for i in range(len(names))],
            hovertemplate=f"%{{x}}<br>{ylabel} %{{y:d}}<extra></extra>",
        )
    )  # fmt: skip
    top = max(values, default=0)
    return layout(
        figure, title=title, x="", y=ylabel, points=sum(values),
        yaxis_range=[0, max(top * 1.18, 1)], showlegend=False,
    )  # fmt: skip


def points_of(figure: go.Figure) -> int:
    """The number of data values a builder recorded for `figure` (0: empty)."""
    return int((figure.layout.meta or {}).get("points", 0))


def chart_html(figure: go.Figure, *, div_id: str | None = None) -> Markup:
    """`<div class="chart" data-title data-points=N>` and the script that draws `figure` into it
    with the page's plotly.js; N = 0 gets a centred "no data" note instead of empty axes."""
    points = points_of(figure)
    if points == 0:
        figure = go.Figure(figure).add_annotation(
            text="no data", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
            font={"size": 16, "color": "#9ca3af"},
        )  # fmt: skip
    title = figure.layout.title.text or ""
    spec = figure.to_json().replace("</", "<\\/")  # no `</script>` can end the script early
    ident = f' id="{escape(div_id)}"' if div_id else ""
    return Markup(
        f'<div class="chart"{ident} data-title="{escape(title)}" data-points="{points}"></div>'
        "<script>(function () { var el = document.currentScript.previousElementSibling;"
        f" var spec = {spec}; Plotly.newPlot(el, spec.data, spec.layout, {json.dumps(CONFIG)}); }})();"
        "</script>"
    )
