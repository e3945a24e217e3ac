"""Shard plans: the one record of which shards a sharded stage's folder holds, and the only shards
anyone trusts.

`plan.json` beside the shards names the config hash every shard is made with (`key`: config,
input tables, model revision) and one entry per shard: its file name and the content hash of its
input rows. A finished shard has a done record `shard-xxxxx.done.json` beside it (the key, the
input hash, the sha256 of the shard's bytes and of its partner's, if the stage writes one) written
*before* the shard is renamed into place, so a shard file that exists always has its record.

A shard is reused only when its record matches the plan and its bytes still hash to the record.
Before a stage writes, `settle_plan` removes everything else, with a logged reason counted in the
manifest:

| reason         | the shard                                                            |
|----------------|----------------------------------------------------------------------|
| `no_plan`      | sits in a folder without plan.json (an older prefsmith, a hand copy) |
| `other_config` | was made under another plan key (config, inputs or model changed)    |
| `not_in_plan`  | is a Parquet file the plan does not list (an extra shard)            |
| `unverified`   | has no record, or its bytes, input or partner no longer match it (truncated, edited) |

Readers (`schemas.io.shard_files`) read the plan's shards, never a glob of the folder.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import InputError, StageError
from prefsmith.schemas.ids import cached_file_sha256
from prefsmith.schemas.io import atomic_write, remove_stale_temporaries, shard_name, write_text

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
DONE_SUFFIX = ".done.json"


def done_path(shard: Path) -> Path:
    """The done record of `shard`: `shard-xxxxx.done.json` beside it (not *.parquet)."""
    return shard.with_name(shard.name.removesuffix(".parquet") + DONE_SUFFIX)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _sha(path: Path) -> str | None:
    return cached_file_sha256(path) if path.is_file() else None


@dataclass(frozen=True)
class ShardPlan:
    """What a sharded stage's folder must hold: `len(inputs)` shards made under `key`.

    `partner`: a folder whose same-named shard the work writes before the shard itself (the
    score stage's per-shard quarantine); a shard whose partner is gone or changed is redone.
    """

    folder: Path
    key: str
    inputs: tuple[str, ...]
    partner: Path | None = None
    params: dict[str, Any] | None = None

    def path(self, index: int) -> Path:
        return self.folder / shard_name(index)

    def paths(self) -> list[Path]:
        return [self.path(index) for index in range(len(self.inputs))]

    def _partner_of(self, shard: Path) -> Path | None:
        return None if self.partner is None else self.partner / shard.name

    def is_done(self, index: int) -> bool:
        """Whether shard `index` exists, its record matches this plan and its bytes (and its
        partner's) still hash to the record."""
        shard = self.path(index)
        record = _read_json(done_path(shard))
        if record is None or not shard.is_file():
            return False
        partner = self._partner_of(shard)
        return (
            record.get("key") == self.key
            and record.get("input") == self.inputs[index]
            and record.get("sha256") == _sha(shard)
            and (partner is None or record.get("partner_sha256") == _sha(partner))
        )

    def record(self, index: int, written: Path) -> None:
        """Record shard `index` as done from its fully written temporary file `written`, before
        it is renamed into place (so a shard file never exists without its record)."""
        shard = self.path(index)
        partner = self._partner_of(shard)
        record = {"key": self.key, "input": self.inputs[index], "sha256": _sha(written)}
        if partner is not None:
            record["partner_sha256"] = _sha(partner)
        write_text(json.dumps(record, sort_keys=True), done_path(shard))

    def as_json(self) -> dict[str, Any]:
        shards = [
            {"name": p.name, "input": h} for p, h in zip(self.paths(), self.inputs, strict=True)
        ]
        partner = None if self.partner is None else self.partner.name
        return {"key": self.key, "params": self.params, "partner": partner, "shards": shards}


def read_plan(folder: str | Path) -> ShardPlan | None:
    """The plan stored in `folder`, or None where there is none (or it cannot be read)."""
    folder = Path(folder)
    stored = _read_json(folder / PLAN_FILE)
    if stored is None or "shards" not in stored:
        return None
    partner = stored.get("partner")
    return ShardPlan(
        folder,
        str(stored.get("key")),
        tuple(str(entry["input"]) for entry in stored["shards"]),
        partner=None if partner is None else folder.parent / partner,
        params=stored.get("params"),
    )


def planned_files(folder: str | Path) -> list[Path] | None:
    """The shard files a folder's plan lists (what readers read), or None without a plan; a
    listed shard that is missing is an InputError naming it (its stage did not finish)."""
    plan = read_plan(folder)
    if plan is None:
        return None
    missing = [p.name for p in plan.paths() if not p.is_file()]
    if missing:
        raise InputError(
            f"{folder}: {len(missing)} of the {len(plan.inputs)} shards its plan lists are "
            f"missing ({missing[0]}, ...): the stage that writes it did not finish; rerun it"
        )
    return plan.paths()


def _stale_reason(
    plan: ShardPlan, previous: ShardPlan | None, index: int | None, *, check: bool
) -> str | None:
    """Why the file of plan index `index` (None: not in the plan) cannot stay, or None."""
    if previous is None:
        return "no_plan"
    if previous.key != plan.key:
        return "other_config"
    if index is None:
        return "not_in_plan"
    return "unverified" if check and not plan.is_done(index) else None


def _remove(plan: ShardPlan, shard: Path) -> None:
    partner = plan._partner_of(shard)
    for path in (shard, done_path(shard), partner):
        if path is not None:
            path.unlink(missing_ok=True)


def refuse_other_plan(plan: ShardPlan, previous: ShardPlan) -> None:
    """StageError naming what differs: for a stage whose shards are too dear to remove when the
    folder holds another run's (generate: model time), the user chooses."""
    mine, theirs = plan.params or {}, previous.params or {}
    differs = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k)) or ["key"]
    raise StageError(
        f"{plan.folder} holds shards of a different run (differs in {', '.join(differs)}): "
        "use a new out_dir, or delete that folder to start over"
    )


