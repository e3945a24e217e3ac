"""Plans are the truth for shards: a shard is reused only when the plan lists it under the same
key and its bytes still match its done record; everything else is removed with a reason, and
readers read the plan's shards, never a glob."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from prefsmith.schemas.errors import InputError, StageError
from prefsmith.schemas.io import read_table, run_shards, shard_name, write_table
from prefsmith.schemas.shard_plan import (
    PLAN_FILE,
    ShardPlan,
    done_path,
    planned_files,
    settle_plan,
    shard_problem,
)
from prefsmith.schemas.tables import QUARANTINE

SHARDS = [["a", "b"], ["c", "d"], ["e"]]


def plan_of(folder, *, key="k1", partner=None) -> ShardPlan:
    return ShardPlan(folder, key, tuple(f"in-{i}" for i in range(len(SHARDS))), partner=partner)


def build(plan: ShardPlan, *, calls: list[int] | None = None) -> tuple[list, int]:
    """Settle the folder for `plan`, then write the shards it lacks; `calls` collects which."""

    def work(index, shard):
        if calls is not None:
            calls.append(index)
        return [
            {"stage": "t", "row_ref": ref, "reason": plan.key, "detail": "", "raw": ""}
            for ref in shard
        ]

    settle_plan(plan)
    return run_shards(SHARDS, plan.folder, work, QUARANTINE, plan=plan)


def rows(folder) -> list[tuple[str, str]]:
    table = read_table(folder, QUARANTINE)
    return list(zip(table["row_ref"].to_pylist(), table["reason"].to_pylist(), strict=True))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def drop_record(path):
    done_path(path).unlink()


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, drop_record])
def test_a_damaged_shard_is_removed_and_redone(tmp_path, damage):
    plan = plan_of(tmp_path / "t")
    build(plan)
    want = rows(plan.folder)
    damage(plan.path(1))
    assert settle_plan(plan) == {"unverified": 1}
    assert not plan.path(1).exists() and plan.path(0).exists()
    calls: list[int] = []
    _, skipped = build(plan, calls=calls)
    assert (calls, skipped) == ([1], 2)  # only the damaged shard was redone
    assert rows(plan.folder) == want


def test_an_intact_folder_is_reused_whole(tmp_path):
    """Negative control: nothing removed, nothing redone."""
    plan = plan_of(tmp_path / "t")
    build(plan)
    calls: list[int] = []
    assert settle_plan(plan) == {}
    assert build(plan, calls=calls)[1] == 3 and calls == []


def test_an_extra_shard_beyond_the_plan_is_never_read_and_is_removed(tmp_path):
    plan = plan_of(tmp_path / "t")
    build(plan)
    want = rows(plan.folder)
    extra = plan.folder / shard_name(3)
    write_table(
        [{"stage": "t", "row_ref": "zz", "reason": "x", "detail": "", "raw": ""}], extra, QUARANTINE
    )
    assert rows(plan.folder) == want  # readers read the plan's shards, not the folder
    assert shard_problem(extra) is not None and shard_problem(plan.path(0)) is None
    assert settle_plan(plan) == {"not_in_plan": 1} and not extra.exists()


def test_shards_of_another_config_are_removed_or_refused(tmp_path):
    old = plan_of(tmp_path / "t", key="k1")
    build(old)
    new = plan_of(tmp_path / "t", key="k2")
    calls: list[int] = []
    build(new, calls=calls)  # settle_plan removed the three shards of k1 first
    assert calls == [0, 1, 2] and {reason for _, reason in rows(new.folder)} == {"k2"}
    assert json.loads((new.folder / PLAN_FILE).read_text())["key"] == "k2"

    dear = ShardPlan(new.folder, "k3", new.inputs, params={"seed": 3})
    with pytest.raises(StageError, match="holds shards of a different run"):
        settle_plan(dear, other_plan="refuse")
    assert all(new.is_done(i) for i in range(3))  # refused: nothing removed


def test_a_folder_without_plan_has_its_shards_removed(tmp_path):
    folder = tmp_path / "t"
    run_shards(SHARDS, folder, lambda i, s: [], QUARANTINE)  # no plan: shards nobody vouches for
    assert planned_files(folder) is None and len(list(folder.glob("*.parquet"))) == 3
    plan = plan_of(folder)
    calls: list[int] = []
    assert settle_plan(plan) == {"no_plan": 3}
    build(plan, calls=calls)
    assert calls == [0, 1, 2] and len(rows(folder)) == 5


def test_a_reader_refuses_a_plan_whose_shard_is_missing(tmp_path):
    plan = plan_of(tmp_path / "t")
    build(plan)
    plan.path(2).unlink()
    with pytest.raises(InputError, match="1 of the 3 shards its plan lists are missing"):
        read_table(plan.folder, QUARANTINE)


def test_a_shard_whose_partner_is_gone_is_redone(tmp_path):
    """The score stage's quarantine partner: written before the shard, hashed into its record."""
    partner = tmp_path / "t.quarantine"
    plan = plan_of(tmp_path / "t", partner=partner)
    settle_plan(plan)

    def work(index, shard):
        write_table([], partner / shard_name(index), QUARANTINE)
        return []

    run_shards(SHARDS, plan.folder, work, QUARANTINE, plan=plan)
    (partner / shard_name(0)).unlink()
    assert settle_plan(plan) == {"unverified": 1}
    _, skipped = run_shards(SHARDS, plan.folder, work, QUARANTINE, plan=plan)
    assert skipped == 2 and pq.ParquetFile(partner / shard_name(0)).metadata.num_rows == 0
