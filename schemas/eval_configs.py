"""Configs of the evaluation stages (prefsmith.evaluation): what each one measures with which model.

The pipeline's `evaluate:` section (schemas.pipeline_config.EvalConfig) is what a user writes; the
evaluate flow derives these per-stage configs from it.
"""

from __future__ import annotations

from pydantic import Field

from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.train_configs import ReferenceConfig


class PolicyReferenceConfig(StrictModel):
    """A tuned policy measured against its reference (held-out accuracy, KL)."""

    policy: str = Field(description="tuned checkpoint folder (loaded with the reference's limits)")
    reference: ReferenceConfig = Field(
        description="reference model and the rendering limits (max_length, dtype, token budget)"
    )


class LmEvalConfig(StrictModel):
    checkpoint: str = Field(description="model folder handed to lm-evaluation-harness")
    tasks: list[str] = Field(
        default_factory=list, description="lm-eval task names; empty: the stage records no tasks"
    )


class CompareConfig(StrictModel):
    n_boot: int = Field(2000, ge=100, description="bootstrap resamples for the 95% interval")
    seed: int = Field(0, description="seed of the bootstrap resampling")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"tuned": "tuned", "base": "base"},
        description="what the report calls its two sides (rounds: 'round 2' vs 'round 1')",
    )
    judge: str | None = Field(None, description="the name of the scorer that judged the sides")
    judge_is_training_scorer: bool = Field(
        False, description="whether the judge built the training pairs (the report warns)"
    )
    training_scorers: list[str] = Field(
        default_factory=list, description="names of the scorers that built the training pairs"
    )
