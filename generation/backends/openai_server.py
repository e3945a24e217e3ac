"""OpenAI-compatible servers (`vllm serve`, ...) through `/v1/completions` with token-id prompts.

The prompt is sent as token ids (`prompt: [ids]`), so the chat template applied is ours, never
the server's. `return_token_ids` asks vLLM for the completion's ids; a server that ignores it
gets its text re-tokenized with the policy tokenizer (counted, but not bit-exact).

Scale-out model. One backend instance is shared by the stage's shard threads (one per server,
prefsmith.generation.stage.shards_in_flight), so every `generate` call is one shard running concurrently
with others. A `ServerPool` gives each shard a first server: an up server with the fewest shards
in flight (ties in round-robin order), so shards spread across servers and a slow server is not
handed a second shard while another idles. All requests of a shard go to that server, concurrently
so it can batch them. A request that fails to connect, times out or gets a retryable status is
retried on the next up server, with exponential backoff (BACKOFF_S).

Health: a transport error marks the server down for a cooldown (COOLDOWN_S, doubled on each
failed probe, capped at COOLDOWN_MAX_S); a down server is skipped both for new shards and for
retries, unless every server is down, in which case they are tried in turn anyway so a recovered
one is found. Any HTTP answer marks it up again. Going down and coming back are logged once each.

Keys: the API key is read from the environment variable `config.api_key_env` (default
OPENAI_API_KEY) at every request, so a rotated key is picked up without a restart, and sent as
`Authorization: Bearer <key>`; with the variable unset or empty no header is sent. A 401/403
stops the stage with one line naming that variable. Server URLs appear in log and error lines
only through prefsmith.schemas.secrets.redact_url: credentials in a URL are never written down.

No duplicates: `generate` returns exactly one reply per prompt, in prompt order. A retried request
replaces the failed one (same body, same seed, so the same samples); nothing is appended, and the
stage writes the shard once, when all of its prompts have their reply.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from prefsmith.generation.backends.base import (
    Completion,
    completion_text,
    finish_reason,
    per_prompt_max_tokens,
)
from prefsmith.generation.turn_end import end_of_turn_ids
from prefsmith.schemas.data_configs import GenerateConfig, SamplingConfig
from prefsmith.schemas.errors import ServerUnavailable, StageError
from prefsmith.schemas.secrets import redact_text, redact_url

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32  # concurrent requests per shard: enough for the server to batch
BACKOFF_S = 0.5  # first retry delay, doubled each attempt
COOLDOWN_S = 2.0  # a server down after a transport error is skipped this long, then probed
COOLDOWN_MAX_S = 60.0  # the cooldown doubles on each failed probe, up to this
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
AUTH_STATUS = {401, 403}


@dataclass
class ServerState:
    """One server's load and health, read and written only under ServerPool's lock."""

    url: str  # as logged: redacted
    in_flight: int = 0  # shards whose first server this is, now
    failures: int = 0  # transport failures since the last answer (0: up)
    down_until: float = 0.0  # skipped until this clock time
    down_since: float = 0.0


class ServerPool:
    """Which server a shard starts on and which servers are down; shared between threads."""

    def __init__(self, urls: Sequence[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.states = [ServerState(redact_url(url)) for url in urls]
        self.clock = clock  # tests move time forward through this
        self._lock = threading.Lock()
        self._cursor = 0  # round-robin start for ties

    def _up(self, index: int, now: float) -> bool:
        return self.states[index].down_until <= now

    @contextmanager
    def lease(self) -> Iterator[int]:
        """The index of a shard's first server, held (counted in flight) while the shard runs."""
        with self._lock:
            now, count = self.clock(), len(self.states)
            order = [(self._cursor + k) % count for k in range(count)]
            candidates = [i for i in order if self._up(i, now)] or order
            first = min(candidates, key=lambda i: self.states[i].in_flight)  # ties: earliest
            self._cursor = (first + 1) % count
            self.states[first].in_flight += 1
        try:
            yield first
        finally:
            with self._lock:
                self.states[first].in_flight -= 1

    def choose(self, start: int) -> int:
        """The first up server in cyclic order from `start`; `start` itself when all are down."""
        with self._lock:
            now, count = self.clock(), len(self.states)
            for k in range(count):
                if self._up((start + k) % count, now):
                    return (start + k) % count
            return start % count

    def failed(self, index: int, problem: str) -> None:
        """A transport error: mark the server down, unless it already is (other requests that were
        in flight on it when it died fail too and must not stretch the cooldown)."""
        with self._lock:
            state, now = self.states[index], self.clock()
            if state.down_until > now:
                return
            state.failures += 1
            newly_down = state.failures == 1
            cooldown = min(COOLDOWN_S * 2 ** (state.failures - 1), COOLDOWN_MAX_S)
            state.down_until = now + cooldown
            if newly_down:
                state.down_since = now
        if newly_down:
            logger.warning(
                "server %s is down (%s); skipping it for %.0f s, then probing again "
                "with doubling pauses",
                state.url,
                problem,
                cooldown,
            )
        else:
            logger.info("server %s still down; next probe in %.0f s", state.url, cooldown)

    def answered(self, index: int) -> None:
        """Any HTTP answer: the server is reachable, so it is up."""
        with self._lock:
            state, now = self.states[index], self.clock()
            was_down, down_for = state.failures > 0, now - state.down_since
            state.failures, state.down_until = 0, 0.0
        if was_down:
            logger.warning("server %s is back after %.1f s down", state.url, down_for)


