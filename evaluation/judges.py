"""Who judged an evaluation, and how every configured scorer judges it.

A policy trained on one scorer's pairs learns that scorer's quirks; judged by the same scorer it
looks better than it is (reward hacking). The evaluate flow therefore judges with a scorer that
did not build the pairs when one is configured (prefsmith.schemas.pipeline_config.judge), and
the report names its judge and warns when it is a training scorer. Each other configured
scorer's win rate is computed on the same samples, side by side (`by_scorer`), so a gain that
only the training scorer sees stands out.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from prefsmith.evaluation.winrate import win_rate
from prefsmith.schemas.eval_configs import CompareConfig
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.tables import SCORES

TRAINING_JUDGE_WARNING = (
    "the judge is a scorer that built the training pairs: a policy that learned its quirks "
    "scores well here without being better; configure a second scorer (score: [...]) or "
    "evaluate.scorer to judge independently"
)


def judge_part(config: CompareConfig) -> dict | None:
    """The report's `judge`: {name, training_scorer, warning}; None when the flow named none."""
    if config.judge is None:
        return None
    warning = TRAINING_JUDGE_WARNING if config.judge_is_training_scorer else None
    return {
        "name": config.judge,
        "training_scorer": config.judge_is_training_scorer,
        "warning": warning,
    }


def prompt_means(scores: Path) -> pl.DataFrame:
    """prompt_id and the mean score of its samples."""
    frame = read_frame(scores, SCORES)
    return frame.group_by("prompt_id").agg(pl.col("score").mean().alias("score"))


def by_scorer(
    tables: dict[str, dict[str, Path]], *, config: CompareConfig
) -> list[dict[str, object]]:
    """One win rate per scorer ({name: {tuned: scores, base: scores}}), on the prompts both
    sides have: {scorer, rate, low, high, n, training_scorer}."""
    rows = []
    for name, sides in tables.items():
        paired = (  # sorted: group_by's order is not stable, and the bootstrap draws by position
            prompt_means(sides["tuned"])
            .join(prompt_means(sides["base"]), on="prompt_id", suffix="_base")
            .sort("prompt_id")
        )
        result = win_rate(
            paired["score"].to_numpy(),
            paired["score_base"].to_numpy(),
            n_boot=config.n_boot,
            seed=config.seed,
        ).as_dict()
        row = {"scorer": name, **{k: result[k] for k in ("rate", "low", "high", "n")}}
        row["training_scorer"] = name in config.training_scorers
        rows.append(row)
    return rows


def scorer_inputs(inputs: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """{name: {tuned, base}} from the compare stage's `tuned_scores:<name>` and
    `base_scores:<name>` inputs (a scorer needs both sides)."""
    tables: dict[str, dict[str, Path]] = {}
    for key, path in inputs.items():
        family, _, name = key.partition(":")
        if name and family in ("tuned_scores", "base_scores"):
            tables.setdefault(name, {})[family.removesuffix("_scores")] = Path(path)
    return {name: sides for name, sides in tables.items() if len(sides) == 2}


def judge_lines(report: dict) -> list[str]:
    """Markdown: who judged, the warning, and the win rate by each scorer."""
    judge, rows = report.get("judge"), report.get("by_scorer") or []
    lines = []
    if judge is not None:
        lines += [
            f"Judged by **{judge['name']}**"
            + (" (a training scorer)" if judge["training_scorer"] else " (not a training scorer)"),
            "",
        ]
        if judge["warning"]:
            lines += [f"> Warning: {judge['warning']}", ""]
    if rows:
        lines += [
            "| scorer | win rate | 95% CI | prompts | built the pairs |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['scorer']} | {r['rate']:.1%} | {r['low']:.1%} – {r['high']:.1%} | {r['n']} "
            f"| {'yes' if r['training_scorer'] else 'no'} |"
            for r in rows
        ]
        lines.append("")
    return lines
