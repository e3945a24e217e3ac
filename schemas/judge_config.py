"""The LLM-as-judge scorer's settings (`score: {kind: llm_judge, model: FOLDER, judge: ...}`):
a judge model served behind OpenAI-compatible servers (a `vllm serve` on 127.0.0.1), asked with
a prompt template, its reply parsed by a regular expression (prefsmith.scoring.llm_judge).

`model` (of the score section) is the judge's local folder: its tokenizer and chat template
render the request, exactly as the generate stage renders prompts for a served policy.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SerializationInfo, field_serializer, model_validator

from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.secrets import redact_servers

POINTWISE_TEMPLATE = (
    "Rate how well the reply answers the request, from 1 (useless) to 10 (perfect).\n\n"
    "Request:\n{{ prompt }}\n\nReply:\n{{ response }}\n\nAnswer with the number only."
)
PAIRWISE_TEMPLATE = (
    "Which reply answers the request better?\n\nRequest:\n{{ prompt }}\n\n"
    "Reply A:\n{{ first }}\n\nReply B:\n{{ second }}\n\nAnswer with A or B only."
)
PATTERNS = {"pointwise": r"\b(10|[1-9])\b", "pairwise": r"\b([AB])\b"}


class JudgeConfig(StrictModel):
    mode: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description="pointwise: a rubric score per response; pairwise: each response against "
        "its prompt's first sample, asked in both orders (position bias cancels and is measured)",
    )
    servers: list[str] = Field(description="base URLs like http://127.0.0.1:8000/v1")
    served_model_name: str | None = Field(None, description="model name to request")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="variable holding the key, read per request"
    )
    request_timeout_s: float = Field(120.0, gt=0)
    template: str | None = Field(
        None,
        description="Jinja2 (sandboxed): pointwise {{ prompt }} {{ response }}; pairwise "
        "{{ prompt }} {{ first }} {{ second }}; default: a short rubric per mode",
    )
    pattern: str | None = Field(
        None,
        description="regex with one group: pointwise a number, pairwise one of `choices`; default "
        + ", ".join(f"{mode} {p}" for mode, p in PATTERNS.items()),
    )
    choices: tuple[str, str] = Field(
        ("A", "B"),
        description="pairwise: what the pattern's group reads for the first, second reply",
    )
    max_new_tokens: int = Field(16, ge=1, description="tokens the judge may answer with")
    max_model_len: int | None = Field(
        None, ge=8, description="the judge server's context; default: the judge model's"
    )
    min_score: float | None = Field(
        None, description="pointwise: a parsed score below is quarantined"
    )
    max_score: float | None = Field(
        None, description="pointwise: a parsed score above is quarantined"
    )

    @field_serializer("servers")
    def _servers_without_credentials(self, servers: list[str], info: SerializationInfo):
        return redact_servers(servers, info)

    @model_validator(mode="after")
    def _pattern_has_one_group(self) -> JudgeConfig:
        if not self.servers:
            raise ValueError(
                "judge.servers: name at least one server, e.g. http://127.0.0.1:8000/v1"
            )
        try:
            groups = re.compile(self.regex()).groups
        except re.error as error:
            raise ValueError(f"judge.pattern is not a regular expression: {error}") from None
        if groups != 1:
            raise ValueError(f"judge.pattern needs exactly one group (it has {groups})")
        return self

    def regex(self) -> str:
        return self.pattern or PATTERNS[self.mode]

    def prompt_template(self) -> str:
        return self.template or (
            POINTWISE_TEMPLATE if self.mode == "pointwise" else PAIRWISE_TEMPLATE
        )
