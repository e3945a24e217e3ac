"""The Prefect flows: build_dataset (prompts → generate → score → pairs → reference), train,
evaluate, and pipeline (all of them) into a dated run folder whose `latest` pointer moves only
when the build succeeds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow

from flows.evaluate import evaluate
from flows.tasks import publish_summary, run_stage
from schemas.pipeline_config import PipelineConfig
from schemas.train_configs import ReferenceConfig


def new_run_dir(config: PipelineConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = Path(config.out_dir) / config.name / stamp
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


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
    prompts = run_stage("prompts", "generation.prompts:load_prompts", config.prompts, out)
    train_prompts, heldout = run_stage.fn(
        "split", "generation.prompts:split_prompts", Path(prompts["output"]),
        heldout_fraction=config.heldout_fraction, out_dir=out,
    )  # fmt: skip
    responses = run_stage("generate", "generation.stage:generate", Path(train_prompts),
                          config=config.generate, out_dir=out, isolated=iso)  # fmt: skip
    scores = run_stage("score", "scoring.stage:score", Path(responses["output"]),
                       prompts=Path(train_prompts), config=config.score, out_dir=out, isolated=iso)  # fmt: skip
    pairs = run_stage("pairs", "scoring.pairs:build_pairs", Path(scores["output"]),
                      responses=Path(responses["output"]), prompts=Path(train_prompts),
                      config=config.pairs, out_dir=out)  # fmt: skip
    tables = {"prompts": prompts["output"], "prompts_train": str(train_prompts),
              "prompts_heldout": str(heldout), "responses": responses["output"],
              "scores": scores["output"], "pairs": pairs["output"]}  # fmt: skip
    manifests = {k: v["manifest"] for k, v in
                 {"prompts": prompts, "generate": responses, "score": scores, "pairs": pairs}.items()}  # fmt: skip
    if config.train is not None:
        reference = config.reference or ReferenceConfig(model=config.train.policy)
        ref = run_stage("reference", "scoring.reference:reference_pass", Path(pairs["output"]),
                        config=reference, out_dir=out, isolated=iso)  # fmt: skip
        tables["pairs_ref"], manifests["reference"] = ref["output"], ref["manifest"]
    publish_summary(run_dir, manifests)
    return tables


@flow(name="train")
def train(config: PipelineConfig, pairs: str, run_dir: str) -> str:
    result = run_stage("train", "training.stage:train", Path(pairs), config=config.train,
                       out_dir=Path(run_dir) / "checkpoint", isolated=config.isolate_stages)  # fmt: skip
    return result["output"]


@flow(name="pipeline")
def pipeline(config: PipelineConfig, run_dir: str | None = None) -> dict[str, str]:
    """All stages into a new dated run folder; `latest` moves only if everything succeeded."""
    run_path = Path(run_dir) if run_dir else new_run_dir(config)
    outputs = build_dataset(config, str(run_path))
    if config.train is not None:
        outputs["checkpoint"] = train(config, outputs["pairs_ref"], str(run_path))
        if config.evaluate is not None:
            outputs["eval_report"] = evaluate(config, outputs["checkpoint"],
                                              outputs["prompts_heldout"], str(run_path))  # fmt: skip
    outputs["run_dir"] = str(run_path)
    outputs["latest"] = str(point_latest(run_path))
    return outputs


