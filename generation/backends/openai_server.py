"""OpenAI-compatible servers (`vllm serve`, ...) through `/v1/completions` with token-id prompts.

The prompt is sent as token ids (`prompt: [ids]`), so the chat template applied is ours, never
the server's. `return_token_ids` asks vLLM for the completion's ids; a server that ignores it
gets its text re-tokenized with the policy tokenizer (counted, but not bit-exact).

Scale-out: each `generate` call (one shard) goes to the next server in round-robin order; a
request that fails to connect, times out or gets a 5xx is retried on the next server with
exponential backoff. Requests of one call run concurrently so the server can batch them.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from generation.backends.base import Completion, finish_reason, per_prompt_max_tokens
from schemas.data_configs import GenerateConfig, SamplingConfig
from schemas.errors import StageError

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32  # concurrent requests per call: enough for the server to batch
BACKOFF_S = 0.5  # first retry delay, doubled each attempt
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class OpenAIServerBackend:
    """Generate through one or more OpenAI-compatible servers (base URLs ending in /v1)."""

    def __init__(self, config: GenerateConfig, *, tokenizer: Any, transport: Any = None) -> None:
        self.servers = [url.rstrip("/") for url in config.servers]
        self.model = config.served_model_name or config.model
        self.tokenizer = tokenizer
        self.attempts = max(3, 2 * len(self.servers))
        self.client = httpx.Client(timeout=config.request_timeout_s, transport=transport)
        self._next_server = itertools.cycle(range(len(self.servers)))

    def generate(
        self,
        prompt_token_ids: Sequence[Sequence[int]],
        *,
        sampling: SamplingConfig,
        seeds: Sequence[int],
        max_tokens: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        caps = per_prompt_max_tokens(
            prompt_token_ids, sampling=sampling, seeds=seeds, max_tokens=max_tokens
        )
        first = next(self._next_server)
        bodies = [
            request_body(ids, model=self.model, sampling=sampling, seed=seed, max_tokens=cap)
            for ids, seed, cap in zip(prompt_token_ids, seeds, caps, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=min(MAX_IN_FLIGHT, max(1, len(bodies)))) as pool:
            replies = list(pool.map(lambda body: self._post(body, first=first), bodies))
        for ids, reply in zip(prompt_token_ids, replies, strict=True):
            check_prompt_echo(reply, sent=ids)
        return [self._completions(reply, n=sampling.n) for reply in replies]

    def _post(self, body: dict[str, Any], *, first: int) -> dict[str, Any]:
        """POST /completions, moving to the next server after each retryable failure."""
        problem = ""
        for attempt in range(self.attempts):
            url = f"{self.servers[(first + attempt) % len(self.servers)]}/completions"
            try:
                response = self.client.post(url, json=body)
            except httpx.TransportError as error:
                problem = f"{url}: {type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code not in RETRYABLE_STATUS:
                    raise StageError(
                        f"{url} refused the request ({response.status_code}): {response.text[:500]}"
                    )
                problem = f"{url}: HTTP {response.status_code}: {response.text[:200]}"
            logger.warning("attempt %d/%d failed: %s", attempt + 1, self.attempts, problem)
            if attempt + 1 < self.attempts:
                time.sleep(BACKOFF_S * 2**attempt)
        raise StageError(f"no server answered after {self.attempts} attempts; last: {problem}")

    def _completions(self, reply: dict[str, Any], *, n: int) -> list[Completion]:
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise StageError(f"server returned {len(choices)} choices, expected n={n}")
        return [self._completion(choice) for choice in choices]

    def _completion(self, choice: dict[str, Any]) -> Completion:
        text = choice.get("text") or ""
        ids = choice.get("token_ids")
        if ids is None:  # a server without return_token_ids: count with our tokenizer
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Completion(
            text, tuple(ids), finish_reason(choice.get("finish_reason"), backend="openai")
        )

    def close(self) -> None:
        self.client.close()


def request_body(
    ids: Sequence[int], *, model: str, sampling: SamplingConfig, seed: int, max_tokens: int
) -> dict[str, Any]:
    """The `/v1/completions` JSON for one prompt given as token ids."""
    return {
        "model": model,
        "prompt": list(ids),
        "n": sampling.n,
        "seed": seed,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": max_tokens,
        "return_token_ids": True,
        "skip_special_tokens": True,
    }


def check_prompt_echo(reply: dict[str, Any], *, sent: Sequence[int]) -> None:
    """Refuse a server that generated from other ids than ours (e.g. it re-rendered the prompt)."""
    for choice in reply.get("choices", []):
        echoed = choice.get("prompt_token_ids")
        if echoed is not None and list(echoed) != list(sent):
            raise StageError(
                f"the server generated from {len(echoed)} prompt tokens, not the {len(sent)} sent "
                f"(first ids {list(echoed)[:4]} vs {list(sent)[:4]}): it must not re-tokenize prompts"
            )
