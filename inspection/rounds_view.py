"""`prefsmith inspect BUILD` on a multi-round build (prefsmith.flows.rounds): each round's pair
scores and margins side by side, and how far each round's distribution moved from the round
before (two-sample KS, prefsmith.inspection.drift.ks_test): the drift an on-policy loop shows as
its policy changes. The evaluation's one row per round (`rounds.json`) is shown when it exists.

Outputs: `stats` {rounds: [{round, folder, n_pairs, <quantity>: {mean, p5, p50, p95},
ks_vs_previous: {<quantity>: {ks, p_value}} | null}], evaluation: [rows] | null}, a rich table
for the terminal, and `<BUILD>/rounds.inspect.html` with one overlaid histogram per quantity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prefsmith.inspection import figures as fg
from prefsmith.inspection.drift import ks_test
from prefsmith.inspection.page import html_table, render_page
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_frame, write_text
from prefsmith.schemas.tables import PAIRS

QUANTITIES = {
    "score_chosen": "score of the chosen response",
    "score_rejected": "score of the rejected response",
    "margin": "margin (chosen − rejected, raw)",
}
ROUND_FOLDER = re.compile(r"^round-(\d+)$")


@dataclass(frozen=True)
class RoundsInspection:
    stats: dict[str, Any]
    html_path: Path | None


def round_folders(build: Path) -> list[tuple[int, Path]]:
    """(index, folder) of every `round-<t>/` with a pairs table, by index."""
    found = []
    for folder in Path(build).iterdir() if Path(build).is_dir() else ():
        match = ROUND_FOLDER.match(folder.name)
        if match and (folder / "pairs.parquet").is_file():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def is_rounds_build(path: Path) -> bool:
    return bool(round_folders(path))


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"mean": None, "p5": None, "p50": None, "p95": None}
    p5, p50, p95 = np.quantile(values, [0.05, 0.5, 0.95])
    return {"mean": float(values.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def _ks(current: dict[str, np.ndarray], previous: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    for name in QUANTITIES:
        d, p = ks_test(current[name], previous[name])
        out[name] = {"ks": None if np.isnan(d) else d, "p_value": None if np.isnan(p) else p}
    return out


def load_rounds(build: Path) -> dict[int, dict[str, np.ndarray]]:
    """Each round's finite score_chosen, score_rejected and margin arrays, by round index."""
    rounds = {}
    for index, folder in round_folders(build):
        frame = read_frame(folder / "pairs.parquet", PAIRS).select(list(QUANTITIES))
        rounds[index] = {name: fg.finite(frame[name].to_numpy()) for name in QUANTITIES}
    return rounds


def rounds_stats(build: Path, rounds: dict[int, dict[str, np.ndarray]]) -> dict[str, Any]:
    """The `stats` of the module docstring."""
    rows, previous = [], None
    for index, arrays in rounds.items():
        row = {"round": index, "folder": str(Path(build) / f"round-{index}")}
        row["n_pairs"] = int(arrays["margin"].size)
        row.update({name: _quantiles(arrays[name]) for name in QUANTITIES})
        row["ks_vs_previous"] = _ks(arrays, previous) if previous is not None else None
        rows.append(row)
        previous = arrays
    summary = Path(build) / "rounds.json"
    evaluation = json.loads(summary.read_text())["rounds"] if summary.is_file() else None
    return {"rounds": rows, "evaluation": evaluation}


def fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def table_rows(stats: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-round pairs table (terminal and HTML)."""
    header = ["round", "pairs"]
    header += [f"{name} mean [p5, p95]" for name in QUANTITIES] + ["KS margin vs previous (p)"]
    rows = []
    for row in stats["rounds"]:
        cells = [str(row["round"]), str(row["n_pairs"])]
        for name in QUANTITIES:
            q = row[name]
            cells.append(f"{fmt(q['mean'])} [{fmt(q['p5'])}, {fmt(q['p95'])}]")
        ks = (row["ks_vs_previous"] or {}).get("margin")
        cells.append(f"{fmt(ks['ks'], '.3f')} ({fmt(ks['p_value'], '.2g')})" if ks else "-")
        rows.append(cells)
    return header, rows


def inspect_rounds(build: Path, *, out_html: Path | None) -> RoundsInspection:
    """Statistics of every round of `build`, and its HTML report unless `out_html` is None."""
    rounds = load_rounds(build)
    if not rounds:
        raise ConfigError(f"{build}: no round-<t>/pairs.parquet here; is it a multi-round build?")
    stats = rounds_stats(build, rounds)
    if out_html is not None:
        write_text(rounds_page(build, stats, rounds), out_html)
        fg.write_plotly_js(out_html.parent)
    return RoundsInspection(stats, out_html)


def rounds_page(build: Path, stats: dict[str, Any], rounds: dict[int, dict]) -> str:
    """The HTML report: tables, then one overlaid histogram (a series per round) per quantity."""
    from prefsmith.evaluation.rounds_table import COLUMNS, HEADERS, display_row

    header, rows = table_rows(stats)
    charts = [
        fg.chart_html(
            fg.histogram(
                {f"round {t}": arrays[name] for t, arrays in rounds.items()},
                title=f"{label}, per round",
                xlabel=name,
            )
        )
        for name, label in QUANTITIES.items()
    ]
    evaluation = ""
    if stats["evaluation"]:
        cells = [list(display_row(row).values()) for row in stats["evaluation"]]
        evaluation = html_table([HEADERS[c] for c in COLUMNS], cells)
    note = (
        "KS: two-sample Kolmogorov–Smirnov statistic of the round's margins against the round "
        "before (0: same distribution, 1: disjoint); raw scores, before any normalization."
    )
    return render_page(
        "rounds.html.j2",
        title=f"prefsmith inspect — rounds of {Path(build).name}",
        heading=f"Rounds of {Path(build).name}",
        tool="inspect",
        sources={"build": str(build)},
        fragments={
            "pairs_table": html_table(header, rows),
            "note": note,
            "evaluation": evaluation,
            "charts": charts,
        },
    )


def terminal_tables(stats: dict[str, Any]) -> list[Any]:
    """Rich tables for the terminal: pairs per round, then the evaluation's rows if any."""
    from rich.table import Table

    header, rows = table_rows(stats)
    pairs = Table(title="pairs per round (raw scores)")
    for name in header:
        pairs.add_column(name, overflow="fold")
    for row in rows:
        pairs.add_row(*row)
    return [pairs]
