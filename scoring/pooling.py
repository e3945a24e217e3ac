"""Where a reward model reads its score: each row's last real token, found from lengths.

A transformers `*ForSequenceClassification` head pools at the last token that is not the pad id.
With a Llama-3 tokenizer whose pad token is `<|eot_id|>` (and a config without `pad_token_id`),
the pad id is also the token that ends every turn, so the head pools before the response's own
end-of-turn token, or at the prompt's. prefsmith therefore never lets a model pool by pad id:
it runs the backbone and applies the head itself at position `length - 1` of every right-padded
row, which equals the model's own logits whenever the pad id occurs nowhere inside a row.

Supported heads: decoder classifiers built on transformers' `GenericForSequenceClassification`
(a backbone under `base_model_prefix` plus a `score` Linear: Llama, Mistral, Qwen2/3, Gemma,
Gemma-2, Phi-3, …). Others (encoder classifiers, custom heads) are refused with one line, since
where their score sits cannot be checked from here. A checkpoint's own code (remote code) that
pools by pad id gets a pad id that occurs in none of the batch's real tokens instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import ConfigError

ARMORM_ARCHITECTURE = "LlamaForRewardModelWithGating"
SUPPORTED = "transformers' decoder *ForSequenceClassification (Llama, Mistral, Qwen2, Gemma-2, …)"


@dataclass(frozen=True)
class PaddedBatch:
    """Right-padded token ids with the positions a head reads."""

    input_ids: Any  # (B, T)
    attention_mask: Any  # (B, T)
    last: Any  # (B,) index of each row's last real token
    gate: Any = None  # (B,) ArmoRM's prompt-end index per row, or None


def pad_batch(
    sequences: Sequence[list[int]], *, pad_id: int, gates: Sequence[int] | None = None
) -> PaddedBatch:
    """Right-pad `sequences` with `pad_id`; `last` comes from the lengths, never from the pad id."""
    import torch

    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)  # (B, T)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    last = attention_mask.sum(dim=-1) - 1  # (B,)
    gate = None if gates is None else torch.tensor(list(gates), dtype=torch.long)  # (B,)
    return PaddedBatch(input_ids, attention_mask, last, gate)


def unused_token_id(sequences: Sequence[list[int]], *, vocab_size: int) -> int:
    """The highest token id in no sequence: a pad that a pad-id pooler cannot mistake for a token."""
    used = {token for seq in sequences for token in seq}
    for candidate in range(vocab_size - 1, -1, -1):
        if candidate not in used:
            return candidate
    raise ConfigError("score: every token id occurs in the batch; lower token_budget")


def architecture(path: Path) -> str:
    """The first `architectures` entry of a model folder's config.json ('' if none)."""
    names = json.loads((path / "config.json").read_text()).get("architectures") or [""]
    return str(names[0])


def refuse_armorm_as(kind: str, *, path: Path) -> None:
    """An ArmoRM checkpoint scored with another kind has 1-D logits: say which kind to use."""
    if architecture(path) == ARMORM_ARCHITECTURE:
        raise ConfigError(
            f"score.kind: {path} is an ArmoRM checkpoint ({ARMORM_ARCHITECTURE}); kind {kind!r} "
            "cannot score it, use kind: armorm"
        )


def is_generic_classifier(model_class: type) -> bool:
    """Whether `model_class` has a backbone + `score` head prefsmith can apply at any position."""
    from transformers.modeling_layers import GenericForSequenceClassification

    return issubclass(model_class, GenericForSequenceClassification)


def check_classifier_config(path: Path, *, model_config) -> None:
    """Refuse, before loading weights, a built-in classifier whose head we cannot apply."""
    import transformers
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as NAMES,
    )

    if getattr(model_config, "auto_map", None):
        return  # the checkpoint's own class: checked once loaded (`check_classifier`)
    name = NAMES.get(model_config.model_type)
    model_class = getattr(transformers, name, None) if isinstance(name, str) else None
    if model_class is None or not is_generic_classifier(model_class):
        refuse(path, name=name or f"model_type {model_config.model_type}")


def check_classifier(model, *, path: Path) -> None:
    """Refuse a loaded model whose score position we cannot set from lengths."""
    if not is_generic_classifier(type(model)):
        refuse(path, name=type(model).__name__)


def refuse(path: Path, *, name: str) -> None:
    """One line naming the architecture and what kind 'reward_model' supports."""
    raise ConfigError(
        f"score.model: {path} is a {name}; kind 'reward_model' scores only {SUPPORTED}, whose "
        "head it applies at each row's last real token (use kind: armorm for ArmoRM)"
    )


def classifier_forward(model, batch: PaddedBatch) -> tuple[Any, None, None]:
    """logits[:, 0] (B,) of the `score` head at each row's last real token."""
    import torch

    backbone = getattr(model, model.base_model_prefix)
    device = model.device
    hidden = backbone(
        input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)
    ).last_hidden_state  # (B, T, H)
    rows = torch.arange(hidden.shape[0], device=hidden.device)  # (B,)
    pooled = hidden[rows, batch.last.to(hidden.device)]  # (B, H)
    return model.score(pooled)[:, 0], None, None  # (B, num_labels) -> (B,)
