"""The reference pass (`prefsmith reference`): the frozen reference model's summed log-probs of
every pair's chosen and rejected completion, stored in the pairs table so training loads only the
policy (less memory, no reference inside DeepSpeed ZeRO-3) and one pass serves many runs.

Output `pairs_ref.parquet` (prefsmith.schemas.tables.PAIRS_WITH_REFERENCE): the pairs columns plus

| column              | type    | note                                                     |
|---------------------|---------|----------------------------------------------------------|
| ref_logp_chosen     | float64 | sum of log p(token) over the chosen completion (EOS in)  |
| ref_logp_rejected   | float64 | the same for the rejected completion                      |
| ref_tokens_chosen   | int32   | completion tokens summed over (after truncation)          |
| ref_tokens_rejected | int32   |                                                           |
| ref_model           | string  | `<folder name>@<revision>`                                |

Tokens come from `prefsmith.training.render` (the trainer's own rendering), so the trainer can check that
it sees the same completion token counts. The output is keyed on (pairs content sha256, reference
model revision, chat template hash, max_length, max_prompt_length, dtype): a second call with the
same key reuses the existing output without loading the model (manifest `extra.reused: true`).
The manifest declares the lengths (`lengths`, which the trainer checks against its own) and
carries the pairs manifest's `score_transform` (prefsmith.schemas.manifest.read_score_transform).
Quarantine reasons: template_error, prompt_too_long, empty_completion, identical_pair (chosen
text == rejected text, as train quarantines it: prefsmith.training.pair_examples), nonfinite_ref_logp.
A `weight` column of the input is carried to the output. Input that is not Parquet (a CSV, JSONL,
other bytes, a truncated file) stops with one line naming the file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefsmith.generation.turn_end import end_of_turn_ids
from prefsmith.schemas.contracts import ScoreTransform, TokenLengths
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.ids import content_hash, file_sha256, model_revision
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_path,
    input_ref,
    manifest_path,
    read_score_transform,
)
from prefsmith.schemas.progress import track
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.tables import pairs_schema
from prefsmith.schemas.train_configs import ReferenceConfig
from prefsmith.scoring.batching import token_budget_batches
from prefsmith.training.pair_examples import pairs_columns, read_pair_rows, without_identical
from prefsmith.training.policy import pad_token_id
from prefsmith.training.render import render_pairs, template_hash

PairIds = tuple[list[int], list[int], list[int]]  # prompt, chosen, rejected token ids

logger = logging.getLogger(__name__)

OUTPUT_NAME = "pairs_ref.parquet"
QUARANTINE_NAME = "pairs_ref.quarantine.parquet"


def reference_revision(config: ReferenceConfig) -> str:
    """The reference model's revision (prefsmith.schemas.ids.model_revision); the folder must exist."""
    if not config.revision and not Path(config.model).is_dir():
        raise InputError(f"reference model folder not found: {config.model}")
    return model_revision(config.model, revision=config.revision)


def cache_key(pairs: Path, *, config: ReferenceConfig, tokenizer) -> dict[str, Any]:
    """What the output depends on; its hash is the cache key."""
    parts = {
        "pairs_sha256": input_ref(pairs).sha256,
        "model_revision": reference_revision(config),
        "template_hash": template_hash(tokenizer),
        "end_of_turn_ids": list(end_of_turn_ids(config.model, tokenizer)),
        "max_length": config.max_length,
        "max_prompt_length": config.max_prompt_length,
        "dtype": config.dtype,
    }
    return {**parts, "cache_key": content_hash(parts)}


