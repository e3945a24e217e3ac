"""Inline-SVG charts and the page pieces that both HTML reports (inspect, eval) share.

Nothing here fetches anything: a chart is one `<svg class="chart" data-points="N">` element, N
being the data values it shows (0 means an empty chart, drawn with a "no data" note), and its
data marks have class bar, dot, curve or rug. `STYLE` styles those classes and the page around
them; `ERROR_HOOK` records console errors into `#console-errors`, so a headless browser test can
read them from the DOM.

| name            | draws                                                       |
|-----------------|-------------------------------------------------------------|
| `histogram_svg` | overlaid histograms on shared bins, y = fraction per series |
| `scatter_svg`   | a scatter of (x, y), optionally with the y = x diagonal     |
| `line_svg`      | curves y(x) with a rug of data positions under them         |
| `Plot`          | data → pixel mapping and the frame, for a new kind of chart |
| `wrap_svg`      | the `<svg class="chart">` element around drawn parts        |
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np

WIDTH, HEIGHT = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 34, 46  # plot-area margins in px
COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706")
MAX_SCATTER = 2000  # points drawn per scatter (a seeded sample above that)


def escape(text: object) -> str:
    """`text` as HTML, quotes escaped too (safe inside attribute values)."""
    return html.escape(str(text), quote=True)


def finite(values) -> np.ndarray:
    """The finite values of `values` as float64, `(n,)`."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def nice_ticks(lo: float, hi: float, *, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


class Plot:
    """Maps data coordinates into the plot area of one SVG chart and draws its frame."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]):
        self.x0, self.x1 = self._pad(x_range)
        self.y0, self.y1 = self._pad(y_range)

    @staticmethod
    def _pad(r: tuple[float, float]) -> tuple[float, float]:
        lo, hi = float(r[0]), float(r[1])
        return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)

    def x(self, v):
        return LEFT + (np.asarray(v) - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, v):
        return (
            HEIGHT
            - BOTTOM
            - (np.asarray(v) - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)
        )

    def y_grid(self) -> list[str]:
        """Horizontal grid lines with their tick labels."""
        parts = []
        for t in nice_ticks(self.y0, self.y1):
            py = self.y(t)
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
                f'<text class="tick" x="{LEFT - 5}" y="{py + 4:.1f}" text-anchor="end">{t:.4g}</text>'
            )
        return parts

    def frame(self, *, title: str, xlabel: str, ylabel: str) -> list[str]:
        """Title, axes, grid lines, tick labels and axis labels."""
        bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
        parts = [title_text(title)]
        for t in nice_ticks(self.x0, self.x1):
            px = self.x(t)
            parts.append(
                f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{bottom}"/>'
                f'<text class="tick" x="{px:.1f}" y="{bottom + 15}">{t:.4g}</text>'
            )
        parts += self.y_grid()
        parts.append(
            f'<rect class="axes" x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}"/>'
            f'<text class="label" x="{(LEFT + right) / 2}" y="{HEIGHT - 8}">{escape(xlabel)}</text>'
            f'<text class="label" transform="translate(14 {(TOP + bottom) / 2}) rotate(-90)">{escape(ylabel)}</text>'
        )
        return parts


def title_text(title: str) -> str:
    """The chart's title, centred above the plot area."""
    return f'<text class="title" x="{WIDTH / 2}" y="20">{escape(title)}</text>'


def _legend(names: Sequence[str]) -> list[str]:
    width = 28 + 6.5 * max(len(n) for n in names)
    parts = [
        f'<rect class="legend-box" x="{WIDTH - RIGHT - 158}" y="{TOP + 3}" width="{width:.0f}" height="{16 * len(names) + 6}"/>'
    ]
    for i, name in enumerate(names):
        y = TOP + 8 + 16 * i
        parts.append(
            f'<rect x="{WIDTH - RIGHT - 150}" y="{y}" width="11" height="11" fill="{COLORS[i % 4]}" fill-opacity="0.6"/>'
            f'<text class="legend" x="{WIDTH - RIGHT - 134}" y="{y + 10}">{escape(name)}</text>'
        )
    return parts


def wrap_svg(parts: list[str], *, points: int, title: str) -> str:
    """The `<svg class="chart" data-points=N>` element around `parts` ("no data" when N is 0)."""
    body = (
        "".join(parts)
        if points
        else "".join(parts) + f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}">no data</text>'
    )
    return (
        f'<svg class="chart" data-points="{points}" data-title="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img">{body}</svg>'
    )


def bin_edges(values: np.ndarray, *, bins: int) -> np.ndarray:
    """`bins` equal bins over the range; integer data (token or word counts) gets integer-centred
    bins of integer width, so no bin is empty merely because it falls between two integers."""
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if values.size and hi - lo < 1e6 and np.all(values == np.round(values)):
        width = max(1, math.ceil((hi - lo + 1) / bins))
        return lo - 0.5 + width * np.arange(math.ceil((hi - lo + 1) / width) + 1)
    return np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo - 0.5, hi + 0.5])


