"""Typed facts one stage declares for a later one, carried as fields of the manifest.

| Manifest field  | model          | written by | carried by | read by                    |
|-----------------|----------------|------------|------------|----------------------------|
| score_transform | ScoreTransform | pairs      | reference  | train, inspect             |
| lengths         | TokenLengths   | reference  | -          | train (must equal its own) |

Each is read through one function in prefsmith.schemas.manifest (`read_score_transform`,
`check_reference_lengths`), which is also where a table without a manifest is handled.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

T = TypeVar("T")


class ScoreTransform(BaseModel):
    """`normalized = scale * raw + shift`: the score normalization the pairs stage declares
    (prefsmith.curation.normalize) and the trainer applies before a loss turns scores into
    weights. A margin transforms with `scale` only (the shift cancels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["none", "zscore", "affine"] = Field(
        description="the pairs config's normalization.method"
    )
    scale: float = Field(description="multiplies the raw score")
    shift: float = Field(description="added after scaling")
    scorer: str | None = Field(description="whose scores were normalized; None when assumed")
    declared: bool = Field(
        True, description="False: no manifest declared a transform and the identity is assumed"
    )

    @field_validator("scale", "shift")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        return value

    @classmethod
    def assumed_identity(cls) -> ScoreTransform:
        """What a pairs table without a declared transform gets: raw scores, said so."""
        return cls(method="none", scale=1.0, shift=0.0, scorer=None, declared=False)

    def apply(self, raw: T) -> T:
        """`scale * raw + shift` for a float, numpy array, polars Series/Expr or torch tensor."""
        return raw * self.scale + self.shift  # type: ignore[operator,return-value]

    def label(self) -> str:
        """The method as reports show it (`inspect`): an assumed identity says so."""
        return self.method if self.declared else "none (no manifest transform)"


class _HasLengths(Protocol):
    max_length: int
    max_prompt_length: int


class TokenLengths(BaseModel):
    """The token limits pairs were rendered with (prefsmith.training.render): the reference
    pass records them, and the trainer refuses reference log-probs computed with others."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length: int = Field(ge=8, description="prompt + completion tokens per sequence")
    max_prompt_length: int = Field(ge=1, description="prompt tokens kept (from the left)")

    @model_validator(mode="after")
    def _prompt_fits(self) -> TokenLengths:
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be < max_length "
                f"({self.max_length})"
            )
        return self

    @classmethod
    def of(cls, config: _HasLengths) -> TokenLengths:
        """The lengths of a ReferenceConfig or TrainConfig."""
        return cls(max_length=config.max_length, max_prompt_length=config.max_prompt_length)

    def describe(self) -> str:
        return f"max_length={self.max_length}, max_prompt_length={self.max_prompt_length}"
