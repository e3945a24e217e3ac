"""Prefect artifacts of a build: a stage progress bar, row counts with drop reasons, pair-score
quantiles and a markdown summary, read from the stages' manifests; and the run summary on the
top-level run (`pipeline`, or the served `rebuild` above it): counts, pair quantiles, training
metrics, the evaluation headline and a link to the build folder, so the run a schedule started
shows its results on its own page."""

from __future__ import annotations

import json
import logging
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

logger = logging.getLogger(__name__)
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
            row[column] = None if value is None else round(float(value), 6) + 0.0  # no -0.0
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


def _markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(row.get(c)) for c in columns) + " |" for row in rows]


def training_metrics(checkpoint: str | Path) -> dict[str, Any]:
    """The final metrics the train stage recorded in its manifest (train_loss, runtime, ...)."""
    from prefsmith.schemas.manifest import manifest_path

    path = manifest_path(checkpoint)
    return dict(Manifest.read(path).extra.get("metrics", {})) if path.is_file() else {}


def run_summary(outputs: dict[str, str]) -> dict[str, Any]:
    """What the run summary shows, from the files of a finished run: {run_dir, counts,
    pair_quantiles, training, evaluation} (absent parts are empty)."""
    run_dir = Path(outputs["run_dir"])
    counts_file = run_dir / "summary.json"
    counts = json.loads(counts_file.read_text())["counts"] if counts_file.is_file() else []
    summary: dict[str, Any] = {"run_dir": str(run_dir.resolve()), "counts": counts}
    summary["pair_quantiles"] = pair_quantiles(outputs["pairs"]) if "pairs" in outputs else []
    summary["training"] = training_metrics(outputs["checkpoint"]) if "checkpoint" in outputs else {}
    summary["evaluation"] = ""
    if "eval_report" in outputs:
        from prefsmith.flows.cli_eval import headline

        summary["evaluation"] = headline(json.loads(Path(outputs["eval_report"]).read_text()))
    return summary


def run_summary_markdown(summary: dict[str, Any]) -> str:
    run_dir = summary["run_dir"]
    lines = [f"# Run {Path(run_dir).name}", "", f"Build folder: [{run_dir}](file://{run_dir})"]
    if summary["evaluation"]:
        lines += ["", "## Evaluation", "", *summary["evaluation"].splitlines()]
    if summary["training"]:
        metrics = [{"metric": k, "value": v} for k, v in sorted(summary["training"].items())]
        lines += ["", "## Training", "", *_markdown_table(metrics, ["metric", "value"])]
    if summary["counts"]:
        columns = ["stage", "rows_in", "rows_out", "dropped"]
        lines += ["", "## Rows", "", *_markdown_table(summary["counts"], columns)]
    if summary["pair_quantiles"]:
        columns = ["quantile", "score_chosen", "score_rejected", "margin"]
        lines += ["", "## Pair scores", "", *_markdown_table(summary["pair_quantiles"], columns)]
    return "\n".join(lines)


def publish_run_summary(outputs: dict[str, str]) -> str:
    """Attach the run summary (markdown, key `run-summary`) to the flow run this is called in:
    called in a flow's body, not a task, so it sits on that run's own page. The build has
    finished by then: a summary that cannot be published is a warning, not a failed build."""
    summary = run_summary(outputs)
    markdown = run_summary_markdown(summary)
    description = f"Summary of {summary['run_dir']}"
    try:
        artifact = create_markdown_artifact(
            key="run-summary", markdown=markdown, description=description
        )
    except Exception as error:  # the API refused or is gone: the build itself is done
        logger.warning("run summary of %s not published: %s", summary["run_dir"], error)
        return ""
    return str(artifact)
