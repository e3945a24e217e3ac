"""Scheduled rebuilds: a `rebuild` flow served as a deployment on a running Prefect server.

Start a server bound to loopback first, then serve:

    prefect server start --host 127.0.0.1            # keeps running; UI at http://127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefsmith serve CONFIG.yaml --cron "0 3 * * *"   # keeps running; Ctrl-C pauses the schedule

Each rebuild reads CONFIG.yaml when it starts (so an edit applies to the next rebuild) and builds
into a new dated folder `<out_dir>/<name>/<UTC timestamp>/`; `latest` moves only on success.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow

from prefsmith.flows.pipeline import run_config_file
from prefsmith.schemas.errors import ConfigError

logger = logging.getLogger(__name__)

START_SERVER = (
    "no Prefect server: start one with `prefect server start --host 127.0.0.1` and "
    "export PREFECT_API_URL=http://127.0.0.1:4200/api"
)


@flow(name="rebuild")
def rebuild(config_path: str) -> dict[str, str]:
    """Load the pipeline YAML now (edits apply) and run the pipeline into a new dated folder."""
    return run_config_file(Path(config_path))


def api_url() -> str | None:
    """The Prefect API URL from the environment or the active profile, if any."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def serve_rebuilds(config_path: Path, *, cron: str, name: str = "rebuild") -> None:
    """Register the rebuild deployment with `cron` on the running server and serve it (blocks)."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    if not api_url():
        raise ConfigError(START_SERVER)
    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise ConfigError(f'--cron: not a cron expression: {cron!r} (e.g. "0 3 * * *")') from None
    config_path = Path(config_path).resolve()
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    logger.info("serving rebuilds of %s on %r at %s", config_path, cron, api_url())
    rebuild.serve(name=name, cron=cron, parameters={"config_path": str(config_path)})
