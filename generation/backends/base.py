"""What every generation backend offers: token ids in, completions out.

Prompts arrive already rendered with the policy's chat template (prefsmith.generation.render), so every
backend generates from exactly the same ids. A backend never renders, never re-tokenizes a
prompt, and reports each completion's own token ids so `n_tokens` means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from prefsmith.schemas.data_configs import SamplingConfig
from prefsmith.schemas.errors import StageError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Completion:
    """One sampled continuation.

    `token_ids` are the generated ids, including the EOS that ended it when `finish_reason` is
    "stop" (vLLM's convention); `text` is their decoding without special tokens.
    """

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason


@runtime_checkable
class Backend(Protocol):
    """A loaded generator. `generate` returns, per prompt, `sampling.n` completions in order.

    `seeds[i]` makes prompt i's samples reproducible; `max_tokens[i]` (default
    `sampling.max_new_tokens`) caps prompt i's completion so prompt + completion fit the context.
    """

    def generate(
        self,
        prompt_token_ids: Sequence[Sequence[int]],
        *,
        sampling: SamplingConfig,
        seeds: Sequence[int],
        max_tokens: Sequence[int] | None = None,
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...


def per_prompt_max_tokens(
    prompt_token_ids: Sequence[Sequence[int]],
    *,
    sampling: SamplingConfig,
    seeds: Sequence[int],
    max_tokens: Sequence[int] | None,
) -> list[int]:
    """Check the per-prompt arguments line up; return each prompt's completion-token cap."""
    if len(seeds) != len(prompt_token_ids):
        raise ValueError(f"{len(seeds)} seeds for {len(prompt_token_ids)} prompts")
    if max_tokens is None:
        return [sampling.max_new_tokens] * len(prompt_token_ids)
    if len(max_tokens) != len(prompt_token_ids):
        raise ValueError(f"{len(max_tokens)} max_tokens for {len(prompt_token_ids)} prompts")
    if any(m < 1 for m in max_tokens):
        raise ValueError(f"max_tokens must all be >= 1, got {min(max_tokens)}")
    return list(max_tokens)


def finish_reason(raw: str | None, *, backend: str) -> FinishReason:
    """Map an engine's finish reason to the table's "stop"/"length"; anything else is a failure."""
    if raw in ("stop", "length"):
        return raw  # type: ignore[return-value]
    raise StageError(f"{backend}: a request ended with finish_reason={raw!r} (aborted or failed)")


def completion_text(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """The stored response text of generated ids: their decoding on their own, without special
    tokens, by the policy's tokenizer. Every backend uses this one decoding (an engine's
    incremental detokenizer would keep, e.g., the sentencepiece space Mistral's template writes
    before a reply), so the backends' texts agree and re-render to the same completion."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=True)
