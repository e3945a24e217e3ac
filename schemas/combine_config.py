"""The combination of several scorers' scores into the one score the pairs stage ranks by
(prefsmith.curation.combine), declared in the pipeline's `combine:` section.

| method          | combined score of a response                                           |
|-----------------|------------------------------------------------------------------------|
| `weighted_sum`  | Σ weights[s] · normalized score of scorer s (z-score or rank per scorer) |
| `gate`          | the `rank_by` scorer's normalized score if the `gate` scorer's raw score ≥ `threshold`; below every passing response otherwise |
| `lexicographic` | the response's rank by (order[0], order[1], …) raw scores, scaled to [0, 1] |
| `single`        | the `scorer`'s raw score; the other scorers are scored for inspection and evaluation only |
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prefsmith.schemas.config_base import StrictModel


class CombineConfig(StrictModel):
    method: Literal["weighted_sum", "gate", "lexicographic", "single"]
    weights: dict[str, float] = Field(
        default_factory=dict, description="weighted_sum: scorer name → weight (default 1 each)"
    )
    normalize: Literal["zscore", "rank", "none"] = Field(
        "zscore",
        description="weighted_sum, gate: per scorer over the table; rank: mean rank in [0, 1]",
    )
    gate: str | None = Field(None, description="gate: the scorer whose raw score must pass")
    threshold: float = Field(0.5, description="gate: passing means gate score >= threshold")
    rank_by: str | None = Field(
        None, description="gate: the scorer ranking responses (default: the one other scorer)"
    )
    order: list[str] = Field(
        default_factory=list, description="lexicographic: scorer names, most important first"
    )
    scorer: str | None = Field(None, description="single: the scorer the pairs are built from")

    @model_validator(mode="after")
    def _method_needs(self) -> CombineConfig:
        needs = {"gate": self.gate, "lexicographic": self.order, "single": self.scorer}
        if self.method in needs and not needs[self.method]:
            field = {"gate": "gate", "lexicographic": "order", "single": "scorer"}[self.method]
            raise ValueError(f"method {self.method!r} needs {field}:")
        return self

    def used(self, names: list[str]) -> list[str]:
        """The scorers (of `names`, in order) whose scores decide the combined score."""
        if self.method == "single":
            return [self.scorer]
        if self.method == "lexicographic":
            return list(self.order)
        if self.method == "gate":
            return [self.gate, self.ranker(names)]
        return [name for name in names if self.weights.get(name, 1.0) != 0.0]

    def ranker(self, names: list[str]) -> str:
        """gate: the scorer that ranks (rank_by, else the one scorer that is not the gate)."""
        if self.rank_by is not None:
            return self.rank_by
        others = [name for name in names if name != self.gate]
        if len(others) != 1:
            raise ValueError(f"gate: name rank_by: one of {', '.join(others)}")
        return others[0]

    def unknown_names(self, names: list[str]) -> list[str]:
        """Scorer names this combination mentions that `names` lacks."""
        mentioned = [*self.weights, *self.order, self.gate, self.rank_by, self.scorer]
        return sorted({n for n in mentioned if n is not None and n not in names})