def histogram_svg(
    series: Mapping[str, np.ndarray], *, title: str, xlabel: str, bins: int = 40
) -> str:
    """Overlaid histograms on shared bins; y is the fraction of each series (sizes may differ)."""
    data = {name: finite(v) for name, v in series.items()}
    pooled = np.concatenate(list(data.values())) if data else np.zeros(0)
    points = int(pooled.size)
    edges = bin_edges(pooled, bins=bins)  # (bins + 1,)
    fractions = {
        n: np.histogram(v, bins=edges)[0] / max(v.size, 1) for n, v in data.items()
    }  # (bins,)
    top = max((float(f.max()) for f in fractions.values()), default=1.0) or 1.0
    plot = Plot((edges[0], edges[-1]), (0.0, top * (1.3 if len(data) > 1 else 1.08)))  # legend room
    parts = plot.frame(title=title, xlabel=xlabel, ylabel="fraction of pairs")
    for i, (name, frac) in enumerate(fractions.items()):
        xs, ys = plot.x(edges), plot.y(frac)
        color = COLORS[i % 4]
        for left, right, y, f in zip(xs[:-1], xs[1:], ys, frac, strict=True):
            if f > 0:
                parts.append(
                    f'<rect class="bar" x="{left:.1f}" y="{y:.1f}" width="{max(right - left - 0.5, 0.5):.1f}" '
                    f'height="{plot.y(0) - y:.1f}" fill="{color}" fill-opacity="0.45"><title>{escape(name)}: {f:.3f}</title></rect>'
                )
    if len(data) > 1:
        parts += _legend(list(data))
    return wrap_svg(parts, points=points, title=title)


def scatter_svg(x, y, *, title: str, xlabel: str, ylabel: str, diagonal: bool = False) -> str:
    """A scatter of (x, y); above MAX_SCATTER points a seeded sample is drawn (N counts all)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # (P,)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    points = int(x.size)
    if points > MAX_SCATTER:
        index = np.sort(np.random.default_rng(0).choice(points, MAX_SCATTER, replace=False))
        x, y = x[index], y[index]
    span = lambda v: (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)  # noqa: E731
    pad = lambda r: (r[0] - 0.03 * (r[1] - r[0]), r[1] + 0.03 * (r[1] - r[0]))  # noqa: E731
    xr, yr = span(x), span(y)
    if diagonal:
        xr = yr = (min(xr[0], yr[0]), max(xr[1], yr[1]))
    plot = Plot(pad(xr), pad(yr))
    parts = plot.frame(title=title, xlabel=xlabel, ylabel=ylabel)
    if diagonal:
        lo, hi = plot.x0, plot.x1
        parts.append(
            f'<line class="ref" x1="{plot.x(lo):.1f}" y1="{plot.y(lo):.1f}" x2="{plot.x(hi):.1f}" y2="{plot.y(hi):.1f}"/>'
        )
    parts += [
        f'<circle class="dot" cx="{a:.1f}" cy="{b:.1f}" r="2.2"/>'
        for a, b in zip(plot.x(x), plot.y(y), strict=True)
    ]
    return wrap_svg(parts, points=points, title=title)


def line_svg(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    rug: np.ndarray | None = None,
) -> str:
    """Curves y(x) with a rug of data positions under them; N counts curve points plus rug."""
    xs = np.concatenate([c[0] for c in curves.values()])
    ys = np.concatenate([c[1] for c in curves.values()])
    plot = Plot(
        (float(xs.min()), float(xs.max())), (min(0.0, float(ys.min())), float(ys.max()) * 1.35)
    )
    parts = plot.frame(title=title, xlabel=xlabel, ylabel=ylabel)
    for i, (cx, cy) in enumerate(curves.values()):
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(plot.x(cx), plot.y(cy), strict=True))
        parts.append(
            f'<polyline class="curve" points="{path}" fill="none" stroke="{COLORS[i % 4]}" stroke-width="2.2"/>'
        )
    rug = finite(rug if rug is not None else [])[:MAX_SCATTER]
    base = HEIGHT - BOTTOM
    parts += [
        f'<line class="rug" x1="{p:.1f}" x2="{p:.1f}" y1="{base}" y2="{base - 7}"/>'
        for p in plot.x(rug)
    ]
    parts += _legend(list(curves))
    return wrap_svg(parts, points=int(xs.size + rug.size), title=title)


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain `<table>`, every header and cell escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


ERROR_HOOK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + (e.message || e.type)); }, true);
(function () { var original = console.error; console.error = function () {
  window.__errors.push(Array.prototype.map.call(arguments, String).join(' ')); original.apply(console, arguments); }; })();
window.addEventListener('load', function () { var out = document.getElementById('console-errors');
  out.textContent = window.__errors.join('\\n'); out.setAttribute('data-count', String(window.__errors.length)); });
</script>"""

STYLE = """<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;margin:0 auto;max-width:1120px;padding:20px 28px;color:#111827;background:#f9fafb}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.meta{color:#4b5563;margin:0}.warnings{background:#fffbeb;border:1px solid #f59e0b;border-left:6px solid #f59e0b;padding:10px 16px;margin:16px 0;border-radius:6px}
.warnings.ok{background:#ecfdf5;border-color:#10b981}.warnings h2{border:0;margin:0 0 4px;font-size:16px}.warnings li{margin:3px 0}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-size:13px}th,td{border:1px solid #e5e7eb;padding:3px 8px;text-align:right}
th:first-child,td:first-child,.kv td,.kv th{text-align:left}th{background:#f3f4f6}.grid2{display:grid;grid-template-columns:repeat(2,1fr);gap:14px}
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:6px}figcaption{color:#4b5563;font-size:12px;padding:0 6px}
svg.chart{width:100%;height:auto}svg text{font-family:inherit}.title{font-size:14px;font-weight:600;text-anchor:middle;fill:#111827}
.tick{font-size:11px;fill:#4b5563;text-anchor:middle}.label{font-size:12px;fill:#111827;text-anchor:middle}.legend{font-size:11px;fill:#111827}.legend-box{fill:#fff;fill-opacity:.85;stroke:#e5e7eb}
.grid{stroke:#eef0f3}.axes{fill:none;stroke:#9ca3af}.ref{stroke:#9ca3af;stroke-dasharray:4 3}.rug{stroke:#111827;stroke-opacity:.35}
circle{fill:#2563eb;fill-opacity:.45}.empty{font-size:14px;fill:#9ca3af;text-anchor:middle}#console-errors{display:none}
</style>"""
