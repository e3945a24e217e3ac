"""Prefect tasks: thin wrappers that run a stage function (in-process or in its own process) and
pass Parquet paths, never data frames.

Caching and resume sit at three levels. A *finished* stage is a Prefect cache hit (state
`Cached`) keyed on the content hash of its input tables, its config and its model revision
(`StageInputs`). With `scale.shards_per_task` set (or on Ray), a sharded stage is a set of mapped
tasks, each cached on its own shards' content (flows/shards.py), so a killed build shows its
finished parts as `Cached`. And a stage killed half-way resumes from its finished shards by
itself (`prefsmith.schemas.io.run_shards`; the manifest records `shards_skipped`). On one machine the
default is one task per stage: each mapped task loads the model again, which costs more than it
saves when there is only one GPU (or CPU) to run them on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.tasks import exponential_backoff
from pydantic import BaseModel

from prefsmith.flows.isolate import _resolve, run_isolated
from prefsmith.schemas import errors
from prefsmith.schemas.ids import content_hash, model_revision
from prefsmith.schemas.manifest import Manifest, input_ref

logger = logging.getLogger(__name__)

# A user's mistake (bad config, bad input) fails the same way every time: never retried.
PERMANENT_ERRORS = (errors.ConfigError, errors.InputError, errors.SchemaError)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def _transient(task, task_run, state) -> bool:
    """Retry only failures that may pass: a dead child process, I/O, a server hiccup."""
    exception = state.result(raise_on_failure=False)
    return not isinstance(exception, PERMANENT_ERRORS)


def isolate_scorer(config: BaseModel, *, isolate_stages: bool) -> bool:
    """Whether a score stage gets its own process: only when it loads a model (a rule scorer
    holds no memory worth returning, and a process start costs seconds)."""
    return isolate_stages and getattr(config, "kind", None) != "rule"


def stage_model_revision(config: BaseModel) -> str:
    """The revision of the model a stage config names (prefsmith.schemas.ids.model_revision), if any."""
    model, revision = getattr(config, "model", None), getattr(config, "revision", None)
    return model_revision(model, revision=revision) if model else str(revision)


def _fingerprint(value: Any) -> Any:
    """Paths by content hash, configs by their JSON plus model revision, the rest as is."""
    if isinstance(value, Path):
        return {"path": str(value), "sha256": input_ref(value).sha256}
    if isinstance(value, BaseModel):
        return {"config": value.model_dump(mode="json"), "revision": stage_model_revision(value)}
    return value


class StageInputs(CachePolicy):
    """Cache key of a stage task: (input tables' content, stage config, model revision, target).

    The output folder is part of the key, so a new run folder never reuses another's paths.
    """

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        args = [_fingerprint(a) for a in inputs.get("args", ())]
        options = {
            k: str(v) if k == "out_dir" else _fingerprint(v)  # where, not what: by path
            for k, v in sorted(inputs.get("kwargs", {}).items())
        }
        return content_hash([inputs["target"], args, options])


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_transient,
    task_run_name="{name}",
)
def run_stage(
    name: str, target: str, *args: Any, isolated: bool = False, **kwargs: Any
) -> dict[str, str]:
    """Run `module:function(*args, **kwargs)` and return its StageResult as a dict of paths."""
    if isolated:
        return run_isolated(target, *args, **kwargs)
    result = _resolve(target)(*args, **kwargs)
    return {k: str(v) for k, v in asdict(result).items()} if is_dataclass(result) else result


# Generate and score: a finished stage is a cache hit on a re-run (state "Cached").
cached_stage = run_stage.with_options(cache_policy=StageInputs(), persist_result=True)


class StageProgress:
    """A Prefect progress artifact for a flow's stages: "stage k of N" as a percentage."""

    def __init__(self, stages: list[str], *, key: str) -> None:
        self.stages, self.done = stages, 0
        self.artifact = create_progress_artifact(progress=0.0, key=key, description=self._text())

    def _text(self) -> str:
        upcoming = self.stages[self.done] if self.done < len(self.stages) else "done"
        return f"stage {self.done} of {len(self.stages)} done; next: {upcoming}"

    def advance(self) -> None:
        self.done += 1
        update_progress_artifact(
            self.artifact, progress=100.0 * self.done / len(self.stages), description=self._text()
        )


def count_rows(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """One row per stage: unit, rows in/out, drops by reason, seconds (from its manifest)."""
    rows = []
    for stage, path in manifests.items():
        manifest = Manifest.read(path)
        rows.append(
            {
                "stage": stage,
                "unit": manifest.unit,
                "rows_in": manifest.rows_in,
                "rows_out": manifest.rows_out,
                "dropped": ", ".join(f"{k}={v}" for k, v in manifest.dropped.items()) or "-",
                "seconds": round(manifest.wall_time_s, 2),
            }
        )
    return rows


def pair_quantiles(pairs: str | Path) -> list[dict[str, Any]]:
    """Quantiles 0, .05, .25, .5, .75, .95, 1 of score_chosen, score_rejected and margin."""
    import polars as pl

    columns = ("score_chosen", "score_rejected", "margin")
    frame = pl.read_parquet(pairs, columns=list(columns))
    rows = []
    for q in QUANTILES:
        row: dict[str, Any] = {"quantile": q}
        for column in columns:
            value = frame[column].quantile(q, interpolation="linear") if frame.height else None
            row[column] = None if value is None else round(float(value), 6)
        rows.append(row)
    return rows


@task(cache_policy=NO_CACHE)
def publish_summary(run_dir: str, manifests: dict[str, str], *, pairs: str | None = None) -> str:
    """Publish counts and drops, pair-score quantiles and a markdown summary of a build."""
    rows = count_rows(manifests)
    create_table_artifact(key="build-counts", table=rows, description=f"Row counts of {run_dir}")
    lines = [
        f"# Build {Path(run_dir).name}",
        "",
        f"Outputs in `{run_dir}`",
        "",
        "| stage | in | out | dropped |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['stage']} | {r['rows_in']} | {r['rows_out']} | {r['dropped']} |" for r in rows]
    if pairs is not None:
        quantiles = pair_quantiles(pairs)
        create_table_artifact(
            key="pair-quantiles",
            table=quantiles,
            description=f"Pair score and margin quantiles of {run_dir}",
        )
        lines += ["", "| quantile | score_chosen | score_rejected | margin |", "|---|---|---|---|"]
        lines += [
            f"| {r['quantile']} | {r['score_chosen']} | {r['score_rejected']} | {r['margin']} |"
            for r in quantiles
        ]
    (Path(run_dir) / "summary.json").write_text(json.dumps({"counts": rows}, indent=2))
    return str(create_markdown_artifact(key="build-summary", markdown="\n".join(lines)))
