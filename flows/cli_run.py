"""`prefsmith run` and `prefsmith quickstart` (registered in prefsmith.flows.cli): the pipeline
flow from a config, or on the tiny local models, then a table of where every output is.

Both send Prefect's run records to the run's `logs/prefect.log` while the flow runs
(prefsmith.flows.console.prefect_runs_to_log), so a failed run prints one `error:` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from prefsmith.schemas.config_base import read_yaml


def run(
    config: Annotated[Path, typer.Argument(help="pipeline YAML")],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="build into this folder (a re-run resumes it); default: a new dated folder",
        ),
    ] = None,
    no_reuse: Annotated[
        bool,
        typer.Option(
            "--no-reuse",
            help="compute every response and score again instead of reusing earlier builds' "
            "from <out_dir>/<name>/store",
        ),
    ] = False,
) -> None:
    """Run the whole pipeline flow from a YAML config into a new dated run folder."""
    from prefsmith.flows.preflight import preflight

    cfg = preflight(read_yaml(config), out_dir=run_dir)
    if no_reuse:
        cfg = cfg.model_copy(update={"reuse": False})
    from prefsmith.flows.console import prefect_runs_to_log
    from prefsmith.flows.pipeline import pipeline  # imports Prefect: only once preflight passed

    with prefect_runs_to_log():  # a failure is our one `error:` line, its traceback in the log
        outputs = pipeline(cfg, run_dir=str(run_dir) if run_dir else None)
    show_outputs(outputs)


def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="where everything goes")] = Path(
        "runs/quickstart"
    ),
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds", min=1, max=10, help="on-policy rounds (round t samples from round t−1)"
        ),
    ] = 1,
) -> None:
    """The main job: tiny local models, bundled prompts, the full pipeline on the CPU."""
    from prefsmith.flows.quickstart import run_quickstart

    show_outputs(run_quickstart(out.resolve(), rounds=rounds))


def show_outputs(outputs: dict[str, str]) -> None:
    """Print where every output is and, if there was an evaluation, the headline result."""
    import json

    from rich.table import Table

    from prefsmith.flows.cli_eval import headline

    run_dir = outputs.get("run_dir")
    table = Table(
        title="outputs", show_header=False, caption=f"under {run_dir}" if run_dir else None
    )
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a path is only useful whole
    for name, path in outputs.items():
        table.add_row(name, _under(path, run_dir) if name != "run_dir" else path)
    Console().print(table)
    if "eval_report" in outputs:
        report = json.loads(Path(outputs["eval_report"]).read_text())
        Console().print(headline(report), highlight=False)
    if "rounds_summary" in outputs:
        Console().print(rounds_table(Path(outputs["rounds_summary"])))


def rounds_table(summary: Path):
    """The rounds summary (prefsmith.evaluation.rounds_table) as a terminal table that fits 80
    columns: each interval under its rate; the generators are in rounds.md."""
    import json

    from rich import box
    from rich.table import Table

    from prefsmith.evaluation.rounds_table import COLUMNS, HEADERS, display_row

    columns = [c for c in COLUMNS if c != "generator"]
    table = Table(title="rounds: win rates (95% intervals, %)", box=box.SIMPLE_HEAD)
    for column in columns:
        wide = column.startswith("win_")  # "(80.3–91.6)" under its rate
        header = HEADERS[column].replace("win ", "").replace(" acc.", "\nacc.")
        table.add_column(header, justify="right", min_width=11 if wide else None)
    for row in json.loads(summary.read_text())["rounds"]:
        cells = display_row(row)
        table.add_row(*(cells[c].replace(" (", "\n(") for c in columns))
    return table


def _under(path: str, run_dir: str | None) -> str:
    """`path` relative to the run folder when inside it: one short line per output."""
    if run_dir and Path(path).is_relative_to(run_dir):
        return str(Path(path).relative_to(run_dir))
    return path
