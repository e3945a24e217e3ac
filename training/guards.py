"""Checks that stop a run with one clear line instead of a silent wrong result.

- a NaN/inf loss (with the step and the loss's metrics, so the cause can be read off),
- pairs without reference log-probs when a loss term needs them,
- reference log-probs computed over other tokens than the policy will see,
- a tokenizer that does not fit the model (ids past the embedding, special ids that disagree).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prefsmith.schemas.errors import StageError
from prefsmith.schemas.tables import REFERENCE_COLUMNS
from prefsmith.training.losses import needs_reference


def check_finite_loss(loss: float, *, step: int, metrics: Mapping[str, Any]) -> None:
    """Raise StageError if `loss` is NaN or infinite, naming the step and every metric."""
    if math.isfinite(loss):
        return
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()))
    raise StageError(
        f"non-finite loss ({loss}) at step {step}; metrics: {shown or 'none'}. Lower the "
        "learning rate, check the pairs' scores and reference log-probs, or turn off bf16"
    )


def check_reference_columns(
    columns: Iterable[str], *, terms: Sequence[tuple[str, float, dict]]
) -> None:
    """Raise StageError when a loss term needs reference log-probs the pairs table lacks."""
    missing = [name for name in REFERENCE_COLUMNS.names if name not in set(columns)]
    if not missing:
        return
    for name, _, params in terms:
        if needs_reference(name, **params):
            raise StageError(
                f"loss {name!r} needs reference log-probs: run `prefsmith reference` first "
                f"(the pairs table has no {', '.join(missing)})"
            )


def check_reference_tokens(mismatched: int, *, total: int, example: str) -> None:
    """Raise StageError when stored reference token counts differ from the policy's rendering."""
    if mismatched:
        raise StageError(
            f"{mismatched} of {total} pairs have reference log-probs over other tokens than the "
            f"policy's rendering (e.g. {example}): rerun `prefsmith reference` with the policy's "
            "tokenizer and the same max_length / max_prompt_length"
        )


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [int(value)]


def check_tokenizer_model(tokenizer, config, *, model_name: str = "model") -> None:
    """Raise StageError if `tokenizer` cannot drive the model with `config` (a PretrainedConfig).

    Checks that every token id fits the embedding (`len(tokenizer) <= vocab_size`), that pad,
    EOS and BOS ids are in range, and that the ids the model's config declares agree with the
    tokenizer's (a model stopping on another EOS than its tokenizer writes never stops).
    """
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = int(config.vocab_size)
    problems = []
    if len(tokenizer) > vocab:
        problems.append(
            f"the tokenizer has {len(tokenizer)} tokens (max id {len(tokenizer) - 1}) "
            f"but the model's vocab_size is {vocab}"
        )
    for name in ("pad", "eos", "bos"):
        token_id = getattr(tokenizer, f"{name}_token_id")
        if token_id is not None and not 0 <= token_id < vocab:
            problems.append(
                f"{name}_token_id {token_id} is outside the model's vocab (0..{vocab - 1})"
            )
        declared = _ids(getattr(config, f"{name}_token_id", None))
        if name != "pad" and token_id is not None and declared and token_id not in declared:
            problems.append(
                f"the tokenizer's {name}_token_id is {token_id} but the model's "
                f"config says {declared}"
            )
    if tokenizer.eos_token_id is None:
        problems.append("the tokenizer has no eos_token: completions could not end")
    if problems:
        raise StageError(
            f"tokenizer/model mismatch for {model_name}: "
            + "; ".join(problems)
            + ". Use the tokenizer saved with this model"
        )
