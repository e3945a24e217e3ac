"""The dataset build and the train flow: prompts → split → generate → score → pairs (→ reference),
then train. Every stage is called by its registry name (prefsmith.flows.stages) and shows in the
Prefect UI as a task of that name. `pipeline` (prefsmith.flows.pipeline) runs them once;
`rounds` (prefsmith.flows.rounds) runs the stages after the split once per round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel

from prefsmith.flows.artifacts import StageProgress, publish_summary
from prefsmith.flows.shards import sharded_stage
from prefsmith.flows.stages import get_stage
from prefsmith.flows.tasks import run_stage
from prefsmith.schemas.data_configs import GenerateConfig, SplitConfig
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig

PROMPT_STAGES = ["prompts", "split"]


class Build:
    """The tables and manifests of one dataset build, filled in stage by stage."""

    def __init__(
        self, config: PipelineConfig, run_dir: Path, stages: list[str], *, key: str = "build"
    ) -> None:
        self.config, self.run_dir = config, run_dir
        self.tables: dict[str, str] = {}
        self.manifests: dict[str, str] = {}
        self.progress = StageProgress(stages, key=f"{key}-progress")

    def run(
        self,
        name: str,
        inputs: dict[str, str],
        config: BaseModel,
        *,
        out_dir: Path | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Run stage `name` (sharded when the scale config says so) into `out_dir` (default the
        build folder), shown and recorded as `label` (default its name)."""
        stage, scale = get_stage(name), self.config.scale
        options = {"config": config, "out_dir": out_dir or self.run_dir, "label": label}
        isolate = self.config.isolate_stages
        if stage.shards is not None:
            result = sharded_stage(name, inputs, scale=scale, isolate_stages=isolate, **options)
        else:
            result = run_stage(name, inputs, isolate_stages=isolate, **options)
        self.tables[stage.writes[0]] = result["output"]
        self.tables.update({table: result[table] for table in stage.more})
        self.manifests[label or name] = result["manifest"]
        self.progress.advance()
        return result


def prompt_stages(build: Build) -> None:
    """prompts → split: the train and held-out prompt tables in `build.tables`."""
    config = build.config
    build.run("prompts", {}, config.prompts)
    split = SplitConfig(heldout_fraction=config.heldout_fraction)
    build.run("split", {"prompts": build.tables["prompts"]}, split)


def with_store(config: BaseModel, store: str | None) -> BaseModel:
    """A generate or score config using the pipeline's store (one it names itself wins), or
    none at all when the pipeline says `reuse: false`."""
    if store is not None and config.store is not None:
        return config
    return config.model_copy(update={"store": store})


def sample_stages(build: Build, *, generate: GenerateConfig) -> None:
    """generate → score → pairs on `build.tables["prompts_train"]`, reusing the store's rows."""
    train_prompts, store = build.tables["prompts_train"], build.config.store()
    build.run("generate", {"prompts": train_prompts}, with_store(generate, store))
    scored = {"responses": build.tables["responses"], "prompts": train_prompts}
    score_stages(build, scored, store=store)
    build.run("pairs", {"scores": build.tables["scores"], **scored}, build.config.pairs)


def score_stages(build: Build, inputs: dict[str, str], *, store: str | None) -> None:
    """The score stage, or one per scorer (`scorers/<name>/scores`, each resumable and cached on
    its own, shown as `score-<name>`) combined by the combine stage: `build.tables["scores"]`
    is the table pairs rank by, `scores:<name>` each scorer's."""
    config = build.config
    if not isinstance(config.score, list):
        build.run("score", inputs, with_store(config.score, store))
        return
    per_scorer = {}
    for scorer in config.scorers():
        folder = build.run_dir / "scorers" / str(scorer.name)
        label = f"score-{scorer.name}"
        result = build.run("score", inputs, with_store(scorer, store), out_dir=folder, label=label)
        per_scorer[f"scores:{scorer.name}"] = result["output"]
    build.tables.update(per_scorer)
    build.run("combine", per_scorer, config.combine)


def sample_stage_names(config: PipelineConfig) -> list[str]:
    """The stages `sample_stages` runs for this config, as its progress bar counts them."""
    if not isinstance(config.score, list):
        return ["generate", "score", "pairs"]
    scorers = [f"score-{scorer.name}" for scorer in config.scorers()]
    return ["generate", *scorers, "combine", "pairs"]


def reference_stage(build: Build, reference: ReferenceConfig) -> str:
    """The reference pass on `build.tables["pairs"]`; returns the pairs_ref table's path."""
    build.run("reference", {"pairs": build.tables["pairs"]}, reference)
    return build.tables["pairs_ref"]


@flow(name="build-dataset")
def build_dataset(config: PipelineConfig, run_dir: str) -> dict[str, str]:
    """prompts → split → generate → score → pairs (→ reference); returns table paths by name."""
    stages = PROMPT_STAGES + sample_stage_names(config) + (["reference"] if config.train else [])
    build = Build(config, Path(run_dir), stages)
    prompt_stages(build)
    sample_stages(build, generate=config.generate)
    if config.train is not None:
        reference_stage(build, config.reference_config())
    publish_summary(run_dir, build.manifests, pairs=build.tables["pairs"])
    return build.tables


@flow(name="train")
def train(config: PipelineConfig, pairs: str, run_dir: str, policy: str | None = None) -> str:
    """The train stage on the pairs with reference log-probs, into `<run_dir>/checkpoint`
    (from `policy` when given, else `train.policy`)."""
    train_config: TrainConfig = config.train
    if policy is not None:
        train_config = train_config.model_copy(update={"policy": policy})
    result = run_stage(
        "train",
        {"pairs": pairs},
        config=train_config,
        out_dir=Path(run_dir) / "checkpoint",
        isolate_stages=config.isolate_stages,
    )
    return result["output"]
