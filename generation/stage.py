"""The generate stage: prompts → `sampling.n` responses per prompt, sharded and resumable.

Output folder `responses/` of shards (prefsmith.schemas.tables.RESPONSES):

| column          | type   | note                                                       |
|-----------------|--------|------------------------------------------------------------|
| prompt_id       | string | from the prompts table                                     |
| response_id     | string | `{prompt_id}-{sample_idx}`                                 |
| sample_idx      | int32  | 0 .. n-1                                                   |
| response        | string | raw completion text (special tokens removed)               |
| n_tokens        | int32  | completion tokens, including the EOS that stopped it       |
| finish_reason   | string | "stop" (EOS) or "length"                                   |
| generator       | string | `{model folder name}@{revision}`                           |
| gen_config_hash | string | hash of the sampling config and the generator              |

Prompts are sorted by id and cut into shards of `shard_size`; each shard is written atomically,
so a rerun (after a crash or a kill) skips finished shards (those its `plan.json` vouches for,
prefsmith.schemas.shard_plan; any other file there is removed first, with a logged reason,
and a folder planned for another run is refused) and produces the same rows as an
uninterrupted run. Each prompt's seed is a stable function of (sampling.seed, prompt_id).
Quarantined (reasons): `template_error`, `template_not_prefix_stable` (the template rewrites the
prompt once a reply follows), `prompt_too_long` (not even one new token fits),
`duplicate_prompt_id`. Completions stop at `generation.turn_end.end_of_turn_ids`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from prefsmith.generation.backends import Backend, load_backend
from prefsmith.generation.checkpoints import inference_folder
from prefsmith.generation.render import render_or_reject, require_chat_template
from prefsmith.generation.reuse import prefetch_new, response_store, reusing_responses
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.errors import StageError
from prefsmith.schemas.ids import content_hash, model_revision, response_id
from prefsmith.schemas.io import chunk, read_frame, run_shards
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
from prefsmith.schemas.tables import PROMPTS, RESPONSES

logger = logging.getLogger(__name__)

STAGE_LOCK = "generate"  # the lock name in out_dir (prefsmith.schemas.locks), as the stage


@dataclass(frozen=True)
class RenderedPrompt:
    prompt_id: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class RunIdentity:
    """What every response row records about how it was made."""

    generator: str
    gen_config_hash: str
    max_context: int


def prompt_seed(base_seed: int, prompt_id: str) -> int:
    """The prompt's sampling seed: stable in (base seed, prompt id), independent of order."""
    return int(content_hash([base_seed, prompt_id]), 16) % (2**31 - 1)


def generator_name(config: GenerateConfig) -> str:
    return f"{Path(config.model.rstrip('/')).name}@{model_revision(config.model, revision=config.revision)}"


def plain_model(config: GenerateConfig) -> GenerateConfig:
    """`config` with an adapter checkpoint (a LoRA run's final/) replaced by its merged model."""
    model = inference_folder(config.model, trust_remote_code=config.trust_remote_code)
    return config if model == config.model else config.model_copy(update={"model": model})


def load_tokenizer(config: GenerateConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        config.model, trust_remote_code=config.trust_remote_code
    )
    require_chat_template(tokenizer, model=config.model)
    return tokenizer


def resolve_max_context(config: GenerateConfig) -> int:
    """`config.max_model_len`, else the model's `max_position_embeddings`."""
    if config.max_model_len is not None:
        return config.max_model_len
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(
        config.model, trust_remote_code=config.trust_remote_code
    )
    context = getattr(model_config, "max_position_embeddings", None)
    if not context:
        raise StageError(
            f"{config.model}: cannot tell the model's context length; set max_model_len:"
        )
    return int(context)


def render_prompts(
    frame: Any, *, tokenizer: Any, max_context: int
) -> tuple[list[RenderedPrompt], list[Rejected]]:
    """Render every prompt with the policy template; quarantine the ones that cannot be generated."""
    kept, rejected, seen = [], [], set()
    for row in frame.iter_rows(named=True):
        pid = row["prompt_id"]
        if pid in seen:
            rejected.append(
                Rejected(pid, "duplicate_prompt_id", "prompt_id seen before", repr(row["messages"]))
            )
            continue
        seen.add(pid)
        ids = render_or_reject(
            row["messages"], prompt_id=pid, tokenizer=tokenizer, max_context=max_context
        )
        if isinstance(ids, Rejected):
            rejected.append(ids)
        else:
            kept.append(RenderedPrompt(pid, tuple(ids)))
    return kept, rejected


