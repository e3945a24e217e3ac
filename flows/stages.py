"""The stage registry: every stage of prefsmith, declared once.

A stage is a plain function `fn(inputs, *, config, out_dir) -> StageResult`: `inputs` maps the
names of the tables it reads to their paths, `config` is its pydantic config, and it writes its
tables plus a manifest into `out_dir`. Stages know nothing about Prefect. This table says, for
each one, what the flows need to run it: the function itself (a real reference, so
go-to-definition and the import graph see it), the tables it reads and writes, its config model,
whether it is sharded (then it also offers a plan and a write-these-shards function), whether it
runs in its own process, and whether a failure may be retried.

| stage            | reads                                     | writes                        | own process  | retried |
|------------------|-------------------------------------------|-------------------------------|--------------|---------|
| prompts          | (the file in its config)                  | prompts                       | no           | no      |
| split            | prompts                                   | prompts_train, prompts_heldout| no           | no      |
| generate         | prompts                                   | responses (sharded)           | yes          | yes     |
| score            | responses, prompts                        | scores (sharded)              | unless rule  | yes     |
| combine          | scores:<scorer>, one per scorer           | scores (combined)             | no           | no      |
| pairs            | scores, responses, prompts                | pairs                         | no           | no      |
| reference        | pairs                                     | pairs_ref                     | yes          | no      |
| train            | pairs (with reference log-probs)          | checkpoint                    | yes          | no      |
| heldout_accuracy | pairs                                     | margins                       | yes          | no      |
| kl               | responses, prompts                        | kl                            | yes          | no      |
| lm_eval          | (the checkpoint in its config)            | lm_eval                       | if tasks     | no      |
| compare          | tuned/base scores and responses (+ kl, heldout, lm_eval) | eval_report    | no           | no      |
| import           | (the file in its config)                  | pairs, or responses (+ prompts, scores) | no | no   |

Only the stages that talk to engines and servers (generate, score) are retried, and only on
transient faults (prefsmith.schemas.errors.is_transient): a deterministic failure (NaN loss, bad
input) fails once. `prefsmith.flows.tasks` turns each entry into a Prefect task of the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefsmith.curation.combine import combine_scores
from prefsmith.curation.importer import import_preferences
from prefsmith.curation.pairs import build_pairs
from prefsmith.evaluation.compare import compare_policies
from prefsmith.evaluation.kl import kl_estimate
from prefsmith.evaluation.lm_eval_hook import lm_eval_stage
from prefsmith.evaluation.preference_accuracy import heldout_accuracy
from prefsmith.generation import stage as generation
from prefsmith.generation.prompts import load_prompts
from prefsmith.generation.split import split_prompts
from prefsmith.schemas.combine_config import CombineConfig
from prefsmith.schemas.data_configs import (
    GenerateConfig,
    PairsConfig,
    PromptsConfig,
    ScoreConfig,
    SplitConfig,
)
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.eval_configs import CompareConfig, LmEvalConfig, PolicyReferenceConfig
from prefsmith.schemas.import_config import ImportConfig
from prefsmith.schemas.manifest import StageResult
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
from prefsmith.scoring import stage as scoring
from prefsmith.training.launch import launch_train
from prefsmith.training.reference import reference_pass

StageFn = Callable[..., StageResult]


def always(_config: BaseModel) -> bool:
    return True


def never(_config: BaseModel) -> bool:
    return False


@dataclass(frozen=True)
class Shards:
    """The two extra functions of a sharded stage (prefsmith.flows.shards maps tasks over them)."""

    plan: Callable[..., list[str]]  # (inputs, *, config, out_dir) -> one content hash per shard
    write: Callable[..., list[str]]  # (inputs, *, config, out_dir, shards) -> written shard paths


@dataclass(frozen=True)
class Stage:
    name: str
    fn: StageFn
    config: type[BaseModel]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    optional: tuple[str, ...] = ()  # inputs it can run without
    many: tuple[str, ...] = ()  # families of inputs named `<family>:<name>` (any number)
    shards: Shards | None = None
    isolate: Callable[[Any], bool] = never  # whether, with this config, it needs its own process
    retry: bool = False  # retried on transient faults only
    cached: bool = False  # a finished run is a Prefect cache hit on its inputs' content

    @property
    def more(self) -> tuple[str, ...]:
        """The tables beyond the first `writes` entry: StageResult.more's keys."""
        return self.writes[1:]

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Path]:
        """The inputs as paths; a one-line error for a missing or unknown table name."""
        given = {name for name, path in inputs.items() if path is not None}
        families = {name for name in given if name.partition(":")[0] in self.many and ":" in name}
        missing = sorted(set(self.reads) - given)
        unknown = sorted(given - families - set(self.reads) - set(self.optional))
        if missing or unknown:
            raise ConfigError(
                f"stage {self.name!r} reads "
                f"{', '.join([*self.reads, *(f'{m}:<name>' for m in self.many)]) or 'no table'}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        return {name: Path(path) for name, path in inputs.items() if path is not None}


def loads_model(config: ScoreConfig) -> bool:
    """A rule scorer or a served judge holds no model here: its own process would cost seconds
    and return no memory."""
    return config.kind not in ("rule", "llm_judge")


def runs_lm_eval(config: LmEvalConfig) -> bool:
    return bool(config.tasks)


_STAGES = (
    Stage("prompts", load_prompts, PromptsConfig, reads=(), writes=("prompts",)),
    Stage(
        "split",
        split_prompts,
        SplitConfig,
        reads=("prompts",),
        writes=("prompts_train", "prompts_heldout"),
    ),
    Stage(
        "generate",
        generation.generate,
        GenerateConfig,
        reads=("prompts",),
        writes=("responses",),
        shards=Shards(generation.shard_plan, generation.generate_shards),
        isolate=always,
        retry=True,
        cached=True,
    ),
    Stage(
        "score",
        scoring.score,
        ScoreConfig,
        reads=("responses", "prompts"),
        writes=("scores",),
        shards=Shards(scoring.shard_plan, scoring.score_shards),
        isolate=loads_model,
        retry=True,
        cached=True,
    ),
    Stage("combine", combine_scores, CombineConfig, reads=(), writes=("scores",), many=("scores",)),
    Stage(
        "pairs",
        build_pairs,
        PairsConfig,
        reads=("scores", "responses", "prompts"),
        writes=("pairs",),
    ),
    Stage(
        "reference",
        reference_pass,
        ReferenceConfig,
        reads=("pairs",),
        writes=("pairs_ref",),
        isolate=always,
    ),
    Stage(
        "train", launch_train, TrainConfig, reads=("pairs",), writes=("checkpoint",), isolate=always
    ),
    Stage(
        "heldout_accuracy",
        heldout_accuracy,
        PolicyReferenceConfig,
        reads=("pairs",),
        writes=("margins",),
        isolate=always,
    ),
    Stage(
        "kl",
        kl_estimate,
        PolicyReferenceConfig,
        reads=("responses", "prompts"),
        writes=("kl",),
        isolate=always,
    ),
    Stage(
        "lm_eval", lm_eval_stage, LmEvalConfig, reads=(), writes=("lm_eval",), isolate=runs_lm_eval
    ),
    Stage(
        "compare",
        compare_policies,
        CompareConfig,
        reads=("tuned_scores", "tuned_responses", "base_scores", "base_responses"),
        writes=("eval_report",),
        optional=("kl", "heldout", "lm_eval", "prompts"),
        many=("tuned_scores", "base_scores"),
    ),
    # Shape pairs/hh: the output is the pairs table; shape responses: the responses table, with
    # the prompts and scores tables in StageResult.more.
    Stage("import", import_preferences, ImportConfig, reads=(), writes=("imported",)),
)
STAGES: dict[str, Stage] = {stage.name: stage for stage in _STAGES}


def get_stage(name: str) -> Stage:
    """The registered stage `name`, or a one-line error listing the registered names."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; registered: {', '.join(STAGES)}")
    return STAGES[name]
