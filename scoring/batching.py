"""What flows through a scorer, and how rows are grouped into padded batches.

A scorer takes `ScoreRequest`s (one response with its prompt) and returns, per request, either a
`Scored` or a `prefsmith.schemas.quarantine.Rejected` — never an exception for one bad row, so one bad row
cannot fail a shard of thousands. Batches are formed by a token budget rather than a fixed row
count: a padded batch costs rows × longest tokens, so sorting by length and filling up to a budget
keeps padding small and memory bounded whatever the length distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefsmith.schemas.quarantine import Rejected


@dataclass(frozen=True)
class ScoreRequest:
    """One response to score, with everything any scorer may need (joined on prompt_id)."""

    response_id: str
    prompt_id: str
    messages: list[dict[str, str]]  # the prompt's chat messages, raw text
    response: str  # the raw completion text, never a rendered template
    metadata: dict[str, Any] = field(default_factory=dict)  # the prompt's parsed metadata JSON
    n_tokens: int | None = None  # completion tokens under the generator's tokenizer (None: unknown)
    anchor_id: str | None = None  # the prompt's first sample (pairwise judges compare with it)
    anchor: str | None = None  # its text


@dataclass(frozen=True)
class Scored:
    """A score for one request; `objectives` are (name, value) pairs where the scorer has them."""

    score: float
    n_tokens: int  # tokens the scorer saw (prompt + response, as rendered by its template); for
    # batching and throughput only: the scores table records the response's own n_tokens
    objectives: tuple[tuple[str, float], ...] = ()


Outcome = Scored | Rejected


def token_budget_batches(lengths: list[int], *, budget: int) -> list[list[int]]:
    """Group row indices into batches whose padded size (rows × longest) stays within `budget`.

    Indices are sorted by length, longest first (ties keep their original order), then filled
    greedily: since every later row is no longer than the batch's first, a batch of `k` rows
    costs `k × lengths[first]`. A single row longer than the budget gets a batch of its own
    (dropping or truncating it is the caller's decision, not the batcher's).
    """
    if budget < 1:
        raise ValueError(f"token budget must be >= 1, got {budget}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches
