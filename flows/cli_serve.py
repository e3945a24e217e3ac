"""`prefsmith serve CONFIG.yaml --cron "0 3 * * *"`: scheduled rebuilds on a running Prefect server.

The command validates the config first (a broken YAML fails now, not at 3 a.m.), then serves the
rebuild deployment until interrupted. See flows/serve.py for the server set-up.
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
    from prefsmith.schemas.config_base import parse_config, read_yaml
    from prefsmith.schemas.pipeline_config import PipelineConfig

    parse_config(PipelineConfig, read_yaml(config))
    from prefsmith.flows.serve import (
        serve_rebuilds,  # imports Prefect: only once the config is valid
    )

    serve_rebuilds(config, cron=cron, name=name)


if __name__ == "__main__":
    from prefsmith.flows.cli import friendly_errors

    typer.run(friendly_errors(serve))
