"""Reward models served by vLLM's pooling runner (kind "vllm_pooling").

`vllm.LLM(model=path, runner="pooling")` runs a `*ForSequenceClassification` checkpoint with
vLLM's batching and paged attention; `llm.classify(...)` with `PoolingParams(use_activation=False)`
returns the raw head output (no sigmoid/softmax), which equals transformers' logits[:, 0].

Prompts are passed as token ids (`TokensPrompt`) rendered by the same code as the transformers
reward model (`prefsmith.scoring.reward_model.encode_requests`: the scorer's chat template, one BOS, rows
over max_length quarantined as `too_long`), so the two backends see identical tokens and vLLM's
own tokenizer (which would add a second BOS to a rendered template) is never used.

`dtype: auto` means the checkpoint's dtype here as in the transformers backend. vLLM's own "auto"
downcasts float32 checkpoints to float16 (seen on the CPU: scores off by ~7e-3 from
transformers'), so the two backends would silently disagree; set `dtype: bfloat16` to trade
precision for speed explicitly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.scoring.batching import Outcome, Scored, ScoreRequest
from prefsmith.scoring.pooling import architecture, refuse_armorm_as
from prefsmith.scoring.reward_model import (
    check_remote_code,
    encode_requests,
    model_folder,
    resolve_max_length,
)

logger = logging.getLogger(__name__)


def refuse_architecture(path, *, name: str) -> None:
    """One line naming the architecture vLLM's pooling runner cannot score."""
    raise ConfigError(
        f"score.kind: kind 'vllm_pooling' scores the *ForSequenceClassification architectures "
        f"vLLM implements; {path} is {name}: use kind 'reward_model' (transformers) instead"
    )


def check_vllm_architecture(path) -> None:
    """Refuse custom code and non-classifier architectures before vLLM starts.

    vLLM pools each request at its last token from the request's own length (its `LastPool`
    reads the pooling cursor's last-token indices; requests are packed, never padded), so a pad
    id inside a sequence cannot move the score: no further check is needed for position.
    """
    refuse_armorm_as("vllm_pooling", path=path)
    name = architecture(path)
    declared = json.loads((path / "config.json").read_text())
    if declared.get("auto_map"):
        refuse_architecture(path, name=f"{name or 'a model'} with its own code (auto_map)")
    if not name.endswith("ForSequenceClassification"):
        refuse_architecture(path, name=name or "a model with no architectures")


def checkpoint_dtype(configured: str, *, model_config) -> str:
    """`configured`, or for "auto" the dtype the checkpoint declares (vLLM's "auto" downcasts)."""
    if configured != "auto":
        return configured
    declared = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
    return "auto" if declared is None else str(declared).removeprefix("torch.")


def start_engine(engine, path, **kwargs):
    """`engine(model=path, ...)`; an architecture vLLM does not implement is one line."""
    try:
        return engine(model=str(path), **kwargs)
    except ValueError as error:
        if "architecture" not in str(error).lower():
            raise
        refuse_architecture(path, name=f"{architecture(path)}, which vLLM does not implement")


@dataclass
class VllmPoolingScorer:
    """Scores requests with a vLLM pooling engine, started on first use and kept for the stage."""

    config: ScoreConfig
    _llm: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _max_length: int = 0

    def start(self) -> None:
        """Load the tokenizer and start the engine (a few seconds on the CPU)."""
        from transformers import AutoConfig, AutoTokenizer

        from prefsmith.generation.vllm_env import configure_cpu_defaults

        configure_cpu_defaults()  # before the first `import vllm`: vLLM reads them at import
        from vllm import LLM

        path = model_folder(self.config)
        remote = self.config.trust_remote_code
        check_vllm_architecture(path)
        check_remote_code(path, trust_remote_code=remote)
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=remote)
        model_config = AutoConfig.from_pretrained(str(path), trust_remote_code=remote)
        self._max_length = resolve_max_length(
            self.config.max_length, model_config=model_config, tokenizer=self._tokenizer
        )
        self._llm = start_engine(
            LLM,
            path,
            runner="pooling",
            enforce_eager=True,
            dtype=checkpoint_dtype(self.config.dtype, model_config=model_config),
            max_model_len=self._max_length,
            trust_remote_code=remote,
        )

    def __call__(self, requests: Sequence[ScoreRequest]) -> list[Outcome]:
        if self._llm is None:
            self.start()  # sets vLLM's environment before vLLM is first imported
        from vllm import PoolingParams, TokensPrompt

        encoded, outcomes = encode_requests(
            requests, tokenizer=self._tokenizer, max_length=self._max_length
        )
        indices = sorted(encoded)
        prompts = [TokensPrompt(prompt_token_ids=encoded[i]) for i in indices]
        results = (
            self._llm.classify(
                prompts, pooling_params=PoolingParams(use_activation=False), use_tqdm=False
            )
            if prompts
            else []
        )
        for index, result in zip(indices, results, strict=True):
            outcomes[index] = Scored(float(result.outputs.probs[0]), len(encoded[index]))
        return [outcomes[i] for i in range(len(requests))]

    def close(self) -> None:
        """Drop the engine so its memory can be returned."""
        self._llm = None
