"""Sharded stages (generate, score) as mapped Prefect tasks, each cached on its shards' content.

A sharded stage's registry entry (prefsmith.flows.stages) carries two functions beside the stage:

| function                                   | does                                              |
|--------------------------------------------|---------------------------------------------------|
| `Shards.plan(inputs, ...) -> [sha256]`     | cuts the input into shards; one hash per shard    |
| `Shards.write(inputs, ..., shards=[…])`    | writes only those shards (one model load a call)  |
| the stage itself                           | finds every shard done, loads no model, writes the manifest |

`sharded_stage` plans, maps one task over each part of `shards_per_task` shards, then calls the
stage itself for the manifest. A part's cache key is (its shards' content hashes, the stage
config, the model revision, the output folder), trusted only while its shards still verify
against their folder's plan (`parts_problem`), so a build killed half-way and run again shows
the finished parts as `Cached` and redoes only the rest. With the Ray task runner the parts run on
Ray workers (which are separate processes, so a part is not isolated again); locally each part
runs in its own process when stages are isolated.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE, CachePolicy

from prefsmith.flows.isolate import run_isolated
from prefsmith.flows.stages import Stage, get_stage
from prefsmith.flows.tasks import (
    RESULT_SERIALIZER,
    RETRIES,
    fingerprint,
    result_storage,
    retry_if_transient,
    run_stage,
    verified_key,
)
from prefsmith.schemas.ids import content_hash
from prefsmith.schemas.pipeline_config import ScaleConfig
from prefsmith.schemas.shard_plan import shard_problem


class PartInputs(CachePolicy):
    """Cache key of one mapped part: its shards' content, the stage config (+ model revision),
    the output folder. The input tables are not re-hashed: the shard hashes cover them."""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        call = inputs["call"]
        key = content_hash(
            [inputs["name"], inputs["hashes"], fingerprint(call["config"]), str(call["out_dir"])]
        )
        label = f"{inputs['name']}-part-{inputs.get('part', '?')}"
        return verified_key(task_ctx, key, parts_problem, label=label)


def parts_problem(result: Any) -> str | None:
    """Why a cached part's shards cannot be reused (schemas.shard_plan.shard_problem of the first
    that fails: gone, beyond its folder's plan, or no longer matching its done record), or None."""
    if not isinstance(result, list):
        return "its cached result is not a list of shards"
    return next(filter(None, (shard_problem(path) for path in result)), None)


def _write_shards(stage: Stage, call: dict, *, shards: list[int], isolated: bool) -> list[str]:
    """A sharded stage's shard writer, here or in its own process."""
    inputs, config, out_dir = call["inputs"], call["config"], Path(call["out_dir"])
    if isolated:
        return run_isolated(
            stage.name, inputs, config=config, out_dir=out_dir, call="shards", shards=shards
        )
    return stage.shards.write(inputs, config=config, out_dir=out_dir, shards=shards)


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=retry_if_transient,
    task_run_name="{name}-plan",
)
def plan_shards(name: str, call: dict) -> list[str]:
    """One content hash per shard of stage `name`: in this process, as it loads a tokenizer at
    most, never a model."""
    inputs, config, out_dir = call["inputs"], call["config"], Path(call["out_dir"])
    return get_stage(name).shards.plan(inputs, config=config, out_dir=out_dir)


@task(
    cache_policy=PartInputs(),
    persist_result=True,
    result_serializer=RESULT_SERIALIZER,  # stored where `results_in` says (flows/tasks.py)
    retries=RETRIES,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=retry_if_transient,
    task_run_name="{name}-part-{part}",
)
def stage_part(
    name: str, part: int, shards: list[int], hashes: list[str], call: dict, isolated: bool
) -> list[str]:
    """Write shards `shards` of stage `name` (one mapped part)."""
    return _write_shards(get_stage(name), call, shards=shards, isolated=isolated)


def parts_of(hashes: list[str], size: int) -> list[list[int]]:
    """Shard indices grouped into consecutive parts of `size`."""
    return [list(range(i, min(i + size, len(hashes)))) for i in range(0, len(hashes), size)]


def sharded_stage(
    name: str,
    inputs: Mapping[str, Any],
    *,
    config: Any,
    out_dir: Path,
    scale: ScaleConfig,
    isolate_stages: bool,
    label: str | None = None,
) -> dict[str, str | None]:
    """Run a sharded stage: one cached task, or plan → mapped parts → manifest (shown as
    `label`, default its name)."""
    stage = get_stage(name)
    size = scale.part_size()
    if size is None:
        return run_stage(
            name,
            inputs,
            config=config,
            out_dir=out_dir,
            isolate_stages=isolate_stages,
            label=label,
        )
    isolated = isolate_stages and stage.isolate(config)
    call = {"inputs": stage.check_inputs(inputs), "config": config, "out_dir": Path(out_dir)}
    hashes = plan_shards(name, call)
    parts = parts_of(hashes, size)
    on_ray = scale.task_runner == "ray"
    with ray_options(scale):
        # Ray workers are other processes: they get the run folder's JSON storage explicitly.
        parts_task = stage_part.with_options(result_storage=result_storage(out_dir))
        futures = parts_task.map(
            unmapped(name),
            list(range(len(parts))),
            parts,
            [[hashes[i] for i in part] for part in parts],
            unmapped(call),
            unmapped(isolated and not on_ray),
        )
    futures.result()  # raises the first part's failure after all parts ended
    # Every shard exists now: the stage only counts rows and writes its manifest (no model).
    return run_stage(
        name, inputs, config=config, out_dir=out_dir, isolate_stages=False, label=label
    )


def task_runner(scale: ScaleConfig) -> Any:
    """The Prefect task runner of the dataset build: Ray's, or local threads bounded so mapped
    parts (each loading a model) do not all run at once."""
    if scale.task_runner != "ray":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=scale.local_parallel_tasks)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        from prefsmith.schemas.errors import ConfigError

        raise ConfigError(
            "scale.task_runner: 'ray' needs the ray extra: pip install 'prefsmith[ray]'"
        ) from None
    from prefect.client.orchestration import get_client

    # Ray workers report task states to this flow's API (a temporary server's URL is in no
    # setting); without it each would start a server of its own. Remote workers need a real one.
    with get_client(sync_client=True) as client:
        env = {"PREFECT_API_URL": str(client.api_url).rstrip("/")}
    init = {"namespace": "prefsmith", "include_dashboard": False, "runtime_env": {"env_vars": env}}
    return RayTaskRunner(address=scale.ray_address, init_kwargs=init)


def ray_options(scale: ScaleConfig) -> Any:
    """A context that gives each Ray shard task its CPUs/GPUs (a no-op off Ray)."""
    from contextlib import nullcontext

    if scale.task_runner != "ray":
        return nullcontext()
    from prefect_ray.context import remote_options

    return remote_options(num_cpus=scale.cpus_per_task, num_gpus=scale.gpus_per_task)
