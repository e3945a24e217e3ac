"""Prefect tasks: one task per registered stage (prefsmith.flows.stages), named after it, that
runs the stage in-process or in its own process and returns its StageResult as JSON-ready paths.

Caching and resume sit at three levels. A *finished* generate or score stage is a Prefect cache
hit (state `Cached`) keyed on the content hash of its input tables, its config and its model
revision (`StageInputs`), trusted only when the manifest the record names verifies: every
output it names is there with its recorded hash, for this config and these inputs
(`verified_key`; otherwise the stage runs again). With `scale.shards_per_task` set (or on Ray),
a sharded stage is a set of mapped tasks, each cached on its own shards' content
(flows/shards.py), so a killed build shows its finished parts as `Cached`. And a stage killed half-way resumes from its finished shards by
itself (`schemas.io.run_shards`; the manifest records `shards_skipped`).

Retries follow the registry: only stages marked `retry` (generate, score) are retried, and only
when the failure is transient (`schemas.errors.is_transient`: the stage's process was killed, a
server never answered, an OSError on I/O). Everything else fails once.

Results of cached tasks are JSON records in `<out_dir>/.prefect-results/` (no pickle: a pickled
record runs code when a cache hit loads it). A stage runs holding its lock on `out_dir`
(prefsmith.schemas.locks), taken by the process that writes: here, or the isolated child.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from prefsmith.flows.isolate import error_payload, rebuilt_error, run_isolated
from prefsmith.flows.stages import STAGES, Stage, get_stage
from prefsmith.schemas.errors import PrefsmithError, is_transient
from prefsmith.schemas.ids import content_hash, model_revision
from prefsmith.schemas.manifest import Inputs, input_ref, unverified_reason

logger = logging.getLogger(__name__)

RETRIES = 2  # attempts after the first, for the stages the registry marks `retry`
# Result records of cached tasks: JSON (a pickled record runs code when a cache hit loads it)
# in a folder beside the outputs they name, never Prefect's default `~/.prefect/storage` (which
# Prefect 3.7 picks even when PREFECT_HOME is elsewhere); a deleted folder takes them with it.
RESULT_SERIALIZER = "json"
RESULTS_DIR = ".prefect-results"


def result_storage(folder: str | Path) -> Path:
    """The result storage of cached tasks writing into `folder`: `folder/.prefect-results` (a
    Path: Prefect makes it a local file system, with no block saved on the server)."""
    return Path(folder).resolve() / RESULTS_DIR


def home_results() -> Path:
    """`$PREFECT_HOME/storage`: where a flow that starts before any run folder exists (pipeline)
    records its failure. Prefect 3.7's own default reads `~/.prefect` whatever PREFECT_HOME is."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home) / "storage"


@contextmanager
def results_in(folder: str | Path) -> Iterator[None]:
    """Within the block, every flow and task that sets no result storage or serializer of its
    own (sub-flows, mapped shard parts, and the records Prefect writes of any failure) stores
    JSON under `folder/.prefect-results`."""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_RESULTS_DEFAULT_SERIALIZER,
        temporary_settings,
    )

    updates = {
        PREFECT_LOCAL_STORAGE_PATH: str(result_storage(folder)),
        PREFECT_RESULTS_DEFAULT_SERIALIZER: RESULT_SERIALIZER,
    }
    with temporary_settings(updates=updates):
        yield


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


def verified_key(
    task_ctx: Any, key: str, problem: Callable[[Any], str | None], *, label: str
) -> str:
    """`key`, unless the record stored under it names outputs that fail `problem(result)`: then
    a fresh key, so Prefect finds no record, the task runs again and stores its result anew (the
    outputs land at the same paths, so the old record verifies again on the next run).

    A Prefect record alone never makes a stage complete: its files must still be there, as
    written (a cleaned or deleted run folder, an edited shard).
    """
    store = getattr(task_ctx, "result_store", None)
    if store is None or not store.exists(key):
        return key
    try:
        reason = problem(store.read(key).result)
    except Exception as error:  # an unreadable record is no result
        reason = f"its cached record cannot be read ({type(error).__name__})"
    if reason is None:
        return key
    logger.warning("%s: cached result not reused (%s); running it again", label, reason)
    return content_hash([key, "unverified", secrets.token_hex(8)])


def stage_output_problem(result: Any, *, config: BaseModel, inputs: Inputs) -> str | None:
    """Why a cached stage result cannot be reused (schemas.manifest.unverified_reason of the
    manifest it names, for this config and these inputs), or None."""
    manifest = result.get("manifest") if isinstance(result, Mapping) else None
    if manifest is None:
        return "its cached result names no manifest"
    return unverified_reason(manifest, config=config, inputs=inputs)


class StageInputs(CachePolicy):
    """Cache key of a stage task: (stage, input tables' content, config + model revision, target).

    The output folder is part of the key by its path, so a new run folder never reuses another's
    paths. A hit is trusted only when the manifest it names verifies (verified_key).
    """

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        key = content_hash(
            [
                inputs["name"],
                fingerprint(inputs["inputs"]),
                fingerprint(inputs["config"]),
                str(inputs["out_dir"]),
            ]
        )
        check = partial(stage_output_problem, config=inputs["config"], inputs=inputs["inputs"])
        return verified_key(task_ctx, key, check, label=inputs["name"])


def call_stage(
    name: str, inputs: dict[str, Path], config: BaseModel, out_dir: Path, isolated: bool
) -> dict[str, str | None]:
    """Run stage `name` here or in its own process; its StageResult as JSON-ready paths (the
    function behind every stage task). Locks are not taken here: the stages that write shared
    folders hold their own (generate, score, train), and the pipeline holds its run folder's."""
    if isolated:
        return run_isolated(name, inputs, config=config, out_dir=out_dir)
    try:
        return get_stage(name).fn(inputs, config=config, out_dir=out_dir).paths()
    except PrefsmithError:
        raise
    except Exception as error:  # as in a stage process: traceback to the log, one line out
        logger.exception("stage %s failed", name)
        raise rebuilt_error(error_payload(error)) from error


def stage_task(stage: Stage) -> Task:
    """The Prefect task of one stage: its name, its retry rule, its cache policy."""
    retries = {"retries": RETRIES, "retry_condition_fn": retry_if_transient} if stage.retry else {}
    return task(
        call_stage,
        name=stage.name,
        task_run_name="{name}",
        cache_policy=StageInputs() if stage.cached else NO_CACHE,
        persist_result=stage.cached,
        result_serializer=RESULT_SERIALIZER,
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
    storage = {"result_storage": result_storage(out_dir)} if stage.cached else {}
    stage_call = STAGE_TASKS[name].with_options(task_run_name=label or name, **storage)
    isolated = isolate_stages and stage.isolate(config)
    return stage_call(name, paths, config, Path(out_dir), isolated)