def load_reference_model(config: ReferenceConfig):
    """The reference model in eval mode on the best device, from `config.model` only."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        config.model, dtype=dtype, trust_remote_code=config.trust_remote_code
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


def sequence_logps(
    model,
    sequences: list[tuple[list[int], int]],
    *,
    token_budget: int,
    pad_id: int,
    part: tuple[int, int] = (0, 1),
) -> list[tuple[float, int] | None]:
    """(summed completion log-prob, tokens) per (ids, prompt length), batched by token budget.
    `part` (rank, world): only every world-th batch from the rank-th (the rest stay None), so
    ranks split one pass over the same batches, each value computed as in one process."""
    import torch

    from prefsmith.training.collate import right_pad
    from prefsmith.training.logprobs import completion_logps

    device = next(model.parameters()).device
    results: list[tuple[float, int] | None] = [None] * len(sequences)
    batches = token_budget_batches([len(ids) for ids, _ in sequences], budget=token_budget)
    batches = batches[part[0] :: part[1]]
    for batch in track(batches, desc="reference log-probs", unit="batch"):
        ids = right_pad([sequences[i][0] for i in batch], pad_id, multiple=None)  # (N, T)
        lengths = torch.tensor([len(sequences[i][0]) for i in batch])  # (N,)
        prompts = torch.tensor([sequences[i][1] for i in batch])  # (N,)
        positions = torch.arange(ids.shape[1])[None, :]  # (1, T)
        labels = (positions >= prompts[:, None]) & (positions < lengths[:, None])  # (N, T)
        with torch.inference_mode():
            summed, counts = completion_logps(
                model, ids.to(device), None, labels.to(device), chunk_tokens=token_budget
            )  # (N,), (N,)
        for i, value, count in zip(batch, summed.tolist(), counts.tolist(), strict=True):
            results[i] = (value, count)
    return results


def pair_sequences(pairs: Iterable[PairIds]) -> list[tuple[list[int], int]]:
    """(ids, prompt length) of each pair's prompt + chosen, then prompt + rejected, in order:
    what `sequence_logps` scores for the reference log-probs."""
    return [
        (prompt + completion, len(prompt))
        for prompt, chosen, rejected in pairs
        for completion in (chosen, rejected)
    ]


def _reuse(
    out_dir: Path, key: dict[str, Any], *, transform: ScoreTransform, start: float
) -> StageResult | None:
    """The existing result if its manifest carries `key` and the output is intact.

    The score transform is not part of the key (the log-probs do not depend on it): a reused
    output carries the one the pairs manifest declares now, so renormalized pairs need no pass.
    """
    output, path = out_dir / OUTPUT_NAME, manifest_path(out_dir / OUTPUT_NAME)
    if not (output.is_file() and path.is_file()):
        return None
    old = Manifest.read(path)
    if old.extra.get("cache_key") != key["cache_key"] or old.extra.get(
        "output_sha256"
    ) != file_sha256(str(output)):
        return None
    update = {
        "extra": {**old.extra, "reused": True},
        "score_transform": transform,
        "wall_time_s": time.perf_counter() - start,
    }
    manifest = old.model_copy(update=update)
    logger.info("reference: reusing %s (cache key %s)", output, key["cache_key"])
    quarantine = out_dir / QUARANTINE_NAME
    return StageResult(output, quarantine if quarantine.is_file() else None, manifest.write(path))


def _rows_out(rows, rendered, values, *, ref_model: str) -> tuple[list[dict], list[Rejected]]:
    out, rejected, cursor = [], [], 0
    for row, pair in zip(rows, rendered, strict=True):
        if pair is None:
            continue
        (chosen, n_chosen), (rej, n_rej) = values[cursor], values[cursor + 1]
        cursor += 2
        if not all(abs(v) < float("inf") for v in (chosen, rej)):  # NaN fails too
            rejected.append(
                Rejected(
                    str(row["pair_id"]), "nonfinite_ref_logp", f"chosen {chosen}, rejected {rej}"
                )
            )
            continue
        out.append(
            {
                **row,
                "ref_logp_chosen": chosen,
                "ref_logp_rejected": rej,
                "ref_tokens_chosen": n_chosen,
                "ref_tokens_rejected": n_rej,
                "ref_model": ref_model,
            }
        )
    return out, rejected


def _write(
    pairs: Path, out_dir: Path, rows, out_rows, rejected, *, config, extra, transform, start
) -> StageResult:
    schema = pairs_schema(rows[0] if rows else {}, reference=True)  # keeps a `weight` column
    output = write_table(out_rows, out_dir / OUTPUT_NAME, schema)
    quarantine = write_quarantine(rejected, out_dir / QUARANTINE_NAME, stage="reference")
    extra = {**extra, "reused": False, "output_sha256": file_sha256(str(output))}
    manifest = Manifest(
        stage="reference",
        unit="pair",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(pairs)],
        outputs={"pairs_ref": str(output), "quarantine": str(quarantine)},
        rows_in=len(rows),
        rows_out=len(out_rows),
        dropped=count_reasons([r.reason for r in rejected]),
        rows_written={"pairs_ref": len(out_rows), "quarantine": len(rejected)},
        extra=extra,
        score_transform=transform,
        lengths=TokenLengths.of(config),
        wall_time_s=time.perf_counter() - start,
    )
    logger.info(
        "reference: %d pairs in, %d out, dropped %s", len(rows), len(out_rows), manifest.dropped
    )
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))


def _render(rows, *, tokenizer, key: dict[str, Any], config: ReferenceConfig):
    """The trainer's rendering of the rows (at the key's end-of-turn ids), identical pairs out:
    (one RenderedPair or None per row, the rejections)."""
    rendered, rejected = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=key["end_of_turn_ids"],
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
    )
    rendered, identical = without_identical(rows, rendered)
    return rendered, rejected + identical


def reference_pass(inputs: Inputs, *, config: ReferenceConfig, out_dir: str | Path) -> StageResult:
    """Add reference log-probs to `inputs["pairs"]`; write `pairs_ref.parquet`, quarantine and
    manifest."""
    start = time.perf_counter()  # before the imports: loading transformers is this stage's work
    from transformers import AutoTokenizer

    from prefsmith.training.guards import check_tokenizer_model

    pairs, out_dir = input_path(inputs, "pairs"), Path(out_dir)
    if not pairs.exists():
        raise InputError(f"pairs table not found: {pairs}")
    columns = pairs_columns(pairs)  # whole Parquet files, checked before any model loads
    transform = read_score_transform(pairs)  # carried on; read first: a bad manifest stops here
    remote = config.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(config.model, trust_remote_code=remote)
    key = cache_key(pairs, config=config, tokenizer=tokenizer)
    if (reused := _reuse(out_dir, key, transform=transform, start=start)) is not None:
        return reused
    rows = read_pair_rows(pairs, columns=columns, reference=False)
    rendered, rejected = _render(rows, tokenizer=tokenizer, key=key, config=config)
    model = load_reference_model(config)
    check_tokenizer_model(tokenizer, model.config, model_name=config.model)
    pad_id = pad_token_id(tokenizer)
    sequences = pair_sequences(
        (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids) for pair in rendered if pair
    )
    values = sequence_logps(model, sequences, token_budget=config.token_budget, pad_id=pad_id)
    ref_model = f"{Path(config.model).name}@{key['model_revision'][:12]}"
    out_rows, nonfinite = _rows_out(rows, rendered, values, ref_model=ref_model)
    extra = {**key, "ref_model": ref_model}
    return _write(
        pairs,
        out_dir,
        rows,
        out_rows,
        rejected + nonfinite,
        config=config,
        extra=extra,
        transform=transform,
        start=start,
    )