def shard_rows(
    shard: Sequence[RenderedPrompt],
    *,
    backend: Backend,
    config: GenerateConfig,
    identity: RunIdentity,
) -> list[dict[str, Any]]:
    """Generate one shard and return its response rows, prompt by prompt, sample by sample."""
    sampling = config.sampling
    completions = backend.generate(
        [p.token_ids for p in shard],
        sampling=sampling,
        seeds=[prompt_seed(sampling.seed, p.prompt_id) for p in shard],
        max_tokens=[
            min(sampling.max_new_tokens, identity.max_context - len(p.token_ids)) for p in shard
        ],
    )
    return [
        {
            "prompt_id": p.prompt_id,
            "response_id": response_id(p.prompt_id, idx),
            "sample_idx": idx,
            "response": c.text,
            "n_tokens": len(c.token_ids),
            "finish_reason": c.finish_reason,
            "generator": identity.generator,
            "gen_config_hash": identity.gen_config_hash,
        }
        for p, samples in zip(shard, completions, strict=True)
        for idx, c in enumerate(samples)
    ]


class LazyBackend:
    """Builds the backend on first use, so a fully resumed run never loads the model."""

    def __init__(self, config: GenerateConfig, *, tokenizer: Any) -> None:
        self.config, self.tokenizer, self.backend = config, tokenizer, None
        self.lock = threading.Lock()  # shard threads (OpenAI backend) must share one backend

    def get(self) -> Backend:
        with self.lock:
            if self.backend is None:
                self.backend = load_backend(self.config, tokenizer=self.tokenizer)
            return self.backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


@dataclass(frozen=True)
class Plan:
    """What a generate run (or one part of it) works from: the rendered prompts cut into shards."""

    frame: Any
    identity: RunIdentity
    kept: list[RenderedPrompt]
    rejected: list[Rejected]
    shards: list[Sequence[RenderedPrompt]]
    output: Path
    source: Any
    stored: ShardPlan  # plan.json: the shards a resume may reuse (prefsmith.schemas.shard_plan)
    removed: dict[str, int]  # shards settle_plan removed from the folder, by reason


def make_plan(
    prompts: Path,
    *,
    config: GenerateConfig,
    out_dir: Path,
    tokenizer: Any,
    only: Sequence[int] | None = None,
) -> Plan:
    """Render and shard the prompts; settle the folder for the plan file beside the shards
    (`only`: a mapped part's shards, the ones it checks)."""
    frame = read_frame(prompts, PROMPTS).sort("prompt_id")
    generator = generator_name(config)
    identity = RunIdentity(
        generator,
        content_hash([config.sampling.config_hash(), generator]),
        resolve_max_context(config),
    )
    kept, rejected = render_prompts(frame, tokenizer=tokenizer, max_context=identity.max_context)
    shards = chunk(kept, config.shard_size)
    output, source = Path(out_dir) / "responses", input_ref(prompts)
    params = {
        "prompts_sha256": source.sha256,
        "gen_config_hash": identity.gen_config_hash,
        "backend": config.backend,
        "shard_size": config.shard_size,
        "max_context": identity.max_context,
        "shards_total": len(shards),
    }
    stored = ShardPlan(output, content_hash(params), shard_hashes(shards), params=params)
    # Read-then-write: a shard part (not holding the stage lock) must not race another writer.
    # Another run's shards (another plan key) are refused, not removed: they cost model time.
    with folder_lock(out_dir, STAGE_LOCK, wait_s=window_wait_s()):
        removed = settle_plan(stored, other_plan="refuse", only=only)
    return Plan(frame, identity, kept, rejected, shards, output, source, stored, removed)


def shard_hashes(shards: Sequence[Sequence[RenderedPrompt]]) -> tuple[str, ...]:
    """One content hash per shard (prompt ids and rendered token ids): what each shard's done
    record must match, and the cache keys of the mapped shard tasks in flows/."""
    return tuple(content_hash([[p.prompt_id, list(p.token_ids)] for p in s]) for s in shards)


def shards_in_flight(config: GenerateConfig) -> int:
    """Shards generated at once: one per server for the OpenAI backend (spreads them across
    servers), else one (an in-process engine batches a whole shard by itself)."""
    return len(config.servers) if config.backend == "openai" else 1


