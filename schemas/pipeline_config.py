"""The whole-pipeline config read by `prefsmith run CONFIG.yaml` and built by the quickstart.

One YAML file, one section per stage; every section is the stage's own config model, so a key
that is unknown anywhere stops the run with a one-line message naming it.

Token lengths are declared once, under `train:` (`max_length`, `max_prompt_length`): the
reference pass, the KL estimate and held-out accuracy render with them too
(`PipelineConfig.reference_config()`), since reference log-probs over other truncations than
training uses would be silently wrong. `reference:` may repeat them only with equal values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from prefsmith.schemas.combine_config import CombineConfig
from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.contracts import TokenLengths
from prefsmith.schemas.data_configs import (
    GenerateConfig,
    PairsConfig,
    PromptsConfig,
    SamplingConfig,
    ScoreConfig,
)
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig

LENGTHS = tuple(TokenLengths.model_fields)  # declared under train:, shared by reference


class EvalConfig(StrictModel):
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(n=2, temperature=0.7, max_new_tokens=64),
        description="how base and tuned policies sample on the held-out prompts",
    )
    scorer: ScoreConfig | None = Field(None, description="default: the pipeline's score section")
    n_boot: int = Field(2000, ge=100, description="bootstrap resamples for the 95% interval")
    seed: int = 0
    kl: bool = Field(True, description="estimate KL(tuned ‖ reference) on the tuned samples")
    heldout_pairs: bool = Field(
        True, description="implicit-reward accuracy on pairs built from the base's held-out samples"
    )
    lm_eval_tasks: list[str] = Field(
        default_factory=list,
        description="lm-evaluation-harness tasks run on the checkpoint (needs lm-eval installed)",
    )


class ScaleConfig(StrictModel):
    """Where the sharded stages (generate, score) of the dataset build run.

    `local` with `shards_per_task: null` runs each stage as one task (one model load); setting
    `shards_per_task` maps a stage over tasks of that many shards, each cached on its shards'
    content. `ray` maps them onto a Ray cluster through Prefect's Ray task runner.
    """

    task_runner: Literal["local", "ray"] = Field(
        "local", description="local: this process (and its stage processes); ray: a Ray cluster"
    )
    ray_address: str | None = Field(
        None, description="ray: null starts a local Ray; 'auto' or 'ray://HOST:10001' joins one"
    )
    shards_per_task: int | None = Field(
        None, ge=1, description="shards per mapped task; null: whole stage (local), 1 (ray)"
    )
    local_parallel_tasks: int = Field(
        1, ge=1, description="local: mapped tasks run at once (1: one model in memory at a time)"
    )
    cpus_per_task: float = Field(1.0, gt=0, description="ray: CPUs each shard task reserves")
    gpus_per_task: float = Field(0.0, ge=0, description="ray: GPUs each shard task reserves")

    def part_size(self) -> int | None:
        """Shards per mapped task, or None when the stage runs as a single task."""
        if self.shards_per_task is not None:
            return self.shards_per_task
        return 1 if self.task_runner == "ray" else None


class RoundsConfig(StrictModel):
    """Iterative on-policy rounds: round t samples from round t−1's checkpoint (round 1 from
    `generate.model`), scores, pairs, computes reference log-probs and trains again, each round in
    `round-<t>/` of the build (prefsmith.flows.rounds)."""

    count: int = Field(2, ge=1, le=50, description="rounds in one build")
    reference: Literal["base", "previous"] = Field(
        "base",
        description="reference log-probs from the base (the pipeline's reference) or from round "
        "t−1's checkpoint",
    )
    policy_init: Literal["previous", "base"] = Field(
        "previous", description="round t trains from round t−1's checkpoint, or from train.policy"
    )


class PipelineConfig(StrictModel):
    name: str = Field(
        "prefsmith",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="run folder name: one plain folder under out_dir (not '.' or '..')",
    )
    out_dir: str = Field("runs", description="each build goes to <out_dir>/<name>/<timestamp>/")
    heldout_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="prompts kept out of training for evaluation (by id hash)"
    )
    isolate_stages: bool = Field(
        True, description="run model stages in their own process so memory is returned between them"
    )
    scale: ScaleConfig = Field(
        default_factory=ScaleConfig, description="where generate and score shards run"
    )
    prompts: PromptsConfig
    generate: GenerateConfig
    score: ScoreConfig | list[ScoreConfig] = Field(
        description="one scorer, or several (each with a name) combined by combine:"
    )
    combine: CombineConfig | None = Field(
        None, description="several scorers: how their scores become the one pairs rank by"
    )
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    reference: ReferenceConfig | None = Field(
        None, description="default: the policy as reference; use it through reference_config()"
    )
    train: TrainConfig | None = Field(None, description="omit to build the dataset only")
    evaluate: EvalConfig | None = Field(None, description="omit to skip evaluation")
    reuse: bool = Field(
        True,
        description="reuse responses and scores of earlier builds of this pipeline from "
        "<out_dir>/<name>/store when their inputs are unchanged (false: compute everything)",
    )
    rounds: RoundsConfig | None = Field(
        None, description="on-policy rounds (needs train:); omit for one pass"
    )

    @field_validator("name")
    @classmethod
    def _name_stays_under_out_dir(cls, name: str) -> str:
        if name in (".", ".."):  # `<out_dir>/..` would put the build beside out_dir
            raise ValueError("name must be a folder name under out_dir, not '.' or '..'")
        return name

    @model_validator(mode="after")
    def _scorers_named_and_combined(self) -> PipelineConfig:
        if isinstance(self.score, ScoreConfig) or len(self.score) == 1:
            if self.combine is not None:
                raise ValueError("combine: needs two or more scorers under score:")
            return self
        names = [scorer.name for scorer in self.score]
        if None in names or len(set(names)) != len(names):
            raise ValueError("score: several scorers need a name each, all different")
        if self.combine is None:
            raise ValueError(
                "score: several scorers need a combine: section (method: weighted_sum, gate, "
                "lexicographic, or single)"
            )
        unknown = self.combine.unknown_names(names)
        if unknown:
            raise ValueError(f"combine: unknown scorer {', '.join(unknown)}; scorers: {names}")
        if self.combine.method == "gate":
            self.combine.ranker(names)  # a gate with 3+ scorers must say which one ranks
        return self

    @model_validator(mode="after")
    def _rounds_train(self) -> PipelineConfig:
        if self.rounds is not None and self.train is None:
            raise ValueError("rounds: each round trains a policy; add a train: section")
        return self

    @model_validator(mode="after")
    def _lengths_declared_once(self) -> PipelineConfig:
        if self.train is None or self.reference is None:
            return self
        clashes = [
            f"reference.{name}={getattr(self.reference, name)} but "
            f"train.{name}={getattr(self.train, name)}"
            for name in LENGTHS
            if name in self.reference.model_fields_set
            and getattr(self.reference, name) != getattr(self.train, name)
        ]
        if clashes:
            raise ValueError(
                f"{', '.join(clashes)}: reference log-probs must use the lengths training uses; "
                "set them once, under train:, and leave them out of reference:"
            )
        return self

    def scorers(self) -> list[ScoreConfig]:
        """The `score:` section as a list (one scorer or several)."""
        return [self.score] if isinstance(self.score, ScoreConfig) else list(self.score)

    def training_scorers(self) -> list[str]:
        """Names of the scorers whose scores build the pairs (all of them, without combine)."""
        names = [scorer.name or "" for scorer in self.scorers()]
        return self.combine.used(names) if self.combine is not None else names

    def training_scorer_configs(self) -> list[ScoreConfig]:
        """The scorers whose scores build the pairs."""
        used = set(self.training_scorers())
        return [s for s in self.scorers() if self.combine is None or s.name in used]

    def judges(self) -> list[tuple[str, ScoreConfig]]:
        """(name, scorer) of every scorer the evaluation scores with, the judge first: the
        evaluate section's scorer, else the first configured scorer that did not build the
        pairs, else the training scorer (the report then warns); then the other scorers."""
        named = [(scorer_label(s), s) for s in self.scorers()]
        training = {scorer_label(s) for s in self.training_scorer_configs()}
        named.sort(key=lambda item: item[0] in training)  # stable: independent ones first
        if self.evaluate is not None and self.evaluate.scorer is not None:
            scorer = self.evaluate.scorer
            named.insert(0, (scorer_label(scorer), scorer))
        seen: set[str] = set()
        return [(n, s) for n, s in named if not (n in seen or seen.add(n))]

    def judged_by_training_scorer(self) -> bool:
        """Whether the judge (first of `judges()`) scores as a scorer that built the pairs."""
        judge = _scoring_part(self.judges()[0][1])
        return any(_scoring_part(s) == judge for s in self.training_scorer_configs())

    def store(self) -> str | None:
        """The incremental store of this pipeline's builds, or None with `reuse: false`."""
        return str(Path(self.out_dir) / self.name / "store") if self.reuse else None

    def reference_config(self) -> ReferenceConfig:
        """The model the policy trains against, rendering with train's lengths: the `reference`
        section, else the policy itself (the base it starts from), else the generating model.
        The build flow's reference pass, the KL estimate and held-out accuracy all use it."""
        base = self.reference or ReferenceConfig(
            model=self.train.policy if self.train else self.generate.model
        )
        if self.train is None:
            return base
        lengths = TokenLengths.of(self.train).model_dump()
        return ReferenceConfig.model_validate({**base.model_dump(), **lengths})


def scorer_label(scorer: ScoreConfig) -> str:
    """What reports call a scorer: its name, else its rule or model folder name."""
    if scorer.name:
        return scorer.name
    return str(scorer.rule if scorer.kind == "rule" else Path(str(scorer.model)).name)


def _scoring_part(scorer: ScoreConfig) -> dict:
    """What decides a scorer's scores (not its name, shards or store): equal means same scorer."""
    return scorer.model_dump(mode="json", exclude={"name", "shard_size", "store"})
