"""The inspection report: rich tables for the terminal, and one self-contained HTML file.

The HTML has no network dependency (it is opened from CI artifacts and air-gapped machines): the
charts are inline SVG drawn here, the style is an inline <style>, and the only script is a small
inline hook that records console errors into `#console-errors` (so a headless browser test can
read them from the DOM). Every chart is `<svg class="chart" data-points="N">`, N being the data
values it shows (0 means an empty chart), and its data marks have class bar, dot, curve or rug.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from prefsmith.inspection.stats import QUANTILE_KEYS, madpo_weight, w_qual

WIDTH, HEIGHT = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 34, 46  # plot-area margins in px
COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706")
MAX_SCATTER = 2000  # points drawn per scatter (a seeded sample above that)
LABELS = {
    "score_chosen": "chosen score (raw)",
    "score_rejected": "rejected score (raw)",
    "score_chosen_norm": "chosen score (normalized)",
    "score_rejected_norm": "rejected score (normalized)",
    "margin_raw": "margin (raw)",
    "margin_norm": "margin (normalized)",
    "w_qual": "Uni-DPO w_qual",
    "madpo_weight": "MADPO weight",
    "len_chosen": "chosen length",
    "len_rejected": "rejected length",
    "len_diff": "length difference (chosen − rejected)",
}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def nice_ticks(lo: float, hi: float, *, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


class _Plot:
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

    def frame(self, *, title: str, xlabel: str, ylabel: str) -> list[str]:
        """Title, axes, grid lines, tick labels and axis labels."""
        bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
        parts = [f'<text class="title" x="{WIDTH / 2}" y="20">{_e(title)}</text>']
        for t in nice_ticks(self.x0, self.x1):
            px = self.x(t)
            parts.append(
                f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{bottom}"/>'
                f'<text class="tick" x="{px:.1f}" y="{bottom + 15}">{t:.4g}</text>'
            )
        for t in nice_ticks(self.y0, self.y1):
            py = self.y(t)
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}"/>'
                f'<text class="tick" x="{LEFT - 5}" y="{py + 4:.1f}" text-anchor="end">{t:.4g}</text>'
            )
        parts.append(
            f'<rect class="axes" x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}"/>'
            f'<text class="label" x="{(LEFT + right) / 2}" y="{HEIGHT - 8}">{_e(xlabel)}</text>'
            f'<text class="label" transform="translate(14 {(TOP + bottom) / 2}) rotate(-90)">{_e(ylabel)}</text>'
        )
        return parts


def _legend(names: Sequence[str]) -> list[str]:
    width = 28 + 6.5 * max(len(n) for n in names)
    parts = [
        f'<rect class="legend-box" x="{WIDTH - RIGHT - 158}" y="{TOP + 3}" width="{width:.0f}" height="{16 * len(names) + 6}"/>'
    ]
    for i, name in enumerate(names):
        y = TOP + 8 + 16 * i
        parts.append(
            f'<rect x="{WIDTH - RIGHT - 150}" y="{y}" width="11" height="11" fill="{COLORS[i % 4]}" fill-opacity="0.6"/>'
            f'<text class="legend" x="{WIDTH - RIGHT - 134}" y="{y + 10}">{_e(name)}</text>'
        )
    return parts


def _svg(parts: list[str], *, points: int, title: str) -> str:
    body = (
        "".join(parts)
        if points
        else "".join(parts) + f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}">no data</text>'
    )
    return (
        f'<svg class="chart" data-points="{points}" data-title="{_e(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img">{body}</svg>'
    )


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


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
    data = {name: _finite(v) for name, v in series.items()}
    pooled = np.concatenate(list(data.values())) if data else np.zeros(0)
    points = int(pooled.size)
    edges = bin_edges(pooled, bins=bins)  # (bins + 1,)
    fractions = {
        n: np.histogram(v, bins=edges)[0] / max(v.size, 1) for n, v in data.items()
    }  # (bins,)
    top = max((float(f.max()) for f in fractions.values()), default=1.0) or 1.0
    plot = _Plot(
        (edges[0], edges[-1]), (0.0, top * (1.3 if len(data) > 1 else 1.08))
    )  # legend room
    parts = plot.frame(title=title, xlabel=xlabel, ylabel="fraction of pairs")
    for i, (name, frac) in enumerate(fractions.items()):
        xs, ys = plot.x(edges), plot.y(frac)
        color = COLORS[i % 4]
        for left, right, y, f in zip(xs[:-1], xs[1:], ys, frac, strict=True):
            if f > 0:
                parts.append(
                    f'<rect class="bar" x="{left:.1f}" y="{y:.1f}" width="{max(right - left - 0.5, 0.5):.1f}" '
                    f'height="{plot.y(0) - y:.1f}" fill="{color}" fill-opacity="0.45"><title>{_e(name)}: {f:.3f}</title></rect>'
                )
    if len(data) > 1:
        parts += _legend(list(data))
    return _svg(parts, points=points, title=title)


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
    plot = _Plot(pad(xr), pad(yr))
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
    return _svg(parts, points=points, title=title)


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
    plot = _Plot(
        (float(xs.min()), float(xs.max())), (min(0.0, float(ys.min())), float(ys.max()) * 1.35)
    )
    parts = plot.frame(title=title, xlabel=xlabel, ylabel=ylabel)
    for i, (cx, cy) in enumerate(curves.values()):
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(plot.x(cx), plot.y(cy), strict=True))
        parts.append(
            f'<polyline class="curve" points="{path}" fill="none" stroke="{COLORS[i % 4]}" stroke-width="2.2"/>'
        )
    rug = _finite(rug if rug is not None else [])[:MAX_SCATTER]
    base = HEIGHT - BOTTOM
    parts += [
        f'<line class="rug" x1="{p:.1f}" x2="{p:.1f}" y1="{base}" y2="{base - 7}"/>'
        for p in plot.x(rug)
    ]
    parts += _legend(list(curves))
    return _svg(parts, points=int(xs.size + rug.size), title=title)


def weight_curves(arrays: Mapping[str, np.ndarray], settings: Mapping) -> str:
    """w_qual(Δ) and MADPO w(Δ) over the range of the data's normalized margins, data as a rug."""
    margin = _finite(arrays["margin_norm"])
    lo, hi = (float(margin.min()), float(margin.max())) if margin.size else (-1.0, 1.0)
    grid = np.linspace(min(lo, 0.0), hi if hi > lo else lo + 1.0, 200)  # (200,)
    curves = {
        f"w_qual (η={settings['eta']:g})": (grid, w_qual(grid, eta=settings["eta"])),
        f"MADPO w (τ={settings['madpo_tau']:.3g})": (
            grid,
            madpo_weight(
                grid,
                tau=settings["madpo_tau"],
                c_max=settings["c_max"],
                c_min=settings["c_min"],
                lmbda=settings["lmbda"],
            ),
        ),
    }
    return line_svg(
        curves,
        title="Weight curves over the data's margins",
        xlabel="normalized margin S_w − S_l (ticks: pairs)",
        ylabel="weight",
        rug=margin,
    )