def run_plan(
    plan: Plan, *, config: GenerateConfig, tokenizer: Any, only: Sequence[int] | None = None
) -> tuple[list[Path], int]:
    """Generate the plan's missing shards (or only those in `only`); the backend loads lazily."""
    lazy = LazyBackend(config, tokenizer=tokenizer)
    total = len(plan.kept) if only is None else sum(len(plan.shards[i]) for i in only)
    identity = plan.identity
    store = response_store(config, generator=identity.generator, max_context=identity.max_context)

    def compute(_: int, prompts: Sequence[RenderedPrompt]) -> list[dict[str, Any]]:
        # every prompt reused: the model is never loaded
        if not prompts:
            return []
        return shard_rows(prompts, backend=lazy.get(), config=config, identity=identity)

    try:
        wanted = range(len(plan.shards)) if only is None else only
        pending = [i for i in wanted if not plan.stored.is_done(i)]
        fresh, index = prefetch_new(
            plan.shards, pending, store=store, compute=compute, config=config
        )
        work = reusing_responses(
            compute, store=store, records=reuse_records(plan.output), fresh=fresh, index=index
        )
        with Progress(total=total, unit="prompt", desc="generate") as bar:
            return run_shards(
                plan.shards,
                plan.output,
                work,
                RESPONSES,
                progress=bar.update,
                only=only,
                workers=shards_in_flight(config),
                plan=plan.stored,
            )
    finally:
        lazy.close()


def shard_plan(inputs: Inputs, *, config: GenerateConfig, out_dir: Path) -> list[str]:
    """One content hash per shard (prompt ids and rendered token ids): the cache keys of the
    mapped shard tasks in flows/, and the number of shards."""
    prompts = input_path(inputs, "prompts")
    plan = make_plan(prompts, config=config, out_dir=out_dir, tokenizer=load_tokenizer(config))
    return list(plan.stored.inputs)


def generate_shards(
    inputs: Inputs, *, config: GenerateConfig, out_dir: Path, shards: Sequence[int]
) -> list[str]:
    """Generate only the shards `shards` of the plan (a mapped task's part); no manifest.

    Call `generate` afterwards: it finds every shard done, loads no model and writes the manifest.
    """
    prompts = input_path(inputs, "prompts")
    tokenizer = load_tokenizer(config)
    plan = make_plan(prompts, config=config, out_dir=out_dir, tokenizer=tokenizer, only=shards)
    paths, _ = run_plan(plan, config=config, tokenizer=tokenizer, only=shards)
    return [str(paths[index]) for index in shards]


def generate(inputs: Inputs, *, config: GenerateConfig, out_dir: Path) -> StageResult:
    """Run the generate stage on `inputs["prompts"]`: `out_dir/responses/` shards, quarantine and
    manifest. Holds `out_dir`'s generate lock (prefsmith.schemas.locks): a second writer of the
    same folder stops with one line naming this one, or waits `PREFSMITH_LOCK_WAIT_S`."""
    with folder_lock(out_dir, STAGE_LOCK):
        return _generate(inputs, config=config, out_dir=Path(out_dir))


def _generate(inputs: Inputs, *, config: GenerateConfig, out_dir: Path) -> StageResult:
    start = time.perf_counter()
    config = plain_model(config)
    prompts, out_dir = input_path(inputs, "prompts"), Path(out_dir)
    tokenizer = load_tokenizer(config)
    plan = make_plan(prompts, config=config, out_dir=out_dir, tokenizer=tokenizer)
    paths, skipped = run_plan(plan, config=config, tokenizer=tokenizer)
    quarantine = write_quarantine(
        plan.rejected, out_dir / "responses.quarantine.parquet", stage="generate"
    )
    identity, kept, frame = plan.identity, plan.kept, plan.frame
    rows = count_rows(paths)
    reuse = reuse_counts(reuse_records(plan.output), len(plan.shards), rows=rows)
    manifest = Manifest(
        stage="generate",
        unit="prompt",
        config=config.model_dump(mode="json"),
        inputs=[plan.source],
        outputs={"responses": str(plan.output), "quarantine": str(quarantine)},
        rows_in=len(frame),
        rows_out=len(kept),
        dropped=count_reasons([r.reason for r in plan.rejected]),
        rows_written={"responses": rows, "quarantine": len(plan.rejected)},
        extra={
            "shards_total": len(plan.shards),
            "shards_skipped": skipped,
            "stale_shards_removed": sum(plan.removed.values()),
            "stale_shards_by_reason": plan.removed,
            "backend": config.backend,
            "generator": identity.generator,
            "gen_config_hash": identity.gen_config_hash,
            "max_context": identity.max_context,
            **reuse,
            "store": config.store,
        },
        wall_time_s=time.perf_counter() - start,
    )
    logger.info(
        "generate: %d prompts in, %d generated (%d shards, %d resumed), dropped %s",
        len(frame),
        len(kept),
        len(plan.shards),
        skipped,
        manifest.dropped,
    )
    if config.store is not None:
        logger.info(
            "generate: %d responses reused from the store, %d computed",
            reuse["rows_reused"],
            reuse["rows_computed"],
        )
    return StageResult(plan.output, quarantine, manifest.write(manifest_path(plan.output)))


def count_rows(paths: Sequence[Path]) -> int:
    """Rows in Parquet files, from their footers (resumed shards included)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
