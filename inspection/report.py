"""The inspection report: rich tables for the terminal, and one HTML page.

The HTML has no network dependency (it is opened from CI artifacts and air-gapped machines): the
charts are the plotly figures of `prefsmith.inspection.figures` (`<div class="chart"
data-points=N>`), drawn by the `plotly.min.js` written beside the page, inside the
`inspect.html.j2` skeleton of `prefsmith.inspection.page`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from prefsmith.inspection import figures as fg
from prefsmith.inspection.objectives_view import (
    GATING_HEADER,
    OBJECTIVE_HEADER,
    gating_rows,
    objective_charts,
    objective_rows,
)
from prefsmith.inspection.page import escape, html_table, render_page
from prefsmith.inspection.quality import QUALITY_HEADER, quality_rows
from prefsmith.inspection.scorer_agreement import agreement_html, agreement_tables
from prefsmith.inspection.summary import QUANTILE_KEYS, fmt_number
from prefsmith.inspection.weights import madpo_weight, w_qual

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


def weight_curves(arrays: Mapping[str, np.ndarray], settings: Mapping) -> go.Figure:
    """w_qual(Δ) and MADPO w(Δ) over the range of the data's normalized margins, data as a rug."""
    margin = fg.finite(arrays["margin_norm"])
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
                lam=settings["madpo_lam"],
            ),
        ),
    }
    return fg.curves(
        curves,
        rug=margin,
        rug_name="pairs (normalized margin)",
        title="Weight curves over the data's margins",
        xlabel="normalized margin S_w − S_l (ticks: pairs)",
        ylabel="weight",
    )


