"""The pairs table → the trainer's examples: read it, check its cross-stage contracts, render
each pair with the policy's tokenizer and normalize its scores.

Contracts checked before anything is rendered (prefsmith.schemas.contracts): reference columns
when a loss needs them (prefsmith.training.guards), the reference pass's lengths equal to the
train config's (`check_reference_lengths`), and the score transform the pairs manifest declares
(`read_score_transform`, read only when a loss reads scores). Afterwards every pair's stored
reference token counts must equal the policy's rendering (`check_reference_tokens`).

A pair whose chosen text equals its rejected text (possible only in a pairs table made outside
the pairs stage, which merges identical texts) carries no preference and would train on a zero
margin: it is quarantined as `identical_pair` (here and in the reference pass). A table with a
`weight` column (prefsmith.schemas.tables.WEIGHT) has each value checked
(prefsmith.schemas.weights): a missing, non-finite or negative weight quarantines its pair as
`invalid_weight`, and weights that are all zero stop the stage.

The input must be Parquet: a CSV, a JSONL file, other bytes or a truncated file stop with one
line naming the file (prefsmith.schemas.parquet_files), never a pyarrow traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefsmith.schemas.contracts import TokenLengths
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import read_table, shard_files
from prefsmith.schemas.manifest import check_reference_lengths, read_score_transform
from prefsmith.schemas.parquet_files import parquet_schema
from prefsmith.schemas.quarantine import Rejected
from prefsmith.schemas.tables import PAIRS_WITH_REFERENCE, pairs_schema
from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.schemas.weights import INVALID_WEIGHT, check_some_weight, weight_problem

NOT_PARQUET_FIX = (
    "pass a pairs table in Parquet, as `prefsmith pairs` or `prefsmith import` write it "
    "(`prefsmith import` reads JSONL and CSV pairs)"
)


def pairs_columns(pairs: Path) -> list[str]:
    """The column names of the pairs table at `pairs` (a file or shard folder), after checking
    that each of its files is whole Parquet; stops with one line otherwise."""
    files = shard_files(pairs)
    if not files:
        raise InputError(f"pairs table not found: {pairs}")
    schemas = [parquet_schema(f, what="pairs table", fix=NOT_PARQUET_FIX) for f in files]
    return schemas[0].names


def read_pair_rows(pairs: Path, *, columns: list[str], reference: bool) -> list[dict[str, Any]]:
    """The rows of the pairs table in `pairs_schema(columns)` (its `weight` column kept); a data
    page pyarrow cannot decode stops with one line."""
    import pyarrow as pa

    try:
        table = read_table(pairs, pairs_schema(columns, reference=reference))
    except (pa.ArrowException, OSError) as error:
        reason = str(error).splitlines()[0]
        message = f"pairs table {pairs}: cannot read it ({reason}); {NOT_PARQUET_FIX}"
        raise InputError(message) from error
    return table.to_pylist()


def read_pairs(pairs: Path, *, config: TrainConfig) -> tuple[list[dict[str, Any]], bool]:
    """The pair rows, and whether they carry reference columns. Stops when a loss needs reference
    log-probs the table lacks, or when its reference pass used other lengths than `config`."""
    from prefsmith.training.guards import check_reference_columns

    columns = pairs_columns(pairs)
    if config.adapter is None:  # an adapter run takes a missing reference from its base
        check_reference_columns(columns, terms=config.terms())
    has_reference = set(PAIRS_WITH_REFERENCE.names) <= set(columns)
    if has_reference:
        check_reference_lengths(pairs, expected=TokenLengths.of(config))
    rows = read_pair_rows(pairs, columns=columns, reference=has_reference)
    check_some_weight(
        [r["weight"] for r in rows if "weight" in r and not weight_problem(r["weight"])],
        where=f"pairs table {pairs}",
    )
    return rows, has_reference


def identical_pair(row: dict[str, Any]) -> Rejected | None:
    """The quarantine record of a pair whose chosen text equals its rejected text, else None."""
    if row["chosen"] != row["rejected"]:
        return None
    detail = "chosen and rejected are the same text: no preference to learn"
    return Rejected(str(row["pair_id"]), "identical_pair", detail)


def without_identical(rows, rendered: list) -> tuple[list, list[Rejected]]:
    """`rendered` with None for the identical pairs of `rows`, and their quarantine records."""
    marks = [
        identical_pair(row) if pair is not None else None
        for row, pair in zip(rows, rendered, strict=True)
    ]
    kept = [None if mark else pair for pair, mark in zip(rendered, marks, strict=True)]
    return kept, [mark for mark in marks if mark is not None]


def row_problem(row: dict[str, Any], *, reference: bool, scores: bool) -> Rejected | None:
    """Why a rendered pair cannot be trained on (identical texts, an invalid weight, a value
    its loss reads missing), as its quarantine record, or None."""
    from prefsmith.training.collate import missing_values

    if (identical := identical_pair(row)) is not None:
        return identical
    if "weight" in row and (problem := weight_problem(row["weight"])):
        return Rejected(str(row["pair_id"]), INVALID_WEIGHT, problem)
    if reason := missing_values(row, reference=reference, scores=scores):
        detail = f"a loss term reads {reason.removeprefix('missing_')} values the row lacks"
        return Rejected(str(row["pair_id"]), reason, detail)
    return None


def _reference_mismatch(row: dict[str, Any], pair) -> str | None:
    """How the stored reference token counts differ from the policy's rendering, if they do."""
    stored = (row["ref_tokens_chosen"], row["ref_tokens_rejected"])
    counts = (len(pair.chosen_ids), len(pair.rejected_ids))
    if stored == counts:
        return None
    return f"pair {row['pair_id']}: reference {stored[0]}/{stored[1]} tokens, policy {counts[0]}/{counts[1]}"


def build_examples(rows, *, tokenizer, config: TrainConfig, pairs: Path, has_reference: bool):
    """Render, filter and normalize pairs: (examples, rejected)."""
    from prefsmith.generation.turn_end import end_of_turn_ids
    from prefsmith.training.collate import pair_example
    from prefsmith.training.guards import check_reference_tokens
    from prefsmith.training.losses import needs_reference, needs_scores
    from prefsmith.training.render import render_pairs

    use_ref = has_reference and any(needs_reference(n, **p) for n, _, p in config.terms())
    use_scores = any(needs_scores(n) for n, _, _ in config.terms())
    transform = read_score_transform(pairs) if use_scores else None
    rendered, rejected = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=end_of_turn_ids(config.policy, tokenizer),
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
    )
    examples, mismatches = [], []
    for row, pair in zip(rows, rendered, strict=True):
        if pair is None:
            continue
        if problem := row_problem(row, reference=use_ref, scores=use_scores):
            rejected.append(problem)
        elif use_ref and (mismatch := _reference_mismatch(row, pair)):
            mismatches.append(mismatch)
        else:
            examples.append(
                pair_example(
                    row, pair, transform=transform, reference=use_ref, layout=config.pair_layout
                )
            )
    check_reference_tokens(len(mismatches), total=len(rows), example=next(iter(mismatches), ""))
    check_some_weight([e["weight"] for e in examples], where=f"pairs table {pairs}")
    return examples, rejected
