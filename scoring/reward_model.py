"""Sequence-classification reward models run with transformers (kind "reward_model").

Each response is rendered with the *scorer's* own tokenizer and chat template (the policy's
template may differ) as the prompt messages + one assistant message, tokenized by the template
call itself: `apply_chat_template(..., tokenize=True)` tokenizes without adding special tokens, so
a template that starts with BOS gives exactly one BOS (rendering to text and then tokenizing with
special tokens would give two, and a different score).

Batches are right-padded with an attention mask. With right padding every real token keeps the
position it has when scored alone, and causal attention never lets a real token see the trailing
pads, so a batched score equals the one-at-a-time score. The head is applied at each row's last
real token, found from the lengths, never from a pad id (`prefsmith.scoring.pooling`). Rows are grouped by a token budget (`prefsmith.scoring.batching`), longest first.

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
from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.quarantine import Rejected
from prefsmith.scoring.batching import Outcome, Scored, ScoreRequest, token_budget_batches
from prefsmith.scoring.pooling import (
    PaddedBatch,
    check_classifier,
    check_classifier_config,
    classifier_forward,
    pad_batch,
    refuse_armorm_as,
)

logger = logging.getLogger(__name__)

UNBOUNDED = 10**8  # tokenizers without a limit report model_max_length ≈ 1e30
TEMPLATE_ERRORS = (TemplateError, ValueError, TypeError, KeyError, IndexError)


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


# (model, batch) -> (scores (B,), objectives (B, K) or None, gating weights (B, K) or None)
Forward = Callable[[Any, PaddedBatch], tuple[Any, Any, Any]]
# (tokenizer, request, ids) -> the position of the prompt's end in ids (ArmoRM's gating input)
PromptEnd = Callable[[Any, ScoreRequest, list[int]], int]


@dataclass
class ModelScorer:
    """Scores requests with a loaded transformers model, batch by batch under a token budget."""

    model: Any
    tokenizer: Any
    max_length: int
    token_budget: int
    forward: Forward = classifier_forward
    objective_names: tuple[str, ...] | None = None  # None: obj_0.. when the model has objectives
    prompt_end: PromptEnd | None = None

    def __call__(self, requests: Sequence[ScoreRequest]) -> list[Outcome]:
        encoded, outcomes = encode_requests(
            requests, tokenizer=self.tokenizer, max_length=self.max_length
        )
        gates = self.gate_positions(requests, encoded, outcomes)
        indices = sorted(encoded)
        lengths = [len(encoded[i]) for i in indices]
        for batch in token_budget_batches(lengths, budget=self.token_budget):
            rows = [indices[b] for b in batch]
            row_gates = None if gates is None else [gates[r] for r in rows]
            scored = self.score_batch([encoded[r] for r in rows], gates=row_gates)
            for row, outcome in zip(rows, scored, strict=True):
                outcomes[row] = outcome
        return [outcomes[i] for i in range(len(requests))]

    def gate_positions(self, requests, encoded, outcomes) -> dict[int, int] | None:
        """Each row's prompt-end position (ArmoRM); rows without one move to `outcomes`."""
        if self.prompt_end is None:
            return None
        gates: dict[int, int] = {}
        for index in list(encoded):
            try:
                gates[index] = self.prompt_end(self.tokenizer, requests[index], encoded[index])
            except TEMPLATE_ERRORS as error:
                detail = f"prompt end not found: {type(error).__name__}: {error}"
                outcomes[index] = Rejected(requests[index].response_id, "template_error", detail)
                del encoded[index]
        return gates

    def score_batch(self, sequences: list[list[int]], *, gates=None) -> list[Scored]:
        """One forward pass over right-padded `sequences`, read at positions from their lengths."""
        import torch

        batch = pad_batch(sequences, pad_id=self.tokenizer.pad_token_id or 0, gates=gates)
        with torch.inference_mode():
            scores, objectives, gating = self.forward(self.model, batch)  # (B,), (B, K), (B, K)
        values = [[] for _ in sequences] if objectives is None else objectives.float().tolist()
        names = self.names_for(len(values[0]))
        if gating is not None:
            names = (*names, *(f"gate/{n}" for n in names))
            values = [v + g for v, g in zip(values, gating.float().tolist(), strict=True)]
        return [
            Scored(float(s), len(seq), tuple(zip(names, map(float, v), strict=True)))
            for s, seq, v in zip(scores.float().tolist(), sequences, values, strict=True)
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


def load_tokenizer(config: ScoreConfig):
    """The scorer's tokenizer from its model folder (its own code only with trust_remote_code)."""
    from transformers import AutoTokenizer

    path = model_folder(config)
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=config.trust_remote_code)


def load_remote(loader, path: Path, **kwargs):
    """`loader(path, ...)`, with a checkpoint's own code that fails to import as one line."""
    try:
        return loader(str(path), **kwargs)
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        if not kwargs.get("trust_remote_code"):
            raise
        first = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(
            f"score.trust_remote_code: {path}'s own model code failed to load "
            f"({type(error).__name__}: {first[:200]}); for ArmoRM drop trust_remote_code to use "
            "prefsmith's native implementation"
        ) from error


def to_device(model):
    """The model on the GPU when there is one, in eval mode."""
    import torch

    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval()


def load_model_and_tokenizer(config: ScoreConfig):
    """Load the scorer's tokenizer and sequence-classification model, ready for inference.

    The model config's pad id is left as the checkpoint has it: scores are read at positions
    from lengths (`prefsmith.scoring.pooling`), so no pad id is copied in from the tokenizer.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = model_folder(config)
    refuse_armorm_as("reward_model", path=path)
    check_remote_code(path, trust_remote_code=config.trust_remote_code)
    tokenizer = load_tokenizer(config)
    remote = config.trust_remote_code
    model_config = load_remote(AutoConfig.from_pretrained, path, trust_remote_code=remote)
    check_classifier_config(path, model_config=model_config)
    model = load_remote(
        AutoModelForSequenceClassification.from_pretrained,
        path,
        dtype=torch_dtype(config.dtype),
        trust_remote_code=remote,
    )
    check_classifier(model, path=path)
    return to_device(model), tokenizer


def load_reward_model(config: ScoreConfig) -> ModelScorer:
    """A `ModelScorer` for kind "reward_model": logits[:, 0] of the head at the last real token."""
    model, tokenizer = load_model_and_tokenizer(config)
    max_length = resolve_max_length(
        config.max_length, model_config=model.config, tokenizer=tokenizer
    )
    return ModelScorer(model, tokenizer, max_length=max_length, token_budget=config.token_budget)
