"""The import stage (`prefsmith import`): existing preference data into prefsmith's tables.

Shapes `pairs` and `hh` write `pairs.parquet` (prefsmith.schemas.tables.PAIRS, strategy
`imported`), ready for `prefsmith reference`, with a `weight` column when the config maps one
(`columns.weight`) or declares a rule (`weight:`, prefsmith.curation.weights); shape `responses`
writes `prompts.parquet`, `responses.parquet` and `scores.parquet`, which `prefsmith pairs`
re-pairs with any strategy.
Response ids are content-addressed (`<prompt_id>-<hash of the text>` for pairs, `<prompt_id>-<i>`
for responses), so importing the same file twice gives the same ids.

The manifest declares the normalization of the imported scores (`score_transform`, computed as
the pairs stage does, over every imported finite score) so Uni-DPO's and MADPO's weights see the
declared scale: raw 1–10 ratings would saturate w_qual. Bad rows are quarantined with a reason
(curation.import_rows.REASON_DETAIL); rows_in = rows_out + Σ dropped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefsmith.curation.import_rows import (
    REASON_DETAIL,
    ImportedPair,
    hh_pair,
    pair_from_row,
    scored_responses,
)
from prefsmith.curation.normalize import score_transform
from prefsmith.curation.weights import rule_weights
from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.schemas.errors import ConfigError, InputError
from prefsmith.schemas.ids import content_hash, pair_id, prompt_id, response_id
from prefsmith.schemas.import_config import ImportConfig
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.sources import detect_format, iter_raw_rows
from prefsmith.schemas.tables import PAIRS, PROMPTS, RESPONSES, SCORES, WEIGHT

logger = logging.getLogger(__name__)


@dataclass
class Parsed:
    """Rows parsed from the source: what each shape keeps, the rejected, the count read."""

    kept: list[tuple[str, Any]] = field(default_factory=list)  # (row_ref, parsed value)
    rejected: list[Rejected] = field(default_factory=list)
    total: int = 0


def parse_rows(config: ImportConfig, source: Path) -> Parsed:
    """Every source row through its shape's parser; unreadable or bad rows rejected."""
    parse = {"pairs": pair_from_row, "hh": hh_pair, "responses": scored_responses}[config.shape]
    out = Parsed()
    for ref, row in iter_raw_rows(source, detect_format(source, config.format), split=config.split):
        out.total += 1
        value = row if isinstance(row, Rejected) else parse(row, config)
        if isinstance(value, Rejected):
            out.rejected.append(value)
        elif isinstance(value, str):
            raw = json.dumps(row, ensure_ascii=False, default=str)
            out.rejected.append(Rejected(ref, value, REASON_DETAIL[value], raw))
        else:
            out.kept.append((ref, value))
    return out


def pair_row(pair: ImportedPair, *, scorer: str) -> dict[str, Any]:
    """One PAIRS row; the response ids are content-addressed within the prompt."""
    pid = prompt_id(pair.messages)
    chosen_id, rejected_id = (f"{pid}-{content_hash(t)[:12]}" for t in (pair.chosen, pair.rejected))
    scored = pair.score_chosen is not None
    return {
        "pair_id": pair_id(chosen_id, rejected_id),
        "prompt_id": pid,
        "messages": pair.messages,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "chosen_response_id": chosen_id,
        "rejected_response_id": rejected_id,
        "score_chosen": pair.score_chosen,
        "score_rejected": pair.score_rejected,
        "margin": pair.score_chosen - pair.score_rejected if scored else None,
        "strategy": "imported",
        "scorer": scorer,
        "weight": pair.weight,  # kept only where write_pairs writes a `weight` column
    }


def declared_transform(scores: list[float], *, config: ImportConfig) -> ScoreTransform:
    """The normalization the config declares, computed over the imported scores."""
    if not scores and config.normalization.method != "none":
        raise ConfigError(
            f"normalization.method={config.normalization.method}: the imported rows have no "
            f"scores (columns {config.columns.score_chosen!r}/{config.columns.score_rejected!r}); "
            "name the score columns under columns: or use method: none"
        )
    return score_transform(scores, config=config.normalization, scorer=config.scorer)


