"""Sequence-classification reward models run with transformers (kind "reward_model").

Each response is rendered with the *scorer's* own tokenizer and chat template (the policy's
template may differ) as the prompt messages + one assistant message, tokenized by the template
call itself: `apply_chat_template(..., tokenize=True)` tokenizes without adding special tokens, so
a template that starts with BOS gives exactly one BOS (rendering to text and then tokenizing with
special tokens would give two, and a different score).

Batches are right-padded with an attention mask. With right padding every real token keeps the
position it has when scored alone, and causal attention never lets a real token see the trailing
pads, so a batched score equals the one-at-a-time score; the model's head pools the last non-pad
token. Rows are grouped by a token budget (`prefsmith.scoring.batching`), longest first.

Rows longer than `max_length` are quarantined as `too_long`, never truncated: a reward model
pools the *last* token, so truncating would score a response cut mid-way (usually with its end,
the part that decides quality, removed) and store that number as the response's score.
Rows whose template cannot render are quarantined as `template_error`; the run goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError, InputError, StageError
from prefsmith.schemas.quarantine import Rejected
from prefsmith.scoring.batching import Outcome, Scored, ScoreRequest, token_budget_batches

logger = logging.getLogger(__name__)

UNBOUNDED = 10**8  # tokenizers without a limit report model_max_length ≈ 1e30
TEMPLATE_ERRORS = (TemplateError, ValueError, TypeError, KeyError, IndexError)

# (model outputs) -> (scores (B,), objectives (B, K) or None)
OutputReader = Callable[[Any], tuple[Any, Any]]


def model_folder(config: ScoreConfig) -> Path:
    """The local model folder of a model-based scorer; InputError if it is missing."""
    path = Path(str(config.model))
    if not (path / "config.json").is_file():
        raise InputError(f"score.model: no model at {path} (expected a folder with config.json)")
    return path


def check_remote_code(path: Path, *, trust_remote_code: bool) -> None:
    """Refuse a model that ships its own code (`auto_map`) unless the user opted in for it."""
    config = json.loads((path / "config.json").read_text())
    if config.get("auto_map") and not trust_remote_code:
        raise ConfigError(
            f"score.trust_remote_code: {path} ships its own model code (auto_map); "
            "set trust_remote_code: true to run it (only for models you trust)"
        )


def render_ids(tokenizer, request: ScoreRequest) -> list[int]:
    """Token ids of prompt + response under the scorer's chat template (one BOS, if any)."""
    conversation = [*request.messages, {"role": "assistant", "content": request.response}]
    ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
    return [int(i) for i in ids]


def encode_requests(
    requests: Sequence[ScoreRequest], *, tokenizer, max_length: int
) -> tuple[dict[int, list[int]], dict[int, Rejected]]:
    """Render every request; return (index -> ids) and (index -> Rejected) for rows that cannot be."""
    encoded: dict[int, list[int]] = {}
    rejected: dict[int, Rejected] = {}
    for index, request in enumerate(requests):
        try:
            ids = render_ids(tokenizer, request)
        except TEMPLATE_ERRORS as error:
            detail = f"chat template failed: {type(error).__name__}: {error}"
            rejected[index] = Rejected(request.response_id, "template_error", detail[:500])
            continue
        if len(ids) > max_length:
            detail = f"{len(ids)} tokens > max_length {max_length} (not truncated)"
            rejected[index] = Rejected(request.response_id, "too_long", detail, request.response)
            continue
        encoded[index] = ids
    return encoded, rejected


def resolve_max_length(configured: int | None, *, model_config, tokenizer) -> int:
    """`configured`, else the smaller of the model's context and the tokenizer's limit."""
    if configured is not None:
        return configured
    limits = [getattr(model_config, "max_position_embeddings", None), tokenizer.model_max_length]
    limits = [int(x) for x in limits if x is not None and x < UNBOUNDED]
    if not limits:
        raise ConfigError("score.max_length: the model declares no context length; set max_length")
    return min(limits)