def summary_rows(stats: Mapping) -> list[tuple[str, str]]:
    """(name, value) rows shared by the terminal and the HTML summary."""
    c, s, t, ln = stats["counts"], stats["settings"], stats["ties"], stats["length"]
    ppp, md = stats["pairs_per_prompt"], stats["madpo"]
    rows = [
        ("pairs (usable)", f"{c['pairs']} ({c['pairs_used']})"),
        ("prompts with pairs", str(c["prompts"])),
        (
            "pairs per prompt (mean / max)",
            f"{fmt_number(ppp['mean'], 3)} / {fmt_number(ppp['q100'])}",
        ),
        ("strategy", ", ".join(f"{k}: {v}" for k, v in c["strategies"].items()) or "–"),
        ("normalization", f"{s['method']} (scale {s['scale']:.4g}, shift {s['shift']:.4g})"),
        (
            "tie rate / near-tie rate",
            f"{fmt_number(t['tie_rate'], 3)} / {fmt_number(t['near_tie_rate'], 3)} (|margin| < {t['near_tie_threshold']:.3g})",
        ),
        ("length unit", ln["unit"]),
        ("corr(margin, length difference)", fmt_number(ln["corr_margin_len_diff"], 3)),
        (
            f"w_qual at η={s['eta']:g}: mean / std",
            f"{fmt_number(stats['w_qual']['mean'], 4)} / {fmt_number(stats['w_qual']['std'], 3)}",
        ),
        (
            f"MADPO w at τ={s['madpo_tau']:.4g}: mean / std",
            f"{fmt_number(md['mean'], 4)} / {fmt_number(md['std'], 3)}",
        ),
        (
            "MADPO amplified / damped",
            f"{fmt_number(md['frac_amplified'], 3)} / {fmt_number(md['frac_damped'], 3)}",
        ),
        (
            f"c-NLL active (S_w ≥ τ_good={s['tau_good']:g})",
            fmt_number(stats["c_nll"]["active_fraction"], 3),
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
            fmt_number(d["mean"], digits),
            fmt_number(d["std"], digits),
        ]
        + [fmt_number(d[k], digits) for k in QUANTILE_KEYS]
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


def _distribution_tables(stats: Mapping, *, wide: bool) -> list[Table]:
    """The quantile table; on a narrow terminal two (n … q25, q50 … q100), not squeezed numbers."""
    rows = _quantile_rows(stats, short=True)
    tables = []
    for first, last in [(1, 11)] if wide else [(1, 7), (7, 11)]:
        columns = [0, *range(first, last)]  # the name column always
        tables.append(
            _rich_table(
                [QUANTILE_HEADER[i] for i in columns],
                [[row[i] for i in columns] for row in rows],
                title="Distributions",
            )
        )
    return tables


DRIFT_HEADER = ["distribution", "quantity", "KS", "p-value", "n", "n (against)"]


def _drift_rows(drift: Mapping, *, label: Callable[[str], str] = str) -> list[list[str]]:
    """One row per compared distribution: its quantity (rows sharing one are monotone
    transforms of it, with one KS between them when both tables share a transform)."""
    return [
        [label(n), d["quantity"], fmt_number(d["ks"], 3), fmt_number(d["p_value"], 2)]
        + [str(d["n"]), str(d["n_against"])]
        for n, d in drift.items()
    ]


def scorer_line(stats: Mapping) -> str:
    """Which scorer scored each compared table, and whether they differ."""
    scorers = stats.get("drift_scorers")
    if not scorers:
        return "scorers: not recorded"
    current, against = (", ".join(scorers[k]) or "?" for k in ("current", "against"))
    same = "same scorer" if scorers["same"] else "DIFFERENT scorers: score drift not comparable"
    return f"scored by: {current} (current) · {against} (against) — {same}"


def _drift_table(stats: Mapping) -> Table:
    return _rich_table(
        DRIFT_HEADER,
        _drift_rows(stats["drift"]),
        title=f"Drift (two-sample KS, scipy ks_2samp); {scorer_line(stats)}",
    )


def render_terminal(stats: Mapping, *, warnings: Sequence[str], console: Console) -> None:
    """Summary, quantiles, per-objective and drift tables, then the warnings, with rich."""
    console.print(_rich_table(["", ""], summary_rows(stats), title="Pairs"))
    for table in _distribution_tables(stats, wide=console.width >= 120):
        console.print(table)
    if stats["objectives"]:
        rows = objective_rows(stats["objectives"])
        console.print(_rich_table(OBJECTIVE_HEADER, rows, title="Per objective"))
    if stats.get("gating"):
        rows = gating_rows(stats["gating"])
        console.print(_rich_table(GATING_HEADER, rows, title="Gating weights (ArmoRM)"))
    for table in agreement_tables(stats.get("scorer_agreement") or []):
        console.print(table)
    if stats.get("drift"):
        console.print(_drift_table(stats))
    if stats.get("quality"):
        console.print(_rich_table(QUALITY_HEADER, quality_rows(stats), title="Data quality"))
    if warnings:
        console.print(
            Panel("\n".join(f"• {w}" for w in warnings), title="Warnings", border_style="yellow")
        )
    else:
        console.print(Panel("no warnings", border_style="green"))


def _warnings_box(warnings: Sequence[str]) -> str:
    if not warnings:
        return '<section class="warnings ok"><h2>No warnings</h2>The weights and margins look usable.</section>'
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return (
        f'<section class="warnings"><h2>Warnings ({len(warnings)})</h2><ul>{items}</ul></section>'
    )


def _point_ids(arrays: Mapping[str, np.ndarray]) -> tuple[list[str], str]:
    """What names a scatter point in its hover: the pair_id where `arrays` carries it, else the
    pair's row number in the table (the distributions are all in table order)."""
    if "pair_id" in arrays:
        return [str(p) for p in arrays["pair_id"]], "pair_id"
    return [str(i) for i in range(len(arrays["margin_raw"]))], "row"


def _score_charts(arrays: Mapping[str, np.ndarray]) -> list[go.Figure]:
    """Chosen and rejected scores, and the margins between them (raw and normalized)."""
    ids, id_name = _point_ids(arrays)
    return [
        fg.histogram(
            {"chosen": arrays["score_chosen"], "rejected": arrays["score_rejected"]},
            title="Scores (raw)",
            xlabel="raw score",
        ),
        fg.scatter(
            arrays["score_rejected"],
            arrays["score_chosen"],
            ids=ids,
            id_name=id_name,
            title="Chosen vs rejected score",
            xlabel="rejected score (raw)",
            ylabel="chosen score (raw)",
            diagonal=True,
        ),
        fg.histogram(
            {"margin": arrays["margin_raw"]},
            title="Margin (raw)",
            xlabel="score_chosen − score_rejected",
        ),
        fg.histogram(
            {"margin": arrays["margin_norm"]},
            title="Margin (normalized)",
            xlabel="scale · raw margin",
        ),
    ]


def _length_charts(stats: Mapping, arrays: Mapping[str, np.ndarray]) -> list[go.Figure]:
    """Chosen and rejected lengths, and the margin against their difference."""
    unit = stats["length"]["unit"].split(" ")[0]
    ids, id_name = _point_ids(arrays)
    r = stats["length"]["corr_margin_len_diff"]
    return [
        fg.histogram(
            {"chosen": arrays["len_chosen"], "rejected": arrays["len_rejected"]},
            title="Lengths",
            xlabel=f"length ({unit})",
        ),
        fg.scatter(
            arrays["len_diff"],
            arrays["margin_raw"],
            ids=ids,
            id_name=id_name,
            title=f"Margin vs length difference (r = {fmt_number(r, 3)})",
            xlabel=f"chosen − rejected length ({unit})",
            ylabel="margin (raw)",
        ),
    ]


def _main_charts(stats: Mapping, arrays: Mapping[str, np.ndarray]) -> list[go.Figure]:
    """Scores, margins, lengths and weights of the inspected table."""
    weights = fg.histogram(
        {"w_qual": arrays["w_qual"], "MADPO w": arrays["madpo_weight"]},
        title="Weights over the data",
        xlabel="per-pair weight",
    )
    return [
        *_score_charts(arrays),
        *_length_charts(stats, arrays),
        weight_curves(arrays, stats["settings"]),
        weights,
    ]


def _drift_section(stats: Mapping, arrays: Mapping, against: Mapping, *, label: str) -> str:
    rows = _drift_rows(stats["drift"], label=lambda n: LABELS.get(n, n))
    charts = [
        fg.histogram(
            {"current": arrays[n], "older": against[n]},
            title=f"{LABELS.get(n, n)}: KS = {fmt_number(d['ks'], 3)}",
            xlabel=LABELS.get(n, n),
        )
        for n, d in stats["drift"].items()
    ]
    return (
        f"<section><h2>Drift against {escape(label)}</h2>"
        f"<p class='meta scorers'>{escape(scorer_line(stats))}</p>"
        + html_table(
            ["distribution", "quantity", "KS statistic", "p-value (scipy ks_2samp)"]
            + ["n", "n (against)"],
            rows,
        )
        + '<div class="grid2">'
        + "".join(f"<figure>{fg.chart_html(c)}</figure>" for c in charts)
        + "</div></section>"
    )


def _objectives_html(stats: Mapping) -> str:
    """The per-objective and gating tables of the HTML page ('' without objectives)."""
    if not stats["objectives"]:
        return ""
    html = html_table(OBJECTIVE_HEADER, objective_rows(stats["objectives"]))
    if stats.get("gating"):
        html += "<h3>Gating weights</h3>" + html_table(GATING_HEADER, gating_rows(stats["gating"]))
    return html + agreement_html(stats.get("scorer_agreement") or [])


def render_html(
    stats: Mapping,
    *,
    warnings: Sequence[str],
    arrays: Mapping[str, np.ndarray],
    objectives: pl.DataFrame | None = None,
    against: Mapping[str, np.ndarray] | None = None,
    sources: Mapping[str, str] | None = None,
    pair_browser: str = "",
) -> str:
    """The whole report as one HTML string (`inspect.html.j2`; its charts need the
    `plotly.min.js` that `figures.write_plotly_js` writes beside it); `pair_browser` is the
    section of `inspection.pair_browser.browser_html`."""
    sources = dict(sources or {})
    fragments = {
        "warnings": _warnings_box(warnings),
        "summary": html_table(["summary", "value"], summary_rows(stats)).replace(
            "<table>", "<table class='kv'>", 1
        ),
        "quantiles": html_table(QUANTILE_HEADER, _quantile_rows(stats)),
        "charts": [fg.chart_html(c) for c in _main_charts(stats, arrays)],
        "quality": html_table(QUALITY_HEADER, quality_rows(stats)) if stats.get("quality") else "",
        "objective_charts": [
            fg.chart_html(c)
            for c in (objective_charts(stats, objectives) if objectives is not None else [])
        ],
        "objective_table": _objectives_html(stats),
        "drift": "",
        "pair_browser": pair_browser,
    }
    if against is not None and stats.get("drift"):
        label = sources.get("against", "older")
        fragments["drift"] = _drift_section(stats, arrays, against, label=label)
    return render_page(
        "inspect.html.j2",
        title=f"prefsmith inspect — {sources.get('pairs', 'pairs')}",
        heading="Pair-score inspection",
        tool="inspect",
        sources=sources,
        fragments=fragments,
    )
