"""The LLM-as-judge scorer (`kind: llm_judge`): a served judge model answers a templated
question about each response; a regular expression reads the answer (settings:
prefsmith.schemas.judge_config).

- **pointwise**: the template gets `prompt` and `response`; the parsed number is the score.
- **pairwise**: each response is compared with its prompt's first sample (the anchor) twice, once
  as reply A and once as reply B, so a judge that favours a position cannot decide alone:
  score = mean over both orders of [the response was preferred] (0, 0.5 or 1; the anchor itself
  scores 0.5 without a call). Objectives `order/ab` and `order/ba` keep each order's verdict, and
  `first_preferred` the share of the two verdicts that picked the first reply: its mean over a
  table is the judge's position bias (0.5: none), which the score stage's manifest records.

A reply the pattern does not match (or a pointwise number outside `min_score`/`max_score`) is
quarantined as `unparseable_judgement` with the judge's raw text; a question that does not fit
the judge's context (with its answer) as `judge_prompt_too_long`, without a request. Requests go through the
OpenAI-compatible backend of the generate stage (token-id prompts rendered with the judge's own
chat template, greedy, retried across servers), inside the score stage's shards: sharded,
resumable and cached like any scorer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from jinja2.sandbox import SandboxedEnvironment

from prefsmith.schemas.data_configs import GenerateConfig, SamplingConfig, ScoreConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.quarantine import Rejected
from prefsmith.scoring.batching import Outcome, Scored, ScoreRequest

UNPARSEABLE = "unparseable_judgement"
TOO_LONG = "judge_prompt_too_long"


def template(config: ScoreConfig):
    """The judge's compiled template (sandboxed: a template from a config runs no code)."""
    try:
        return SandboxedEnvironment().from_string(config.judge.prompt_template())
    except Exception as error:  # jinja2.TemplateSyntaxError and friends
        raise ConfigError(f"score.judge.template: {error}") from None


def check_judge(config: ScoreConfig) -> None:
    template(config)