def settle_plan(
    plan: ShardPlan, *, other_plan: str = "remove", only: Collection[int] | None = None
) -> dict[str, int]:
    """Make `plan.folder` hold only shards `plan` vouches for, then store the plan.

    Removes every other Parquet file (and its record and partner), logs one warning per reason,
    and returns {reason: shards removed}. A folder planned under another key has its shards
    removed (`other_plan="remove"`) or is refused (`"refuse"`: refuse_other_plan). Call it inside
    the stage's read-then-write lock: a concurrent shard writer of the same plan is safe (its
    record precedes its shard), a writer of another plan is not. `only`: hash only those
    shards (one mapped part's; the others are its siblings' to check).
    """
    plan.folder.mkdir(parents=True, exist_ok=True)
    if plan.partner is not None:
        plan.partner.mkdir(parents=True, exist_ok=True)
    if only is None:  # the whole stage, alone in its lock: no sibling part is mid-write
        _remove_temporaries(plan)
    previous = read_plan(plan.folder)
    if other_plan == "refuse" and previous is not None and previous.key != plan.key:
        refuse_other_plan(plan, previous)
    removed: Counter[str] = Counter()
    indices = {p.name: i for i, p in enumerate(plan.paths())}
    for path in sorted(p for p in plan.folder.glob("*.parquet") if not p.name.startswith(".")):
        index = indices.get(path.name)
        check = only is None or index in only
        reason = _stale_reason(plan, previous, index, check=check)
        if reason is not None:
            _remove(plan, path)
            removed[reason] += 1
    if plan.partner is not None and (previous is None or previous.key != plan.key):
        for path in plan.partner.glob("shard-*.parquet"):  # partners of another plan's shards
            path.unlink()
    for reason, count in sorted(removed.items()):
        logger.warning("%s: removed %d shard(s): %s", plan.folder, count, REASON_TEXT[reason])
    if previous is None or previous.as_json() != plan.as_json():
        with atomic_write(plan.folder / PLAN_FILE) as tmp:
            tmp.write_text(json.dumps(plan.as_json(), indent=2, sort_keys=True))
    return dict(sorted(removed.items()))


def _remove_temporaries(plan: ShardPlan) -> None:
    """Shards', plan's, partner's and reuse records' temporaries, and the stage's own files'
    beside its folder (`scores.manifest.json`, `scores.quarantine.parquet`: named after the
    shard folder)."""
    from prefsmith.schemas.store import reuse_records

    folders = [plan.folder] if plan.partner is None else [plan.folder, plan.partner]
    folders.append(reuse_records(plan.folder))
    removed = sum(remove_stale_temporaries(folder) for folder in folders)
    removed += remove_stale_temporaries(plan.folder.parent, prefix=plan.folder.name)
    if removed:
        logger.warning("%s: removed %d temporary file(s) of a killed run", plan.folder, removed)


REASON_TEXT = {
    "no_plan": "the folder had no plan.json, so nothing vouched for them",
    "other_config": "made with another config, inputs or model than this run's",
    "not_in_plan": "not listed in this run's plan (beyond its shards)",
    "unverified": "no done record, or their bytes no longer match it (truncated or changed)",
}


def shard_problem(path: str | Path) -> str | None:
    """Why the shard at `path` cannot be trusted by its folder's plan, or None (the check of a
    cached shard task's result)."""
    path = Path(path)
    plan = read_plan(path.parent)
    if plan is None:
        return f"{path.parent} has no {PLAN_FILE}"
    names = [p.name for p in plan.paths()]
    if path.name not in names:
        return f"{path.name} is not in {path.parent / PLAN_FILE}"
    if not plan.is_done(names.index(path.name)):
        return f"{path} is missing or no longer matches its done record"
    return None