def _figure(svg: str, caption: str = "") -> str:
    return (
        f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"
        if caption
        else f"<figure>{svg}</figure>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_rows(stats: Mapping) -> list[tuple[str, str]]:
    """(name, value) rows shared by the terminal and the HTML summary."""
    c, s, t, ln = stats["counts"], stats["settings"], stats["ties"], stats["length"]
    ppp, md = stats["pairs_per_prompt"], stats["madpo"]
    rows = [
        ("pairs (usable)", f"{c['pairs']} ({c['pairs_used']})"),
        ("prompts with pairs", str(c["prompts"])),
        ("pairs per prompt (mean / max)", f"{_num(ppp['mean'], 3)} / {_num(ppp['q100'])}"),
        ("strategy", ", ".join(f"{k}: {v}" for k, v in c["strategies"].items()) or "–"),
        ("normalization", f"{s['method']} (scale {s['scale']:.4g}, shift {s['shift']:.4g})"),
        (
            "tie rate / near-tie rate",
            f"{_num(t['tie_rate'], 3)} / {_num(t['near_tie_rate'], 3)} (|margin| < {t['near_tie_threshold']:.3g})",
        ),
        ("length unit", ln["unit"]),
        ("corr(margin, length difference)", _num(ln["corr_margin_len_diff"], 3)),
        (
            f"w_qual at η={s['eta']:g}: mean / std",
            f"{_num(stats['w_qual']['mean'], 4)} / {_num(stats['w_qual']['std'], 3)}",
        ),
        (
            f"MADPO w at τ={s['madpo_tau']:.4g}: mean / std",
            f"{_num(md['mean'], 4)} / {_num(md['std'], 3)}",
        ),
        (
            "MADPO amplified / damped",
            f"{_num(md['frac_amplified'], 3)} / {_num(md['frac_damped'], 3)}",
        ),
        (
            f"c-NLL active (S_w ≥ τ_good={s['tau_good']:g})",
            _num(stats["c_nll"]["active_fraction"], 3),
        ),
    ]
    if c["prompts_in"] is not None:
        rows.append(("prompts in / out (manifest)", f"{c['prompts_in']} / {c['prompts_out']}"))
    rows += [(f"dropped: {reason}", str(n)) for reason, n in c["dropped"].items()]
    return rows


def _quantile_rows(stats: Mapping, *, short: bool = False) -> list[list[str]]:
    """One row per distribution; `short` (terminal): column names and 3 significant digits."""
    digits = 3 if short else 4
    return [
        [
            name if short else LABELS.get(name, name),
            str(d["n"]),
            _num(d["mean"], digits),
            _num(d["std"], digits),
        ]
        + [_num(d[k], digits) for k in QUANTILE_KEYS]
        for name, d in stats["distributions"].items()
    ]


QUANTILE_HEADER = ["distribution", "n", "mean", "std", *QUANTILE_KEYS]


def _rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str) -> Table:
    """A rich table whose cells wrap rather than end in "…" (no number is ever cut)."""
    table = Table(*header, title=title, padding=(0, 1), show_header=any(header))
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*row)
    return table


