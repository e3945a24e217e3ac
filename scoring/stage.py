"""The score stage: responses → scores, one row per response for one scorer.

Output `out_dir/scores/` — Parquet shards `shard-00000.parquet`, … (prefsmith.schemas.tables.SCORES):

| column      | type                   | note                                                    |
|-------------|------------------------|---------------------------------------------------------|
| response_id | string                 | joined to the prompts table on prompt_id, never by row  |
| prompt_id   | string                 |                                                         |
| scorer      | string                 | config name, else model folder name or rule; "@rev"     |
| score       | float64                | raw scorer output (finite; see quarantine)              |
| objectives  | list<{name, value}>    | ArmoRM: K rewards, then K `gate/<name>`; else empty     |
| n_tokens    | int32                  | response tokens, the generator's count (as responses.n_tokens; null where unknown) |

Quarantine (`scores.quarantine.parquet`), reasons: unknown_prompt, duplicate_response_id,
missing_response, template_error, too_long, non_finite_score, and whatever a rule raises
(missing_reference). Manifest `scores.manifest.json`, unit "response":
rows_in == rows_out + sum(dropped).

Resume: shards are consecutive `shard_size` slices of the responses in response_id order, so a
shard's content does not depend on the run. Each shard writes its quarantine rows to
`scores.quarantine/shard-xxxxx.parquet` *before* its score shard is renamed into place, so a
finished score shard always has its quarantine partner and a resumed run counts every row. The
shard plan (prefsmith.schemas.shard_plan: `scores/plan.json`, keyed on the config, the input
hashes and the model revision) says which shards a resume may reuse: a score shard whose bytes or
partner no longer match its done record is redone; shards of another key, beyond the plan or in
a folder without a plan are removed first, with a logged reason.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.ids import content_hash, model_revision
from prefsmith.schemas.io import chunk, read_frame, run_shards, shard_name, write_table
from prefsmith.schemas.locks import folder_lock, window_wait_s
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_path,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.progress import Progress
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.shard_plan import ShardPlan, settle_plan
from prefsmith.schemas.store import reuse_counts, reuse_records
from prefsmith.schemas.tables import PROMPTS, QUARANTINE, RESPONSES, SCORES
from prefsmith.scoring.batching import Outcome, Scored, ScoreRequest
from prefsmith.scoring.requests import join_responses, score_texts, to_item
from prefsmith.scoring.reuse import reusing_scores, score_store

logger = logging.getLogger(__name__)

STAGE = "score"


class Scorer(Protocol):
    def __call__(self, requests: list[ScoreRequest]) -> list[Outcome]: ...

    def close(self) -> None: ...


def scorer_name(config: ScoreConfig) -> str:
    """The `scorer` column: config name, else model folder name or rule name, plus "@revision"."""
    base = config.name or (config.rule if config.kind == "rule" else Path(str(config.model)).name)
    return f"{base}@{config.revision}" if config.revision else str(base)


def check_scorer(config: ScoreConfig) -> None:
    """Fail before reading any row: unknown rule or bad params, missing model, remote code."""
    from prefsmith.scoring.reward_model import check_remote_code, model_folder

    if config.kind == "rule":
        from prefsmith.scoring.rules import get_rule

        get_rule(str(config.rule), params=config.params)
    elif config.kind == "llm_judge":
        from prefsmith.scoring.llm_judge import check_judge

        check_judge(config)
    elif config.kind == "armorm":
        from prefsmith.scoring.armorm import check_armorm

        check_armorm(config)
    else:
        from prefsmith.scoring.pooling import refuse_armorm_as

        refuse_armorm_as(config.kind, path=model_folder(config))  # before the opt-in advice
        check_remote_code(model_folder(config), trust_remote_code=config.trust_remote_code)
        if config.kind == "vllm_pooling":
            from prefsmith.scoring.vllm_pooling import check_vllm_architecture

            check_vllm_architecture(model_folder(config))


def make_scorer(config: ScoreConfig) -> Scorer:
    """Load the scorer of `config.kind` (models are loaded here, not at import)."""
    if config.kind == "rule":
        from prefsmith.scoring.rules import RuleScorer, get_rule

        return RuleScorer(get_rule(str(config.rule), params=config.params), dict(config.params))
    if config.kind == "armorm":
        from prefsmith.scoring.armorm import load_armorm

        return load_armorm(config)
    if config.kind == "llm_judge":
        from prefsmith.scoring.llm_judge import JudgeScorer

        return JudgeScorer(config)
    if config.kind == "vllm_pooling":
        from prefsmith.scoring.vllm_pooling import VllmPoolingScorer

        return VllmPoolingScorer(config)
    from prefsmith.scoring.reward_model import load_reward_model

    return load_reward_model(config)


@dataclass
class LazyScorer:
    """Loads the scorer on the first shard that needs it: a fully resumed run loads no model."""

    config: ScoreConfig
    scorer: Scorer | None = None

    def __call__(self, requests: list[ScoreRequest]) -> list[Outcome]:
        if self.scorer is None:
            self.scorer = make_scorer(self.config)
        return self.scorer(requests)

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None


def score_row(request: ScoreRequest, scored: Scored, scorer: str) -> dict[str, Any]:
    objectives = [{"name": name, "value": value} for name, value in scored.objectives]
    return {
        "response_id": request.response_id,
        "prompt_id": request.prompt_id,
        "scorer": scorer,
        "score": scored.score,
        "objectives": objectives,
        "n_tokens": request.n_tokens,  # one meaning everywhere: response tokens
    }


def score_shard(
    index: int, shard: pl.DataFrame, *, scorer: Scorer, name: str, quarantine_dir: Path
) -> list[dict[str, Any]]:
    """Score one shard; write its quarantine shard first, return its score rows."""
    items = [to_item(row) for row in shard.iter_rows(named=True)]
    requests = [item for item in items if isinstance(item, ScoreRequest)]
    outcomes = scorer(requests) if requests else []
    by_id = dict(zip((r.response_id for r in requests), outcomes, strict=True))
    rows, rejected = [], []
    for item in items:
        outcome = item if isinstance(item, Rejected) else by_id[item.response_id]
        if isinstance(outcome, Rejected):
            rejected.append(outcome)
        elif not math.isfinite(outcome.score):
            rejected.append(
                Rejected(
                    item.response_id,
                    "non_finite_score",
                    f"scorer returned {outcome.score}",
                    item.response,
                )
            )
        else:
            rows.append(score_row(item, outcome, name))
    if len(rows) + len(rejected) != len(items):
        raise AssertionError("every row of a shard is scored or quarantined")
    write_quarantine(rejected, quarantine_dir / shard_name(index), stage=STAGE)
    return rows


def model_stamp(config: ScoreConfig) -> str:
    """Identity of the scorer's model (prefsmith.schemas.ids.model_revision): a rebuilt model is new."""
    if config.kind == "rule" or config.model is None:
        return ""
    return model_revision(config.model, revision=config.revision)


