"""How the scorers of a combined build agree (`prefsmith inspect PAIRS --scores
scores.combined.parquet`: each scorer's raw score is an objective `scorer/<name>`, written by
prefsmith.curation.combine).

For every two scorers: the Spearman ρ of their scores over every response of the pairs, and
their pairwise agreement, the share of pairs on which both prefer the same side (chosen over
rejected, rejected over chosen, or both a tie). Where they disagree: the pairs on which one
scorer prefers the chosen response and the other the rejected one, the most confident first
(ordered by the smaller of the two absolute margins: both scorers are sure, and opposite).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

from prefsmith.inspection.stats import _spearman
from prefsmith.inspection.summary import fmt_number

SCORER = "scorer/"
SHOWN = 10  # disagreeing pairs listed
AGREEMENT_HEADER = ["scorers", "Spearman ρ", "same preference", "opposite", "pairs"]


def per_scorer(objectives: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Scorer name → its (pair, chosen, rejected) rows, from the `scorer/<name>` objectives."""
    scored = objectives.filter(pl.col("name").str.starts_with(SCORER))
    return {
        str(name).removeprefix(SCORER): group.select("pair", "chosen", "rejected").sort("pair")
        for (name,), group in scored.group_by("name", maintain_order=True)
    }


def _pair_of(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    return a.join(b, on="pair", suffix="_b").drop_nans().drop_nulls()


def agreement(a: pl.DataFrame, b: pl.DataFrame) -> dict[str, Any]:
    """ρ over responses, and the shares of pairs with the same and the opposite preference."""
    both = _pair_of(a, b)
    ma = np.sign((both["chosen"] - both["rejected"]).to_numpy())
    mb = np.sign((both["chosen_b"] - both["rejected_b"]).to_numpy())
    values_a = np.concatenate([both["chosen"].to_numpy(), both["rejected"].to_numpy()])
    values_b = np.concatenate([both["chosen_b"].to_numpy(), both["rejected_b"].to_numpy()])
    n = int(ma.size)
    return {
        "spearman": _spearman(values_a, values_b),
        "same": float((ma == mb).mean()) if n else None,
        "opposite": float((ma * mb < 0).mean()) if n else None,
        "n_pairs": n,
    }


def disagreements(
    a: pl.DataFrame, b: pl.DataFrame, pair_ids: list[str] | None
) -> list[dict[str, Any]]:
    """The most confident opposite preferences: {pair_id, margin_a, margin_b}, up to SHOWN."""
    both = _pair_of(a, b).with_columns(
        margin_a=pl.col("chosen") - pl.col("rejected"),
        margin_b=pl.col("chosen_b") - pl.col("rejected_b"),
    )
    opposite = both.filter(pl.col("margin_a") * pl.col("margin_b") < 0)
    confident = pl.min_horizontal(pl.col("margin_a").abs(), pl.col("margin_b").abs())
    top = opposite.sort(confident, descending=True).head(SHOWN)
    return [
        {
            "pair_id": pair_ids[row["pair"]] if pair_ids is not None else str(row["pair"]),
            "margin_a": row["margin_a"],
            "margin_b": row["margin_b"],
        }
        for row in top.iter_rows(named=True)
    ]


def scorer_agreement(
    objectives: pl.DataFrame | None, pair_ids: list[str] | None
) -> list[dict[str, Any]]:
    """One entry per two scorers: {a, b, spearman, same, opposite, n_pairs, disagreements};
    [] with fewer than two scorers."""
    scorers = per_scorer(objectives) if objectives is not None else {}
    out = []
    for a, b in combinations(sorted(scorers), 2):
        entry = {"a": a, "b": b, **agreement(scorers[a], scorers[b])}
        entry["disagreements"] = disagreements(scorers[a], scorers[b], pair_ids)
        out.append(entry)
    return out


def agreement_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            f"{e['a']} / {e['b']}",
            fmt_number(e["spearman"], 3),
            fmt_number(e["same"], 3),
            fmt_number(e["opposite"], 3),
            str(e["n_pairs"]),
        ]
        for e in entries
    ]


def disagreement_rows(entry: dict[str, Any]) -> list[list[str]]:
    return [
        [d["pair_id"], fmt_number(d["margin_a"]), fmt_number(d["margin_b"])]
        for d in entry["disagreements"]
    ]


def _header(entry: dict[str, Any]) -> list[str]:
    return ["pair_id", f"margin {entry['a']}", f"margin {entry['b']}"]


def agreement_tables(entries: list[dict[str, Any]]) -> list[Any]:
    """Rich tables for the terminal: the agreement of every two scorers, then what they
    disagree on most."""
    from rich.table import Table

    def table(header: list[str], rows: list[list[str]], title: str) -> Table:
        out = Table(title=title)
        for name in header:
            out.add_column(name, overflow="fold")
        for row in rows:
            out.add_row(*row)
        return out

    tables = (
        [table(AGREEMENT_HEADER, agreement_rows(entries), "Scorer agreement")] if entries else []
    )
    for entry in entries:
        if entry["disagreements"]:
            title = f"Pairs {entry['a']} and {entry['b']} disagree on"
            tables.append(table(_header(entry), disagreement_rows(entry), title))
    return tables


def agreement_html(entries: list[dict[str, Any]]) -> str:
    """The same tables as HTML ('' with fewer than two scorers)."""
    from prefsmith.inspection.page import escape, html_table

    if not entries:
        return ""
    html = "<h3>Scorer agreement</h3>" + html_table(AGREEMENT_HEADER, agreement_rows(entries))
    for entry in entries:
        if entry["disagreements"]:
            html += f"<h3>Pairs {escape(entry['a'])} and {escape(entry['b'])} disagree on</h3>"
            html += html_table(_header(entry), disagreement_rows(entry))
    return html
