"""One row per round of an on-policy build (prefsmith.flows.rounds): the round's generator and
pairs, its win rate against the base and against the round before (95% intervals), mean reward
and tokens, KL to the reference and held-out pair accuracy, read from the round's records and
evaluation reports. Written as `rounds.json` and `rounds.md` at the top of the build.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "round",
    "generator",
    "pairs",
    "win_vs_base",
    "win_vs_previous",
    "mean_reward",
    "mean_tokens",
    "kl",
    "heldout_accuracy",
)


HEADERS = {
    "round": "round",
    "generator": "generator",
    "pairs": "pairs",
    "win_vs_base": "win vs base",
    "win_vs_previous": "win vs previous",
    "mean_reward": "reward",
    "mean_tokens": "tokens",
    "kl": "KL",
    "heldout_accuracy": "held-out acc.",
}


def _report(path: str | None) -> dict[str, Any] | None:
    return json.loads(Path(path).read_text()) if path else None


def _rate(report: dict[str, Any] | None) -> dict[str, float] | None:
    """{rate, low, high, n} of a report's win rate, or None without a report."""
    if report is None:
        return None
    return {key: report["win_rate"][key] for key in ("rate", "low", "high", "n")}


def round_row(record: dict[str, Any]) -> dict[str, Any]:
    """The summary row of one round from its `round.json` record."""
    vs_base, vs_previous = (
        _report(record.get("eval_report")),
        _report(record.get("eval_vs_previous")),
    )
    kl = (vs_base or {}).get("kl") or {}
    heldout = (vs_base or {}).get("heldout_pairs") or {}
    tuned = (vs_base or {}).get("tuned") or {}
    return {
        "round": record["round"],
        "generator": record["generator"],
        "pairs": record["pairs"],
        "win_vs_base": _rate(vs_base),
        "win_vs_previous": _rate(vs_previous),
        "mean_reward": tuned.get("mean_reward"),
        "mean_tokens": tuned.get("mean_tokens"),
        "kl": kl.get("kl_seq_mean"),
        "heldout_accuracy": heldout.get("accuracy"),
    }


def fmt_rate(rate: dict[str, float] | None) -> str:
    """The rate and its interval in percent, "62.5% (48.1–75.0)"; "-" where there is no
    comparison (round 1 has no previous)."""
    if rate is None or rate["rate"] is None:
        return "-"
    return f"{rate['rate']:.1%} ({100 * rate['low']:.1f}–{100 * rate['high']:.1f})"


def short_generator(generator: str) -> str:
    """`final@3fe9c8e3b80c6ee3` as `final@3fe9c8e3`: enough to tell rounds apart."""
    name, _, revision = generator.partition("@")
    return f"{name}@{revision[:8]}" if revision else name


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def display_row(row: dict[str, Any]) -> dict[str, str]:
    """A summary row as the strings the markdown table and the terminal print."""
    return {
        "round": str(row["round"]),
        "generator": short_generator(row["generator"]),
        "pairs": str(row["pairs"]),
        "win_vs_base": fmt_rate(row["win_vs_base"]),
        "win_vs_previous": fmt_rate(row["win_vs_previous"]),
        "mean_reward": _fmt(row["mean_reward"], ".3f"),
        "mean_tokens": _fmt(row["mean_tokens"], ".1f"),
        "kl": _fmt(row["kl"], ".3f"),
        "heldout_accuracy": _fmt(row["heldout_accuracy"], ".1%"),
    }


def rounds_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rounds table in markdown (win rates with their 95% bootstrap intervals, in %)."""
    lines = [
        "# Rounds",
        "",
        "Win rates are judged by the evaluation scorer on the held-out prompts, with 95% "
        "bootstrap intervals; KL is to the reference the pairs were built against.",
        "",
        "| " + " | ".join(HEADERS[column] for column in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(display_row(row).values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_rounds_summary(run_dir: Path, records: Sequence[dict[str, Any]]) -> Path:
    """`rounds.json` (the rows) and `rounds.md` in `run_dir`; returns the JSON's path."""
    from prefsmith.schemas.io import write_text

    rows = [round_row(record) for record in records]
    write_text(rounds_markdown(rows), run_dir / "rounds.md")
    return write_text(json.dumps({"rounds": rows}, indent=2), run_dir / "rounds.json")
