"""Config of `prefsmith import`: existing preference data into prefsmith's tables.

| shape       | a row holds                                             | written                      |
|-------------|---------------------------------------------------------|------------------------------|
| `pairs`     | a prompt, a chosen and a rejected answer, maybe scores  | pairs (ready for reference)  |
| `hh`        | Anthropic HH: chosen and rejected transcripts           | pairs                        |
| `responses` | a prompt, N responses and their N scores                | prompts, responses, scores   |

`pairs` covers ultrafeedback_binarized (`prompt` string, `chosen`/`rejected` conversations,
`score_chosen`/`score_rejected`), TRL's standard format (strings) and its conversational format
(message lists, with or without a `prompt` column). `responses` covers the
`all_generated_responses` + `all_rm_scores` datasets; `prefsmith pairs` then re-pairs them.

Per-pair weights (shapes `pairs`/`hh`): map the data's own column (`columns: {weight: w}`), or
compute them by a rule (`weight: {column: margin, scale: 0.5, max: 2}`, prefsmith.schemas.
data_configs.WeightConfig); a missing, non-finite or negative weight quarantines the row
(`invalid_weight`). Without either, the pairs table has no `weight` column: every pair weighs 1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.data_configs import NormalizationConfig, WeightConfig


class ImportColumns(StrictModel):
    """Which column holds what; a score column that is absent means the data has no scores."""

    prompt: str = Field("prompt", description="prompt: a string or chat messages")
    chosen: str = Field("chosen", description="pairs/hh: the preferred answer (text, messages)")
    rejected: str = Field("rejected", description="pairs/hh: the other answer")
    score_chosen: str = Field("score_chosen", description="pairs: the chosen answer's score")
    score_rejected: str = Field("score_rejected", description="pairs: the rejected one's score")
    responses: str = Field("all_generated_responses", description="responses: list of texts")
    scores: str = Field("all_rm_scores", description="responses: their scores, same order")
    weight: str | None = Field(
        None, description="pairs/hh: a per-pair weight column (finite, >= 0); none: no weights"
    )


class ImportConfig(StrictModel):
    path: str = Field(description="JSONL, Parquet or CSV file, or a local HF dataset folder")
    format: Literal["auto", "jsonl", "parquet", "csv", "hf"] = Field(
        "auto", description="'auto' picks by extension; a folder is read as an HF dataset"
    )
    split: str = Field("train", description="split of an HF dataset folder")
    shape: Literal["pairs", "hh", "responses"] = Field(
        "pairs", description="what one row holds (see the module docstring)"
    )
    columns: ImportColumns = Field(default_factory=ImportColumns)
    normalization: NormalizationConfig = Field(
        default_factory=NormalizationConfig,
        description="declared for the imported scores, as in the pairs stage (e.g. zscore for "
        "1-10 ratings, which saturate Uni-DPO's w_qual raw)",
    )
    weight: WeightConfig | None = Field(
        None,
        description="pairs/hh: compute each pair's weight by this rule (as the pairs stage does); "
        "exclusive with columns.weight",
    )
    scorer: str = Field("imported", description="recorded in the `scorer` column")
    source: str | None = Field(None, description="recorded in `source`; default: the file name")

    @model_validator(mode="after")
    def _one_weight_source(self) -> ImportConfig:
        if self.columns.weight is not None and self.weight is not None:
            raise ValueError(
                "columns.weight and weight both set: take the weights from the data's column or "
                "compute them by the rule, not both"
            )
        if self.shape == "responses" and (self.columns.weight or self.weight):
            raise ValueError(
                "shape 'responses' writes no pairs: set the weight rule in the pairs stage "
                "(pairs.weight) that re-pairs them"
            )
        return self
