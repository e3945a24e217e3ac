"""Prefect tasks: one task per registered stage (prefsmith.flows.stages), named after it, that
runs the stage in-process or in its own process and returns its StageResult as JSON-ready paths.

Caching and resume sit at three levels. A *finished* generate or score stage is a Prefect cache
hit (state `Cached`) keyed on the content hash of its input tables, its config and its model
revision (`StageInputs`). With `scale.shards_per_task` set (or on Ray), a sharded stage is a set
of mapped tasks, each cached on its own shards' content (flows/shards.py), so a killed build shows
its finished parts as `Cached`. And a stage killed half-way resumes from its finished shards by
itself (`schemas.io.run_shards`; the manifest records `shards_skipped`).

Retries follow the registry: only stages marked `retry` (generate, score) are retried, and only
when the failure is transient (`schemas.errors.is_transient`: the stage's process was killed, a
server never answered, an OSError on I/O). Everything else fails once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from prefsmith.flows.isolate import run_isolated
from prefsmith.flows.stages import STAGES, Stage, get_stage
from prefsmith.schemas.errors import is_transient
from prefsmith.schemas.ids import content_hash, model_revision
from prefsmith.schemas.manifest import input_ref

logger = logging.getLogger(__name__)

RETRIES = 2  # attempts after the first, for the stages the registry marks `retry`


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry only what may pass (schemas.errors.is_transient)."""
    return is_transient(state.result(raise_on_failure=False))


def stage_model_revision(config: BaseModel) -> str:
    """The revision of the model a stage config names (schemas.ids.model_revision), if any."""
    model, revision = getattr(config, "model", None), getattr(config, "revision", None)
    return model_revision(model, revision=revision) if model else str(revision)


def fingerprint(value: Any) -> Any:
    """Paths by content hash, configs by their JSON plus model revision, the rest as is."""
    if isinstance(value, Path):
        return {"path": str(value), "sha256": input_ref(value).sha256}
    if isinstance(value, BaseModel):
        return {"config": value.model_dump(mode="json"), "revision": stage_model_revision(value)}
    if isinstance(value, Mapping):
        return {str(k): fingerprint(v) for k, v in sorted(value.items())}
    return value


class StageInputs(CachePolicy):
    """Cache key of a stage task: (stage, input tables' content, config + model revision, target).

    The output folder is part of the key by its path, so a new run folder never reuses another's
    paths.
    """

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        return content_hash(
            [
                inputs["name"],
                fingerprint(inputs["inputs"]),
                fingerprint(inputs["config"]),
                str(inputs["out_dir"]),
            ]
        )


def call_stage(
    name: str, inputs: dict[str, Path], config: BaseModel, out_dir: Path, isolated: bool
) -> dict[str, str | None]:
    """Run stage `name` here or in its own process; its StageResult as JSON-ready paths (the
    function behind every stage task)."""
    if isolated:
        return run_isolated(name, inputs, config=config, out_dir=out_dir)
    return get_stage(name).fn(inputs, config=config, out_dir=out_dir).paths()


def stage_task(stage: Stage) -> Task:
    """The Prefect task of one stage: its name, its retry rule, its cache policy."""
    retries = {"retries": RETRIES, "retry_condition_fn": retry_if_transient} if stage.retry else {}
    return task(
        call_stage,
        name=stage.name,
        task_run_name="{name}",
        cache_policy=StageInputs() if stage.cached else NO_CACHE,
        persist_result=stage.cached,
        retry_delay_seconds=exponential_backoff(backoff_factor=2),
        **retries,
    )


STAGE_TASKS: dict[str, Task] = {name: stage_task(stage) for name, stage in STAGES.items()}


def run_stage(
    name: str,
    inputs: Mapping[str, Any],
    *,
    config: BaseModel,
    out_dir: str | Path,
    isolate_stages: bool = True,
    label: str | None = None,
) -> dict[str, str | None]:
    """Run registered stage `name` as its Prefect task (shown as `label`, default its name).

    `isolate_stages` lets the stage run in its own process when the registry says its config
    needs one (a model that must give its memory back).
    """
    stage = get_stage(name)
    paths = stage.check_inputs(inputs)
    stage_call = STAGE_TASKS[name].with_options(task_run_name=label or name)
    isolated = isolate_stages and stage.isolate(config)
    return stage_call(name, paths, config, Path(out_dir), isolated)
