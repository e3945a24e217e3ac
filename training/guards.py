"""Checks that stop a run with one clear line instead of a silent wrong result.

- a NaN/inf loss (with the step and the loss's metrics, so the cause can be read off),
- pairs without reference log-probs when a loss term needs them,
- reference log-probs computed over other tokens than the policy will see,
- a tokenizer that does not fit the model (ids past the embedding, special ids that disagree);

and one that warns: settings that cannot move the loss (a learning rate too small for the model
and the step count, e.g. the default 5e-7 on a tiny model for a few steps).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prefsmith.schemas.errors import StageError
from prefsmith.schemas.tables import REFERENCE_COLUMNS
from prefsmith.training.losses import needs_reference

logger = logging.getLogger(__name__)


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


# A logit is a sum over the hidden size of products with weights, and AdamW moves each weight by
# about the learning rate per step whatever the gradient's scale: Σ_t lr_t · hidden_size bounds
# roughly how far one logit (hence a log-prob, hence the DPO margin) can move over the run.
# Issue 12's trial: the tiny policy (hidden 64) at the default lr 5e-7 for one epoch of the
# README's pairs (reach ≈ 1e-3) kept the loss at 0.6931 throughout; the quickstart's lr 1e-3 for
# 60 steps (reach ≈ 2) trains. A 7B model (hidden 4096) at lr 5e-7 for ~2,000 steps reaches ≈ 2,
# so common full-size recipes are not flagged.
MIN_LOGIT_REACH = 0.01
SCHEDULE_AREA = {"linear": 0.5, "cosine": 0.5, "constant": 1.0, "constant_with_warmup": 1.0}


def planned_steps(*, max_steps: int, epochs: float, n_pairs: int, global_batch: int) -> int:
    """Optimizer steps the Trainer will take: max_steps, else epochs × batches per epoch."""
    if max_steps > 0:
        return max_steps
    return max(1, math.ceil(epochs * math.ceil(n_pairs / max(1, global_batch))))


def logit_reach(
    *, learning_rate: float, steps: int, warmup_ratio: float, scheduler: str, hidden_size: int
) -> float:
    """Σ_t lr_t · hidden_size: the rough bound above (warmup counted at half its rate)."""
    area = SCHEDULE_AREA.get(scheduler, 0.5)
    lr_sum = learning_rate * steps * ((1 - warmup_ratio) * area + warmup_ratio * 0.5)
    return lr_sum * hidden_size


def stuck_loss_warning(
    *, learning_rate: float, steps: int, warmup_ratio: float, scheduler: str, hidden_size: int
) -> str | None:
    """One warning line when these settings can hardly move the loss, else None."""
    reach = logit_reach(
        learning_rate=learning_rate,
        steps=steps,
        warmup_ratio=warmup_ratio,
        scheduler=scheduler,
        hidden_size=hidden_size,
    )
    if reach >= MIN_LOGIT_REACH:
        return None
    wanted = learning_rate * MIN_LOGIT_REACH / reach
    return (
        f"train: learning_rate {learning_rate:g} for {steps} steps on a model with hidden size "
        f"{hidden_size} can hardly move the loss (it will stay near its start, log 2 = 0.6931 "
        f"for DPO); raise learning_rate to at least {wanted:.1g} or train for more steps"
    )


def warn_if_loss_cannot_move(config, *, model, n_pairs: int, global_batch: int) -> str | None:
    """Log stuck_loss_warning for a TrainConfig and a loaded model (returns the line, if any);
    a model config without a hidden size is not judged."""
    text_config = getattr(model.config, "get_text_config", lambda: model.config)()
    hidden_size = int(getattr(text_config, "hidden_size", 0) or 0)
    if hidden_size <= 0:
        return None
    steps = planned_steps(
        max_steps=config.max_steps,
        epochs=config.num_train_epochs,
        n_pairs=n_pairs,
        global_batch=global_batch,
    )
    line = stuck_loss_warning(
        learning_rate=config.learning_rate,
        steps=steps,
        warmup_ratio=config.warmup_ratio,
        scheduler=config.lr_scheduler_type,
        hidden_size=hidden_size,
    )
    if line:
        logger.warning(line)
    return line
