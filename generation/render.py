"""Prompt messages → the policy's own prompt token ids, exactly once.

Every model renders raw text with its *own* chat template (the policy here; the reward model and
the reference model render again with theirs). Llama-style tokenizers both start the template with
BOS and prepend BOS in their post-processor, so the one safe recipe is: render the template to a
string, then encode it with `add_special_tokens=False`. `check_single_bos` guards the result: a
double BOS silently shifts every logit and is a bug in the caller or the template, not in a row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2.exceptions import TemplateError

from prefsmith.schemas.errors import StageError
from prefsmith.schemas.quarantine import Rejected

logger = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, Any]]


def render_prompt_ids(messages: Messages, *, tokenizer: Any) -> list[int]:
    """Token ids of `messages` under the tokenizer's chat template, ending in the generation prompt.

    Raises jinja2's `TemplateError` (or `ValueError`) when the template refuses the messages, e.g.
    a template that forbids a system turn; `render_or_reject` turns that into a quarantined row.
    """
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True, tokenize=False
    )
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    check_single_bos(ids, bos_token_id=tokenizer.bos_token_id)
    return ids


def check_single_bos(ids: Sequence[int], *, bos_token_id: int | None) -> None:
    """Raise `StageError` if `ids` start with two BOS tokens (template BOS + tokenizer BOS)."""
    if bos_token_id is not None and len(ids) >= 2 and ids[0] == ids[1] == bos_token_id:
        raise StageError(
            f"prompt token ids start with a double BOS ({bos_token_id}, {bos_token_id}): the chat "
            "template already adds BOS, so encode the rendered text with add_special_tokens=False"
        )


def prompt_length(messages: Messages, *, tokenizer: Any) -> int:
    """Number of prompt tokens the policy sees for `messages` (for the context-length check)."""
    return len(render_prompt_ids(messages, tokenizer=tokenizer))


def require_chat_template(tokenizer: Any, *, model: str) -> None:
    """Refuse a tokenizer without a chat template up front (else every prompt would quarantine)."""
    if not getattr(tokenizer, "chat_template", None):
        raise StageError(
            f"{model}: the tokenizer has no chat template; prefsmith renders prompts with the "
            "policy's own template (add chat_template.jinja to the model folder)"
        )


def render_or_reject(
    messages: Messages, *, prompt_id: str, tokenizer: Any, max_context: int
) -> list[int] | Rejected:
    """The prompt's ids, or a `Rejected` for the quarantine: `template_error`,
    `template_not_prefix_stable` (see `prefix_stable`) or `prompt_too_long`.

    A prompt is too long when not even one new token fits: `len(ids) + 1 > max_context`.
    """
    try:
        ids = render_prompt_ids(messages, tokenizer=tokenizer)
        stable = prefix_stable(messages, tokenizer=tokenizer)
    except (TemplateError, ValueError, TypeError, KeyError) as error:
        return Rejected(
            prompt_id, "template_error", f"chat template failed: {error}", repr(messages)
        )
    if not stable:
        detail = "the template renders this prompt differently once an assistant turn follows"
        return Rejected(prompt_id, "template_not_prefix_stable", detail, repr(messages))
    if len(ids) + 1 > max_context:
        detail = f"{len(ids)} prompt tokens + 1 new token > max context {max_context}"
        return Rejected(prompt_id, "prompt_too_long", detail, repr(messages))
    return ids


# Any text will do: the probe only shows how the template renders the turns before a reply.
_PROBE_REPLY = {"role": "assistant", "content": "prefsmith probe reply"}


def prefix_stable(messages: Messages, *, tokenizer: Any) -> bool:
    """Whether the prompt, rendered alone, is a text prefix of the prompt followed by a reply.

    Training renders prompt + response and trains what follows the prompt, so a template that
    rewrites earlier turns once a reply follows (Mistral v0.3 keeps a system message only when
    it precedes the last user turn) would train a context the response was never sampled in.
    `training.render` refuses the same rows with the same reason.
    """
    rows = [dict(m) for m in messages]
    alone = tokenizer.apply_chat_template(rows, add_generation_prompt=True, tokenize=False)
    followed = tokenizer.apply_chat_template(
        [*rows, dict(_PROBE_REPLY)], add_generation_prompt=False, tokenize=False
    )
    return followed.startswith(alone)
