"""Sharded stages (generate, score) as mapped Prefect tasks, each cached on its shards' content.

A stage module offers three functions (prefsmith.generation.stage, prefsmith.scoring.stage):

| function                        | does                                                       |
|---------------------------------|------------------------------------------------------------|
| `shard_plan(...) -> [sha256]`   | cuts the input into shards; one content hash per shard      |
| `<stage>_shards(..., shards=[…])` | writes only those shards (loads the model once per call)  |
| `<stage>(...)`                  | finds every shard done, loads no model, writes the manifest |

`sharded_stage` plans, maps one task over each part of `shards_per_task` shards, then calls the
stage itself for the manifest. A part's cache key is (its shards' content hashes, the stage
config, the model revision, the output folder), so a build killed half-way and run again shows
the finished parts as `Cached` and redoes only the rest. With the Ray task runner the parts run on
Ray workers (which are separate processes, so a part is not isolated again); locally each part
runs in its own process when stages are isolated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task, unmapped
from prefect.cache_policies import CachePolicy

from prefsmith.flows.isolate import _resolve, run_isolated
from prefsmith.flows.tasks import _fingerprint, _transient, cached_stage, run_stage
from prefsmith.schemas.ids import content_hash
from prefsmith.schemas.pipeline_config import ScaleConfig

# The stage's function names, by stage module.
SHARDED = {
    "prefsmith.generation.stage": ("generate", "generate_shards"),
    "prefsmith.scoring.stage": ("score", "score_shards"),
}


class PartInputs(CachePolicy):
    """Cache key of one mapped part: its shards' content, the stage config (+ model revision),
    the output folder. The input tables are not re-hashed: the shard hashes cover them."""

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        call = inputs["call"]
        options = {
            k: str(v) if isinstance(v, Path) else _fingerprint(v)
            for k, v in sorted(call["kwargs"].items())
        }
        return content_hash([inputs["target"], inputs["hashes"], options])


@task(
    cache_policy=PartInputs(),
    persist_result=True,
    retries=2,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=_transient,
    task_run_name="{name}-part-{part}",
)
def stage_part(
    name: str,
    target: str,
    part: int,
    shards: list[int],
    hashes: list[str],
    call: dict,
    isolated: bool,
) -> list[str]:
    """Write shards `shards` of a stage: `target(*call["args"], shards=..., **call["kwargs"])`."""
    if isolated:
        return run_isolated(target, *call["args"], shards=shards, **call["kwargs"])
    return _resolve(target)(*call["args"], shards=shards, **call["kwargs"])


def parts_of(hashes: list[str], size: int) -> list[list[int]]:
    """Shard indices grouped into consecutive parts of `size`."""
    return [list(range(i, min(i + size, len(hashes)))) for i in range(0, len(hashes), size)]


def sharded_stage(
    name: str, module: str, *args: Any, scale: ScaleConfig, isolated: bool, **kwargs: Any
) -> dict[str, str]:
    """Run a sharded stage: one cached task, or plan → mapped parts → manifest."""
    stage, shards_fn = SHARDED[module]
    size = scale.part_size()
    if size is None:
        return cached_stage(name, f"{module}:{stage}", *args, isolated=isolated, **kwargs)
    hashes = run_stage(f"{name}-plan", f"{module}:shard_plan", *args, **kwargs)
    parts = parts_of(hashes, size)
    on_ray = scale.task_runner == "ray"
    with ray_options(scale):
        futures = stage_part.map(
            unmapped(name),
            unmapped(f"{module}:{shards_fn}"),
            list(range(len(parts))),
            parts,
            [[hashes[i] for i in part] for part in parts],
            unmapped({"args": list(args), "kwargs": kwargs}),
            unmapped(isolated and not on_ray),
        )
    futures.result()  # raises the first part's failure after all parts ended
    # Every shard exists now: the stage only counts rows and writes its manifest (no model).
    return run_stage(name, f"{module}:{stage}", *args, **kwargs)


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