@dataclass(frozen=True)
class ScorePlan:
    """The joined responses cut into shards, the shard folders prepared for this run key."""

    joined: pl.DataFrame
    shards: list[pl.DataFrame]
    refs: list
    stored: ShardPlan  # plan.json: the shards a resume may reuse (prefsmith.schemas.shard_plan)
    removed: dict[str, int]  # shards settle_plan removed from the folder, by reason


def make_plan(
    inputs: Inputs, *, config: ScoreConfig, out_dir: Path, only: list[int] | None = None
) -> ScorePlan:
    """Join responses to prompts, cut shards, and settle the shard folder for this plan (clear
    what it does not vouch for; `only`: a mapped part's shards, the ones it checks)."""
    responses, prompts = input_path(inputs, "responses"), input_path(inputs, "prompts")
    check_scorer(config)
    joined = join_responses(read_frame(responses, RESPONSES), read_frame(prompts, PROMPTS))
    shards = chunk(joined, config.shard_size) or [joined]  # an empty input still gets one shard
    refs = [input_ref(responses), input_ref(prompts)]
    settings = config.model_dump(mode="json", exclude={"store"})  # reuse changes no row
    key = content_hash([settings, [r.sha256 for r in refs], model_stamp(config)])
    out_dir = Path(out_dir)
    hashes = tuple(content_hash(s.select("response_id", "response").rows()) for s in shards)
    stored = ShardPlan(out_dir / "scores", key, hashes, partner=out_dir / "scores.quarantine")
    # Read-then-write: a shard part (not holding the stage lock) must not race another writer.
    with folder_lock(out_dir, STAGE, wait_s=window_wait_s()):
        removed = settle_plan(stored, only=only)
    return ScorePlan(joined, shards, refs, stored, removed)


def run_plan(
    plan: ScorePlan, *, config: ScoreConfig, out_dir: Path, only: list[int] | None = None
) -> tuple[list[Path], int]:
    """Score the plan's missing shards (or only those in `only`); the scorer loads lazily."""
    scorer = LazyScorer(config)
    work = reusing_scores(
        partial(
            score_shard,
            scorer=scorer,
            name=scorer_name(config),
            quarantine_dir=Path(out_dir) / "scores.quarantine",
        ),
        store=score_store(config, model_stamp=model_stamp(config)),
        records=reuse_records(Path(out_dir) / "scores"),
        texts=score_texts(plan.joined, config),
    )
    total = plan.joined.height if only is None else sum(plan.shards[i].height for i in only)
    try:
        with Progress(total=total, unit="response", desc="score") as bar:
            return run_shards(
                plan.shards,
                Path(out_dir) / "scores",
                work,
                SCORES,
                progress=bar.update,
                only=only,
                plan=plan.stored,
            )
    finally:
        scorer.close()


