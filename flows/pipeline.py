"""The Prefect flows: build_dataset (prompts → generate → score → pairs → reference), train,
evaluate, and pipeline (all of them) into a dated run folder whose `latest` pointer moves only
when the build succeeds.

`python -m prefsmith.flows.pipeline CONFIG.yaml [--run-dir DIR]` runs the pipeline into a chosen folder:
running it again into the same folder after a crash reuses finished stages (Prefect cache) and
finished shards (the stages' own resume).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from prefect import flow

from prefsmith.flows.evaluate import evaluate
from prefsmith.flows.shards import sharded_stage, task_runner
from prefsmith.flows.tasks import StageProgress, isolate_scorer, publish_summary, run_stage
from prefsmith.schemas.config_base import parse_config, read_yaml
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.train_configs import ReferenceConfig

BUILD_STAGES = ["prompts", "split", "generate", "score", "pairs", "reference"]


def new_run_dir(config: PipelineConfig) -> Path:
    """`<out_dir>/<name>/<UTC timestamp>`, with a counter if two builds start in one second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    parent = Path(config.out_dir) / config.name
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        run_dir = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {parent} for {stamp}")


def point_latest(run_dir: Path) -> Path:
    """Atomically repoint `<run_dir>/../latest` at `run_dir` (a symlink swapped by rename)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)
    return link


@flow(name="build-dataset")
def build_dataset(config: PipelineConfig, run_dir: str) -> dict[str, str]:
    """prompts → (split) → generate → score → pairs → reference; returns table paths by name."""
    out, iso = Path(run_dir), config.isolate_stages
    progress = StageProgress(
        BUILD_STAGES if config.train else BUILD_STAGES[:-1], key="build-progress"
    )
    prompts = run_stage("prompts", "prefsmith.generation.prompts:load_prompts", config.prompts, out)
    progress.advance()
    train_prompts, heldout = run_stage.fn(
        "split",
        "prefsmith.generation.prompts:split_prompts",
        Path(prompts["output"]),
        heldout_fraction=config.heldout_fraction,
        out_dir=out,
    )
    progress.advance()
    responses = sharded_stage(
        "generate",
        "prefsmith.generation.stage",
        Path(train_prompts),
        scale=config.scale,
        config=config.generate,
        out_dir=out,
        isolated=iso,
    )
    progress.advance()
    scores = sharded_stage(
        "score",
        "prefsmith.scoring.stage",
        Path(responses["output"]),
        scale=config.scale,
        prompts=Path(train_prompts),
        config=config.score,
        out_dir=out,
        isolated=isolate_scorer(config.score, isolate_stages=iso),
    )
    progress.advance()
    pairs = run_stage(
        "pairs",
        "prefsmith.curation.pairs:build_pairs",
        Path(scores["output"]),
        responses=Path(responses["output"]),
        prompts=Path(train_prompts),
        config=config.pairs,
        out_dir=out,
    )
    progress.advance()
    tables = {
        "prompts": prompts["output"],
        "prompts_train": str(train_prompts),
        "prompts_heldout": str(heldout),
        "responses": responses["output"],
        "scores": scores["output"],
        "pairs": pairs["output"],
    }
    manifests = {
        k: v["manifest"]
        for k, v in {
            "prompts": prompts,
            "generate": responses,
            "score": scores,
            "pairs": pairs,
        }.items()
    }
    if config.train is not None:
        reference = config.reference or ReferenceConfig(model=config.train.policy)
        ref = run_stage(
            "reference",
            "prefsmith.training.reference:reference_pass",
            Path(pairs["output"]),
            config=reference,
            out_dir=out,
            isolated=iso,
        )
        tables["pairs_ref"], manifests["reference"] = ref["output"], ref["manifest"]
        progress.advance()
    publish_summary(run_dir, manifests, pairs=pairs["output"])
    return tables


@flow(name="train")
def train(config: PipelineConfig, pairs: str, run_dir: str) -> str:
    result = run_stage(
        "train",
        "prefsmith.training.launch:launch_train",
        Path(pairs),
        config=config.train,
        out_dir=Path(run_dir) / "checkpoint",
        isolated=config.isolate_stages,
    )
    return result["output"]


@flow(name="pipeline")
def pipeline(config: PipelineConfig, run_dir: str | None = None) -> dict[str, str]:
    """All stages into a new dated run folder; `latest` moves only if everything succeeded."""
    run_path = Path(run_dir) if run_dir else new_run_dir(config)
    run_path.mkdir(parents=True, exist_ok=True)
    build = build_dataset.with_options(task_runner=task_runner(config.scale))  # where shards run
    outputs = build(config, str(run_path))
    if config.train is not None:
        outputs["checkpoint"] = train(config, outputs["pairs_ref"], str(run_path))
        if config.evaluate is not None:
            outputs["eval_report"] = evaluate(
                config, outputs["checkpoint"], outputs["prompts_heldout"], str(run_path)
            )
    outputs["run_dir"] = str(run_path)
    outputs["latest"] = str(point_latest(run_path))
    return outputs


def run_config_file(config_path: Path, *, run_dir: Path | None = None) -> dict[str, str]:
    """Validate a pipeline YAML, then run the pipeline flow (into `run_dir` if given)."""
    config = parse_config(PipelineConfig, read_yaml(config_path))
    return pipeline(config, run_dir=str(run_dir) if run_dir else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prefsmith.flows.pipeline", description="run the pipeline"
    )
    parser.add_argument("config", type=Path, help="pipeline YAML")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: a new dated folder")
    args = parser.parse_args(argv)
    print(run_config_file(args.config, run_dir=args.run_dir))


if __name__ == "__main__":
    main()