def prompt_text(messages: Sequence[dict[str, str]]) -> str:
    """The request as the template shows it: the last user turn (earlier turns above it)."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


class JudgeScorer:
    """Scores requests by asking the served judge (module docstring)."""

    def __init__(self, config: ScoreConfig, *, transport: Any = None) -> None:
        from transformers import AutoTokenizer

        from prefsmith.generation.backends.openai_server import OpenAIServerBackend

        judge = config.judge
        self.mode, self.template, self.choices = judge.mode, template(config), judge.choices
        self.pattern = re.compile(judge.regex())
        self.bounds = (judge.min_score, judge.max_score)
        self.tokenizer = AutoTokenizer.from_pretrained(
            config.model, trust_remote_code=config.trust_remote_code
        )
        self.sampling = SamplingConfig(n=1, temperature=0.0, max_new_tokens=judge.max_new_tokens)
        served = GenerateConfig(
            model=str(config.model),
            backend="openai",
            servers=judge.servers,
            served_model_name=judge.served_model_name,
            api_key_env=judge.api_key_env,
            request_timeout_s=judge.request_timeout_s,
            sampling=self.sampling,
        )
        self.backend = OpenAIServerBackend(served, tokenizer=self.tokenizer, transport=transport)
        self.max_context = judge.max_model_len or model_context(config)

    def ask(self, questions: list[str]) -> list[str | None]:
        """The judge's reply to each question (one chat turn, rendered with the judge's own
        template), in order; None for a question too long for the judge's context."""
        from prefsmith.generation.render import render_prompt_ids

        ids = [
            render_prompt_ids([{"role": "user", "content": q}], tokenizer=self.tokenizer)
            for q in questions
        ]
        fits = [len(i) + self.sampling.max_new_tokens <= self.max_context for i in ids]
        sent = [i for i, ok in zip(ids, fits, strict=True) if ok]
        replies = iter(
            self.backend.generate(sent, sampling=self.sampling, seeds=[0] * len(sent))
            if sent
            else []
        )
        return [next(replies)[0].text if ok else None for ok in fits]

    def __call__(self, requests: list[ScoreRequest]) -> list[Outcome]:
        if self.mode == "pointwise":
            return self.pointwise(requests)
        return self.pairwise(requests)

    def pointwise(self, requests: list[ScoreRequest]) -> list[Outcome]:
        questions = [
            self.template.render(prompt=prompt_text(r.messages), response=r.response)
            for r in requests
        ]
        replies = self.ask(questions)
        return [self.rated(r, reply) for r, reply in zip(requests, replies, strict=True)]

    def rated(self, request: ScoreRequest, reply: str | None) -> Outcome:
        if reply is None:
            return too_long(request)
        match = self.pattern.search(reply)
        try:
            value = float(match.group(1)) if match else None
        except ValueError:
            value = None
        low, high = self.bounds
        if (
            value is None
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            detail = f"judge reply does not match {self.pattern.pattern!r} within the bounds"
            return Rejected(request.response_id, UNPARSEABLE, detail, reply)
        return Scored(value, n_tokens=0)

    def pairwise(self, requests: list[ScoreRequest]) -> list[Outcome]:
        judged = [r for r in requests if r.response_id != r.anchor_id]
        questions = []
        for r in judged:
            prompt = prompt_text(r.messages)
            questions.append(self.template.render(prompt=prompt, first=r.response, second=r.anchor))
            questions.append(self.template.render(prompt=prompt, first=r.anchor, second=r.response))
        replies = iter(self.ask(questions))
        verdicts = {r.response_id: (next(replies), next(replies)) for r in judged}
        return [
            Scored(0.5, n_tokens=0)
            if r.response_id not in verdicts
            else self.compared(r, *verdicts[r.response_id])
            for r in requests
        ]

    def verdict(self, reply: str) -> str | None:
        """ "first" or "second" (the reply's preferred position), or None if unreadable."""
        match = self.pattern.search(reply)
        answer = match.group(1).strip() if match else None
        return {self.choices[0]: "first", self.choices[1]: "second"}.get(answer)

    def compared(
        self, request: ScoreRequest, as_first: str | None, as_second: str | None
    ) -> Outcome:
        if as_first is None or as_second is None:
            return too_long(request)
        ab, ba = self.verdict(as_first), self.verdict(as_second)
        if ab is None or ba is None:
            raw = f"response as A: {as_first!r}\nresponse as B: {as_second!r}"
            detail = f"judge reply does not match {self.pattern.pattern!r} in both orders"
            return Rejected(request.response_id, UNPARSEABLE, detail, raw)
        won_ab, won_ba = float(ab == "first"), float(ba == "second")
        first = ((ab == "first") + (ba == "first")) / 2
        objectives = (("order/ab", won_ab), ("order/ba", won_ba), ("first_preferred", first))
        return Scored((won_ab + won_ba) / 2, n_tokens=0, objectives=objectives)

    def close(self) -> None:
        self.backend.close()


def too_long(request: ScoreRequest) -> Rejected:
    detail = "the judge's question and its answer do not fit the judge's context"
    return Rejected(request.response_id, TOO_LONG, detail, request.response)


def model_context(config: ScoreConfig) -> int:
    """The judge model's context length (`max_position_embeddings` of its folder)."""
    from transformers import AutoConfig

    context = getattr(
        AutoConfig.from_pretrained(config.model, trust_remote_code=config.trust_remote_code),
        "max_position_embeddings",
        None,
    )
    if not context:
        raise ConfigError(
            f"{config.model}: cannot tell the judge's context; set judge.max_model_len"
        )
    return int(context)


def judge_facts(paths: Sequence[Path], *, quarantined: int) -> dict[str, Any]:
    """The manifest's `judge` facts over the written score shards: pairwise verdicts, the rate at
    which the first position won (position bias; 0.5 = none), how often the orders disagreed."""
    firsts, disagree = [], []
    for path in paths:
        for objectives in pq.read_table(path, columns=["objectives"]).column(0).to_pylist():
            values = {o["name"]: o["value"] for o in objectives or []}
            if "first_preferred" in values:
                firsts.append(values["first_preferred"])
                disagree.append(values["order/ab"] != values["order/ba"])
    judged = len(firsts)
    return {
        "pairwise_judged": judged,
        "first_position_rate": sum(firsts) / judged if judged else None,
        "orders_disagree_rate": sum(disagree) / judged if judged else None,
        "unparseable": quarantined,
    }
