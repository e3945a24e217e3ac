"""Prefect artifacts of a build: a stage progress bar, row counts with drop reasons, pair-score
quantiles and a markdown summary, read from the stages' manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from prefsmith.schemas.manifest import Manifest

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


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
