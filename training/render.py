"""Token ids of (messages, response) under a model's own chat template: shared by the reference
pass and the trainer, so the reference log-probs and the policy's are over the same tokens.

- prompt ids: the template of `messages` with `add_generation_prompt=True`, tokenized without
  special tokens (the template writes its own BOS; a tokenizer whose post-processor also adds one
  would give a double BOS, which is collapsed).
- completion ids: the ids of the whole conversation (`messages` + the assistant `response`) after
  the prompt's, up to and including the first end-of-turn token (`generation.turn_end`: the
  generation config's EOS list, then the tokenizer's), the token generation stops on; what a
  template writes after it (a newline, a trailing EOS) is never generated, so never trained. A
  template that writes no end of turn gets the tokenizer's EOS appended: the model must stop.
- a row whose prompt, rendered alone, is not a text prefix of the rendered conversation (a
  template that is not prefix-stable) is quarantined as `template_not_prefix_stable`; generation
  refuses the same prompts (`generation.render`), so what was sampled is what is trained.
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

from prefsmith.generation.turn_end import closing_token, cut_at_turn_end
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
    rows: Sequence[Mapping[str, Any]],
    *,
    tokenizer,
    end_ids: Sequence[int],
    max_length: int,
    max_prompt_length: int,
) -> tuple[list[RenderedPair | None], list[Rejected]]:
    """Render pair rows (`pair_id, messages, chosen, rejected`) to ids, in the rows' order.

    `end_ids` are the end-of-turn ids (`generation.turn_end.end_of_turn_ids`). Returns one
    `RenderedPair` per row (None where the row was rejected) and the rejections, with reasons
    `template_error` (the template refused the messages), `template_not_prefix_stable`,
    `prompt_too_long` or `empty_completion`. No row stops the stage.
    """
    texts, rejected, ok = [], [], []
    for row in rows:
        rendered = _row_texts(row, tokenizer)
        if isinstance(rendered, Rejected):
            rejected.append(rendered)
            ok.append(False)
            continue
        texts.extend(rendered)
        ok.append(True)
    ids = _tokenize(tokenizer, texts) if texts else []
    out: list[RenderedPair | None] = []
    cursor, closing = 0, closing_token(end_ids, tokenizer)
    for row, good in zip(rows, ok, strict=True):
        if not good:
            out.append(None)
            continue
        prompt = ids[cursor]
        completions = [
            cut_at_turn_end(
                _completion(prompt, texts[cursor], ids[k], texts[k], tokenizer=tokenizer),
                end_ids,
                append=closing,
            )
            for k in (cursor + 1, cursor + 2)
        ]
        cursor += 3
        out.append(_fit(row, prompt, completions, rejected, max_length, max_prompt_length))
    return out, rejected


def _row_texts(row: Mapping[str, Any], tokenizer) -> tuple[str, str, str] | Rejected:
    """(prompt, prompt + chosen, prompt + rejected) as the template renders them, or why not."""
    pair_id = str(row["pair_id"])
    try:
        messages = list(row["messages"])
        prompt = _chat_text(tokenizer, messages, generation_prompt=True)
        chosen, rejected = (
            _chat_text(
                tokenizer,
                [*messages, {"role": "assistant", "content": row[side]}],
                generation_prompt=False,
            )
            for side in ("chosen", "rejected")
        )
    # a template may refuse a conversation (e.g. roles must alternate): quarantine that row
    except (TemplateError, ValueError, TypeError, KeyError) as error:
        return Rejected(pair_id, "template_error", str(error)[:300])
    if not (chosen.startswith(prompt) and rejected.startswith(prompt)):
        return Rejected(pair_id, "template_not_prefix_stable", NOT_PREFIX_STABLE)
    return prompt, chosen, rejected


NOT_PREFIX_STABLE = (
    "the template renders this prompt differently once an assistant turn follows (e.g. "
    "Mistral v0.3 drops a system message unless it precedes the last user turn), so what was "
    "sampled cannot be what is trained; fold the system text into the first user turn"
)


def _completion(prompt_ids, prompt_text, full_ids, full_text, *, tokenizer) -> list[int]:
    """The completion ids after the prompt, the prompt's ids being exactly generation's.

    Usually the prompt's ids are a prefix of the conversation's; where tokens merge across the
    boundary they are not, and the text after the prompt is tokenized on its own instead (TRL
    would shorten the prompt there; prefsmith keeps the context the response was sampled in).
    """
    if full_ids[: len(prompt_ids)] == prompt_ids:
        return full_ids[len(prompt_ids) :]
    rest = full_text[len(prompt_text) :]
    return list(tokenizer(rest, add_special_tokens=False)["input_ids"])


def _fit(row, prompt, completions, rejected, max_length, max_prompt_length):
    cut = truncate(prompt, completions, max_length=max_length, max_prompt_length=max_prompt_length)
    if isinstance(cut, str):
        detail = f"prompt {len(prompt)} tokens, completions {[len(c) for c in completions]}"
        rejected.append(Rejected(str(row["pair_id"]), cut, detail))
        return None
    return RenderedPair(cut[0], cut[1][0], cut[1][1])
