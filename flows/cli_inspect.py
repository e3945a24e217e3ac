"""The `prefsmith inspect` command (registered in prefsmith.flows.cli with `app.command()`).

An instant command: it calls the stage function `prefsmith.inspection.inspect.inspect_pairs` directly (no
Prefect), prints rich tables to stdout and writes the self-contained HTML report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from prefsmith.inspection.stats import ETA, MADPO_TAU, TAU_GOOD


def inspect(
    pairs: Annotated[
        Path, typer.Argument(metavar="PAIRS", help="pairs table (file or shard folder)")
    ],
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            metavar="OLDER_PAIRS",
            help="older pairs table: overlays and a KS statistic per distribution",
        ),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(
            "--scores", help="scores table: token lengths and per-objective distributions"
        ),
    ] = None,
    against_scores: Annotated[
        Path | None,
        typer.Option("--against-scores", help="scores table of OLDER_PAIRS (token lengths)"),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="HTML report path [default: <PAIRS>.inspect.html beside PAIRS]"
        ),
    ] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="print the tables only")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the statistics as JSON")
    ] = None,
    eta: Annotated[float, typer.Option("--eta", help="Uni-DPO η of w_qual = σ(η·margin)")] = ETA,
    tau_good: Annotated[
        float,
        typer.Option("--tau-good", help="Uni-DPO c-NLL threshold on the normalized chosen score"),
    ] = TAU_GOOD,
    madpo_tau: Annotated[
        float, typer.Option("--madpo-tau", help="MADPO τ", show_default="ln 999 ≈ 6.9068")
    ] = MADPO_TAU,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit with code 1 when there are warnings")
    ] = False,
) -> None:
    """Inspect how pair scores, margins and weights are distributed before training on them."""
    from rich.console import Console

    from prefsmith.inspection.inspect import inspect_pairs, write_text
    from prefsmith.inspection.report import render_terminal

    out_html = None if no_html else (html or default_html_path(pairs))
    result = inspect_pairs(
        pairs,
        against=against,
        scores=scores,
        against_scores=against_scores,
        out_html=out_html,
        eta=eta,
        tau_good=tau_good,
        madpo_tau=madpo_tau,
    )
    console = Console()
    render_terminal(result.stats, warnings=result.warnings, console=console)
    if json_out is not None:
        write_text(json.dumps(result.stats, indent=2, ensure_ascii=False), json_out)
        console.print(f"[green]wrote[/] {json_out}")
    if result.html_path is not None:
        console.print(f"[green]wrote[/] {result.html_path}")
    if strict and result.warnings:
        raise typer.Exit(code=1)


def default_html_path(pairs: Path) -> Path:
    """`<name>.inspect.html` beside the pairs file (or inside a shard folder)."""
    pairs = Path(pairs)
    if pairs.is_dir():
        return pairs / "inspect.html"
    return pairs.parent / f"{pairs.name.removesuffix('.parquet')}.inspect.html"
