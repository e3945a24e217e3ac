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
) -> None:
    """Run the whole pipeline flow from a YAML config into a new dated run folder."""
    from prefsmith.flows.preflight import preflight

    cfg = preflight(read_yaml(config), out_dir=run_dir)
    from prefsmith.flows.console import prefect_runs_to_log
    from prefsmith.flows.pipeline import pipeline  # imports Prefect: only once preflight passed

    with prefect_runs_to_log():  # a failure is our one `error:` line, its traceback in the log
        outputs = pipeline(cfg, run_dir=str(run_dir) if run_dir else None)
    show_outputs(outputs)


def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="where everything goes")] = Path(
        "runs/quickstart"
    ),
) -> None:
    """The main job: tiny local models, bundled prompts, the full pipeline on the CPU."""
    from prefsmith.flows.quickstart import run_quickstart

    show_outputs(run_quickstart(out.resolve()))


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


def _under(path: str, run_dir: str | None) -> str:
    """`path` relative to the run folder when inside it: one short line per output."""
    if run_dir and Path(path).is_relative_to(run_dir):
        return str(Path(path).relative_to(run_dir))
    return path