def render_terminal(stats: Mapping, *, warnings: Sequence[str], console: Console) -> None:
    """Summary, quantiles, per-objective and drift tables, then the warnings, with rich."""
    console.print(_rich_table(["", ""], summary_rows(stats), title="Pairs"))
    rows = _quantile_rows(stats, short=True)
    # Narrow terminal: two tables (n … q25, q50 … q100) rather than squeezed numbers.
    for first, last in [(1, 11)] if console.width >= 120 else [(1, 7), (7, 11)]:
        columns = [0, *range(first, last)]  # the name column always
        console.print(
            _rich_table(
                [QUANTILE_HEADER[i] for i in columns],
                [[row[i] for i in columns] for row in rows],
                title="Distributions",
            )
        )
    if stats["objectives"]:
        rows = [
            [
                name,
                _num(o["chosen"]["mean"]),
                _num(o["rejected"]["mean"]),
                _num(o["margin"]["mean"]),
                _num(o["agreement"], 3),
            ]
            for name, o in stats["objectives"].items()
        ]
        console.print(
            _rich_table(
                ["objective", "chosen mean", "rejected mean", "margin mean", "agreement"],
                rows,
                title="Per objective",
            )
        )
    if stats.get("drift"):
        rows = [
            [name, _num(d["ks"], 3), _num(d["p_value"], 2), str(d["n"]), str(d["n_against"])]
            for name, d in stats["drift"].items()
        ]
        console.print(
            _rich_table(
                ["distribution", "KS", "p-value", "n", "n (against)"],
                rows,
                title="Drift (two-sample KS)",
            )
        )
    if warnings:
        console.print(
            Panel("\n".join(f"• {w}" for w in warnings), title="Warnings", border_style="yellow")
        )
    else:
        console.print(Panel("no warnings", border_style="green"))


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


def _warnings_box(warnings: Sequence[str]) -> str:
    if not warnings:
        return '<section class="warnings ok"><h2>No warnings</h2>The weights and margins look usable.</section>'
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return (
        f'<section class="warnings"><h2>Warnings ({len(warnings)})</h2><ul>{items}</ul></section>'
    )


