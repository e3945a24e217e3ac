"""Rule scorers (kind "rule"): deterministic rewards computed from the text alone.

A rule is `(prompt_messages, response, params) -> float`, registered by name with
`@register_rule("name")`. `params` is the config's `params` plus, under `PROMPT_METADATA`, the
prompt's parsed metadata (where reference answers live). A rule that cannot score one row raises
`RuleRowError(reason, detail)`: that row is quarantined with `reason`, the run goes on.

| rule          | score                                         | params                                   |
|---------------|-----------------------------------------------|------------------------------------------|
| exact_match   | 1.0 if the final answer equals the reference  | answer_key ("answer"), answer_regex       |
| regex         | 1.0 if `pattern` matches (or the match count) | pattern, count (false), ignore_case (false)|
| length_target | −abs(n_words − target) / target               | target (> 0)                              |
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.quarantine import Rejected
from prefsmith.scoring.batching import Outcome, Scored, ScoreRequest

logger = logging.getLogger(__name__)

RuleFn = Callable[[list[dict[str, str]], str, dict[str, Any]], float]
ParamCheck = Callable[[dict[str, Any]], None]
PROMPT_METADATA = "prompt_metadata"  # the key under which a rule finds the prompt's metadata

RULES: dict[str, RuleFn] = {}
PARAM_CHECKS: dict[str, ParamCheck] = {}


class RuleRowError(Exception):
    """One row a rule cannot score; quarantined with `reason` (e.g. missing_reference)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def register_rule(name: str, *, check: ParamCheck | None = None) -> Callable[[RuleFn], RuleFn]:
    """Decorator adding a rule to `RULES`; `check(params)` validates params before any row."""

    def add(fn: RuleFn) -> RuleFn:
        if name in RULES and RULES[name] is not fn:
            logger.warning("rule %r is registered again; the new function replaces the old", name)
        RULES[name] = fn
        if check is not None:
            PARAM_CHECKS[name] = check
        return fn

    return add


def get_rule(name: str, *, params: dict[str, Any] | None = None) -> RuleFn:
    """The rule called `name` (params checked); ConfigError listing the known names otherwise."""
    if name not in RULES:
        raise ConfigError(
            f"score.rule: unknown rule {name!r}; known rules: {', '.join(sorted(RULES))}"
        )
    if PROMPT_METADATA in (params or {}):
        raise ConfigError(f"score.params: {PROMPT_METADATA!r} is reserved for the prompt metadata")
    check = PARAM_CHECKS.get(name)
    if check is not None:
        check(params or {})
    return RULES[name]


# --- exact_match --------------------------------------------------------------------------------

ANSWER_AFTER = re.compile(r"answer\s*:\s*([^\n]*)", re.IGNORECASE)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str, *, pattern: str | None = None) -> str | None:
    """The final answer: the last match of `pattern` (its group 1 if it has one); by default the
    text after the last "answer:" on its line, else the last number in the text."""
    if pattern is not None:
        matches = list(re.finditer(pattern, text))
        if not matches:
            return None
        last = matches[-1]
        return last.group(1) if last.re.groups else last.group(0)
    after = [m.group(1).strip() for m in ANSWER_AFTER.finditer(text)]
    if after and after[-1]:
        return after[-1]
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None


def normalize_answer(answer: Any) -> str:
    """Compare answers loosely: case, surrounding space/period, thousands commas, 4 == 4.0."""
    text = " ".join(str(answer).strip().lower().split()).rstrip(".").strip()
    number = text.replace(",", "")
    try:
        value = float(number)
    except ValueError:
        return text
    return repr(value) if math.isfinite(value) else text


def _check_exact_match(params: dict[str, Any]) -> None:
    pattern = params.get("answer_regex")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(
                f"score.params.answer_regex: invalid regex {pattern!r} ({error})"
            ) from None


@register_rule("exact_match", check=_check_exact_match)
def exact_match(
    prompt_messages: list[dict[str, str]], response: str, params: dict[str, Any]
) -> float:
    """1.0 if the response's final answer equals the prompt metadata's reference answer."""
    key = params.get("answer_key", "answer")
    metadata = params.get(PROMPT_METADATA) or {}
    if metadata.get(key) is None:
        raise RuleRowError("missing_reference", f"prompt metadata has no {key!r}")
    answer = extract_answer(response, pattern=params.get("answer_regex"))
    if answer is None:
        return 0.0
    return 1.0 if normalize_answer(answer) == normalize_answer(metadata[key]) else 0.0


# --- regex --------------------------------------------------------------------------------------


def _regex_flags(params: dict[str, Any]) -> int:
    return re.IGNORECASE if params.get("ignore_case") else 0


def _check_regex(params: dict[str, Any]) -> None:
    pattern = params.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError("score.params.pattern: rule 'regex' needs a non-empty pattern string")
    try:
        re.compile(pattern, _regex_flags(params))
    except re.error as error:
        raise ConfigError(f"score.params.pattern: invalid regex {pattern!r} ({error})") from None


@register_rule("regex", check=_check_regex)
def regex(prompt_messages: list[dict[str, str]], response: str, params: dict[str, Any]) -> float:
    """1.0 if `pattern` matches anywhere in the response; with `count: true`, the match count."""
    compiled = re.compile(params["pattern"], _regex_flags(params))
    if params.get("count"):
        return float(sum(1 for _ in compiled.finditer(response)))
    return 1.0 if compiled.search(response) else 0.0


# --- length_target ------------------------------------------------------------------------------


def _check_length_target(params: dict[str, Any]) -> None:
    target = params.get("target")
    if isinstance(target, bool) or not isinstance(target, int | float) or not target > 0:
        raise ConfigError(
            f"score.params.target: rule 'length_target' needs a number > 0 (got {target!r})"
        )


@register_rule("length_target", check=_check_length_target)
def length_target(
    prompt_messages: list[dict[str, str]], response: str, params: dict[str, Any]
) -> float:
    """−|n_words − target| / target: 0 at the target length, −1 for an empty response."""
    target = float(params["target"])
    return -abs(len(response.split()) - target) / target


# --- the scorer ---------------------------------------------------------------------------------


@dataclass
class RuleScorer:
    """Applies one rule to each request; `n_tokens` is the generator's count (rules see text)."""

    rule: RuleFn
    params: dict[str, Any]

    def __call__(self, requests: Sequence[ScoreRequest]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for request in requests:
            params = {**self.params, PROMPT_METADATA: request.metadata}
            try:
                value = self.rule(request.messages, request.response, params)
            except RuleRowError as error:
                outcomes.append(Rejected(request.response_id, error.reason, error.detail))
                continue
            outcomes.append(Scored(float(value), request.n_tokens or 0))
        return outcomes

    def close(self) -> None:
        """Nothing to free."""
