"""On-policy rounds (`rounds:` in the pipeline config): the prompts and their split once, then
per round t: generate with round t−1's checkpoint (round 1 with `generate.model`), score, pair,
compute reference log-probs (the base's, or round t−1's with `reference: previous`), train from
round t−1's checkpoint (`policy_init: previous`) and evaluate against the base and against round
t−1. Layout of the build folder:

| path                         | holds                                                      |
|------------------------------|------------------------------------------------------------|
| prompts.parquet, prompts_*   | the prompts and the train / held-out split (once)          |
| round-<t>/                   | responses, scores, pairs, pairs_ref, checkpoint/, eval/    |
| round-<t>/round.json         | the round's record: parent checkpoint, generator, outputs  |
| round-<t>/eval/vs-previous/  | round t against round t−1 on the same held-out prompts     |
| eval-base/                   | the base's held-out samples, shared by every round         |
| rounds.json, rounds.md       | one row per round (prefsmith.evaluation.rounds_table)      |

Each round is one Prefect flow run named `<build>-round-<t>`. A killed build run again into the
same folder (`--run-dir`) passes through the finished rounds (their stages `Cached`, training
found finished) and resumes inside the round it was in, from its finished shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow

from prefsmith.flows.artifacts import publish_summary
from prefsmith.flows.build import (
    PROMPT_STAGES,
    Build,
    prompt_stages,
    reference_stage,
    sample_stage_names,
    sample_stages,
    train,
)
from prefsmith.flows.evaluate import compare_sides, evaluation
from prefsmith.flows.run_names import stage_run_name
from prefsmith.flows.shards import task_runner
from prefsmith.generation.checkpoints import inference_folder
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.io import write_text
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.train_configs import ReferenceConfig

ROUND_FILE = "round.json"
EVAL_BASE = "eval-base"


def round_folder(run_dir: str | Path, index: int) -> Path:
    return Path(run_dir) / f"round-{index}"


def round_generator(config: PipelineConfig, parent: str | None) -> GenerateConfig:
    """Round 1 samples with `generate.model`; round t with round t−1's checkpoint (its revision
    is then the checkpoint's own hash, recorded in every response row's `generator`)."""
    if parent is None:
        return config.generate
    return config.generate.model_copy(update={"model": parent, "revision": None})


def round_reference(config: PipelineConfig, previous: str | None) -> ReferenceConfig:
    """The base's reference config, or round t−1's full model with `reference: previous`."""
    base = config.reference_config()
    if previous is None or config.rounds.reference == "base":
        return base
    return base.model_copy(update={"model": previous, "revision": None})


def round_policy(config: PipelineConfig, previous: str | None) -> str | None:
    """Where round t's training starts: round t−1's full model, or None for `train.policy`."""
    return previous if config.rounds.policy_init == "previous" else None


@flow(name="round")
def run_round(
    config: PipelineConfig,
    run_dir: str,
    index: int,
    prompts: dict[str, str],
    parent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Round `index` in `<run_dir>/round-<index>/`; `parent` is round t−1's record (None in
    round 1). Returns this round's record, also written to its `round.json`."""
    folder = round_folder(run_dir, index)
    stages = [*sample_stage_names(config), "reference", "train"]
    build = Build(config, folder, stages, key=f"round-{index}")
    build.tables.update(prompts)
    record = train_round(config, build, index=index, parent=parent)
    publish_summary(str(folder), build.manifests, pairs=build.tables["pairs"])
    if config.evaluate is not None:
        record.update(evaluate_round(config, run_dir, record, parent))
    write_text(json.dumps(record, indent=2), folder / ROUND_FILE)
    return record


def train_round(
    config: PipelineConfig, build: Build, *, index: int, parent: dict[str, Any] | None
) -> dict[str, Any]:
    """generate → score → pairs → reference → train of one round; the round's record."""
    checkpoint = parent["checkpoint"] if parent else None
    sample_stages(build, generate=round_generator(config, checkpoint))
    # After generate: an adapter checkpoint's merged model exists by now (the generate stage
    # merged it in its own process), so this finds it rather than merging here.
    trust = config.generate.trust_remote_code
    previous = inference_folder(checkpoint, trust_remote_code=trust) if checkpoint else None
    reference = round_reference(config, previous)
    pairs_ref = reference_stage(build, reference)
    policy = round_policy(config, previous)
    trainer = train.with_options(flow_run_name=stage_run_name("train"))
    trained = trainer(config, pairs_ref, str(build.run_dir), policy=policy)
    build.progress.advance()
    return {
        "round": index,
        "parent_round": parent["round"] if parent else None,
        "parent_checkpoint": checkpoint,
        "generator": Manifest.read(build.manifests["generate"]).extra["generator"],
        "policy_init": policy or config.train.policy,
        "reference": {"kind": config.rounds.reference, "model": reference.model},
        "pairs": Manifest.read(build.manifests["pairs"]).rows_written.get("pairs"),
        "checkpoint": trained,
        "tables": dict(build.tables),
    }


def evaluate_round(
    config: PipelineConfig, run_dir: str, record: dict[str, Any], parent: dict[str, Any] | None
) -> dict[str, Any]:
    """Round t against the base (samples shared in `eval-base/`) and against round t−1 (both
    rounds' held-out samples, already scored): {eval_report, eval_vs_previous, tuned_*}."""
    index, folder = record["round"], round_folder(run_dir, record["round"])
    heldout = record["tables"]["prompts_heldout"]
    result = evaluation(
        config,
        record["checkpoint"],
        heldout,
        str(folder),
        base_dir=str(Path(run_dir) / EVAL_BASE),
        labels={"tuned": f"round {index}", "base": "base"},
    )
    result["eval_vs_previous"] = None
    if parent is not None:
        sides = {
            side: {k.removeprefix("tuned_"): v for k, v in r.items() if k.startswith("tuned_")}
            for side, r in (("tuned", result), ("base", parent))
        }
        result["eval_vs_previous"] = compare_sides(
            config,
            sides,
            out_dir=folder / "eval" / "vs-previous",
            heldout=heldout,
            labels={"tuned": f"round {index}", "base": f"round {parent['round']}"},
        )
    return result


def run_rounds(config: PipelineConfig, run_path: Path) -> dict[str, str]:
    """The prompts once, then `rounds.count` round flows; the pipeline's outputs: the last
    round's checkpoint and report, every round's folder, and the rounds summary."""
    from prefsmith.evaluation.rounds_table import write_rounds_summary

    prompts = Build(config, run_path, PROMPT_STAGES, key="prompts")
    prompt_stages(prompts)
    records: list[dict[str, Any]] = []
    for index in range(1, config.rounds.count + 1):
        runner = run_round.with_options(
            flow_run_name=stage_run_name(f"round-{index}"), task_runner=task_runner(config.scale)
        )
        parent = records[-1] if records else None
        records.append(runner(config, str(run_path), index, dict(prompts.tables), parent))
    last = records[-1]
    outputs = {f"round_{r['round']}": str(round_folder(run_path, r["round"])) for r in records}
    outputs.update({"pairs": last["tables"]["pairs"], "checkpoint": last["checkpoint"]})
    if last.get("eval_report"):
        outputs["eval_report"] = last["eval_report"]
    outputs["rounds_summary"] = str(write_rounds_summary(run_path, records))
    return outputs
