"""Prefect flow-run names after the build folder and the stage: `20261202-031500`,
`20261202-031500-build`, `-train`, `-evaluate`, `rebuild-20261202-031500`, instead of Prefect's
random two-word names (6 rebuilds made 22 of them, none saying which build it was).

Subflows are named when they are created (`flow_run_name=stage_run_name("build")`, from their
`run_dir` parameter); the pipeline and rebuild runs exist before their folder does, so they
rename themselves once it exists (`rename_this_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def stage_run_name(stage: str) -> Callable[[], str]:
    """A `flow_run_name` callable: `<build folder name>-<stage>` from the `run_dir` parameter."""

    def name() -> str:
        from prefect.runtime import flow_run

        run_dir = flow_run.parameters.get("run_dir")
        return f"{Path(run_dir).name}-{stage}" if run_dir else stage

    return name


def rename_this_run(name: str) -> None:
    """Rename the flow run this code runs in (a no-op outside one). A failed rename (the API
    busy) is logged and ignored: a name is not worth a build."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(context.flow_run.id, name=name)
    except Exception as error:  # the build goes on unnamed
        logger.debug("could not rename flow run %s: %s", context.flow_run.id, error)
