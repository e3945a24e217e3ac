"""The Arrow schema of every table, declared once.

| table      | one row is                 | key                          |
|------------|----------------------------|------------------------------|
| prompts    | a deduplicated prompt      | `prompt_id`                  |
| responses  | one sample for a prompt    | `response_id`                |
| scores     | one scorer's score of one response | (`response_id`, `scorer`) |
| pairs      | a chosen/rejected pair     | `pair_id`                    |
| quarantine | a rejected input row       | (`stage`, `row_ref`)         |

Joins are on ids, never on row position. Text is stored raw (never a rendered template).
"""

from __future__ import annotations

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
OBJECTIVE = pa.struct([("name", pa.string()), ("value", pa.float64())])

PROMPTS = pa.schema(
    [
        (
            "prompt_id",
            pa.string(),
        ),  # stable hash of the normalized messages (prefsmith.schemas.ids)
        ("messages", MESSAGES),
        ("source", pa.string()),
        ("metadata", pa.string()),  # JSON string
    ]
)

RESPONSES = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("response_id", pa.string()),  # f"{prompt_id}-{sample_idx}"
        ("sample_idx", pa.int32()),
        ("response", pa.string()),  # raw completion text
        ("n_tokens", pa.int32()),  # completion tokens under the generator's tokenizer
        ("finish_reason", pa.string()),  # "stop" (EOS/stop string) or "length"
        ("generator", pa.string()),  # model id and revision
        ("gen_config_hash", pa.string()),
    ]
)

SCORES = pa.schema(
    [
        ("response_id", pa.string()),
        ("prompt_id", pa.string()),
        ("scorer", pa.string()),  # name + revision
        ("score", pa.float64()),
        ("objectives", pa.list_(OBJECTIVE)),  # per-objective rewards (ArmoRM's 19); empty if none
        ("n_tokens", pa.int32()),  # response tokens (= responses.n_tokens; null where unknown)
    ]
)

PAIRS = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt_id", pa.string()),
        ("messages", MESSAGES),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("chosen_response_id", pa.string()),
        ("rejected_response_id", pa.string()),
        (
            "score_chosen",
            pa.float64(),
        ),  # raw scorer scores; normalization is declared in the manifest
        ("score_rejected", pa.float64()),
        ("margin", pa.float64()),  # score_chosen - score_rejected, raw
        ("strategy", pa.string()),
        ("scorer", pa.string()),
    ]
)

# Added by the reference pass (`prefsmith reference`).
REFERENCE_COLUMNS = pa.schema(
    [
        ("ref_logp_chosen", pa.float64()),
        ("ref_logp_rejected", pa.float64()),
        ("ref_tokens_chosen", pa.int32()),
        ("ref_tokens_rejected", pa.int32()),
        ("ref_model", pa.string()),
    ]
)
PAIRS_WITH_REFERENCE = pa.schema(list(PAIRS) + list(REFERENCE_COLUMNS))

# Optional in a pairs table: the pair's share of its batch's loss (prefsmith.training.losses.
# reduce_loss). Absent means every pair weighs 1; present, every value must be finite and >= 0.
# Written by `pairs` and `import` when their config asks (a `weight:` rule or a mapped column) or
# by the user; `reference` carries it on.
WEIGHT = pa.field("weight", pa.float64())


def pairs_schema(columns, *, reference: bool) -> pa.Schema:
    """PAIRS (or PAIRS_WITH_REFERENCE), plus WEIGHT when `columns` (a file's names) has it."""
    schema = PAIRS_WITH_REFERENCE if reference else PAIRS
    return schema.append(WEIGHT) if WEIGHT.name in columns else schema


QUARANTINE = pa.schema(
    [
        ("stage", pa.string()),
        ("row_ref", pa.string()),  # id, or "file:line" for input rows that never got an id
        ("reason", pa.string()),  # a short machine-readable reason, counted in the manifest
        ("detail", pa.string()),  # a human-readable explanation
        ("raw", pa.string()),  # the offending input, truncated to 2,000 characters
    ]
)

TABLES: dict[str, pa.Schema] = {
    "prompts": PROMPTS,
    "responses": RESPONSES,
    "scores": SCORES,
    "pairs": PAIRS,
    "pairs_with_reference": PAIRS_WITH_REFERENCE,
    "quarantine": QUARANTINE,
}