class OpenAIServerBackend:
    """Generate through one or more OpenAI-compatible servers (base URLs ending in /v1)."""

    def __init__(self, config: GenerateConfig, *, tokenizer: Any, transport: Any = None) -> None:
        self.servers = [url.rstrip("/") for url in config.servers]
        self.model = config.served_model_name or config.model
        self.api_key_env = config.api_key_env
        self.tokenizer = tokenizer
        self.end_ids = list(end_of_turn_ids(config.model, tokenizer))
        self.attempts = max(3, 2 * len(self.servers))
        self.pool = ServerPool(self.servers)
        # no connection cap: concurrency is bounded by the shard threads, and a pool timeout would
        # read as a transport error and mark a healthy server down
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=MAX_IN_FLIGHT)
        self.client = httpx.Client(
            timeout=config.request_timeout_s, transport=transport, limits=limits
        )

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
        bodies = [
            request_body(
                ids,
                model=self.model,
                sampling=sampling,
                seed=seed,
                max_tokens=cap,
                end_ids=self.end_ids,
            )
            for ids, seed, cap in zip(prompt_token_ids, seeds, caps, strict=True)
        ]
        workers = min(MAX_IN_FLIGHT, max(1, len(bodies)))
        with self.pool.lease() as first, ThreadPoolExecutor(max_workers=workers) as threads:
            replies = list(threads.map(lambda body: self._post(body, first=first), bodies))
        for ids, reply in zip(prompt_token_ids, replies, strict=True):
            check_prompt_echo(reply, sent=ids)
        return [self._completions(reply, n=sampling.n) for reply in replies]

    def _post(self, body: dict[str, Any], *, first: int) -> dict[str, Any]:
        """POST /completions to the shard's first server, moving on after retryable failures."""
        problem, server = "", first
        for attempt in range(self.attempts):
            server = self.pool.choose(first if attempt == 0 else server + 1)
            url = f"{self.servers[server]}/completions"
            shown = redact_url(url)
            try:
                response = self.client.post(url, json=body, headers=self._headers())
            except httpx.TransportError as error:
                problem = one_line(f"{shown}: {type(error).__name__}: {error}")
                self.pool.failed(server, problem)
                logger.info("attempt %d/%d failed: %s", attempt + 1, self.attempts, problem)
            else:
                self.pool.answered(server)
                if response.status_code == 200:
                    return response.json()
                if response.status_code not in RETRYABLE_STATUS:
                    raise self._refused(response, shown=shown)
                problem = one_line(f"{shown}: HTTP {response.status_code}: {response.text[:200]}")
                logger.warning("attempt %d/%d failed: %s", attempt + 1, self.attempts, problem)
            if attempt + 1 < self.attempts:
                time.sleep(BACKOFF_S * 2**attempt)
        raise ServerUnavailable(
            f"no server answered after {self.attempts} attempts over {len(self.servers)} "
            f"server(s); last: {problem}"
        )

    def _headers(self) -> dict[str, str]:
        """The Bearer header from the environment, read now (none when the variable is unset)."""
        key = os.environ.get(self.api_key_env, "").strip()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _refused(self, response: httpx.Response, *, shown: str) -> StageError:
        """The one-line error of a non-retryable answer; a 401/403 names the key's variable."""
        status, body = response.status_code, response.text[:500]
        message = f"{shown} refused the request ({status}): {body}"
        if status in AUTH_STATUS:
            given = "is set but the server refused it" if self._headers() else "is not set"
            message += (
                f"; the server wants an API key: environment variable {self.api_key_env} "
                f"(generate.api_key_env) {given}"
            )
        return StageError(one_line(message))

    def _completions(self, reply: dict[str, Any], *, n: int) -> list[Completion]:
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise StageError(f"server returned {len(choices)} choices, expected n={n}")
        return [self._completion(choice) for choice in choices]

    def _completion(self, choice: dict[str, Any]) -> Completion:
        text, ids = choice.get("text") or "", choice.get("token_ids")
        if ids is None:  # a server without return_token_ids: count with our tokenizer
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            text = completion_text(self.tokenizer, ids)
        return Completion(
            text, tuple(ids), finish_reason(choice.get("finish_reason"), backend="openai")
        )

    def close(self) -> None:
        self.client.close()


def one_line(text: str) -> str:
    """Collapse whitespace, so a server's multi-line error body stays a one-line message; hide
    any URL credentials in it (a server or proxy may echo the URL)."""
    return redact_text(" ".join(text.split()))


def request_body(
    ids: Sequence[int],
    *,
    model: str,
    sampling: SamplingConfig,
    seed: int,
    max_tokens: int,
    end_ids: Sequence[int] = (),
) -> dict[str, Any]:
    """The `/v1/completions` JSON for one prompt given as token ids; `stop_token_ids` (a vLLM
    extension) makes the server stop where the trainer ends a completion."""
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
        "stop_token_ids": list(end_ids),
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
