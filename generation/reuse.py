"""Responses reused from the incremental store (prefsmith.schemas.store): a prompt's samples are
taken from an earlier build when everything they depend on is unchanged — the prompt (its id is
the hash of its messages), the generator's revision (model and tokenizer files), the sampling
config with its seed, the backend and its settings, the context length — so only new prompts
reach the model.

What a prompt's samples do *not* depend on is left out of the namespace: the shard size, the
model folder's path (its revision names it), the store itself and the openai backend's server
list and timeouts. A batched engine's float rounding can depend on which prompts share a batch;
with the transformers backend's `batch_size: 1`, a reused row equals a fresh computation bit for
bit (tests/generation/test_reuse.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.ids import content_hash
from prefsmith.schemas.store import RowStore, reusing
from prefsmith.schemas.tables import RESPONSES

NOT_IN_NAMESPACE = {
    "model",
    "revision",
    "shard_size",
    "store",
    "servers",
    "api_key_env",
    "request_timeout_s",
}


def generation_namespace(config: GenerateConfig, *, generator: str, max_context: int) -> str:
    """The hash of everything but the prompt that a prompt's samples depend on."""
    settings = config.model_dump(mode="json", exclude=NOT_IN_NAMESPACE)
    return content_hash([settings, generator, max_context])


def response_store(config: GenerateConfig, *, generator: str, max_context: int) -> RowStore | None:
    """This config's namespace of the store, or None without `store`."""
    if config.store is None:
        return None
    namespace = generation_namespace(config, generator=generator, max_context=max_context)
    return RowStore(Path(config.store) / "responses" / namespace, RESPONSES)


def prefetch_new(
    shards: Sequence[Sequence[Any]],
    pending: Sequence[int],
    *,
    store: RowStore | None,
    compute: Callable[[int, Sequence[Any]], list[dict[str, Any]]],
    config: GenerateConfig,
) -> tuple[set[str], dict[str, list[dict[str, Any]]] | None]:
    """Generate the prompts of the `pending` shards that the store lacks, `shard_size` at a time,
    into the store; their ids (counted as computed by the shards that then take them), and the
    store's index with them added (so the shards do not read the store again).

    A rebuild's new prompts are spread over every shard; generated shard by shard they would be
    a few per engine call, and an engine's per-call cost would eat the reuse (measured: 10% new
    prompts took 0.81 of a full build's time; benchmarks/results/incremental_rebuild.md). Each
    batch lands in the store atomically, so a killed prefetch resumes from the batches stored."""
    if store is None:
        return set(), None
    from prefsmith.schemas.progress import Progress

    known = store.load()
    new = [p for i in pending for p in shards[i] if p.prompt_id not in known]
    if not new:
        return set(), known
    size = config.shard_size
    with Progress(total=len(new), unit="prompt", desc="generate (not in the store)") as bar:
        for batch in (new[i : i + size] for i in range(0, len(new), size)):
            groups: dict[str, list[dict[str, Any]]] = {}
            for row in compute(-1, batch):
                groups.setdefault(row["prompt_id"], []).append(row)
            store.put(groups)
            known.update(groups)
            bar.update(len(batch))
    return {p.prompt_id for p in new}, known


def reusing_responses(
    compute: Callable[[int, Sequence[Any]], list[dict[str, Any]]],
    *,
    store: RowStore | None,
    records: Path,
    fresh: set[str] = frozenset(),
    index: dict[str, list[dict[str, Any]]] | None = None,
) -> Callable[[int, Sequence[Any]], list[dict[str, Any]]]:
    """`compute(index, prompts)` (rendered prompts → response rows) that generates only the
    prompts the store lacks (prefsmith.schemas.store.reusing); `fresh`: prompt ids this run
    generated ahead (prefetch_new), counted as computed."""
    return reusing(
        compute,
        store=store,
        records=records,
        fresh=fresh,
        index=index,
        keys=lambda shard: [prompt.prompt_id for prompt in shard],
        subset=lambda shard, keep: [p for p, k in zip(shard, keep, strict=True) if k],
        row_key=lambda row: row["prompt_id"],
    )
