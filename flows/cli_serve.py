"""`prefsmith serve CONFIG.yaml --cron "0 3 * * *"`: scheduled rebuilds on a running Prefect server.

The command preflights the config first (prefsmith.flows.preflight: a broken YAML, a missing file
or model fails now, not at 3 a.m.), then serves the rebuild deployment until interrupted. See flows/serve.py for the server set-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    config: Annotated[Path, typer.Argument(help="pipeline YAML (re-read at every rebuild)")],
    cron: Annotated[str, typer.Option(help='schedule, e.g. "0 3 * * *" (server time zone UTC)')],
    name: Annotated[str, typer.Option(help="deployment name")] = "rebuild",
) -> None:
    """Serve scheduled rebuilds of the dataset (needs `prefect server start --host 127.0.0.1`)."""
    from prefsmith.flows.preflight import preflight
    from prefsmith.schemas.config_base import read_yaml

    preflight(read_yaml(config))
    from prefsmith.flows.serve import (
        serve_rebuilds,  # imports Prefect: only once preflight passed
    )

    serve_rebuilds(config, cron=cron, name=name)


if __name__ == "__main__":
    from prefsmith.flows.cli import friendly_errors
    from prefsmith.flows.console import configure
    from prefsmith.flows.prefect_setup import use_prefect_defaults

    configure(verbose=False)  # what `prefsmith serve` does first
    use_prefect_defaults()
    typer.run(friendly_errors(serve))
