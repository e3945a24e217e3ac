"""Scheduled rebuilds: a `rebuild` flow served as a deployment on a running Prefect server.

Start a server bound to loopback first, then serve:

    prefect server start --host 127.0.0.1            # keeps running; UI at http://127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefsmith serve CONFIG.yaml --cron "0 3 * * *"   # keeps running; Ctrl-C stops it cleanly

Each rebuild reads CONFIG.yaml when it starts (so an edit applies to the next rebuild) and builds
into a new dated folder `<out_dir>/<name>/<UTC timestamp>/`; `latest` moves only on success.

At most one rebuild of a builds folder runs at a time: a rebuild holds the `rebuild` lock of
`<out_dir>/<name>` (prefsmith.schemas.locks) for its whole build, and one that finds it held (a
cron shorter than a build) logs why and ends at once, without a folder or a model loaded. Ctrl-C
or SIGTERM stops `serve` cleanly: one line says so, Prefect's runner cancels the rebuild in
flight (its folder keeps the INCOMPLETE marker the pipeline wrote at its start,
prefsmith.flows.incomplete) and pauses the schedule. The rebuild processes ignore the terminal's
SIGINT (the runner stops them), so one Ctrl-C does not become a traceback from every process;
their Prefect records go to the build's `logs/prefect.log`, the runner's to
`<out_dir>/<name>/serve.log`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from prefect import flow

from prefsmith.flows import console
from prefsmith.flows.artifacts import publish_run_summary
from prefsmith.flows.pipeline import new_run_dir, run_config_file
from prefsmith.flows.run_names import rename_this_run
from prefsmith.schemas.config_base import parse_config, read_yaml
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.locks import FolderLocked, folder_lock, holder_line, lock_path
from prefsmith.schemas.pipeline_config import PipelineConfig

logger = logging.getLogger(__name__)

SERVED_ENV = "PREFSMITH_SERVED"  # set by serve_rebuilds; its rebuild processes inherit it
LOCK = "rebuild"
START_SERVER = (
    "no Prefect server: start one with `prefect server start --host 127.0.0.1` and "
    "export PREFECT_API_URL=http://127.0.0.1:4200/api"
)


def builds_folder(config: PipelineConfig) -> Path:
    """`<out_dir>/<name>`: the dated build folders and `latest` of one pipeline config."""
    return Path(config.out_dir) / config.name


def skip_reason(builds: Path) -> str:
    return (
        f"rebuild skipped: the previous rebuild into {builds} is still running "
        f"({holder_line(lock_path(builds, LOCK))})"
    )


def _served_process() -> None:
    """In a rebuild process started by `serve`: the terminal's SIGINT is the runner's to handle
    (it cancels this run), and Prefect's run records go to the build's log."""
    if os.environ.get(SERVED_ENV) != "1":
        return
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the stage processes
    except ValueError:  # not the main thread: nothing to route
        return
    if console.is_quiet():  # prefsmith's lines as the CLI prints them, not Prefect's format
        console.route(console=sys.stderr, everything=sys.stderr, verbose=False)
    console.send_prefect_runs_to_log()


@flow(name="rebuild")
def rebuild(config_path: str) -> dict[str, str]:
    """Load the pipeline YAML now (edits apply) and run the pipeline into a new dated folder,
    unless another rebuild of the same builds folder still runs: then return {"skipped": why}."""
    _served_process()
    config = parse_config(PipelineConfig, read_yaml(Path(config_path)))
    builds = builds_folder(config)
    with ExitStack() as held:
        try:
            held.enter_context(folder_lock(builds, LOCK, wait_s=0))
        except FolderLocked:
            reason = skip_reason(builds)
            logger.warning(reason)
            rename_this_run("rebuild-skipped")
            return {"skipped": reason}
        run_dir = new_run_dir(config)
        rename_this_run(f"rebuild-{run_dir.name}")
        # Through run_config_file, not the `pipeline` flow object: called from here, the pipeline
        # flow's parameter check failed in the served run's process (`PipelineModel` is not
        # fully defined), seen with Prefect 3.7.7.
        outputs = run_config_file(Path(config_path), run_dir=run_dir)
    publish_run_summary(outputs)  # on this run's own page: the one the schedule started
    return outputs


def api_url() -> str | None:
    """The Prefect API URL from the environment or the active profile, if any."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


async def serve_until_stopped(runner) -> None:
    """Run Prefect's runner until SIGINT or SIGTERM, then stop it: one line, the rebuild in
    flight cancelled (runner.astop), the schedule paused (the runner's exit).

    Prefect 3.7.7's own SIGTERM handler calls the runner's sync `stop` from inside its event
    loop, which only creates a coroutine that never runs (the runs go on, and a page of asyncio
    tracebacks follows); so both signals are taken on the loop itself, once the runner has set
    its handler."""
    loop = asyncio.get_running_loop()

    def request_stop(signum: signal.Signals) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: None)  # a second Ctrl-C does not interrupt
        logger.warning(
            "serve: %s; cancelling the rebuild in flight (its folder stays marked INCOMPLETE) "
            "and pausing the schedule",
            signum.name,
        )
        loop.create_task(runner.astop())

    async def take_signals() -> None:  # runs at the runner's first await, after its handler
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_stop, sig)

    taking = loop.create_task(take_signals())
    await runner.start()
    await taking


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
    builds = builds_folder(parse_config(PipelineConfig, read_yaml(config_path)))
    from prefect.runner import Runner

    os.environ[SERVED_ENV] = "1"
    console.send_prefect_runs_to_log()
    console.RUN_LOG.open(builds / "serve.log")
    runner = Runner(name=name, pause_on_shutdown=True, limit=None)
    runner.add_flow(rebuild, name=name, cron=cron, parameters={"config_path": str(config_path)})
    logger.info("serve: deployment rebuild/%s on %r at %s; Ctrl-C stops it", name, cron, api_url())
    asyncio.run(serve_until_stopped(runner))
    logger.info("serve: stopped; the schedule is paused")
