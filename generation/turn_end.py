"""Where an assistant turn ends: one rule for generation, the reference pass, training and KL.

A completion is exactly what the chat template writes for the assistant turn, through the
end-of-turn token that generation stops on (DESIGN.md, "Tables"). The tokens that end a turn are
the model folder's `generation_config.json` `eos_token_id` (an int or a list), then the
tokenizer's `eos_token_id`. The list matters: Gemma-2's template ends a turn with
`<end_of_turn>` while its tokenizer's EOS is `<eos>`; Phi-3's ends with `<|end|>` while its EOS
is `<|endoftext|>`; Llama-3-Instruct lists both `<|end_of_text|>` and `<|eot_id|>`. Cutting at
the tokenizer's EOS alone would train tokens the model never stops on (`<end_of_turn>`, `\\n`,
`<eos>`) while vLLM, which reads the same file, stops at the first one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import StageError

GENERATION_CONFIG = "generation_config.json"


def end_of_turn_ids(model_dir: str | Path | None, tokenizer: Any) -> tuple[int, ...]:
    """The token ids that end a completion, generation config's first, then the tokenizer's EOS.

    `model_dir` may be None or lack `generation_config.json` (a bare tokenizer folder): then the
    tokenizer's EOS alone. Raises `StageError` when the file is unreadable or no id is declared.
    """
    ids = [*_configured_ids(model_dir)]
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and eos not in ids:
        ids.append(int(eos))
    if not ids:
        raise StageError(
            f"{model_dir}: neither {GENERATION_CONFIG} nor the tokenizer declares an EOS token; "
            "set eos_token_id in one of them, or generation would never stop"
        )
    return tuple(ids)


def _configured_ids(model_dir: str | Path | None) -> list[int]:
    if model_dir is None or not (path := Path(model_dir) / GENERATION_CONFIG).is_file():
        return []
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError) as error:
        raise StageError(
            f"{path}: not a readable generation config ({error}); fix or remove it"
        ) from None
    values = value if isinstance(value, list) else [value]
    if not all(v is None or (isinstance(v, int) and v >= 0) for v in values):
        raise StageError(f"{path}: eos_token_id must be a token id or a list of ids, got {value!r}")
    return [v for v in values if v is not None]


def cut_at_turn_end(ids: Sequence[int], end_ids: Sequence[int], *, append: int) -> list[int]:
    """`ids` through the first end-of-turn token; `append` is added where the template wrote none.

    What a template writes after the end of turn (Gemma's and Qwen's newline, Phi-3's trailing
    `<|endoftext|>`) is not part of the completion: the model never generates it.
    """
    ends = set(end_ids)
    for position, token in enumerate(ids):
        if token in ends:
            return list(ids[: position + 1])
    return [*ids, append]


def closing_token(end_ids: Sequence[int], tokenizer: Any) -> int:
    """The id appended to a completion whose template writes no end of turn: the tokenizer's EOS
    when it has one (what it was trained to emit), else the generation config's first."""
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos) if eos is not None else int(end_ids[0])
