"""Configs of the data stages: prompts, generate, score, pairs. Every knob says why."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SerializationInfo, field_serializer, model_validator

from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.judge_config import JudgeConfig
from prefsmith.schemas.secrets import redact_servers

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class PromptsConfig(StrictModel):
    path: str = Field(description="JSONL, Parquet or CSV file, or a local HF dataset folder")
    format: Literal["auto", "jsonl", "parquet", "csv", "hf"] = Field(
        "auto", description="'auto' picks by extension; a folder is read as an HF dataset"
    )
    prompt_field: str = Field(
        "prompt", description="column with the prompt: a string, or chat messages (TRL exports)"
    )
    messages_field: str = Field("messages", description="column with chat messages")
    prompt_fields: list[str] = Field(
        default_factory=list,
        description="build a one-turn prompt from these columns, joined by a blank line, empty "
        "ones skipped (Alpaca-style: [instruction, input]); overrides prompt_field",
    )
    transcript_field: str | None = Field(
        None,
        description="column with an Anthropic HH transcript ('\\n\\nHuman: ...\\n\\nAssistant: ...')"
        ", e.g. 'chosen'; its turns become the messages",
    )
    trailing_assistant: Literal["strip", "quarantine"] = Field(
        "strip",
        description="a prompt must end with a user turn: strip trailing assistant turns (counted "
        "in the manifest as trailing_assistant_stripped) or quarantine the row (ends_with_assistant)",
    )
    system_prompt: str | None = Field(None, description="prepended to prompts that have none")
    source: str | None = Field(None, description="recorded in `source`; default: the file name")
    split: str = Field("train", description="split of an HF dataset folder")


class SplitConfig(StrictModel):
    heldout_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="prompts kept out of training for evaluation (by id hash)"
    )


class SamplingConfig(StrictModel):
    n: int = Field(4, ge=1, le=1024, description="responses sampled per prompt")
    temperature: float = Field(
        0.8, ge=0.0, allow_inf_nan=False, description="0 means greedy (then use n=1)"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(128, ge=1)
    seed: int = Field(0, description="base seed; each prompt's seed derives from it and its id")

    @model_validator(mode="after")
    def _greedy_needs_one_sample(self) -> SamplingConfig:
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError(
                "temperature=0 (greedy) gives n identical samples: set n=1 or temperature>0"
            )
        return self


class GenerateConfig(StrictModel):
    model: str = Field(description="local model folder, loaded with from_pretrained(path)")
    revision: str | None = Field(None, description="recorded in `generator`; default: folder hash")
    backend: Literal["vllm", "transformers", "openai"] = "vllm"
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    shard_size: int = Field(64, ge=1, description="prompts per shard: the unit of resume")
    max_model_len: int | None = Field(None, ge=8, description="default: the model's context")
    dtype: Dtype = "auto"
    trust_remote_code: bool = Field(
        False, description="opt in per model; runs the model's own code"
    )
    batch_size: int = Field(16, ge=1, description="transformers backend: prompts per forward")
    servers: list[str] = Field(
        default_factory=list, description="openai backend: base URLs like http://127.0.0.1:8000/v1"
    )
    served_model_name: str | None = Field(None, description="openai backend: model name to request")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="openai backend: environment variable read at request time and sent as "
        "'Authorization: Bearer <key>' (unset or empty: no header); the key is never a config field",
    )
    request_timeout_s: float = Field(300.0, gt=0)
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra vllm.LLM(...) arguments, e.g. tensor_parallel_size"
    )
    store: str | None = Field(
        None,
        description="incremental store folder (prefsmith.schemas.store): rows made before with "
        "the same inputs are reused; the pipeline sets <out_dir>/<name>/store unless --no-reuse",
    )

    @field_serializer("servers")
    def _servers_without_credentials(self, servers: list[str], info: SerializationInfo):
        return redact_servers(servers, info)  # every dump: manifests, hashes, Prefect parameters

    @model_validator(mode="after")
    def _api_key_env_is_a_name(self) -> GenerateConfig:
        # checked after the fields, so the error never echoes the value: it may be a pasted key
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.api_key_env):
            raise ValueError(
                "api_key_env must NAME an environment variable (upper-case letters, digits, _), "
                "e.g. OPENAI_API_KEY, never hold the key itself (the value is not shown)"
            )
        return self

    @model_validator(mode="after")
    def _openai_needs_servers(self) -> GenerateConfig:
        if self.backend == "openai" and not self.servers:
            raise ValueError("backend 'openai' needs servers: [http://127.0.0.1:8000/v1, ...]")
        return self


class ScoreConfig(StrictModel):
    kind: Literal["reward_model", "armorm", "vllm_pooling", "rule", "llm_judge"] = "reward_model"
    model: str | None = Field(None, description="reward-model folder (all kinds but 'rule')")
    rule: str | None = Field(
        None, description="rule scorer name (kind 'rule'): see prefsmith.scoring.rules"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="rule scorer parameters")
    name: str | None = Field(None, description="recorded in `scorer`; default: model or rule name")
    revision: str | None = None
    token_budget: int = Field(8192, ge=16, description="padded tokens per batch (rows x longest)")
    max_length: int | None = Field(None, ge=8, description="default: the model's context")
    dtype: Dtype = "auto"
    trust_remote_code: bool = Field(
        False, description="opt in per model to run its own code (ArmoRM runs natively without)"
    )
    shard_size: int = Field(1024, ge=1, description="responses per shard: the unit of resume")
    judge: JudgeConfig | None = Field(
        None, description="llm_judge: the served judge, its template and parsing"
    )
    store: str | None = Field(
        None,
        description="incremental store folder (prefsmith.schemas.store): rows made before with "
        "the same inputs are reused; the pipeline sets <out_dir>/<name>/store unless --no-reuse",
    )

    @model_validator(mode="after")
    def _kind_needs(self) -> ScoreConfig:
        if self.kind == "rule" and not self.rule:
            raise ValueError("kind 'rule' needs rule: (e.g. exact_match, regex, length_target)")
        if self.kind == "llm_judge" and (self.judge is None or not self.model):
            raise ValueError(
                "kind 'llm_judge' needs judge: {servers: [...]} and model: the judge's local "
                "folder (its tokenizer and chat template render the request)"
            )
        if self.kind != "rule" and not self.model:
            raise ValueError(f"kind {self.kind!r} needs model: a reward-model folder")
        return self


class NormalizationConfig(StrictModel):
    """How raw scores become the scale Uni-DPO's η, τ_good and MADPO's τ assume.

    normalized = scale * score + shift. 'zscore' computes scale=1/std, shift=-mean/std over all
    finite scores of the scorer; 'affine' takes them as given. Recorded in the pairs manifest.
    """

    method: Literal["none", "zscore", "affine"] = "none"
    scale: float = Field(1.0, description="affine only")
    shift: float = Field(0.0, description="affine only")


class WeightConfig(StrictModel):
    """A per-pair weight from one numeric column of the pair, by a declared rule (no code runs):

        weight = clip(scale * <column> + shift, min, max)

    on the raw value (the margin before any normalization). The result is the pairs table's
    `weight` column, which every loss honours through one weighted mean over the batch
    (prefsmith.training.losses.reduce_loss): a pair of weight 2 counts as two copies, weight 0
    as none. Example: `{column: margin, scale: 0.5, max: 2.0}`.
    """

    column: Literal["margin", "score_chosen", "score_rejected"] = Field(
        "margin", description="the pair's value the weight grows with"
    )
    scale: float = Field(1.0, description="multiplies the column's raw value")
    shift: float = Field(0.0, description="added after scaling")
    min: float = Field(0.0, ge=0.0, description="lower clip (a weight is never negative)")
    max: float | None = Field(None, gt=0.0, description="upper clip; none: no upper bound")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> WeightConfig:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"weight.max ({self.max}) is below weight.min ({self.min})")
        return self


class PairsConfig(StrictModel):
    strategy: Literal["best_vs_worst", "best_vs_random", "top_k_pairs"] = "best_vs_worst"
    top_k: int = Field(3, ge=2, description="top_k_pairs: all pairs among the k best responses")
    min_margin: float = Field(0.0, ge=0.0, description="raw-score margin below which no pair")
    length_penalty: float = Field(
        0.0, ge=0.0, description="select on score - length_penalty * n_tokens (raw units/token)"
    )
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    scorer: str | None = Field(None, description="which scorer if the table has several")
    seed: int = Field(0, description="best_vs_random: the random draw")
    weight: WeightConfig | None = Field(
        None, description="write a per-pair `weight` column by this rule; none: every pair weighs 1"
    )
