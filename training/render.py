"""Token ids of (messages, response) under a model's own chat template: shared by the reference
pass and the trainer, so the reference log-probs and the policy's are over the same tokens.

- prompt ids: the template of `messages` with `add_generation_prompt=True`, tokenized without
  special tokens (the template writes its own BOS; a tokenizer whose post-processor also adds one
  would give a double BOS, which is collapsed).
- completion ids: the ids of the whole conversation (`messages` + the assistant `response`) after
  the prompt prefix, up to and including the first EOS the template writes after the response;
  what a template adds after that EOS (e.g. a newline) is not trained. A template that writes
  no EOS gets one appended: the model must learn to stop.
- truncation, only if prompt + longest completion > max_length: the prompt is cut from the LEFT
  to max_prompt_length (its first token, usually BOS, is kept), then each completion from the
  right to what is left. Chosen and rejected keep the same prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from prefsmith.schemas.errors import StageError
from prefsmith.schemas.quarantine import Rejected


@dataclass(frozen=True)
class RenderedPair:
    """One pair as token ids: a shared prompt and two completions (EOS included)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def template_hash(tokenizer) -> str:
    """sha256 of the chat template and special tokens: part of the reference cache key."""
    template = tokenizer.chat_template or ""
    if isinstance(template, dict):
        template = repr(sorted(template.items()))
    specials = f"{tokenizer.bos_token_id}|{tokenizer.eos_token_id}|{tokenizer.pad_token_id}"
    return hashlib.sha256(f"{template}\0{specials}".encode()).hexdigest()[:16]


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return [row[1:] if bos is not None and row[:2] == [bos, bos] else row for row in ids]


def _chat_text(tokenizer, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=generation_prompt
    )


def completion_after(
    prompt_ids: list[int], full_ids: list[int], *, eos_id: int, template: str
) -> list[int]:
    """The completion part of `full_ids`: after the prompt prefix, up to and including EOS."""
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise StageError(
            f"chat template {template!r}: the rendered prompt (add_generation_prompt=True) is not "
            "a token prefix of the rendered conversation; use a template that renders the prompt "
            "the same way in both cases"
        )
    completion = full_ids[len(prompt_ids) :]
    if eos_id in completion:
        return completion[: completion.index(eos_id) + 1]
    return [*completion, eos_id]


def truncate(
    prompt: list[int], completions: Sequence[list[int]], *, max_length: int, max_prompt_length: int
) -> tuple[list[int], list[list[int]]] | str:
    """Cut a prompt and its completions to `max_length`; a reason string if it cannot be done.

    The prompt is cut from the left (first token kept) to `max_prompt_length`, only if the
    longest completion does not fit beside it; then each completion is cut from the right.
    """
    longest = max(len(c) for c in completions)
    if len(prompt) + longest > max_length and len(prompt) > max_prompt_length:
        keep = max_prompt_length - 1
        prompt = [prompt[0], *prompt[len(prompt) - keep :]] if keep else prompt[:1]
    room = max_length - len(prompt)
    if room < 1:
        return "prompt_too_long"
    completions = [c[:room] for c in completions]
    if any(len(c) == 0 for c in completions):
        return "empty_completion"
    return prompt, completions


def render_pairs(
    rows: Sequence[Mapping[str, Any]], *, tokenizer, max_length: int, max_prompt_length: int
) -> tuple[list[RenderedPair | None], list[Rejected]]:
    """Render pair rows (`pair_id, messages, chosen, rejected`) to ids, in the rows' order.

    Returns one `RenderedPair` per row (None where the row was rejected) and the rejections,
    with reasons `template_error` (the template refused the messages), `prompt_too_long` or
    `empty_completion`. Raises StageError when the template's prompt is not a prefix.
    """
    texts, rejected, ok = [], [], []
    for row in rows:
        try:
            messages = list(row["messages"])
            prompt = _chat_text(tokenizer, messages, generation_prompt=True)
            chosen, rejected_text = (
                _chat_text(
                    tokenizer,
                    [*messages, {"role": "assistant", "content": row[side]}],
                    generation_prompt=False,
                )
                for side in ("chosen", "rejected")
            )
        # a template may refuse a conversation (e.g. roles must alternate): quarantine that row
        except (TemplateError, ValueError, TypeError, KeyError) as error:
            rejected.append(Rejected(str(row["pair_id"]), "template_error", str(error)[:300]))
            ok.append(False)
            continue
        texts.extend([prompt, chosen, rejected_text])
        ok.append(True)
    ids = _tokenize(tokenizer, texts) if texts else []
    return _assemble(
        rows,
        ok,
        ids,
        rejected,
        tokenizer=tokenizer,
        max_length=max_length,
        max_prompt_length=max_prompt_length,
    )


def _assemble(rows, ok, ids, rejected, *, tokenizer, max_length, max_prompt_length):
    name = getattr(tokenizer, "name_or_path", "") or "<unnamed>"
    out: list[RenderedPair | None] = []
    cursor = 0
    for row, good in zip(rows, ok, strict=True):
        if not good:
            out.append(None)
            continue
        prompt, full_chosen, full_rejected = ids[cursor : cursor + 3]
        cursor += 3
        completions = [
            completion_after(prompt, full, eos_id=tokenizer.eos_token_id, template=name)
            for full in (full_chosen, full_rejected)
        ]
        cut = truncate(
            prompt, completions, max_length=max_length, max_prompt_length=max_prompt_length
        )
        if isinstance(cut, str):
            detail = f"prompt {len(prompt)} tokens, completions {[len(c) for c in completions]}"
            rejected.append(Rejected(str(row["pair_id"]), cut, detail))
            out.append(None)
            continue
        out.append(RenderedPair(cut[0], cut[1][0], cut[1][1]))
    return out, rejected
