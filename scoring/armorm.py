"""ArmoRM multi-objective reward models (kind "armorm").

ArmoRM (Wang et al., "Interpretable Preferences via Multi-Objective Reward Modeling and
Mixture-of-Experts", arXiv:2406.12845) gives one reward per objective (K = 19 for
ArmoRM-Llama3-8B-v0.1), gating weights conditioned on the prompt, and their combination as the
preference score. By default prefsmith runs its own implementation of the architecture
(`prefsmith.scoring.armorm_model`) on the checkpoint's safetensors, with no remote code: the
published `modeling_custom.py` does not import on transformers 5. `trust_remote_code: true` runs
the checkpoint's own class instead (its output must have `.score` and `.rewards`).

The scores table's `objectives` hold the K rewards, then the K gating weights named
`gate/<objective>`. Objective names come from `params.objective_names`, else the model config's
`objective_names`, else ArmoRM-Llama3-8B-v0.1's 19 when K is 19, else `obj_0..obj_{K-1}`.

The gating input is the hidden state at the prompt's end: the last token of the prompt rendered
without a generation prompt, i.e. the token right before the assistant header — for the Llama-3
template the `<|eot_id|>` where the published code finds `<|eot_id|><|start_header_id|>assistant
<|end_header_id|>\\n\\n` (it searches for the last such pattern, so the two differ only for a
response that itself contains that header). Rendering, batching and quarantine reasons are the
reward model's (`prefsmith.scoring.reward_model`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError, StageError
from prefsmith.scoring.armorm_model import ARCHITECTURE, ARMORM_OBJECTIVES
from prefsmith.scoring.batching import ScoreRequest
from prefsmith.scoring.pooling import PaddedBatch, architecture, unused_token_id
from prefsmith.scoring.reward_model import (
    ModelScorer,
    load_remote,
    load_tokenizer,
    model_folder,
    resolve_max_length,
    to_device,
    torch_dtype,
)

logger = logging.getLogger(__name__)


def objective_names(config: ScoreConfig, *, model_config, count: int) -> tuple[str, ...] | None:
    """Names from params, else the model config's, else ArmoRM's 19 (K = 19), else None."""
    names = config.params.get("objective_names")
    if names is None:
        names = getattr(model_config, "objective_names", None)
    if names is None:
        return ARMORM_OBJECTIVES if count == len(ARMORM_OBJECTIVES) else None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"score.params.objective_names: must be a list of strings (got {names!r})"
        )
    return tuple(names)


def check_armorm(config: ScoreConfig) -> None:
    """Fail before loading: native needs an ArmoRM checkpoint; anything else needs the opt-in."""
    path = model_folder(config)
    if config.trust_remote_code:
        return
    declared = json.loads((path / "config.json").read_text())
    found = architecture(path) or "no architectures"
    if found == ARCHITECTURE and declared.get("model_type") == "llama":
        return
    own_code = " with its own code (auto_map)" if declared.get("auto_map") else ""
    raise ConfigError(
        f"score.kind: kind 'armorm' runs natively {ARCHITECTURE} checkpoints on a llama backbone; "
        f"{path} is {found}{own_code}: use kind 'reward_model' for a plain classifier, or set "
        "trust_remote_code: true to run the model's own code"
    )


def prompt_end(tokenizer, request: ScoreRequest, ids: list[int]) -> int:
    """Index in `ids` of the prompt's last token (the gating input); ValueError if not a prefix."""
    prompt = tokenizer.apply_chat_template(
        request.messages, tokenize=True, return_dict=False, add_generation_prompt=False
    )
    prompt = [int(i) for i in prompt]
    if not prompt or ids[: len(prompt)] != prompt:
        raise ValueError("the rendered prompt is not a token prefix of prompt + response")
    return len(prompt) - 1


def native_forward(model, batch: PaddedBatch) -> tuple[Any, Any, Any]:
    """(score (B,), rewards (B, K), gates (B, K)) of prefsmith's ArmoRM at length-given positions."""
    device = model.device
    out = model(
        batch.input_ids.to(device),
        batch.attention_mask.to(device),
        last=batch.last,
        gate=batch.gate,
    )
    return out.score, out.rewards, out.gating_output


def remote_forward(model, batch: PaddedBatch) -> tuple[Any, Any, Any]:
    """The checkpoint's own forward, padded with an id no real token has (it pools by pad id)."""
    rows = [ids[: int(n) + 1] for ids, n in zip(batch.input_ids.tolist(), batch.last, strict=True)]
    pad_id = unused_token_id(rows, vocab_size=int(model.config.vocab_size))
    model.config.pad_token_id = pad_id
    input_ids = batch.input_ids.masked_fill(batch.attention_mask == 0, pad_id)  # (B, T)
    device = model.device
    out = model(input_ids=input_ids.to(device), attention_mask=batch.attention_mask.to(device))
    score, rewards = getattr(out, "score", None), getattr(out, "rewards", None)
    if score is None or rewards is None:
        raise StageError(
            "kind 'armorm' needs a model whose output has .score and .rewards "
            f"(got {type(out).__name__}); use kind 'reward_model' for a plain classifier"
        )
    score = score[:, 0] if score.dim() == 2 else score  # (B, 1) -> (B,)
    return score, rewards, getattr(out, "gating_output", None)


def load_model(config: ScoreConfig):
    """(model, forward): prefsmith's ArmoRM, or with trust_remote_code the checkpoint's class."""
    from transformers import AutoModelForSequenceClassification

    from prefsmith.scoring.armorm_model import ArmoRMForScoring

    path = model_folder(config)
    dtype = torch_dtype(config.dtype)
    if config.trust_remote_code:
        loader = AutoModelForSequenceClassification.from_pretrained
        return load_remote(loader, path, dtype=dtype, trust_remote_code=True), remote_forward
    model, info = ArmoRMForScoring.from_pretrained(str(path), dtype=dtype, output_loading_info=True)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ConfigError(
            f"score.model: {path} lacks ArmoRM parameters {missing[:4]} "
            f"({len(missing)} missing): not an ArmoRM checkpoint"
        )
    return model, native_forward


def load_armorm(config: ScoreConfig) -> ModelScorer:
    """A `ModelScorer` storing an ArmoRM's score, named rewards and gating weights."""
    check_armorm(config)
    tokenizer = load_tokenizer(config)
    model, forward = load_model(config)
    model = to_device(model)
    max_length = resolve_max_length(
        config.max_length, model_config=model.config, tokenizer=tokenizer
    )
    count = int(getattr(model.config, "num_objectives", 0) or 0)
    return ModelScorer(
        model,
        tokenizer,
        max_length=max_length,
        token_budget=config.token_budget,
        forward=forward,
        objective_names=objective_names(config, model_config=model.config, count=count),
        prompt_end=prompt_end if forward is native_forward else None,
    )
