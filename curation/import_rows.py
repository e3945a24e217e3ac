"""One row of an existing preference dataset → a prompt with its pair, or with its scored responses.

Pure functions of a row and the import config (prefsmith.schemas.import_config); each returns the
parsed value or a quarantine reason. Prompts follow the prompts stage's rules
(prefsmith.generation.prompt_shapes): they end with a user turn, trailing assistant turns of a
conversation are the answer, not the prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prefsmith.generation.prompt_shapes import REASON_DETAIL as PROMPT_REASONS
from prefsmith.generation.prompt_shapes import Messages, finish_prompt, hh_messages, is_messages
from prefsmith.schemas.ids import normalize_messages
from prefsmith.schemas.import_config import ImportConfig
from prefsmith.schemas.weights import INVALID_WEIGHT, weight_problem


@dataclass(frozen=True)
class ImportedPair:
    messages: Messages
    chosen: str
    rejected: str
    score_chosen: float | None
    score_rejected: float | None
    weight: float | None = None  # from columns.weight; None when no column is mapped


def answer_text(value: Any) -> str | None:
    """A completion given as text, or as messages whose last turn is the assistant's answer."""
    if isinstance(value, str):
        return value
    if is_messages(value) and value[-1]["role"] == "assistant":
        return value[-1]["content"]
    return None


def prompt_of(row: dict[str, Any], config: ImportConfig) -> Messages | str:
    """The prompt's messages: the prompt column (text or messages), else the chosen
    conversation without its answer (TRL's implicit-prompt format)."""
    value = row.get(config.columns.prompt)
    if value is None and is_messages(row.get(config.columns.chosen)):
        value = row[config.columns.chosen][:-1]
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not is_messages(value):
        return "missing_field" if value is None else "bad_messages"
    ended = finish_prompt(value, trailing="strip")
    return ended if isinstance(ended, str) else ended[0]


def score_value(row: dict[str, Any], column: str) -> float | None | str:
    """The score in `column` (None when the data has no such column), or a reason."""
    return finite_score(row[column]) if column in row else None


def finite_score(value: Any) -> float | str:
    """A score as a float, or the reason it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "non_finite_score"
    return float(value)


def row_weight(row: dict[str, Any], config: ImportConfig) -> float | None | str:
    """The pair's weight from the mapped `columns.weight` (None when none is mapped), or the
    quarantine reason when the value is missing, not a number, not finite or negative."""
    column = config.columns.weight
    if column is None:
        return None
    value = row.get(column)
    return INVALID_WEIGHT if weight_problem(value) else float(value)


def checked_pair(
    messages: Messages, chosen, rejected, scores, *, weight: float | None | str = None
) -> ImportedPair | str:
    """An ImportedPair once the answers, scores and weight pass the checks every shape shares."""
    if chosen is None or rejected is None:
        return "bad_completion"
    if not chosen.strip() or not rejected.strip():
        return "empty_completion"
    if chosen.strip() == rejected.strip():
        return "identical_pair"
    for value in scores:
        if isinstance(value, str):
            return value
    if (scores[0] is None) != (scores[1] is None):
        return "missing_score"
    if isinstance(weight, str):
        return weight
    return ImportedPair(messages, chosen, rejected, *scores, weight=weight)


def pair_from_row(row: dict[str, Any], config: ImportConfig) -> ImportedPair | str:
    """Shape `pairs`: ultrafeedback_binarized, TRL standard and conversational rows."""
    cols = config.columns
    if cols.chosen not in row or cols.rejected not in row:
        return "missing_field"
    messages = prompt_of(row, config)
    if isinstance(messages, str):
        return messages
    scores = (score_value(row, cols.score_chosen), score_value(row, cols.score_rejected))
    chosen, rejected = answer_text(row[cols.chosen]), answer_text(row[cols.rejected])
    return checked_pair(messages, chosen, rejected, scores, weight=row_weight(row, config))


def hh_pair(row: dict[str, Any], config: ImportConfig) -> ImportedPair | str:
    """Shape `hh`: two transcripts sharing every turn but the last assistant answer."""
    sides = [row.get(config.columns.chosen), row.get(config.columns.rejected)]
    if any(side is None for side in sides):
        return "missing_field"
    turns = [hh_messages(side) if isinstance(side, str) else None for side in sides]
    if any(t is None or t[-1]["role"] != "assistant" for t in turns):
        return "bad_transcript"
    prompts = [normalize_messages(t[:-1]) for t in turns]
    if prompts[0] != prompts[1]:
        return "prompts_differ"
    if not prompts[0] or prompts[0][-1]["role"] != "user":
        return "no_final_user_turn"
    answers = turns[0][-1]["content"], turns[1][-1]["content"]
    return checked_pair(prompts[0], *answers, (None, None), weight=row_weight(row, config))


def scored_responses(
    row: dict[str, Any], config: ImportConfig
) -> tuple[Messages, list[tuple[str, float]]] | str:
    """Shape `responses`: the prompt and its (response, score) list, in the row's order."""
    messages = prompt_of(row, config)
    if isinstance(messages, str):
        return messages
    texts, scores = row.get(config.columns.responses), row.get(config.columns.scores)
    if not isinstance(texts, list) or not isinstance(scores, list):
        return "missing_field"
    if len(texts) != len(scores) or not texts:
        return "responses_scores_mismatch"
    if not all(isinstance(t, str) for t in texts):
        return "bad_completion"
    values = [finite_score(s) for s in scores]
    if any(isinstance(v, str) for v in values):
        return "non_finite_score"
    return messages, list(zip(texts, values, strict=True))


REASON_DETAIL = {
    **PROMPT_REASONS,  # missing_field, bad_messages, empty_prompt, no_final_user_turn, ...
    "bad_completion": "an answer is neither text nor messages ending with the assistant's turn",
    "empty_completion": "an answer is empty or whitespace",
    "identical_pair": "chosen and rejected are the same text: the pair teaches nothing",
    "non_finite_score": "a score is not a finite number",
    "missing_score": "one side has a score and the other has none",
    "bad_transcript": "not an HH transcript ending with an Assistant turn",
    "prompts_differ": "the chosen and rejected transcripts do not share their prompt turns",
    "responses_scores_mismatch": "the response and score lists differ in length or are empty",
    "duplicate_pair": "the same prompt, chosen and rejected again: kept once",
    INVALID_WEIGHT: "the weight is missing, not a number, not finite or negative (must be >= 0)",
    "duplicate_prompt": "the prompt's responses came in an earlier row: that row is kept",
}
