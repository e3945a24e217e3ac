"""Prefect tasks: thin wrappers that run a stage function (in-process or in its own process) and
pass Parquet paths, never data frames. Stages resume from their finished shards by themselves,
so a retry only redoes what is missing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.isolate import _resolve, run_isolated
from schemas.manifest import Manifest

logger = logging.getLogger(__name__)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, task_run_name="{name}")
def run_stage(name: str, target: str, *args: Any, isolated: bool = False, **kwargs: Any) -> dict[str, str]:
    """Run `module:function(*args, **kwargs)` and return its StageResult as a dict of paths."""
    if isolated:
        return run_isolated(target, *args, **kwargs)
    result = _resolve(target)(*args, **kwargs)
    return {k: str(v) for k, v in asdict(result).items()} if is_dataclass(result) else result


@task(cache_policy=NO_CACHE)
def publish_summary(run_dir: str, manifests: dict[str, str]) -> str:
    """Publish a counts-and-drops table and a markdown summary of a build as Prefect artifacts."""
    rows = []
    for stage, path in manifests.items():
        manifest = Manifest.read(path)
        rows.append({
            "stage": stage, "unit": manifest.unit, "rows_in": manifest.rows_in,
            "rows_out": manifest.rows_out,
            "dropped": ", ".join(f"{k}={v}" for k, v in manifest.dropped.items()) or "-",
            "seconds": round(manifest.wall_time_s, 2),
        })  # fmt: skip
    create_table_artifact(key="build-counts", table=rows, description=f"Row counts of {run_dir}")
    lines = [f"# Build {Path(run_dir).name}", "", f"Outputs in `{run_dir}`", "",
             "| stage | in | out | dropped |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['stage']} | {r['rows_in']} | {r['rows_out']} | {r['dropped']} |" for r in rows]
    return str(create_markdown_artifact(key="build-summary", markdown="\n".join(lines)))
