"""What "a rerun equals the uninterrupted run" means for the kill trials
(tests/flows/test_kill_trials.py): each function returns the differences it found, as lines.

Tables are compared sorted by id with every value equal, floats included: a rerun computes each
row with the same batch and seed as the uninterrupted run, so no tolerance is needed anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from kill_trial import table_difference

from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE, RESPONSES, SCORES


def differences(got: Path, want: Path, schema, *, key: str) -> list[str]:
    problem = table_difference(read_table(got, schema), read_table(want, schema), key=key)
    return [] if problem is None else [f"{got.name}: {problem}"]


def same_responses(got: Path, want: Path) -> list[str]:
    return differences(got / "responses", want / "responses", RESPONSES, key="response_id")


def same_scores(got: Path, want: Path) -> list[str]:
    return differences(got / "scores", want / "scores", SCORES, key="response_id")


def same_pairs_ref(got: Path, want: Path) -> list[str]:
    table = "pairs_ref.parquet"
    return differences(got / table, want / table, PAIRS_WITH_REFERENCE, key="pair_id")


def same_checkpoint(got: Path, want: Path, *, steps: int) -> list[str]:
    """Weights byte-equal; the step count (manifest and trainer summary) the planned one."""
    problems = []
    if (got / "final" / "model.safetensors").read_bytes() != (
        want / "final" / "model.safetensors"
    ).read_bytes():
        problems.append("final/model.safetensors differs")
    for where in (got, want):
        extra = Manifest.read(where / "final.manifest.json").extra
        summary = json.loads((where / "final" / "prefsmith_train.json").read_text())
        if not extra["global_step"] == summary["global_step"] == steps:
            problems.append(f"{where}: global_step {extra['global_step']}/{summary['global_step']}")
    revisions = [
        Manifest.read(w / "final.manifest.json").extra["model_revision"] for w in (got, want)
    ]
    if revisions[0] != revisions[1]:
        problems.append(f"model_revision {revisions[0]} != {revisions[1]}")
    return problems


def same_build(got: Path, want: Path, *, steps: int) -> list[str]:
    """Every table of the build, the checkpoint, and the evaluation report."""
    problems = same_responses(got, want) + same_scores(got, want) + same_pairs_ref(got, want)
    problems += differences(got / "pairs.parquet", want / "pairs.parquet", PAIRS, key="pair_id")
    problems += same_checkpoint(got / "checkpoint", want / "checkpoint", steps=steps)
    reports = [json.loads((w / "eval" / "eval_report.json").read_text()) for w in (got, want)]
    problems += [] if reports[0] == reports[1] else [f"eval report {reports[0]} != {reports[1]}"]
    return problems
