"""The pairs table → the trainer's examples: read it, check its cross-stage contracts, render
each pair with the policy's tokenizer and normalize its scores.

Contracts checked before anything is rendered (prefsmith.schemas.contracts): reference columns
when a loss needs them (prefsmith.training.guards), the reference pass's lengths equal to the
train config's (`check_reference_lengths`), and the score transform the pairs manifest declares
(`read_score_transform`, read only when a loss reads scores). Afterwards every pair's stored
reference token counts must equal the policy's rendering (`check_reference_tokens`).

A pair whose chosen text equals its rejected text (possible only in a pairs table made outside
the pairs stage, which merges identical texts) carries no preference and would train on a zero
margin: it is quarantined as `identical_pair`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefsmith.schemas.contracts import TokenLengths
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import read_table, shard_files
from prefsmith.schemas.manifest import check_reference_lengths, read_score_transform
from prefsmith.schemas.quarantine import Rejected
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE
from prefsmith.schemas.train_configs import TrainConfig


def read_pairs(pairs: Path, *, config: TrainConfig) -> tuple[list[dict[str, Any]], bool]:
    """The pair rows, and whether they carry reference columns. Stops when a loss needs reference
    log-probs the table lacks, or when its reference pass used other lengths than `config`."""
    import pyarrow.parquet as pq

    from prefsmith.training.guards import check_reference_columns

    files = shard_files(pairs)
    if not files:
        raise InputError(f"pairs table not found: {pairs}")
    columns = pq.read_schema(files[0]).names
    check_reference_columns(columns, terms=config.terms())
    has_reference = set(PAIRS_WITH_REFERENCE.names) <= set(columns)
    if has_reference:
        check_reference_lengths(pairs, expected=TokenLengths.of(config))
    table = read_table(pairs, PAIRS_WITH_REFERENCE if has_reference else PAIRS)
    return table.to_pylist(), has_reference


def _reference_mismatch(row: dict[str, Any], pair) -> str | None:
    """How the stored reference token counts differ from the policy's rendering, if they do."""
    stored = (row["ref_tokens_chosen"], row["ref_tokens_rejected"])
    counts = (len(pair.chosen_ids), len(pair.rejected_ids))
    if stored == counts:
        return None
    return f"pair {row['pair_id']}: reference {stored[0]}/{stored[1]} tokens, policy {counts[0]}/{counts[1]}"


def build_examples(rows, *, tokenizer, config: TrainConfig, pairs: Path, has_reference: bool):
    """Render, filter and normalize pairs: (examples, rejected)."""
    from prefsmith.training.collate import missing_values, pair_example
    from prefsmith.training.guards import check_reference_tokens
    from prefsmith.training.losses import needs_reference, needs_scores
    from prefsmith.training.render import render_pairs

    use_ref = has_reference and any(needs_reference(n, **p) for n, _, p in config.terms())
    use_scores = any(needs_scores(n) for n, _, _ in config.terms())
    transform = read_score_transform(pairs) if use_scores else None
    rendered, rejected = render_pairs(
        rows,
        tokenizer=tokenizer,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
    )
    examples, mismatches = [], []
    for row, pair in zip(rows, rendered, strict=True):
        if pair is None:
            continue
        if row["chosen"] == row["rejected"]:
            detail = "chosen and rejected are the same text: no preference to learn"
            rejected.append(Rejected(str(row["pair_id"]), "identical_pair", detail))
        elif reason := missing_values(row, reference=use_ref, scores=use_scores):
            detail = f"a loss term reads {reason.removeprefix('missing_')} values the row lacks"
            rejected.append(Rejected(str(row["pair_id"]), reason, detail))
        elif use_ref and (mismatch := _reference_mismatch(row, pair)):
            mismatches.append(mismatch)
        else:
            examples.append(
                pair_example(
                    row, pair, transform=transform, reference=use_ref, layout=config.pair_layout
                )
            )
    check_reference_tokens(len(mismatches), total=len(rows), example=next(iter(mismatches), ""))
    return examples, rejected