def right_pad(sequences: Sequence[list[int]], *, pad_id: int):
    """(input_ids (B, T), attention_mask (B, T)) with real tokens first and pads after them."""
    import torch

    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)  # (B, T)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def read_logits(outputs) -> tuple[Any, None]:
    """A classification head's raw score: logits[:, 0] (B,), no objectives."""
    return outputs.logits[:, 0], None  # (B, num_labels) -> (B,)


@dataclass
class ModelScorer:
    """Scores requests with a loaded transformers model, batch by batch under a token budget."""

    model: Any
    tokenizer: Any
    max_length: int
    token_budget: int
    read_output: OutputReader = read_logits
    objective_names: tuple[str, ...] | None = None  # None: obj_0.. when the model has objectives

    def __call__(self, requests: Sequence[ScoreRequest]) -> list[Outcome]:
        encoded, outcomes = encode_requests(
            requests, tokenizer=self.tokenizer, max_length=self.max_length
        )
        indices = sorted(encoded)
        lengths = [len(encoded[i]) for i in indices]
        for batch in token_budget_batches(lengths, budget=self.token_budget):
            rows = [indices[b] for b in batch]
            for row, scored in zip(rows, self.score_batch([encoded[r] for r in rows]), strict=True):
                outcomes[row] = scored
        return [outcomes[i] for i in range(len(requests))]

    def score_batch(self, sequences: list[list[int]]) -> list[Scored]:
        """One forward pass over right-padded `sequences`."""
        import torch

        input_ids, attention_mask = right_pad(sequences, pad_id=self.model.config.pad_token_id)
        device = self.model.device
        with torch.inference_mode():
            outputs = self.model(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
            )
            scores, objectives = self.read_output(outputs)  # (B,), (B, K) or None
        scores = scores.float().cpu().tolist()
        names = self.names_for(0 if objectives is None else objectives.shape[-1])
        values = (
            [[] for _ in sequences] if objectives is None else objectives.float().cpu().tolist()
        )
        return [
            Scored(float(s), len(seq), tuple(zip(names, map(float, v), strict=True)))
            for s, seq, v in zip(scores, sequences, values, strict=True)
        ]

    def names_for(self, count: int) -> tuple[str, ...]:
        """The objective names for a model with `count` objectives."""
        if self.objective_names is None:
            return tuple(f"obj_{k}" for k in range(count))
        if len(self.objective_names) != count:
            raise ConfigError(
                f"score.params.objective_names: {len(self.objective_names)} names given but the "
                f"model returns {count} objectives"
            )
        return self.objective_names

    def close(self) -> None:
        """Free the model's memory (the stage calls this when it is done)."""
        self.model = None


def torch_dtype(name: str):
    """The `dtype=` argument of from_pretrained for a config dtype name."""
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def load_model_and_tokenizer(config: ScoreConfig):
    """Load the scorer's tokenizer and sequence-classification model, ready for inference."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = model_folder(config)
    check_remote_code(path, trust_remote_code=config.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=config.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), dtype=torch_dtype(config.dtype), trust_remote_code=config.trust_remote_code
    )
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    if model.config.pad_token_id is None:
        if tokenizer.pad_token_id is None:
            raise StageError(f"{path}: neither the model nor the tokenizer defines a pad token")
        logger.warning("%s: model has no pad_token_id; using the tokenizer's", path)
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_model(config: ScoreConfig) -> ModelScorer:
    """A `ModelScorer` for kind "reward_model": score = logits[:, 0] of the classification head."""
    model, tokenizer = load_model_and_tokenizer(config)
    max_length = resolve_max_length(
        config.max_length, model_config=model.config, tokenizer=tokenizer
    )
    return ModelScorer(model, tokenizer, max_length=max_length, token_budget=config.token_budget)
