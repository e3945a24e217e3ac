"""ArmoRM-style multi-objective reward models (kind "armorm").

ArmoRM (Wang et al., "Interpretable Preferences via Multi-Objective Reward Modeling and
Mixture-of-Experts", arXiv:2406.12845) returns an output object with `.rewards` (B, K) — one
value per objective, K = 19 for ArmoRM-Llama3-8B-v0.1 — and `.score` (B, 1), the gating-weighted
combination used as the preference score. Its model class is custom code shipped with the
checkpoint (`auto_map` in config.json), so it runs only when the user sets
`trust_remote_code: true`; without it we refuse with a one-line ConfigError before loading.

Objective names come from `params.objective_names`, else the model config's `objective_names`
attribute, else `obj_0..obj_{K-1}`. Rendering, batching and quarantine reasons are the reward
model's (`prefsmith.scoring.reward_model`).
"""

from __future__ import annotations

import logging
from typing import Any

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError, StageError
from prefsmith.scoring.reward_model import (
    ModelScorer,
    check_remote_code,
    load_model_and_tokenizer,
    model_folder,
    resolve_max_length,
)

logger = logging.getLogger(__name__)


def read_armorm_output(outputs) -> tuple[Any, Any]:
    """(score (B,), rewards (B, K)) from an ArmoRM-style output object."""
    score = getattr(outputs, "score", None)
    rewards = getattr(outputs, "rewards", None)
    if score is None or rewards is None:
        raise StageError(
            "kind 'armorm' needs a model whose output has .score and .rewards "
            f"(got {type(outputs).__name__}); use kind 'reward_model' for a plain classifier"
        )
    if score.dim() == 2:
        score = score[:, 0]  # (B, 1) -> (B,)
    return score, rewards  # (B,), (B, K)


def objective_names(config: ScoreConfig, *, model_config) -> tuple[str, ...] | None:
    """Names from params.objective_names, else the model config's, else None (obj_0..)."""
    names = config.params.get("objective_names")
    if names is None:
        names = getattr(model_config, "objective_names", None)
    if names is None:
        return None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"score.params.objective_names: must be a list of strings (got {names!r})"
        )
    return tuple(names)


def check_armorm(config: ScoreConfig) -> None:
    """Fail before loading: ArmoRM's class is remote code, so the user must opt in explicitly."""
    path = model_folder(config)
    check_remote_code(path, trust_remote_code=config.trust_remote_code)
    if not config.trust_remote_code:
        raise ConfigError(
            f"score.trust_remote_code: kind 'armorm' runs the model's own code from {path}; "
            "set trust_remote_code: true to opt in"
        )


def load_armorm(config: ScoreConfig) -> ModelScorer:
    """A `ModelScorer` reading `.score` and the named `.rewards` of an ArmoRM-style model."""
    check_armorm(config)
    model, tokenizer = load_model_and_tokenizer(config)
    max_length = resolve_max_length(
        config.max_length, model_config=model.config, tokenizer=tokenizer
    )
    return ModelScorer(
        model,
        tokenizer,
        max_length=max_length,
        token_budget=config.token_budget,
        read_output=read_armorm_output,
        objective_names=objective_names(config, model_config=model.config),
    )