def unique_rows(rows: list[tuple[str, dict]], key: str) -> tuple[list[dict], list[Rejected]]:
    """Rows with a new `key`, in order; the repeats rejected as duplicate_pair."""
    seen: set[str] = set()
    kept, repeats = [], []
    for ref, row in rows:
        if row[key] in seen:
            repeats.append(
                Rejected(ref, "duplicate_pair", REASON_DETAIL["duplicate_pair"], row[key])
            )
            continue
        seen.add(row[key])
        kept.append(row)
    return kept, repeats


def write_pairs(parsed: Parsed, *, config: ImportConfig, out_dir: Path):
    """Shape pairs/hh: pairs.parquet; (output, written tables' row counts, scores seen)."""
    rows = [(ref, pair_row(pair, scorer=config.scorer)) for ref, pair in parsed.kept]
    if config.weight is not None:
        rows, unweighted = rule_weights(rows, config.weight)
        parsed.rejected += unweighted
    rows, repeats = unique_rows(rows, "pair_id")
    parsed.rejected += repeats
    rows.sort(key=lambda r: (r["prompt_id"], r["pair_id"]))
    weighted = config.weight is not None or config.columns.weight is not None
    schema = PAIRS.append(WEIGHT) if weighted else PAIRS
    output = write_table(rows, out_dir / "pairs.parquet", schema)
    scores = [r[k] for r in rows for k in ("score_chosen", "score_rejected") if r[k] is not None]
    return output, {"pairs": len(rows)}, scores, {}


def write_responses(parsed: Parsed, *, config: ImportConfig, source: str, out_dir: Path):
    """Shape responses: prompts, responses and scores tables; same return as write_pairs."""
    prompts, responses, scores = {}, [], []
    for ref, (messages, answers) in parsed.kept:
        pid = prompt_id(messages)
        if pid in prompts:  # its response ids are taken: the first row of a prompt wins
            parsed.rejected.append(
                Rejected(ref, "duplicate_prompt", REASON_DETAIL["duplicate_prompt"], pid)
            )
            continue
        prompts[pid] = {"prompt_id": pid, "messages": messages, "source": source, "metadata": "{}"}
        for index, (text, score) in enumerate(answers):
            rid = response_id(pid, index)
            responses.append(
                {
                    "prompt_id": pid,
                    "response_id": rid,
                    "sample_idx": index,
                    "response": text,
                    "n_tokens": None,
                    "finish_reason": None,
                    "generator": f"imported:{source}",
                    "gen_config_hash": None,
                }
            )
            scores.append(
                {
                    "response_id": rid,
                    "prompt_id": pid,
                    "scorer": config.scorer,
                    "score": score,
                    "objectives": [],
                    "n_tokens": None,
                }
            )
    output = write_table(responses, out_dir / "responses.parquet", RESPONSES)
    more = {
        "prompts": write_table(list(prompts.values()), out_dir / "prompts.parquet", PROMPTS),
        "scores": write_table(scores, out_dir / "scores.parquet", SCORES),
    }
    written = {"prompts": len(prompts), "responses": len(responses), "scores": len(scores)}
    return output, written, [s["score"] for s in scores], more


def import_preferences(
    _inputs: Inputs, *, config: ImportConfig, out_dir: str | Path
) -> StageResult:
    """Read `config.path` in `config.shape` and write prefsmith's tables (module docstring)."""
    start, source, out_dir = time.perf_counter(), Path(config.path), Path(out_dir)
    if not source.exists():
        raise InputError(f"import: file not found: {source}")
    parsed = parse_rows(config, source)
    if config.shape == "responses":
        name = config.source or source.name
        output, written, scores, more = write_responses(
            parsed, config=config, source=name, out_dir=out_dir
        )
    else:
        output, written, scores, more = write_pairs(parsed, config=config, out_dir=out_dir)
    quarantine = write_quarantine(
        parsed.rejected, out_dir / "import.quarantine.parquet", stage="import"
    )
    manifest = Manifest(
        stage="import",
        unit="row",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(source)],
        outputs={"output": str(output), **{k: str(v) for k, v in more.items()}},
        rows_in=parsed.total,
        rows_out=parsed.total - len(parsed.rejected),
        dropped=count_reasons([r.reason for r in parsed.rejected]),
        rows_written={**written, "quarantine": len(parsed.rejected)},
        score_transform=declared_transform(scores, config=config),
        wall_time_s=time.perf_counter() - start,
    )
    logger.info("import: %d rows in, wrote %s, dropped %s", parsed.total, written, manifest.dropped)
    return StageResult(output, quarantine, manifest.write(manifest_path(output)), more=more)