def shard_plan(inputs: Inputs, *, config: ScoreConfig, out_dir: Path) -> list[str]:
    """One content hash per shard (response ids and texts): the cache keys of mapped tasks."""
    return list(make_plan(inputs, config=config, out_dir=out_dir).stored.inputs)


def score_shards(
    inputs: Inputs, *, config: ScoreConfig, out_dir: Path, shards: list[int]
) -> list[str]:
    """Score only the shards `shards` (a mapped task's part); `score` afterwards writes the
    manifest without loading the scorer."""
    plan = make_plan(inputs, config=config, out_dir=out_dir, only=shards)
    paths, _ = run_plan(plan, config=config, out_dir=out_dir, only=shards)
    return [str(paths[index]) for index in shards]


def score(inputs: Inputs, *, config: ScoreConfig, out_dir: Path) -> StageResult:
    """Run the score stage on `inputs["responses"]` (texts joined to `inputs["prompts"]`): write
    `scores/` shards, `scores.quarantine.parquet` and the manifest. Holds `out_dir`'s score lock
    (prefsmith.schemas.locks): a second writer stops naming this one, or waits."""
    check_scorer(config)  # a bad config fails before the lock creates out_dir
    with folder_lock(out_dir, STAGE):
        return _score(inputs, config=config, out_dir=Path(out_dir))


def _score(inputs: Inputs, *, config: ScoreConfig, out_dir: Path) -> StageResult:
    start = time.perf_counter()
    plan = make_plan(inputs, config=config, out_dir=out_dir)
    paths, skipped = run_plan(plan, config=config, out_dir=out_dir)
    facts = {
        "scorer": scorer_name(config),
        "shards": len(paths),
        "shards_skipped": skipped,
        "stale_shards_removed": sum(plan.removed.values()),
        "stale_shards_by_reason": plan.removed,
        "store": config.store,
    }
    return _finish(
        Path(out_dir),
        paths,
        config=config,
        refs=plan.refs,
        rows_in=plan.joined.height,
        facts=facts,
        start=start,
    )


def _finish(
    out_dir: Path,
    paths: list[Path],
    *,
    config: ScoreConfig,
    refs: list,
    rows_in: int,
    facts: dict[str, Any],
    start: float,
) -> StageResult:
    """Gather the quarantine shards, count every row, write the manifest."""
    quarantine_tables = [pq.read_table(out_dir / "scores.quarantine" / p.name) for p in paths]
    quarantine = pa.concat_tables([t.cast(QUARANTINE) for t in quarantine_tables])
    quarantine_path = write_table(quarantine, out_dir / "scores.quarantine.parquet", QUARANTINE)
    n_tokens = [pq.read_table(p, columns=["n_tokens"]).column("n_tokens") for p in paths]
    rows_out = sum(len(column) for column in n_tokens)
    facts["response_tokens_total"] = sum(int(pc.sum(c).as_py() or 0) for c in n_tokens)
    facts.update(reuse_counts(reuse_records(out_dir / "scores"), len(paths), rows=rows_out))
    dropped = count_reasons(quarantine.column("reason").to_pylist())
    if config.kind == "llm_judge" and config.judge.mode == "pairwise":
        from prefsmith.scoring.llm_judge import judge_facts

        facts["judge"] = judge_facts(paths, quarantined=dropped.get("unparseable_judgement", 0))
        rate = facts["judge"]["first_position_rate"]
        logger.info(
            "score: the judge preferred the first reply in %s of its pairwise verdicts "
            "(0.5: no position bias; both orders asked, so scores cancel it)",
            "none" if rate is None else f"{rate:.1%}",
        )
    manifest = Manifest(
        stage=STAGE,
        unit="response",
        config=config.model_dump(mode="json"),
        inputs=refs,
        outputs={"scores": str(out_dir / "scores"), "quarantine": str(quarantine_path)},
        rows_in=rows_in,
        rows_out=rows_out,
        dropped=dropped,
        rows_written={"scores": rows_out, "quarantine": quarantine.num_rows},
        extra=facts,
        wall_time_s=time.perf_counter() - start,
    )
    logger.info(
        "score: %d responses in, %d scored, dropped %s (%d/%d shards skipped)",
        rows_in,
        rows_out,
        dropped,
        facts["shards_skipped"],
        facts["shards"],
    )
    output = out_dir / "scores"
    return StageResult(output, quarantine_path, manifest.write(manifest_path(output)))
