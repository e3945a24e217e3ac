"""The row shapes a prompt arrives in, turned into chat messages that end with a user turn.

| shape                         | config                        | example row                                      |
|-------------------------------|-------------------------------|--------------------------------------------------|
| chat messages                 | `messages_field` (messages)   | `{"messages": [{"role": "user", ...}, ...]}`     |
| Anthropic HH transcript       | `transcript_field` (e.g. chosen) | `{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello"}` |
| several fields, one turn      | `prompt_fields`               | `{"instruction": "Sum", "input": "1 2"}` (Alpaca)  |
| one string, or TRL messages   | `prompt_field` (prompt)       | `{"prompt": "hi"}`, `{"prompt": [{"role": ...}]}`  |

The first shape the config names and the row has wins, in that order. A prompt must end with a
user turn: rows in the shape of ultrafeedback_binarized, whose `messages` are the whole chosen
conversation, end with the answer; their trailing assistant turns are stripped (and counted) or
the row is quarantined, as `trailing_assistant` says. Every reason returned here is a quarantine
reason of the prompts stage.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.ids import normalize_messages

ROLES = {"system", "user", "assistant", "tool"}
HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}

Messages = list[dict[str, str]]


def is_messages(value: Any) -> bool:
    """A non-empty list of {role, content} with a known role and text content."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ROLES
            for m in value
        )
    )


def hh_messages(transcript: str) -> Messages | None:
    """The turns of an Anthropic HH transcript (`\\n\\nHuman: …\\n\\nAssistant: …`), or None when
    the text is not one (it must start with a Human turn)."""
    parts = HH_TURN.split(transcript)
    if len(parts) < 3 or parts[0].strip() or parts[1] != "Human":
        return None
    speakers, texts = parts[1::2], parts[2::2]
    return [{"role": HH_ROLES[s], "content": t} for s, t in zip(speakers, texts, strict=True)]


def _parsed_messages(value: Any) -> Messages | str:
    if isinstance(value, str):  # a JSON string of messages (CSV and some exports)
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return "bad_messages"
    return value if is_messages(value) else "bad_messages"


def _joined_fields(row: dict[str, Any], fields: list[str]) -> Messages | str:
    if not any(row.get(f) is not None for f in fields):
        return "missing_field"
    if not all(isinstance(row.get(f), str | None) for f in fields):
        return "bad_messages"
    text = "\n\n".join(row[f].strip() for f in fields if row.get(f) and row[f].strip())
    return [{"role": "user", "content": text}]


def raw_messages(row: dict[str, Any], config: PromptsConfig) -> Messages | str:
    """The row's messages as given (not yet normalized), or a quarantine reason."""
    if row.get(config.messages_field) is not None:
        return _parsed_messages(row[config.messages_field])
    if config.transcript_field and row.get(config.transcript_field) is not None:
        value = row[config.transcript_field]
        parsed = hh_messages(value) if isinstance(value, str) else None
        return parsed if parsed is not None else "bad_transcript"
    if config.prompt_fields:
        return _joined_fields(row, config.prompt_fields)
    value = row.get(config.prompt_field)
    if value is None:
        return "missing_field"
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return _parsed_messages(value)  # a TRL conversational export: the prompt's messages


def finish_prompt(messages: Messages, *, trailing: str) -> tuple[Messages, int] | str:
    """Normalized messages that end with a user turn, with the assistant turns stripped from the
    end; or a quarantine reason (the rule the prompts stage and `prefsmith import` share)."""
    messages = normalize_messages(messages)
    if not any(m["content"] for m in messages if m["role"] == "user"):
        return "empty_prompt"
    return end_with_user(messages, trailing=trailing)


def end_with_user(messages: Messages, *, trailing: str) -> tuple[Messages, int] | str:
    """(messages ending with a user turn, assistant turns stripped), or a quarantine reason."""
    kept = list(messages)
    while kept and kept[-1]["role"] == "assistant":
        kept.pop()
    stripped = len(messages) - len(kept)
    if stripped and trailing == "quarantine":
        return "ends_with_assistant"
    if not kept or kept[-1]["role"] != "user":
        return "no_final_user_turn"
    return kept, stripped


REASON_DETAIL = {
    "missing_field": "no field the config names for the prompt",
    "bad_messages": "messages must be a non-empty list of {role, content} with a known role",
    "bad_transcript": "not an HH transcript: it must start with '\\n\\nHuman: '",
    "empty_prompt": "the prompt is empty or whitespace",
    "ends_with_assistant": "the messages end with an assistant turn (trailing_assistant: quarantine)",
    "no_final_user_turn": "no user turn is left at the end of the messages to answer",
}