def _main_charts(stats: Mapping, arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Scores, margins, lengths and weights of the inspected table."""
    unit, r = stats["length"]["unit"], stats["length"]["corr_margin_len_diff"]
    hist = histogram_svg
    return [
        hist(
            {"chosen": arrays["score_chosen"], "rejected": arrays["score_rejected"]},
            title="Scores (raw)",
            xlabel="raw score",
        ),
        scatter_svg(
            arrays["score_rejected"],
            arrays["score_chosen"],
            title="Chosen vs rejected score",
            xlabel="rejected score (raw)",
            ylabel="chosen score (raw)",
            diagonal=True,
        ),
        hist(
            {"margin": arrays["margin_raw"]},
            title="Margin (raw)",
            xlabel="score_chosen − score_rejected",
        ),
        hist(
            {"margin": arrays["margin_norm"]},
            title="Margin (normalized)",
            xlabel="scale · raw margin",
        ),
        hist(
            {"chosen": arrays["len_chosen"], "rejected": arrays["len_rejected"]},
            title="Lengths",
            xlabel=f"length ({unit.split(' ')[0]})",
        ),
        scatter_svg(
            arrays["len_diff"],
            arrays["margin_raw"],
            title=f"Margin vs length difference (r = {_num(r, 3)})",
            xlabel=f"chosen − rejected length ({unit.split(' ')[0]})",
            ylabel="margin (raw)",
        ),
        weight_curves(arrays, stats["settings"]),
        hist(
            {"w_qual": arrays["w_qual"], "MADPO w": arrays["madpo_weight"]},
            title="Weights over the data",
            xlabel="per-pair weight",
        ),
    ]


def _objective_charts(stats: Mapping, objectives: pl.DataFrame) -> list[str]:
    """One chosen-vs-rejected histogram per objective (ArmoRM has 19)."""
    charts = []
    for (name,), group in objectives.group_by("name", maintain_order=True):
        agreement = stats["objectives"].get(str(name), {}).get("agreement")
        charts.append(
            histogram_svg(
                {"chosen": group["chosen"].to_numpy(), "rejected": group["rejected"].to_numpy()},
                title=f"{name} (agrees: {_num(agreement, 2)})",
                xlabel="objective value",
                bins=30,
            )
        )
    return charts


def _drift_section(stats: Mapping, arrays: Mapping, against: Mapping, *, label: str) -> str:
    rows = [
        [LABELS.get(n, n), _num(d["ks"], 3), _num(d["p_value"], 2), d["n"], d["n_against"]]
        for n, d in stats["drift"].items()
    ]
    charts = [
        histogram_svg(
            {"current": arrays[n], "older": against[n]},
            title=f"{LABELS.get(n, n)}: KS = {_num(d['ks'], 3)}",
            xlabel=LABELS.get(n, n),
        )
        for n, d in stats["drift"].items()
    ]
    return (
        f"<section><h2>Drift against {_e(label)}</h2>"
        + _table(["distribution", "KS statistic", "p-value (asymptotic)", "n", "n (against)"], rows)
        + '<div class="grid2">'
        + "".join(_figure(c) for c in charts)
        + "</div></section>"
    )


def render_html(
    stats: Mapping,
    *,
    warnings: Sequence[str],
    arrays: Mapping[str, np.ndarray],
    objectives: pl.DataFrame | None = None,
    against: Mapping[str, np.ndarray] | None = None,
    sources: Mapping[str, str] | None = None,
) -> str:
    """The whole report as one HTML string (no external resources)."""
    sources = dict(sources or {})
    meta = " · ".join(f"{k}: {v}" for k, v in sources.items())
    charts = "".join(_figure(c) for c in _main_charts(stats, arrays))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>prefsmith inspect — {_e(sources.get('pairs', 'pairs'))}</title>",
        ERROR_HOOK,
        STYLE,
        f"</head><body><header><h1>Pair-score inspection</h1><p class='meta'>{_e(meta)}</p></header>",
        _warnings_box(warnings),
        "<section><h2>Summary</h2>"
        + _table(["summary", "value"], summary_rows(stats)).replace(
            "<table>", "<table class='kv'>", 1
        ),
        _table(QUANTILE_HEADER, _quantile_rows(stats)) + "</section>",
        f"<section><h2>Scores, margins, lengths and weights</h2><div class='grid2'>{charts}</div></section>",
    ]
    if objectives is not None and objectives.height:
        per = "".join(_figure(c) for c in _objective_charts(stats, objectives))
        parts.append(f"<section><h2>Per objective</h2><div class='grid2'>{per}</div></section>")
    if against is not None and stats.get("drift"):
        parts.append(_drift_section(stats, arrays, against, label=sources.get("against", "older")))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    parts.append(
        f"<footer class='meta'><p>prefsmith inspect · {stamp}</p></footer>"
        "<pre id='console-errors' data-count='0'></pre></body></html>"
    )
    return "".join(parts)
